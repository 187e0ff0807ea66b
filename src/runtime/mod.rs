//! Process wiring for `privx-operator run`: configuration, logging, leader election, the watches
//! and stores that feed both controllers ([`runner`]), the HTTP endpoints (`/livez`, `/readyz`,
//! `/metrics`), metrics (with the count of Kubernetes writes, `kube_writes`) and shutdown; also
//! the chart's hook subcommands `probe` and `uninstall-check` ([`hooks`]).
//!
//! Owns the process lifecycle; the top of the import order (it may use every other module,
//! none uses it). Must not contain reconcile logic (that is `controller`) nor speak HTTP to
//! PrivX itself (that is the `privx-client` crate).

mod args;
pub mod crds;
mod embedded;
pub mod hooks;
pub mod http;
pub mod kube_writes;
pub mod leader;
pub mod lease_gate;
pub mod logging;
pub mod metrics;
mod operator;
pub mod runner;
pub mod selector;
pub mod shutdown;

pub use args::{
    AuthArgs, AuthMode, ControllerName, DEFAULT_CONCURRENCY, EdAlgNameArg, LogFormat,
    PolicyGenerationArg, RunArgs,
};
pub use operator::{CRD_NAMES, main};
