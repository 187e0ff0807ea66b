//! A deleted object as cleanup sees it, whether or not it still deserialises.
//!
//! Cleanup must work from what the object recorded (its status) even when its spec no longer
//! matches the Rust type, so it reads the object raw (`DynamicObject`): metadata for the
//! finalizer, `status` for what was written to PrivX, and only the two spec fields cleanup needs
//! (`deletionPolicy`, `adopt`), read leniently. The decisions themselves live in the pure plans.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams};
use kube::core::ApiResource;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::warn;

use super::common::{failure_conditions, now, publish_to};
use super::{Context, Error, FIELD_MANAGER, FINALIZER};
use crate::crd::DeletionPolicy;
use crate::crd::condition;

/// A deleted object: its metadata, raw spec and status, and how to reach it.
pub struct Deleted {
    api: Api<DynamicObject>,
    kind: String,
    api_version: String,
    pub meta: ObjectMeta,
    pub spec: Value,
    pub status: Value,
}

impl Deleted {
    fn api_for<K: Resource<DynamicType = ()>>(
        ctx: &Context,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let ar = ApiResource::erase::<K>(&());
        match namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
            None => Api::all_with(ctx.client.clone(), &ar),
        }
    }

    /// A valid object, as it was delivered.
    pub fn of<K>(ctx: &Context, obj: &K) -> Self
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let value = serde_json::to_value(obj).expect("a custom resource serializes");
        Self {
            api: Self::api_for::<K>(ctx, obj.meta().namespace.as_deref()),
            kind: K::kind(&()).to_string(),
            api_version: K::api_version(&()).to_string(),
            meta: obj.meta().clone(),
            spec: value.get("spec").cloned().unwrap_or(Value::Null),
            status: value.get("status").cloned().unwrap_or(Value::Null),
        }
    }

    /// An object that does not deserialise, read raw from the API. `None` when it is gone.
    pub async fn fetch<K>(ctx: &Context, invalid: &InvalidObject) -> Result<Option<Self>, Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let api = Self::api_for::<K>(ctx, invalid.metadata.namespace.as_deref());
        let name = invalid.metadata.name.clone().unwrap_or_default();
        let kind = K::kind(&()).to_string();
        let object = match api.get(&name).await {
            Ok(o) => o,
            Err(e) if Error::is_kube_not_found(&e) => return Ok(None),
            Err(e) => return Err(Error::kube(format!("read deleted {kind} {name}"))(e)),
        };
        Ok(Some(Self {
            api,
            kind,
            api_version: K::api_version(&()).to_string(),
            meta: object.metadata.clone(),
            spec: object.data.get("spec").cloned().unwrap_or(Value::Null),
            status: object.data.get("status").cloned().unwrap_or(Value::Null),
        }))
    }

    pub fn name(&self) -> String {
        self.meta.name.clone().unwrap_or_default()
    }

    pub fn has_finalizer(&self) -> bool {
        self.meta
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    }

    /// `spec.deletionPolicy`, read leniently: only an explicit `Delete` deletes.
    pub fn deletion_policy(&self) -> DeletionPolicy {
        match self.spec.get("deletionPolicy").and_then(Value::as_str) {
            Some("Delete") => DeletionPolicy::Delete,
            _ => DeletionPolicy::Retain,
        }
    }

    /// `spec.adopt`, read leniently.
    pub fn adopt(&self) -> bool {
        self.spec.get("adopt").and_then(Value::as_bool) == Some(true)
    }

    /// Whether the spec declares a source (the object writes PrivX).
    pub fn has_source(&self) -> bool {
        self.spec.get("source").is_some_and(|s| !s.is_null())
    }

    /// Status, typed (fields that do not fit are dropped to `None`).
    pub fn typed_status<S: serde::de::DeserializeOwned>(&self) -> Option<S> {
        serde_json::from_value(self.status.clone()).ok()
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: self.meta.name.clone(),
            namespace: self.meta.namespace.clone(),
            uid: self.meta.uid.clone(),
            resource_version: self.meta.resource_version.clone(),
            ..Default::default()
        }
    }

    /// Removes our finalizer (compare-and-set on the resourceVersion, so another controller's
    /// finalizer is never lost).
    pub async fn release_finalizer(&self) -> Result<(), Error> {
        if !self.has_finalizer() {
            return Ok(());
        }
        let rest: Vec<String> = self
            .meta
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"resourceVersion": self.meta.resource_version, "finalizers": rest}});
        self.api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "remove the finalizer of {} {}",
                self.kind,
                self.name()
            )))?;
        Ok(())
    }

    /// Publishes an event about the object; failures are logged, never fatal.
    pub async fn event(&self, ctx: &Context, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: None,
            action: "Delete".into(),
            secondary: None,
        };
        publish_to(&ctx.recorder, &self.reference(), event, &note).await
    }

    /// Says that the PrivX object `what` was deleted (a normal event).
    pub async fn deleted_in_privx(&self, ctx: &Context, what: String) {
        self.event(ctx, EventType::Normal, "Deleted", format!("deleted {what}"))
            .await
    }

    /// A refused deletion of the PrivX object (`what`, for the log): nothing is deleted, the
    /// finalizer stays, status and an event say why; the next step comes with a change.
    pub async fn refuse(
        &self,
        ctx: &Context,
        refusal: &super::outcome::Refusal,
        what: &str,
    ) -> Result<kube::runtime::controller::Action, Error> {
        warn!(reason = refusal.reason, "deletion of the {what} refused");
        self.report(ctx, refusal.reason, &refusal.message).await?;
        Ok(kube::runtime::controller::Action::await_change())
    }

    /// Reports a failed or refused cleanup: `Ready`/`Synced` false with `reason` (keeping the
    /// rest of status, so the record survives), and a warning event when the reason is new.
    pub async fn report(&self, ctx: &Context, reason: &str, message: &str) -> Result<(), Error> {
        let current: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
            serde_json::from_value(self.status["conditions"].clone()).unwrap_or_default();
        let previous = condition::find(&current, condition::READY).map(|c| c.reason.clone());
        let merged = condition::merge(
            &current,
            &failure_conditions(reason, message),
            self.meta.generation,
            now(),
        );
        let mut status = match &self.status {
            Value::Object(_) => self.status.clone(),
            _ => json!({}),
        };
        status["conditions"] = json!(merged);
        if status != self.status {
            let patch = json!({
                "apiVersion": self.api_version,
                "kind": self.kind,
                "status": status,
            });
            self.api
                .patch_status(
                    &self.name(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .map_err(Error::kube(format!(
                    "write status of {} {}",
                    self.kind,
                    self.name()
                )))?;
        }
        if previous.as_deref() != Some(reason) {
            self.event(ctx, EventType::Warning, reason, message.to_string())
                .await;
        }
        Ok(())
    }
}

/// The namespace's tenancy annotations, from the namespace store.
pub fn namespace_policy(ctx: &Context, namespace: &str) -> super::tenancy::NamespacePolicy {
    super::tenancy::NamespacePolicy::from_annotations(
        ctx.namespace(namespace)
            .as_ref()
            .and_then(|n| n.metadata.annotations.as_ref()),
    )
}

/// Annotation recording, before the first PrivX write, what cleanup would delete (the PrivX
/// name, and the personal owner): written in the same metadata patch that adds the finalizer,
/// so that a crash or a failed status write after the PrivX write still leaves cleanup a target.
/// Cleanup reads status first, then this, then the computed target — with the same re-checks
/// (tenancy rule, PrivX author), since annotations are user-writable like status. The operator
/// owns it through its field manager; a GitOps tool applying the user's manifest, which does
/// not name it, leaves it alone.
pub const CLEANUP_TARGET_ANNOTATION: &str = "privx-operator.dev/cleanup-target";

/// The value of [`CLEANUP_TARGET_ANNOTATION`] (JSON): a PrivX name and, for a personal secret,
/// its owner.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupTarget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
}

impl CleanupTarget {
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("a cleanup target serializes")
    }

    /// The target recorded on `meta`, if the annotation is there and readable.
    pub fn of(meta: &ObjectMeta) -> Option<Self> {
        let value = meta.annotations.as_ref()?.get(CLEANUP_TARGET_ANNOTATION)?;
        serde_json::from_str(value).ok()
    }
}

/// The metadata a sync changes before writing to PrivX, in one patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataChange {
    /// Add (`Some(true)`) or remove (`Some(false)`) our finalizer.
    pub finalizer: Option<bool>,
    /// Set (`Some(Some(value))`) or remove (`Some(None)`) [`CLEANUP_TARGET_ANNOTATION`].
    pub cleanup_target: Option<Option<String>>,
}

impl MetadataChange {
    pub fn is_empty(&self) -> bool {
        self.finalizer.is_none() && self.cleanup_target.is_none()
    }
}

/// What the metadata of `meta` must become (pure): our finalizer exactly when the object guards
/// a PrivX object (`wants_finalizer`), and with it the target the coming PrivX write concerns
/// (`intent`; `None` when nothing is written). Without the finalizer the annotation goes too.
pub fn plan_metadata(
    meta: &ObjectMeta,
    wants_finalizer: bool,
    intent: Option<&CleanupTarget>,
) -> MetadataChange {
    let has = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    let current = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLEANUP_TARGET_ANNOTATION));
    let cleanup_target = if wants_finalizer {
        intent
            .map(CleanupTarget::to_annotation)
            .filter(|value| Some(value) != current)
            .map(Some)
    } else {
        current.is_some().then_some(None)
    };
    MetadataChange {
        finalizer: (has != wants_finalizer).then_some(wants_finalizer),
        cleanup_target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> CleanupTarget {
        CleanupTarget {
            name: name.into(),
            owner_id: None,
        }
    }

    #[test]
    fn the_intent_rides_on_the_finalizer_patch_and_leaves_with_it() {
        let new = ObjectMeta::default();
        let change = plan_metadata(&new, true, Some(&target("k8s/ns/a")));
        assert_eq!(change.finalizer, Some(true));
        assert_eq!(
            change.cleanup_target,
            Some(Some(r#"{"name":"k8s/ns/a"}"#.to_string()))
        );
        let mut guarded = ObjectMeta {
            finalizers: Some(vec![FINALIZER.into()]),
            ..Default::default()
        };
        guarded.annotations = Some(
            [(
                CLEANUP_TARGET_ANNOTATION.to_string(),
                target("k8s/ns/a").to_annotation(),
            )]
            .into(),
        );
        assert_eq!(CleanupTarget::of(&guarded), Some(target("k8s/ns/a")));
        assert!(plan_metadata(&guarded, true, Some(&target("k8s/ns/a"))).is_empty());
        assert!(plan_metadata(&guarded, true, None).is_empty());
        let moved = plan_metadata(&guarded, true, Some(&target("k8s/ns/b")));
        assert_eq!(moved.finalizer, None);
        assert!(moved.cleanup_target.is_some_and(|v| v.is_some()));
        let retained = plan_metadata(&guarded, false, None);
        assert_eq!(retained.finalizer, Some(false));
        assert_eq!(retained.cleanup_target, Some(None));
        assert!(plan_metadata(&new, false, None).is_empty());
    }
}
