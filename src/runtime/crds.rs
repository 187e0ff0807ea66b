//! Waiting at startup until the operator's CustomResourceDefinitions are established, so that
//! installing the operator before its CRDs is a wait with a clear log line, not a crash loop.
//!
//! Owns only reading CRD status. Must not create or change CRDs (that is the installer's job).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// How often [`wait_for_crds_established`] looks again.
pub const CRD_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// How a wait for CRDs ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrdWait {
    Established,
    /// Shutdown came first.
    Cancelled,
}

/// Waits until every named CRD (e.g. `vaultsecrets.privx-operator.dev`) has the condition
/// `Established=True`, polling every [`CRD_POLL_INTERVAL`]. Errors reading CRDs (missing RBAC,
/// API server away) are logged and waited out too.
pub async fn wait_for_crds_established(
    client: Client,
    names: &[&str],
    shutdown: CancellationToken,
) -> CrdWait {
    wait_for_crds_established_every(client, names, CRD_POLL_INTERVAL, shutdown).await
}

/// [`wait_for_crds_established`] with a chosen poll interval.
pub async fn wait_for_crds_established_every(
    client: Client,
    names: &[&str],
    poll_interval: Duration,
    shutdown: CancellationToken,
) -> CrdWait {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let mut last_report = String::new();
    loop {
        let mut waiting_for = Vec::new();
        for name in names {
            match api.get_opt(name).await {
                Ok(Some(crd)) if is_established(&crd) => {}
                Ok(Some(_)) => waiting_for.push(format!("{name} (not established yet)")),
                Ok(None) => waiting_for.push(format!("{name} (not installed)")),
                Err(error) => waiting_for.push(format!("{name} (cannot read: {error})")),
            }
        }
        if waiting_for.is_empty() {
            tracing::info!(crds = ?names, "CRDs are established");
            return CrdWait::Established;
        }
        let report = waiting_for.join(", ");
        // Say it once per change, not every poll.
        if report != last_report {
            tracing::warn!(
                "waiting for CRDs: {report}; apply them (privx-operator crd | kubectl apply -f -)"
            );
            last_report = report;
        }
        tokio::select! {
            () = shutdown.cancelled() => return CrdWait::Cancelled,
            () = tokio::time::sleep(poll_interval) => {}
        }
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}
