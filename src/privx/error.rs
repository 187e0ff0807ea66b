//! Typed PrivX errors. The HTTP status decides the variant; PrivX's error body only explains.
//! No variant ever carries secret data: messages come from PrivX's error bodies (which echo
//! field names, not values) and are truncated.

use std::time::Duration;

/// What went wrong talking to PrivX.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrivxError {
    /// 404 (or PrivX's OBJECT_NOT_FOUND).
    #[error("{what} not found in PrivX")]
    NotFound { what: String },

    /// 409, or 400 with VALUE_DUPLICATE.
    #[error("{what} already exists in PrivX")]
    AlreadyExists { what: String },

    /// 403: the token is fine but the API client's roles do not allow this.
    #[error("permission denied by PrivX for {operation}: {message}")]
    PermissionDenied { operation: String, message: String },

    /// 400 (other than duplicates) and 413: PrivX refused the request's content.
    #[error("PrivX refused {operation}: {code}{}: {message}", property.as_deref().map(|p| format!(" (field {p})")).unwrap_or_default())]
    InvalidRequest {
        operation: String,
        code: String,
        property: Option<String>,
        message: String,
    },

    /// 401 after one refresh and retry, or the token endpoint refused the credentials
    /// (`invalid_client`, `invalid_grant`, ...): a configuration problem.
    #[error("PrivX authentication failed: {message}")]
    Unauthenticated { message: String },

    /// 5xx, 502/503/504 from proxies, MAX_LOAD / TOO_MANY_CONNECTIONS / OUT_OF_RESOURCES,
    /// timeouts and connection failures: retry later.
    #[error("PrivX unavailable during {operation}: {message}")]
    Unavailable {
        operation: String,
        message: String,
        retry_after: Option<Duration>,
    },

    /// The server's password-policy generation has no such field.
    #[error("PrivX {generation} has no password-policy field {field}")]
    Unsupported { generation: String, field: String },

    /// The client is misconfigured (URL, CA bundle, credentials missing).
    #[error("PrivX client configuration: {0}")]
    Config(String),

    /// Anything else (unexpected status or unparseable answer).
    #[error("unexpected PrivX answer to {operation}: {message}")]
    Other { operation: String, message: String },
}

impl PrivxError {
    /// Whether retrying later may succeed without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A short stable label for metrics and condition reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Unavailable { .. } => "unavailable",
            Self::Unsupported { .. } => "unsupported",
            Self::Config(_) => "config",
            Self::Other { .. } => "other",
        }
    }
}
