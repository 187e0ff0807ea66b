//! The PasswordPolicy controller: keeps a PrivX password policy as declared.
//!
//! Pipeline: validate → fetch (generation, current policy) → plan ([`plan`], pure) → apply →
//! status. It must not generate passwords (VaultSecrets do, from the same spec).

pub mod ownership;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};

use self::plan::{Found, PolicyAction, PolicyCause, reason};
use super::backoff::jittered_refresh;
use super::common::{self, Next, Stop};
use super::deletion::Deleted;
use super::{Context, Error};
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::{DeletionPolicy, PasswordPolicy, PasswordPolicyStatus};
use privx_client::PrivxError;

/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "passwordpolicy";

/// How often PrivX is read to correct drift.
pub const REFRESH: Duration = Duration::from_secs(600);

#[instrument(skip_all, fields(name = guard.name_any()))]
pub async fn reconcile(
    guard: Arc<DeserializeGuard<PasswordPolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.synced.wait().await;
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(policy) => {
            Reconciler {
                policy,
                ctx: &ctx,
                recorded: Default::default(),
            }
            .run()
            .await
        }
        Err(invalid) if invalid.metadata.deletion_timestamp.is_some() => {
            match Deleted::fetch::<PasswordPolicy>(&ctx, invalid).await {
                Ok(Some(deleted)) => cleanup(&ctx, &deleted, None).await,
                Ok(None) => Ok(Action::await_change()),
                Err(e) => Err(e),
            }
        }
        Err(invalid) => {
            common::report_invalid_object::<PasswordPolicy>(
                invalid,
                &ctx,
                CONTROLLER,
                &invalid.metadata.name.clone().unwrap_or_default(),
            )
            .await
        }
    };
    common::record(&ctx, CONTROLLER, started, &result);
    result
}

/// Deletion. With `deletionPolicy: Delete`, the policy status records is deleted once PrivX
/// confirms the claim (its creator, or for an adopted policy `spec.adopt` / its last writer); a
/// refused claim keeps the finalizer and says why. Without a record (a crash before the status
/// write), the policy of the recorded or computed name that PrivX says the operator created is
/// deleted. Works from status alone, so objects that no longer deserialise clean up too.
async fn cleanup(
    ctx: &Context,
    deleted: &Deleted,
    computed: Option<String>,
) -> Result<Action, Error> {
    use self::ownership::CleanupDecision;
    let key = deleted.name();
    let backoff_key = format!("passwordpolicy/{key}");
    ctx.metrics.forget_object(CONTROLLER, &key);
    if !deleted.has_finalizer() {
        return Ok(Action::await_change());
    }
    let identity = ctx.settings.privx_identity.as_deref();
    let status: Option<PasswordPolicyStatus> = deleted.typed_status();
    let fail = |e: PrivxError, action: String| async move {
        let blocked = matches!(
            e,
            PrivxError::InvalidRequest { .. } | PrivxError::AlreadyExists { .. }
        );
        let reason = if blocked {
            reason::DELETE_BLOCKED
        } else {
            common::privx_reason(&e)
        };
        let message = format!(
            "{action}: {e}; the finalizer stays and deletion is retried (set spec.deletionPolicy: Retain to let go)"
        );
        let _ = deleted.report(ctx, reason, &message).await;
        Err(Error::privx(action)(e))
    };
    let decision = if deleted.deletion_policy() != DeletionPolicy::Delete {
        CleanupDecision::Release
    } else if let Some((ownership, id)) =
        status.as_ref().and_then(|s| s.ownership.zip(s.id.clone()))
    {
        let current = match ctx.privx.get_policy(&id).await {
            Ok(p) => Some(p),
            Err(PrivxError::NotFound { .. }) => None,
            Err(e) => {
                return fail(e, format!("read password policy {id} before deleting it")).await;
            }
        };
        ownership::recorded_cleanup(ownership, current.as_ref(), identity)
    } else {
        let name = status
            .as_ref()
            .and_then(|s| s.name.clone())
            .or(computed)
            .or_else(|| {
                deleted
                    .spec
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| deleted.name());
        match ctx.privx.list_policies().await {
            Ok(listed) => ownership::unrecorded_cleanup(&listed, &name, identity),
            Err(e) => return fail(e, "list password policies before deleting".to_string()).await,
        }
    };
    match decision {
        CleanupDecision::Release => {}
        CleanupDecision::Refuse(refusal) => {
            tracing::warn!(
                reason = refusal.reason,
                "deletion of the PrivX password policy refused"
            );
            deleted
                .report(ctx, refusal.reason, &refusal.message)
                .await?;
            return Ok(Action::await_change());
        }
        CleanupDecision::Delete(id) => match ctx.privx.delete_policy(&id).await {
            Ok(()) => {
                deleted
                    .event(
                        ctx,
                        EventType::Normal,
                        "Deleted",
                        format!("deleted PrivX password policy {id}"),
                    )
                    .await
            }
            Err(PrivxError::NotFound { .. }) => {}
            Err(e) => {
                return fail(e, format!("PrivX refuses to delete password policy {id}")).await;
            }
        },
    }
    deleted.release_finalizer().await?;
    // The object is gone: forget its failures, so the map does not grow with deleted
    // objects and a new object of the same name starts without a long backoff.
    ctx.backoff.reset(&backoff_key);
    Ok(Action::await_change())
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<PasswordPolicy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    common::requeue_after_failure(&ctx, &format!("passwordpolicy/{}", guard.name_any()), error)
}

/// The policy is gone (deleted, with or without a finalizer): it leaves the object gauge and
/// the backoff map.
pub fn forget(ctx: &Context, name: &str) {
    ctx.metrics.forget_object(CONTROLLER, name);
    ctx.backoff.reset(&format!("passwordpolicy/{name}"));
}

struct Reconciler<'a> {
    policy: &'a PasswordPolicy,
    ctx: &'a Context,
    /// The object as the API returned it after this reconcile recorded the PrivX name
    /// (status written before the create); later status writes start from it.
    recorded: std::sync::Mutex<Option<PasswordPolicy>>,
}

impl Reconciler<'_> {
    fn api(&self) -> Api<PasswordPolicy> {
        Api::all(self.ctx.client.clone())
    }

    fn key(&self) -> String {
        self.policy.name_any()
    }

    fn backoff_key(&self) -> String {
        format!("passwordpolicy/{}", self.key())
    }

    async fn run(self) -> Result<Action, Error> {
        if self.policy.meta().deletion_timestamp.is_some() {
            return self.cleanup().await;
        }
        let result = self.sync().await;
        let latest = self.recorded.lock().expect("not poisoned").take();
        common::finish(
            self.ctx,
            &self.api(),
            latest.as_ref().unwrap_or(self.policy),
            CONTROLLER,
            &self.key(),
            &self.backoff_key(),
            result,
        )
        .await
    }

    async fn sync(&self) -> Result<Action, Stop> {
        let ctx = self.ctx;
        let spec = &self.policy.spec;
        common::invalid_spec(&crate::crd::validate::validate_password_policy(spec))?;
        let name = plan::privx_name(spec, &self.policy.name_any());
        let generation = ctx
            .privx
            .policy_generation()
            .await
            .map_err(|e| common::privx_stop(e, "detect the password-policy API generation"))?;
        let (desired, unsupported) =
            plan::desired_policy(spec, &name, generation).map_err(|r| (r, Next::AwaitChange))?;

        // Fetch: by the recorded id, else by name.
        let status = self.policy.status.as_ref();
        let recorded_id = status.and_then(|s| s.id.clone());
        let recorded = match &recorded_id {
            Some(id) => match ctx.privx.get_policy(id).await {
                Ok(p) => Some(p),
                Err(PrivxError::NotFound { .. }) => None,
                Err(e) => return Err(common::privx_stop(e, &format!("read password policy {id}"))),
            },
            None => None,
        };
        let by_name = if recorded.is_none() {
            ctx.privx
                .list_policies()
                .await
                .map_err(|e| common::privx_stop(e, "list password policies"))?
                .into_iter()
                .find(|p| p.name == name)
        } else {
            None
        };
        let found = match (&recorded, &by_name) {
            (Some(p), _) => Found::Recorded(p),
            (None, Some(p)) if recorded_id.is_some() && p.id == recorded_id => Found::Recorded(p),
            (None, Some(p)) => Found::ByName(p),
            (None, None) => Found::Nothing,
        };
        let generation_changed =
            status.and_then(|s| s.observed_generation) != self.policy.metadata.generation;
        let policy_plan = plan::plan_policy(
            &desired,
            found,
            status,
            spec.adopt(),
            generation_changed,
            ctx.settings.privx_identity.as_deref(),
        )
        .map_err(|r| (r, Next::After(REFRESH)))?;

        // Apply: finalizer before any create, then PrivX.
        let wants_finalizer = spec.deletion_policy() == DeletionPolicy::Delete;
        common::set_finalizer(self.ctx, &self.api(), self.policy, wants_finalizer)
            .await
            .map_err(common::error_stop)?;
        let id = match &policy_plan.action {
            PolicyAction::None => policy_plan.id.clone().unwrap_or_default(),
            PolicyAction::Create(p) => {
                if wants_finalizer {
                    self.record_name(&name).await?;
                }
                self.create(p).await?
            }
            PolicyAction::Update { id, policy } => {
                ctx.privx.update_policy(id, policy).await.map_err(|e| {
                    common::privx_stop(e, &format!("update password policy {name:?}"))
                })?;
                id.clone()
            }
        };
        let current = if policy_plan.action == PolicyAction::None {
            recorded.or(by_name)
        } else {
            ctx.privx.get_policy(&id).await.ok()
        };

        if let Some(cause) = policy_plan.cause {
            let (event_reason, note) = match cause {
                PolicyCause::Created => (
                    "Created",
                    format!("created PrivX password policy {name:?} (id {id})"),
                ),
                PolicyCause::Updated => {
                    ("Updated", format!("updated PrivX password policy {name:?}"))
                }
                PolicyCause::DriftCorrected => (
                    "DriftCorrected",
                    format!(
                        "PrivX password policy {name:?} was changed outside Kubernetes; the declared settings were put back"
                    ),
                ),
                PolicyCause::Adopted => (
                    "Adopted",
                    format!("adopted PrivX password policy {name:?} (id {id})"),
                ),
            };
            info!(privx_policy = %name, reason = event_reason, "PrivX password policy written");
            common::publish(
                &ctx.recorder,
                self.policy,
                EventType::Normal,
                event_reason,
                note,
            )
            .await;
        }

        let synced_message =
            format!("PrivX password policy {name:?} (id {id}) matches the declared settings");
        let conditions = if unsupported.is_empty() {
            vec![
                DesiredCondition::new(
                    condition::READY,
                    true,
                    reason::SYNCED,
                    synced_message.clone(),
                ),
                DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, synced_message),
            ]
        } else {
            let message = format!(
                "PrivX speaks the {generation:?} password-policy API, which has no {}; those fields were not sent (remove them, or upgrade PrivX)",
                unsupported.join(", ")
            );
            vec![
                DesiredCondition::new(
                    condition::READY,
                    true,
                    reason::UNSUPPORTED_FIELD,
                    message.clone(),
                ),
                DesiredCondition::new(condition::SYNCED, false, reason::UNSUPPORTED_FIELD, message),
            ]
        };
        let new_status = PasswordPolicyStatus {
            id: Some(id),
            name: Some(name),
            ownership: Some(policy_plan.ownership),
            created: current.as_ref().and_then(|c| c.created.clone()),
            updated: current.as_ref().and_then(|c| c.updated.clone()),
            conditions: Vec::new(),
            observed_generation: self.policy.metadata.generation,
        };
        self.write_status(new_status, &conditions)
            .await
            .map_err(common::error_stop)?;
        let ready_reason = if unsupported.is_empty() {
            reason::SYNCED
        } else {
            reason::UNSUPPORTED_FIELD
        };
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, ready_reason);
        Ok(Action::requeue(jittered_refresh(REFRESH)))
    }

    async fn cleanup(&self) -> Result<Action, Error> {
        let deleted = Deleted::of(self.ctx, self.policy);
        let computed = plan::privx_name(&self.policy.spec, &self.policy.name_any());
        cleanup(self.ctx, &deleted, Some(computed)).await
    }

    /// Records the PrivX name in status before the create (id still unknown), so a crash or
    /// a lost answer after the create leaves cleanup and the next reconcile a name to look for.
    async fn record_name(&self, name: &str) -> Result<(), Stop> {
        let current = self.policy.status.clone().unwrap_or_default();
        if current.name.as_deref() == Some(name) {
            return Ok(());
        }
        let status = PasswordPolicyStatus {
            name: Some(name.to_string()),
            ..current
        };
        let updated = common::apply_status_returning(&self.api(), self.policy, &status)
            .await
            .map_err(common::error_stop)?;
        *self.recorded.lock().expect("not poisoned") = Some(updated);
        Ok(())
    }

    /// Creates the policy once. The client never repeats a create; when the outcome is unknown
    /// (timeout, lost connection, 5xx) or PrivX says the name exists, the policies are listed
    /// and the one this create made is claimed (the declared settings, no other creator) — so
    /// one intent never becomes two policies.
    async fn create(&self, desired: &privx_client::PasswordPolicy) -> Result<String, Stop> {
        let ctx = self.ctx;
        let action = format!("create password policy {:?}", desired.name);
        let error = match ctx.privx.create_policy(desired).await {
            Ok(id) => return Ok(id),
            Err(e @ (PrivxError::Unavailable { .. } | PrivxError::AlreadyExists { .. })) => e,
            Err(e) => return Err(common::privx_stop(e, &action)),
        };
        let listed = ctx
            .privx
            .list_policies()
            .await
            .map_err(|_| common::privx_stop(error.clone(), &action))?;
        match ownership::created_by_us(&listed, desired, ctx.settings.privx_identity.as_deref()) {
            Some(p) => {
                info!(privx_policy = %desired.name, "the create's answer was lost; PrivX shows the policy it made, which is claimed");
                Ok(p.id.clone().unwrap_or_default())
            }
            None => Err(common::privx_stop(error, &action)),
        }
    }

    async fn write_status(
        &self,
        status: PasswordPolicyStatus,
        conditions: &[DesiredCondition],
    ) -> Result<(), Error> {
        common::write_status(&self.api(), self.policy, status, conditions).await
    }
}
