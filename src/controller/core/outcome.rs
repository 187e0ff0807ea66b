//! Why a reconcile stopped, in one vocabulary both controllers share: the condition reasons,
//! the refusal (reason + message) the pure plans return, the reconcile [`Error`] (with a short
//! stable label per variant for metrics and events), and [`Stop`]: a refusal with how the
//! reconcile continues. No I/O; none of it carries secret data.

use privx_client::PrivxError;

/// Condition reasons (the `reason` of `Ready` / `Synced`).
pub mod reason {
    pub const SYNCED: &str = "Synced";
    pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
    pub const POLICY_NOT_FOUND: &str = "PolicyNotFound";
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    pub const NOT_READABLE: &str = "NotReadable";
    pub const CONFLICT: &str = "Conflict";
    pub const NOT_ALLOWED: &str = "NotAllowed";
    pub const PRIVX_UNAVAILABLE: &str = "PrivXUnavailable";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// (per-namespace PrivX identity) The namespace's ServiceAccount is missing or unusable.
    pub const IDENTITY_NOT_FOUND: &str = "IdentityNotFound";
    /// (VaultSecret) A mirror template does not compile or render (the message names the key
    /// and the line, never the data).
    pub const TEMPLATE_ERROR: &str = "TemplateError";
    /// (VaultSecret) `creationPolicy: Merge` and the Secret to merge into does not exist
    /// (nothing is created; retried).
    pub const MIRROR_NOT_FOUND: &str = "MirrorNotFound";
    /// A Kubernetes API call failed (retried with backoff).
    pub const KUBERNETES_ERROR: &str = "KubernetesError";

    /// (PasswordPolicy) Synced, but a declared field the server's generation lacks was not sent.
    pub const UNSUPPORTED_FIELD: &str = "UnsupportedField";
    /// (PasswordPolicy) PrivX refuses to delete the policy (e.g. still in use); the finalizer stays.
    pub const DELETE_BLOCKED: &str = "DeleteBlocked";
}

/// The reason and message of a refusal: the reconcile stops, status says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

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

    /// The PrivX service that was not serving, when this failure is an outage (an outage
    /// answer, or a call its open circuit breaker refused).
    pub fn privx_outage(&self) -> Option<privx_client::Service> {
        match self {
            Self::Privx { source, .. } => source.unavailable_service(),
            _ => None,
        }
    }

    /// Whether this is a 404 from Kubernetes.
    pub fn is_kube_not_found(error: &kube::Error) -> bool {
        matches!(error, kube::Error::Api(s) if s.code == 404)
    }
}

/// A short text of a Kubernetes error for messages.
pub fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

/// How a reconcile that stopped early continues.
#[derive(Debug)]
pub enum Next {
    /// Wait for a change of the object (or of something watched).
    AwaitChange,
    /// Look again after this long.
    After(std::time::Duration),
    /// Fail: the error policy backs off.
    Fail(Box<Error>),
}

/// Why a reconcile stopped (reported in status) and how it continues.
pub type Stop = (Refusal, Next);

/// The condition reason for a PrivX failure.
pub fn privx_reason(e: &privx_client::PrivxError) -> &'static str {
    use privx_client::PrivxError;
    use reason;
    match e {
        PrivxError::PermissionDenied { .. } => reason::PERMISSION_DENIED,
        PrivxError::InvalidRequest { .. } | PrivxError::Unsupported { .. } => reason::INVALID_SPEC,
        // Reported as what it is, never as an outage.
        PrivxError::AlreadyExists { .. } => reason::CONFLICT,
        _ => reason::PRIVX_UNAVAILABLE,
    }
}

/// A failed PrivX call: reported with its reason, then backed off.
pub fn privx_stop(e: privx_client::PrivxError, action: &str) -> Stop {
    let refusal = Refusal::new(privx_reason(&e), format!("{action}: {e}"));
    (
        refusal,
        Next::Fail(Box::new(Error::privx(action.to_string())(e))),
    )
}

/// Whether `stop` is PrivX answering that the name exists (a create of a taken name).
pub fn is_already_exists(stop: &Stop) -> bool {
    matches!(
        &stop.1,
        Next::Fail(e) if matches!(
            **e,
            Error::Privx { source: privx_client::PrivxError::AlreadyExists { .. }, .. }
        )
    )
}

/// A failed Kubernetes call: reported, then backed off.
pub fn kube_stop(action: &str, e: kube::Error) -> Stop {
    let refusal = Refusal::new(
        reason::KUBERNETES_ERROR,
        format!("{action}: {}", short_kube_error(&e)),
    );
    (
        refusal,
        Next::Fail(Box::new(Error::kube(action.to_string())(e))),
    )
}

/// An error already wrapped (e.g. from a helper): reported, then backed off.
pub fn error_stop(e: Error) -> Stop {
    let refusal = Refusal::new(reason::KUBERNETES_ERROR, e.to_string());
    (refusal, Next::Fail(Box::new(e)))
}

/// Stops on validation errors: `InvalidSpec` naming every field, waiting for a change.
pub fn invalid_spec(errors: &[crate::crd::validate::FieldError]) -> Result<(), Stop> {
    if errors.is_empty() {
        return Ok(());
    }
    let message = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ");
    Err((
        Refusal::new(reason::INVALID_SPEC, message),
        Next::AwaitChange,
    ))
}
