//! The `PasswordPolicy` custom resource: one PrivX password policy, declared.

// kube-derive repeats `type_` once per printer column; clippy reads that as a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// Default password length bounds when the policy leaves them out (documented in docs/passwordpolicy.md).
pub const DEFAULT_MIN_LENGTH: u32 = 16;
pub const DEFAULT_MAX_LENGTH: u32 = 32;
/// Hard bounds on password lengths accepted by the schema.
pub const MAX_PASSWORD_LENGTH: u32 = 1024;

/// A PrivX password policy (Secrets Manager), declared from Kubernetes. The same policy
/// defines the passwords the operator generates for VaultSecrets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "privx-operator.dev",
    version = "v1alpha1",
    kind = "PasswordPolicy",
    status = "PasswordPolicyStatus",
    shortname = "ppol",
    category = "privx",
    doc = "A PrivX password policy declared from Kubernetes; also the rules for passwords the operator generates for VaultSecrets.",
    derive = "PartialEq",
    printcolumn(name = "PrivX ID", type_ = "string", json_path = ".status.id")
)]
#[x_kube(
    validation = Rule::new("!has(self.passwordMinLength) || !has(self.passwordMaxLength) || self.passwordMinLength <= self.passwordMaxLength").message("spec.passwordMinLength must not exceed spec.passwordMaxLength").field_path(".passwordMinLength"),
    validation = Rule::new("!has(self.passwordMaxLength) || has(self.passwordMinLength) || self.passwordMaxLength >= 16").message("spec.passwordMaxLength is below the default minimum length 16: set spec.passwordMinLength too").field_path(".passwordMaxLength"),
    validation = Rule::new("!has(self.passwordMinLength) || has(self.passwordMaxLength) || self.passwordMinLength <= 32").message("spec.passwordMinLength is above the default maximum length 32: set spec.passwordMaxLength too").field_path(".passwordMinLength"),
    validation = Rule::new("(has(self.useLowerCase) && !self.useLowerCase) && (has(self.useUpperCase) && !self.useUpperCase) && (has(self.useNumbers) && !self.useNumbers) && (has(self.useSpecialCharacters) && !self.useSpecialCharacters) ? false : true").message("at least one character class (useLowerCase, useUpperCase, useNumbers, useSpecialCharacters) must be enabled"),
    validation = Rule::new("!has(self.passwordMinLength) || self.passwordMinLength >= ((!has(self.useLowerCase) || self.useLowerCase) ? 1 : 0) + ((!has(self.useUpperCase) || self.useUpperCase) ? 1 : 0) + ((!has(self.useNumbers) || self.useNumbers) ? 1 : 0) + ((!has(self.useSpecialCharacters) || self.useSpecialCharacters) ? 1 : 0)").message("spec.passwordMinLength is shorter than the number of enabled character classes").field_path(".passwordMinLength"),
)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicySpec {
    /// The policy's name in PrivX (default: metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub name: Option<String>,
    /// How often PrivX rotates passwords under this policy (e.g. 720h or P30D; at most 32
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::duration::MAX_DURATION_LENGTH))]
    #[x_kube(validation = Rule::new(super::duration::DURATION_CEL_RULE).message("spec.rotationInterval must be a duration such as 720h, 720h0m0s, 5m, P30D or PT5M"))]
    pub rotation_interval: Option<String>,
    /// Shortest password (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub password_min_length: Option<u32>,
    /// Longest password (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub password_max_length: Option<u32>,
    /// Include special characters (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_special_characters: Option<bool>,
    /// Include lower-case letters (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_lower_case: Option<bool>,
    /// Include upper-case letters (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_upper_case: Option<bool>,
    /// Include digits (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_numbers: Option<bool>,
    /// Delete stored password versions older than this (PrivX ≤ 34 only; a duration of at most
    /// 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::duration::MAX_DURATION_LENGTH))]
    #[x_kube(validation = Rule::new(super::duration::DURATION_CEL_RULE).message("spec.deleteVersionAfter must be a duration such as 720h, 720h0m0s, 5m, P30D or PT5M"))]
    pub delete_version_after: Option<String>,
    /// How many past passwords PrivX keeps.
    #[schemars(range(min = 1, max = 1000))]
    pub max_versions: u32,
    /// How many times a failed rotation is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub number_of_retries: Option<u32>,
    /// Wait between rotation retries (e.g. 5m or PT5M; at most 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::duration::MAX_DURATION_LENGTH))]
    #[x_kube(validation = Rule::new(super::duration::DURATION_CEL_RULE).message("spec.retryInterval must be a duration such as 720h, 720h0m0s, 5m, P30D or PT5M"))]
    pub retry_interval: Option<String>,
    /// Fall back to the previous password when rotation fails (PrivX ≤ 34 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_to_previous: Option<bool>,
    /// How many checkouts may be open at once (PrivX ≥ 35 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub max_concurrent_checkouts: Option<u32>,
    /// Longest checkout (PrivX ≥ 35 only; e.g. PT8H; at most 32 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::duration::MAX_DURATION_LENGTH))]
    #[x_kube(validation = Rule::new(super::duration::DURATION_CEL_RULE).message("spec.maxCheckoutDuration must be a duration such as 720h, 720h0m0s, 5m, P30D or PT5M"))]
    pub max_checkout_duration: Option<String>,
    /// Rotate the password when a checkout is released (PrivX ≥ 35 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_on_release: Option<bool>,
    /// Verify the new password after rotation (PrivX ≥ 35 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_after_rotation: Option<bool>,
    /// May an existing PrivX policy of this name, not created by this object, be taken over?
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
    /// What happens to the PrivX policy when this object is deleted. Default `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

impl PasswordPolicySpec {
    /// Effective minimum length (with the code default).
    pub fn min_length(&self) -> u32 {
        self.password_min_length.unwrap_or(DEFAULT_MIN_LENGTH)
    }
    /// Effective maximum length (with the code default).
    pub fn max_length(&self) -> u32 {
        self.password_max_length.unwrap_or(DEFAULT_MAX_LENGTH)
    }
    pub fn lower(&self) -> bool {
        self.use_lower_case.unwrap_or(true)
    }
    pub fn upper(&self) -> bool {
        self.use_upper_case.unwrap_or(true)
    }
    pub fn numbers(&self) -> bool {
        self.use_numbers.unwrap_or(true)
    }
    pub fn special(&self) -> bool {
        self.use_special_characters.unwrap_or(true)
    }
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
    pub fn adopt(&self) -> bool {
        self.adopt.unwrap_or(false)
    }
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicyStatus {
    /// The policy's ID in PrivX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The policy's name in PrivX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How this object came to manage the policy: `Created` or `Adopted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<super::Ownership>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// `Ready` and `Synced`, with specific reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a successful sync last wrote this status (a change in PrivX, in the mirror or in
    /// the conditions). A sync that changes nothing leaves it as it is, so a steady object costs
    /// no Kubernetes writes; `privx_operator_oldest_sync_age_seconds` says how fresh the
    /// controller's stalest object is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}
