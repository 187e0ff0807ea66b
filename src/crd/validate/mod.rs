//! Semantic validation of VaultSecret and PasswordPolicy specs, shared by the controllers'
//! validate step and `privx-operator check`, so both report the same messages.
//!
//! Repeats in code everything the CEL rules check (the API server enforces those, but nothing
//! here trusts that the object went through it) and adds what CEL cannot express: durations
//! that parse, defaults taken into account, duplicates, Secret key syntax and collisions.
//! Pure functions of the spec: no I/O, no lookups of referenced objects. Where a check repeats a
//! CEL rule, the message is the rule's message.
//!
//! - `names`: the syntax of Kubernetes names and keys (one definition for validation, `check`
//!   and the mirror plan);
//! - `vault_secret`: [`validate_vault_secret`] (its CEL-twin messages are constants of
//!   `crd::vault_secret`, used by the rules and here);
//! - `password_policy`: [`validate_password_policy`].

mod names;
mod password_policy;
mod vault_secret;

use std::fmt;
use std::time::Duration;

pub use names::{is_dns_subdomain, is_secret_key};
pub use password_policy::validate_password_policy;
pub use vault_secret::validate_vault_secret;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The path of the field at fault, e.g. `spec.source.secretRef.keys[1]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Shortest and longest `spec.refreshInterval`.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(168 * 3600);

pub(super) fn length_between(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    out: &mut Vec<FieldError>,
) {
    let length = value.chars().count();
    if length < min || length > max {
        out.push(FieldError::new(
            field,
            format!("must be {min} to {max} characters (is {length})"),
        ));
    }
}

/// A string bound by a CRD `maxLength` (counted in characters, as the API server does).
pub(super) fn at_most_chars(field: &str, value: &str, max: usize, out: &mut Vec<FieldError>) {
    let length = value.chars().count();
    if length > max {
        out.push(FieldError::new(
            field,
            format!("must be at most {max} characters (is {length})"),
        ));
    }
}

pub(super) fn at_most_items(field: &str, count: usize, max: usize, out: &mut Vec<FieldError>) {
    if count > max {
        out.push(FieldError::new(
            field,
            format!("must have at most {max} items (has {count})"),
        ));
    }
}

pub(super) fn within(field: &str, value: u32, min: u32, max: u32, out: &mut Vec<FieldError>) {
    if value < min || value > max {
        out.push(FieldError::new(
            field,
            format!("must be from {min} to {max} (is {value})"),
        ));
    }
}
