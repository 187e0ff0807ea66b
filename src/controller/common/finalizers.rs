//! Our finalizer on an object: added before the first PrivX write, released after cleanup.
//! Every patch is a compare-and-set on the resourceVersion, so another controller's finalizer is
//! never lost.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::controller::{Context, Error, FINALIZER};

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
