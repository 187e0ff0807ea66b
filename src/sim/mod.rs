//! The PrivX simulator (under construction).

/// Arguments of `privx-operator sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {}

pub async fn main(_args: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("the simulator is not built yet")
}
