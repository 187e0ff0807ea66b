//! The custom resource types: the single source of truth for the CRDs under `crds/`.
//!
//! Owns the Rust types, their schemas and CEL rules, and the YAML generation. Must not do I/O
//! beyond formatting; controllers and the `check` command build on these types.

pub mod condition;
pub mod duration;
pub mod mirror_rules;
pub mod password_policy;
pub mod schema;
pub mod validate;
pub mod vault_secret;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use password_policy::{PasswordPolicy, PasswordPolicySpec, PasswordPolicyStatus};
pub use vault_secret::{Ownership, VaultSecret, VaultSecretSpec, VaultSecretStatus};

/// The API group of every kind here.
pub const GROUP: &str = "privx-operator.dev";
/// The one served version.
pub const VERSION: &str = "v1alpha1";

/// What happens to the PrivX object when the Kubernetes object is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Leave the PrivX object in place (the default).
    #[default]
    Retain,
    /// Delete the PrivX object (guarded by a finalizer).
    Delete,
}

/// Both CRDs, in a stable order, each with the printer columns every kind shares.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![PasswordPolicy::crd(), VaultSecret::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            version
                .additional_printer_columns
                .get_or_insert_with(Vec::new)
                .extend(shared_printer_columns());
        }
    }
    crds
}

/// `kubectl get` columns of every kind, after its own: Ready and its reason, when it last
/// synced with a change, and the age.
fn shared_printer_columns() -> Vec<CustomResourceColumnDefinition> {
    let ready = ".status.conditions[?(@.type==\"Ready\")]";
    [
        ("Ready", "string", format!("{ready}.status")),
        ("Reason", "string", format!("{ready}.reason")),
        ("Last Sync", "date", ".status.lastSyncTime".to_string()),
        ("Age", "date", ".metadata.creationTimestamp".to_string()),
    ]
    .into_iter()
    .map(|(name, type_, json_path)| CustomResourceColumnDefinition {
        name: name.to_string(),
        type_: type_.to_string(),
        json_path,
        ..Default::default()
    })
    .collect()
}

/// The file under `crds/` a CRD is written to.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).expect("a CRD always serializes")
}

/// Both CRDs as one multi-document YAML stream (what `privx-operator crd` prints).
pub fn crds_yaml() -> String {
    all_crds()
        .iter()
        .map(|crd| format!("---\n{}", crd_yaml(crd)))
        .collect()
}
