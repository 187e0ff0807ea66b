//! The PrivX REST client (../shared/privx-api/README.md sections 1–6).
//!
//! Owns authentication (one cached token, refreshed before expiry, single-flight), every
//! endpoint the operator uses, retries of retryable failures, typed errors and call metrics.
//! Must not know about Kubernetes.

pub mod config;
pub mod error;
pub mod model;

pub use config::{Credentials, PolicyGenerationSetting, PrivxConfig};
pub use error::PrivxError;
pub use model::{
    PasswordPolicy, PolicyGeneration, Role, RoleHandle, Secret, SecretData, SecretLocation,
    SecretWrite,
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

/// Receives one record per HTTP request made to PrivX, and one per token refresh.
pub trait CallObserver: Send + Sync + 'static {
    fn on_call(&self, record: &CallRecord);
    fn on_token_refresh(&self, ok: bool);
}

/// The PrivX client. Cheap to clone; all clones share one token cache and one HTTP pool.
#[derive(Clone)]
pub struct PrivxClient {
    // filled in by the implementation
}

impl PrivxClient {
    /// Builds a client. Fails on a bad URL (non-https to a non-loopback host), an unreadable
    /// CA bundle or missing credentials. Makes no network call.
    pub fn new(_config: PrivxConfig) -> Result<Self> {
        todo!()
    }

    /// Sets the observer that receives call records (for the operator's metrics).
    pub fn with_observer(self, _observer: std::sync::Arc<dyn CallObserver>) -> Self {
        todo!()
    }

    /// Checks that PrivX answers and the credentials work (a token grant, if none is cached).
    pub async fn ping(&self) -> Result<()> {
        todo!()
    }

    // ---- vault secrets (shared and personal) ----

    /// All secrets at a location (pages through).
    pub async fn list_secrets(&self, _at: &SecretLocation) -> Result<Vec<Secret>> {
        todo!()
    }
    /// One secret with its data (`data` is `None` if PrivX withholds it).
    pub async fn get_secret(&self, _at: &SecretLocation, _name: &str) -> Result<Secret> {
        todo!()
    }
    /// One secret's metadata (no data).
    pub async fn get_secret_metadata(&self, _at: &SecretLocation, _name: &str) -> Result<Secret> {
        todo!()
    }
    /// Creates a secret; `AlreadyExists` if the name is taken.
    pub async fn create_secret(
        &self,
        _at: &SecretLocation,
        _name: &str,
        _body: &SecretWrite,
    ) -> Result<()> {
        todo!()
    }
    /// Replaces a secret's data and roles.
    pub async fn update_secret(
        &self,
        _at: &SecretLocation,
        _name: &str,
        _body: &SecretWrite,
    ) -> Result<()> {
        todo!()
    }
    /// Deletes a secret; `NotFound` if it is not there.
    pub async fn delete_secret(&self, _at: &SecretLocation, _name: &str) -> Result<()> {
        todo!()
    }
    /// Searches secrets (no data in the answers); pages through.
    pub async fn search_secrets(
        &self,
        _keywords: &str,
        _filter: Option<&str>,
    ) -> Result<Vec<Secret>> {
        todo!()
    }

    // ---- roles ----

    /// Resolves role names to roles; names PrivX does not know are absent from the answer.
    pub async fn resolve_roles(&self, _names: &[String]) -> Result<Vec<Role>> {
        todo!()
    }
    /// All roles (pages through).
    pub async fn list_roles(&self) -> Result<Vec<Role>> {
        todo!()
    }
    /// One role by ID.
    pub async fn get_role(&self, _id: &str) -> Result<Role> {
        todo!()
    }

    // ---- password policies ----

    /// The generation the server speaks (configured, or detected once and remembered).
    pub async fn policy_generation(&self) -> Result<PolicyGeneration> {
        todo!()
    }
    pub async fn list_policies(&self) -> Result<Vec<PasswordPolicy>> {
        todo!()
    }
    pub async fn get_policy(&self, _id: &str) -> Result<PasswordPolicy> {
        todo!()
    }
    /// Creates a policy and returns its ID.
    pub async fn create_policy(&self, _policy: &PasswordPolicy) -> Result<String> {
        todo!()
    }
    pub async fn update_policy(&self, _id: &str, _policy: &PasswordPolicy) -> Result<()> {
        todo!()
    }
    pub async fn delete_policy(&self, _id: &str) -> Result<()> {
        todo!()
    }
}
