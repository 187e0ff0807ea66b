//! Placeholder until the validation branch lands.
use super::{PasswordPolicySpec, VaultSecretSpec};

pub struct FieldError {
    pub field: String,
    pub message: String,
}

pub fn validate_vault_secret(_spec: &VaultSecretSpec) -> Vec<FieldError> {
    Vec::new()
}

pub fn validate_password_policy(_spec: &PasswordPolicySpec) -> Vec<FieldError> {
    Vec::new()
}
