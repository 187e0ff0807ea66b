//! The reconcile entry both controllers go through: wait for the stores, run the object's
//! reconcile (valid), its cleanup (deleted, not deserialisable) or report it (not
//! deserialisable), record the outcome in the metrics; how a finished reconcile is reported
//! ([`finish`]) and the error policy's backoff ([`requeue_after_failure`]).

use std::time::Instant;

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

use kube::api::Api;

use super::backoff::jittered_refresh;
use super::context::Context;
use super::deleted::Deleted;
use super::outcome::{Error, Next, Stop};
use super::status::{Reported, report_invalid_object, report_refusal};

/// Runs one reconcile of the object behind `guard` (see the module doc). `key`: the object's
/// key in metrics.
pub async fn reconcile_guarded<K>(
    guard: &DeserializeGuard<K>,
    ctx: &Context,
    controller: &'static str,
    key: &str,
    valid: impl AsyncFnOnce(&K) -> Result<Action, Error>,
    deleted: impl AsyncFnOnce(Deleted) -> Result<Action, Error>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + kube::CustomResourceExt,
{
    ctx.synced.wait().await;
    let started = Instant::now();
    let result = match &guard.0 {
        Ok(object) => valid(object).await,
        Err(invalid) if invalid.metadata.deletion_timestamp.is_some() => {
            match Deleted::fetch::<K>(ctx, invalid).await {
                Ok(Some(object)) => deleted(object).await,
                Ok(None) => Ok(Action::await_change()),
                Err(e) => Err(e),
            }
        }
        Err(invalid) => report_invalid_object::<K>(invalid, ctx, controller, key).await,
    };
    record(ctx, controller, started, &result);
    result
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
                    Ok(Action::requeue(jittered_refresh(d)))
                }
            }
        }
    }
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
    // PrivX not serving: retried as soon as the service's breaker closes (the runner), besides
    // this backoff; any other failure waits out its backoff alone.
    match error.privx_outage() {
        Some(service) => ctx.outage.wait(controller, key, service),
        None => ctx.outage.forget(controller, key),
    }
    tracing::warn!(%key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
