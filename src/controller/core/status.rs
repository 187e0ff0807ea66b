//! Status writes of both kinds: server-side apply with our field manager, skipped when nothing
//! but timestamps would change; refusals and objects that do not deserialise are reported here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, error_boundary::InvalidObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::FIELD_MANAGER;
use super::context::Context;
use super::events::publish;
use super::outcome::reason::INVALID_SPEC;
use super::outcome::{Error, Refusal};
use crate::crd::condition;
use crate::crd::schema::{served_schema, validate_structure};

/// Server-side applies `status` on the status subresource with our field manager.
pub async fn apply_status<K>(api: &Api<K>, obj: &K, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let what = format!("write status of {} {}", K::kind(&()), obj.name_any());
    patch_status(api, obj, status, what).await.map(drop)
}

/// [`apply_status`] before a PrivX write (the recorded target), returning the object as the API
/// holds it afterwards.
pub async fn apply_status_returning<K>(
    api: &Api<K>,
    obj: &K,
    status: &impl Serialize,
) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let what = format!(
        "record the PrivX target in the status of {} {}",
        K::kind(&()),
        obj.name_any()
    );
    patch_status(api, obj, status, what).await
}

async fn patch_status<K>(
    api: &Api<K>,
    obj: &K,
    status: &impl Serialize,
    what: String,
) -> Result<K, Error>
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
    .map_err(Error::kube(what))
}

/// "now" as PrivX writes its timestamps (RFC 3339, UTC).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
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

/// An object that does not even deserialise: say why in status (keeping what status recorded
/// before) and wait for a change. (A deleted one goes to cleanup instead: see `entry`.)
pub async fn report_invalid_object<K>(
    invalid: &InvalidObject,
    ctx: &Context,
    controller: &'static str,
    metrics_key: &str,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + kube::CustomResourceExt,
{
    let kind = K::kind(&());
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let ar = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &invalid.metadata.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
        None => Api::all_with(ctx.client.clone(), &ar),
    };
    // The status is read and applied whole: a server-side apply that leaves out the id,
    // name and ownership this manager wrote before would delete them, and the fixed object
    // would no longer find its PrivX policy. Merging into the current conditions keeps
    // their transition times, so an unchanged report is not written again (a write is a
    // watch event, and the controller would trigger itself forever).
    let object = match api.get_status(&name).await {
        Ok(object) => object,
        Err(e) if Error::is_kube_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => {
            return Err(Error::kube(format!("read status of invalid {kind} {name}"))(e));
        }
    };
    let current = object.data.get("status").cloned().unwrap_or(json!({}));
    let message = format!(
        "the object does not match the {kind} schema: {}",
        schema_problems::<K>(&object).unwrap_or_else(|| invalid.error.clone())
    );
    let current_conditions: Vec<Condition> =
        serde_json::from_value(current["conditions"].clone()).unwrap_or_default();
    let conditions = condition::merge(
        &current_conditions,
        &failure_conditions(INVALID_SPEC, &message),
        invalid.metadata.generation,
        now(),
    );
    let mut status = match &current {
        serde_json::Value::Object(_) => current.clone(),
        _ => json!({}),
    };
    status["conditions"] = json!(conditions);
    status["observedGeneration"] = json!(invalid.metadata.generation);
    if status != current {
        let patch = json!({
            "apiVersion": ar.api_version,
            "kind": ar.kind,
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube(format!(
            "write status of invalid {kind} {name}"
        )))?;
    }
    ctx.metrics
        .object_condition(controller, metrics_key, false, INVALID_SPEC);
    Ok(Action::await_change())
}

/// The structural-schema problems of a raw object, with their field paths (serde's own error
/// names the expected type but not where): the same walk `privx-operator check` does.
fn schema_problems<K: kube::CustomResourceExt>(object: &DynamicObject) -> Option<String> {
    let schema = served_schema(&K::crd())?;
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    let problems = validate_structure(&schema, &value, "");
    (!problems.is_empty()).then(|| {
        problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A custom resource whose status carries conditions and an observed generation.
pub trait Reported:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug
{
    type Status: Clone + Default + PartialEq + Serialize;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    /// Sets the conditions and the observed generation.
    fn set_report(status: &mut Self::Status, conditions: Vec<Condition>, generation: Option<i64>);
    /// When a successful sync last wrote the status.
    fn last_sync_time(status: &Self::Status) -> Option<&Time>;
    fn set_last_sync_time(status: &mut Self::Status, time: Option<Time>);
}

/// Both kinds keep `conditions` and `observedGeneration` in their status the same way.
macro_rules! reported {
    ($kind:ty, $status:ty) => {
        impl Reported for $kind {
            type Status = $status;
            fn status(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn conditions(status: &Self::Status) -> &[Condition] {
                &status.conditions
            }
            fn set_report(
                status: &mut Self::Status,
                conditions: Vec<Condition>,
                generation: Option<i64>,
            ) {
                status.conditions = conditions;
                status.observed_generation = generation;
            }
            fn last_sync_time(status: &Self::Status) -> Option<&Time> {
                status.last_sync_time.as_ref()
            }
            fn set_last_sync_time(status: &mut Self::Status, time: Option<Time>) {
                status.last_sync_time = time;
            }
        }
    };
}

reported!(crate::crd::VaultSecret, crate::crd::VaultSecretStatus);
reported!(crate::crd::PasswordPolicy, crate::crd::PasswordPolicyStatus);

/// Server-side applies `status` with `conditions` when it differs from the object's current
/// status. Unchanged conditions keep their transition times, so an unchanged status is never
/// written (a write is a watch event; the controller would trigger itself forever).
/// `lastSyncTime` stays as it was.
pub async fn write_status<K: Reported>(
    api: &Api<K>,
    obj: &K,
    status: K::Status,
    conditions: &[condition::DesiredCondition],
) -> Result<(), Error> {
    write(api, obj, status, conditions, false).await
}

/// [`write_status`] after a successful sync: when the status is written anyway, it also
/// records the time in `lastSyncTime` (never a write of its own).
pub async fn write_synced_status<K: Reported>(
    api: &Api<K>,
    obj: &K,
    status: K::Status,
    conditions: &[condition::DesiredCondition],
) -> Result<(), Error> {
    write(api, obj, status, conditions, true).await
}

async fn write<K: Reported>(
    api: &Api<K>,
    obj: &K,
    mut status: K::Status,
    conditions: &[condition::DesiredCondition],
    synced: bool,
) -> Result<(), Error> {
    let current = obj.status().cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    let merged = condition::merge(K::conditions(&current), conditions, generation, now());
    K::set_report(&mut status, merged, generation);
    K::set_last_sync_time(&mut status, K::last_sync_time(&current).cloned());
    if status == current {
        return Ok(());
    }
    if synced {
        K::set_last_sync_time(&mut status, Some(now()));
    }
    apply_status(api, obj, &status).await
}

/// Reports a refusal: both conditions false with its reason (keeping what status knew of
/// PrivX), the object-condition metric, and a warning event when the reason is new.
/// `base`: the status to report on instead of the object's (e.g. one naming the PrivX target a
/// failed write concerned).
pub async fn report_refusal<K: Reported>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    base: Option<K::Status>,
    controller: &'static str,
    key: &str,
    refusal: &Refusal,
) -> Result<(), Error> {
    let previous = obj
        .status()
        .and_then(|s| condition::find(K::conditions(s), condition::READY))
        .map(|c| c.reason.clone());
    let status = base.unwrap_or_else(|| obj.status().cloned().unwrap_or_default());
    write_status(
        api,
        obj,
        status,
        &failure_conditions(refusal.reason, &refusal.message),
    )
    .await?;
    ctx.metrics
        .object_condition(controller, key, false, refusal.reason);
    if previous.as_deref() != Some(refusal.reason) {
        publish(
            &ctx.recorder,
            obj,
            EventType::Warning,
            refusal.reason,
            refusal.message.clone(),
        )
        .await;
    }
    Ok(())
}
