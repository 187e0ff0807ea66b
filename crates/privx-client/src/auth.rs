//! The access token (docs/privx-api.md section 1): one cached token shared by every clone of the client,
//! granted with the password grant, refreshed about three quarters into its lifetime with one
//! grant in flight at a time, dropped when the credential files change. A refused grant
//! (`invalid_client`, `invalid_grant`, ...) blocks further grants for a growing while so that
//! PrivX's failed-login limiter is never tripped.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::PrivxError;
use super::config::{CredentialSource, CredentialValue, Credentials};
use super::error::{CallContext, error_from_answer, sanitize};
use super::routes;
use super::transport::{FileStamp, Transport, error_chain};

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

struct Loaded {
    credentials: Credentials,
    stamps: Vec<Option<FileStamp>>,
    digest: [u8; 32],
}

struct Refusal {
    until: Instant,
    digest: [u8; 32],
    message: String,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    loaded: Option<Loaded>,
    refusal: Option<Refusal>,
    /// The wait after the next refusal.
    next_refusal_wait: Option<Duration>,
    serial: u64,
}

pub(crate) struct Auth {
    values: [CredentialValue; 4],
    state: Mutex<State>,
    /// Held by the caller that runs a grant; the others wait on it (cold or expired cache) or
    /// keep using the still-valid token (early refresh).
    grant_gate: tokio::sync::Mutex<()>,
}

const LABELS: [&str; 4] = [
    "OAuth client ID",
    "OAuth client secret",
    "API client ID",
    "API client secret",
];

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

enum GrantFailure {
    /// PrivX refused the credentials: do not try again soon.
    Refused(String),
    Failed(PrivxError),
}

impl Auth {
    pub(crate) fn new(source: &CredentialSource) -> Result<Self, PrivxError> {
        let auth = Self {
            values: source.values(),
            state: Mutex::new(State::default()),
            grant_gate: tokio::sync::Mutex::new(()),
        };
        // Fail early on unreadable files or empty values.
        let mut state = auth.state.lock().expect("auth lock");
        auth.reload_credentials(&mut state)?;
        drop(state);
        Ok(auth)
    }

    /// A token to call with: the cached one, or a fresh grant.
    pub(crate) async fn token(&self, transport: &Transport) -> Result<Token, PrivxError> {
        let still_valid = {
            let mut state = self.state.lock().expect("auth lock");
            self.reload_credentials(&mut state)?;
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
        let credentials = {
            let mut state = self.state.lock().expect("auth lock");
            self.reload_credentials(&mut state)?;
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
            let loaded = state.loaded.as_ref().expect("credentials loaded");
            (loaded.credentials.clone(), loaded.digest)
        };
        let result = self.grant(transport, &credentials.0).await;
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
                Ok(token)
            }
            Err(GrantFailure::Refused(message)) => {
                let wait = state.next_refusal_wait.unwrap_or(REFUSAL_FIRST);
                state.next_refusal_wait = Some((wait * 2).min(REFUSAL_MAX));
                let message = format!(
                    "{message}; no new login is tried for {}s or until the credentials change",
                    wait.as_secs()
                );
                tracing::error!(error = %message, "PrivX refused the API client credentials");
                state.refusal = Some(Refusal {
                    until: now + wait,
                    digest: credentials.1,
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
        let loaded = state.loaded.as_ref().expect("credentials loaded");
        match &state.refusal {
            Some(r) if now < r.until && r.digest == loaded.digest => {
                Err(PrivxError::Unauthenticated {
                    message: r.message.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Re-reads credential files whose stamp changed; a change of any value drops the cached
    /// token and any refusal (new credentials deserve a new try).
    fn reload_credentials(&self, state: &mut State) -> Result<(), PrivxError> {
        let stamps: Vec<Option<FileStamp>> = self
            .values
            .iter()
            .zip(LABELS)
            .map(|(value, label)| match value {
                CredentialValue::Value(_) => Ok(None),
                CredentialValue::File(path) => FileStamp::of(path)
                    .map(Some)
                    .map_err(|e| file_error(label, path, &e)),
            })
            .collect::<Result<_, _>>()?;
        if state.loaded.as_ref().is_some_and(|l| l.stamps == stamps) {
            return Ok(());
        }
        let mut read = Vec::with_capacity(4);
        for (value, label) in self.values.iter().zip(LABELS) {
            let text = match value {
                CredentialValue::Value(v) => v.trim().to_string(),
                CredentialValue::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| file_error(label, path, &e))?
                    .trim()
                    .to_string(),
            };
            if text.is_empty() {
                return Err(PrivxError::Config(match value {
                    CredentialValue::Value(_) => format!("the PrivX {label} is empty"),
                    CredentialValue::File(path) => {
                        format!("the PrivX {label} file {} is empty", path.display())
                    }
                }));
            }
            read.push(text);
        }
        let [
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        ]: [String; 4] = read.try_into().expect("four values");
        let credentials = Credentials {
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        };
        let digest = digest(&credentials);
        let changed = state.loaded.as_ref().is_some_and(|l| l.digest != digest);
        if changed {
            tracing::info!("PrivX credentials changed; the next call logs in anew");
            state.cached = None;
            state.refusal = None;
            state.next_refusal_wait = None;
        }
        state.loaded = Some(Loaded {
            credentials,
            stamps,
            digest,
        });
        Ok(())
    }

    async fn grant(
        &self,
        transport: &Transport,
        credentials: &Credentials,
    ) -> Result<(String, Duration), GrantFailure> {
        let ctx = CallContext {
            operation: "login (token grant)".into(),
            what: "token endpoint".into(),
            redact: vec![
                credentials.oauth_client_secret.clone(),
                credentials.api_client_secret.clone(),
            ],
        };
        let url = transport
            .url(routes::TOKEN_PATH)
            .map_err(GrantFailure::Failed)?;
        let request = transport
            .client()
            .post(url)
            .basic_auth(
                &credentials.oauth_client_id,
                Some(&credentials.oauth_client_secret),
            )
            .form(&[
                ("grant_type", "password"),
                ("username", credentials.api_client_id.as_str()),
                ("password", credentials.api_client_secret.as_str()),
            ]);
        let answer = transport.send(routes::TOKEN, request).await.map_err(|e| {
            GrantFailure::Failed(PrivxError::Unavailable {
                operation: ctx.operation.clone(),
                message: sanitize(&error_chain(&e), &ctx.redact),
                retry_after: None,
            })
        })?;
        match answer.status {
            200..=299 => {
                let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
                    .map_err(|e| GrantFailure::Failed(super::error::parse_failure(&ctx, &e)))?;
                if parsed.access_token.is_empty() {
                    return Err(GrantFailure::Failed(PrivxError::Other {
                        operation: ctx.operation,
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
                let mut message = format!("PrivX refused the API client credentials ({code}");
                if let Some(d) = oauth.error_description.filter(|d| !d.is_empty()) {
                    message.push_str(": ");
                    message.push_str(&d);
                }
                message.push(')');
                if matches!(
                    code.as_str(),
                    "invalid_client" | "invalid_grant" | "unauthorized_client"
                ) {
                    message.push_str(
                        "; check the API client ID and secret and the OAuth client ID and secret",
                    );
                }
                Err(GrantFailure::Refused(sanitize(&message, &ctx.redact)))
            }
            status => Err(GrantFailure::Failed(error_from_answer(
                &ctx,
                status,
                answer.retry_after,
                &answer.body,
            ))),
        }
    }
}

fn file_error(label: &str, path: &Path, err: &std::io::Error) -> PrivxError {
    PrivxError::Config(format!(
        "cannot read the PrivX {label} file {}: {err}",
        path.display()
    ))
}

fn digest(c: &Credentials) -> [u8; 32] {
    let mut hash = Sha256::new();
    for value in [
        &c.oauth_client_id,
        &c.oauth_client_secret,
        &c.api_client_id,
        &c.api_client_secret,
    ] {
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_bytes());
    }
    hash.finalize().into()
}
