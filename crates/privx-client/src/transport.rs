//! The HTTP layer under the client: one reqwest client (rebuilt when the CA bundle file
//! changes), URL building, the shared [`crate::limit`] every request waits for, timing of every
//! request for the [`CallObserver`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::{CallObserver, CallRecord, PrivxConfig, PrivxError};
use crate::breaker::{Breakers, Outcome, Service, Transition};
use crate::error::{CallContext, outage_message, refusal_error, transport_error};
use crate::limit::Limit;

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStamp {
    /// A number that changes when the stamp does.
    pub(crate) fn hash_value(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.modified.hash(&mut hasher);
        self.len.hash(&mut hasher);
        hasher.finish()
    }

    pub(crate) fn of(path: &Path) -> std::io::Result<Self> {
        // `metadata` follows symlinks: a Kubernetes Secret volume swaps its `..data` link.
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

/// The User-Agent: the operator and its version.
pub(crate) const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// An answer read whole.
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

struct CurrentClient {
    client: reqwest::Client,
    ca_stamp: Option<FileStamp>,
}

pub(crate) struct Transport {
    base: String,
    timeout: Duration,
    ca_file: Option<PathBuf>,
    ca_only: bool,
    current: Mutex<CurrentClient>,
    observer: RwLock<Option<Arc<dyn CallObserver>>>,
    write_gate: RwLock<Option<crate::core::WriteGate>>,
    limit: super::limit::Limit,
    breakers: Breakers,
}

impl Transport {
    pub(crate) fn new(config: &PrivxConfig) -> Result<Self, PrivxError> {
        let base = config.checked_base_url()?;
        if config.timeout.is_zero() {
            return Err(PrivxError::Config("timeout must be more than zero".into()));
        }
        let (ca_pem, ca_stamp) = match &config.ca_file {
            Some(path) => {
                let (pem, stamp) = read_ca(path)?;
                (Some(pem), Some(stamp))
            }
            None if config.ca_only => {
                return Err(PrivxError::Config(
                    "trusting only the CA bundle needs a CA bundle file".into(),
                ));
            }
            None => (None, None),
        };
        let client = build_client(config.timeout, ca_pem.as_deref(), config.ca_only)?;
        Ok(Self {
            base: base.as_str().trim_end_matches('/').to_string(),
            timeout: config.timeout,
            ca_file: config.ca_file.clone(),
            ca_only: config.ca_only,
            current: Mutex::new(CurrentClient { client, ca_stamp }),
            observer: RwLock::new(None),
            write_gate: RwLock::new(None),
            limit: config.limit.clone(),
            breakers: config.breakers.clone(),
        })
    }

    /// Sets the observer and tells it the state of every service's breaker.
    pub(crate) fn set_observer(&self, observer: Arc<dyn CallObserver>) {
        let status = self.breakers.status();
        for service in Service::ALL {
            observer.on_breaker_state(service, status.state(service));
        }
        *self.observer.write().expect("observer lock") = Some(observer);
    }

    pub(crate) fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    fn observer(&self) -> Option<Arc<dyn CallObserver>> {
        self.observer.read().expect("observer lock").clone()
    }

    pub(crate) fn set_write_gate(&self, gate: crate::core::WriteGate) {
        *self.write_gate.write().expect("write gate lock") = Some(gate);
    }

    /// What the write gate says now (no gate: yes).
    pub(crate) fn may_write(&self) -> bool {
        self.write_gate
            .read()
            .expect("write gate lock")
            .as_ref()
            .is_none_or(|gate| gate())
    }

    pub(crate) fn observe_refresh(&self, ok: bool) {
        if let Some(o) = self.observer.read().expect("observer lock").as_ref() {
            o.on_token_refresh(ok);
        }
    }

    /// `path` (already percent-encoded) under the base URL.
    pub(crate) fn url(&self, path: &str) -> Result<url::Url, PrivxError> {
        url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| PrivxError::Config(format!("cannot build a URL for {path:?}: {e}")))
    }

    /// The HTTP client, rebuilt first if the CA bundle file changed. A bundle that cannot be
    /// used (half-written during a rotation) leaves the previous client in place.
    pub(crate) fn client(&self) -> reqwest::Client {
        let mut current = self.current.lock().expect("client lock");
        if let Some(path) = &self.ca_file {
            let stamp = FileStamp::of(path).ok();
            if stamp.is_some() && stamp != current.ca_stamp {
                match read_ca(path).and_then(|(pem, stamp)| {
                    Ok((build_client(self.timeout, Some(&pem), self.ca_only)?, stamp))
                }) {
                    Ok((client, stamp)) => {
                        tracing::info!(ca_file = %path.display(), "PrivX CA bundle changed; reloaded");
                        current.client = client;
                        current.ca_stamp = Some(stamp);
                    }
                    Err(e) => {
                        tracing::warn!(ca_file = %path.display(), error = %e, "PrivX CA bundle changed but cannot be used; keeping the previous one");
                        current.ca_stamp = stamp;
                    }
                }
            }
        }
        current.client.clone()
    }

    /// Sends one request once the limits and the circuit breaker of its service allow, reads
    /// the whole answer, tells the breaker what it said and reports it to the observer (the
    /// time waited for the limits is not counted in its duration). A call the breaker refuses
    /// fails at once, before waiting for the limits, and sends nothing.
    pub(crate) async fn send(
        &self,
        ctx: &CallContext,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, PrivxError> {
        let service = Service::from_name(ctx.service);
        let refused = |refusal: crate::breaker::Refusal| {
            if let Some(o) = self.observer() {
                o.on_breaker_refusal(refusal.service);
            }
            self.ensure_prober(refusal.service);
            tracing::debug!(operation = %ctx.operation, service = %refusal.service, "PrivX call refused by the open circuit breaker");
            refusal_error(ctx, &refusal)
        };
        // A look first, so that refused calls do not queue for the limits.
        if let Some(refusal) = service.and_then(|s| self.breakers.refusal(s)) {
            return Err(refused(refusal));
        }
        let _turn = self.limit.turn().await;
        let permit = match service.map(|s| self.breakers.admit(s)) {
            Some(Err(refusal)) => return Err(refused(refusal)),
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let result = exchange(&self.observer(), endpoint, request).await;
        if let Some(permit) = permit {
            let outcome = outcome_of(&result, permit.service());
            let transition = permit.report(&outcome);
            self.announce(transition);
        }
        result.map_err(|e| transport_error(ctx, &e))
    }

    /// Tells the observer of a state change and starts the prober when a breaker opened.
    fn announce(&self, transition: Transition) {
        if let Some((service, state)) = transition {
            if let Some(o) = self.observer() {
                o.on_breaker_state(service, state);
            }
            self.ensure_prober(service);
        }
    }

    /// Starts the background prober of `service` unless one runs or its breaker is closed.
    fn ensure_prober(&self, service: Service) {
        let Some(id) = self.breakers.claim_prober(service) else {
            return;
        };
        let prober = Prober {
            id,
            service,
            url: self.url(service.status_path()),
            client: self.client(),
            limit: self.limit.clone(),
            breakers: self.breakers.clone(),
            observer: self.observer(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(prober.run());
            }
            // No runtime (cannot happen inside an async call): the next refusal tries again.
            Err(_) => self.breakers.release_prober(service, id),
        }
    }
}

/// What an answer (or its absence) says about its service, for the breaker.
fn outcome_of(result: &Result<Answer, reqwest::Error>, service: Service) -> Outcome {
    match result {
        Ok(answer) => match outage_message(answer.status, &answer.body, service.as_str()) {
            Some(message) => Outcome::Failed {
                message,
                retry_after: answer.retry_after,
            },
            None => Outcome::Served,
        },
        Err(e) => Outcome::Failed {
            message: crate::error::transport_failure_message(e, service.as_str()),
            retry_after: None,
        },
    }
}

/// One HTTP exchange, timed and reported to the observer.
async fn exchange(
    observer: &Option<Arc<dyn CallObserver>>,
    endpoint: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, reqwest::Error> {
    let started = Instant::now();
    let result = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(super::retry::parse_retry_after);
        let body = response.bytes().await?.to_vec();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
    .await;
    let record = CallRecord {
        endpoint,
        status: result.as_ref().map(|a| a.status).unwrap_or(0),
        duration: started.elapsed(),
    };
    tracing::debug!(
        endpoint,
        status = record.status,
        duration_ms = record.duration.as_millis() as u64,
        "PrivX call"
    );
    if let Some(o) = observer {
        o.on_call(&record);
    }
    result
}

/// Sends a service's probe (`GET /<service>/api/v1/status`, no token: any answer but an
/// outage shows the service serves) each time one is due, until the breaker closes.
struct Prober {
    id: u64,
    service: Service,
    url: Result<url::Url, PrivxError>,
    client: reqwest::Client,
    limit: Limit,
    breakers: Breakers,
    observer: Option<Arc<dyn CallObserver>>,
}

impl Prober {
    async fn run(self) {
        // Released however the task ends (a runtime shutting down drops it).
        struct Running(Breakers, Service, u64);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.release_prober(self.1, self.2);
            }
        }
        let _running = Running(self.breakers.clone(), self.service, self.id);
        let Ok(url) = self.url.clone() else {
            return;
        };
        loop {
            let Some(wait) =
                self.breakers
                    .until_probe(self.service, self.id, tokio::time::Instant::now())
            else {
                return;
            };
            tokio::time::sleep(wait).await;
            let Some((permit, transition)) = self
                .breakers
                .admit_probe(self.service, tokio::time::Instant::now())
            else {
                continue;
            };
            self.announce(transition);
            let _turn = self.limit.turn().await;
            let request = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            let result = exchange(&self.observer, self.service.status_route(), request).await;
            let transition = permit.report(&outcome_of(&result, self.service));
            self.announce(transition);
        }
    }

    fn announce(&self, transition: Transition) {
        if let (Some((service, state)), Some(o)) = (transition, &self.observer) {
            o.on_breaker_state(service, state);
        }
    }
}

fn read_ca(path: &Path) -> Result<(Vec<u8>, FileStamp), PrivxError> {
    let io = |e: std::io::Error| {
        PrivxError::Config(format!("cannot read CA bundle {}: {e}", path.display()))
    };
    let stamp = FileStamp::of(path).map_err(io)?;
    let pem = std::fs::read(path).map_err(io)?;
    Ok((pem, stamp))
}

fn build_client(
    timeout: Duration,
    ca_pem: Option<&[u8]>,
    ca_only: bool,
) -> Result<reqwest::Client, PrivxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| PrivxError::Config(format!("CA bundle is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(PrivxError::Config("CA bundle holds no certificates".into()));
        }
        builder = if ca_only {
            builder.tls_certs_only(certs)
        } else {
            builder.tls_certs_merge(certs)
        };
    }
    builder.build().map_err(|e| {
        PrivxError::Config(format!("cannot build the HTTP client: {}", error_chain(&e)))
    })
}

/// An error and its sources on one line ("error sending request: connection refused").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
