//! Process wiring for `privx-operator run` (under construction).

/// Arguments of `privx-operator run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

pub async fn main(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("the operator runtime is not built yet")
}
