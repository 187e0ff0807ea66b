//! What every reconcile shares: the Kubernetes and PrivX clients, settings, caches and stores.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use super::backoff::Backoff;
use super::hashing::HmacKey;
use super::roles::RoleCache;
use super::tenancy::NameTemplate;
use crate::crd::{PasswordPolicy, VaultSecret};
use privx_client::PrivxClient;

/// Operator-wide settings of the controllers.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name_template: NameTemplate,
    /// PrivX roles added to the read and write roles of every secret the operator writes, so it
    /// can read back and update what it wrote (shared: re-resolved after token renewals).
    pub self_roles: super::identity::SelfRoles,
    /// Whether rollout restarts are enabled (RBAC on workloads granted).
    pub rollout_restart: bool,
    /// Restarts of one workload within this window become one (see `controller::restart`).
    pub restart_debounce: Duration,
    /// Refresh interval of objects that do not set one.
    pub default_refresh: Duration,
    pub hmac_key: HmacKey,
    /// The operator's PrivX API client ID. PrivX records it as the author of what the operator
    /// creates; an unrecorded object whose author is someone else is never claimed without adopt.
    pub privx_identity: Option<String>,
    /// Per-namespace PrivX identity (off: `None`); see `controller::identity`.
    pub namespace_identity: Option<Arc<super::identity::NamespaceIdentities>>,
}

/// Whether an object PrivX attributes to `author` may be ours: unknown on either side counts as
/// possible (PrivX versions differ in what they report), a known different author does not.
pub fn may_be_ours(author: Option<&str>, identity: Option<&str>) -> bool {
    match (author, identity) {
        (Some(author), Some(me)) => author == me,
        _ => true,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name_template: NameTemplate::default(),
            self_roles: Default::default(),
            rollout_restart: true,
            restart_debounce: super::restart::DEFAULT_WINDOW,
            default_refresh: Duration::from_secs(3600),
            hmac_key: HmacKey::random(),
            privx_identity: None,
            namespace_identity: None,
        }
    }
}

/// What the controllers report to the operator's metrics.
pub trait ControllerMetrics: Send + Sync + 'static {
    /// One reconcile finished; `error` is the error label when it failed.
    fn reconciled(&self, controller: &'static str, duration: Duration, error: Option<&str>);
    /// The object's Ready condition is now `ready` with `reason`.
    fn object_condition(&self, controller: &'static str, key: &str, ready: bool, reason: &str);
    /// The object is gone.
    fn forget_object(&self, controller: &'static str, key: &str);
}

/// Metrics that go nowhere (tests, tools).
pub struct NoMetrics;

impl ControllerMetrics for NoMetrics {
    fn reconciled(&self, _: &'static str, _: Duration, _: Option<&str>) {}
    fn object_condition(&self, _: &'static str, _: &str, _: bool, _: &str) {}
    fn forget_object(&self, _: &'static str, _: &str) {}
}

/// Shared state of both controllers.
pub struct Context {
    pub client: kube::Client,
    pub privx: PrivxClient,
    pub settings: Settings,
    pub metrics: Arc<dyn ControllerMetrics>,
    pub recorder: Recorder,
    pub roles: RoleCache,
    pub backoff: Backoff,
    /// The VaultSecret controllers' stores (one per watched scope), for claim conflicts.
    pub vault_secrets: Vec<Store<DeserializeGuard<VaultSecret>>>,
    /// All PasswordPolicies.
    pub policies: Store<DeserializeGuard<PasswordPolicy>>,
    /// Namespace metadata (tenancy annotations).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Mirrors' shared list pages and restart queue.
    pub mirrors: super::refresh::MirrorState,
}
