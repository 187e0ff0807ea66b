//! The cluster mode (`--context NAME`): the scenario against a real API server, with the
//! operator binary run out of cluster (the one cargo built for this bench, or
//! `--operator-bin`) and the simulator as a child process (`BIN sim`). The kube context is
//! only ever the one named: the bench reads it by name, and the operator gets a kubeconfig that
//! holds nothing else (the e2e suite's guard, `tests/e2e/harness.rs`).
//!
//! The process mode (`--operator-process`, [`run_fake`]) is the same run with the fake API of
//! the tests served over HTTP from this process in place of the cluster: it runs anywhere, and
//! the operator's RSS is that of a process of its own.
//!
//! Figures: PrivX calls from the simulator's `/_sim/counters`, Kubernetes writes from the
//! operator's own `privx_operator_kubernetes_writes_total`, RSS and CPU from
//! `/proc/<operator pid>/status` and `/stat` (so the bench must run on the machine the
//! operator runs on — which it does: out of cluster).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::e2e_harness::{context_from, kubeconfig_for_context};
use crate::in_process::{commit, limits, proc_status, stat_cpu_seconds};
use crate::scenario::{self, Probe, Snapshot};
use crate::support::FakeKube;
use crate::{Args, progress};

pub fn run(args: &Args, context: &str) -> anyhow::Result<Value> {
    let context = context_from(Some(context.into()))?;
    tokio::runtime::Runtime::new()
        .context("starting the runtime")?
        .block_on(async {
            let config = kube::Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("kube context {context:?}"))?;
            let kubeconfig =
                serde_json::to_value(kubeconfig_for_context(&Kubeconfig::read()?, &context)?)?;
            run_against(args, "cluster", &context, config, &kubeconfig).await
        })
}

/// `--operator-process`: the same run with the fake Kubernetes API of the tests served over
/// HTTP in this process as the cluster, so the operator binary's memory is its own.
pub fn run_fake(args: &Args) -> anyhow::Result<Value> {
    tokio::runtime::Runtime::new()
        .context("starting the runtime")?
        .block_on(async {
            let kube = FakeKube::default();
            // Only the write counts: a log of every request would grow without end.
            kube.set_request_log(false);
            for crd in privx_operator::crd::all_crds() {
                let name = crd.metadata.name.clone().unwrap_or_default();
                let mut object = serde_json::to_value(&crd)?;
                object["status"] = json!({"conditions": [
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                ]});
                kube.put(
                    &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                    object,
                );
            }
            let served = kube.serve_http().await.context("serving the fake API")?;
            progress(&format!("fake Kubernetes API on {}", served.url));
            let config = served.config("default");
            let kubeconfig = served.kubeconfig("default");
            let mut report = run_against(args, "process", "fake", config, &kubeconfig).await?;
            // The fake's own count of what reached it, beside the operator's metric.
            report["fake_api_write_counts"] = json!(kube.write_counts());
            Ok(report)
        })
}

async fn run_against(
    args: &Args,
    mode: &str,
    context: &str,
    config: kube::Config,
    kubeconfig_json: &Value,
) -> anyhow::Result<Value> {
    let client = kube::Client::try_from(config).context("kube client")?;
    let version = client
        .apiserver_version()
        .await
        .with_context(|| format!("the cluster of kube context {context:?} does not answer"))?;
    progress(&format!(
        "cluster {context:?}: Kubernetes {}.{}",
        version.major, version.minor
    ));
    install_crds(&client).await?;

    let ns = format!("privx-bench-{:08x}", rand::random::<u32>());
    let workdir = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&workdir).context("creating the work directory")?;
    let kubeconfig = workdir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, kubeconfig_json)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await
        .with_context(|| format!("creating namespace {ns}"))?;

    let result = async {
        let (sim, sim_env) = start_simulator(args, &workdir).await?;
        let (operator, port) = start_operator(args, &ns, &kubeconfig, &sim_env, &workdir).await?;
        let probe = Cluster {
            http: reqwest::Client::new(),
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            sim_url: sim_env["PRIVX_API_BASE_URL"].clone(),
            pid: operator.id().context("the operator's pid")?,
        };
        let report = scenario::run(args, client.clone(), &ns, &probe).await;
        drop((operator, sim)); // kill_on_drop
        report
    }
    .await;

    if args.keep {
        progress(&format!("kept namespace {ns} and {}", workdir.display()));
    } else {
        progress(&format!("deleting namespace {ns}"));
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
        let _ = std::fs::remove_dir_all(&workdir);
    }
    let mut report = result?;
    let limits = limits(args);
    report["mode"] = json!(mode);
    report["setup"] = json!({
        "context": context,
        "kubernetes": format!("{}.{}", version.major, version.minor),
        "operator_concurrency": args.workers.map(|w| json!(w)).unwrap_or(json!("default")),
        "privx_max_concurrency": limits.max_concurrency,
        "privx_rate_limit": limits.rate,
        "refresh_interval_seconds": args.refresh.as_secs(),
        "operator_bin": operator_bin(args).display().to_string(),
        "commit": commit(),
    });
    Ok(report)
}

fn operator_bin(args: &Args) -> PathBuf {
    args.operator_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_privx-operator")))
}

/// Creates the CRDs the cluster lacks (never replaces one) and waits until they are served.
async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in privx_operator::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        if api.get_opt(&name).await?.is_none() {
            api.create(&PostParams::default(), &crd)
                .await
                .with_context(|| format!("creating CRD {name}"))?;
            progress(&format!("installed CRD {name}"));
        }
        for _ in 0..60 {
            let established = api.get(&name).await?.status.is_some_and(|s| {
                s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// The one-context kubeconfig the operator reads (owner-only: it holds credentials).
fn write_kubeconfig(path: &Path, kubeconfig: &Value) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&serde_json::to_vec(kubeconfig)?)?;
    Ok(())
}

fn log_file(path: &Path) -> anyhow::Result<Stdio> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .into())
}

/// Starts the simulator and reads its one JSON line of `PRIVX_API_*` settings.
async fn start_simulator(
    args: &Args,
    workdir: &Path,
) -> anyhow::Result<(Child, BTreeMap<String, String>)> {
    let bin = args
        .sim_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_privx-operator")));
    let mut child = Command::new(&bin)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(&workdir.join("simulator.log"))?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} sim", bin.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("the simulator's stdout")?;
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("the simulator printed nothing within 30 s")??;
    let env: BTreeMap<String, String> =
        serde_json::from_str(&line).context("the simulator's first line")?;
    if !env.contains_key("PRIVX_API_BASE_URL") {
        bail!("the simulator's line has no PRIVX_API_BASE_URL");
    }
    Ok((child, env))
}

/// Starts `privx-operator run` for namespace `ns` and waits until `/readyz` answers 200.
async fn start_operator(
    args: &Args,
    ns: &str,
    kubeconfig: &Path,
    sim_env: &BTreeMap<String, String>,
    workdir: &Path,
) -> anyhow::Result<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(operator_bin(args));
    command
        .arg("run")
        .args(["--privx-url", &sim_env["PRIVX_API_BASE_URL"]])
        .args(["--operator-namespace", ns])
        .args(["--namespaces", ns])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--privx-self-roles", "privx-operator"]);
    if let Some(workers) = args.workers {
        command.args(["--concurrency", &workers.to_string()]);
    }
    if let Some(n) = args.privx_max_concurrency {
        command.args(["--privx-max-concurrency", &n.to_string()]);
    }
    if let Some(rate) = args.privx_rate_limit {
        command.args(["--privx-rate-limit", &rate.to_string()]);
    }
    // Only what the bench sets: no PRIVX_* or POD_* from the caller's shell.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("PRIVX_") || key.starts_with("POD_") {
            command.env_remove(key.as_ref());
        }
    }
    let log = workdir.join("operator.log");
    let mut child = command
        .env("KUBECONFIG", kubeconfig)
        .envs(sim_env.iter().filter(|(k, _)| k.starts_with("PRIVX_API_")))
        .stdin(Stdio::null())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the operator")?;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    for _ in 0..240 {
        if let Some(status) = child.try_wait()? {
            bail!("the operator exited ({status}); see {}", log.display());
        }
        if http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            progress("the operator is ready");
            return Ok((child, port));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "the operator was not ready after 120 s; see {}",
        log.display()
    )
}

struct Cluster {
    http: reqwest::Client,
    metrics_url: String,
    sim_url: String,
    pid: u32,
}

impl Probe for Cluster {
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let metrics = self
            .http
            .get(&self.metrics_url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let counters: BTreeMap<String, Value> = self
            .http
            .get(format!("{}/_sim/counters", self.sim_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let status = proc_status(&format!("/proc/{}/status", self.pid))?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let rss = status.get("VmRSS").copied().unwrap_or(0);
        Ok(Snapshot {
            privx: counters
                .into_iter()
                .map(|(route, c)| (route, c["count"].as_f64().unwrap_or(0.0)))
                .collect(),
            metrics,
            api_writes: None,
            rss_kib: rss.max(0) as u64,
            memory: BTreeMap::from([
                ("operator_vm_rss_kib".to_string(), rss),
                (
                    "operator_vm_hwm_kib".to_string(),
                    status.get("VmHWM").copied().unwrap_or(0),
                ),
            ]),
            cpu_seconds: stat_cpu_seconds(&stat).unwrap_or(0.0),
        })
    }

    async fn set_privx_faults(&self, faults: Vec<privx_sim::Fault>) -> anyhow::Result<()> {
        self.http
            .put(format!("{}/_sim/faults", self.sim_url))
            .json(&faults)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}
