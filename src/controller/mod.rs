//! The controllers: VaultSecret and PasswordPolicy.
//!
//! Each reconcile is a pipeline: fetch → validate → plan → apply → status. Only fetch and
//! apply do I/O; the plan is a pure function with its own tests. This module owns the shared
//! context (clients, settings, caches) and the parts both controllers use (tenancy, hashing,
//! backoff, role resolution). It must not speak HTTP to PrivX directly (that is [`crate::privx`]).

pub mod backoff;
pub mod common;
pub mod context;
pub mod deletion;
pub mod error;
pub mod hashing;
pub mod identity;
pub mod outcome;
pub mod password_policy;
pub mod recorder;
pub mod refresh;
pub mod refreshes;
pub mod restart;
pub mod roles;
pub mod runner;
pub mod tenancy;
pub mod vault_secret;

pub use context::{Context, ControllerMetrics, NoMetrics, Settings, may_be_ours};
pub use error::Error;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "privx-operator";
/// Label on every Secret the operator writes (mirrors), used to narrow the Secret watch.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "privx-operator";
/// Label naming the VaultSecret a mirrored Secret belongs to.
pub const VAULT_SECRET_LABEL: &str = "privx-operator.dev/vaultsecret";
/// Annotation carrying the keyed data hash on mirrored Secrets and pod templates.
pub const DATA_HASH_ANNOTATION: &str = "privx-operator.dev/data-hash";
/// Annotation a user changes to request a new generated password.
pub const REGENERATE_ANNOTATION: &str = "privx-operator.dev/regenerate";
pub use crate::crd::vault_secret::FORCE_SYNC_ANNOTATION;
/// Namespace annotation widening the PrivX names a namespace may reach (comma-separated globs).
pub const ALLOWED_NAMES_ANNOTATION: &str = "privx-operator.dev/allowed-names";
/// Namespace annotation listing PrivX user IDs whose personal vaults the namespace may reach.
pub const ALLOWED_OWNERS_ANNOTATION: &str = "privx-operator.dev/allowed-owners";
/// Finalizer guarding deletion of the PrivX object (only with `deletionPolicy: Delete`).
pub const FINALIZER: &str = "privx-operator.dev/cleanup";
