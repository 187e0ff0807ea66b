//! The access token (docs/privx-api.md section 1): one cached token shared by every clone of
//! the client, refreshed about three quarters into its lifetime with one login in flight at a
//! time, dropped when what the login sends changes (credential files, a rotated token file, a
//! new key). How the client logs in is a strategy ([`AuthMethod`]): the password grant
//! (`password`) or a JWT exchanged at the token-login endpoint (`exchange`). A refused login
//! (`invalid_client`, `invalid_grant`, ...) blocks further logins for a growing while, whatever
//! the strategy, so that PrivX's failed-login limiter is never tripped.

mod exchange;
mod password;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::PrivxError;
use crate::config::CredentialSource;
use crate::error::{CallContext, error_from_answer, sanitize};
use crate::transport::{Answer, Transport};

pub use exchange::{
    EdAlgName, SignedJwt, SignedJwtClaims, SubjectTokenFuture, SubjectTokenSource, TokenExchange,
    TokenFile, fingerprint,
};

/// How the client logs in to PrivX.
#[derive(Clone, Debug)]
pub enum AuthMethod {
    /// The OAuth password grant with an API client's four credentials.
    Password(CredentialSource),
    /// An external JWT exchanged at `POST /auth/api/v1/token/login`.
    TokenExchange(TokenExchange),
}

/// First wait after a refused grant; doubles on each further refusal up to [`REFUSAL_MAX`].
const REFUSAL_FIRST: Duration = Duration::from_secs(60);
const REFUSAL_MAX: Duration = Duration::from_secs(15 * 60);
/// Lifetime assumed when the answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Wait before trying again after an early refresh failed while the old token still works.
const EARLY_REFRESH_RETRY: Duration = Duration::from_secs(10);

/// A token handed to callers; `serial` tells whether it is still the cached one.
#[derive(Clone)]
pub(crate) struct Token {
    pub access: Arc<str>,
    pub serial: u64,
}

struct Cached {
    token: Token,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Refusal {
    until: Instant,
    digest: [u8; 32],
    message: String,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// The digest of what the login sends, as last seen.
    identity: Option<[u8; 32]>,
    refusal: Option<Refusal>,
    /// The wait after the next refusal.
    next_refusal_wait: Option<Duration>,
    serial: u64,
}

enum Grant {
    // Boxed: the password grant holds its credential sources and is much the larger.
    Password(Box<password::PasswordGrant>),
    Exchange(TokenExchange),
}

pub(crate) struct Auth {
    grant: Grant,
    state: Mutex<State>,
    /// Held by the caller that runs a grant; the others wait on it (cold or expired cache) or
    /// keep using the still-valid token (early refresh).
    grant_gate: tokio::sync::Mutex<()>,
    renewals: tokio::sync::watch::Sender<u64>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A granted token and its lifetime.
pub(crate) type Granted = (String, Duration);

enum GrantFailure {
    /// PrivX refused the credentials: do not try again soon.
    Refused(String),
    Failed(PrivxError),
}

impl Auth {
    pub(crate) fn new(method: &AuthMethod) -> Result<Self, PrivxError> {
        let grant = match method {
            AuthMethod::Password(source) => {
                Grant::Password(Box::new(password::PasswordGrant::new(source)?))
            }
            AuthMethod::TokenExchange(login) => Grant::Exchange(login.clone()),
        };
        let auth = Self {
            grant,
            state: Mutex::new(State::default()),
            grant_gate: tokio::sync::Mutex::new(()),
            renewals: tokio::sync::watch::channel(0).0,
        };
        // Fail early on unreadable files or empty values.
        let mut state = auth.state.lock().expect("auth lock");
        auth.check_identity(&mut state)?;
        drop(state);
        Ok(auth)
    }

    /// Counts successful logins (the first one and every renewal).
    pub(crate) fn renewals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.renewals.subscribe()
    }

    /// A token to call with: the cached one, or a fresh grant.
    pub(crate) async fn token(&self, transport: &Transport) -> Result<Token, PrivxError> {
        let still_valid = {
            let mut state = self.state.lock().expect("auth lock");
            self.check_identity(&mut state)?;
            let now = Instant::now();
            match &state.cached {
                Some(c) if now < c.refresh_at => return Ok(c.token.clone()),
                Some(c) if now < c.expires_at => Some(c.token.clone()),
                _ => {
                    Self::check_refusal(&state, now)?;
                    None
                }
            }
        };
        let _gate = match &still_valid {
            Some(token) => match self.grant_gate.try_lock() {
                Ok(gate) => gate,
                // Someone is refreshing already; the current token still works meanwhile.
                Err(_) => return Ok(token.clone()),
            },
            None => self.grant_gate.lock().await,
        };
        let identity = {
            let mut state = self.state.lock().expect("auth lock");
            self.check_identity(&mut state)?;
            let now = Instant::now();
            if let Some(c) = &state.cached
                && now < c.refresh_at
            {
                return Ok(c.token.clone());
            }
            if let Err(refused) = Self::check_refusal(&state, now) {
                return match &state.cached {
                    Some(c) if now < c.expires_at => Ok(c.token.clone()),
                    _ => Err(refused),
                };
            }
            state.identity.expect("identity checked")
        };
        let result = match &self.grant {
            Grant::Password(grant) => grant.grant(transport).await,
            Grant::Exchange(login) => exchange::exchange(transport, login).await,
        };
        transport.observe_refresh(result.is_ok());
        let mut state = self.state.lock().expect("auth lock");
        let now = Instant::now();
        match result {
            Ok((access, lifetime)) => {
                state.serial += 1;
                let token = Token {
                    access: access.into(),
                    serial: state.serial,
                };
                let margin = (lifetime / 10).min(Duration::from_secs(30));
                state.cached = Some(Cached {
                    token: token.clone(),
                    refresh_at: now + lifetime * 3 / 4,
                    expires_at: now + lifetime - margin,
                });
                state.refusal = None;
                state.next_refusal_wait = None;
                let serial = state.serial;
                drop(state);
                self.renewals.send_replace(serial);
                Ok(token)
            }
            Err(GrantFailure::Refused(message)) => {
                let wait = state.next_refusal_wait.unwrap_or(REFUSAL_FIRST);
                state.next_refusal_wait = Some((wait * 2).min(REFUSAL_MAX));
                let message = format!(
                    "{message}; no new login is tried for {}s or until what the login sends changes",
                    wait.as_secs()
                );
                tracing::error!(error = %message, "PrivX refused the login");
                state.refusal = Some(Refusal {
                    until: now + wait,
                    digest: identity,
                    message: message.clone(),
                });
                state.cached = None;
                Err(PrivxError::Unauthenticated { message })
            }
            Err(GrantFailure::Failed(err)) => match (&mut state.cached, still_valid) {
                (Some(c), Some(_)) if now < c.expires_at => {
                    tracing::warn!(error = %err, "early PrivX token refresh failed; using the current token meanwhile");
                    c.refresh_at = now + EARLY_REFRESH_RETRY.min((c.expires_at - now) / 2);
                    Ok(c.token.clone())
                }
                _ => Err(err),
            },
        }
    }

    /// Forgets `token` if it is still the cached one (PrivX answered 401 to it).
    pub(crate) fn invalidate(&self, token: &Token) {
        let mut state = self.state.lock().expect("auth lock");
        if state
            .cached
            .as_ref()
            .is_some_and(|c| c.token.serial == token.serial)
        {
            state.cached = None;
        }
    }

    fn check_refusal(state: &State, now: Instant) -> Result<(), PrivxError> {
        match &state.refusal {
            Some(r) if now < r.until && Some(r.digest) == state.identity => {
                Err(PrivxError::Unauthenticated {
                    message: r.message.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks what the login would send (credential files, token file, key file); a change
    /// drops the cached token and any refusal (a new identity deserves a new try).
    fn check_identity(&self, state: &mut State) -> Result<(), PrivxError> {
        let digest = match &self.grant {
            Grant::Password(grant) => grant.digest()?,
            Grant::Exchange(login) => {
                let mut hash = Sha256::new();
                hash.update(login.source.version()?.to_be_bytes());
                hash.update(login.client_id.as_deref().unwrap_or_default().as_bytes());
                hash.update([0]);
                hash.update(login.scope.as_deref().unwrap_or_default().as_bytes());
                hash.finalize().into()
            }
        };
        if state.identity.is_some_and(|old| old != digest) {
            tracing::info!(
                "the PrivX login changed (credentials, token or key); the next call logs in anew"
            );
            state.cached = None;
            state.refusal = None;
            state.next_refusal_wait = None;
        }
        state.identity = Some(digest);
        Ok(())
    }
}

/// Reads a token endpoint's answer (both grants answer alike): the token, or a refusal in the
/// OAuth error shape. `what` names what was refused, `hint` what to check.
fn oauth_answer(
    ctx: &CallContext,
    answer: &Answer,
    what: &str,
    hint: &str,
) -> Result<Granted, GrantFailure> {
    match answer.status {
        200..=299 => {
            let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
                .map_err(|e| GrantFailure::Failed(crate::error::parse_failure(ctx, &e)))?;
            if parsed.access_token.is_empty() {
                return Err(GrantFailure::Failed(PrivxError::Other {
                    operation: ctx.operation.clone(),
                    message: "the token answer has no access_token".into(),
                }));
            }
            let lifetime = parsed
                .expires_in
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LIFETIME);
            Ok((parsed.access_token, lifetime))
        }
        400 | 401 | 403 => {
            let oauth: OAuthError = serde_json::from_slice(&answer.body).unwrap_or_default();
            let code = oauth
                .error
                .unwrap_or_else(|| format!("HTTP {}", answer.status));
            let mut message = format!("PrivX refused {what} ({code}");
            if let Some(d) = oauth.error_description.filter(|d| !d.is_empty()) {
                message.push_str(": ");
                message.push_str(&d.chars().take(200).collect::<String>());
            }
            message.push(')');
            if matches!(
                code.as_str(),
                "invalid_client" | "invalid_grant" | "unauthorized_client"
            ) {
                message.push_str("; ");
                message.push_str(hint);
            }
            Err(GrantFailure::Refused(sanitize(&message, &ctx.redact)))
        }
        status => Err(GrantFailure::Failed(error_from_answer(
            ctx,
            status,
            answer.retry_after,
            &answer.body,
        ))),
    }
}

/// A random ID (the `jti` of signed JWTs).
pub(crate) fn random_id() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
