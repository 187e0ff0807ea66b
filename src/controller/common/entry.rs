//! The one entry point both controllers' `reconcile` go through: wait for the stores, run the
//! object's reconcile (valid), its cleanup (deleted, not deserialisable) or report it (not
//! deserialisable), and record the outcome in the metrics.

use std::time::Instant;

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

use super::failure::record;
use super::status::report_invalid_object;
use crate::controller::deletion::Deleted;
use crate::controller::{Context, Error};

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
