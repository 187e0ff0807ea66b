//! Offline manifest validation (under construction).

/// Arguments of `privx-operator check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {}

pub fn main(_args: CheckArgs) -> std::process::ExitCode {
    eprintln!("privx-operator: check is not built yet");
    std::process::ExitCode::FAILURE
}
