//! The PrivX REST client (docs/privx-api.md sections 1–6).
//!
//! Owns authentication (one cached token, refreshed before expiry, single-flight), every
//! endpoint the operator uses, retries of retryable failures, one shared limit on concurrent
//! requests and on their rate ([`limit`]), one shared circuit breaker per PrivX service
//! ([`breaker`]), typed errors and call metrics.
//! Must not know about Kubernetes: no kube or k8s-openapi types, no CRD types.
//!
//! Layout: one request core ([`core`]: call, retries, 401 refresh, paging) under one module
//! per PrivX service — `auth` (token cache and grants), `vault` (secrets),
//! `secrets_manager` (password policies), `role_store` (roles, the caller's own user) —
//! each a short list of endpoints over the core. `transport` is the HTTP layer below the core:
//! every request passes the limit and its service's breaker there.

pub mod auth;
pub mod breaker;
pub mod config;
mod core;
pub mod duration;
pub mod error;
pub mod limit;
pub mod model;
mod paging;
mod policy_wire;
mod retry;
mod role_store;
mod routes;
mod secrets_manager;
mod transport;
mod vault;

use std::sync::{Arc, Mutex};

use transport::Transport;

pub use self::core::WriteGate;
pub use auth::{
    AuthMethod, EdAlgName, SignedJwt, SignedJwtClaims, SubjectTokenFuture, SubjectTokenSource,
    TokenExchange, TokenFile,
};
pub use breaker::{BreakerSettings, BreakerState, BreakerStatus, Breakers, Service};
pub use config::{
    CredentialSource, CredentialValue, Credentials, PolicyGenerationSetting, PrivxConfig,
};
pub use error::PrivxError;
pub use limit::{Limit, Limits};
pub use model::{
    CurrentUser, PasswordPolicy, PolicyGeneration, Role, RoleHandle, Secret, SecretData,
    SecretLocation, SecretWrite,
};

/// Result of a PrivX call.
pub type Result<T, E = PrivxError> = std::result::Result<T, E>;

/// One PrivX call as observed, for metrics (`endpoint` is a route template such as
/// `GET /vault/api/v1/secrets/{name}`, never a concrete name).
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub endpoint: &'static str,
    /// HTTP status, or 0 when no answer came (connection failure, timeout).
    pub status: u16,
    pub duration: std::time::Duration,
}

/// Receives one record per HTTP request made to PrivX, one per token refresh, and the
/// circuit breakers' changes ([`breaker`]).
pub trait CallObserver: Send + Sync + 'static {
    fn on_call(&self, record: &CallRecord);
    fn on_token_refresh(&self, ok: bool);
    /// A service's circuit breaker changed state; also called for every service, with its
    /// state then, when the observer is set.
    fn on_breaker_state(&self, _service: Service, _state: BreakerState) {}
    /// A call to `service` was refused by its open circuit breaker (no request was sent).
    fn on_breaker_refusal(&self, _service: Service) {}
}

/// The PrivX client. Cheap to clone; all clones share one token cache, one HTTP pool, one
/// [`Limits`] and one [`Breakers`] (the last two also with every client built from a clone of
/// the same [`PrivxConfig`]).
#[derive(Clone)]
pub struct PrivxClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    auth: auth::Auth,
    max_retries: u32,
    retry_base_delay: std::time::Duration,
    generation: Mutex<GenerationState>,
    detect_gate: tokio::sync::Mutex<()>,
    base_url: String,
}

/// What the client knows of the server's password-policy generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GenerationState {
    Unknown,
    /// Nothing told; the guess is corrected once by a refusal that names a
    /// generation-specific field.
    Guessed(PolicyGeneration),
    Known(PolicyGeneration),
}

impl std::fmt::Debug for PrivxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivxClient")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl PrivxClient {
    /// Builds a client. Fails on a bad URL (non-https to a non-loopback host), an unreadable
    /// CA bundle or missing credentials. Makes no network call.
    pub fn new(config: PrivxConfig) -> Result<Self> {
        let transport = Transport::new(&config)?;
        let auth = auth::Auth::new(&config.auth)?;
        let generation = match config.policy_generation {
            PolicyGenerationSetting::Auto => GenerationState::Unknown,
            PolicyGenerationSetting::V34 => GenerationState::Known(PolicyGeneration::V34),
            PolicyGenerationSetting::V35 => GenerationState::Known(PolicyGeneration::V35),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                auth,
                max_retries: config.max_retries,
                retry_base_delay: config.retry_base_delay,
                generation: Mutex::new(generation),
                detect_gate: tokio::sync::Mutex::new(()),
                base_url: config.checked_base_url()?.to_string(),
            }),
        })
    }

    /// Sets the observer that receives call records (for the operator's metrics). Applies to
    /// every clone.
    pub fn with_observer(self, observer: std::sync::Arc<dyn CallObserver>) -> Self {
        self.inner.transport.set_observer(observer);
        self
    }

    /// The circuit breakers of the PrivX services, shared with every clone and every client
    /// built from a clone of the same configuration: [`Breakers::subscribe`] tells when a
    /// service recovers; [`PrivxError::breaker_refusal`] tells a refused call.
    pub fn breakers(&self) -> &Breakers {
        self.inner.transport.breakers()
    }

    /// Changes (to the count of logins so far) after every successful login: the first one and
    /// each renewal. The operator re-reads who it is in PrivX then.
    pub fn token_renewals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.auth.renewals()
    }

    /// Checks that PrivX answers and the credentials work (a token grant, if none is cached).
    pub async fn ping(&self) -> Result<()> {
        self.with_retries(|| async { self.inner.auth.token(&self.inner.transport).await.map(drop) })
            .await
    }
}
