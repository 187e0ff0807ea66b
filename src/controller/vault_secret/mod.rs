//! The VaultSecret controller: push declared data to PrivX, mirror PrivX data into a Kubernetes
//! Secret, correct drift, report honestly.
//!
//! Stages, one file each, driven by `Reconciler::sync` below: `fetch` (Kubernetes and PrivX
//! reads) → [`plan`] (pure: admission and tenancy, the refresh decision, every write, refusal,
//! event, restart, the finalizer and cleanup-target metadata and the status) → `apply` (the I/O
//! in a safe order, status included). Deletion is `cleanup`. State lives apart from the stages:
//! [`context`] (settings and what the reconcile reads), [`store`] (stores, indexes, queues,
//! caches), [`restart`] (the debounced rollout restarts), [`hashing`] (the keyed data hash).
//!
//! Owns everything only VaultSecrets use. Must not import the PasswordPolicy controller or the
//! process wiring (`runtime`); what both controllers share is in `controller::core`.

mod apply;
mod cleanup;
pub mod context;
mod fetch;
pub mod hashing;
pub mod plan;
mod report;
pub mod restart;
pub mod store;

pub use crate::crd::vault_secret::FORCE_SYNC_ANNOTATION;
pub use context::{Context, Settings, Stores};
pub use fetch::identity_stop;

/// Label on every Secret the operator writes (mirrors), used to narrow the Secret watch.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "privx-operator";
/// Label naming the VaultSecret a mirrored Secret belongs to.
pub const VAULT_SECRET_LABEL: &str = "privx-operator.dev/vaultsecret";
/// Annotation naming the uid of the VaultSecret whose mirror a Secret is, where no owner
/// reference says so (`creationPolicy` `Orphan` and `Merge`).
pub const VAULT_SECRET_UID_ANNOTATION: &str = "privx-operator.dev/vaultsecret-uid";
/// Annotation carrying the keyed data hash on mirrored Secrets and pod templates.
pub const DATA_HASH_ANNOTATION: &str = "privx-operator.dev/data-hash";
/// Annotation a user changes to request a new generated password.
pub const REGENERATE_ANNOTATION: &str = "privx-operator.dev/regenerate";
/// Namespace annotation widening the PrivX names a namespace may reach (comma-separated globs).
pub const ALLOWED_NAMES_ANNOTATION: &str = "privx-operator.dev/allowed-names";
/// Namespace annotation listing PrivX user IDs whose personal vaults the namespace may reach.
pub const ALLOWED_OWNERS_ANNOTATION: &str = "privx-operator.dev/allowed-owners";

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::instrument;

use self::plan::Target;
use self::store::stored::StoredVaultSecret;
use crate::controller::core::{self, Error, Stop};
use crate::crd::{VaultSecret, VaultSecretStatus};
use privx_client::SecretLocation;
/// The controller's name in metrics and events.
pub const CONTROLLER: &str = "vaultsecret";

/// How soon a VaultSecret waiting for its source Secret looks again (an unlabelled Secret that
/// appears later is not seen by the narrow Secret watch).
const SOURCE_RETRY: Duration = Duration::from_secs(30);

/// The PrivX target of a VaultSecret: explicit `spec.name`, or the operator's template.
pub fn target_of(vs: &VaultSecret, ctx_template: &plan::tenancy::NameTemplate) -> Target {
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
#[instrument(skip_all, fields(namespace = stored.namespace().unwrap_or_default(), name = stored.name_any()))]
pub async fn reconcile(stored: Arc<StoredVaultSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(stored.as_ref());
    let guard = stored.decode();
    core::reconcile_guarded(
        &guard,
        &ctx,
        CONTROLLER,
        &key,
        async |vs| {
            Reconciler {
                vs,
                ctx: &ctx,
                failure_status: Mutex::new(None),
            }
            .run()
            .await
        },
        async |deleted| {
            let writes = deleted.has_source();
            cleanup::cleanup(&ctx, &deleted, None, writes).await
        },
    )
    .await
}

/// Requeues a failed object with per-object exponential backoff.
pub fn error_policy(stored: Arc<StoredVaultSecret>, error: &Error, ctx: Arc<Context>) -> Action {
    core::requeue_after_failure(&ctx, CONTROLLER, &key_of(stored.as_ref()), error)
}

fn object_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// The key of an object in metrics and the backoff map: `namespace/name`.
pub fn key_of(vs: &impl kube::Resource) -> String {
    object_key(
        vs.meta().namespace.as_deref(),
        vs.meta().name.as_deref().unwrap_or_default(),
    )
}

/// The object is gone (deleted, with or without a finalizer): it leaves the object gauge and
/// the backoff map.
pub fn forget(ctx: &Context, key: &str) {
    ctx.metrics.forget_object(CONTROLLER, key);
    ctx.refreshes.forget(key);
    ctx.recovered(CONTROLLER, key);
}

/// One reconcile of one valid object.
struct Reconciler<'a> {
    vs: &'a VaultSecret,
    ctx: &'a Context,
    /// The status a failure after planning is reported on (it records the PrivX target the
    /// failed write concerned); `None`: the object's status.
    failure_status: Mutex<Option<VaultSecretStatus>>,
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

    fn secrets(&self) -> Api<k8s_openapi::api::core::v1::Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    async fn run(self) -> Result<Action, Error> {
        if self.vs.metadata.deletion_timestamp.is_some() {
            let deleted = core::deleted::Deleted::of(self.ctx, self.vs);
            let computed = Some(target_of(self.vs, &self.ctx.settings.name_template));
            let writes = self.vs.spec.source.is_some();
            return cleanup::cleanup(self.ctx, &deleted, computed, writes).await;
        }
        let result = self.sync().await;
        let key = self.key();
        let base = self.failure_status.lock().expect("not poisoned").take();
        let keys = core::ObjectKeys {
            controller: CONTROLLER,
            key: &key,
        };
        core::finish(self.ctx, &self.api(), self.vs, base, &keys, result).await
    }

    /// validate → fetch (Kubernetes) → refresh decision → fetch (PrivX) → plan → apply.
    async fn sync(&self) -> Result<Action, Stop> {
        let ctx = self.ctx;
        let target = target_of(self.vs, &ctx.settings.name_template);
        plan::admit(
            self.vs,
            &target,
            &ctx.settings.name_template,
            &ctx.namespace_policy(&self.namespace()),
        )?;
        let kube = self.fetch_kube().await?;
        let decision = plan::refresh::decide(&self.refresh_input(&target, &kube));
        if !decision.read_privx {
            return self
                .apply(plan::not_read(self.vs, &target), &target, None)
                .await;
        }
        let restart_checks = self.check_restart_targets().await;
        // A new object creates without reading first; if the name is taken after all, the
        // secret is read and the sync planned again, as for any other object.
        let mut read_current = !plan::create_unread(self.vs, &kube.source);
        loop {
            let fetched = self
                .fetch_privx(&target, &kube.source, &decision, read_current)
                .await?;
            let mut plan = plan::plan(&plan::Observed {
                vs: self.vs,
                target: &target,
                source: kube.source.clone(),
                templates: &kube.templates,
                existing_mirror: kube.existing_mirror.as_deref(),
                current: fetched.current.as_ref(),
                self_roles: &fetched.self_roles,
                resolved_roles: &fetched.resolved_roles,
                me: fetched.me,
                others: fetched.others,
                restart_checks: &restart_checks,
                decision: &decision,
                inputs_hash: kube.inputs_hash.clone(),
                refresh: self.refresh(),
                settings: &ctx.settings,
                identity: fetched.identity.as_deref(),
                now: &core::now_rfc3339(),
            })?;
            plan.mirror
                .expect_version(kube.existing_mirror_version.as_deref());
            match self.apply(plan, &target, Some(&fetched.privx)).await {
                Err(stop) if !read_current && core::is_already_exists(&stop) => {
                    read_current = true;
                }
                result => return result,
            }
        }
    }
}
