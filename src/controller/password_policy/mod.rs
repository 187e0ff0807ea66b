//! The PasswordPolicy controller: keeps a PrivX password policy as declared.
//!
//! Pipeline: validate → fetch (generation, current policy) → plan ([`plan`], pure) → apply →
//! status. It must not generate passwords (VaultSecrets do, from the same spec).

pub mod ownership;
pub mod plan;
pub mod report;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};

use self::plan::{Found, PolicyAction, reason};
use super::backoff::jittered_refresh;
use super::common::{self, Next, Stop};
use super::deletion::{CleanupTarget, Deleted};
use super::{Context, Error};
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
    let key = guard.name_any();
    common::reconcile_guarded(
        &guard,
        &ctx,
        CONTROLLER,
        &key,
        async |policy| {
            Reconciler {
                policy,
                ctx: &ctx,
                failure_status: Mutex::new(None),
            }
            .run()
            .await
        },
        async |deleted| cleanup(&ctx, &deleted, None).await,
    )
    .await
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
        // Status, else the name recorded with the finalizer, else the computed one.
        let name = status
            .as_ref()
            .and_then(|s| s.name.clone())
            .or_else(|| CleanupTarget::of(&deleted.meta).map(|t| t.name))
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
            return deleted.refuse(ctx, &refusal, "PrivX password policy").await;
        }
        CleanupDecision::Delete(id) => match ctx.privx.delete_policy(&id).await {
            Ok(()) => {
                deleted
                    .deleted_in_privx(ctx, format!("PrivX password policy {id}"))
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
    ctx.recovered(CONTROLLER, &key);
    Ok(Action::await_change())
}

pub fn error_policy(
    guard: Arc<DeserializeGuard<PasswordPolicy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    common::requeue_after_failure(&ctx, CONTROLLER, &guard.name_any(), error)
}

/// The policy is gone (deleted, with or without a finalizer): it leaves the object gauge and
/// the backoff map.
pub fn forget(ctx: &Context, name: &str) {
    ctx.metrics.forget_object(CONTROLLER, name);
    ctx.recovered(CONTROLLER, name);
}

struct Reconciler<'a> {
    policy: &'a PasswordPolicy,
    ctx: &'a Context,
    /// The status a failure after planning is reported on (it names the policy a failed
    /// create concerned); `None`: the object's status.
    failure_status: Mutex<Option<PasswordPolicyStatus>>,
}

impl Reconciler<'_> {
    fn api(&self) -> Api<PasswordPolicy> {
        Api::all(self.ctx.client.clone())
    }

    fn key(&self) -> String {
        self.policy.name_any()
    }

    async fn run(self) -> Result<Action, Error> {
        if self.policy.meta().deletion_timestamp.is_some() {
            return self.cleanup().await;
        }
        let result = self.sync().await;
        let base = self.failure_status.lock().expect("not poisoned").take();
        let key = self.key();
        let keys = common::ObjectKeys {
            controller: CONTROLLER,
            key: &key,
        };
        common::finish(self.ctx, &self.api(), self.policy, base, &keys, result).await
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

        // Apply: finalizer (and the name, before a create) first, then PrivX, events, status.
        let before = report::before_write(self.policy, &name, &policy_plan);
        *self.failure_status.lock().expect("not poisoned") = before.failure_status;
        common::set_metadata(ctx, &self.api(), self.policy, &before.metadata)
            .await
            .map_err(common::error_stop)?;
        let id = match &policy_plan.action {
            PolicyAction::None => policy_plan.id.clone().unwrap_or_default(),
            PolicyAction::Create(p) => self.create(p).await?,
            PolicyAction::Update { id, policy } => {
                ctx.privx.update_policy(id, policy).await.map_err(|e| {
                    common::privx_stop(e, &format!("update password policy {name:?}"))
                })?;
                id.clone()
            }
        };
        // What PrivX now records is known without reading it back (one read, one write).
        let times = report::times(
            status,
            recorded.as_ref().or(by_name.as_ref()),
            &policy_plan.action,
            &common::now_rfc3339(),
        );
        let report = report::report(
            self.policy,
            &name,
            &id,
            &policy_plan,
            &unsupported,
            generation,
            times,
        );
        if let Some(event) = report.event {
            info!(privx_policy = %name, reason = event.reason, "PrivX password policy written");
            common::publish(
                &ctx.recorder,
                self.policy,
                event.type_,
                event.reason,
                event.note,
            )
            .await;
        }
        common::write_status(&self.api(), self.policy, report.status, &report.conditions)
            .await
            .map_err(common::error_stop)?;
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, report.ready_reason);
        Ok(Action::requeue(jittered_refresh(REFRESH)))
    }

    async fn cleanup(&self) -> Result<Action, Error> {
        let deleted = Deleted::of(self.ctx, self.policy);
        let computed = plan::privx_name(&self.policy.spec, &self.policy.name_any());
        cleanup(self.ctx, &deleted, Some(computed)).await
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
}
