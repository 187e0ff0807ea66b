//! `cargo bench --bench scale`: the scale benchmark of issue 10 (docs/benchmarks.md).
//!
//! One scenario, two places to run it:
//! - **in process** (default): the fake Kubernetes API of the tests, the PrivX simulator and
//!   the real runner (`runner::run`) in this process, each on a tokio runtime of its own so
//!   that the operator's CPU time and heap can be told apart ([`in_process`], [`alloc`]);
//! - **against a cluster** (`--context NAME`, never the current context implicitly): the real
//!   `privx-operator` binary run out of cluster and the simulator as a child process
//!   ([`cluster`]);
//! - **as processes** (`--operator-process`): the cluster mode with the fake API of the tests
//!   served over HTTP from this process as the cluster; the operator's RSS is its own.
//!
//! The scenario ([`scenario`]): N bare Secrets created at a fixed concurrency (the baseline:
//! how fast this API server takes writes), then N push+mirror VaultSecrets from them at the
//! same concurrency; the time until all are Ready, divided by the baseline; create→Ready
//! percentiles; PrivX calls and Kubernetes writes per new object; what happens in steady state
//! over two refresh periods; memory and CPU; optionally (`--outage 60s`) a vault outage and the
//! recovery from it. It prints one JSON object on stdout.

mod alloc;
mod cluster;
mod in_process;
mod scenario;

#[path = "../../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "../../tests/e2e/harness.rs"]
#[allow(unused_imports)]
mod e2e_harness;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: alloc::Tagged = alloc::Tagged;

fn parse_duration(s: &str) -> Result<Duration, String> {
    privx_operator::crd::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// The scale benchmark: N push+mirror VaultSecrets against a baseline of N bare Secrets; one
/// JSON object of figures on stdout (progress on stderr). In process by default; against a
/// real cluster with --context.
#[derive(Parser, Debug, Clone)]
#[command(name = "scale", about, long_about = None)]
#[command(group = clap::ArgGroup::new("child").args(["context", "operator_process"]))]
pub struct Args {
    /// VaultSecrets (and as many source Secrets) to create.
    #[arg(long, default_value_t = 1000)]
    pub objects: usize,

    /// Creates in flight at once, for the baseline Secrets and for the VaultSecrets alike.
    #[arg(long, default_value_t = 16)]
    pub create_concurrency: usize,

    /// The operator's --concurrency (reconciles per controller); default: the operator's default.
    #[arg(long)]
    pub workers: Option<u16>,

    /// The operator's --privx-max-concurrency; default: the operator's default.
    #[arg(long)]
    pub privx_max_concurrency: Option<usize>,

    /// The operator's --privx-rate-limit (per second); default: the operator's default.
    #[arg(long)]
    pub privx_rate_limit: Option<f64>,

    /// `spec.refreshInterval` of every VaultSecret (at least 10s); the steady state is watched
    /// for two of them.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub refresh: Duration,

    /// `spec.deletionPolicy` of every VaultSecret. With `Delete` the VaultSecrets are deleted
    /// after the steady state, while the operator runs, and the cleanup is measured too.
    #[arg(long, default_value = "Retain", value_parser = ["Retain", "Delete"])]
    pub deletion_policy: String,

    /// After the steady state, every `/vault/*` request of the simulator answers 503 for this
    /// long (issue 22) while `--outage-changes` source Secrets change: the PrivX requests
    /// during the outage (mean and peak per second), whether a mirror was touched, and the time
    /// from PrivX answering again until every VaultSecret is Ready and the changed data is in
    /// the mirrors go to `outage` in the report.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub outage: Option<Duration>,

    /// Source Secrets changed during `--outage`.
    #[arg(long, default_value_t = 20)]
    pub outage_changes: usize,

    /// Give up waiting for all VaultSecrets to be Ready after this long.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Run against the cluster of this kube context (never the current one implicitly): the
    /// operator binary out of cluster, the simulator as a child process. The scenario's
    /// namespace is created and deleted again; the CRDs are applied if missing.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Run the operator binary and the simulator as child processes against the fake
    /// Kubernetes API of the tests, served over HTTP from this process: the cluster mode
    /// without a cluster, with the operator's exact RSS.
    #[arg(long)]
    pub operator_process: bool,

    /// (cluster) The operator binary; default: the `privx-operator` that cargo built for this
    /// bench (release, with `cargo bench`).
    #[arg(long, value_name = "FILE", requires = "child")]
    pub operator_bin: Option<PathBuf>,

    /// (cluster) A binary that runs the simulator as `BIN sim --listen ADDR`; default: the
    /// `privx-operator` that cargo built for this bench.
    #[arg(long, value_name = "FILE", requires = "child")]
    pub sim_bin: Option<PathBuf>,

    /// (cluster) Keep the namespace and the operator's log directory afterwards.
    #[arg(long, requires = "child")]
    pub keep: bool,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match &args.context {
        None if args.operator_process => cluster::run_fake(&args),
        None => in_process::run(&args),
        Some(context) => cluster::run(&args, context),
    };
    match result {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON report")
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scale: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Progress on stderr (stdout holds only the JSON report).
pub fn progress(what: &str) {
    eprintln!("[scale] {what}");
}
