//! Deletion of a VaultSecret: under `deletionPolicy: Delete` the PrivX secret it recorded goes
//! with it (after the re-checks); then the finalizer is released.

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;

use super::Context;
use super::plan::{self, Target};
use super::{CONTROLLER, object_key};
use crate::controller::core::Error;
use crate::controller::core::deleted::Deleted;
use crate::controller::core::finalizer::CleanupTarget;
use crate::controller::core::{self, Next};
use crate::crd::VaultSecretStatus;
use crate::crd::vault_secret::PrivxSecretStatus;
use privx_client::PrivxError;

/// Deletion. With `deletionPolicy: Delete`, the PrivX secret status records is deleted only
/// after a re-check: its name and owner must be reachable from the namespace (the tenancy rule
/// of creation) and PrivX's author must confirm the claim (status is writable by tenants). A
/// status without a record (a crash before it was written) falls back to the target recorded with
/// the finalizer ([`CLEANUP_TARGET_ANNOTATION`](crate::controller::core::finalizer::CLEANUP_TARGET_ANNOTATION))
/// or the computed target, deleted only when PrivX names the operator as its author. A refused claim
/// keeps the finalizer (a person removes it to let go) and says why; everything else releases
/// it. Works from status alone, so objects whose spec no longer deserialises clean up too
/// (`computed` is then `None`).
/// What cleanup deletes, in logs.
const PRIVX_SECRET: &str = "PrivX secret";

pub(super) async fn cleanup(
    ctx: &Context,
    deleted: &Deleted,
    computed: Option<Target>,
    writes: bool,
) -> Result<Action, Error> {
    use self::plan::ownership::{
        CleanupDecision, CleanupInput, cleanup_candidate, cleanup_decision,
    };
    let namespace = deleted.meta.namespace.clone().unwrap_or_default();
    let key = object_key(Some(&namespace), &deleted.name());
    ctx.metrics.forget_object(CONTROLLER, &key);
    if !deleted.has_finalizer() {
        return Ok(Action::await_change());
    }
    remove_merged_keys(ctx, deleted, &namespace).await?;
    // What status records, else the target recorded with the finalizer (before the PrivX
    // write), else the computed one: all re-checked below.
    let status: Option<VaultSecretStatus> = deleted.typed_status();
    let annotated = CleanupTarget::of(&deleted.meta).map(|t| PrivxSecretStatus {
        name: t.name,
        owner_id: t.owner_id,
        ..Default::default()
    });
    let recorded = status
        .as_ref()
        .and_then(|s| s.privx.as_ref())
        .or(annotated.as_ref());
    let policy = ctx.namespace_policy(&namespace);
    let adopt = deleted.adopt();
    let candidate = cleanup_candidate(&CleanupInput {
        namespace: &namespace,
        template: &ctx.settings.name_template,
        namespace_policy: &policy,
        deletion_policy: deleted.deletion_policy(),
        adopt,
        writes,
        recorded,
        computed,
    });
    let candidate = match candidate {
        Ok(Some(c)) => c,
        Ok(None) => {
            deleted.release_finalizer().await?;
            ctx.recovered(CONTROLLER, &key);
            return Ok(Action::await_change());
        }
        Err(refusal) => return deleted.refuse(ctx, &refusal, PRIVX_SECRET).await,
    };
    // With per-namespace identity, the namespace reads and deletes as itself, as sync writes.
    // ... and "did we create it?" compares PrivX's author with the identity that wrote it.
    let super::fetch::PrivxAs {
        client: privx,
        identity,
    } = match super::fetch::privx_for(ctx, &namespace).await {
        Ok(privx) => privx,
        Err((refusal, next)) => {
            deleted
                .report(ctx, refusal.reason, &refusal.message)
                .await?;
            return match next {
                Next::Fail(e) => Err(*e),
                Next::After(d) => Ok(Action::requeue(d)),
                Next::AwaitChange => Ok(Action::await_change()),
            };
        }
    };
    let target = &candidate.target;
    let fail = |e: PrivxError, action: String| async move {
        let message = format!("{action}: {e} (set spec.deletionPolicy: Retain to let go)");
        let _ = deleted.report(ctx, core::privx_reason(&e), &message).await;
        Err(Error::privx(action)(e))
    };
    let current = match privx
        .get_secret_metadata(&target.location, &target.name)
        .await
    {
        Ok(secret) => Some(secret),
        Err(PrivxError::NotFound { .. }) => None,
        Err(e) => {
            return fail(
                e,
                format!("read PrivX secret {} before deleting it", target.describe()),
            )
            .await;
        }
    };
    match cleanup_decision(&candidate, current.as_ref(), identity.as_deref(), adopt) {
        CleanupDecision::Release => {}
        CleanupDecision::Refuse(refusal) => {
            return deleted.refuse(ctx, &refusal, PRIVX_SECRET).await;
        }
        CleanupDecision::Delete => {
            match privx.delete_secret(&target.location, &target.name).await {
                Ok(()) => {
                    deleted
                        .deleted_in_privx(ctx, format!("PrivX secret {}", target.describe()))
                        .await
                }
                Err(PrivxError::NotFound { .. }) => {}
                Err(e) => {
                    return fail(
                        e,
                        format!("cannot delete PrivX secret {}", target.describe()),
                    )
                    .await;
                }
            }
        }
    }
    deleted.release_finalizer().await?;
    ctx.recovered(CONTROLLER, &key);
    Ok(Action::await_change())
}

/// `creationPolicy: Merge`: the keys, labels and annotations this object wrote into someone
/// else's Secret go with it; the Secret and everything else in it stay. Read leniently from the
/// raw spec, so that an object whose spec no longer deserialises cleans up too.
async fn remove_merged_keys(
    ctx: &Context,
    deleted: &Deleted,
    namespace: &str,
) -> Result<(), Error> {
    let mirror = &deleted.spec["mirror"];
    if mirror["creationPolicy"].as_str() != Some("Merge") {
        return Ok(());
    }
    let name = mirror["secretName"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| deleted.name());
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), namespace);
    let what = format!("remove this VaultSecret's keys from Secret {namespace}/{name}");
    let Some(secret) = secrets
        .get_opt(&name)
        .await
        .map_err(Error::kube(what.clone()))?
    else {
        return Ok(());
    };
    let Some(patch) = plan::merge_removal(&secret) else {
        return Ok(());
    };
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(what))?;
    Ok(())
}
