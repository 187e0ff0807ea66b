//! The two controllers and the core they share.
//!
//! - [`core`]: what both use; it never names a kind.
//! - [`vault_secret`]: the VaultSecret controller (namespaced), its stages and its state.
//! - [`password_policy`]: the PasswordPolicy controller (cluster-scoped), its stages.
//!
//! Each controller is a folder with one file per stage — `fetch` → `plan` (pure) → `apply`,
//! `cleanup` on deletion, `report` (status) — driven from its `mod.rs`. Only `fetch`, `apply`,
//! `cleanup` and `report` do I/O. Neither controller imports the other; the watches that feed
//! them are wired in `crate::runtime::runner`, which this module must not import.

pub mod core;
pub mod password_policy;
pub mod vault_secret;
