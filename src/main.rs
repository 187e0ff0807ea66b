//! The `privx-operator` command line: `run`, `crd`, `check`, `sim`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A Kubernetes operator that makes PrivX vault secrets and password policies declarative.
#[derive(Parser)]
#[command(name = "privx-operator", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: the VaultSecret and PasswordPolicy controllers.
    Run(Box<privx_operator::runtime::RunArgs>),
    /// Print the CustomResourceDefinitions as one multi-document YAML stream.
    Crd {
        /// Write one file per CRD into this folder instead of printing the stream.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Validate VaultSecret and PasswordPolicy manifests offline (schema, CEL rules, semantics).
    Check(privx_operator::check::CheckArgs),
    /// Run the PrivX simulator: an in-memory PrivX API server for tests and demos.
    #[cfg(feature = "embedded-privx")]
    Sim(privx_sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => write_crds(out_dir),
        Command::Check(args) => return privx_operator::check::main(args),
        #[cfg(feature = "embedded-privx")]
        Command::Sim(args) => block_on(privx_sim::main(args)),
        Command::Run(args) => block_on(privx_operator::runtime::main(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One clear line: the error and its causes, never a backtrace.
            eprintln!("privx-operator: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

fn write_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    use anyhow::Context;
    use privx_operator::crd::{all_crds, crd_file_name, crd_yaml, crds_yaml};
    match out_dir {
        None => print!("{}", crds_yaml()),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in all_crds() {
                let path = dir.join(crd_file_name(&crd));
                std::fs::write(&path, crd_yaml(&crd))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
