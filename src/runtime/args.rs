//! Flags and environment variables of `privx-operator run`. Every flag also reads the
//! environment variable named in its help; PrivX credentials are never flags (they come from
//! the environment or from files, see `privx::config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use crate::identity::flags::{AuthArgs, AuthMode, EdAlgNameArg};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which generation of PrivX's password-policy API to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicyGenerationArg {
    /// Find out from the server once, then remember.
    Auto,
    /// PrivX 34 and older (Go durations, fallbackToPrevious, deleteVersionAfter).
    V34,
    /// PrivX 35 and newer (ISO 8601 durations, checkout settings).
    V35,
}

/// A controller `--controllers` can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ControllerName {
    #[value(name = "vaultsecret")]
    VaultSecret,
    #[value(name = "passwordpolicy")]
    PasswordPolicy,
}

/// Default of `--concurrency` (docs/configuration.md gives the measurements it comes from).
pub const DEFAULT_CONCURRENCY: u16 = 16;

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{s:?} is not a number of requests per second (0 or more)"
        )),
    }
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::crd::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Arguments of `privx-operator run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// PrivX base URL (https; plain http only for loopback addresses).
    #[arg(long, env = "PRIVX_API_BASE_URL", value_name = "URL")]
    pub privx_url: Option<String>,

    /// PEM bundle of CA certificates PrivX's certificate is checked against (re-read when it changes).
    #[arg(long, env = "PRIVX_CA_FILE", value_name = "FILE")]
    pub privx_ca_file: Option<PathBuf>,

    /// Trust only the --privx-ca-file bundle, not the system's roots.
    #[arg(long, env = "PRIVX_CA_ONLY", requires = "privx_ca_file")]
    pub privx_ca_only: bool,

    /// Timeout of one PrivX request.
    #[arg(long, env = "PRIVX_TIMEOUT", default_value = "30s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub privx_timeout: Duration,

    /// PrivX password-policy API generation.
    #[arg(
        long,
        env = "PRIVX_POLICY_GENERATION",
        value_enum,
        default_value = "auto"
    )]
    pub privx_policy_generation: PolicyGenerationArg,

    /// PrivX roles added to the read and write roles of every secret the operator writes so
    /// that it can read back and update them: `auto` (the roles PrivX says the operator holds
    /// that carry a vault permission) or comma-separated names (checked against PrivX).
    #[arg(
        long,
        env = "PRIVX_OPERATOR_SELF_ROLES",
        value_delimiter = ',',
        value_name = "auto|ROLE,...",
        default_value = "auto"
    )]
    pub privx_self_roles: Vec<String>,

    /// How the operator logs in to PrivX.
    #[command(flatten)]
    pub auth: AuthArgs,

    /// Template of default PrivX secret names; must contain {namespace} before {name}.
    #[arg(
        long,
        env = "PRIVX_OPERATOR_NAME_TEMPLATE",
        default_value = "k8s/{namespace}/{name}"
    )]
    pub name_template: String,

    /// Namespaces to watch, comma-separated (default: all).
    #[arg(
        long,
        env = "PRIVX_OPERATOR_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS,..."
    )]
    pub namespaces: Vec<String>,

    /// Which controllers run, comma-separated: `vaultsecret`, `passwordpolicy` (default: both).
    /// A release that runs only VaultSecrets still reads PasswordPolicies (generated passwords
    /// follow one).
    #[arg(
        long,
        env = "PRIVX_OPERATOR_CONTROLLERS",
        value_delimiter = ',',
        default_value = "vaultsecret,passwordpolicy",
        value_name = "NAME,..."
    )]
    pub controllers: Vec<ControllerName>,

    /// Label selector (`kubectl -l` syntax) of the VaultSecrets and PasswordPolicies this
    /// release reconciles (default: all); with it, several releases share one cluster.
    #[arg(long, env = "PRIVX_OPERATOR_SELECTOR", value_name = "SELECTOR")]
    pub selector: Option<crate::runtime::selector::LabelSelector>,

    /// The operator's own namespace (its Lease and HMAC-key Secret live there).
    #[arg(long, env = "POD_NAMESPACE", value_name = "NS")]
    pub operator_namespace: Option<String>,

    /// Name of the Secret (in the operator's namespace) holding the key of the data hashes.
    #[arg(
        long,
        env = "PRIVX_OPERATOR_HMAC_SECRET",
        default_value = "privx-operator-hmac"
    )]
    pub hmac_secret_name: String,

    /// Address of the HTTP listener for /livez, /readyz and /metrics.
    #[arg(long, env = "PRIVX_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log format.
    #[arg(
        long,
        env = "PRIVX_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. info, debug, privx_operator=debug).
    #[arg(long, env = "PRIVX_OPERATOR_LOG", default_value = "info")]
    pub log_level: String,

    /// Elect a leader through a Lease so that only one replica reconciles (needed with replicas > 1).
    #[arg(long, env = "PRIVX_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(
        long,
        env = "PRIVX_OPERATOR_LEASE_NAME",
        default_value = "privx-operator-leader"
    )]
    pub lease_name: String,

    /// How long a Lease is valid without renewal; a standby takes over after it.
    #[arg(long, env = "PRIVX_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = parse_duration_arg)]
    pub lease_duration: Duration,

    /// Restart listed workloads when mirrored data changes (needs RBAC on deployments, statefulsets, daemonsets).
    #[arg(long, env = "PRIVX_OPERATOR_ROLLOUT_RESTART", default_value_t = true, action = clap::ArgAction::Set)]
    pub rollout_restart: bool,

    /// Restart requests for one workload within this window (from several VaultSecrets) become one restart; a workload is never restarted twice within it.
    #[arg(long, env = "PRIVX_OPERATOR_ROLLOUT_RESTART_DEBOUNCE", default_value = "5s", value_parser = parse_duration_arg)]
    pub rollout_restart_debounce: Duration,

    /// Reconciles running at once per controller.
    #[arg(long, env = "PRIVX_OPERATOR_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: u16,

    /// PrivX requests in flight at once, shared by every worker of both controllers (retries
    /// and token requests included); 0 for no bound.
    #[arg(long, env = "PRIVX_OPERATOR_PRIVX_MAX_CONCURRENCY", default_value_t = privx_client::limit::DEFAULT_MAX_CONCURRENCY, value_name = "N")]
    pub privx_max_concurrency: usize,

    /// PrivX requests per second on average, shared like --privx-max-concurrency; 0 for no limit.
    #[arg(long, env = "PRIVX_OPERATOR_PRIVX_RATE_LIMIT", default_value_t = privx_client::limit::DEFAULT_RATE, value_parser = parse_rate, value_name = "PER_SECOND")]
    pub privx_rate_limit: f64,

    /// PrivX requests that may start at once above the rate after a quiet period (at least 1).
    #[arg(long, env = "PRIVX_OPERATOR_PRIVX_RATE_BURST", default_value_t = privx_client::limit::DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub privx_rate_burst: u32,

    /// Try-it mode: start the PrivX simulator in-process with the demo seed, use it as PrivX, and
    /// apply the CRDs if missing.
    #[arg(long)]
    pub embedded_privx: bool,

    /// Listen address of the embedded simulator.
    #[arg(long, default_value = "127.0.0.1:8443", requires = "embedded_privx")]
    pub embedded_privx_addr: SocketAddr,
}
