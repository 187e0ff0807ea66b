//! The VaultSecret controller: push declared data to PrivX, mirror PrivX data into a Kubernetes
//! Secret, correct drift, report honestly.
//!
//! `reconcile` runs the pipeline fetch → validate → plan ([`plan`], pure) → apply → status.
//! This module does the I/O of fetch and apply; it must not decide anything the plan can.

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
use tracing::{info, instrument, warn};

use self::plan::{
    MirrorAction, Owner, PrivxAction, PrivxInput, Refusal, SourceInput, Target, WriteCause, reason,
};
use super::backoff::jittered_refresh;
use super::common::{self, Next, Stop, short_kube_error};
use super::deletion::{Deleted, namespace_policy};
use super::tenancy::check_access;
use super::{Context, Error, FIELD_MANAGER, REGENERATE_ANNOTATION};
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::vault_secret::Ownership;
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
        // Fetch: source, roles, PrivX.
        let source = self.fetch_source().await?;
        let (read_roles, write_roles) = self.resolve_roles(&source).await?;
        let current = match ctx.privx.get_secret(&target.location, &target.name).await {
            Ok(secret) => Some(secret),
            Err(PrivxError::NotFound { .. }) => None,
            Err(e) => {
                return Err(common::privx_stop(
                    e,
                    &format!("read secret {}", target.describe()),
                ));
            }
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
        let status = self.vs.status.as_ref();
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
        let vs_name = self.vs.name_any();
        let owner = Owner {
            name: &vs_name,
            namespace: &namespace,
            uid: &uid,
        };
        let mirror_spec = spec.mirror.as_ref();
        let existing_mirror = match mirror_spec {
            Some(m) => self.existing_mirror(plan::mirror_name(m, &vs_name)).await?,
            None => None,
        };
        let mirror_action = plan::plan_mirror(
            mirror_spec,
            &owner,
            &privx_plan.data,
            &hash,
            existing_mirror.as_deref(),
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
                ctx.privx
                    .create_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| {
                        common::privx_stop(e, &format!("create secret {}", target.describe()))
                    })?;
            }
            PrivxAction::Update(body) => {
                ctx.privx
                    .update_secret(&target.location, &target.name, body)
                    .await
                    .map_err(|e| {
                        common::privx_stop(e, &format!("update secret {}", target.describe()))
                    })?;
            }
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

        let previous_hash = status.and_then(|s| s.data_hash.as_deref());
        let targets = mirror_spec
            .and_then(|m| m.rollout_restart_targets.clone())
            .unwrap_or_default();
        if ctx.settings.rollout_restart
            && plan::needs_rollout(previous_hash, &hash, !targets.is_empty())
        {
            for t in &targets {
                self.restart(t, &hash).await;
            }
        }

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
        let conditions = vec![
            DesiredCondition::new(condition::READY, true, reason::SYNCED, message.clone()),
            DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, message),
        ];
        self.write_status(new_status, &conditions)
            .await
            .map_err(common::error_stop)?;
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, reason::SYNCED);
        Ok(Action::requeue(jittered_refresh(self.refresh())))
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
        let self_roles = &self.ctx.settings.self_roles;
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
            for name in self_roles {
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

    /// Bumps a pod-template annotation to the new data hash: the same value twice is a no-op for
    /// Kubernetes, so a retried reconcile never restarts twice.
    async fn restart(&self, target: &crate::crd::vault_secret::RolloutTarget, hash: &str) {
        use crate::crd::vault_secret::RolloutKind;
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": target.kind.as_str(),
            "metadata": {"name": target.name},
            "spec": {"template": {"metadata": {"annotations": {super::DATA_HASH_ANNOTATION: hash}}}},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let ns = self.namespace();
        let client = self.ctx.client.clone();
        let result = match target.kind {
            RolloutKind::Deployment => {
                Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client, &ns)
                    .patch(&target.name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
            RolloutKind::StatefulSet => {
                Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(client, &ns)
                    .patch(&target.name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
            RolloutKind::DaemonSet => {
                Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(client, &ns)
                    .patch(&target.name, &params, &Patch::Apply(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                self.event(
                    EventType::Normal,
                    "RolloutRestarted",
                    format!(
                        "restarted {} {} because the mirrored data changed",
                        target.kind.as_str(),
                        target.name
                    ),
                )
                .await
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "RolloutRestartFailed",
                    format!(
                        "could not restart {} {}: {}",
                        target.kind.as_str(),
                        target.name,
                        short_kube_error(&e)
                    ),
                )
                .await
            }
        }
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
