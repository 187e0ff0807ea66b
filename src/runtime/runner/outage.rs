//! When a PrivX service's circuit breaker closes again, every object that failed because the
//! service was not serving is reconciled at once, spread over [`SPREAD`], instead of waiting out
//! its own backoff (which by then may be a minute or more).

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use privx_client::{BreakerStatus, Service};
use tracing::info;

use crate::controller::core;
use crate::controller::vault_secret::store::stored::VsRef;
use crate::controller::{password_policy, vault_secret};
use crate::crd::PasswordPolicy;

/// The waiting objects are asked for in this many steps over [`SPREAD`].
const STEPS: u32 = 20;
/// How long the retries after a recovery are spread over.
pub const SPREAD: Duration = Duration::from_secs(2);

/// Runs until dropped.
pub async fn retry_when_privx_is_back(
    core: Arc<core::Context>,
    vault_secrets: mpsc::UnboundedSender<VsRef>,
    policies: mpsc::UnboundedSender<ObjectRef<DeserializeGuard<PasswordPolicy>>>,
) {
    let mut status = core.privx.breakers().subscribe();
    let mut seen = *status.borrow_and_update();
    while status.changed().await.is_ok() {
        let now = *status.borrow_and_update();
        for service in recovered(&seen, &now) {
            let waiting = core.outage.take(service);
            if waiting.is_empty() {
                continue;
            }
            info!(
                service = service.as_str(),
                objects = waiting.len(),
                "PrivX is back: retrying the objects that waited for it"
            );
            let per_step = waiting.len().div_ceil(STEPS as usize);
            for (i, chunk) in waiting.chunks(per_step).enumerate() {
                if i > 0 {
                    tokio::time::sleep(SPREAD / STEPS).await;
                }
                for (controller, key) in chunk {
                    send(controller, key, &vault_secrets, &policies);
                }
            }
        }
        seen = now;
    }
}

/// The services whose breaker closed (again) between `before` and `after`.
fn recovered(before: &BreakerStatus, after: &BreakerStatus) -> Vec<Service> {
    Service::ALL
        .into_iter()
        .filter(|s| after.closings(*s) > before.closings(*s))
        .collect()
}

fn send(
    controller: &str,
    key: &str,
    vault_secrets: &mpsc::UnboundedSender<VsRef>,
    policies: &mpsc::UnboundedSender<ObjectRef<DeserializeGuard<PasswordPolicy>>>,
) {
    if controller == vault_secret::CONTROLLER {
        if let Some((namespace, name)) = key.split_once('/') {
            let _ = vault_secrets.unbounded_send(ObjectRef::new(name).within(namespace));
        }
    } else if controller == password_policy::CONTROLLER {
        let _ = policies.unbounded_send(ObjectRef::new(key));
    }
}
