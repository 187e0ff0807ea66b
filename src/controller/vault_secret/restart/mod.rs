//! Rollout restarts without storms.
//!
//! A VaultSecret whose mirrored data changed *requests* restarts of its targets; it does not
//! restart them itself. The [`Debouncer`] (pure, clock injected) turns requests into restarts:
//! every request for a workload that arrives within one window of the first pending one joins
//! it, and a workload is never restarted twice within one window, whatever happens. The
//! [`RestartQueue`] runs the debouncer on a task of its own and makes the patches: the
//! pod-template annotation for Deployments, StatefulSets and DaemonSets, `spec.restartAt` for
//! Argo Rollouts ([`restart_patch`]).
//!
//! Pending restarts live in memory: an operator that stops inside a window loses them (the
//! data is in the mirror already; the workload picks it up at its next restart).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::core::recorder::Recorder;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::controller::core::FIELD_MANAGER;
use crate::controller::vault_secret::DATA_HASH_ANNOTATION;
use crate::crd::vault_secret::RolloutKind;

/// The VaultSecret condition about its restart targets.
pub const CONDITION: &str = "RestartTargets";
/// Its reason when every target exists and may be read.
pub const AVAILABLE: &str = "Available";

/// The condition reasons of [`CONDITION`], as `'static` strings (for re-reporting one read
/// back from status).
pub fn reason_of(reason: &str) -> &'static str {
    match reason {
        "TargetNotFound" => "TargetNotFound",
        "TargetForbidden" => "TargetForbidden",
        "TargetUnavailable" => "TargetUnavailable",
        _ => AVAILABLE,
    }
}
mod debouncer;

pub use debouncer::{DEFAULT_WINDOW, Debouncer, Requester, Restart, Workload};

/// The API group/version of a restart target's kind.
pub fn api_version(kind: RolloutKind) -> &'static str {
    match kind {
        RolloutKind::Rollout => "argoproj.io/v1alpha1",
        _ => "apps/v1",
    }
}

fn plural(kind: RolloutKind) -> &'static str {
    match kind {
        RolloutKind::Deployment => "deployments",
        RolloutKind::StatefulSet => "statefulsets",
        RolloutKind::DaemonSet => "daemonsets",
        RolloutKind::Rollout => "rollouts",
    }
}

/// The JSON merge patch that restarts a workload. Deployments, StatefulSets and DaemonSets
/// roll when their pod template changes: the annotation carries the data hash. An Argo
/// Rollout is restarted the way Argo Rollouts expects (`kubectl argo rollouts restart`):
/// `spec.restartAt`, a time; its controller replaces the pods created before it.
pub fn restart_patch(kind: RolloutKind, token: &str, now: jiff::Timestamp) -> Value {
    match kind {
        RolloutKind::Rollout => json!({
            "spec": {"restartAt": now
                .round(jiff::TimestampRound::new().smallest(jiff::Unit::Second).mode(jiff::RoundMode::Trunc))
                .unwrap_or(now)
                .to_string()},
        }),
        _ => json!({
            "spec": {"template": {"metadata": {"annotations": {DATA_HASH_ANNOTATION: token}}}},
        }),
    }
}

/// The dynamic API of a workload's kind in a namespace.
pub fn workload_api(
    client: kube::Client,
    namespace: &str,
    kind: RolloutKind,
) -> Api<DynamicObject> {
    let (group, version) = api_version(kind).split_once('/').expect("group/version");
    let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural(kind));
    Api::namespaced_with(client, namespace, &resource)
}

/// Why a restart target cannot be restarted, from the API's answer to reading it.
pub fn unavailable_reason(error: &kube::Error) -> (&'static str, &'static str) {
    match error {
        kube::Error::Api(s) if s.code == 404 => ("TargetNotFound", "does not exist"),
        kube::Error::Api(s) if s.code == 403 => (
            "TargetForbidden",
            "may not be read or patched by the operator (RBAC; Argo Rollouts need rolloutRestart.argoRollouts in the chart)",
        ),
        _ => ("TargetUnavailable", "could not be read"),
    }
}

/// "Now" on tokio's clock (as a std `Instant` for the pure debouncer): a paused test clock
/// drives the queue as it drives the timer that wakes it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The shared restart queue: the debouncer behind a lock, and the task that makes the
/// restarts when they are due (started by the first request).
pub struct RestartQueue {
    debouncer: Mutex<Debouncer>,
    wake: Notify,
    started: std::sync::Once,
}

impl Default for RestartQueue {
    fn default() -> Self {
        Self {
            debouncer: Mutex::new(Debouncer::new(DEFAULT_WINDOW)),
            wake: Notify::new(),
            started: std::sync::Once::new(),
        }
    }
}

impl RestartQueue {
    /// Requests a restart, debounced by `window` (the operator's setting); with a zero window
    /// the restart is made before this returns.
    pub async fn request(
        self: &Arc<Self>,
        client: &kube::Client,
        recorder: &Recorder,
        window: Duration,
        workload: Workload,
        token: &str,
        by: Requester,
    ) {
        let now = now();
        let due = {
            let mut d = self.debouncer.lock().expect("restart queue lock");
            d.set_window(window);
            d.request(now, workload, token, by)
        };
        if due <= now {
            self.run_due(client, recorder).await;
            return;
        }
        self.started.call_once(|| {
            let queue = self.clone();
            let client = client.clone();
            let recorder = recorder.clone();
            tokio::spawn(async move { queue.run(client, recorder).await });
        });
        self.wake.notify_one();
    }

    /// Restarts whatever is due, sleeping until the next one; forever.
    async fn run(self: Arc<Self>, client: kube::Client, recorder: Recorder) {
        loop {
            let next = self
                .debouncer
                .lock()
                .expect("restart queue lock")
                .next_due();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                        _ = self.wake.notified() => continue,
                    }
                }
                None => {
                    self.wake.notified().await;
                    continue;
                }
            }
            self.run_due(&client, &recorder).await;
        }
    }

    async fn run_due(&self, client: &kube::Client, recorder: &Recorder) {
        let due = {
            let mut d = self.debouncer.lock().expect("restart queue lock");
            let now = now();
            d.prune(now);
            d.take_due(now)
        };
        for restart in due {
            make_restart(client, recorder, &restart).await;
        }
    }
}

async fn make_restart(client: &kube::Client, recorder: &Recorder, restart: &Restart) {
    let w = &restart.workload;
    let api = workload_api(client.clone(), &w.namespace, w.kind);
    let patch = restart_patch(w.kind, &restart.token, jiff::Timestamp::now());
    let result = api
        .patch(
            &w.name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await;
    let (type_, reason, note) = match &result {
        Ok(_) => {
            info!(workload = %w.describe(), "rollout restart");
            (
                EventType::Normal,
                "RolloutRestarted",
                format!(
                    "restarted {} because the mirrored data changed",
                    w.describe()
                ),
            )
        }
        Err(e) => {
            warn!(workload = %w.describe(), error = %e, "rollout restart failed");
            let (reason, what) = unavailable_reason(e);
            (
                EventType::Warning,
                "RolloutRestartFailed",
                format!("could not restart {}: it {what} ({reason})", w.describe()),
            )
        }
    };
    for by in &restart.requested_by {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION)),
            kind: Some("VaultSecret".into()),
            namespace: Some(by.namespace.clone()),
            name: Some(by.name.clone()),
            uid: Some(by.uid.clone()),
            ..Default::default()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.clone()),
            action: "RolloutRestart".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(error = %e, "could not publish event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argo_rollouts_restart_through_spec_restart_at() {
        let now: jiff::Timestamp = "2026-12-02T01:02:03.456Z".parse().unwrap();
        assert_eq!(
            restart_patch(RolloutKind::Rollout, "hash", now),
            json!({"spec": {"restartAt": "2026-12-02T01:02:03Z"}})
        );
        assert_eq!(api_version(RolloutKind::Rollout), "argoproj.io/v1alpha1");
        for kind in [
            RolloutKind::Deployment,
            RolloutKind::StatefulSet,
            RolloutKind::DaemonSet,
        ] {
            assert_eq!(
                restart_patch(kind, "hash", now),
                json!({"spec": {"template": {"metadata": {"annotations": {DATA_HASH_ANNOTATION: "hash"}}}}})
            );
            assert_eq!(api_version(kind), "apps/v1");
        }
    }
}
