//! The shared core of both controllers. It never names a kind: what it does for a VaultSecret
//! it does for a PasswordPolicy, through generic functions and the [`status::Reported`] trait.
//!
//! Owns: the small shared [`Context`] (Kubernetes and PrivX clients, the operator's PrivX
//! identity, metrics, event recorder, per-object backoff, own-write tracking, the sync gate),
//! the reconcile entry ([`entry`]), the vocabulary of outcomes, refusals and errors
//! ([`outcome`]), status writes ([`status`]), events ([`events`], [`recorder`]), the one
//! finalizer implementation ([`finalizer`]) and the raw view of deleted objects ([`deleted`]).
//!
//! Must not import either controller (`vault_secret`, `password_policy`) nor the process wiring
//! (`runtime`): it sits below them (checked by `tests/layering.rs`).

pub mod backoff;
pub mod context;
pub mod deleted;
pub mod entry;
pub mod events;
pub mod finalizer;
pub mod outage;
pub mod outcome;
pub mod own_writes;
pub mod recorder;
pub mod status;
pub mod strip;
pub mod sync_gate;

pub use context::{Context, ControllerMetrics, NoMetrics, may_be_ours};
pub use entry::{ObjectKeys, finish, reconcile_guarded, record, requeue_after_failure};
pub use events::{publish, publish_to, truncate};
pub use finalizer::{has_finalizer, is_conflict, set_finalizer, set_metadata};
pub use outcome::{
    Error, Next, Refusal, Stop, error_stop, invalid_spec, is_already_exists, kube_stop,
    privx_reason, privx_stop, reason, short_kube_error,
};
pub use status::{
    Reported, apply_status, apply_status_returning, failure_conditions, now, now_rfc3339,
    report_invalid_object, report_refusal, write_status, write_synced_status,
};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "privx-operator";
