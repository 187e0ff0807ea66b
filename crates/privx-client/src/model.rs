//! PrivX wire objects (docs/privx-api.md sections 2–4), as the client sends and
//! receives them. Secret data never appears in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a vault secret lives: the shared vault, or one user's personal vault.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretLocation {
    /// `/vault/api/v1/secrets/...`
    Shared,
    /// `/vault/api/v1/user/{user_id}/secrets/...`
    Personal { user_id: String },
}

/// A secret's data: field name → JSON value (typically strings). `Debug` shows only the keys.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretData(pub BTreeMap<String, serde_json::Value>);

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.0.keys().map(|k| format!("{k}: <redacted>")))
            .finish()
    }
}

/// A role handle as the vault stores it in `read_roles` / `write_roles`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleHandle {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

/// A vault secret as PrivX returns it. `data` is `None` when the caller may list but not read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<SecretData>,
    #[serde(default)]
    pub read_roles: Vec<RoleHandle>,
    #[serde(default)]
    pub write_roles: Vec<RoleHandle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

/// The body of a create or update: data and roles (PUT replaces all three whole).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretWrite {
    pub data: SecretData,
    pub read_roles: Vec<RoleHandle>,
    pub write_roles: Vec<RoleHandle>,
}

/// A PrivX role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
}

/// Which generation of the password-policy API a server speaks (docs/privx-api.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyGeneration {
    /// PrivX ≤ 34: Go durations, `delete_version_after`, `fallback_to_previous`.
    V34,
    /// PrivX ≥ 35: ISO 8601 durations, checkout settings.
    V35,
}

/// A password policy in a generation-neutral form. Durations are `std::time::Duration`; the
/// client formats them for the server's generation and parses either spelling on the way back.
/// Fields the server's generation lacks are `None` when read; writing a policy that sets a field
/// the generation lacks is refused by [`crate::PrivxClient`] with
/// [`crate::PrivxError::Unsupported`] naming the field (never silently dropped).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PasswordPolicy {
    /// Server-assigned; ignored on create.
    pub id: Option<String>,
    pub name: String,
    pub rotation_interval: Option<std::time::Duration>,
    pub password_min_length: Option<u32>,
    pub password_max_length: Option<u32>,
    pub use_special_characters: Option<bool>,
    pub use_lower_case: Option<bool>,
    pub use_upper_case: Option<bool>,
    pub use_numbers: Option<bool>,
    pub max_versions: Option<u32>,
    pub number_of_retries: Option<u32>,
    pub retry_interval: Option<std::time::Duration>,
    /// V34 only.
    pub delete_version_after: Option<std::time::Duration>,
    /// V34 only.
    pub fallback_to_previous: Option<bool>,
    /// V35 only.
    pub max_concurrent_checkouts: Option<u32>,
    /// V35 only.
    pub max_checkout_duration: Option<std::time::Duration>,
    /// V35 only.
    pub rotate_on_release: Option<bool>,
    /// V35 only.
    pub verify_after_rotation: Option<bool>,
    /// Server-set metadata (read only).
    pub created: Option<String>,
    pub updated: Option<String>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
}

impl PasswordPolicy {
    /// The camelCase names of fields that are set but that `generation` does not have.
    pub fn fields_unsupported_by(&self, generation: PolicyGeneration) -> Vec<&'static str> {
        let mut out = Vec::new();
        match generation {
            PolicyGeneration::V34 => {
                if self.max_concurrent_checkouts.is_some() {
                    out.push("maxConcurrentCheckouts");
                }
                if self.max_checkout_duration.is_some() {
                    out.push("maxCheckoutDuration");
                }
                if self.rotate_on_release.is_some() {
                    out.push("rotateOnRelease");
                }
                if self.verify_after_rotation.is_some() {
                    out.push("verifyAfterRotation");
                }
            }
            PolicyGeneration::V35 => {
                if self.delete_version_after.is_some() {
                    out.push("deleteVersionAfter");
                }
                if self.fallback_to_previous.is_some() {
                    out.push("fallbackToPrevious");
                }
            }
        }
        out
    }
}
