//! The apply step: finalizer, mirror, rollout restarts, events and status writes.

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;

use super::plan::{self, Target, reason};
use super::{CONTROLLER, Reconciler};
use crate::controller::common::{self, Stop};
use crate::controller::restart::{self, Requester, Workload};
use crate::controller::{Error, FIELD_MANAGER, FORCE_SYNC_ANNOTATION};
use crate::crd::VaultSecretStatus;
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::vault_secret::{RefreshPolicy, RolloutTarget};

impl Reconciler<'_> {
    /// The policy says PrivX is not read now: status keeps what the last sync recorded and
    /// says why; the next reconcile comes with a change.
    pub(super) async fn report_not_read(&self, target: &Target) -> Result<Action, Stop> {
        let policy = self.vs.spec.refresh_policy();
        let message = match policy {
            RefreshPolicy::CreatedOnce => format!(
                "mirror of PrivX secret {} written once (refreshPolicy CreatedOnce); change the {FORCE_SYNC_ANNOTATION} annotation to rewrite it",
                target.describe()
            ),
            _ => format!(
                "PrivX secret {} synced; nothing changed since (refreshPolicy {policy:?})",
                target.describe()
            ),
        };
        let mut status = self.vs.status.clone().unwrap_or_default();
        status.observed_generation = self.vs.metadata.generation;
        let mut conditions = vec![
            DesiredCondition::new(condition::READY, true, reason::SYNCED, message.clone()),
            DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, message),
        ];
        // Keep what was last known of the restart targets.
        if let Some(c) = condition::find(
            self.vs
                .status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .cloned()
                .collect::<Vec<_>>()
                .as_slice(),
            restart::CONDITION,
        ) {
            conditions.push(DesiredCondition::new(
                restart::CONDITION,
                c.status == "True",
                restart::reason_of(&c.reason),
                c.message.clone(),
            ));
        }
        self.write_status(status, &conditions)
            .await
            .map_err(common::error_stop)?;
        self.ctx
            .metrics
            .object_condition(CONTROLLER, &self.key(), true, reason::SYNCED);
        Ok(Action::await_change())
    }

    /// Checks every restart target (it exists and may be read) and, when the data changed,
    /// asks the shared restart queue to restart it (debounced). A target that cannot be
    /// restarted is reported in the `RestartTargets` condition and an event; the data sync
    /// itself does not fail.
    pub(super) async fn restart_targets(
        &self,
        targets: &[RolloutTarget],
        restart: bool,
        token: &str,
    ) -> DesiredCondition {
        let namespace = self.namespace();
        let mut problems = Vec::new();
        let mut reason_code = restart::AVAILABLE;
        for t in targets {
            let api = restart::workload_api(self.ctx.client.clone(), &namespace, t.kind);
            match api.get(&t.name).await {
                Ok(_) => {
                    if restart {
                        self.ctx
                            .mirror_state
                            .restarts
                            .request(
                                &self.ctx.client,
                                &self.ctx.recorder,
                                self.ctx.settings.restart_debounce,
                                Workload {
                                    namespace: namespace.clone(),
                                    kind: t.kind,
                                    name: t.name.clone(),
                                },
                                token,
                                Requester {
                                    namespace: namespace.clone(),
                                    name: self.vs.name_any(),
                                    uid: self.vs.uid().unwrap_or_default(),
                                },
                            )
                            .await;
                    }
                }
                Err(e) => {
                    let (code, what) = restart::unavailable_reason(&e);
                    reason_code = code;
                    problems.push(format!("{} {} {what}", t.kind.as_str(), t.name));
                }
            }
        }
        if problems.is_empty() {
            return DesiredCondition::new(
                restart::CONDITION,
                true,
                restart::AVAILABLE,
                "every restart target exists and can be restarted",
            );
        }
        let message = format!(
            "restart target(s) not restarted: {} (the data is synced)",
            problems.join("; ")
        );
        let previous = self
            .vs
            .status
            .as_ref()
            .and_then(|s| condition::find(&s.conditions, restart::CONDITION))
            .map(|c| c.message.clone());
        if previous.as_deref() != Some(message.as_str()) {
            self.event(
                EventType::Warning,
                "RolloutTargetUnavailable",
                message.clone(),
            )
            .await;
        }
        DesiredCondition::new(restart::CONDITION, false, reason_code, message)
    }

    pub(super) async fn apply_mirror(&self, secret: &KubeSecret) -> Result<(), Stop> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(secret).expect("a Secret serializes");
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("Secret");
        let namespace = self.namespace();
        self.ctx.own_writes.begin("Secret", Some(&namespace), &name);
        let written = self
            .secrets()
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await;
        self.ctx
            .own_writes
            .finish("Secret", Some(&namespace), &name, written.as_ref().ok());
        written.map_err(|e| common::kube_stop("write mirrored Secret", e))?;
        Ok(())
    }

    pub(super) async fn set_finalizer(&self, wanted: bool) -> Result<(), Error> {
        common::set_finalizer(self.ctx, &self.api(), self.vs, wanted).await
    }

    /// Records the PrivX target in status before writing to PrivX (intent: name and owner,
    /// no ownership yet), so that a crash or a failed status write after the PrivX write still
    /// leaves cleanup something to find. Only cleanup reads it, so only objects with the
    /// finalizer write it; skipped when status already names this target.
    pub(super) async fn record_target(&self, target: &Target) -> Result<(), Stop> {
        let current = self.vs.status.clone().unwrap_or_default();
        if let Some(intent) = plan::intent_status(current.privx.as_ref(), target) {
            let status = VaultSecretStatus {
                privx: Some(intent),
                ..current
            };
            let updated = common::apply_status_returning(&self.api(), self.vs, &status)
                .await
                .map_err(common::error_stop)?;
            *self.recorded.lock().expect("not poisoned") = Some(updated);
        }
        Ok(())
    }

    pub(super) async fn write_status(
        &self,
        status: VaultSecretStatus,
        conditions: &[DesiredCondition],
    ) -> Result<(), Error> {
        common::write_status(&self.api(), self.vs, status, conditions).await
    }

    pub(super) async fn event(&self, type_: EventType, reason: &str, note: String) {
        common::publish(&self.ctx.recorder, self.vs, type_, reason, note).await
    }
}
