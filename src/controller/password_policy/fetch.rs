//! The fetch step: what PrivX holds for this policy — the password-policy API generation, and
//! the policy by the id status recorded, else by name.

use privx_client::{PasswordPolicy as PrivxPolicy, PolicyGeneration, PrivxError};

use super::Reconciler;
use super::plan::Found;
use crate::controller::core::{self, Stop};

/// What the fetch found.
pub(super) struct Fetched {
    pub recorded_id: Option<String>,
    /// The policy of the recorded id.
    pub recorded: Option<PrivxPolicy>,
    /// The policy of the name, when the recorded id found none.
    pub by_name: Option<PrivxPolicy>,
}

impl Fetched {
    /// How the plan sees what was found.
    pub fn found(&self) -> Found<'_> {
        match (&self.recorded, &self.by_name) {
            (Some(p), _) => Found::Recorded(p),
            (None, Some(p)) if self.recorded_id.is_some() && p.id == self.recorded_id => {
                Found::Recorded(p)
            }
            (None, Some(p)) => Found::ByName(p),
            (None, None) => Found::Nothing,
        }
    }

    /// The policy PrivX holds now, if any.
    pub fn current(&self) -> Option<&PrivxPolicy> {
        self.recorded.as_ref().or(self.by_name.as_ref())
    }
}

impl Reconciler<'_> {
    /// The password-policy API generation PrivX speaks.
    pub(super) async fn fetch_generation(&self) -> Result<PolicyGeneration, Stop> {
        self.ctx
            .privx
            .policy_generation()
            .await
            .map_err(|e| core::privx_stop(e, "detect the password-policy API generation"))
    }

    /// The policy by the recorded id, else by `name`.
    pub(super) async fn fetch_policy(&self, name: &str) -> Result<Fetched, Stop> {
        let privx = &self.ctx.privx;
        let recorded_id = self.policy.status.as_ref().and_then(|s| s.id.clone());
        let recorded = match &recorded_id {
            Some(id) => match privx.get_policy(id).await {
                Ok(p) => Some(p),
                Err(PrivxError::NotFound { .. }) => None,
                Err(e) => return Err(core::privx_stop(e, &format!("read password policy {id}"))),
            },
            None => None,
        };
        let by_name = if recorded.is_none() {
            privx
                .list_policies()
                .await
                .map_err(|e| core::privx_stop(e, "list password policies"))?
                .into_iter()
                .find(|p| p.name == name)
        } else {
            None
        };
        Ok(Fetched {
            recorded_id,
            recorded,
            by_name,
        })
    }
}
