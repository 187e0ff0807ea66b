//! The PrivX simulator: an in-memory PrivX API server over real HTTP(S) on loopback, which the
//! operator's tests, demos and benchmarks run against (`docs/simulator.md`).
//!
//! It owns `crates/privx-sim/**` only (see its README.md). It deliberately does not use the
//! operator's PrivX client, wire model or CRD types, so that it checks them instead of sharing
//! their mistakes. Where PrivX's
//! behaviour is unknown it picks one answer, documents it, and offers the others as options.

mod admin;
mod error;
mod fault;
mod jwt;
mod policy;
mod routes;
mod seed;
mod server;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use fault::{Fault, FaultParseError, parse_fault};
pub use seed::{
    Seed, SeedApiClient, SeedError, SeedIssuer, SeedPolicy, SeedRole, SeedSecret, SeedSubject,
    SeedUser, demo, demo_seed, load_seed,
};
pub use server::{SimCredentials, Simulator};
pub use state::{EndpointCounter, LoggedRequest};

pub use routes::READ_ONLY_POSTS;

/// Largest request body the simulator accepts (larger: 413).
pub const MAX_BODY_BYTES: usize = routes::MAX_BODY_BYTES;

/// Which generation of the password-policy API the simulator serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SimPolicyGeneration {
    /// PrivX 34: Go durations, `delete_version_after`, `fallback_to_previous`.
    V34,
    /// PrivX 35 and newer: ISO 8601 durations, checkout settings. The default: the vendor's Go
    /// SDK models only this generation, so it is what current PrivX speaks.
    #[default]
    V35,
}

/// What reading a secret the caller may see (vault-manage, write role) but not read answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UnreadableSecret {
    /// 200 with the secret's metadata and no `data` (what PrivX is reported to do).
    #[default]
    OmitData,
    /// 403 PERMISSION_DENIED.
    Forbidden,
}

/// What `count` means in paged answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListCount {
    /// The total number of matching items (PrivX's examples read it so).
    #[default]
    Total,
    /// The number of items in this page.
    PageSize,
}

/// The shape of `GET /password-policies`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyListShape {
    /// `{"count": N, "items": [...]}`.
    #[default]
    Object,
    /// `[{"count": N, "items": [...]}]`, as the vendor page draws it.
    WrappedInArray,
}

/// What a password-policy write does with a field the served generation lacks (the other
/// generation's, or one no generation has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyUnknownFields {
    /// 400 `INVALID_REQUEST_DATA` naming the field: checks that a client sends only its
    /// generation's fields.
    #[default]
    Refuse,
    /// Dropped unstored, as Go's JSON decoder does by default (the vendor's Go SDK sends every
    /// v35 field, also to a v34 server).
    Ignore,
}

/// How policy answers show a field of the served generation that no write has set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyUnsetFields {
    /// Every field of the generation is answered; unset ones with their zero value (`0`,
    /// `false`, `""` for durations), as a server marshalling a Go struct would. The vendor's
    /// Go SDK reads such an answer and writes it back unchanged.
    #[default]
    Zero,
    /// Unset fields are left out of answers.
    Omit,
}

/// How to start a [`Simulator`].
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Address to bind; port 0 picks a free port (see [`Simulator::base_url`]).
    pub listen: SocketAddr,
    pub seed: Seed,
    /// Serve HTTPS with a generated self-signed certificate for 127.0.0.1 / localhost.
    pub tls: bool,
    /// Further host names the certificate is valid for (a PrivX host name resolved through
    /// `/etc/hosts`, as the image test uses).
    pub tls_names: Vec<String>,
    /// Lifetime of granted tokens (`expires_in`).
    pub token_lifetime: Duration,
    /// Status of "name already exists": 400 (VALUE_DUPLICATE) or 409.
    pub duplicate_status: u16,
    pub policy_generation: SimPolicyGeneration,
    /// Whether `/status` answers carry `version` and `app_version`.
    pub report_version: bool,
    pub faults: Vec<Fault>,
    pub unreadable_secret: UnreadableSecret,
    pub list_count: ListCount,
    pub policy_list_shape: PolicyListShape,
    /// PUT of a policy answers 200 with an empty body instead of the policy.
    pub policy_put_empty_body: bool,
    /// Policy names must be unique (VALUE_DUPLICATE otherwise).
    pub policy_unique_names: bool,
    /// Policy durations are stored in the generation's canonical spelling (`720h` reads back
    /// `720h0m0s`) instead of as written.
    pub policy_normalise_durations: bool,
    /// Error code of deleting a policy in use (always status 400).
    pub policy_in_use_code: String,
    /// Refuse or ignore policy fields the served generation lacks.
    pub policy_unknown_fields: PolicyUnknownFields,
    /// Answer unset policy fields with zero values, or leave them out.
    pub policy_unset_fields: PolicyUnsetFields,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: demo_seed(),
            tls: false,
            tls_names: Vec::new(),
            token_lifetime: Duration::from_secs(30 * 60),
            duplicate_status: 400,
            policy_generation: SimPolicyGeneration::V35,
            report_version: true,
            faults: Vec::new(),
            unreadable_secret: UnreadableSecret::OmitData,
            list_count: ListCount::Total,
            policy_list_shape: PolicyListShape::Object,
            policy_put_empty_body: false,
            policy_unique_names: true,
            policy_normalise_durations: false,
            policy_in_use_code: "INVALID_REQUEST_DATA".to_string(),
            policy_unknown_fields: PolicyUnknownFields::Refuse,
            policy_unset_fields: PolicyUnsetFields::Zero,
        }
    }
}

fn parse_lifetime(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    policy::parse_go_duration(text)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is not a duration (examples: 30m, 90s, 1h, 600)"))
}

fn parse_duplicate_status(text: &str) -> Result<u16, String> {
    match text {
        "400" => Ok(400),
        "409" => Ok(409),
        _ => Err(format!("{text:?}: expected 400 or 409")),
    }
}

/// Arguments of `privx-operator sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Seed file (YAML); the demo seed when absent.
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// Serve HTTPS with a generated self-signed certificate for 127.0.0.1 and localhost.
    #[arg(long)]
    pub tls: bool,
    /// Write the generated certificate (PEM) here; with --tls only.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca_out: Option<PathBuf>,
    /// A further host name the certificate is valid for (repeatable); with --tls only.
    #[arg(long = "tls-name", value_name = "HOST", requires = "tls")]
    pub tls_names: Vec<String>,
    /// Lifetime of granted tokens (30m, 90s, 1h, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_lifetime)]
    pub token_lifetime: Duration,
    /// Status of creating a name that exists: 400 (VALUE_DUPLICATE) or 409.
    #[arg(long, value_name = "400|409", default_value = "400", value_parser = parse_duplicate_status)]
    pub duplicate_status: u16,
    /// Password-policy API generation to serve.
    #[arg(long, value_enum, default_value = "v35")]
    pub policy_generation: SimPolicyGeneration,
    /// Leave `version` and `app_version` out of the /status answers.
    #[arg(long)]
    pub no_version: bool,
    /// Inject a fault: `[METHOD ]ROUTE=STATUS|drop|ok[:CODE][@RATE][,next=N][,latency=MS][,retry-after=S]`.
    /// Repeatable.
    #[arg(long = "fault", value_name = "FAULT", value_parser = parse_fault)]
    pub faults: Vec<Fault>,
    /// What reading a visible but unreadable secret answers.
    #[arg(long, value_enum, default_value = "omit-data")]
    pub unreadable_secret: UnreadableSecret,
    /// What `count` means in paged answers.
    #[arg(long, value_enum, default_value = "total")]
    pub list_count: ListCount,
    /// Shape of the password-policy list.
    #[arg(long, value_enum, default_value = "object")]
    pub policy_list_shape: PolicyListShape,
    /// PUT of a password policy answers an empty body.
    #[arg(long)]
    pub policy_put_empty_body: bool,
    /// Allow several password policies with the same name.
    #[arg(long)]
    pub policy_duplicate_names: bool,
    /// Store policy durations in the generation's canonical spelling.
    #[arg(long)]
    pub policy_normalise_durations: bool,
    /// Error code of deleting a password policy in use.
    #[arg(long, value_name = "CODE", default_value = "INVALID_REQUEST_DATA")]
    pub policy_in_use_code: String,
    /// What a password-policy write does with a field the served generation lacks.
    #[arg(long, value_enum, default_value = "refuse")]
    pub policy_unknown_fields: PolicyUnknownFields,
    /// How password-policy answers show fields no write has set.
    #[arg(long, value_enum, default_value = "zero")]
    pub policy_unset_fields: PolicyUnsetFields,
}

impl SimArgs {
    /// The options these arguments describe (reads the seed file).
    pub fn options(&self) -> anyhow::Result<SimOptions> {
        let seed = match &self.seed {
            Some(path) => load_seed(path)?,
            None => demo_seed(),
        };
        Ok(SimOptions {
            listen: self.listen,
            seed,
            tls: self.tls,
            tls_names: self.tls_names.clone(),
            token_lifetime: self.token_lifetime,
            duplicate_status: self.duplicate_status,
            policy_generation: self.policy_generation,
            report_version: !self.no_version,
            faults: self.faults.clone(),
            unreadable_secret: self.unreadable_secret,
            list_count: self.list_count,
            policy_list_shape: self.policy_list_shape,
            policy_put_empty_body: self.policy_put_empty_body,
            policy_unique_names: !self.policy_duplicate_names,
            policy_normalise_durations: self.policy_normalise_durations,
            policy_in_use_code: self.policy_in_use_code.clone(),
            policy_unknown_fields: self.policy_unknown_fields,
            policy_unset_fields: self.policy_unset_fields,
        })
    }
}

/// `privx-operator sim`: start, print one JSON line of connection settings on stdout, serve
/// until Ctrl-C or SIGTERM. Logs go to stderr.
pub async fn main(args: SimArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let options = args.options()?;
    let simulator = Simulator::start(options).await?;
    let credentials = simulator.credentials();
    let mut line = serde_json::json!({
        "PRIVX_API_BASE_URL": simulator.base_url(),
        "PRIVX_API_OAUTH_CLIENT_ID": credentials.oauth_client_id,
        "PRIVX_API_OAUTH_CLIENT_SECRET": credentials.oauth_client_secret,
        "PRIVX_API_CLIENT_ID": credentials.api_client_id,
        "PRIVX_API_CLIENT_SECRET": credentials.api_client_secret,
    });
    if let (Some(path), Some(pem)) = (&args.ca_out, simulator.ca_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
        line["PRIVX_CA_FILE"] = serde_json::json!(path.display().to_string());
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    wait_for_stop_signal().await;
    tracing::info!("stopping the simulator");
    simulator.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
