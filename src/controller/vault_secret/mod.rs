//! The VaultSecret controller: push declared data to PrivX, mirror PrivX data into a Kubernetes
//! Secret, correct drift, report honestly.
//!
//! `reconcile` runs the pipeline fetch → validate → plan ([`plan`], pure) → apply → status.
//! This module does the I/O of fetch and apply; it must not decide anything the plan can.

mod apply;
mod cleanup;
mod fetch;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use self::plan::{
    MirrorAction, Owner, PrivxAction, PrivxInput, Refusal, SourceInput, Target, WriteCause, reason,
};
use super::backoff::jittered_refresh;
use super::common::{self, Next, Stop};
use super::deletion::{Deleted, namespace_policy};
use super::refresh::{self, RefreshInput};
use super::tenancy::check_access;
use super::{Context, Error, FORCE_SYNC_ANNOTATION, REGENERATE_ANNOTATION};
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::vault_secret::Ownership;
use crate::crd::{DeletionPolicy, VaultSecret, VaultSecretStatus};
use privx_client::{PrivxError, SecretLocation};

/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "vaultsecret";

/// How soon a VaultSecret waiting for its source Secret looks again (an unlabelled Secret that
/// appears later is not seen by the narrow Secret watch).
const SOURCE_RETRY: Duration = Duration::from_secs(30);

/// The PrivX target of a VaultSecret: explicit `spec.name`, or the operator's template.
pub fn target_of(vs: &VaultSecret, ctx_template: &super::tenancy::NameTemplate) -> Target {
    let namespace = vs.namespace().unwrap_or_default();
    let name = vs
        .spec
        .name
        .clone()
        .unwrap_or_else(|| ctx_template.render(&namespace, &vs.name_any()));
    let location = match &vs.spec.owner {
        Some(owner) => SecretLocation::Personal {
            user_id: owner.user_id.clone(),
        },
        None => SecretLocation::Shared,
    };
    Target { location, name }
}

/// The refresh interval of an object (validated elsewhere; falls back to the default).
pub fn refresh_of(vs: &VaultSecret, default: Duration) -> Duration {
    vs.spec
        .refresh_interval
        .as_deref()
        .and_then(|s| crate::crd::duration::parse_duration(s).ok())
        .map(|d| d.clamp(Duration::from_secs(10), Duration::from_secs(7 * 86400)))
        .unwrap_or(default)
}

/// Entry point of every reconcile.
#[instrument(skip_all, fields(namespace = guard.namespace().unwrap_or_default(), name = guard.name_any()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<VaultSecret>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.synced.wait().await;
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(vs) => {
            Reconciler {
                vs,
                ctx: &ctx,
                recorded: Default::default(),
            }
            .run()
            .await
        }
        Err(invalid) if invalid.metadata.deletion_timestamp.is_some() => {
            match Deleted::fetch::<VaultSecret>(&ctx, invalid).await {
                Ok(Some(deleted)) => {
                    cleanup::cleanup(&ctx, &deleted, None, deleted.has_source()).await
                }
                Ok(None) => Ok(Action::await_change()),
                Err(e) => Err(e),
            }
        }
        Err(invalid) => {
            let key = object_key(invalid.metadata.namespace.as_deref(), &guard.name_any());
            common::report_invalid_object::<VaultSecret>(invalid, &ctx, CONTROLLER, &key).await
        }
    };
    common::record(&ctx, CONTROLLER, started, &result);
    result
}

/// Requeues a failed object with per-object exponential backoff.
pub fn error_policy(
    guard: Arc<DeserializeGuard<VaultSecret>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    common::requeue_after_failure(
        &ctx,
        &object_key(guard.namespace().as_deref(), &guard.name_any()),
        error,
    )
}

fn object_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// The key of an object in metrics and the backoff map: `namespace/name`.
pub fn key_of(guard: &DeserializeGuard<VaultSecret>) -> String {
    object_key(guard.namespace().as_deref(), &guard.name_any())
}

/// The object is gone (deleted, with or without a finalizer): it leaves the object gauge and
/// the backoff map.
pub fn forget(ctx: &Context, key: &str) {
    ctx.metrics.forget_object(CONTROLLER, key);
    ctx.backoff.reset(key);
}

/// One reconcile of one valid object.
struct Reconciler<'a> {
    vs: &'a VaultSecret,
    ctx: &'a Context,
    /// The object as the API returned it after this reconcile recorded its PrivX target
    /// (status written before the PrivX write); later status writes start from it.
    recorded: std::sync::Mutex<Option<VaultSecret>>,
}

impl Reconciler<'_> {
    fn namespace(&self) -> String {
        self.vs.namespace().unwrap_or_default()
    }

    fn key(&self) -> String {
        object_key(self.vs.namespace().as_deref(), &self.vs.name_any())
    }

    fn refresh(&self) -> Duration {
        refresh_of(self.vs, self.ctx.settings.default_refresh)
    }

    fn api(&self) -> Api<VaultSecret> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    fn secrets(&self) -> Api<KubeSecret> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    async fn run(self) -> Result<Action, Error> {
        if self.vs.meta().deletion_timestamp.is_some() {
            return self.cleanup().await;
        }
        let result = self.sync().await;
        let key = self.key();
        let latest = self.recorded.lock().expect("not poisoned").take();
        common::finish(
            self.ctx,
            &self.api(),
            latest.as_ref().unwrap_or(self.vs),
            CONTROLLER,
            &key,
            &key,
            result,
        )
        .await
    }

    /// fetch → validate → plan → apply → status. A refusal stops the pipeline with its reason.
    async fn sync(&self) -> Result<Action, Stop> {
        let ctx = self.ctx;
        let spec = &self.vs.spec;

        // Validate.
        common::invalid_spec(&crate::crd::validate::validate_vault_secret(spec))?;
        let target = target_of(self.vs, &ctx.settings.name_template);
        let namespace = self.namespace();
        let ns_policy = namespace_policy(ctx, &namespace);
        if let Err(message) = check_access(
            &ctx.settings.name_template,
            &namespace,
            &ns_policy,
            &target.name,
            target.owner_id(),
        ) {
            return Err((
                Refusal::new(reason::NOT_ALLOWED, message),
                Next::AwaitChange,
            ));
        }
        // Fetch what Kubernetes holds: source, template ConfigMaps, the mirror.
        let source = self.fetch_source().await?;
        let mirror_spec = spec.mirror.as_ref();
        let vs_name = self.vs.name_any();
        let template_texts = self.fetch_templates().await?;
        let templates = match mirror_spec {
            Some(m) => plan::mirror_templates(m, &template_texts)
                .map_err(|r| (r, Next::After(SOURCE_RETRY.min(self.refresh()))))?,
            None => Vec::new(),
        };
        let existing_mirror = match mirror_spec {
            Some(m) => self.existing_mirror(plan::mirror_name(m, &vs_name)).await?,
            None => None,
        };

        // Refresh policy and force-sync: is PrivX read at all?
        let status = self.vs.status.as_ref();
        let inputs = self.inputs_hash(&source, &template_texts);
        let decision = refresh::decide(&RefreshInput {
            policy: spec.refresh_policy(),
            interval: self.refresh(),
            force_sync: self.annotation(FORCE_SYNC_ANNOTATION),
            last_force_sync: status.and_then(|s| s.last_force_sync.as_deref()),
            synced_before: self.synced_before(&target),
            inputs_changed: status.and_then(|s| s.inputs_hash.as_deref()) != Some(inputs.as_str()),
            mirror_missing: mirror_spec.is_some() && existing_mirror.is_none(),
            regenerate_pending: matches!(source, SourceInput::Generate { .. })
                && self.annotation(REGENERATE_ANNOTATION).is_some()
                && self.annotation(REGENERATE_ANNOTATION)
                    != status.and_then(|s| s.regenerate_token.as_deref()),
        });
        if !decision.read_privx {
            return self.report_not_read(&target).await;
        }

        // Fetch from PrivX (as the namespace's PrivX identity, if that mode is on): roles, the
        // secret. A routine refresh of a read-only shared mirror reads the shared list pages,
        // which are read as the operator: never with per-namespace identity, where each
        // namespace must read as itself.
        let privx = super::identity::privx_for(ctx, &namespace).await?;
        let (read_roles, write_roles) = self.resolve_roles(&source).await?;
        let from_listing = if decision.routine
            && ctx.settings.namespace_identity.is_none()
            && matches!(source, SourceInput::ReadOnly)
            && target.location == SecretLocation::Shared
        {
            ctx.mirror_state
                .list_pages
                .get(
                    &ctx.privx,
                    &target.name,
                    refresh::listing_max_age(self.refresh()),
                )
                .await
                .map_err(|e| common::privx_stop(e, "list shared secrets"))?
        } else {
            None
        };
        let current = match from_listing {
            Some(secret) => Some(secret),
            None => match privx.get_secret(&target.location, &target.name).await {
                Ok(secret) => Some(secret),
                Err(PrivxError::NotFound { .. }) => None,
                Err(e) => {
                    return Err(common::privx_stop(
                        e,
                        &format!("read secret {}", target.describe()),
                    ));
                }
            },
        };

        if let Some(other) = self.other_claimant(&target, current.as_ref()) {
            return Err((
                Refusal::new(
                    reason::CONFLICT,
                    format!(
                        "PrivX secret {} is already declared by VaultSecret {other}",
                        target.describe()
                    ),
                ),
                Next::After(self.refresh()),
            ));
        }

        // Plan.
        let privx_plan = plan::plan_privx(&PrivxInput {
            spec,
            status,
            generation: self.vs.metadata.generation,
            target: &target,
            source,
            read_roles,
            write_roles,
            current: current.as_ref(),
            regenerate_request: self
                .vs
                .annotations()
                .get(REGENERATE_ANNOTATION)
                .map(String::as_str),
            hash_key: &ctx.settings.hmac_key,
            identity: ctx.settings.privx_identity.as_deref(),
        })
        .map_err(|r| (r, Next::After(self.refresh())))?;
        let bytes = plan::data_bytes(&privx_plan.data, None)
            .map_err(|m| (Refusal::new(reason::INVALID_SPEC, m), Next::AwaitChange))?;
        let hash = ctx.settings.hmac_key.hash(&bytes);
        let uid = self.vs.uid().unwrap_or_default();
        let owner = Owner {
            name: &vs_name,
            namespace: &namespace,
            uid: &uid,
        };
        let mirror_bytes = match mirror_spec {
            Some(m) => plan::mirror_bytes(m, &privx_plan.data, &templates)
                .map_err(|r| (r, Next::After(self.refresh())))?,
            None => BTreeMap::new(),
        };
        let mirror_hash = plan::mirror_hash(
            &ctx.settings.hmac_key,
            &hash,
            !templates.is_empty(),
            &mirror_bytes,
        );
        let mirror_action = plan::plan_mirror_bytes(
            mirror_spec,
            &owner,
            mirror_bytes,
            &mirror_hash,
            existing_mirror.as_deref(),
            decision.forced,
        )
        .map_err(|r| (r, Next::After(self.refresh())))?;

        // Apply: finalizer first (so a crash after the PrivX write still cleans up), PrivX, mirror,
        // rollout restarts, events, status.
        let wants_finalizer =
            spec.deletion_policy() == DeletionPolicy::Delete && privx_plan.ownership.is_some();
        self.set_finalizer(wants_finalizer)
            .await
            .map_err(common::error_stop)?;

        if wants_finalizer && privx_plan.action != PrivxAction::None {
            self.record_target(&target).await?;
        }
        match &privx_plan.action {
            PrivxAction::None => {}
            PrivxAction::Create(body) => {
                privx
                    .create_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| {
                        common::privx_stop(e, &format!("create secret {}", target.describe()))
                    })?;
            }
            PrivxAction::Update(body) => {
                privx
                    .update_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| {
                        common::privx_stop(e, &format!("update secret {}", target.describe()))
                    })?;
            }
        }
        if privx_plan.action != PrivxAction::None {
            // Nobody may read the old data from a listing taken before this write.
            ctx.mirror_state.list_pages.invalidate().await;
        }
        // What PrivX now records, known without reading it back: we are the author of what we
        // created and the last writer of what we wrote.
        let current_meta = plan::after_write(
            current.as_ref(),
            &privx_plan.action,
            ctx.settings.privx_identity.as_deref(),
            &common::now_rfc3339(),
            status.and_then(|s| s.privx.as_ref()),
        );

        match mirror_action {
            MirrorAction::NotDeclared | MirrorAction::InSync => {}
            MirrorAction::Apply(secret) => {
                self.apply_mirror(&secret).await?;
                let strays = plan::stray_keys(existing_mirror.as_deref(), &secret);
                if !strays.is_empty() {
                    let nulls: serde_json::Map<String, serde_json::Value> = strays
                        .into_iter()
                        .map(|k| (k, serde_json::Value::Null))
                        .collect();
                    let name = plan::mirror_name(mirror_spec.expect("declared"), &vs_name);
                    ctx.own_writes.begin("Secret", Some(&namespace), name);
                    let patched = self
                        .secrets()
                        .patch(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(&json!({"data": nulls})),
                        )
                        .await;
                    ctx.own_writes
                        .finish("Secret", Some(&namespace), name, patched.as_ref().ok());
                    patched.map_err(|e| {
                        common::kube_stop("remove keys added to the mirrored Secret", e)
                    })?;
                }
            }
            MirrorAction::Replace(secret) => {
                let name = secret.metadata.name.clone().unwrap_or_default();
                self.secrets()
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map_err(|e| {
                        common::kube_stop("delete mirrored Secret to change its type", e)
                    })?;
                self.apply_mirror(&secret).await?;
            }
        }

        let targets = mirror_spec
            .and_then(|m| m.rollout_restart_targets.clone())
            .unwrap_or_default();
        let restart = if templates.is_empty() {
            plan::needs_rollout(
                status.and_then(|s| s.data_hash.as_deref()),
                &hash,
                !targets.is_empty(),
            )
        } else {
            // With templates the mirror's own hash is what the application reads.
            let previous = existing_mirror
                .as_ref()
                .and_then(|m| m.annotations().get(super::DATA_HASH_ANNOTATION).cloned());
            plan::needs_rollout(previous.as_deref(), &mirror_hash, !targets.is_empty())
        };
        let targets_condition = if ctx.settings.rollout_restart && !targets.is_empty() {
            Some(self.restart_targets(&targets, restart, &mirror_hash).await)
        } else {
            None
        };

        if let Some(cause) = privx_plan.cause {
            let (reason, note) = match cause {
                WriteCause::Created => (
                    "Created",
                    format!("created PrivX secret {}", target.describe()),
                ),
                WriteCause::Updated => (
                    "Updated",
                    format!("updated PrivX secret {}", target.describe()),
                ),
                WriteCause::DriftCorrected => (
                    "DriftCorrected",
                    format!(
                        "PrivX secret {} was changed outside Kubernetes; the declared data and roles were put back",
                        target.describe()
                    ),
                ),
                WriteCause::Adopted => (
                    "Adopted",
                    format!("adopted and overwrote PrivX secret {}", target.describe()),
                ),
                WriteCause::Regenerated => (
                    "Regenerated",
                    format!(
                        "generated a new password for PrivX secret {}",
                        target.describe()
                    ),
                ),
            };
            info!(privx_name = %target.name, reason, "PrivX secret written");
            self.event(EventType::Normal, reason, note).await;
        }

        let new_status = VaultSecretStatus {
            conditions: Vec::new(),
            observed_generation: self.vs.metadata.generation,
            privx: Some(plan::privx_status(
                &target,
                &privx_plan,
                current_meta.as_ref(),
            )),
            data_hash: Some(hash),
            mirror_secret_name: mirror_spec.map(|m| plan::mirror_name(m, &vs_name).to_string()),
            regenerate_token: privx_plan.regenerate_token.clone(),
            last_force_sync: decision.last_force_sync.clone(),
            inputs_hash: Some(inputs),
        };
        let message = match privx_plan.ownership {
            None => format!("mirrored PrivX secret {}", target.describe()),
            Some(Ownership::Created | Ownership::Adopted) => {
                format!(
                    "PrivX secret {} matches the declared state",
                    target.describe()
                )
            }
        };
        let mut conditions = vec![
            DesiredCondition::new(condition::READY, true, reason::SYNCED, message.clone()),
            DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, message),
        ];
        conditions.extend(targets_condition);
        self.write_status(new_status, &conditions)
            .await
            .map_err(common::error_stop)?;
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, reason::SYNCED);
        Ok(match decision.requeue {
            Some(every) => Action::requeue(jittered_refresh(every)),
            None => Action::await_change(),
        })
    }

    fn annotation(&self, name: &str) -> Option<&str> {
        self.vs.annotations().get(name).map(String::as_str)
    }

    /// Whether the last reconcile synced this target successfully (Ready, with a data hash).
    fn synced_before(&self, target: &Target) -> bool {
        let Some(status) = self.vs.status.as_ref() else {
            return false;
        };
        status.data_hash.is_some()
            && status.privx.as_ref().is_some_and(|p| {
                p.name == target.name && p.owner_id.as_deref() == target.owner_id()
            })
            && condition::find(&status.conditions, condition::READY)
                .is_some_and(|c| c.status == "True" && c.reason == reason::SYNCED)
    }

    /// Deletion: see [`cleanup`].
    async fn cleanup(&self) -> Result<Action, Error> {
        let deleted = Deleted::of(self.ctx, self.vs);
        let computed = Some(target_of(self.vs, &self.ctx.settings.name_template));
        cleanup::cleanup(self.ctx, &deleted, computed, self.vs.spec.source.is_some()).await
    }
}
