//! The operator's Prometheus metrics (served as OpenMetrics text on `/metrics`).
//!
//! Owns the metric names, their labels and the bookkeeping behind the per-condition object
//! gauge. Controllers, the PrivX client and the Kubernetes client report into it through small
//! methods; it must not know how reconciles, PrivX calls or Kubernetes writes work, and no
//! label ever carries a secret value (labels are controller names, condition types and reasons,
//! route templates, status codes, HTTP verbs and resource names).
//!
//! Layout: this file registers every metric and takes the controllers' reports; [`privx`] takes
//! the PrivX client's call records; [`objects`] keeps the per-condition object gauge.

mod objects;
mod privx;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::gauge::Gauge as FloatGaugeBase;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use self::objects::{ObjectConditions, ObjectLabels};
use self::privx::{BreakerLabels, EndpointLabels, RequestLabels, ResultLabels, ServiceLabels};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reconciles take from milliseconds (nothing to do) to tens of seconds (PrivX retries).
const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileErrorLabels {
    controller: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    verb: String,
    resource: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = FloatGaugeBase<f64, std::sync::atomic::AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

/// The source revision the binary was built from, when the build said (`PRIVX_OPERATOR_REVISION`
/// at compile time, as the image build sets it); else `unknown`.
pub const REVISION: &str = match option_env!("PRIVX_OPERATOR_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// All metrics of the process. Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    privx_requests: Family<RequestLabels, Counter>,
    privx_request_duration: HistogramFamily<EndpointLabels>,
    privx_token_refreshes: Family<ResultLabels, Counter>,
    privx_breaker_state: Family<BreakerLabels, Gauge>,
    privx_breaker_refusals: Family<ServiceLabels, Counter>,
    kubernetes_writes: Family<WriteLabels, Counter>,
    objects: Family<ObjectLabels, Gauge>,
    retrying: Family<ControllerLabels, Gauge>,
    queued: Family<ControllerLabels, Gauge>,
    oldest_sync_age: Family<ControllerLabels, FloatGauge>,
    leader: Gauge,
    /// What each object's conditions currently contribute to `objects`, so a change or a
    /// deletion moves exactly one count. The lock also serialises the gauge updates.
    object_conditions: Mutex<ObjectConditions>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("privx_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles started, by controller",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error reason",
            reconcile_errors.clone(),
        );
        let reconcile_duration =
            HistogramFamily::<ControllerLabels>::new_with_constructor(reconcile_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconcile, by controller",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let privx_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "privx_requests",
            "HTTP requests to PrivX, by endpoint template and status (\"none\": no answer)",
            privx_requests.clone(),
        );
        let privx_request_duration =
            HistogramFamily::<EndpointLabels>::new_with_constructor(privx::request_histogram);
        registry.register_with_unit(
            "privx_request_duration",
            "Duration of one HTTP request to PrivX, by endpoint template",
            Unit::Seconds,
            privx_request_duration.clone(),
        );
        let privx_token_refreshes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "privx_token_refreshes",
            "PrivX access-token grants, by result (success, failure)",
            privx_token_refreshes.clone(),
        );
        let privx_breaker_state = Family::<BreakerLabels, Gauge>::default();
        registry.register(
            "privx_breaker_state",
            "Circuit breaker of each PrivX service (auth, vault, secrets-manager, role-store): 1 for its current state (closed, open, half-open), 0 for the others",
            privx_breaker_state.clone(),
        );
        let privx_breaker_refusals = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "privx_breaker_refusals",
            "PrivX calls refused without a request because the service's circuit breaker was open, by service",
            privx_breaker_refusals.clone(),
        );
        let kubernetes_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "kubernetes_writes",
            "Write requests sent to the Kubernetes API, by verb (create, update, patch, delete) and resource (e.g. secrets, vaultsecrets/status, events)",
            kubernetes_writes.clone(),
        );
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "objects",
            "Objects by controller and the status and reason of each of their conditions",
            objects.clone(),
        );
        let retrying = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "retrying_objects",
            "Objects whose last reconcile failed and that wait to retry with backoff, by controller",
            retrying.clone(),
        );
        let queued = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "work_queue_depth",
            "Objects whose reconcile was asked for (a change, a refresh that is due) and has not started yet, by controller",
            queued.clone(),
        );
        let oldest_sync_age = Family::<ControllerLabels, FloatGauge>::default();
        registry.register_with_unit(
            "oldest_sync_age",
            "How long ago the controller's stalest object last synced successfully (an object that never did: since it was first seen)",
            Unit::Seconds,
            oldest_sync_age.clone(),
        );
        registry.register(
            "build",
            "The operator's version and source revision",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                revision: REVISION.to_owned(),
            }),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or needs none), else 0",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            privx_requests,
            privx_request_duration,
            privx_token_refreshes,
            privx_breaker_state,
            privx_breaker_refusals,
            kubernetes_writes,
            objects,
            retrying,
            queued,
            oldest_sync_age,
            leader,
            object_conditions: Mutex::default(),
        }
    }

    /// Counts one write request to the Kubernetes API (`resource` with its subresource, e.g.
    /// `vaultsecrets/status`; never an object's name).
    pub fn kubernetes_write(&self, verb: &str, resource: &str) {
        self.kubernetes_writes
            .get_or_create(&WriteLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, is_leader: bool) {
        self.leader.set(i64::from(is_leader));
    }

    /// All metrics as OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        self.encode_at(std::time::Instant::now())
    }

    /// [`Metrics::encode`] as of `now` (the staleness gauge is computed when scraped).
    pub fn encode_at(&self, now: std::time::Instant) -> String {
        for (controller, age) in self.staleness_at(now) {
            self.oldest_sync_age
                .get_or_create(&ControllerLabels {
                    controller: controller.to_owned(),
                })
                .set(age);
        }
        let mut text = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String");
        text
    }
}

impl crate::controller::core::ControllerMetrics for Metrics {
    fn reconciled(
        &self,
        controller: &'static str,
        duration: std::time::Duration,
        error: Option<&str>,
    ) {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        if let Some(reason) = error {
            self.reconcile_errors
                .get_or_create(&ReconcileErrorLabels {
                    controller: controller.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    fn object_condition(&self, controller: &'static str, key: &str, ready: bool, reason: &str) {
        self.touch_object(controller, key, ready);
        let status = if ready { "True" } else { "False" };
        self.set_object_condition(
            controller,
            key,
            crate::crd::condition::READY,
            status,
            reason,
        );
    }

    fn forget_object(&self, controller: &'static str, key: &str) {
        Metrics::forget_object(self, controller, key);
    }

    fn queued(&self, controller: &'static str, objects: usize) {
        self.queued
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .set(objects as i64);
    }

    fn retrying(&self, controller: &'static str, objects: usize) {
        self.retrying
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .set(objects as i64);
    }
}
