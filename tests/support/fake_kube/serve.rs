//! The fake API over real HTTP on 127.0.0.1, for a client that is not in this process: the
//! scale benchmark runs the operator binary against it (`--operator-process`), so that the
//! operator's memory is its own process's. The same state and answers as
//! [`FakeKube::client`], plus `GET /version`; while a fault is on, every request answers
//! 503 (an accepted connection cannot be refused).

use std::future::IntoFuture as _;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::FakeKube;

/// A fake API server listening on 127.0.0.1; stops when dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    server: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Served {
    /// A kube client configuration for this server, `namespace` as the default namespace.
    pub fn config(&self, namespace: &str) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().expect("the server's URL"));
        config.default_namespace = namespace.to_string();
        config
    }

    /// A one-context kubeconfig for this server (a placeholder token: the fake asks for none).
    pub fn kubeconfig(&self, namespace: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-kube"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        })
    }
}

impl FakeKube {
    /// Serves this fake over HTTP on a free port of 127.0.0.1 (on the current runtime).
    pub async fn serve_http(&self) -> std::io::Result<Served> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let me = self.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let me = me.clone();
            async move { me.answer_http(request).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).into_future().await;
        });
        Ok(Served { url, server })
    }

    async fn answer_http(&self, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        if parts.method == http::Method::GET && parts.uri.path() == "/version" {
            return axum::Json(json!({
                "major": "1", "minor": "36", "gitVersion": "v1.36.0-fake",
                "platform": "linux/amd64",
            }))
            .into_response();
        }
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        match self.answer(parts, &bytes) {
            Ok(response) => response.map(Body::new),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(super::store::status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )),
            )
                .into_response(),
        }
    }
}
