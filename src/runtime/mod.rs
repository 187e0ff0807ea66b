//! Process wiring for `privx-operator run`: configuration, logging, leader election, the HTTP
//! endpoints (`/livez`, `/readyz`, `/metrics`), metrics and shutdown.
//!
//! Owns the process lifecycle. Must not contain reconcile logic (that is `controller`) nor
//! speak HTTP to PrivX (that is `privx`).

mod args;
pub mod crds;
pub mod http;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod shutdown;

pub use args::{LogFormat, RunArgs};

pub async fn main(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("the operator runtime is not built yet")
}
