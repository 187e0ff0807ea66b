//! The PasswordPolicy controller's triggers: its subscriber of the shared PasswordPolicy store,
//! narrowed to the release's `--selector`.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::BoxStream};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::RunOptions;
use super::queue::Queued;
use super::triggers::{self, Changes};
use crate::controller::core;
use crate::controller::password_policy;
use crate::crd::PasswordPolicy;

/// The PasswordPolicy controller, ready to run until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub(super) fn controller(
    core: &Arc<core::Context>,
    options: &RunOptions,
    policies: BoxStream<'static, Arc<DeserializeGuard<PasswordPolicy>>>,
    store: Store<DeserializeGuard<PasswordPolicy>>,
    changes: Changes,
    controller_config: ControllerConfig,
    queued: Queued,
    retries: mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<PasswordPolicy>>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> BoxFuture<'static, ()> {
    let selector = options.selector.clone();
    let policy_controller = Controller::for_shared_stream(
        policies
            .filter({
                let changes = changes.clone();
                let core = core.clone();
                move |p| {
                    let selected = selector
                        .as_ref()
                        .is_none_or(|s| s.matches(p.meta().labels.as_ref()));
                    let changed = changes.changed(&p.name_any(), triggers::hash(p.as_ref()));
                    let echo = core.own_writes.is_echo(p.as_ref());
                    futures::future::ready(selected && changed && !echo)
                }
            })
            .inspect({
                let queued = queued.clone();
                move |p| queued.asked(p.name_any())
            }),
        store,
    )
    .with_config(controller_config)
    // Policies that failed because PrivX was not serving, retried when it is back.
    .reconcile_on(retries.inspect({
        let queued = queued.clone();
        move |r| queued.asked_ref(r)
    }))
    .graceful_shutdown_on(shutdown.cancelled_owned());

    Box::pin(
        policy_controller
            .run(
                {
                    let queued = queued.clone();
                    move |p, ctx| {
                        queued.started(&p.name_any());
                        password_policy::reconcile(p, ctx)
                    }
                },
                password_policy::error_policy,
                core.clone(),
            )
            .for_each(|_| futures::future::ready(())),
    )
}
