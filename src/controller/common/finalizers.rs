//! Our finalizer on an object, and the cleanup-target annotation that rides with it: added
//! before the first PrivX write, released after cleanup. Every patch is a compare-and-set on
//! the resourceVersion, so another controller's finalizer is never lost.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::controller::deletion::{CLEANUP_TARGET_ANNOTATION, MetadataChange};
use crate::controller::{Context, Error, FIELD_MANAGER, FINALIZER};

/// Whether `obj` carries our finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Makes the metadata change in one merge patch: our finalizer, and the cleanup-target
/// annotation (written with our field manager, so the operator owns it and a GitOps tool's
/// apply of the user's manifest leaves it alone). The resourceVersion makes it a
/// compare-and-set; a conflict (our cache was a little behind) is retried at once on a fresh
/// read, quietly; only a repeated conflict is an error. The written version is recorded, so its
/// watch event does not trigger again.
pub async fn set_metadata<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    change: &MetadataChange,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if pending(obj, change).is_empty() {
        return Ok(());
    }
    let (kind, namespace, name) = (K::kind(&()), obj.namespace(), obj.name_any());
    ctx.own_writes.begin(&kind, namespace.as_deref(), &name);
    let result = patch_with_retry(api, obj, change).await;
    ctx.own_writes.finish(
        &kind,
        namespace.as_deref(),
        &name,
        result.as_ref().ok().and_then(Option::as_ref),
    );
    result.map(drop)
}

/// Adds or removes our finalizer (see [`set_metadata`]).
pub async fn set_finalizer<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    wanted: bool,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let change = MetadataChange {
        finalizer: Some(wanted),
        cleanup_target: None,
    };
    set_metadata(ctx, api, obj, &change).await
}

/// What of `change` `obj` does not have yet.
fn pending<K: Resource>(obj: &K, change: &MetadataChange) -> MetadataChange {
    let annotation = obj.annotations().get(CLEANUP_TARGET_ANNOTATION);
    MetadataChange {
        finalizer: change.finalizer.filter(|w| has_finalizer(obj) != *w),
        cleanup_target: change
            .cleanup_target
            .clone()
            .filter(|want| want.as_ref() != annotation),
    }
}

/// The patch, and on a conflict one more on a fresh read; `None` when the fresh read already
/// had the wanted state.
async fn patch_with_retry<K>(
    api: &Api<K>,
    obj: &K,
    change: &MetadataChange,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let action = || format!("update finalizers of {}", obj.name_any());
    let written = match patch(api, obj, &pending(obj, change)).await {
        Ok(written) => written,
        Err(e) if is_conflict(&e) => {
            tracing::debug!(name = %obj.name_any(), "finalizer patch conflicted; retrying on a fresh read");
            let fresh = api
                .get(&obj.name_any())
                .await
                .map_err(Error::kube(action()))?;
            let rest = pending(&fresh, change);
            if rest.is_empty() {
                return Ok(None);
            }
            patch(api, &fresh, &rest)
                .await
                .map_err(Error::kube(action()))?
        }
        Err(e) => return Err(Error::kube(action())(e)),
    };
    Ok(Some(written))
}

async fn patch<K>(api: &Api<K>, obj: &K, change: &MetadataChange) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut metadata = json!({"resourceVersion": obj.resource_version()});
    if let Some(wanted) = change.finalizer {
        let mut finalizers: Vec<String> = obj.finalizers().to_vec();
        if wanted {
            finalizers.push(FINALIZER.to_string());
        } else {
            finalizers.retain(|f| f != FINALIZER);
        }
        metadata["finalizers"] = json!(finalizers);
    }
    if let Some(value) = &change.cleanup_target {
        metadata["annotations"] = json!({
            CLEANUP_TARGET_ANNOTATION: value.as_ref().map_or(Value::Null, |v| json!(v)),
        });
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(
        &obj.name_any(),
        &params,
        &Patch::Merge(&json!({ "metadata": metadata })),
    )
    .await
}

/// Whether the API refused a write because the object changed since it was read (409).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
