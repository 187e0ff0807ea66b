//! What every reconcile shares: the Kubernetes and PrivX clients, settings, caches and stores.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

use super::backoff::Backoff;
use super::hashing::HmacKey;
use super::recorder::Recorder;
use super::roles::RoleCache;
use super::tenancy::NameTemplate;
use super::vault_secret::stored::StoredVaultSecret;
use super::vault_secret::stored_mirror::{MirrorStore, StoredMirror};
use crate::crd::PasswordPolicy;
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
    /// `objects` of the controller failed their last reconcile and wait to retry.
    fn retrying(&self, controller: &'static str, objects: usize);
}

/// Metrics that go nowhere (tests, tools).
pub struct NoMetrics;

impl ControllerMetrics for NoMetrics {
    fn reconciled(&self, _: &'static str, _: Duration, _: Option<&str>) {}
    fn object_condition(&self, _: &'static str, _: &str, _: bool, _: &str) {}
    fn forget_object(&self, _: &'static str, _: &str) {}
    fn retrying(&self, _: &'static str, _: usize) {}
}

/// Shared state of both controllers.
///
/// The stores are filled by the runner's shared reflectors (one per kind, whatever
/// `--namespaces` says); a reconcile reads them only after [`Context::synced`] has opened.
pub struct Context {
    pub client: kube::Client,
    pub privx: PrivxClient,
    pub settings: Settings,
    pub metrics: Arc<dyn ControllerMetrics>,
    pub recorder: Recorder,
    pub roles: RoleCache,
    pub backoff: Backoff,
    /// Every watched VaultSecret (one store across the watched namespaces), for claim conflicts.
    pub vault_secrets: Store<StoredVaultSecret>,
    /// Which of those name which PrivX target (kept with the store by the reflector).
    pub claims: super::vault_secret::claims::ClaimIndex,
    /// All PasswordPolicies.
    pub policies: Store<DeserializeGuard<PasswordPolicy>>,
    /// Namespace metadata (tenancy annotations).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Mirrors' shared list pages and restart queue.
    pub mirror_state: super::refresh::MirrorState,
    /// The mirrored Secrets the operator wrote (by the managed-by label). A mirror not in it is
    /// read from the API (it may exist unlabelled, and must then be refused, not overwritten).
    pub mirrors: MirrorStore,
    /// Our own writes, so that their watch events do not start another reconcile.
    pub own_writes: OwnWrites,
    /// The objects waiting for their next refresh (the runner's; see `refreshes`).
    pub refreshes: super::refreshes::Refreshes,
    /// Opens once every store has listed its objects.
    pub synced: SyncGate,
}

impl Context {
    /// One more failure of `key` of `controller`: how long it waits before retrying.
    pub fn failed(&self, controller: &'static str, key: &str) -> std::time::Duration {
        let (delay, waiting) = self.backoff.next_delay(controller, key);
        self.metrics.retrying(controller, waiting);
        delay
    }

    /// `key` of `controller` succeeded, or is gone: it no longer waits to retry.
    pub fn recovered(&self, controller: &'static str, key: &str) {
        let waiting = self.backoff.reset(controller, key);
        self.metrics.retrying(controller, waiting);
    }

    /// The Namespace `name` as the store holds it.
    pub fn namespace(&self, name: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// The mirrored Secret `namespace/name` as the store holds it.
    pub fn mirror(&self, namespace: &str, name: &str) -> Option<Arc<StoredMirror>> {
        self.mirrors.get(namespace, name)
    }
}

/// Our own writes, per object, so that their watch events do not start another reconcile.
/// [`OwnWrites::begin`] before the write marks the object pending: the first event that
/// arrives while it is pending is taken as the echo (it may race the write's answer).
/// [`OwnWrites::finish`] with the written object then records its resourceVersion, unless the
/// echo already came. Any other version passes. At worst a foreign change that lands in the
/// same instant as our write is taken for the echo, and our own echo then triggers once: a
/// change is never lost. The map holds at most one entry per object.
#[derive(Default)]
pub struct OwnWrites {
    versions: Mutex<HashMap<String, Expect>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Pending,
    Version(String),
}

impl OwnWrites {
    fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<String> {
        let meta = obj.meta();
        Some(Self::key(
            &K::kind(&()),
            meta.namespace.as_deref(),
            meta.name.as_deref()?,
        ))
    }

    fn key(kind: &str, namespace: Option<&str>, name: &str) -> String {
        format!("{kind}/{}/{name}", namespace.unwrap_or_default())
    }

    /// Before writing the object `kind` `namespace/name`.
    pub fn begin(&self, kind: &str, namespace: Option<&str>, name: &str) {
        self.lock()
            .insert(Self::key(kind, namespace, name), Expect::Pending);
    }

    /// After the write: its answer `written`, or `None` when it failed.
    pub fn finish<K: Resource<DynamicType = ()>>(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        written: Option<&K>,
    ) {
        let key = Self::key(kind, namespace, name);
        let mut versions = self.lock();
        if versions.get(&key) != Some(&Expect::Pending) {
            return;
        }
        match written.and_then(|w| w.meta().resource_version.clone()) {
            Some(rv) => versions.insert(key, Expect::Version(rv)),
            None => versions.remove(&key),
        };
    }

    /// Whether this watch event of `obj` is the echo of our own last write (taken once).
    pub fn is_echo<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        let Some(key) = Self::key_of(obj) else {
            return false;
        };
        let rv = obj.meta().resource_version.as_deref();
        let mut versions = self.lock();
        let echo = match versions.get(&key) {
            Some(Expect::Pending) => true,
            Some(Expect::Version(ours)) => Some(ours.as_str()) == rv,
            None => false,
        };
        if echo {
            versions.remove(&key);
        }
        echo
    }

    /// Forgets an object (it is gone).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        if let Some(key) = Self::key_of(obj) {
            self.lock().remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expect>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A gate that opens when every watch has delivered its initial list. Reconciles wait on it,
/// so that no decision (tenancy, claimant order, policy lookup) is made from an empty store.
/// The default gate is open (tools and tests that fill the stores themselves).
#[derive(Clone)]
pub struct SyncGate {
    open: tokio::sync::watch::Receiver<bool>,
}

impl Default for SyncGate {
    fn default() -> Self {
        let (_, open) = tokio::sync::watch::channel(true);
        Self { open }
    }
}

impl SyncGate {
    /// A closed gate and the sender that opens it (send `true`).
    pub fn closed() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, open) = tokio::sync::watch::channel(false);
        (tx, Self { open })
    }

    /// Waits until the gate is open (at once when it is). A dropped sender leaves it as it was.
    pub async fn wait(&self) {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
    }

    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }
}
