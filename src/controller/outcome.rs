//! Why a reconcile stopped: the condition reasons both controllers report, and the refusal
//! (reason + message) the pure plans return. Shared vocabulary; no I/O.

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
