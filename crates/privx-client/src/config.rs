//! Client configuration: base URL, CA bundle, timeouts and the login — the four API-client
//! credentials (read from the environment or from files, `*_FILE`, never from command-line
//! arguments) or a token exchange (`auth`).

use std::path::PathBuf;
use std::time::Duration;

use super::PrivxError;

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
    /// Each value on its own: given directly or in a file (files are re-read when they change).
    Mixed {
        oauth_client_id: CredentialValue,
        oauth_client_secret: CredentialValue,
        api_client_id: CredentialValue,
        api_client_secret: CredentialValue,
    },
}

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct PrivxConfig {
    pub base_url: String,
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system roots.
    pub ca_only: bool,
    /// How the client logs in: the password grant or a token exchange.
    pub auth: crate::auth::AuthMethod,
    pub timeout: Duration,
    pub policy_generation: PolicyGenerationSetting,
    /// Retries of retryable failures per call (after the first attempt).
    pub max_retries: u32,
    /// First backoff between retries (doubles, with jitter).
    pub retry_base_delay: Duration,
    /// Requests in flight and per second, shared by every client built from this
    /// configuration or a clone of it.
    pub limit: crate::limit::Limit,
    /// One circuit breaker per PrivX service, shared like `limit`.
    pub breakers: crate::breaker::Breakers,
}

/// One credential value: given directly, or the path of a file that holds it. `Debug` never
/// shows a direct value.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialValue {
    Value(String),
    File(PathBuf),
}

impl std::fmt::Debug for CredentialValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Environment variable names of the credentials (those of PrivX's own SDK); each also has a
/// `*_FILE` variant. The operator's other settings are flags with their own variables.
pub const ENV_API_CLIENT_ID: &str = "PRIVX_API_CLIENT_ID";
pub const ENV_API_CLIENT_SECRET: &str = "PRIVX_API_CLIENT_SECRET";
pub const ENV_OAUTH_CLIENT_ID: &str = "PRIVX_API_OAUTH_CLIENT_ID";
pub const ENV_OAUTH_CLIENT_SECRET: &str = "PRIVX_API_OAUTH_CLIENT_SECRET";

/// Defaults of the settings that have one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(200);

impl CredentialSource {
    /// The API client ID as it is now (read from its file if it comes from one), trimmed.
    /// PrivX records it as the author of what this client creates.
    pub fn api_client_id(&self) -> Option<String> {
        match &self.values()[2] {
            CredentialValue::Value(v) => Some(v.trim().to_string()),
            CredentialValue::File(path) => std::fs::read_to_string(path)
                .ok()
                .map(|v| v.trim().to_string()),
        }
        .filter(|v| !v.is_empty())
    }

    /// All four values in a per-value form (whatever the variant).
    pub(crate) fn values(&self) -> [CredentialValue; 4] {
        match self {
            Self::Static(c) => [
                CredentialValue::Value(c.oauth_client_id.clone()),
                CredentialValue::Value(c.oauth_client_secret.clone()),
                CredentialValue::Value(c.api_client_id.clone()),
                CredentialValue::Value(c.api_client_secret.clone()),
            ],
            Self::Files {
                oauth_client_id,
                oauth_client_secret,
                api_client_id,
                api_client_secret,
            } => [
                CredentialValue::File(oauth_client_id.clone()),
                CredentialValue::File(oauth_client_secret.clone()),
                CredentialValue::File(api_client_id.clone()),
                CredentialValue::File(api_client_secret.clone()),
            ],
            Self::Mixed {
                oauth_client_id,
                oauth_client_secret,
                api_client_id,
                api_client_secret,
            } => [
                oauth_client_id.clone(),
                oauth_client_secret.clone(),
                api_client_id.clone(),
                api_client_secret.clone(),
            ],
        }
    }

    /// Reads the four credentials from the environment (`PRIVX_API_OAUTH_CLIENT_ID`,
    /// `PRIVX_API_OAUTH_CLIENT_SECRET`, `PRIVX_API_CLIENT_ID`, `PRIVX_API_CLIENT_SECRET`, each or
    /// its `*_FILE` variant). Files are only named here; they are read (and re-read when they
    /// change) by the client.
    pub fn from_env() -> Result<Self, PrivxError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, PrivxError> {
        let names = [
            ENV_OAUTH_CLIENT_ID,
            ENV_OAUTH_CLIENT_SECRET,
            ENV_API_CLIENT_ID,
            ENV_API_CLIENT_SECRET,
        ];
        let mut values = Vec::with_capacity(4);
        for name in names {
            values.push(env_value(lookup, name)?.ok_or_else(|| {
                PrivxError::Config(format!("{name} (or {name}_FILE) is not set"))
            })?);
        }
        let [
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        ]: [CredentialValue; 4] = values.try_into().expect("four values");
        Ok(Self::from_values(
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        ))
    }

    /// Picks the simplest variant that holds the four values.
    pub fn from_values(
        oauth_client_id: CredentialValue,
        oauth_client_secret: CredentialValue,
        api_client_id: CredentialValue,
        api_client_secret: CredentialValue,
    ) -> Self {
        use CredentialValue::{File, Value};
        match (
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        ) {
            (Value(a), Value(b), Value(c), Value(d)) => Self::Static(Credentials {
                oauth_client_id: a,
                oauth_client_secret: b,
                api_client_id: c,
                api_client_secret: d,
            }),
            (File(a), File(b), File(c), File(d)) => Self::Files {
                oauth_client_id: a,
                oauth_client_secret: b,
                api_client_id: c,
                api_client_secret: d,
            },
            (a, b, c, d) => Self::Mixed {
                oauth_client_id: a,
                oauth_client_secret: b,
                api_client_id: c,
                api_client_secret: d,
            },
        }
    }
}

/// `NAME` or `NAME_FILE`; both set is refused as ambiguous. Empty values count as unset.
fn env_value(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<CredentialValue>, PrivxError> {
    let file_name = format!("{name}_FILE");
    let direct = lookup(name).filter(|v| !v.is_empty());
    let file = lookup(&file_name).filter(|v| !v.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(PrivxError::Config(format!(
            "both {name} and {file_name} are set; set only one"
        ))),
        (Some(value), None) => Ok(Some(CredentialValue::Value(value))),
        (None, Some(path)) => Ok(Some(CredentialValue::File(PathBuf::from(path.trim())))),
        (None, None) => Ok(None),
    }
}

impl PrivxConfig {
    /// A configuration with defaults for everything but the URL and the credentials (the
    /// password grant).
    pub fn new(base_url: impl Into<String>, credentials: CredentialSource) -> Self {
        Self::with_auth(base_url, crate::auth::AuthMethod::Password(credentials))
    }

    /// A configuration with defaults for everything but the URL and the login.
    pub fn with_auth(base_url: impl Into<String>, auth: crate::auth::AuthMethod) -> Self {
        Self {
            base_url: base_url.into(),
            ca_file: None,
            ca_only: false,
            auth,
            timeout: DEFAULT_TIMEOUT,
            policy_generation: PolicyGenerationSetting::Auto,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
            limit: crate::limit::Limit::default(),
            breakers: crate::breaker::Breakers::default(),
        }
    }

    /// The base URL, checked: https, or plain http to a loopback host only; no query,
    /// fragment or user info. Trailing slashes are dropped.
    pub fn checked_base_url(&self) -> Result<url::Url, PrivxError> {
        let text = self.base_url.trim().trim_end_matches('/');
        let url = url::Url::parse(text)
            .map_err(|e| PrivxError::Config(format!("base URL {text:?} is not a URL: {e}")))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(PrivxError::Config(format!(
                "base URL {text:?} must not have a query or fragment"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(PrivxError::Config(
                "base URL must not carry user info; credentials come from the environment or files"
                    .into(),
            ));
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(PrivxError::Config(format!(
                    "base URL {text:?} uses plain http to a non-loopback host; use https"
                )));
            }
            other => {
                return Err(PrivxError::Config(format!(
                    "base URL {text:?} has scheme {other:?}; use https"
                )));
            }
        }
        if url.host().is_none() {
            return Err(PrivxError::Config(format!("base URL {text:?} has no host")));
        }
        Ok(url)
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl std::str::FromStr for PolicyGenerationSetting {
    type Err = PrivxError;
    fn from_str(s: &str) -> Result<Self, PrivxError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "v34" | "34" => Ok(Self::V34),
            "v35" | "35" => Ok(Self::V35),
            other => Err(PrivxError::Config(format!(
                "policy generation {other:?} is not one of auto, v34, v35"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const ALL_VALUES: [(&str, &str); 4] = [
        (ENV_OAUTH_CLIENT_ID, "privx-external"),
        (ENV_OAUTH_CLIENT_SECRET, "oauth-s3cret"),
        (ENV_API_CLIENT_ID, "api-id"),
        (ENV_API_CLIENT_SECRET, "api-s3cret"),
    ];

    #[test]
    fn values_from_the_environment_are_static_and_redacted() {
        let source = CredentialSource::from_lookup(&lookup(&ALL_VALUES)).unwrap();
        assert!(
            matches!(&source, CredentialSource::Static(c) if c.api_client_secret == "api-s3cret")
        );
        let config = PrivxConfig::new("https://privx.example.com", source);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.policy_generation, PolicyGenerationSetting::Auto);
    }

    #[test]
    fn file_variants_are_named_not_read() {
        let vars = [
            ("PRIVX_API_OAUTH_CLIENT_ID_FILE", "/s/oid"),
            ("PRIVX_API_OAUTH_CLIENT_SECRET_FILE", "/s/osecret"),
            ("PRIVX_API_CLIENT_ID_FILE", "/s/id"),
            ("PRIVX_API_CLIENT_SECRET_FILE", "/s/secret"),
        ];
        let source = CredentialSource::from_lookup(&lookup(&vars)).unwrap();
        assert!(
            matches!(&source, CredentialSource::Files { api_client_secret, .. } if api_client_secret == &PathBuf::from("/s/secret"))
        );
    }

    #[test]
    fn mixed_sources_keep_each_value_where_it_is() {
        let vars = [
            (ENV_OAUTH_CLIENT_ID, "privx-external"),
            ("PRIVX_API_OAUTH_CLIENT_SECRET_FILE", "/s/osecret"),
            (ENV_API_CLIENT_ID, "api-id"),
            ("PRIVX_API_CLIENT_SECRET_FILE", "/s/secret"),
        ];
        let source = CredentialSource::from_lookup(&lookup(&vars)).unwrap();
        let values = source.values();
        assert_eq!(values[0], CredentialValue::Value("privx-external".into()));
        assert_eq!(values[3], CredentialValue::File("/s/secret".into()));
        assert!(matches!(source, CredentialSource::Mixed { .. }));
    }

    #[test]
    fn missing_or_ambiguous_settings_name_the_variable() {
        let err = CredentialSource::from_lookup(&lookup(&ALL_VALUES[..3])).unwrap_err();
        assert!(err.to_string().contains(ENV_API_CLIENT_SECRET), "{err}");
        let mut vars = ALL_VALUES.to_vec();
        vars.push(("PRIVX_API_CLIENT_SECRET_FILE", "/x"));
        let err = CredentialSource::from_lookup(&lookup(&vars)).unwrap_err();
        assert!(
            err.to_string().contains("PRIVX_API_CLIENT_SECRET_FILE"),
            "{err}"
        );
        assert!(!err.to_string().contains("api-s3cret"));
    }

    #[test]
    fn base_url_rules() {
        let check = |url: &str| {
            PrivxConfig::new(
                url,
                CredentialSource::from_lookup(&lookup(&ALL_VALUES)).unwrap(),
            )
            .checked_base_url()
        };
        assert!(check("https://privx.example.com/").is_ok());
        assert!(check("https://privx.example.com/prefix").is_ok());
        assert!(check("http://127.0.0.1:8443").is_ok());
        assert!(check("http://[::1]:8443").is_ok());
        assert!(check("http://localhost:8443").is_ok());
        assert!(check("http://privx.example.com").is_err());
        assert!(check("http://10.0.0.1").is_err());
        assert!(check("ftp://privx.example.com").is_err());
        assert!(check("https://user:pw@privx.example.com").is_err());
        assert!(check("https://privx.example.com/?x=1").is_err());
        assert!(check("privx.example.com").is_err());
    }
}
