//! Small I/O helpers both controllers share: finalizers, status apply, events.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::DynamicObject;
use kube::core::{ApiResource, error_boundary::InvalidObject};
use kube::runtime::controller::Action;

use super::outcome::reason::INVALID_SPEC;
use super::{Context, Error, FIELD_MANAGER, FINALIZER};
use crate::crd::condition;
use crate::crd::schema::{served_schema, validate_structure};

/// Whether `obj` carries our finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes our finalizer. The resourceVersion in the merge patch makes it a
/// compare-and-set, so another controller's finalizer is never lost. A conflict (our cache was
/// a little behind) is retried at once on a fresh read, quietly; only a repeated conflict is an
/// error. The written version is recorded, so its watch event does not trigger again.
pub async fn set_finalizer<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    wanted: bool,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has_finalizer(obj) == wanted {
        return Ok(());
    }
    let action = || format!("update finalizers of {}", obj.name_any());
    let (kind, namespace, name) = (K::kind(&()), obj.namespace(), obj.name_any());
    ctx.own_writes.begin(&kind, namespace.as_deref(), &name);
    let result = finalizer_patch_with_retry(api, obj, wanted, action).await;
    ctx.own_writes.finish(
        &kind,
        namespace.as_deref(),
        &name,
        result.as_ref().ok().and_then(Option::as_ref),
    );
    result.map(drop)
}

/// The patch, and on a conflict one more on a fresh read; `None` when the fresh read already
/// had the wanted state.
async fn finalizer_patch_with_retry<K>(
    api: &Api<K>,
    obj: &K,
    wanted: bool,
    action: impl Fn() -> String,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let written = match patch_finalizers(api, obj, wanted).await {
        Ok(written) => written,
        Err(e) if is_conflict(&e) => {
            tracing::debug!(name = %obj.name_any(), "finalizer patch conflicted; retrying on a fresh read");
            let fresh = api
                .get(&obj.name_any())
                .await
                .map_err(Error::kube(action()))?;
            if has_finalizer(&fresh) == wanted {
                return Ok(None);
            }
            patch_finalizers(api, &fresh, wanted)
                .await
                .map_err(Error::kube(action()))?
        }
        Err(e) => return Err(Error::kube(action())(e)),
    };
    Ok(Some(written))
}

async fn patch_finalizers<K>(api: &Api<K>, obj: &K, wanted: bool) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
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
}

/// Whether the API refused a write because the object changed since it was read (409).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

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

/// A short text of a Kubernetes error for messages.
pub fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// An object that does not even deserialise: say why in status (keeping what status recorded
/// before) and wait for a change. If it is being deleted, release our finalizer: its spec
/// cannot be trusted to clean anything up, and deletion must never hang.
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
    if invalid.metadata.deletion_timestamp.is_some() {
        let finalizers = invalid.metadata.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == FINALIZER) {
            let rest: Vec<_> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
            let patch = json!({"metadata": {"resourceVersion": invalid.metadata.resource_version, "finalizers": rest}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!(
                    "remove finalizer of invalid {kind} {name}"
                )))?;
        }
        return Ok(Action::await_change());
    }
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

/// How a reconcile that stopped early continues.
pub enum Next {
    /// Wait for a change of the object (or of something watched).
    AwaitChange,
    /// Look again after this long.
    After(std::time::Duration),
    /// Fail: the error policy backs off.
    Fail(Box<Error>),
}

/// Why a reconcile stopped (reported in status) and how it continues.
pub type Stop = (super::outcome::Refusal, Next);

/// The condition reason for a PrivX failure.
pub fn privx_reason(e: &privx_client::PrivxError) -> &'static str {
    use super::outcome::reason;
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
    let refusal = super::outcome::Refusal::new(privx_reason(&e), format!("{action}: {e}"));
    (
        refusal,
        Next::Fail(Box::new(Error::privx(action.to_string())(e))),
    )
}

/// A failed Kubernetes call: reported, then backed off.
pub fn kube_stop(action: &str, e: kube::Error) -> Stop {
    let refusal = super::outcome::Refusal::new(
        super::outcome::reason::KUBERNETES_ERROR,
        format!("{action}: {}", short_kube_error(&e)),
    );
    (
        refusal,
        Next::Fail(Box::new(Error::kube(action.to_string())(e))),
    )
}

/// An error already wrapped (e.g. from a helper): reported, then backed off.
pub fn error_stop(e: Error) -> Stop {
    let refusal =
        super::outcome::Refusal::new(super::outcome::reason::KUBERNETES_ERROR, e.to_string());
    (refusal, Next::Fail(Box::new(e)))
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
        }
    };
}

reported!(crate::crd::VaultSecret, crate::crd::VaultSecretStatus);
reported!(crate::crd::PasswordPolicy, crate::crd::PasswordPolicyStatus);

/// Server-side applies `status` with `conditions` when it differs from the object's current
/// status. Unchanged conditions keep their transition times, so an unchanged status is never
/// written (a write is a watch event; the controller would trigger itself forever).
pub async fn write_status<K: Reported>(
    api: &Api<K>,
    obj: &K,
    mut status: K::Status,
    conditions: &[condition::DesiredCondition],
) -> Result<(), Error> {
    let current = obj.status().cloned().unwrap_or_default();
    let generation = obj.meta().generation;
    let merged = condition::merge(K::conditions(&current), conditions, generation, now());
    K::set_report(&mut status, merged, generation);
    if status == current {
        return Ok(());
    }
    apply_status(api, obj, &status).await
}

/// Reports a refusal: both conditions false with its reason (keeping what status knew of
/// PrivX), the object-condition metric, and a warning event when the reason is new.
pub async fn report_refusal<K: Reported>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    controller: &'static str,
    key: &str,
    refusal: &super::outcome::Refusal,
) -> Result<(), Error> {
    let previous = obj
        .status()
        .and_then(|s| condition::find(K::conditions(s), condition::READY))
        .map(|c| c.reason.clone());
    let status = obj.status().cloned().unwrap_or_default();
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

/// Finishes a reconcile: success, or a reported refusal. A refusal reported in status ends a
/// failure streak like a success does (the next failure starts at 1 s again); only `Fail`
/// goes to the error policy's backoff.
pub async fn finish<K: Reported>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    controller: &'static str,
    key: &str,
    backoff_key: &str,
    result: Result<Action, Stop>,
) -> Result<Action, Error> {
    match result {
        Ok(action) => {
            ctx.backoff.reset(backoff_key);
            Ok(action)
        }
        Err((refusal, next)) => {
            report_refusal(ctx, api, obj, controller, key, &refusal).await?;
            match next {
                Next::Fail(e) => Err(*e),
                Next::AwaitChange => {
                    ctx.backoff.reset(backoff_key);
                    Ok(Action::await_change())
                }
                Next::After(d) => {
                    ctx.backoff.reset(backoff_key);
                    Ok(Action::requeue(super::backoff::jittered_refresh(d)))
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
        super::outcome::Refusal::new(super::outcome::reason::INVALID_SPEC, message),
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

/// The error policy of both controllers: per-object exponential backoff with jitter.
pub fn requeue_after_failure(ctx: &Context, key: &str, error: &Error) -> Action {
    let delay = ctx.backoff.next_delay(key);
    tracing::warn!(%key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
