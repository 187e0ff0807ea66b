//! The one finalizer implementation both controllers use: our finalizer and the cleanup-target
//! annotation that rides with it, planned (pure: [`plan_metadata`]), added before the first PrivX
//! write and released after cleanup ([`set_metadata`], [`release`]). Every patch is a
//! compare-and-set on the resourceVersion, so another controller's finalizer is never lost.
//!
//! Not `kube::runtime::finalizer`: that helper puts its finalizer on every object and runs the
//! cleanup from the typed object. Ours guards only objects that own PrivX data
//! (`deletionPolicy: Delete`), writes the cleanup target in the same patch as the finalizer
//! (so a crash between the PrivX write and the status write still leaves cleanup a target),
//! and cleans up objects that no longer deserialise (from their raw status: `Deleted`).

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use kube::api::ObjectMeta;

use super::FIELD_MANAGER;
use super::context::Context;
use super::outcome::Error;

/// Finalizer guarding deletion of the PrivX object (only with `deletionPolicy: Delete`).
pub const FINALIZER: &str = "privx-operator.dev/cleanup";

/// Whether `obj` carries our finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    has_finalizer_in(obj.meta())
}

/// Whether `meta` carries our finalizer.
pub fn has_finalizer_in(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// Releases our finalizer from `obj` (a deleted object whose cleanup is done, or that cannot
/// be cleaned up); nothing when it does not carry it. Compare-and-set like every other patch.
pub async fn release<K>(api: &Api<K>, obj: &K) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if !has_finalizer(obj) {
        return Ok(());
    }
    let change = MetadataChange {
        finalizer: Some(false),
        cleanup_target: None,
    };
    patch(api, obj, &change)
        .await
        .map(drop)
        .map_err(Error::kube(format!(
            "remove the finalizer of {}",
            obj.name_any()
        )))
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
    let has = has_finalizer_in(meta);
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
