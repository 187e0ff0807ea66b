//! The running simulator: binds the listener, optionally wraps it in TLS with a freshly
//! generated self-signed certificate, serves each connection with hyper, logs every PrivX
//! request and drops connections when a fault says so.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::admin::admin_router;
use super::routes::{CallerMark, DropMark, RouteMark, error_code_of, privx_router};
use super::state::{EndpointCounter, LoggedRequest, SimState, lock};
use super::{Fault, SimOptions};

/// The four credentials of one API client. `Debug` redacts both secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct SimCredentials {
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    pub api_client_id: String,
    pub api_client_secret: String,
}

impl fmt::Debug for SimCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimCredentials")
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"<redacted>")
            .field("api_client_id", &self.api_client_id)
            .field("api_client_secret", &"<redacted>")
            .finish()
    }
}

/// A running simulator. Dropping it without [`Simulator::shutdown`] stops accepting
/// connections too.
pub struct Simulator {
    state: Arc<SimState>,
    address: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    credentials: Vec<(String, SimCredentials)>,
    cancel: CancellationToken,
    accept_task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Simulator {
    /// Binds `options.listen` and serves until [`Simulator::shutdown`].
    pub async fn start(options: SimOptions) -> anyhow::Result<Simulator> {
        anyhow::ensure!(
            !options.seed.api_clients.is_empty(),
            "the seed has no API client"
        );
        let state = Arc::new(SimState::new(&options).context("simulator seed or options")?);
        let listener = TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("binding {}", options.listen))?;
        let address = listener.local_addr()?;
        let (acceptor, ca_pem) = if options.tls {
            let (acceptor, pem) = tls_acceptor(&options.tls_names)?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let app = privx_router(state.clone())
            .merge(admin_router())
            .with_state(state.clone());
        let cancel = CancellationToken::new();
        let accept_task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            app,
            state.clone(),
            cancel.clone(),
        ));
        let credentials = state.credentials();
        tracing::info!(%address, tls = options.tls, "PrivX simulator listening");
        Ok(Simulator {
            state,
            address,
            tls: options.tls,
            ca_pem,
            credentials,
            cancel,
            accept_task: Some(accept_task),
        })
    }

    /// `http://127.0.0.1:PORT` (or `https://` with TLS), without a trailing slash.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// The address the simulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The credentials of the seed's first API client.
    pub fn credentials(&self) -> SimCredentials {
        self.credentials
            .first()
            .map(|(_, c)| c.clone())
            .expect("the seed has at least one API client (checked at start)")
    }

    /// The credentials of the API client named `api_client_name` in the seed.
    pub fn credentials_of(&self, api_client_name: &str) -> Option<SimCredentials> {
        self.credentials
            .iter()
            .find(|(name, _)| name == api_client_name)
            .map(|(_, c)| c.clone())
    }

    /// The PEM of the generated self-signed certificate (its own CA) when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// The request log, oldest first (same as `GET /_sim/requests`).
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// Calls per route (`METHOD /template`), by status (same as `GET /_sim/counters`).
    pub fn counters(&self) -> BTreeMap<String, EndpointCounter> {
        lock(&self.state.counters).clone()
    }

    /// PrivX requests being handled now and the most at once since the last
    /// [`Simulator::reset_max_in_flight`] (same as `GET /_sim/in-flight`).
    pub fn in_flight(&self) -> (usize, usize) {
        self.state.in_flight.get()
    }

    pub fn reset_max_in_flight(&self) {
        self.state.in_flight.reset_max();
    }

    /// Replaces the active faults.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        *lock(&self.state.faults) = faults;
    }

    /// The active faults (with `next` counting down).
    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.state.faults).clone()
    }

    /// Lifetime of tokens granted from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.token_lifetime) = lifetime;
    }

    /// Every token granted so far is answered 401 from now on.
    pub fn expire_all_tokens(&self) {
        self.state.expire_all_tokens();
    }

    /// Marks a password policy in use (DELETE refuses it) or not. False when no such policy.
    pub fn set_policy_in_use(&self, policy_id: &str, in_use: bool) -> bool {
        self.state.set_policy_in_use(policy_id, in_use)
    }

    /// Stops accepting, lets open connections finish their current request, and returns.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

fn tls_acceptor(names: &[String]) -> anyhow::Result<(tokio_rustls::TlsAcceptor, String)> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut subject_alt_names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    subject_alt_names.extend(names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(subject_alt_names)
        .with_context(|| format!("generating the simulator's TLS certificate for {names:?}"))?;
    let pem = certified.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .context("TLS certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    state: Arc<SimState>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let state = state.clone();
        let cancel = cancel.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_connection(TokioIo::new(stream), app, state, cancel).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve_connection(TokioIo::new(tls), app, state, cancel).await,
                    Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<I>(io: I, app: Router, state: Arc<SimState>, cancel: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        let state = state.clone();
        async move { handle(app, state, request).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended");
            }
        }
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

/// The answer of a faulted request: close the connection without a response.
#[derive(Debug)]
struct DroppedByFault;

impl fmt::Display for DroppedByFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DroppedByFault {}

async fn handle(
    app: Router,
    state: Arc<SimState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, DroppedByFault> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let is_admin = path == "/_sim" || path.starts_with("/_sim/");
    let bearer_client = if is_admin {
        None
    } else {
        state.client_of_authorization(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
    };
    let response = match app.oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if is_admin {
        return Ok(response);
    }
    let dropped = response.extensions().get::<DropMark>().is_some();
    let route = response
        .extensions()
        .get::<RouteMark>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| format!("{method} *"));
    let client_id = response
        .extensions()
        .get::<CallerMark>()
        .map(|c| c.0.clone())
        .or(bearer_client);
    let status = if dropped {
        0
    } else {
        response.status().as_u16()
    };
    let error_code = error_code_of(&response);
    tracing::debug!(%route, %path, status, error_code = error_code.as_deref().unwrap_or(""), "request");
    state.record(LoggedRequest {
        method,
        route,
        path,
        status,
        error_code,
        client_id,
    });
    if dropped {
        Err(DroppedByFault)
    } else {
        Ok(response)
    }
}
