//! privx-operator: a Kubernetes operator that makes PrivX vault secrets and
//! password policies declarative.
//!
//! The PrivX REST client is the workspace crate `privx-client` (`crates/privx-client`), the
//! PrivX simulator the crate `privx-sim` (`crates/privx-sim`, in developer builds only).
//!
//! This crate is laid out by architecture:
//! - [`crd`]: the custom resource types (the source of truth for `crds/`).
//! - [`password`]: the password generator.
//! - [`controller`]: the VaultSecret and PasswordPolicy controllers and the core they share.
//! - [`identity`]: how the operator and each namespace log in to PrivX.
//! - [`check`]: offline validation of manifests (`privx-operator check`).
//! - [`runtime`]: process wiring: leader election, HTTP endpoints, metrics, logging, shutdown.
#![forbid(unsafe_code)]

pub mod check;
pub mod controller;
pub mod crd;
pub mod identity;
pub mod password;
pub mod runtime;
pub mod template;
