//! The flags of the operator's own PrivX login (part of `privx-operator run`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How the operator logs in to PrivX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// The OAuth password grant with the API client's four credentials (PRIVX_API_* variables).
    Password,
    /// Exchange a Kubernetes service-account token (projected file, or TokenRequest) for a PrivX token.
    #[value(alias = "serviceAccountToken")]
    ServiceAccountToken,
    /// Exchange a JWT the operator signs with a private key PrivX trusts.
    #[value(alias = "signedJwt")]
    SignedJwt,
}

/// The `alg` name of Ed25519-signed JWTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EdAlgNameArg {
    /// The standard name (RFC 8037).
    #[value(name = "EdDSA")]
    EdDsa,
    /// What PrivX 43 expected.
    #[value(name = "Ed25519")]
    Ed25519,
}

/// Flags of the PrivX login (docs/security.md explains each mode).
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// PrivX login: password, service-account-token or signed-jwt.
    #[arg(long, env = "PRIVX_AUTH_MODE", value_enum, default_value = "password")]
    pub privx_auth_mode: AuthMode,

    /// (service-account-token) The projected service-account token file, re-read when the kubelet
    /// rotates it. Without it the operator asks the Kubernetes API for a token of its own
    /// ServiceAccount (TokenRequest).
    #[arg(long, env = "PRIVX_TOKEN_FILE", value_name = "FILE")]
    pub privx_token_file: Option<PathBuf>,

    /// Audience of the exchanged JWT (TokenRequest and signed JWT; a projected token has the
    /// audience its volume asks for).
    #[arg(long, env = "PRIVX_TOKEN_AUDIENCE", default_value = "privx")]
    pub privx_token_audience: String,

    /// (service-account-token, TokenRequest) Lifetime of requested tokens (at least 10m).
    #[arg(long, env = "PRIVX_TOKEN_EXPIRATION", default_value = "10m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub privx_token_expiration: Duration,

    /// (service-account-token, TokenRequest) The operator's own ServiceAccount (the chart sets it).
    #[arg(long, env = "PRIVX_OPERATOR_SERVICE_ACCOUNT", value_name = "NAME")]
    pub service_account: Option<String>,

    /// `client_id` sent with the token exchange, if the PrivX installation wants one.
    #[arg(long, env = "PRIVX_LOGIN_CLIENT_ID", value_name = "ID")]
    pub privx_login_client_id: Option<String>,

    /// `scope` sent with the token exchange, if any.
    #[arg(long, env = "PRIVX_LOGIN_SCOPE", value_name = "SCOPE")]
    pub privx_login_scope: Option<String>,

    /// (signed-jwt) PEM file of the private key (RSA: RS256, Ed25519: EdDSA); re-read when it changes.
    #[arg(long, env = "PRIVX_JWT_KEY_FILE", value_name = "FILE")]
    pub privx_jwt_key_file: Option<PathBuf>,

    /// (signed-jwt) `iss` of the signed JWT, as configured as trusted in PrivX.
    #[arg(long, env = "PRIVX_JWT_ISSUER", value_name = "ISSUER")]
    pub privx_jwt_issuer: Option<String>,

    /// (signed-jwt) `sub` of the signed JWT: the PrivX user the operator logs in as.
    #[arg(long, env = "PRIVX_JWT_SUBJECT", value_name = "USER")]
    pub privx_jwt_subject: Option<String>,

    /// (signed-jwt) Lifetime of each signed JWT.
    #[arg(long, env = "PRIVX_JWT_LIFETIME", default_value = "5m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub privx_jwt_lifetime: Duration,

    /// (signed-jwt) `alg` written for Ed25519 keys: EdDSA (standard) or Ed25519 (PrivX 43).
    #[arg(
        long,
        env = "PRIVX_JWT_ED_ALG_NAME",
        value_enum,
        default_value = "EdDSA"
    )]
    pub privx_jwt_ed_alg_name: EdAlgNameArg,

    /// Reconcile each namespace's VaultSecrets with the PrivX identity of one fixed
    /// ServiceAccount in that namespace (token exchange; off by default).
    #[arg(long, env = "PRIVX_OPERATOR_NAMESPACE_IDENTITY")]
    pub namespace_identity: bool,

    /// Name of that ServiceAccount in every namespace (never taken from a VaultSecret).
    #[arg(
        long,
        env = "PRIVX_OPERATOR_NAMESPACE_IDENTITY_SERVICE_ACCOUNT",
        default_value = "privx",
        value_name = "NAME"
    )]
    pub namespace_identity_service_account: String,

    /// Audience of the namespace tokens (fixed; PrivX must trust it).
    #[arg(
        long,
        env = "PRIVX_OPERATOR_NAMESPACE_IDENTITY_AUDIENCE",
        default_value = "privx"
    )]
    pub namespace_identity_audience: String,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::crd::duration::parse_duration(s).map_err(|e| e.to_string())
}
