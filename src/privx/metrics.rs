//! Prometheus metrics of PrivX calls: a [`CallObserver`] the runtime registers in its registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{CallObserver, CallRecord};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: &'static str,
    /// The HTTP status, or `error` when no answer came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    result: &'static str,
}

/// `privx_requests_total{endpoint,status}`, `privx_request_duration_seconds{endpoint}` and
/// `privx_token_refreshes_total{result}`.
#[derive(Clone)]
pub struct PrivxMetrics {
    requests: Family<CallLabels, Counter>,
    durations: Family<EndpointLabels, Histogram>,
    refreshes: Family<RefreshLabels, Counter>,
}

impl PrivxMetrics {
    /// Creates the metrics and registers them in `registry` (names get the `privx_` prefix).
    pub fn register(registry: &mut Registry) -> std::sync::Arc<Self> {
        let metrics = Self {
            requests: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            refreshes: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("privx");
        registry.register(
            "requests",
            "HTTP requests made to PrivX, by route template and status",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Duration of HTTP requests made to PrivX, by route template",
            metrics.durations.clone(),
        );
        registry.register(
            "token_refreshes",
            "PrivX token grants, by result",
            metrics.refreshes.clone(),
        );
        std::sync::Arc::new(metrics)
    }
}

impl CallObserver for PrivxMetrics {
    fn on_call(&self, record: &CallRecord) {
        let status = if record.status == 0 {
            "error".to_string()
        } else {
            record.status.to_string()
        };
        self.requests
            .get_or_create(&CallLabels {
                endpoint: record.endpoint,
                status,
            })
            .inc();
        self.durations
            .get_or_create(&EndpointLabels {
                endpoint: record.endpoint,
            })
            .observe(record.duration.as_secs_f64());
    }

    fn on_token_refresh(&self, ok: bool) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_show_up_in_the_exposition() {
        let mut registry = Registry::default();
        let metrics = PrivxMetrics::register(&mut registry);
        metrics.on_call(&CallRecord {
            endpoint: "GET /vault/api/v1/secrets/{name}",
            status: 404,
            duration: std::time::Duration::from_millis(12),
        });
        metrics.on_token_refresh(true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"privx_requests_total{endpoint="GET /vault/api/v1/secrets/{name}",status="404"} 1"#), "{text}");
        assert!(
            text.contains("privx_request_duration_seconds_count"),
            "{text}"
        );
        assert!(
            text.contains(r#"privx_token_refreshes_total{result="ok"} 1"#),
            "{text}"
        );
    }
}
