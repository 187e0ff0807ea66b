//! The operator's own HTTP listener (`--http-addr`): `/livez`, `/readyz` and `/metrics`.
//!
//! Owns the readiness state ([`Health`]) and the listener. Must not do work per request beyond
//! reading that state and encoding metrics: probes are called often and must stay cheap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::{self, Metrics};

/// Why the HTTP listener failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("--http-addr {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP listener on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Readiness of the process. Cheap to clone; all clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    watches_synced: AtomicBool,
    privx_ok: AtomicBool,
    /// A standing remark for `/readyz` (e.g. a fallback to older PrivX behaviour).
    note: std::sync::Mutex<Option<String>>,
    /// The PrivX services whose circuit breaker is open, for a second `/readyz` remark.
    outage: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set once every controller's watches have delivered their initial list.
    pub fn set_watches_synced(&self, synced: bool) {
        self.inner.watches_synced.store(synced, Ordering::Relaxed);
    }

    /// Set once PrivX has answered (a successful ping or call).
    pub fn set_privx_ok(&self, ok: bool) {
        self.inner.privx_ok.store(ok, Ordering::Relaxed);
    }

    /// Adds a line to every `/readyz` answer (ready or not).
    pub fn set_note(&self, note: &str) {
        *self.inner.note.lock().expect("note lock") = Some(note.to_string());
    }

    pub fn note(&self) -> Option<String> {
        self.inner.note.lock().expect("note lock").clone()
    }

    /// Says on `/readyz` which PrivX services are unavailable (their circuit breaker is open);
    /// `None` when all are back. Readiness and liveness are not affected: the operator itself
    /// works and recovers on its own.
    pub fn set_privx_outage(&self, outage: Option<String>) {
        *self.inner.outage.lock().expect("outage lock") = outage;
    }

    pub fn privx_outage(&self) -> Option<String> {
        self.inner.outage.lock().expect("outage lock").clone()
    }

    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// What keeps the process from being ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        let synced = self.inner.watches_synced.load(Ordering::Relaxed);
        let privx_ok = self.inner.privx_ok.load(Ordering::Relaxed);
        match (synced, privx_ok) {
            (true, true) => None,
            (false, true) => Some("watches not synced yet"),
            (true, false) => Some("PrivX has not answered yet"),
            (false, false) => Some("watches not synced yet; PrivX has not answered yet"),
        }
    }
}

/// The routes, for serving on any listener.
pub fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz).with_state(health))
        .route("/metrics", get(metrics_text).with_state(metrics))
}

/// Binds `addr` and serves until `shutdown` fires; in-flight requests finish first.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    serve_on(listener, health, metrics, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read the port back). The
/// "serving" line is logged when this is called, not when the returned future first runs: a
/// start-up that fails right after (no cluster) still shows that the listener was up.
pub fn serve_on(
    listener: TcpListener,
    health: Health,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> impl Future<Output = Result<(), HttpError>> + Send + 'static {
    let addr = listener.local_addr();
    if let Ok(addr) = &addr {
        tracing::info!(%addr, "serving /livez, /readyz and /metrics");
    }
    async move {
        let addr = addr.map_err(|source| HttpError::Serve {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        axum::serve(listener, router(health, metrics))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| HttpError::Serve { addr, source })
    }
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(health): State<Health>) -> (StatusCode, String) {
    let (status, text) = match health.not_ready_reason() {
        None => (StatusCode::OK, "ok"),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    };
    let mut body = text.to_string();
    for note in [health.note(), health.privx_outage()].into_iter().flatten() {
        body.push_str(&format!("\nnote: {note}"));
    }
    (status, body)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_both_synced_watches_and_privx() {
        let health = Health::new();
        let clone = health.clone();
        assert!(!health.is_ready());
        clone.set_watches_synced(true);
        assert_eq!(
            health.not_ready_reason(),
            Some("PrivX has not answered yet")
        );
        clone.set_privx_ok(true);
        assert!(health.is_ready());
        clone.set_watches_synced(false);
        assert_eq!(health.not_ready_reason(), Some("watches not synced yet"));
    }

    #[tokio::test]
    async fn readyz_carries_the_note() {
        let health = Health::new();
        health.set_watches_synced(true);
        health.set_privx_ok(true);
        assert_eq!(readyz(State(health.clone())).await.1, "ok");
        health.set_note("PrivX has no users/current");
        let (status, body) = readyz(State(health)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\nnote: PrivX has no users/current");
    }

    #[tokio::test]
    async fn readyz_says_which_privx_services_are_unavailable_and_stays_ready() {
        let health = Health::new();
        health.set_watches_synced(true);
        health.set_privx_ok(true);
        health.set_privx_outage(Some(
            "PrivX unavailable: vault (circuit breaker open)".into(),
        ));
        let (status, body) = readyz(State(health.clone())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ok\nnote: PrivX unavailable: vault (circuit breaker open)"
        );
        health.set_privx_outage(None);
        assert_eq!(readyz(State(health)).await.1, "ok");
    }
}
