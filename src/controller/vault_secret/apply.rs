//! The apply step: executes a [`Plan`] in the safe order — finalizer and cleanup target before
//! the PrivX write (so a crash after it still cleans up), PrivX, the mirror, rollout restarts,
//! events, status. Decides nothing.

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::info;

use super::Reconciler;
use super::plan::{MirrorAction, Plan, PrivxAction, Target};
use crate::controller::core::FIELD_MANAGER;
use crate::controller::core::{self, Stop};
use crate::controller::vault_secret::restart::{Requester, Workload};
use privx_client::PrivxClient;

impl Reconciler<'_> {
    /// Applies `plan`. `privx`: the client to write PrivX with (`None` when PrivX was not read,
    /// and the plan writes nothing there).
    pub(super) async fn apply(
        &self,
        plan: Plan,
        target: &Target,
        privx: Option<&PrivxClient>,
    ) -> Result<Action, Stop> {
        let ctx = self.ctx;
        *self.failure_status.lock().expect("not poisoned") = plan.failure_status.clone();
        core::set_metadata(ctx, &self.api(), self.vs, &plan.metadata)
            .await
            .map_err(core::error_stop)?;

        if let (Some(privx), PrivxAction::Create(_) | PrivxAction::Update(_)) = (privx, &plan.privx)
        {
            let written = match &plan.privx {
                PrivxAction::Create(body) => privx
                    .create_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| ("create", e)),
                PrivxAction::Update(body) => privx
                    .update_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| ("update", e)),
                PrivxAction::None => Ok(()),
            };
            written.map_err(|(verb, e)| {
                core::privx_stop(e, &format!("{verb} secret {}", target.describe()))
            })?;
            // Nobody may read the old data from a listing taken before this write.
            ctx.list_pages.invalidate();
            info!(privx_name = %target.name, "PrivX secret written");
        }

        match &plan.mirror {
            MirrorAction::NotDeclared | MirrorAction::InSync => {}
            MirrorAction::Apply(secret) => {
                self.apply_mirror(secret).await?;
                self.remove_stray_keys(secret, &plan.stray_keys).await?;
            }
            MirrorAction::Replace(secret) => {
                let name = secret.metadata.name.clone().unwrap_or_default();
                self.secrets()
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map_err(|e| {
                        core::kube_stop(
                            "delete mirrored Secret to change its type or immutable data",
                            e,
                        )
                    })?;
                self.apply_mirror(secret).await?;
            }
            MirrorAction::Patch { secret, takeover } => {
                self.patch_mirror(secret, &plan.stray_keys).await?;
                if *takeover {
                    info!(secret = ?secret.metadata.name, "existing Secret taken over as the mirror");
                }
            }
        }

        for t in &plan.restarts {
            let namespace = self.namespace();
            ctx.restarts
                .request(
                    &ctx.client,
                    &ctx.recorder,
                    ctx.settings.restart_debounce,
                    Workload {
                        namespace: namespace.clone(),
                        kind: t.kind,
                        name: t.name.clone(),
                    },
                    &plan.restart_token,
                    Requester {
                        namespace,
                        name: self.vs.name_any(),
                        uid: self.vs.uid().unwrap_or_default(),
                    },
                )
                .await;
        }
        self.report(plan.events, plan.status, &plan.conditions, plan.requeue)
            .await
    }

    /// Keys added to the mirror by hand: server-side apply cannot remove fields another manager
    /// owns, so they are removed by a merge patch.
    async fn remove_stray_keys(&self, secret: &KubeSecret, strays: &[String]) -> Result<(), Stop> {
        if strays.is_empty() {
            return Ok(());
        }
        let nulls: serde_json::Map<String, serde_json::Value> = strays
            .iter()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let namespace = self.namespace();
        self.ctx.own_writes.begin("Secret", Some(&namespace), name);
        let patched = self
            .secrets()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"data": nulls})),
            )
            .await;
        self.ctx
            .own_writes
            .finish("Secret", Some(&namespace), name, patched.as_ref().ok());
        patched.map_err(|e| core::kube_stop("remove keys added to the mirrored Secret", e))?;
        Ok(())
    }

    /// One merge patch that sets the owner references as planned (a list replaces the whole
    /// list: the only way to drop another manager's controller reference without deleting the
    /// Secret), adds our labels and annotations, and sets the data (keys added by hand
    /// removed). Never a delete: the Secret keeps its name and uid.
    async fn patch_mirror(&self, secret: &KubeSecret, strays: &[String]) -> Result<(), Stop> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut data: serde_json::Map<String, serde_json::Value> = strays
            .iter()
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        let value = serde_json::to_value(secret).expect("a Secret serializes");
        if let Some(planned) = value.get("data").and_then(|d| d.as_object()) {
            data.extend(planned.clone());
        }
        let owners = match secret.metadata.owner_references.as_deref() {
            None | Some([]) => serde_json::Value::Null,
            Some(list) => json!(list),
        };
        let mut body = json!({
            "metadata": {
                "labels": secret.metadata.labels,
                "annotations": secret.metadata.annotations,
                "ownerReferences": owners,
            },
            "data": data,
        });
        if secret.immutable == Some(true) {
            body["immutable"] = json!(true);
        }
        // The version the Secret was read at: a compare-and-set (see `expect_version`).
        if let Some(version) = &secret.metadata.resource_version {
            body["metadata"]["resourceVersion"] = json!(version);
        }
        let namespace = self.namespace();
        self.ctx.own_writes.begin("Secret", Some(&namespace), &name);
        let patched = self
            .secrets()
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&body),
            )
            .await;
        self.ctx
            .own_writes
            .finish("Secret", Some(&namespace), &name, patched.as_ref().ok());
        patched.map_err(|e| core::kube_stop("take over the mirrored Secret", e))?;
        Ok(())
    }

    async fn apply_mirror(&self, secret: &KubeSecret) -> Result<(), Stop> {
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
        written.map_err(|e| core::kube_stop("write mirrored Secret", e))?;
        Ok(())
    }
}
