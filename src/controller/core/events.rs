//! Events about an object: published best-effort, never fatal, notes cut to a size the API takes.

use super::recorder::Recorder;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

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
        note: None,
        action: "Reconcile".into(),
        secondary: None,
    };
    publish_to(recorder, &obj.object_ref(&()), event, &note).await
}

/// Publishes `event` with `note` (cut to size) about `reference`; failures are logged.
pub async fn publish_to(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    mut event: Event,
    note: &str,
) {
    event.note = Some(truncate(note, 1000));
    if let Err(e) = recorder.publish(&event, reference).await {
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
