//! The operator's Prometheus metrics (served as OpenMetrics text on `/metrics`).
//!
//! Owns the metric names, their labels and the bookkeeping behind the per-condition object
//! gauge. Controllers and the PrivX client report into it through small methods; it must not
//! know how reconciles or PrivX calls work, and no label ever carries a secret value (labels
//! are controller names, condition types and reasons, route templates, status codes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use privx_client::{CallObserver, CallRecord};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reconciles take from milliseconds (nothing to do) to tens of seconds (PrivX retries).
const RECONCILE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// One PrivX request: usually well under a second, up to the request timeout.
const PRIVX_REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
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
struct RequestLabels {
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    controller: String,
    condition: String,
    status: String,
    reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn privx_request_histogram() -> Histogram {
    Histogram::new(PRIVX_REQUEST_BUCKETS)
}

/// Identifies one condition of one object: (controller, object key, condition type).
type ObjectConditionKey = (String, String, String);

/// All metrics of the process. Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    privx_requests: Family<RequestLabels, Counter>,
    privx_request_duration: HistogramFamily<EndpointLabels>,
    privx_token_refreshes: Family<ResultLabels, Counter>,
    objects: Family<ObjectLabels, Gauge>,
    leader: Gauge,
    /// What each object's conditions currently contribute to `objects`, so a change or a
    /// deletion moves exactly one count. The lock also serialises the gauge updates.
    object_conditions: Mutex<HashMap<ObjectConditionKey, (String, String)>>,
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
            HistogramFamily::<EndpointLabels>::new_with_constructor(privx_request_histogram);
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
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "objects",
            "Objects by controller and the status and reason of each of their conditions",
            objects.clone(),
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
            objects,
            leader,
            object_conditions: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a reconcile and times it: the duration is recorded when the guard is dropped.
    #[must_use = "the reconcile is timed until the guard is dropped"]
    pub fn reconcile_started(&self, controller: &str) -> ReconcileTimer {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            histogram: self.reconcile_duration.get_or_create_owned(&labels),
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile; `reason` is the error's short stable label.
    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                controller: controller.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the current status and reason of one condition of one object (`key` is e.g.
    /// `namespace/name`). Replaces what the same object and condition reported before.
    pub fn set_object_condition(
        &self,
        controller: &str,
        key: &str,
        condition: &str,
        status: &str,
        reason: &str,
    ) {
        let mut conditions = self.lock_object_conditions();
        let slot = (controller.to_owned(), key.to_owned(), condition.to_owned());
        let new_value = (status.to_owned(), reason.to_owned());
        if conditions.get(&slot) == Some(&new_value) {
            return;
        }
        if let Some((old_status, old_reason)) = conditions.insert(slot, new_value) {
            self.decrement_object(controller, condition, &old_status, &old_reason);
        }
        self.objects
            .get_or_create(&object_labels(controller, condition, status, reason))
            .inc();
    }

    /// Forgets every condition of an object (it was deleted).
    pub fn forget_object(&self, controller: &str, key: &str) {
        let mut conditions = self.lock_object_conditions();
        let forgotten: Vec<ObjectConditionKey> = conditions
            .keys()
            .filter(|(c, k, _)| c == controller && k == key)
            .cloned()
            .collect();
        for slot in forgotten {
            if let Some((status, reason)) = conditions.remove(&slot) {
                self.decrement_object(controller, &slot.2, &status, &reason);
            }
        }
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, is_leader: bool) {
        self.leader.set(i64::from(is_leader));
    }

    /// All metrics as OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding metrics into a String");
        text
    }

    fn lock_object_conditions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectConditionKey, (String, String)>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.object_conditions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called with the object-conditions lock held.
    fn decrement_object(&self, controller: &str, condition: &str, status: &str, reason: &str) {
        let labels = object_labels(controller, condition, status, reason);
        let remaining = self.objects.get_or_create(&labels).dec() - 1;
        if remaining <= 0 {
            // Drop empty series so reasons that no object has any more vanish from /metrics.
            self.objects.remove(&labels);
        }
    }
}

fn object_labels(controller: &str, condition: &str, status: &str, reason: &str) -> ObjectLabels {
    ObjectLabels {
        controller: controller.to_owned(),
        condition: condition.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
    }
}

impl CallObserver for Metrics {
    fn on_call(&self, record: &CallRecord) {
        let status = if record.status == 0 {
            "none".to_owned()
        } else {
            record.status.to_string()
        };
        self.privx_requests
            .get_or_create(&RequestLabels {
                endpoint: record.endpoint.to_owned(),
                status,
            })
            .inc();
        self.privx_request_duration
            .get_or_create(&EndpointLabels {
                endpoint: record.endpoint.to_owned(),
            })
            .observe(record.duration.as_secs_f64());
    }

    fn on_token_refresh(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.privx_token_refreshes
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

impl crate::controller::ControllerMetrics for Metrics {
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
            self.reconcile_failed(controller, reason);
        }
    }

    fn object_condition(&self, controller: &'static str, key: &str, ready: bool, reason: &str) {
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
}

/// Times one reconcile; records the duration when dropped (also on early return or panic).
#[derive(Debug)]
pub struct ReconcileTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The value of the one sample line that starts with `series ` (series = name{labels}).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("sample value is a number"))
    }

    #[test]
    fn reconciles_and_errors_are_counted_by_controller_and_reason() {
        let metrics = Metrics::new();
        drop(metrics.reconcile_started("vaultsecret"));
        drop(metrics.reconcile_started("vaultsecret"));
        drop(metrics.reconcile_started("passwordpolicy"));
        metrics.reconcile_failed("vaultsecret", "PrivxUnavailable");

        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconciles_total{controller="vaultsecret"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconciles_total{controller="passwordpolicy"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconcile_errors_total{controller="vaultsecret",reason="PrivxUnavailable"}"#
            ),
            Some(1.0)
        );
        assert!(text.contains("# TYPE privx_operator_reconcile_duration_seconds histogram"));
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconcile_duration_seconds_count{controller="vaultsecret"}"#
            ),
            Some(2.0)
        );
        assert!(
            text.trim_end().ends_with("# EOF"),
            "OpenMetrics text ends with # EOF"
        );
    }

    #[test]
    fn privx_calls_land_in_counter_and_histogram_buckets() {
        let metrics = Metrics::new();
        let endpoint = "GET /vault/api/v1/secrets/{name}";
        metrics.on_call(&CallRecord {
            endpoint,
            status: 200,
            duration: Duration::from_millis(70),
        });
        metrics.on_call(&CallRecord {
            endpoint,
            status: 0,
            duration: Duration::from_secs(3),
        });
        metrics.on_token_refresh(true);
        metrics.on_token_refresh(false);
        metrics.on_token_refresh(false);

        let text = metrics.encode();
        let requests = |status: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_privx_requests_total{{endpoint="{endpoint}",status="{status}"}}"#
                ),
            )
        };
        assert_eq!(requests("200"), Some(1.0));
        assert_eq!(requests("none"), Some(1.0));
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_privx_request_duration_seconds_bucket{{le="{le}",endpoint="{endpoint}"}}"#
                ),
            )
        };
        // 70 ms falls into le=0.1 and above; 3 s only into le=5.0 and above.
        assert_eq!(bucket("0.05"), Some(0.0));
        assert_eq!(bucket("0.1"), Some(1.0));
        assert_eq!(bucket("2.5"), Some(1.0));
        assert_eq!(bucket("5.0"), Some(2.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        let sum = sample(
            &text,
            &format!(
                r#"privx_operator_privx_request_duration_seconds_sum{{endpoint="{endpoint}"}}"#
            ),
        )
        .expect("histogram sum present");
        assert!((sum - 3.07).abs() < 1e-9, "sum was {sum}");
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_privx_token_refreshes_total{result="success"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_privx_token_refreshes_total{result="failure"}"#
            ),
            Some(2.0)
        );
    }

    fn objects(text: &str, status: &str, reason: &str) -> Option<f64> {
        sample(
            text,
            &format!(
                r#"privx_operator_objects{{controller="vaultsecret",condition="Ready",status="{status}",reason="{reason}"}}"#
            ),
        )
    }

    #[test]
    fn object_gauge_moves_an_object_when_its_condition_changes() {
        let metrics = Metrics::new();
        metrics.set_object_condition("vaultsecret", "ns/a", "Ready", "True", "Synced");
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        // Repeating the same report must not count the object twice.
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        assert_eq!(objects(&metrics.encode(), "True", "Synced"), Some(2.0));

        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "False", "PrivxError");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(1.0));
        assert_eq!(objects(&text, "False", "PrivxError"), Some(1.0));

        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(2.0));
        assert_eq!(
            objects(&text, "False", "PrivxError"),
            None,
            "a series no object reports any more is removed"
        );
    }

    #[test]
    fn forgetting_an_object_removes_all_its_conditions_and_nothing_else() {
        let metrics = Metrics::new();
        metrics.set_object_condition("vaultsecret", "ns/a", "Ready", "True", "Synced");
        metrics.set_object_condition("vaultsecret", "ns/a", "Degraded", "False", "Ok");
        metrics.set_object_condition("vaultsecret", "ns/b", "Ready", "True", "Synced");
        // Same key under another controller is another object.
        metrics.set_object_condition("passwordpolicy", "ns/a", "Ready", "True", "Synced");

        metrics.forget_object("vaultsecret", "ns/a");
        let text = metrics.encode();
        assert_eq!(objects(&text, "True", "Synced"), Some(1.0));
        assert!(!text.contains(r#"condition="Degraded""#), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_objects{controller="passwordpolicy",condition="Ready",status="True",reason="Synced"}"#
            ),
            Some(1.0)
        );

        // Forgetting twice, or an unknown object, changes nothing.
        metrics.forget_object("vaultsecret", "ns/a");
        metrics.forget_object("vaultsecret", "ns/unknown");
        assert_eq!(objects(&metrics.encode(), "True", "Synced"), Some(1.0));
    }

    #[test]
    fn leader_gauge_follows_set_leader() {
        let metrics = Metrics::new();
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(0.0)
        );
        metrics.set_leader(true);
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(1.0)
        );
        metrics.set_leader(false);
        assert_eq!(
            sample(&metrics.encode(), "privx_operator_leader"),
            Some(0.0)
        );
    }
}

/// The controllers' view of the metrics: `Metrics` used through `dyn ControllerMetrics`, as
/// the controllers' `Context` holds it.
#[cfg(test)]
mod controller_metrics_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Metrics;
    use crate::controller::ControllerMetrics;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().expect("sample value is a number"))
    }

    fn ready(text: &str, controller: &str, status: &str, reason: &str) -> Option<f64> {
        sample(
            text,
            &format!(
                r#"privx_operator_objects{{controller="{controller}",condition="Ready",status="{status}",reason="{reason}"}}"#
            ),
        )
    }

    fn as_controller_metrics(metrics: &Arc<Metrics>) -> Arc<dyn ControllerMetrics> {
        metrics.clone()
    }

    #[test]
    fn reconciles_are_counted_and_timed_and_errors_counted_by_label() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.reconciled("passwordpolicy", Duration::from_millis(30), None);
        reporter.reconciled(
            "passwordpolicy",
            Duration::from_millis(700),
            Some("privx_unavailable"),
        );
        reporter.reconciled(
            "passwordpolicy",
            Duration::from_millis(3),
            Some("privx_unavailable"),
        );
        reporter.reconciled("vaultsecret", Duration::from_millis(1), Some("kubernetes"));

        let text = metrics.encode();
        let reconciles = |controller: &str| {
            sample(
                &text,
                &format!(r#"privx_operator_reconciles_total{{controller="{controller}"}}"#),
            )
        };
        assert_eq!(reconciles("passwordpolicy"), Some(3.0));
        assert_eq!(reconciles("vaultsecret"), Some(1.0));
        let errors = |controller: &str, reason: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_reconcile_errors_total{{controller="{controller}",reason="{reason}"}}"#
                ),
            )
        };
        assert_eq!(errors("passwordpolicy", "privx_unavailable"), Some(2.0));
        assert_eq!(errors("vaultsecret", "kubernetes"), Some(1.0));
        assert_eq!(
            errors("passwordpolicy", "kubernetes"),
            None,
            "labels are per controller"
        );
        // A successful reconcile is no error of any label.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("privx_operator_reconcile_errors_total{"))
                .count(),
            2,
            "{text}"
        );

        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"privx_operator_reconcile_duration_seconds_bucket{{le="{le}",controller="passwordpolicy"}}"#
                ),
            )
        };
        // 3 ms, 30 ms and 700 ms.
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("0.05"), Some(2.0));
        assert_eq!(bucket("0.5"), Some(2.0));
        assert_eq!(bucket("1.0"), Some(3.0));
        assert_eq!(
            sample(
                &text,
                r#"privx_operator_reconcile_duration_seconds_count{controller="passwordpolicy"}"#
            ),
            Some(3.0)
        );
        let sum = sample(
            &text,
            r#"privx_operator_reconcile_duration_seconds_sum{controller="passwordpolicy"}"#,
        )
        .expect("histogram sum");
        assert!((sum - 0.733).abs() < 1e-9, "sum was {sum}");
    }

    #[test]
    fn objects_are_counted_by_their_ready_condition_and_forgotten() {
        let metrics = Arc::new(Metrics::new());
        let reporter = as_controller_metrics(&metrics);
        reporter.object_condition("passwordpolicy", "a", true, "Synced");
        reporter.object_condition("passwordpolicy", "b", true, "Synced");
        reporter.object_condition("passwordpolicy", "c", false, "InvalidSpec");
        reporter.object_condition("vaultsecret", "demo/a", false, "PrivXUnavailable");
        // Reporting the same state again counts nothing twice.
        reporter.object_condition("passwordpolicy", "a", true, "Synced");

        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), Some(2.0));
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "InvalidSpec"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "vaultsecret", "False", "PrivXUnavailable"),
            Some(1.0)
        );

        // b fails, c is fixed: each object moves from one series to the other.
        reporter.object_condition("passwordpolicy", "b", false, "PrivXUnavailable");
        reporter.object_condition("passwordpolicy", "c", true, "UnsupportedField");
        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), Some(1.0));
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "PrivXUnavailable"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "passwordpolicy", "True", "UnsupportedField"),
            Some(1.0)
        );
        assert_eq!(ready(&text, "passwordpolicy", "False", "InvalidSpec"), None);

        // Deleted objects leave the gauge; the other controller's objects stay.
        reporter.forget_object("passwordpolicy", "b");
        reporter.forget_object("passwordpolicy", "a");
        let text = metrics.encode();
        assert_eq!(ready(&text, "passwordpolicy", "True", "Synced"), None);
        assert_eq!(
            ready(&text, "passwordpolicy", "False", "PrivXUnavailable"),
            None
        );
        assert_eq!(
            ready(&text, "passwordpolicy", "True", "UnsupportedField"),
            Some(1.0)
        );
        assert_eq!(
            ready(&text, "vaultsecret", "False", "PrivXUnavailable"),
            Some(1.0)
        );
    }
}
