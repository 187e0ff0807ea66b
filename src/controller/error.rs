//! Errors of a reconcile. Each variant says which object and which call failed, and has a short
//! stable label for metrics and events. None carries secret data.

use privx_client::PrivxError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// A PrivX call failed (status already reports it; the error drives the backoff).
    #[error("PrivX {action}: {source}")]
    Privx {
        action: String,
        #[source]
        source: PrivxError,
    },
    /// The object cannot be processed until it changes (reported in status).
    #[error("{0}")]
    Blocked(String),
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    pub fn privx(action: impl Into<String>) -> impl FnOnce(PrivxError) -> Self {
        let action = action.into();
        move |source| Self::Privx { action, source }
    }

    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kubernetes",
            Self::Privx { source, .. } => match source {
                PrivxError::Unavailable { .. } => "privx_unavailable",
                PrivxError::PermissionDenied { .. } => "privx_permission_denied",
                PrivxError::Unauthenticated { .. } => "privx_unauthenticated",
                PrivxError::NotFound { .. } => "privx_not_found",
                PrivxError::AlreadyExists { .. } => "privx_conflict",
                PrivxError::InvalidRequest { .. } => "privx_invalid_request",
                _ => "privx_other",
            },
            Self::Blocked(_) => "blocked",
        }
    }

    /// Whether this is a 404 from Kubernetes.
    pub fn is_kube_not_found(error: &kube::Error) -> bool {
        matches!(error, kube::Error::Api(s) if s.code == 404)
    }
}
