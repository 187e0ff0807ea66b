//! The pure middle of the VaultSecret reconcile: from what was fetched to what must be written.
//!
//! No I/O here. Every decision about ownership, drift, generation, mirroring, rollout restarts
//! and status is a function of its inputs, tested on small fixtures.

use privx_client::{SecretData, SecretLocation};

pub use crate::controller::outcome::{Refusal, reason};

mod claim;
mod mirror;
pub mod ownership;
mod privx;

pub use claim::*;
pub use mirror::*;
pub use privx::*;

/// Where the secret lives in PrivX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub location: SecretLocation,
    pub name: String,
}

impl Target {
    pub fn owner_id(&self) -> Option<&str> {
        match &self.location {
            SecretLocation::Shared => None,
            SecretLocation::Personal { user_id } => Some(user_id),
        }
    }

    /// How the target is named in messages: `"k8s/ns/x"` or `"k8s/ns/x" of user u`.
    pub fn describe(&self) -> String {
        match self.owner_id() {
            None => format!("{:?}", self.name),
            Some(u) => format!("{:?} (personal, user {u})", self.name),
        }
    }
}

/// The data source as fetched.
#[derive(Clone, Debug)]
pub enum SourceInput {
    /// No source: PrivX is the source of truth.
    ReadOnly,
    /// The selected keys of the source Secret, as text.
    Secret(SecretData),
    /// A password to generate into `key`; `candidate` is used only if a new one is needed.
    Generate {
        key: String,
        candidate: crate::password::Password,
    },
}

#[cfg(test)]
mod tests;
