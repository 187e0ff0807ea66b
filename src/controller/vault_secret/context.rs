//! The VaultSecret controller's context: the shared core plus the state only this controller
//! reads — its settings, the stores and indexes the runner's watches fill, the shared-vault
//! listing, the role cache, the refresh and restart queues.
//!
//! It dereferences to the shared [`core::Context`], so the shared stages take it as they are
//! (a VaultSecret context *is* the core plus its own state); nothing here is visible to the
//! PasswordPolicy controller.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

use super::hashing::HmacKey;
use super::plan::tenancy::{NameTemplate, NamespacePolicy};
use super::restart::RestartQueue;
use super::store::claims::ClaimIndex;
use super::store::list_pages::ListPages;
use super::store::refreshes::Refreshes;
use super::store::roles::RoleCache;
use super::store::stored::StoredVaultSecret;
use super::store::stored_mirror::{MirrorStore, StoredMirror};
use crate::controller::core;
use crate::crd::PasswordPolicy;
use crate::identity::{NamespaceIdentities, SelfRoles};

/// Settings of the VaultSecret controller.
#[derive(Clone, Debug)]
pub struct Settings {
    pub name_template: NameTemplate,
    /// PrivX roles added to the read and write roles of every secret the operator writes, so it
    /// can read back and update what it wrote (shared: re-resolved after token renewals).
    pub self_roles: SelfRoles,
    /// Whether rollout restarts are enabled (RBAC on workloads granted).
    pub rollout_restart: bool,
    /// Restarts of one workload within this window become one (see [`super::restart`]).
    pub restart_debounce: Duration,
    /// Refresh interval of objects that do not set one.
    pub default_refresh: Duration,
    pub hmac_key: HmacKey,
    /// Per-namespace PrivX identity (off: `None`); see [`crate::identity`].
    pub namespace_identity: Option<Arc<NamespaceIdentities>>,
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
            namespace_identity: None,
        }
    }
}

/// The stores the runner's watches fill for this controller; a reconcile reads them only after
/// the core's sync gate has opened.
pub struct Stores {
    /// Every watched VaultSecret (one store across the watched namespaces), for claim conflicts.
    pub vault_secrets: Store<StoredVaultSecret>,
    /// All PasswordPolicies (a generated password follows one).
    pub policies: Store<DeserializeGuard<PasswordPolicy>>,
    /// Namespace metadata (tenancy annotations).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The mirrored Secrets the operator wrote (by the managed-by label). A mirror not in it is
    /// read from the API (it may exist unlabelled, and must then be refused, not overwritten).
    pub mirrors: MirrorStore,
}

/// The VaultSecret controller's context.
pub struct Context {
    pub core: Arc<core::Context>,
    pub settings: Settings,
    pub vault_secrets: Store<StoredVaultSecret>,
    /// Which of those name which PrivX target (kept with the store by the reflector).
    pub claims: ClaimIndex,
    pub policies: Store<DeserializeGuard<PasswordPolicy>>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub mirrors: MirrorStore,
    /// The shared-vault listing read-only mirrors refresh from.
    pub list_pages: ListPages,
    /// Rollout restarts requested by changed mirrors, debounced.
    pub restarts: Arc<RestartQueue>,
    pub roles: RoleCache,
    /// The objects waiting for their next refresh (the runner's; see [`Refreshes`]).
    pub refreshes: Refreshes,
}

impl Deref for Context {
    type Target = core::Context;

    fn deref(&self) -> &core::Context {
        &self.core
    }
}

impl Context {
    pub fn new(core: Arc<core::Context>, settings: Settings, stores: Stores) -> Self {
        Self {
            core,
            settings,
            vault_secrets: stores.vault_secrets,
            claims: ClaimIndex::default(),
            policies: stores.policies,
            namespaces: stores.namespaces,
            mirrors: stores.mirrors,
            list_pages: ListPages::default(),
            restarts: Arc::default(),
            roles: RoleCache::default(),
            refreshes: Refreshes::default(),
        }
    }

    /// The Namespace `name` as the store holds it.
    pub fn namespace(&self, name: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// The namespace's tenancy annotations, from the namespace store.
    pub fn namespace_policy(&self, namespace: &str) -> NamespacePolicy {
        NamespacePolicy::from_annotations(
            self.namespace(namespace)
                .as_ref()
                .and_then(|n| n.metadata.annotations.as_ref()),
        )
    }

    /// The mirrored Secret `namespace/name` as the store holds it.
    pub fn mirror(&self, namespace: &str, name: &str) -> Option<Arc<StoredMirror>> {
        self.mirrors.get(namespace, name)
    }
}
