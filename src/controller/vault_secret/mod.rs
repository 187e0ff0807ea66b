//! The VaultSecret controller: push declared data to PrivX, mirror PrivX data into a Kubernetes
//! Secret, correct drift, report honestly.
//!
//! `reconcile` runs the pipeline fetch → validate → plan ([`plan`], pure) → apply → status.
//! This module does the I/O of fetch and apply; it must not decide anything the plan can.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use self::plan::{
    MirrorAction, Owner, PrivxAction, PrivxInput, Refusal, SourceInput, Target, WriteCause, reason,
};
use super::backoff::jittered_refresh;
use super::common::{self, Next, Stop};
use super::deletion::{Deleted, namespace_policy};
use super::refresh::{self, RefreshInput};
use super::restart::{self, Requester, Workload};
use super::tenancy::check_access;
use super::{Context, Error, FIELD_MANAGER, FORCE_SYNC_ANNOTATION, REGENERATE_ANNOTATION};
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::vault_secret::{Ownership, RefreshPolicy, RolloutTarget};
use crate::crd::{DeletionPolicy, VaultSecret, VaultSecretStatus};
use privx_client::{PrivxError, SecretData, SecretLocation};

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
                Ok(Some(deleted)) => cleanup(&ctx, &deleted, None, deleted.has_source()).await,
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

/// Deletion. With `deletionPolicy: Delete`, the PrivX secret status records is deleted only
/// after a re-check: its name and owner must be reachable from the namespace (the tenancy rule
/// of creation) and PrivX's author must confirm the claim (status is writable by tenants). A
/// status without a record (a crash before it was written) falls back to the intent or the
/// computed target, deleted only when PrivX names the operator as its author. A refused claim
/// keeps the finalizer (a person removes it to let go) and says why; everything else releases
/// it. Works from status alone, so objects whose spec no longer deserialises clean up too
/// (`computed` is then `None`).
async fn cleanup(
    ctx: &Context,
    deleted: &Deleted,
    computed: Option<Target>,
    writes: bool,
) -> Result<Action, Error> {
    use self::plan::ownership::{
        CleanupDecision, CleanupInput, cleanup_candidate, cleanup_decision,
    };
    let namespace = deleted.meta.namespace.clone().unwrap_or_default();
    let key = object_key(Some(&namespace), &deleted.name());
    ctx.metrics.forget_object(CONTROLLER, &key);
    if !deleted.has_finalizer() {
        return Ok(Action::await_change());
    }
    let status: Option<VaultSecretStatus> = deleted.typed_status();
    let recorded = status.as_ref().and_then(|s| s.privx.as_ref());
    let policy = namespace_policy(ctx, &namespace);
    let adopt = deleted.adopt();
    let candidate = cleanup_candidate(&CleanupInput {
        namespace: &namespace,
        template: &ctx.settings.name_template,
        namespace_policy: &policy,
        deletion_policy: deleted.deletion_policy(),
        adopt,
        writes,
        recorded,
        computed,
    });
    let candidate = match candidate {
        Ok(Some(c)) => c,
        Ok(None) => {
            deleted.release_finalizer().await?;
            ctx.backoff.reset(&key);
            return Ok(Action::await_change());
        }
        Err(refusal) => {
            warn!(
                reason = refusal.reason,
                "deletion of the PrivX secret refused"
            );
            deleted
                .report(ctx, refusal.reason, &refusal.message)
                .await?;
            return Ok(Action::await_change());
        }
    };
    let target = &candidate.target;
    let fail = |e: PrivxError, action: String| async move {
        let message = format!("{action}: {e} (set spec.deletionPolicy: Retain to let go)");
        let _ = deleted
            .report(ctx, common::privx_reason(&e), &message)
            .await;
        Err(Error::privx(action)(e))
    };
    let current = match ctx
        .privx
        .get_secret_metadata(&target.location, &target.name)
        .await
    {
        Ok(secret) => Some(secret),
        Err(PrivxError::NotFound { .. }) => None,
        Err(e) => {
            return fail(
                e,
                format!("read PrivX secret {} before deleting it", target.describe()),
            )
            .await;
        }
    };
    match cleanup_decision(
        &candidate,
        current.as_ref(),
        ctx.settings.privx_identity.as_deref(),
        adopt,
    ) {
        CleanupDecision::Release => {}
        CleanupDecision::Refuse(refusal) => {
            warn!(
                reason = refusal.reason,
                "deletion of the PrivX secret refused"
            );
            deleted
                .report(ctx, refusal.reason, &refusal.message)
                .await?;
            return Ok(Action::await_change());
        }
        CleanupDecision::Delete => match ctx
            .privx
            .delete_secret(&target.location, &target.name)
            .await
        {
            Ok(()) => {
                deleted
                    .event(
                        ctx,
                        EventType::Normal,
                        "Deleted",
                        format!("deleted PrivX secret {}", target.describe()),
                    )
                    .await
            }
            Err(PrivxError::NotFound { .. }) => {}
            Err(e) => {
                return fail(
                    e,
                    format!("cannot delete PrivX secret {}", target.describe()),
                )
                .await;
            }
        },
    }
    deleted.release_finalizer().await?;
    ctx.backoff.reset(&key);
    Ok(Action::await_change())
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

    /// The keyed hash of what this sync reads besides PrivX (see `status.inputsHash`).
    fn inputs_hash(&self, source: &SourceInput, templates: &[Option<String>]) -> String {
        let source_bytes = match source {
            SourceInput::ReadOnly => Vec::new(),
            SourceInput::Secret(data) => serde_json::to_vec(&data.0).unwrap_or_default(),
            SourceInput::Generate { .. } => {
                let name = self
                    .vs
                    .spec
                    .source
                    .as_ref()
                    .and_then(|s| s.generate.as_ref())
                    .map(|g| g.password_policy_ref.name.clone())
                    .unwrap_or_default();
                self.ctx
                    .policies
                    .state()
                    .iter()
                    .find(|p| p.name_any() == name)
                    .and_then(|p| p.0.as_ref().ok())
                    .map(|p| serde_json::to_vec(&p.spec).unwrap_or_default())
                    .unwrap_or_default()
            }
        };
        let template_bytes = serde_json::to_vec(templates).unwrap_or_default();
        refresh::inputs_hash(
            &self.ctx.settings.hmac_key,
            self.vs.metadata.generation,
            &[("source", &source_bytes), ("templates", &template_bytes)],
        )
    }

    /// The policy says PrivX is not read now: status keeps what the last sync recorded and
    /// says why; the next reconcile comes with a change.
    async fn report_not_read(&self, target: &Target) -> Result<Action, Stop> {
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

    /// The texts of `spec.mirror.templateFrom`, in order (`None`: ConfigMap or key missing).
    async fn fetch_templates(&self) -> Result<Vec<Option<String>>, Stop> {
        let Some(from) = self
            .vs
            .spec
            .mirror
            .as_ref()
            .and_then(|m| m.template_from.as_ref())
        else {
            return Ok(Vec::new());
        };
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let mut out = Vec::new();
        for f in from {
            let cm = api
                .get_opt(&f.config_map_ref.name)
                .await
                .map_err(|e| common::kube_stop("read template ConfigMap", e))?;
            out.push(
                cm.and_then(|c| c.data)
                    .and_then(|d| d.get(&f.config_map_ref.key).cloned()),
            );
        }
        Ok(out)
    }

    /// Checks every restart target (it exists and may be read) and, when the data changed,
    /// asks the shared restart queue to restart it (debounced). A target that cannot be
    /// restarted is reported in the `RestartTargets` condition and an event; the data sync
    /// itself does not fail.
    async fn restart_targets(
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

    /// Another VaultSecret that has the claim on the same PrivX secret (see
    /// [`plan::claimant`]): its key, or `None` when this object is the claimant.
    fn other_claimant(
        &self,
        target: &Target,
        current: Option<&privx_client::Secret>,
    ) -> Option<String> {
        let candidate = |vs: &VaultSecret| plan::Candidate {
            key: object_key(vs.namespace().as_deref(), &vs.name_any()),
            created: vs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            uid: vs.uid().unwrap_or_default(),
            records_ownership: plan::records_ownership(vs.status.as_ref(), target),
        };
        let me = candidate(self.vs);
        let others: Vec<plan::Candidate> = self
            .ctx
            .every_vault_secret()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|other| {
                other.uid() != self.vs.uid() && other.metadata.deletion_timestamp.is_none()
            })
            .filter(|other| &target_of(other, &self.ctx.settings.name_template) == target)
            .map(candidate)
            .collect();
        let author_is_operator = current.is_some_and(|c| {
            crate::controller::may_be_ours(
                c.author.as_deref(),
                self.ctx.settings.privx_identity.as_deref(),
            )
        });
        plan::claimant(&me, &others, author_is_operator)
    }

    async fn fetch_source(&self) -> Result<SourceInput, Stop> {
        let Some(source) = &self.vs.spec.source else {
            return Ok(SourceInput::ReadOnly);
        };
        if let Some(secret_ref) = &source.secret_ref {
            let secret = self
                .secrets()
                .get_opt(&secret_ref.name)
                .await
                .map_err(|e| common::kube_stop("read source Secret", e))?
                .ok_or_else(|| {
                    (
                        Refusal::new(
                            reason::SOURCE_NOT_FOUND,
                            format!(
                                "source Secret {}/{} not found",
                                self.namespace(),
                                secret_ref.name
                            ),
                        ),
                        Next::After(SOURCE_RETRY.min(self.refresh())),
                    )
                })?;
            let all = secret.data.unwrap_or_default();
            let wanted: Vec<String> = match &secret_ref.keys {
                Some(keys) => keys.clone(),
                None => all.keys().cloned().collect(),
            };
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|k| !all.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err((
                    Refusal::new(
                        reason::SOURCE_NOT_FOUND,
                        format!(
                            "source Secret {}/{} has no key(s) {}",
                            self.namespace(),
                            secret_ref.name,
                            missing.join(", ")
                        ),
                    ),
                    Next::After(SOURCE_RETRY.min(self.refresh())),
                ));
            }
            let mut data = BTreeMap::new();
            for key in wanted {
                let bytes = &all[&key].0;
                let text = String::from_utf8(bytes.clone()).map_err(|_| {
                    (
                        Refusal::new(
                            reason::INVALID_SPEC,
                            format!(
                                "source Secret {}/{} key {key:?} is not UTF-8 text; PrivX stores text",
                                self.namespace(),
                                secret_ref.name
                            ),
                        ),
                        Next::AwaitChange,
                    )
                })?;
                data.insert(key, serde_json::Value::String(text));
            }
            return Ok(SourceInput::Secret(SecretData(data)));
        }
        let generate = source
            .generate
            .as_ref()
            .expect("validated: exactly one source");
        let policy_name = &generate.password_policy_ref.name;
        let policy = self
            .ctx
            .policies
            .state()
            .into_iter()
            .find(|p| p.name_any() == *policy_name);
        let not_found = || {
            (
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} not found"),
                ),
                Next::After(self.refresh()),
            )
        };
        let policy = policy.ok_or_else(not_found)?;
        let policy = policy.0.as_ref().map_err(|e| {
            (
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} is invalid: {}", e.error),
                ),
                Next::AwaitChange,
            )
        })?;
        let rules = crate::password::PasswordRules::from(&policy.spec);
        let candidate = crate::password::generate(&rules).map_err(|e| {
            (
                Refusal::new(
                    reason::INVALID_SPEC,
                    format!("PasswordPolicy {policy_name} cannot generate a password: {e}"),
                ),
                Next::AwaitChange,
            )
        })?;
        Ok(SourceInput::Generate {
            key: generate.key.clone(),
            candidate,
        })
    }

    async fn resolve_roles(
        &self,
        source: &SourceInput,
    ) -> Result<(Vec<String>, Vec<String>), Stop> {
        let spec = &self.vs.spec;
        if matches!(source, SourceInput::ReadOnly) {
            if spec.read_roles.as_ref().is_some_and(|r| !r.is_empty())
                || spec.write_roles.as_ref().is_some_and(|r| !r.is_empty())
            {
                return Err((
                    Refusal::new(
                        reason::INVALID_SPEC,
                        "spec.readRoles and spec.writeRoles need spec.source: without a source the operator only reads the secret",
                    ),
                    Next::AwaitChange,
                ));
            }
            return Ok((Vec::new(), Vec::new()));
        }
        let self_roles = super::identity::self_roles_for(self.ctx, &self.namespace())
            .map_err(|refusal| (refusal, Next::After(self.refresh())))?;
        let mut names: Vec<String> = self_roles.clone();
        for list in [&spec.read_roles, &spec.write_roles].into_iter().flatten() {
            names.extend(list.iter().filter_map(|r| r.name.clone()));
        }
        let resolved = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.ctx
                .roles
                .resolve(&self.ctx.privx, &names)
                .await
                .map_err(|e| common::privx_stop(e, "resolve role names"))?
        };
        let lookup = |field: &str,
                      i: usize,
                      r: &crate::crd::vault_secret::RoleRef|
         -> Result<String, Stop> {
            if let Some(id) = &r.id {
                return Ok(id.clone());
            }
            let name = r.name.clone().unwrap_or_default();
            resolved.get(&name).cloned().flatten().ok_or_else(|| {
                (
                    Refusal::new(
                        reason::INVALID_SPEC,
                        format!("{field}[{i}]: role {name:?} does not exist in PrivX"),
                    ),
                    Next::After(self.refresh().min(Duration::from_secs(300))),
                )
            })
        };
        let mut out = Vec::new();
        for (field, list) in [
            ("spec.readRoles", &spec.read_roles),
            ("spec.writeRoles", &spec.write_roles),
        ] {
            let mut ids = Vec::new();
            for (i, r) in list.iter().flatten().enumerate() {
                ids.push(lookup(field, i, r)?);
            }
            for name in &self_roles {
                let id = resolved.get(name).cloned().flatten().ok_or_else(|| {
                    (
                        Refusal::new(
                            reason::INVALID_SPEC,
                            format!("the operator's own role {name:?} (--privx-self-roles) does not exist in PrivX"),
                        ),
                        Next::After(self.refresh().min(Duration::from_secs(300))),
                    )
                })?;
                ids.push(id);
            }
            ids.sort();
            ids.dedup();
            out.push(ids);
        }
        let write = out.pop().unwrap_or_default();
        let read = out.pop().unwrap_or_default();
        Ok((read, write))
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
        written.map_err(|e| common::kube_stop("write mirrored Secret", e))?;
        Ok(())
    }

    /// The mirrored Secret as the store holds it; a Secret not in the store (not labelled as
    /// ours, or not seen yet) is read, so that a foreign Secret of that name is refused, never
    /// overwritten.
    async fn existing_mirror(&self, name: &str) -> Result<Option<Arc<KubeSecret>>, Stop> {
        if let Some(mirror) = self.ctx.mirror(&self.namespace(), name) {
            return Ok(Some(mirror));
        }
        let read = self
            .secrets()
            .get_opt(name)
            .await
            .map_err(|e| common::kube_stop("read mirrored Secret", e))?;
        Ok(read.map(Arc::new))
    }

    async fn set_finalizer(&self, wanted: bool) -> Result<(), Error> {
        common::set_finalizer(self.ctx, &self.api(), self.vs, wanted).await
    }

    /// Deletion: see [`cleanup`].
    async fn cleanup(&self) -> Result<Action, Error> {
        let deleted = Deleted::of(self.ctx, self.vs);
        let computed = Some(target_of(self.vs, &self.ctx.settings.name_template));
        cleanup(self.ctx, &deleted, computed, self.vs.spec.source.is_some()).await
    }

    /// Records the PrivX target in status before writing to PrivX (intent: name and owner,
    /// no ownership yet), so that a crash or a failed status write after the PrivX write still
    /// leaves cleanup something to find. Only cleanup reads it, so only objects with the
    /// finalizer write it; skipped when status already names this target.
    async fn record_target(&self, target: &Target) -> Result<(), Stop> {
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

    async fn write_status(
        &self,
        status: VaultSecretStatus,
        conditions: &[DesiredCondition],
    ) -> Result<(), Error> {
        common::write_status(&self.api(), self.vs, status, conditions).await
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        common::publish(&self.ctx.recorder, self.vs, type_, reason, note).await
    }
}
