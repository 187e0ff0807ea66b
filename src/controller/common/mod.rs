//! Small I/O helpers both controllers share, by concern: finalizers, status writes, events, and
//! how a stopped reconcile is reported and continued (failure mapping).

mod events;
mod failure;
mod finalizers;
mod status;

pub use events::{publish, truncate};
pub use failure::{
    Next, Stop, error_stop, finish, invalid_spec, kube_stop, privx_reason, privx_stop, record,
    requeue_after_failure, short_kube_error,
};
pub use finalizers::{has_finalizer, is_conflict, set_finalizer};
pub use status::{
    Reported, apply_status, apply_status_returning, failure_conditions, now, now_rfc3339,
    report_invalid_object, report_refusal, write_status,
};
