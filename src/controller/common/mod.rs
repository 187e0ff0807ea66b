//! Small I/O helpers both controllers share, by concern: finalizers, status writes, events, and
//! the one reconcile entry point, and how a stopped reconcile is reported and continued (failure mapping).

mod entry;
mod events;
mod failure;
mod finalizers;
mod status;

pub use entry::reconcile_guarded;
pub use events::{publish, publish_to, truncate};
pub use failure::{
    Next, ObjectKeys, Stop, error_stop, finish, invalid_spec, is_already_exists, kube_stop,
    privx_reason, privx_stop, record, requeue_after_failure, short_kube_error,
};
pub use finalizers::{has_finalizer, is_conflict, set_finalizer, set_metadata};
pub use status::{
    Reported, apply_status, apply_status_returning, failure_conditions, now, now_rfc3339,
    report_invalid_object, report_refusal, write_status,
};
