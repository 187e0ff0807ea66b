//! The PrivX client's reports: one record per HTTP request, one per token grant, and the
//! circuit breakers' states and refusals.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;

use privx_client::{BreakerState, CallObserver, CallRecord, Service};

use super::Metrics;

/// One PrivX request: usually well under a second, up to the request timeout.
const PRIVX_REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    endpoint: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BreakerLabels {
    service: String,
    state: String,
}

pub(super) fn request_histogram() -> Histogram {
    Histogram::new(PRIVX_REQUEST_BUCKETS)
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

    fn on_breaker_state(&self, service: Service, state: BreakerState) {
        // One series per state, 1 for the current one: a state set, as Prometheus prefers
        // to a number that encodes the state.
        for each in BreakerState::ALL {
            self.privx_breaker_state
                .get_or_create(&BreakerLabels {
                    service: service.as_str().to_owned(),
                    state: each.as_str().to_owned(),
                })
                .set(i64::from(each == state));
        }
    }

    fn on_breaker_refusal(&self, service: Service) {
        self.privx_breaker_refusals
            .get_or_create(&ServiceLabels {
                service: service.as_str().to_owned(),
            })
            .inc();
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
