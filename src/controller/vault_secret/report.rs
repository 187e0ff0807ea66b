//! The report step: the planned events, the status and its conditions (as
//! [`plan::status`](super::plan::status) decided them), the object-condition metric, and when
//! to look again (the refresh queue).

use std::time::Duration;

use kube::runtime::controller::Action;

use super::plan::{PlannedEvent, reason};
use super::{CONTROLLER, Reconciler};
use crate::controller::core::backoff::jittered_refresh;
use crate::controller::core::{self, Stop};
use crate::crd::VaultSecretStatus;
use crate::crd::condition::DesiredCondition;

impl Reconciler<'_> {
    /// Reports a successful sync; `requeue`: the refresh interval (`None`: wait for a change).
    pub(super) async fn report(
        &self,
        events: Vec<PlannedEvent>,
        status: VaultSecretStatus,
        conditions: &[DesiredCondition],
        requeue: Option<Duration>,
    ) -> Result<Action, Stop> {
        let ctx = self.ctx;
        for e in events {
            core::publish(&ctx.recorder, self.vs, e.type_, e.reason, e.note).await;
        }
        core::write_synced_status(&self.api(), self.vs, status, conditions)
            .await
            .map_err(core::error_stop)?;
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, reason::SYNCED);
        Ok(match requeue {
            Some(every) => ctx.refreshes.after(&self.key(), jittered_refresh(every)),
            None => {
                ctx.refreshes.forget(&self.key());
                Action::await_change()
            }
        })
    }
}
