//! Counts every write the operator sends to the Kubernetes API, by verb and resource
//! (`privx_operator_kubernetes_writes_total`), in one place: a tower layer around the kube
//! `Client`'s service. Every API call of the process (controllers, events, leader election,
//! the HMAC key) goes through the client built by [`client`], so none is missed and none is
//! counted twice. Labels hold the resource type and subresource only (`secrets`,
//! `vaultsecrets/status`, `events`), never a namespace or an object's name.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request};
use kube::client::retry::RetryPolicy;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::{Layer, Service};

use super::metrics::Metrics;

/// Retries of a request the API server answered 429, 503 or 504 (a `Retry-After` it sends is
/// honoured): few and short, so that an outage reaches the controllers within seconds. Their
/// own per-object backoff and status then take over. kube's default (15 retries, backing off
/// to 1,000 s) would hold a reconcile, and its worker, for minutes without a word.
pub const RETRIES: u32 = 3;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Requests waiting for the connection pool (as many as kube's own buffer holds).
const BUFFER: usize = 1024;

/// The kube client for `config`, with its writes counted into `metrics` and [`RETRIES`].
pub fn client(mut config: kube::Config, metrics: Arc<Metrics>) -> kube::Result<kube::Client> {
    config.default_retry = false;
    let retries =
        RetryPolicy::new(RETRY_MIN, RETRY_MAX, RETRIES, true).expect("valid retry parameters");
    // Every attempt is counted (what the API server receives); the retry layer clones the
    // service it retries, and a buffer makes the stack cloneable.
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&WriteCountLayer::new(metrics))
        .with_layer(&BufferLayer::new(BUFFER))
        .with_layer(&RetryLayer::new(retries))
        .build())
}

/// `client` with its writes counted into `metrics` (for a client built elsewhere, such as the
/// tests' fake API: the same layer as [`client`] over the given client's `send`).
pub fn counted(client: kube::Client, metrics: Arc<Metrics>) -> kube::Client {
    let namespace = client.default_namespace().to_string();
    let send = tower::service_fn(move |request: Request<kube::client::Body>| {
        let client = client.clone();
        async move { client.send(request).await }
    });
    kube::Client::new(WriteCountLayer::new(metrics).layer(send), namespace)
}

/// The layer that counts writes.
#[derive(Clone)]
pub struct WriteCountLayer {
    metrics: Arc<Metrics>,
}

impl WriteCountLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for WriteCountLayer {
    type Service = WriteCount<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteCount {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`WriteCountLayer`]: counts a write when it is sent, whatever the answer.
#[derive(Clone)]
pub struct WriteCount<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for WriteCount<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some((verb, resource)) = classify(request.method(), request.uri().path()) {
            self.metrics.kubernetes_write(verb, &resource);
        }
        self.inner.call(request)
    }
}

/// The verb and resource of a write request; `None` for reads (GET, list, watch) and for paths
/// that are not API resources.
pub fn classify(method: &Method, path: &str) -> Option<(&'static str, String)> {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => return None,
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/{version}/... or /apis/{group}/{version}/...
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..)?,
        Some(&"apis") => segments.get(3..)?,
        _ => return None,
    };
    // Namespaced: namespaces/{ns}/{resource}/...; a Namespace itself is namespaces/{name}.
    let rest = match rest {
        ["namespaces", _, resource, more @ ..] => {
            let mut r = vec![*resource];
            r.extend_from_slice(more);
            r
        }
        other => other.to_vec(),
    };
    let resource = rest.first().filter(|r| !r.is_empty())?;
    Some(match rest.get(2) {
        Some(subresource) => (verb, format!("{resource}/{subresource}")),
        None => (verb, resource.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_classified_by_verb_and_resource_without_names() {
        let cases = [
            (
                Method::PATCH,
                "/api/v1/namespaces/apps/secrets/db",
                Some(("patch", "secrets")),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/apps/secrets",
                Some(("create", "secrets")),
            ),
            (
                Method::PATCH,
                "/apis/privx-operator.dev/v1alpha1/namespaces/apps/vaultsecrets/db/status",
                Some(("patch", "vaultsecrets/status")),
            ),
            (
                Method::PUT,
                "/apis/privx-operator.dev/v1alpha1/passwordpolicies/p/status",
                Some(("update", "passwordpolicies/status")),
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/apps/events",
                Some(("create", "events")),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/apps",
                Some(("delete", "namespaces")),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/apps/deployments/web",
                Some(("patch", "deployments")),
            ),
            (Method::GET, "/api/v1/namespaces/apps/secrets/db", None),
            (Method::POST, "/version", None),
        ];
        for (method, path, expected) in cases {
            let got = classify(&method, path);
            assert_eq!(
                got.as_ref().map(|(v, r)| (*v, r.as_str())),
                expected,
                "{method} {path}"
            );
        }
    }
}
