//! The PasswordPolicy controller: keeps a PrivX password policy as declared.
//!
//! Stages, one file each, driven by `Reconciler::sync` below: validate → `fetch` (the API
//! generation, the current policy) → [`plan`] (pure: the desired policy, what to write, the
//! finalizer and status) → `apply` (metadata, then PrivX) → `report` (event, status). Deletion
//! is `cleanup`. The controller needs nothing beyond the shared core's context.
//!
//! Must not generate passwords (VaultSecrets do, from the same spec), nor import the
//! VaultSecret controller or the process wiring (`runtime`).

mod apply;
mod cleanup;
mod fetch;
pub mod plan;
mod report;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::instrument;

use self::cleanup::cleanup;
use self::plan::status::{report, times};
use crate::controller::core::deleted::Deleted;
use crate::controller::core::{self, Context, Error, Next, Stop};
use crate::crd::{PasswordPolicy, PasswordPolicyStatus};

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
    core::reconcile_guarded(
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

pub fn error_policy(
    guard: Arc<DeserializeGuard<PasswordPolicy>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    core::requeue_after_failure(&ctx, CONTROLLER, &guard.name_any(), error)
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
        let keys = core::ObjectKeys {
            controller: CONTROLLER,
            key: &key,
        };
        core::finish(self.ctx, &self.api(), self.policy, base, &keys, result).await
    }

    async fn cleanup(&self) -> Result<Action, Error> {
        let deleted = Deleted::of(self.ctx, self.policy);
        let computed = plan::privx_name(&self.policy.spec, &self.policy.name_any());
        cleanup(self.ctx, &deleted, Some(computed)).await
    }

    /// validate → fetch → plan → apply → report.
    async fn sync(&self) -> Result<Action, Stop> {
        let spec = &self.policy.spec;
        core::invalid_spec(&crate::crd::validate::validate_password_policy(spec))?;
        let name = plan::privx_name(spec, &self.policy.name_any());
        let generation = self.fetch_generation().await?;
        let (desired, unsupported) =
            plan::desired_policy(spec, &name, generation).map_err(|r| (r, Next::AwaitChange))?;
        let fetched = self.fetch_policy(&name).await?;
        let status = self.policy.status.as_ref();
        let generation_changed =
            status.and_then(|s| s.observed_generation) != self.policy.metadata.generation;
        let policy_plan = plan::plan_policy(
            &desired,
            fetched.found(),
            status,
            spec.adopt(),
            generation_changed,
            self.ctx.privx_identity.as_deref(),
        )
        .map_err(|r| (r, Next::After(REFRESH)))?;
        let id = self.apply(&name, &policy_plan).await?;
        // What PrivX now records is known without reading it back (one read, one write).
        let times = times(
            status,
            fetched.current(),
            &policy_plan.action,
            &core::now_rfc3339(),
        );
        let report = report(
            self.policy,
            &name,
            &id,
            &policy_plan,
            &unsupported,
            generation,
            times,
        );
        self.report(&name, report).await
    }
}
