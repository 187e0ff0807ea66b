//! `privx-sim`: the PrivX simulator as a server of its own (the operator's developer build also
//! runs it as `privx-operator sim`).

use std::process::ExitCode;

use clap::Parser;

/// An in-memory PrivX API server for tests and demos.
#[derive(Parser)]
#[command(name = "privx-sim", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: privx_sim::SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(privx_sim::main(cli.args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("privx-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}
