//! The `VaultSecret` custom resource: one PrivX vault secret, declared.

// kube-derive repeats `type_` once per printer column; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// A PrivX vault secret managed from Kubernetes, optionally mirrored into a Kubernetes Secret.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "privx-operator.dev",
    version = "v1alpha1",
    kind = "VaultSecret",
    namespaced,
    status = "VaultSecretStatus",
    shortname = "pvs",
    category = "privx",
    doc = "A PrivX vault secret (shared, or personal to one PrivX user) declared from Kubernetes. Its data comes from a Kubernetes Secret, is generated to a PasswordPolicy, or (without a source) is read from PrivX; it can be mirrored into a Kubernetes Secret.",
    derive = "PartialEq",
    printcolumn(
        name = "PrivX name",
        type_ = "string",
        json_path = ".status.privx.name"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.refreshInterval) || !has(self.refreshPolicy) || self.refreshPolicy == 'Periodic'").message("spec.refreshInterval applies to refreshPolicy Periodic only (OnChange and CreatedOnce never read PrivX on a schedule)").field_path(".refreshInterval"),
    validation = Rule::new("!has(self.refreshPolicy) || self.refreshPolicy != 'CreatedOnce' || has(self.mirror)").message("spec.refreshPolicy CreatedOnce needs spec.mirror (it writes the mirror once)").field_path(".refreshPolicy"),
    validation = Rule::new("has(self.name) == has(oldSelf.name)").message("spec.name is immutable: it can be neither added nor removed after creation").field_path(".name"),
    validation = Rule::new("has(self.owner) == has(oldSelf.owner)").message("spec.owner is immutable: a secret cannot move between shared and personal").field_path(".owner"),
    validation = Rule::new("has(self.source) || !has(self.readRoles) || size(self.readRoles) == 0").message(ROLES_NEED_A_SOURCE).field_path(".readRoles"),
    validation = Rule::new("has(self.source) || !has(self.writeRoles) || size(self.writeRoles) == 0").message(ROLES_NEED_A_SOURCE).field_path(".writeRoles"),
)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretSpec {
    /// The secret's name in PrivX (1 to 512 characters, no control characters). Defaults to
    /// the operator's name template (`k8s/{namespace}/{name}` unless configured otherwise).
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.name is immutable"))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 512").message("spec.name must be 1 to 512 characters"))]
    #[x_kube(validation = Rule::new("!self.matches('[\\\\x00-\\\\x1f\\\\x7f]')").message("spec.name must not contain control characters"))]
    pub name: Option<String>,

    /// Makes this a personal secret of one PrivX user. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.owner is immutable"))]
    pub owner: Option<SecretOwner>,

    /// Roles whose members may read the secret's data in PrivX (needs `source`: without one
    /// the operator only reads the secret and sets no roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub read_roles: Option<Vec<RoleRef>>,

    /// Roles whose members may replace the secret's data in PrivX (needs `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub write_roles: Option<Vec<RoleRef>>,

    /// Where the data comes from. Absent: PrivX is the source of truth and the secret is only
    /// read (and mirrored, with `mirror`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SecretSource>,

    /// Write the PrivX data into a Kubernetes Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorSpec>,

    /// How often PrivX is read to detect drift and changes (Go duration, 10s to 168h, at most
    /// 32 characters). Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = crate::crd::duration::MAX_DURATION_LENGTH))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$') && duration(self) >= duration('10s') && duration(self) <= duration('168h')").message("spec.refreshInterval must be a duration such as 30s, 5m or 1h, from 10s to 168h (7d)"))]
    pub refresh_interval: Option<String>,

    /// When PrivX is read again: `Periodic` (every `refreshInterval`; the default), `OnChange`
    /// (only when this object, its source, its PasswordPolicy or its template ConfigMaps
    /// change), `CreatedOnce` (write the mirror once, then never again unless forced with the
    /// `privx-operator.dev/force-sync` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,

    /// What happens to the PrivX secret when this object is deleted. Default `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// May an existing PrivX secret of this name, not created by this object, be taken over
    /// (and then overwritten with the declared data)? Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
}

/// The message of the rule that roles need a source (CEL and `validate` share it).
pub const ROLES_NEED_A_SOURCE: &str = "spec.readRoles and spec.writeRoles need spec.source: without a source the operator only reads the secret";

/// Messages of CEL rules that `crd::validate` repeats in code (one text for both).
pub const TEMPLATE_KEY_MESSAGE: &str = "spec.mirror.template keys must be valid Secret keys (1 to 253 of a-z, A-Z, 0-9, '-', '_', '.'; not '.', not starting with '..')";
pub const TEMPLATE_VALUE_MESSAGE: &str =
    "spec.mirror.template values must be at most 65536 characters";
pub const CONFIG_MAP_NAME_MESSAGE: &str = "spec.mirror.templateFrom[].configMapRef.name must be a valid ConfigMap name (lowercase DNS subdomain)";
pub const CONFIG_MAP_KEY_MESSAGE: &str = "spec.mirror.templateFrom[].configMapRef.key must be a valid key (1 to 253 of a-z, A-Z, 0-9, '-', '_', '.'; not '.', not starting with '..')";

/// Annotation whose every new value makes the next reconcile read PrivX and rewrite the mirror,
/// in every refresh policy; the value handled is recorded in `status.lastForceSync`.
pub const FORCE_SYNC_ANNOTATION: &str = "privx-operator.dev/force-sync";

/// Label and annotation keys a mirror may not carry: they would make the Secret a service
/// account's token.
pub const RESERVED_KEY_PREFIX: &str = "kubernetes.io/service-account.";

/// When PrivX is read again after the first sync.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RefreshPolicy {
    /// Every `refreshInterval` (default 1h), and on every change.
    #[default]
    Periodic,
    /// Only when the VaultSecret, its source Secret, its PasswordPolicy or its template
    /// ConfigMaps change; no scheduled PrivX reads.
    OnChange,
    /// Once: the mirror is written at the first sync and never updated again, unless forced
    /// (or deleted, then it is written again).
    CreatedOnce,
}

/// The PrivX user that owns a personal secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretOwner {
    /// The PrivX user ID (a UUID) of the owner; 1 to 128 characters.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 128").message("spec.owner.userId must be 1 to 128 characters"))]
    pub user_id: String,
}

/// A PrivX role, by name or by ID (exactly one).
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[x_kube(validation = Rule::new("has(self.name) != has(self.id)").message("a role reference needs exactly one of name or id"))]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// The role's name; resolved to its ID through PrivX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// The role's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub id: Option<String>,
}

/// Exactly one of `secretRef` or `generate`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.generate)").message("spec.source needs exactly one of secretRef or generate"))]
#[serde(rename_all = "camelCase")]
pub struct SecretSource {
    /// Push the keys of a Kubernetes Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SourceSecretRef>,
    /// Generate a password to a PasswordPolicy and store it in PrivX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GenerateSource>,
}

/// A Kubernetes Secret in the VaultSecret's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The keys to push (all keys when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub keys: Option<Vec<String>>,
}

/// A password generated once to a PasswordPolicy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateSource {
    /// The cluster-scoped PasswordPolicy whose lengths and character classes the password follows.
    pub password_policy_ref: PolicyRef,
    /// The data field that holds the password.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A PasswordPolicy by its Kubernetes name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The Kubernetes Secret that mirrors the PrivX data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.mergePolicy) || has(self.template) || has(self.templateFrom)").message("spec.mirror.mergePolicy needs spec.mirror.template or spec.mirror.templateFrom").field_path(".mergePolicy"))]
#[x_kube(validation = Rule::new("!has(self.creationPolicy) || self.creationPolicy != 'Merge' || !has(self.type)").message(MERGE_TYPE_MESSAGE).field_path(".type"))]
#[x_kube(validation = Rule::new("!has(self.creationPolicy) || self.creationPolicy != 'Merge' || !has(self.immutable) || !self.immutable").message(MERGE_IMMUTABLE_MESSAGE).field_path(".immutable"))]
#[x_kube(validation = Rule::new("!has(self.creationPolicy) || self.creationPolicy != 'Merge' || !has(self.adopt) || !self.adopt").message(MERGE_ADOPT_MESSAGE).field_path(".adopt"))]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    /// The Secret's name (default: the VaultSecret's name); a lowercase DNS subdomain of at
    /// most 253 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$') && self.size() <= 253").message("spec.mirror.secretName must be a valid Secret name (lowercase DNS subdomain)"))]
    pub secret_name: Option<String>,
    /// The Secret's type (default `Opaque`): any type string (1 to 253 characters), custom
    /// types included, except `kubernetes.io/service-account-token` and
    /// `bootstrap.kubernetes.io/token`. The built-in types' required keys are checked.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 253").message(TYPE_LENGTH_MESSAGE))]
    #[x_kube(validation = Rule::new("self != 'kubernetes.io/service-account-token' && self != 'bootstrap.kubernetes.io/token'").message(REFUSED_TYPE_MESSAGE))]
    pub type_: Option<String>,
    /// Who owns the Secret: `Owner` (an owner reference to this VaultSecret: the Secret goes
    /// with it; the default), `Orphan` (no owner reference: the Secret stays when this object
    /// is deleted), `Merge` (write only this object's keys into an existing Secret someone
    /// else creates and owns; nothing is created, and the keys are removed when this object
    /// is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_policy: Option<CreationPolicy>,
    /// Take over an existing Secret of this name that this object did not create (written by
    /// hand, or owned by an External Secrets `ExternalSecret` or a Vault Secrets Operator
    /// `VaultStaticSecret`): same object, data replaced only where it differs, the previous
    /// controller owner reference replaced. Default false: such a Secret is a `Conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
    /// Make the Secret immutable (Kubernetes immutable Secrets); a change of its data then
    /// deletes and re-creates it (and restarts `rolloutRestartTargets`). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Extra labels on the Secret (not `kubernetes.io/service-account.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('kubernetes.io/service-account.'))").message("spec.mirror.labels may not set kubernetes.io/service-account.* keys"))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations on the Secret (not `kubernetes.io/service-account.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('kubernetes.io/service-account.'))").message("spec.mirror.annotations may not set kubernetes.io/service-account.* keys"))]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Renames PrivX data fields to Secret keys (`privxField: secretKey`); fields not listed
    /// keep their names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_mapping: Option<BTreeMap<String, String>>,
    /// Templates by Secret key, rendered from the PrivX data: each data field is a variable
    /// (`{{ username }}`), all of them the map `data` (`{{ data["tls.crt"] }}`). Filters:
    /// b64enc, b64dec, urlencode, toJson, toYaml, fromJson, default, required, indent, trim,
    /// lower, upper. See docs/vaultsecret.md. At most 64 keys (each a Secret key of at most
    /// 253 characters), each template at most 65536 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, k.size() <= 253 && k != '.' && !k.startsWith('..') && k.matches('^[-._a-zA-Z0-9]+$'))").message(TEMPLATE_KEY_MESSAGE))]
    #[x_kube(validation = Rule::new("self.all(k, self[k].size() <= 65536)").message(TEMPLATE_VALUE_MESSAGE))]
    pub template: Option<BTreeMap<String, String>>,
    /// Whole-value templates read from ConfigMaps in this namespace (config files); each
    /// renders into the Secret key named like the ConfigMap key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub template_from: Option<Vec<TemplateFrom>>,
    /// With templates: `Replace` (the Secret holds the template outputs only; the default) or
    /// `Merge` (template outputs over the mapped data fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_policy: Option<MergePolicy>,
    /// Workloads in this namespace restarted (by a pod-template annotation, or `spec.restartAt`
    /// for an Argo Rollout) when the data changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub rollout_restart_targets: Option<Vec<RolloutTarget>>,
}

/// A template kept in a ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    pub config_map_ref: ConfigMapKeyRef,
}

/// One key of a ConfigMap in the VaultSecret's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message(CONFIG_MAP_NAME_MESSAGE))]
    pub name: String,
    /// The ConfigMap key holding the template; also the Secret key it renders into.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.size() <= 253 && self != '.' && !self.startsWith('..') && self.matches('^[-._a-zA-Z0-9]+$')").message(CONFIG_MAP_KEY_MESSAGE))]
    pub key: String,
}

/// Who owns the mirrored Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CreationPolicy {
    /// An owner reference to the VaultSecret: deleted with it (garbage collection).
    #[default]
    Owner,
    /// No owner reference: the Secret stays when the VaultSecret is deleted.
    Orphan,
    /// Only this object's keys, written into a Secret someone else creates and owns (server-side
    /// apply field ownership); never created, and the keys are removed on deletion.
    Merge,
}

/// Messages of the mirror rules that `crd::validate` repeats in code.
pub const MERGE_TYPE_MESSAGE: &str = "spec.mirror.type cannot be set with creationPolicy Merge (the Secret and its type are someone else's)";
pub const MERGE_IMMUTABLE_MESSAGE: &str = "spec.mirror.immutable cannot be true with creationPolicy Merge (the Secret is someone else's and is never replaced)";
pub const MERGE_ADOPT_MESSAGE: &str = "spec.mirror.adopt does not apply to creationPolicy Merge (Merge writes into someone else's Secret without taking it over)";
pub const TYPE_LENGTH_MESSAGE: &str = "spec.mirror.type must be 1 to 253 characters";
pub const REFUSED_TYPE_MESSAGE: &str = "spec.mirror.type may not be kubernetes.io/service-account-token or bootstrap.kubernetes.io/token (they grant cluster access and are not minted from a vault)";

/// Secret types a mirror may not have.
pub const REFUSED_SECRET_TYPES: [&str; 2] = [
    "kubernetes.io/service-account-token",
    "bootstrap.kubernetes.io/token",
];

/// How template outputs combine with the mapped data fields.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MergePolicy {
    /// Only the template outputs.
    #[default]
    Replace,
    /// The mapped data fields, and the template outputs over them.
    Merge,
}

/// The built-in Secret types whose keys the API server checks (any other type string is a
/// custom type, with no required keys). Service-account and bootstrap tokens are refused
/// ([`REFUSED_SECRET_TYPES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MirrorSecretType {
    #[default]
    Opaque,
    BasicAuth,
    SshAuth,
    Tls,
    DockerConfigJson,
}

impl MirrorSecretType {
    /// The built-in type of this `type` string, if it is one.
    pub fn builtin(type_: &str) -> Option<Self> {
        [
            Self::Opaque,
            Self::BasicAuth,
            Self::SshAuth,
            Self::Tls,
            Self::DockerConfigJson,
        ]
        .into_iter()
        .find(|t| t.as_str() == type_)
    }

    /// The Kubernetes `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opaque => "Opaque",
            Self::BasicAuth => "kubernetes.io/basic-auth",
            Self::SshAuth => "kubernetes.io/ssh-auth",
            Self::Tls => "kubernetes.io/tls",
            Self::DockerConfigJson => "kubernetes.io/dockerconfigjson",
        }
    }

    /// Keys the API server requires for this type (all of them, or for basic-auth at least one).
    pub fn required_keys(self) -> &'static [&'static str] {
        match self {
            Self::Opaque => &[],
            Self::BasicAuth => &["username", "password"],
            Self::SshAuth => &["ssh-privatekey"],
            Self::Tls => &["tls.crt", "tls.key"],
            Self::DockerConfigJson => &[".dockerconfigjson"],
        }
    }
}

/// A workload to restart when mirrored data changes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    pub kind: RolloutKind,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum RolloutKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// An Argo Rollout (`argoproj.io`), restarted through its `spec.restartAt`.
    Rollout,
}

impl RolloutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::Rollout => "Rollout",
        }
    }
}

/// What the operator observed and did; never the data itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultSecretStatus {
    /// `Ready` and `Synced`, with specific reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a successful sync last wrote this status (a change in PrivX, in the mirror or in
    /// the conditions). A sync that changes nothing leaves it as it is, so a steady object costs
    /// no Kubernetes writes; `privx_operator_oldest_sync_age_seconds` says how fresh the
    /// controller's stalest object is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// What PrivX reports about the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privx: Option<PrivxSecretStatus>,
    /// Keyed hash (HMAC-SHA256 with the operator's key) of the synced data; never the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hash: Option<String>,
    /// The mirrored Secret's name, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_secret_name: Option<String>,
    /// The value of the regenerate annotation the current generated password answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regenerate_token: Option<String>,
    /// The last value of the `privx-operator.dev/force-sync` annotation handled (PrivX read
    /// and mirror rewritten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_force_sync: Option<String>,
    /// Keyed hash of what the last sync read besides PrivX (the spec's generation, the source
    /// data, the PasswordPolicy, the template ConfigMaps); `OnChange` reads PrivX when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs_hash: Option<String>,
}

/// The PrivX side of a VaultSecret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivxSecretStatus {
    /// The secret's name in PrivX.
    pub name: String,
    /// The owner of a personal secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// How this object came to manage the secret: `Created` or `Adopted`. Absent: not managed
    /// (read-only mirror, or refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// How a PrivX object came under this operator's management.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Ownership {
    Created,
    Adopted,
}

impl MirrorSpec {
    /// The Secret's type, with its default.
    pub fn secret_type(&self) -> &str {
        self.type_.as_deref().unwrap_or("Opaque")
    }

    /// The creation policy, with its default.
    pub fn creation_policy(&self) -> CreationPolicy {
        self.creation_policy.unwrap_or_default()
    }

    /// Whether taking over an existing Secret was allowed, with its default.
    pub fn adopt(&self) -> bool {
        self.adopt.unwrap_or(false)
    }

    /// Whether the Secret is immutable, with its default.
    pub fn immutable(&self) -> bool {
        self.immutable.unwrap_or(false)
    }
}

impl VaultSecretSpec {
    /// The deletion policy, with its default.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }

    /// The refresh policy, with its default.
    pub fn refresh_policy(&self) -> RefreshPolicy {
        self.refresh_policy.unwrap_or_default()
    }

    /// Whether adoption was allowed, with its default.
    pub fn adopt(&self) -> bool {
        self.adopt.unwrap_or(false)
    }
}
