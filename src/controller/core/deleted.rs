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

use super::FIELD_MANAGER;
use super::context::Context;
use super::events::publish_to;
use super::finalizer;
use super::outcome::{Error, Refusal};
use super::status::{failure_conditions, now};
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
        finalizer::has_finalizer_in(&self.meta)
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

    /// Removes our finalizer (see [`finalizer::release`]).
    pub async fn release_finalizer(&self) -> Result<(), Error> {
        let object = DynamicObject {
            types: None,
            metadata: self.meta.clone(),
            data: Value::Null,
        };
        finalizer::release(&self.api, &object).await
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
        refusal: &Refusal,
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
