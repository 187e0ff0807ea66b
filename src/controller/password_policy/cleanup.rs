//! Deletion of a PasswordPolicy: under `deletionPolicy: Delete` the PrivX policy it claims goes
//! with it (after the claim is confirmed); then the finalizer is released.

use kube::runtime::controller::Action;
use privx_client::PrivxError;

use super::CONTROLLER;
use crate::controller::core::deleted::Deleted;
use crate::controller::core::finalizer::CleanupTarget;
use crate::controller::core::{self, Context, Error};
use crate::crd::{DeletionPolicy, PasswordPolicyStatus};

/// Deletion. With `deletionPolicy: Delete`, the policy status records is deleted once PrivX
/// confirms the claim (its creator, or for an adopted policy `spec.adopt` / its last writer); a
/// refused claim keeps the finalizer and says why. Without a record (a crash before the status
/// write), the policy of the recorded or computed name that PrivX says the operator created is
/// deleted. Works from status alone, so objects that no longer deserialise clean up too.
pub(super) async fn cleanup(
    ctx: &Context,
    deleted: &Deleted,
    computed: Option<String>,
) -> Result<Action, Error> {
    use super::plan::ownership::{self, CleanupDecision};
    let key = deleted.name();
    ctx.metrics.forget_object(CONTROLLER, &key);
    if !deleted.has_finalizer() {
        return Ok(Action::await_change());
    }
    let identity = ctx.privx_identity.as_deref();
    let status: Option<PasswordPolicyStatus> = deleted.typed_status();
    let fail = |e: PrivxError, action: String| async move {
        let blocked = matches!(
            e,
            PrivxError::InvalidRequest { .. } | PrivxError::AlreadyExists { .. }
        );
        let reason = if blocked {
            core::reason::DELETE_BLOCKED
        } else {
            core::privx_reason(&e)
        };
        let message = format!(
            "{action}: {e}; the finalizer stays and deletion is retried (set spec.deletionPolicy: Retain to let go)"
        );
        let _ = deleted.report(ctx, reason, &message).await;
        Err(Error::privx(action)(e))
    };
    let decision = if deleted.deletion_policy() != DeletionPolicy::Delete {
        CleanupDecision::Release
    } else if let Some((ownership, id)) =
        status.as_ref().and_then(|s| s.ownership.zip(s.id.clone()))
    {
        let current = match ctx.privx.get_policy(&id).await {
            Ok(p) => Some(p),
            Err(PrivxError::NotFound { .. }) => None,
            Err(e) => {
                return fail(e, format!("read password policy {id} before deleting it")).await;
            }
        };
        ownership::recorded_cleanup(ownership, current.as_ref(), identity)
    } else {
        // Status, else the name recorded with the finalizer, else the computed one.
        let name = status
            .as_ref()
            .and_then(|s| s.name.clone())
            .or_else(|| CleanupTarget::of(&deleted.meta).map(|t| t.name))
            .or(computed)
            .or_else(|| {
                deleted
                    .spec
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| deleted.name());
        match ctx.privx.list_policies().await {
            Ok(listed) => ownership::unrecorded_cleanup(&listed, &name, identity),
            Err(e) => return fail(e, "list password policies before deleting".to_string()).await,
        }
    };
    match decision {
        CleanupDecision::Release => {}
        CleanupDecision::Refuse(refusal) => {
            return deleted.refuse(ctx, &refusal, "PrivX password policy").await;
        }
        CleanupDecision::Delete(id) => match ctx.privx.delete_policy(&id).await {
            Ok(()) => {
                deleted
                    .deleted_in_privx(ctx, format!("PrivX password policy {id}"))
                    .await
            }
            Err(PrivxError::NotFound { .. }) => {}
            Err(e) => {
                return fail(e, format!("PrivX refuses to delete password policy {id}")).await;
            }
        },
    }
    deleted.release_finalizer().await?;
    // The object is gone: forget its failures, so the map does not grow with deleted
    // objects and a new object of the same name starts without a long backoff.
    ctx.recovered(CONTROLLER, &key);
    Ok(Action::await_change())
}
