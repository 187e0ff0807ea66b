//! Token exchange (docs/privx-api.md section 1): an external JWT — a Kubernetes
//! service-account token, or one the client signs itself — sent to
//! `POST /auth/api/v1/token/login` for a PrivX access token.
//!
//! The client holds no Kubernetes code: where the JWT comes from is a [`SubjectTokenSource`].
//! Two sources live here ([`TokenFile`] for a projected service-account token, [`SignedJwt`]
//! for a key PrivX trusts); the operator adds one that asks the Kubernetes API (TokenRequest).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{GrantFailure, Granted, oauth_answer};
use crate::PrivxError;
use crate::error::CallContext;
use crate::routes;
use crate::transport::{FileStamp, Transport};

/// What [`SubjectTokenSource::token`] returns.
pub type SubjectTokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, PrivxError>> + Send + 'a>>;

/// Where the JWT to exchange comes from. Called once per exchange (the client exchanges again
/// before PrivX's token expires), so a source hands out a fresh token each time.
pub trait SubjectTokenSource: Send + Sync + 'static {
    /// A JWT to exchange now. Errors must not carry the token.
    fn token(&self) -> SubjectTokenFuture<'_>;
    /// Changes when what the source hands out changes (a rotated file, a new key): a login that
    /// PrivX refused is tried again at once after a change, not only after the cool-down.
    /// Sources that mint a new token for every call keep it constant.
    fn version(&self) -> Result<u64, PrivxError> {
        Ok(0)
    }
    /// How the source is named in messages (never the token).
    fn describe(&self) -> String;
}

/// The token-exchange login: a subject-token source and the optional fields of the request.
#[derive(Clone)]
pub struct TokenExchange {
    pub source: Arc<dyn SubjectTokenSource>,
    /// `client_id` of the login request (the PrivX API client the token is for), if PrivX wants it.
    pub client_id: Option<String>,
    /// `scope` of the login request, if any.
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("source", &self.source.describe())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenExchange {
    pub fn new(source: Arc<dyn SubjectTokenSource>) -> Self {
        Self {
            source,
            client_id: None,
            scope: None,
        }
    }
}

/// A short, non-reversible name of a token for logs: the first 12 hex digits of its SHA-256.
pub fn fingerprint(token: &str) -> String {
    let hash = Sha256::digest(token.as_bytes());
    hash[..6].iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) async fn exchange(
    transport: &Transport,
    login: &TokenExchange,
) -> Result<Granted, GrantFailure> {
    let subject = login.source.token().await.map_err(GrantFailure::Failed)?;
    let subject = subject.trim().to_string();
    if subject.is_empty() {
        return Err(GrantFailure::Failed(PrivxError::Config(format!(
            "the {} is empty",
            login.source.describe()
        ))));
    }
    tracing::debug!(
        source = %login.source.describe(),
        fingerprint = %fingerprint(&subject),
        "exchanging a JWT for a PrivX token"
    );
    let ctx = CallContext {
        operation: "login (token exchange)".into(),
        what: "token login endpoint".into(),
        service: "auth",
        redact: vec![subject.clone()],
    };
    let mut body = json!({ "token": subject });
    if let Some(client_id) = &login.client_id {
        body["client_id"] = json!(client_id);
    }
    if let Some(scope) = &login.scope {
        body["scope"] = json!(scope);
    }
    let url = transport
        .url(routes::TOKEN_LOGIN_PATH)
        .map_err(GrantFailure::Failed)?;
    let request = transport.client().post(url).json(&body);
    let answer = transport
        .send(&ctx, routes::TOKEN_LOGIN, request)
        .await
        .map_err(GrantFailure::Failed)?;
    let what = format!("the {}", login.source.describe());
    oauth_answer(
        &ctx,
        &answer,
        &what,
        "check that PrivX trusts the token's issuer and audience and maps its subject to a user",
    )
}

/// A JWT in a file, read anew for every exchange: a projected service-account token that the
/// kubelet rotates in place.
#[derive(Clone, Debug)]
pub struct TokenFile {
    pub path: PathBuf,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl SubjectTokenSource for TokenFile {
    fn token(&self) -> SubjectTokenFuture<'_> {
        Box::pin(async move {
            tokio::fs::read_to_string(&self.path).await.map_err(|e| {
                PrivxError::Config(format!(
                    "cannot read the service-account token file {}: {e}",
                    self.path.display()
                ))
            })
        })
    }

    fn version(&self) -> Result<u64, PrivxError> {
        let stamp = FileStamp::of(&self.path).map_err(|e| {
            PrivxError::Config(format!(
                "cannot read the service-account token file {}: {e}",
                self.path.display()
            ))
        })?;
        Ok(stamp.hash_value())
    }

    fn describe(&self) -> String {
        format!("service-account token file {}", self.path.display())
    }
}

/// The `alg` name written into the header of an Ed25519-signed JWT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EdAlgName {
    /// `EdDSA`, the standard name (RFC 8037).
    #[default]
    EdDsa,
    /// `Ed25519`, which PrivX 43 expected instead.
    Ed25519,
}

/// What a [`SignedJwt`] puts in its claims.
#[derive(Clone, Debug)]
pub struct SignedJwtClaims {
    pub issuer: String,
    /// The PrivX user name the token stands for.
    pub subject: String,
    /// One audience, written as a single string.
    pub audience: String,
    pub lifetime: Duration,
}

/// A parsed signing key, with the stamp of the file it came from.
type CachedKey = (FileStamp, Arc<(EncodingKey, Algorithm)>);

/// A JWT the client signs itself with a private key from a file (PEM, PKCS#8 or PKCS#1): RS256
/// for an RSA key, EdDSA for an Ed25519 key. The key file is re-read when it changes.
pub struct SignedJwt {
    key_file: PathBuf,
    claims: SignedJwtClaims,
    ed_alg_name: EdAlgName,
    key: Mutex<Option<CachedKey>>,
}

impl std::fmt::Debug for SignedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedJwt")
            .field("key_file", &self.key_file)
            .field("claims", &self.claims)
            .field("ed_alg_name", &self.ed_alg_name)
            .finish_non_exhaustive()
    }
}

impl SignedJwt {
    /// Checks the key file once (readable, an RSA or Ed25519 private key) and the claims.
    pub fn new(
        key_file: impl Into<PathBuf>,
        claims: SignedJwtClaims,
        ed_alg_name: EdAlgName,
    ) -> Result<Self, PrivxError> {
        for (field, value) in [
            ("issuer", &claims.issuer),
            ("subject", &claims.subject),
            ("audience", &claims.audience),
        ] {
            if value.trim().is_empty() {
                return Err(PrivxError::Config(format!(
                    "the signed JWT's {field} is empty"
                )));
            }
        }
        if claims.lifetime < Duration::from_secs(10) || claims.lifetime > Duration::from_secs(3600)
        {
            return Err(PrivxError::Config(
                "the signed JWT's lifetime must be between 10s and 1h".into(),
            ));
        }
        let jwt = Self {
            key_file: key_file.into(),
            claims,
            ed_alg_name,
            key: Mutex::new(None),
        };
        jwt.key()?;
        Ok(jwt)
    }

    fn key(&self) -> Result<Arc<(EncodingKey, Algorithm)>, PrivxError> {
        let io = |e: std::io::Error| {
            PrivxError::Config(format!(
                "cannot read the JWT signing key file {}: {e}",
                self.key_file.display()
            ))
        };
        let stamp = FileStamp::of(&self.key_file).map_err(io)?;
        let mut cached = self.key.lock().expect("key lock");
        if let Some((s, key)) = cached.as_ref()
            && *s == stamp
        {
            return Ok(key.clone());
        }
        let pem = std::fs::read(&self.key_file).map_err(io)?;
        let key = if let Ok(key) = EncodingKey::from_ed_pem(&pem) {
            (key, Algorithm::EdDSA)
        } else if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
            (key, Algorithm::RS256)
        } else {
            // The parser's message is not shown: it could quote the key.
            return Err(PrivxError::Config(format!(
                "the JWT signing key file {} holds no RSA or Ed25519 private key in PEM form",
                self.key_file.display()
            )));
        };
        // A public key passes the PEM parser as "RSA": only a signature proves a private key.
        if jsonwebtoken::crypto::sign(b"probe", &key.0, key.1).is_err() {
            return Err(PrivxError::Config(format!(
                "the JWT signing key file {} holds no usable RSA or Ed25519 private key",
                self.key_file.display()
            )));
        }
        let key = Arc::new(key);
        *cached = Some((stamp, key.clone()));
        Ok(key)
    }

    /// A freshly signed JWT.
    pub fn sign(&self) -> Result<String, PrivxError> {
        let key = self.key()?;
        let (key, algorithm) = (&key.0, key.1);
        let now = jiff::Timestamp::now().as_second();
        let claims = json!({
            "iss": self.claims.issuer,
            "sub": self.claims.subject,
            "aud": self.claims.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.claims.lifetime.as_secs() as i64,
            "jti": crate::auth::random_id(),
        });
        let failed = |e: jsonwebtoken::errors::Error| {
            PrivxError::Config(format!(
                "signing the JWT failed: {}",
                e.to_string().chars().take(120).collect::<String>()
            ))
        };
        if algorithm == Algorithm::EdDSA && self.ed_alg_name == EdAlgName::Ed25519 {
            // jsonwebtoken's header knows only the standard name: write this one header by
            // hand and let the crate sign it.
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = b64.encode(json!({"alg": "Ed25519", "typ": "JWT"}).to_string());
            let payload = b64.encode(claims.to_string());
            let message = format!("{header}.{payload}");
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::EdDSA)
                .map_err(failed)?;
            return Ok(format!("{message}.{signature}"));
        }
        jsonwebtoken::encode(&Header::new(algorithm), &claims, key).map_err(failed)
    }
}

impl SubjectTokenSource for SignedJwt {
    fn token(&self) -> SubjectTokenFuture<'_> {
        Box::pin(async move { self.sign() })
    }

    fn version(&self) -> Result<u64, PrivxError> {
        self.key()?;
        let stamp = self
            .key
            .lock()
            .expect("key lock")
            .as_ref()
            .map(|(s, _)| s.hash_value())
            .unwrap_or(0);
        Ok(stamp)
    }

    fn describe(&self) -> String {
        format!("signed JWT (key file {})", self.key_file.display())
    }
}
