//! The shared context: what every reconcile of either controller uses, and nothing a single
//! controller alone needs (each controller wraps this in its own context: see
//! `vault_secret::Context`). Kept small on purpose, as kube-rs's controller-rs keeps its own.

use std::sync::Arc;
use std::time::Duration;

use privx_client::PrivxClient;

use super::backoff::Backoff;
use super::outage::OutageWaiters;
use super::own_writes::OwnWrites;
use super::recorder::Recorder;
use super::sync_gate::SyncGate;

/// Whether an object PrivX attributes to `author` may be ours: unknown on either side counts as
/// possible (PrivX versions differ in what they report), a known different author does not.
pub fn may_be_ours(author: Option<&str>, identity: Option<&str>) -> bool {
    match (author, identity) {
        (Some(author), Some(me)) => author == me,
        _ => true,
    }
}

/// What the controllers report to the operator's metrics.
pub trait ControllerMetrics: Send + Sync + 'static {
    /// One reconcile finished; `error` is the error label when it failed.
    fn reconciled(&self, controller: &'static str, duration: Duration, error: Option<&str>);
    /// The object's Ready condition is now `ready` with `reason`.
    fn object_condition(&self, controller: &'static str, key: &str, ready: bool, reason: &str);
    /// The object is gone.
    fn forget_object(&self, controller: &'static str, key: &str);
    /// `objects` of the controller failed their last reconcile and wait to retry.
    fn retrying(&self, controller: &'static str, objects: usize);
    /// `objects` of the controller wait for a reconcile that was asked for and has not started.
    fn queued(&self, controller: &'static str, objects: usize);
}

/// Metrics that go nowhere (tests, tools).
pub struct NoMetrics;

impl ControllerMetrics for NoMetrics {
    fn reconciled(&self, _: &'static str, _: Duration, _: Option<&str>) {}
    fn object_condition(&self, _: &'static str, _: &str, _: bool, _: &str) {}
    fn forget_object(&self, _: &'static str, _: &str) {}
    fn retrying(&self, _: &'static str, _: usize) {}
    fn queued(&self, _: &'static str, _: usize) {}
}

/// What both controllers share.
pub struct Context {
    pub client: kube::Client,
    pub privx: PrivxClient,
    /// The operator's PrivX API client ID. PrivX records it as the author of what the operator
    /// creates; an unrecorded object whose author is someone else is never claimed without adopt.
    /// With per-namespace identity, a namespace's VaultSecrets compare with that namespace's
    /// PrivX user instead (it is the one that writes them).
    pub privx_identity: Option<String>,
    pub metrics: Arc<dyn ControllerMetrics>,
    pub recorder: Recorder,
    pub backoff: Backoff,
    /// Our own writes, so that their watch events do not start another reconcile.
    pub own_writes: OwnWrites,
    /// Opens once every store has listed its objects.
    pub synced: SyncGate,
    /// The objects whose last failure was PrivX not serving, retried when it is back.
    pub outage: OutageWaiters,
}

impl Context {
    /// A context with fresh backoff, own-write tracking and an open gate.
    pub fn new(
        client: kube::Client,
        privx: PrivxClient,
        privx_identity: Option<String>,
        metrics: Arc<dyn ControllerMetrics>,
        recorder: Recorder,
    ) -> Self {
        Self {
            client,
            privx,
            privx_identity,
            metrics,
            recorder,
            backoff: Backoff::default(),
            own_writes: OwnWrites::default(),
            synced: SyncGate::default(),
            outage: OutageWaiters::default(),
        }
    }

    /// One more failure of `key` of `controller`: how long it waits before retrying.
    pub fn failed(&self, controller: &'static str, key: &str) -> Duration {
        let (delay, waiting) = self.backoff.next_delay(controller, key);
        self.metrics.retrying(controller, waiting);
        delay
    }

    /// `key` of `controller` succeeded, or is gone: it no longer waits to retry.
    pub fn recovered(&self, controller: &'static str, key: &str) {
        self.outage.forget(controller, key);
        let waiting = self.backoff.reset(controller, key);
        self.metrics.retrying(controller, waiting);
    }
}
