//! The apply step: executes a [`PolicyPlan`] in the safe order — finalizer (and the name,
//! before a create) first, then the PrivX write. Decides nothing; status and events follow in
//! `report`.

use privx_client::{PasswordPolicy as PrivxPolicy, PrivxError};
use tracing::info;

use super::Reconciler;
use super::plan::ownership;
use super::plan::status::before_write;
use super::plan::{PolicyAction, PolicyPlan};
use crate::controller::core::{self, Stop};

impl Reconciler<'_> {
    /// Applies `plan` to the policy `name`; answers the PrivX id of the policy.
    pub(super) async fn apply(&self, name: &str, plan: &PolicyPlan) -> Result<String, Stop> {
        let ctx = self.ctx;
        let before = before_write(self.policy, name, plan);
        *self.failure_status.lock().expect("not poisoned") = before.failure_status;
        core::set_metadata(ctx, &self.api(), self.policy, &before.metadata)
            .await
            .map_err(core::error_stop)?;
        Ok(match &plan.action {
            PolicyAction::None => plan.id.clone().unwrap_or_default(),
            PolicyAction::Create(p) => self.create(p).await?,
            PolicyAction::Update { id, policy } => {
                ctx.privx.update_policy(id, policy).await.map_err(|e| {
                    core::privx_stop(e, &format!("update password policy {name:?}"))
                })?;
                id.clone()
            }
        })
    }

    /// Creates the policy once. The client never repeats a create; when the outcome is unknown
    /// (timeout, lost connection, 5xx) or PrivX says the name exists, the policies are listed
    /// and the one this create made is claimed (the declared settings, no other creator) — so
    /// one intent never becomes two policies.
    async fn create(&self, desired: &PrivxPolicy) -> Result<String, Stop> {
        let ctx = self.ctx;
        let action = format!("create password policy {:?}", desired.name);
        let error = match ctx.privx.create_policy(desired).await {
            Ok(id) => return Ok(id),
            Err(e @ (PrivxError::Unavailable { .. } | PrivxError::AlreadyExists { .. })) => e,
            Err(e) => return Err(core::privx_stop(e, &action)),
        };
        let listed = ctx
            .privx
            .list_policies()
            .await
            .map_err(|_| core::privx_stop(error.clone(), &action))?;
        match ownership::created_by_us(&listed, desired, ctx.privx_identity.as_deref()) {
            Some(p) => {
                info!(privx_policy = %desired.name, "the create's answer was lost; PrivX shows the policy it made, which is claimed");
                Ok(p.id.clone().unwrap_or_default())
            }
            None => Err(core::privx_stop(error, &action)),
        }
    }
}
