//! How a reconcile that stopped early is reported and continued: the refusal and the next step
//! ([`Stop`]), the reason of a failed PrivX or Kubernetes call, the error policy's backoff.

use kube::api::Api;
use kube::runtime::controller::Action;

use super::status::{Reported, report_refusal};
use crate::controller::{Context, Error};

/// A short text of a Kubernetes error for messages.
pub fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// How a reconcile that stopped early continues.
#[derive(Debug)]
pub enum Next {
    /// Wait for a change of the object (or of something watched).
    AwaitChange,
    /// Look again after this long.
    After(std::time::Duration),
    /// Fail: the error policy backs off.
    Fail(Box<Error>),
}

/// Why a reconcile stopped (reported in status) and how it continues.
pub type Stop = (crate::controller::outcome::Refusal, Next);

/// The condition reason for a PrivX failure.
pub fn privx_reason(e: &privx_client::PrivxError) -> &'static str {
    use crate::controller::outcome::reason;
    use privx_client::PrivxError;
    match e {
        PrivxError::PermissionDenied { .. } => reason::PERMISSION_DENIED,
        PrivxError::InvalidRequest { .. } | PrivxError::Unsupported { .. } => reason::INVALID_SPEC,
        // Reported as what it is, never as an outage.
        PrivxError::AlreadyExists { .. } => reason::CONFLICT,
        _ => reason::PRIVX_UNAVAILABLE,
    }
}

/// A failed PrivX call: reported with its reason, then backed off.
pub fn privx_stop(e: privx_client::PrivxError, action: &str) -> Stop {
    let refusal =
        crate::controller::outcome::Refusal::new(privx_reason(&e), format!("{action}: {e}"));
    (
        refusal,
        Next::Fail(Box::new(Error::privx(action.to_string())(e))),
    )
}

/// Whether `stop` is PrivX answering that the name exists (a create of a taken name).
pub fn is_already_exists(stop: &Stop) -> bool {
    matches!(
        &stop.1,
        Next::Fail(e) if matches!(
            **e,
            Error::Privx { source: privx_client::PrivxError::AlreadyExists { .. }, .. }
        )
    )
}

/// A failed Kubernetes call: reported, then backed off.
pub fn kube_stop(action: &str, e: kube::Error) -> Stop {
    let refusal = crate::controller::outcome::Refusal::new(
        crate::controller::outcome::reason::KUBERNETES_ERROR,
        format!("{action}: {}", short_kube_error(&e)),
    );
    (
        refusal,
        Next::Fail(Box::new(Error::kube(action.to_string())(e))),
    )
}

/// An error already wrapped (e.g. from a helper): reported, then backed off.
pub fn error_stop(e: Error) -> Stop {
    let refusal = crate::controller::outcome::Refusal::new(
        crate::controller::outcome::reason::KUBERNETES_ERROR,
        e.to_string(),
    );
    (refusal, Next::Fail(Box::new(e)))
}

/// Finishes a reconcile: success, or a reported refusal. A refusal reported in status ends a
/// failure streak like a success does (the next failure starts at 1 s again); only `Fail`
/// goes to the error policy's backoff.
/// `base`: the status a refusal is reported on (see [`report_refusal`]).
pub async fn finish<K: Reported>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    base: Option<K::Status>,
    keys: &ObjectKeys<'_>,
    result: Result<Action, Stop>,
) -> Result<Action, Error> {
    let ObjectKeys { controller, key } = *keys;
    match result {
        Ok(action) => {
            ctx.recovered(controller, key);
            Ok(action)
        }
        Err((refusal, next)) => {
            report_refusal(ctx, api, obj, base, controller, key, &refusal).await?;
            match next {
                Next::Fail(e) => Err(*e),
                Next::AwaitChange => {
                    ctx.recovered(controller, key);
                    Ok(Action::await_change())
                }
                Next::After(d) => {
                    ctx.recovered(controller, key);
                    Ok(Action::requeue(
                        crate::controller::backoff::jittered_refresh(d),
                    ))
                }
            }
        }
    }
}

/// Stops on validation errors: `InvalidSpec` naming every field, waiting for a change.
pub fn invalid_spec(errors: &[crate::crd::validate::FieldError]) -> Result<(), Stop> {
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Err((
        crate::controller::outcome::Refusal::new(
            crate::controller::outcome::reason::INVALID_SPEC,
            message,
        ),
        Next::AwaitChange,
    ))
}

/// Records a finished reconcile in the metrics (duration, and the error label on failure).
pub fn record(
    ctx: &Context,
    controller: &'static str,
    started: std::time::Instant,
    result: &Result<Action, Error>,
) {
    ctx.metrics.reconciled(
        controller,
        started.elapsed(),
        result.as_ref().err().map(|e| e.label()),
    );
}

/// How an object is named: its controller, and its key in metrics and the backoff map.
#[derive(Clone, Copy, Debug)]
pub struct ObjectKeys<'a> {
    pub controller: &'static str,
    pub key: &'a str,
}

/// The error policy of both controllers: per-object exponential backoff with jitter.
pub fn requeue_after_failure(
    ctx: &Context,
    controller: &'static str,
    key: &str,
    error: &Error,
) -> Action {
    let delay = ctx.failed(controller, key);
    tracing::warn!(%key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
