//! privx-operator: a Kubernetes operator that makes PrivX vault secrets and
//! password policies declarative.
//!
//! The crate is laid out by architecture:
//! - [`crd`]: the custom resource types (the source of truth for `crds/`).
//! - [`privx`]: the PrivX REST client.
//! - [`password`]: the password generator.
//! - [`controller`]: the VaultSecret and PasswordPolicy controllers.
//! - [`sim`]: the PrivX simulator (a real HTTP server used by tests, demos and benchmarks).
//! - [`check`]: offline validation of manifests (`privx-operator check`).
//! - [`runtime`]: process wiring: leader election, HTTP endpoints, metrics, logging, shutdown.
#![forbid(unsafe_code)]

pub mod check;
pub mod controller;
pub mod crd;
pub mod password;
pub mod privx;
pub mod runtime;
pub mod sim;
