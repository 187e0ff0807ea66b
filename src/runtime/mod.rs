//! Process wiring for `privx-operator run`: configuration, logging, leader election, the HTTP
//! endpoints (`/livez`, `/readyz`, `/metrics`), metrics (with the count of Kubernetes writes,
//! `kube_writes`) and shutdown; also the chart's hook subcommands `probe` and
//! `uninstall-check` (`hooks`).
//!
//! Owns the process lifecycle. Must not contain reconcile logic (that is `controller`) nor
//! speak HTTP to PrivX (that is `privx`).

mod args;
pub mod crds;
mod embedded;
pub mod hooks;
pub mod http;
pub mod identity;
pub mod kube_writes;
pub mod leader;
pub mod lease_gate;
pub mod logging;
pub mod metrics;
mod operator;
pub mod shutdown;

pub use args::{
    AuthArgs, AuthMode, DEFAULT_CONCURRENCY, EdAlgNameArg, LogFormat, PolicyGenerationArg, RunArgs,
};
pub use operator::{CRD_NAMES, main};
