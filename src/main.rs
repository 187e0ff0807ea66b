//! The `privx-operator` command line: `run`, `crd`, `check`, `probe`, `uninstall-check`, `sim`.

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
    /// GET a URL and succeed on a 2xx answer: the chart's `helm test` asks /readyz with it (the
    /// image has no shell).
    Probe(privx_operator::runtime::hooks::ProbeArgs),
    /// Fail, naming them, while VaultSecrets or PasswordPolicies carry the operator's finalizer:
    /// the chart's pre-delete hook, so that an uninstall leaves nothing stuck. Only reads.
    UninstallCheck(privx_operator::runtime::hooks::UninstallCheckArgs),
    /// Run the PrivX simulator: an in-memory PrivX API server for tests and demos.
    #[cfg(feature = "embedded-privx")]
    Sim(privx_sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { out_dir } => write_crds(out_dir),
        Command::Check(args) => return privx_operator::check::main(args),
        Command::Probe(args) => {
            return match runtime() {
                Ok(rt) => rt.block_on(privx_operator::runtime::hooks::probe(args)),
                Err(error) => fail(error.into()),
            };
        }
        Command::UninstallCheck(args) => {
            return match runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(privx_operator::runtime::hooks::uninstall_check(args)))
            {
                Ok(code) => code,
                Err(error) => fail(error),
            };
        }
        #[cfg(feature = "embedded-privx")]
        Command::Sim(args) => block_on(privx_sim::main(args)),
        Command::Run(args) => block_on(privx_operator::runtime::main(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    // One clear line: the error and its causes, never a backtrace.
    eprintln!("privx-operator: {error:#}");
    ExitCode::FAILURE
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    runtime()?.block_on(fut)
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
