//! Client configuration: base URL, CA bundle, timeouts and the four API-client credentials,
//! read from the environment or from files (`*_FILE`), never from command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

/// The password-policy generation setting (`auto` detects once and remembers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyGenerationSetting {
    #[default]
    Auto,
    V34,
    V35,
}

/// The four values of a PrivX API client's credentials page. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    pub api_client_id: String,
    pub api_client_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"<redacted>")
            .field("api_client_id", &self.api_client_id)
            .field("api_client_secret", &"<redacted>")
            .finish()
    }
}

/// Where credentials come from. `Files` re-reads them when they change (mounted Secrets).
#[derive(Clone, Debug)]
pub enum CredentialSource {
    Static(Credentials),
    /// Paths of the four files (oauth client id, oauth client secret, api client id, api client secret).
    Files {
        oauth_client_id: PathBuf,
        oauth_client_secret: PathBuf,
        api_client_id: PathBuf,
        api_client_secret: PathBuf,
    },
}

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct PrivxConfig {
    pub base_url: String,
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system roots.
    pub ca_only: bool,
    pub credentials: CredentialSource,
    pub timeout: Duration,
    pub policy_generation: PolicyGenerationSetting,
    /// Retries of retryable failures per call (after the first attempt).
    pub max_retries: u32,
    /// First backoff between retries (doubles, with jitter).
    pub retry_base_delay: Duration,
}
