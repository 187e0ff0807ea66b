//! The HTTP layer under the client: one reqwest client (rebuilt when the CA bundle file
//! changes), URL building, the shared [`crate::limit`] every request waits for, timing of every
//! request for the [`CallObserver`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::{CallObserver, CallRecord, PrivxConfig, PrivxError};

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
        })
    }

    pub(crate) fn set_observer(&self, observer: Arc<dyn CallObserver>) {
        *self.observer.write().expect("observer lock") = Some(observer);
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

    /// Sends one request once the limits allow, reads the whole answer and reports it to the
    /// observer (the time waited for the limits is not counted in its duration).
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, reqwest::Error> {
        let _turn = self.limit.turn().await;
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
        if let Some(o) = self.observer.read().expect("observer lock").as_ref() {
            o.on_call(&record);
        }
        result
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
