//! The report step: the event of the write, the status and its conditions (as
//! [`plan::status`](super::plan::status) decided them), the object-condition metric, and when
//! to look again.

use kube::runtime::controller::Action;
use tracing::info;

use super::plan::status::Report;
use super::{CONTROLLER, REFRESH, Reconciler};
use crate::controller::core::backoff::jittered_refresh;
use crate::controller::core::{self, Stop};

impl Reconciler<'_> {
    /// Reports a successful sync of the PrivX policy `name`.
    pub(super) async fn report(&self, name: &str, report: Report) -> Result<Action, Stop> {
        let ctx = self.ctx;
        if let Some(event) = report.event {
            info!(privx_policy = %name, reason = event.reason, "PrivX password policy written");
            core::publish(
                &ctx.recorder,
                self.policy,
                event.type_,
                event.reason,
                event.note,
            )
            .await;
        }
        core::write_synced_status(&self.api(), self.policy, report.status, &report.conditions)
            .await
            .map_err(core::error_stop)?;
        ctx.metrics
            .object_condition(CONTROLLER, &self.key(), true, report.ready_reason);
        Ok(Action::requeue(jittered_refresh(REFRESH)))
    }
}
