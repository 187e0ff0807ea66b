//! The end-to-end harness: one real cluster (named by `PRIVX_OPERATOR_E2E_CONTEXT`, never the
//! current context by default), the real `privx-operator` binary run out of cluster, and the real
//! PrivX simulator as a child process.
//!
//! Owns per-test setup and teardown: CRDs applied and established, a fresh namespace, the
//! simulator and operator processes, and the cleanup of everything it created (also when a test
//! fails). Must not assert behaviour itself: the tests in `tests/e2e.rs` do.
//!
//! With [`OperatorAuth::ServiceAccountToken`] the operator has no static credentials at all:
//! `service_account.rs` gives it a ServiceAccount with the chart's RBAC and a simulator that
//! trusts the cluster's service-account issuer.
//!
//! Tests run one at a time (a process-wide lock): PasswordPolicies are cluster-scoped, and every
//! test's operator watches all of them, so two operators at once would fight over them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::core::NamespaceResourceScope;
use kube::{Client, Config, Resource};
use privx_client::config::CredentialSource;
use privx_client::{Credentials, PrivxClient, PrivxConfig, SecretLocation};
use privx_operator::crd::{PasswordPolicy, VaultSecret};
use privx_sim::demo;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "service_account.rs"]
pub mod service_account;

/// How the operator process authenticates, to Kubernetes and to PrivX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAuth {
    /// The suite's kubeconfig user; PrivX's password grant with the API client's four
    /// credentials, `--privx-self-roles privx-operator`.
    Password,
    /// A ServiceAccount of the test's namespace with the chart's RBAC (its token in the
    /// kubeconfig); PrivX by token exchange of a TokenRequest token of that ServiceAccount;
    /// self roles `auto`. No PrivX credential anywhere.
    ServiceAccountToken,
}

/// Names the kube context the suite runs against.
pub const CONTEXT_VAR: &str = "PRIVX_OPERATOR_E2E_CONTEXT";
/// Field manager of everything the suite applies.
const FIELD_MANAGER: &str = "privx-operator-e2e";
/// Label on cluster-scoped objects a test creates, naming the test's namespace (for cleanup).
pub const E2E_LABEL: &str = "privx-operator.dev/e2e-namespace";
/// The demo seed's API secret of `someone-else` (docs/simulator.md, "The demo seed").
const SOMEONE_ELSE_API_CLIENT_SECRET: &str = "sim-someone-else-api-client-secret";
/// How long any eventual outcome may take.
pub const TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(500);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Why the suite cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "{CONTEXT_VAR} is not set: the end-to-end tests need a real cluster and never pick the current kube context on their own. Name the context to use, e.g. `{CONTEXT_VAR}=kind-privx-e2e cargo test --test e2e -- --ignored --test-threads=1` (see docs/testing.md)"
    )]
    ContextNotSet,
    #[error("{CONTEXT_VAR} is empty: set it to the name of a kube context (see docs/testing.md)")]
    ContextEmpty,
    #[error("{CONTEXT_VAR} is not valid UTF-8")]
    ContextNotUnicode,
    #[error("kube context {context:?} ({CONTEXT_VAR}) is not in the kubeconfig")]
    UnknownContext { context: String },
    #[error("kube context {context:?} refers to {what} {name:?}, which the kubeconfig lacks")]
    DanglingReference {
        context: String,
        what: &'static str,
        name: String,
    },
    #[error("reading the kubeconfig for context {context:?}: {source}")]
    Kubeconfig {
        context: String,
        #[source]
        source: KubeconfigError,
    },
}

/// The kube context named by `value` (the content of [`CONTEXT_VAR`]).
pub fn context_from(value: Option<OsString>) -> Result<String, SetupError> {
    let value = value.ok_or(SetupError::ContextNotSet)?;
    let value = value
        .into_string()
        .map_err(|_| SetupError::ContextNotUnicode)?;
    if value.trim().is_empty() {
        return Err(SetupError::ContextEmpty);
    }
    Ok(value)
}

/// The kube context named by the environment.
pub fn required_context() -> Result<String, SetupError> {
    context_from(std::env::var_os(CONTEXT_VAR))
}

/// A kubeconfig holding only `context`, its cluster and its user, with `context` current: what
/// the operator process gets, since it always uses the current context.
pub fn kubeconfig_for_context(full: &Kubeconfig, context: &str) -> Result<Kubeconfig, SetupError> {
    let named = full
        .contexts
        .iter()
        .find(|c| c.name == context)
        .ok_or_else(|| SetupError::UnknownContext {
            context: context.into(),
        })?;
    let dangling = |what, name: &str| SetupError::DanglingReference {
        context: context.into(),
        what,
        name: name.into(),
    };
    let ctx = named
        .context
        .as_ref()
        .ok_or_else(|| dangling("a cluster", ""))?;
    let cluster = full
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .ok_or_else(|| dangling("cluster", &ctx.cluster))?;
    let users = match &ctx.user {
        Some(user) => vec![
            full.auth_infos
                .iter()
                .find(|u| &u.name == user)
                .ok_or_else(|| dangling("user", user))?
                .clone(),
        ],
        None => Vec::new(),
    };
    Ok(Kubeconfig {
        clusters: vec![cluster.clone()],
        auth_infos: users,
        contexts: vec![named.clone()],
        current_context: Some(context.into()),
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        ..Default::default()
    })
}

/// Polls `probe` until it returns `Ok`, or panics after `TIMEOUT` with its last `Err` (which
/// must describe what was seen without secret values).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {TIMEOUT:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One request in the simulator's log (`GET /_sim/requests`). Its `is_write` is the simulator's
/// own: a 2xx `POST`, `PUT` or `DELETE` other than the read-only POSTs the simulator lists
/// (`privx_sim::READ_ONLY_POSTS`: token grants, searches, role lookups). Refused and failed
/// requests changed nothing and are not writes.
pub use privx_sim::LoggedRequest;

/// The PrivX writes of `client_id` in a request log.
pub fn writes_of(log: Vec<LoggedRequest>, client_id: &str) -> Vec<LoggedRequest> {
    log.into_iter()
        .filter(|r| r.client_id.as_deref() == Some(client_id) && r.is_write())
        .collect()
}

/// The simulator child process.
pub struct Simulator {
    child: Child,
    pub base_url: String,
    /// The `PRIVX_API_*` values of its one JSON line (the operator's credentials).
    env: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl Simulator {
    /// Starts `privx-operator sim`, with the seed file `seed` (the demo seed when `None`).
    pub async fn start(log: &Path, seed: Option<&Path>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_privx-operator"))
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(
                seed.map(|s| [OsString::from("--seed"), s.into()])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(log))
            .kill_on_drop(true)
            .spawn()
            .expect("starting `privx-operator sim`");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the simulator prints its JSON line within 30s")
        .expect("reading the simulator's stdout");
        let env: BTreeMap<String, String> = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("the simulator's first line is not the JSON object of PRIVX_API_* values: {e}")
        });
        let base_url = env
            .get("PRIVX_API_BASE_URL")
            .expect("PRIVX_API_BASE_URL in the simulator's line")
            .clone();
        Self {
            child,
            base_url,
            env,
            http: reqwest::Client::new(),
        }
    }

    /// A PrivX client acting as the demo seed's `someone-else` (a human admin behind the
    /// operator's back; holds the `privx-operator` role too, so it can read what the operator writes).
    pub fn someone_else(&self) -> PrivxClient {
        let mut config = PrivxConfig::new(
            self.base_url.clone(),
            CredentialSource::Static(Credentials {
                oauth_client_id: demo::OAUTH_CLIENT_ID.into(),
                oauth_client_secret: self.env["PRIVX_API_OAUTH_CLIENT_SECRET"].clone(),
                api_client_id: demo::SOMEONE_ELSE_CLIENT_ID.into(),
                api_client_secret: SOMEONE_ELSE_API_CLIENT_SECRET.into(),
            }),
        );
        config.max_retries = 1;
        PrivxClient::new(config).expect("PrivX client for someone-else")
    }

    /// The request log, oldest first.
    pub async fn requests(&self) -> Vec<LoggedRequest> {
        self.http
            .get(format!("{}/_sim/requests", self.base_url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /_sim/requests")
            .json()
            .await
            .expect("request log JSON")
    }

    pub async fn clear_requests(&self) {
        self.http
            .delete(format!("{}/_sim/requests", self.base_url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("DELETE /_sim/requests");
    }

    /// Requests the operator's API client made that changed PrivX ([`writes_of`]).
    pub async fn operator_writes(&self) -> Vec<LoggedRequest> {
        writes_of(self.requests().await, demo::OPERATOR_CLIENT_ID)
    }
}

/// The operator child process (`privx-operator run`, out of cluster).
struct Operator {
    child: Option<Child>,
    kubeconfig: PathBuf,
    log: PathBuf,
    namespace: String,
    privx_url: String,
    privx_env: BTreeMap<String, String>,
    http_port: u16,
    http: reqwest::Client,
    auth: OperatorAuth,
}

impl Operator {
    /// Starts the process and waits until `/readyz` answers 200.
    async fn start(&mut self) {
        // `--http-addr 127.0.0.1:0` would bind, but the port is only logged: pick one instead.
        self.http_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_privx-operator"));
        command
            .arg("run")
            .args(["--privx-url", &self.privx_url])
            .args(["--operator-namespace", &self.namespace])
            .args(["--namespaces", &self.namespace])
            // Only this test's objects: PasswordPolicies are cluster-scoped, and a cluster may
            // hold others (another release's, or a previous run's) that must be left alone.
            .args(["--selector", &format!("{E2E_LABEL}={}", self.namespace)])
            .args(["--http-addr", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--log-level", "info,privx_operator=debug"])
            .stdin(Stdio::null())
            .stdout(log_file(&self.log))
            .stderr(log_file(&self.log))
            .kill_on_drop(true);
        // Only what this harness sets: no PRIVX_* or POD_* from the caller's shell.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("PRIVX_") || key.starts_with("POD_") {
                command.env_remove(key.as_ref());
            }
        }
        command.env("KUBECONFIG", &self.kubeconfig);
        match self.auth {
            OperatorAuth::Password => {
                command.args(["--privx-self-roles", "privx-operator"]);
                command.envs(
                    self.privx_env
                        .iter()
                        .filter(|(k, _)| k.starts_with("PRIVX_API_")),
                );
            }
            // TokenRequest for its own ServiceAccount; self roles auto; no PRIVX_API_*.
            OperatorAuth::ServiceAccountToken => {
                command
                    .args(["--privx-auth-mode", "service-account-token"])
                    .args(["--service-account", service_account::SERVICE_ACCOUNT])
                    .args(["--privx-token-audience", service_account::AUDIENCE]);
            }
        }
        self.child = Some(command.spawn().expect("starting `privx-operator run`"));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the operator exited before it was ready ({status}); its log:\n{}",
                    tail(&self.log, 40)
                );
            }
            match self.http.get(&url).send().await {
                Ok(answer) if answer.status().is_success() => return,
                _ if tokio::time::Instant::now() >= deadline => panic!(
                    "the operator was not ready after {TIMEOUT:?}; its log:\n{}",
                    tail(&self.log, 40)
                ),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Kills the process at once (SIGKILL: a crash, the hardest kind of restart).
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Completed reconciles of one controller (`vaultsecret` or `passwordpolicy`) since start.
    async fn reconciles(&self, controller: &str) -> u64 {
        let text = self
            .http
            .get(format!("http://127.0.0.1:{}/metrics", self.http_port))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("GET /metrics of the operator")
            .text()
            .await
            .expect("metrics text");
        let series = format!("privx_operator_reconciles_total{{controller=\"{controller}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map(|value| value.trim().parse().expect("a counter value"))
            .unwrap_or(0)
    }
}

/// One test's world: a fresh namespace, a simulator and an operator. Dropping it cleans up.
pub struct E2e {
    pub ns: String,
    pub client: Client,
    pub sim: Simulator,
    /// PrivX as the demo seed's `someone-else`.
    pub someone_else: PrivxClient,
    operator: Operator,
    config: Config,
    workdir: PathBuf,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl E2e {
    /// Sets everything up; panics with a clear message when the cluster is not configured.
    pub async fn start() -> Self {
        Self::start_with(OperatorAuth::Password).await
    }

    /// As [`E2e::start`], the operator authenticating as `auth` says.
    pub async fn start_with(auth: OperatorAuth) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let context = required_context().unwrap_or_else(|e| panic!("{e}"));
        let serial = SERIAL.lock().await;
        let config = Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|source| {
            panic!(
                "{}",
                SetupError::Kubeconfig {
                    context: context.clone(),
                    source
                }
            )
        });
        let client = Client::try_from(config.clone()).expect("kube client");
        client.apiserver_version().await.unwrap_or_else(|e| {
            panic!("the cluster of kube context {context:?} does not answer: {e}")
        });
        apply_crds(&client).await;

        let ns = format!("privx-e2e-{:08x}", rand::random::<u32>());
        let workdir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&workdir).expect("creating the test's work directory");
        let kubeconfig = workdir.join("kubeconfig");
        let seed = match auth {
            OperatorAuth::Password => None,
            OperatorAuth::ServiceAccountToken => {
                let issuer = service_account::cluster_issuer(&client).await;
                let path = workdir.join("seed.json");
                let seed = service_account::seed_trusting(&issuer, &ns);
                std::fs::write(&path, serde_json::to_vec(&seed).expect("seed JSON"))
                    .expect("writing the simulator's seed");
                Some(path)
            }
        };
        let sim = Simulator::start(&workdir.join("simulator.log"), seed.as_deref()).await;
        let someone_else = sim.someone_else();
        // Last before `Self` exists: from here on, `Drop` cleans up.
        create_namespace(&client, &ns).await;
        let token = match auth {
            OperatorAuth::Password => None,
            OperatorAuth::ServiceAccountToken => {
                Some(service_account::create_identity(&client, &ns, E2E_LABEL).await)
            }
        };
        write_kubeconfig(&kubeconfig, &context, token.as_deref());
        let operator = Operator {
            child: None,
            kubeconfig,
            log: workdir.join("operator.log"),
            namespace: ns.clone(),
            privx_url: sim.base_url.clone(),
            privx_env: sim.env.clone(),
            http_port: 0,
            http: reqwest::Client::new(),
            auth,
        };
        let mut e2e = Self {
            ns,
            client,
            sim,
            someone_else,
            operator,
            config,
            workdir,
            _serial: serial,
        };
        e2e.operator.start().await;
        e2e
    }

    /// `k8s/<namespace>/<name>`: the default PrivX name of a VaultSecret of this test.
    pub fn privx_name(&self, name: &str) -> String {
        format!("k8s/{}/{name}", self.ns)
    }

    /// Kills the operator and starts it again; returns once the new process is ready.
    pub async fn restart_operator(&mut self) {
        self.operator.stop().await;
        self.operator.start().await;
    }

    /// Waits until the (current) operator process has completed `at_least` reconciles of
    /// `controller` — the sign that it has looked at everything, for "nothing happened" checks.
    pub async fn wait_reconciles(&self, controller: &str, at_least: u64) {
        eventually(
            &format!("{at_least} completed {controller} reconciles"),
            || async {
                let n = self.operator.reconciles(controller).await;
                if n >= at_least {
                    Ok(())
                } else {
                    Err(format!("{n} so far"))
                }
            },
        )
        .await;
    }

    pub async fn reconciles(&self, controller: &str) -> u64 {
        self.operator.reconciles(controller).await
    }

    // ---- manifests ------------------------------------------------------------------------

    /// The documents of `examples/<file>`, rewritten for this test: namespace set, PrivX names
    /// `k8s/demo/...` moved to `k8s/<namespace>/...`, cluster-scoped names made unique.
    pub fn example(&self, file: &str) -> Vec<Value> {
        example_docs(file, &self.ns)
    }

    /// The one document of kind `kind` in `examples/<file>`, rewritten.
    pub fn example_of(&self, file: &str, kind: &str) -> Value {
        self.example(file)
            .into_iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("examples/{file} has no {kind}"))
    }

    pub async fn apply_example(&self, file: &str) {
        for doc in self.example(file) {
            self.apply(doc).await;
        }
    }

    /// Server-side applies one manifest (Secret, VaultSecret, PasswordPolicy, Deployment,
    /// StatefulSet) into this test's namespace.
    pub async fn apply(&self, doc: Value) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Secret" => self.apply_namespaced::<Secret>(doc).await,
            "VaultSecret" => {
                // The operator this test starts reconciles only what carries its selector.
                let mut doc = doc;
                doc["metadata"]["labels"][E2E_LABEL] = json!(self.ns);
                self.apply_namespaced::<VaultSecret>(doc).await
            }
            "Deployment" => self.apply_namespaced::<Deployment>(doc).await,
            "StatefulSet" => self.apply_namespaced::<StatefulSet>(doc).await,
            "PasswordPolicy" => {
                let mut doc = doc;
                doc["metadata"]["labels"][E2E_LABEL] = json!(self.ns);
                let name = doc["metadata"]["name"].as_str().expect("metadata.name");
                Api::<PasswordPolicy>::all(self.client.clone())
                    .patch(name, &apply_params(), &Patch::Apply(&doc))
                    .await
                    .unwrap_or_else(|e| panic!("applying PasswordPolicy {name}: {e}"));
            }
            other => panic!("the harness cannot apply kind {other:?}"),
        }
    }

    async fn apply_namespaced<K>(&self, mut doc: Value)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        doc["metadata"]["namespace"] = json!(self.ns);
        let name = doc["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        self.api::<K>()
            .patch(&name, &apply_params(), &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&())));
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A Deployment with no replicas (nothing is pulled or scheduled; the pod template still
    /// records restarts).
    pub fn deployment(name: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        })
    }

    /// A Secret manifest with string data.
    pub fn secret_manifest(name: &str, data: &[(&str, &str)]) -> Value {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "stringData": data})
    }

    // ---- reading the cluster --------------------------------------------------------------

    pub async fn vault_secret(&self, name: &str) -> Option<VaultSecret> {
        self.api::<VaultSecret>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading VaultSecret {name}: {e}"))
    }

    pub async fn secret(&self, name: &str) -> Option<Secret> {
        self.api::<Secret>()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading Secret {name}: {e}"))
    }

    /// Waits until the VaultSecret's Ready condition has `reason` (for the current generation)
    /// and returns the object.
    pub async fn wait_ready_reason(&self, name: &str, reason: &str) -> VaultSecret {
        eventually(
            &format!("VaultSecret {name} Ready reason {reason}"),
            || async {
                let vs = self
                    .vault_secret(name)
                    .await
                    .ok_or("the object does not exist")?;
                let status = vs.status.clone().unwrap_or_default();
                let current = status.observed_generation == vs.metadata.generation;
                match ready_condition(&status.conditions) {
                    Some(c) if c.reason == reason && current => Ok(vs),
                    Some(c) => Err(format!(
                        "Ready={} reason {} (observedGeneration {:?}, generation {:?}): {}",
                        c.status,
                        c.reason,
                        status.observed_generation,
                        vs.metadata.generation,
                        c.message
                    )),
                    None => Err("no Ready condition yet".into()),
                }
            },
        )
        .await
    }

    pub async fn wait_synced(&self, name: &str) -> VaultSecret {
        self.wait_ready_reason(name, "Synced").await
    }

    pub async fn wait_policy_reason(&self, name: &str, reason: &str) -> PasswordPolicy {
        let api = Api::<PasswordPolicy>::all(self.client.clone());
        eventually(
            &format!("PasswordPolicy {name} Ready reason {reason}"),
            || async {
                let p = api
                    .get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the object does not exist")?;
                let status = p.status.clone().unwrap_or_default();
                let current = status.observed_generation == p.metadata.generation;
                match ready_condition(&status.conditions) {
                    Some(c) if c.reason == reason && current => Ok(p),
                    Some(c) => Err(format!(
                        "Ready={} reason {}: {}",
                        c.status, c.reason, c.message
                    )),
                    None => Err("no Ready condition yet".into()),
                }
            },
        )
        .await
    }

    /// Events about one object of this namespace: (type, reason, note).
    pub async fn events_about(&self, kind: &str, name: &str) -> Vec<(String, String, String)> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name)
                })
            })
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for a `Normal` event with `reason` about the VaultSecret `name`; returns its note.
    pub async fn wait_event(&self, name: &str, reason: &str) -> String {
        self.wait_event_of_type(name, "Normal", reason).await
    }

    /// Waits for an event of `type_` (`Normal`, `Warning`) with `reason` about the VaultSecret
    /// `name`; returns its note.
    pub async fn wait_event_of_type(&self, name: &str, type_: &str, reason: &str) -> String {
        let what = format!("a {type_} {reason} event about VaultSecret {name}");
        eventually(&what, || async {
            let events = self.events_about("VaultSecret", name).await;
            events
                .iter()
                .find(|(t, r, _)| t == type_ && r == reason)
                .map(|(_, _, note)| note.clone())
                .ok_or_else(|| {
                    let seen: Vec<_> = events.iter().map(|(t, r, _)| format!("{t} {r}")).collect();
                    format!("events so far: {seen:?}")
                })
        })
        .await
    }

    /// The pod-template annotation the operator bumps, and the Deployment's generation.
    pub async fn deployment_restart(&self, name: &str) -> (Option<String>, i64) {
        let d = self
            .api::<Deployment>()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Deployment {name}: {e}"));
        let hash = d
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| {
                a.get(privx_operator::controller::vault_secret::DATA_HASH_ANNOTATION)
                    .cloned()
            });
        (hash, d.metadata.generation.unwrap_or_default())
    }

    /// Sets annotations on this test's Namespace, as a cluster admin would. (A field manager of
    /// its own, so that the suite's label on the Namespace stays.)
    pub async fn annotate_namespace(&self, annotations: Value) {
        let patch = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns, "annotations": annotations}});
        Api::<Namespace>::all(self.client.clone())
            .patch(
                &self.ns,
                &PatchParams::apply("privx-operator-e2e-cluster-admin").force(),
                &Patch::Apply(&patch),
            )
            .await
            .expect("annotating the test namespace");
    }

    // ---- reading PrivX --------------------------------------------------------------------

    /// The data of a shared PrivX secret as `someone-else` reads it (`None`: no such secret).
    pub async fn privx_data(&self, name: &str) -> Option<BTreeMap<String, Value>> {
        match self
            .someone_else
            .get_secret(&SecretLocation::Shared, name)
            .await
        {
            Ok(secret) => Some(secret.data.map(|d| d.0).unwrap_or_default()),
            Err(privx_client::PrivxError::NotFound { .. }) => None,
            Err(e) => panic!("reading PrivX secret {name:?} as someone-else: {e}"),
        }
    }
}

impl Drop for E2e {
    /// Removes what the test created, even after a failure. Runs on a thread of its own with
    /// its own runtime and client: `drop` cannot await, and the test's runtime may be unwinding.
    fn drop(&mut self) {
        if let Some(child) = self.operator.child.as_mut() {
            let _ = child.start_kill();
        }
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "--- operator log (last 80 lines; all logs in {}) ---\n{}",
                self.workdir.display(),
                tail(&self.operator.log, 80)
            );
        }
        let config = self.config.clone();
        let ns = self.ns.clone();
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(cleanup(config, ns))
        });
        if let Err(e) = cleanup
            .join()
            .unwrap_or_else(|_| Err("cleanup panicked".into()))
        {
            eprintln!("cleanup of {} incomplete: {e}", self.ns);
        }
        // The kubeconfig copy holds cluster credentials: never leave it behind.
        let _ = std::fs::remove_file(&self.operator.kubeconfig);
        if !failed {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
        let _ = self.sim.child.start_kill();
    }
}

/// With the operator gone, nothing would release finalizers: strip them, then delete the
/// test's PasswordPolicies, its cluster-scoped RBAC (service-account mode) and its namespace
/// (which takes everything namespaced with it).
async fn cleanup(config: Config, ns: String) -> Result<(), String> {
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let rbac = service_account::cleanup(&client, &ns, E2E_LABEL).await;
    let no_finalizers = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    let vault_secrets: Api<VaultSecret> = Api::namespaced(client.clone(), &ns);
    for vs in vault_secrets
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing VaultSecrets: {e}"))?
    {
        let name = vs.metadata.name.unwrap_or_default();
        let _ = vault_secrets
            .patch(&name, &PatchParams::default(), &no_finalizers)
            .await;
    }
    let policies: Api<PasswordPolicy> = Api::all(client.clone());
    let mine = ListParams::default().labels(&format!("{E2E_LABEL}={ns}"));
    for p in policies
        .list(&mine)
        .await
        .map_err(|e| format!("listing PasswordPolicies: {e}"))?
    {
        let name = p.metadata.name.unwrap_or_default();
        let _ = policies
            .patch(&name, &PatchParams::default(), &no_finalizers)
            .await;
        let _ = policies.delete(&name, &DeleteParams::default()).await;
    }
    match Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::background())
        .await
    {
        Ok(_) => rbac,
        Err(kube::Error::Api(status)) if status.is_not_found() => rbac,
        Err(e) => Err(format!("deleting namespace {ns}: {e}")),
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `crds/*.yaml` (the committed files, as a user would) and waits until
/// each is Established.
async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("reading crds/") {
        let path = entry.expect("crds/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("reading a CRD file");
        let crd: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let name = crd["metadata"]["name"]
            .as_str()
            .expect("CRD name")
            .to_string();
        api.patch(&name, &apply_params(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("applying CRD {name} (needs cluster-admin): {e}"));
        names.push(name);
    }
    assert!(!names.is_empty(), "no CRDs found in {}", dir.display());
    for name in names {
        eventually(&format!("CRD {name} Established"), || async {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                Ok(())
            } else {
                Err("not established".into())
            }
        })
        .await;
    }
}

async fn create_namespace(client: &Client, ns: &str) {
    let manifest = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {E2E_LABEL: ns}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &apply_params(), &Patch::Apply(&manifest))
        .await
        .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
}

/// Writes the one-context kubeconfig the operator process reads (owner-only: it holds
/// credentials); with `token`, its user is that bearer token instead of the context's user.
fn write_kubeconfig(path: &Path, context: &str, token: Option<&str>) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let full = Kubeconfig::read().unwrap_or_else(|source| {
        panic!(
            "{}",
            SetupError::Kubeconfig {
                context: context.into(),
                source
            }
        )
    });
    let one = kubeconfig_for_context(&full, context).unwrap_or_else(|e| panic!("{e}"));
    // JSON is YAML: no second serialiser needed.
    let mut json = serde_json::to_value(&one).expect("a kubeconfig serialises");
    if let Some(token) = token {
        json = service_account::with_token_user(json, token);
    }
    let text = serde_json::to_vec(&json).expect("a kubeconfig serialises");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("writing the operator's kubeconfig");
    file.write_all(&text)
        .expect("writing the operator's kubeconfig");
}

/// The documents of `examples/<file>`, rewritten for namespace `ns` (see [`E2e::example`]).
pub fn example_docs(file: &str, ns: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| rewrite_for_namespace(doc, ns))
        .collect()
}

/// Rewrites an example manifest for namespace `ns` (see [`E2e::example`]).
pub fn rewrite_for_namespace(mut doc: Value, ns: &str) -> Value {
    fn walk(value: &mut Value, ns: &str) {
        match value {
            Value::String(s) if s.contains("k8s/demo/") => {
                *s = s.replace("k8s/demo/", &format!("k8s/{ns}/"));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, ns)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key == "passwordPolicyRef"
                        && let Some(name) = v["name"].as_str()
                    {
                        v["name"] = json!(format!("{ns}-{name}"));
                    } else {
                        walk(v, ns);
                    }
                }
            }
            _ => {}
        }
    }
    walk(&mut doc, ns);
    if doc["kind"] == "PasswordPolicy" {
        // Cluster-scoped: unique per test, labelled for cleanup. spec.name (the PrivX name) stays.
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        doc["metadata"]["name"] = json!(format!("{ns}-{name}"));
        doc["metadata"]["labels"][E2E_LABEL] = json!(ns);
    } else if doc["metadata"].is_object() {
        doc["metadata"]["namespace"] = json!(ns);
    }
    doc
}

pub fn ready_condition(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

/// A Secret's value as text.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

fn log_file(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
