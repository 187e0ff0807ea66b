//! Small I/O helpers both controllers share: finalizers, status apply, events.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use super::{Error, FIELD_MANAGER, FINALIZER};

/// Whether `obj` carries our finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes our finalizer. The resourceVersion in the merge patch makes it a
/// compare-and-set, so another controller's finalizer is never lost.
pub async fn set_finalizer<K>(api: &Api<K>, obj: &K, wanted: bool) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has_finalizer(obj) == wanted {
        return Ok(());
    }
    let mut finalizers: Vec<String> = obj.finalizers().to_vec();
    if wanted {
        finalizers.push(FINALIZER.to_string());
    } else {
        finalizers.retain(|f| f != FINALIZER);
    }
    let patch =
        json!({"metadata": {"resourceVersion": obj.resource_version(), "finalizers": finalizers}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube(format!(
        "update finalizers of {}",
        obj.name_any()
    )))?;
    Ok(())
}

/// Server-side applies `status` on the status subresource with our field manager.
pub async fn apply_status<K>(api: &Api<K>, obj: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::kube(format!(
        "write status of {} {}",
        K::kind(&()),
        obj.name_any()
    )))?;
    Ok(())
}

/// Publishes an event about `obj`; failures are logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(&note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// "now" as a Kubernetes time.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// `Ready` and `Synced` both false with the same reason.
pub fn failure_conditions(
    reason: &str,
    message: &str,
) -> Vec<crate::crd::condition::DesiredCondition> {
    use crate::crd::condition::{DesiredCondition, READY, SYNCED};
    vec![
        DesiredCondition::new(READY, false, reason, message),
        DesiredCondition::new(SYNCED, false, reason, message),
    ]
}

/// A short text of a Kubernetes error for messages.
pub fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}
