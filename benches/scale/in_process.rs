//! The in-process mode: the fake Kubernetes API, the simulator, the real runner and the
//! benchmark's driver, each on a tokio runtime of its own whose threads tag their allocations
//! ([`crate::alloc`]) and carry its name (so `/proc/self/task/*/stat` gives each part's CPU).
//!
//! Memory: the process's VmRSS holds all four parts. The operator's share is estimated as
//! VmRSS minus the live heap of the other three (the fake API's stores and history, the
//! simulator's secrets, the driver): what remains is the operator's heap, the allocator's
//! overhead and free lists, and the code and stacks of the whole process, so the estimate errs
//! on the operator's side. Its live heap alone is reported too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use privx_client::config::{
    DEFAULT_MAX_RETRIES, DEFAULT_RETRY_BASE_DELAY, PolicyGenerationSetting,
};
use privx_client::{Limits, limit};
use privx_operator::controller::core::ControllerMetrics;
use privx_operator::controller::vault_secret::Settings;
use privx_operator::controller::vault_secret::hashing::HmacKey;
use privx_operator::runtime::metrics::Metrics;
use privx_operator::runtime::runner::{self, RunOptions};
use privx_operator::runtime::{DEFAULT_CONCURRENCY, kube_writes};
use privx_sim::{SimOptions, Simulator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::alloc::{self, Part};
use crate::scenario::{self, Probe, Snapshot};
use crate::support::running::namespace_object;
use crate::support::{FakeKube, privx_client_tuned};
use crate::{Args, progress};

const NS: &str = "bench";
/// Thread-name prefix of the operator's runtime (at most 15 bytes: the kernel's `comm`).
const OPERATOR_THREADS: &str = "bench-operator";

fn runtime(
    name: &'static str,
    part: Part,
    workers: usize,
) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .on_thread_start(move || alloc::tag_thread(part))
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))
}

/// The limits the operator runs with: the flags' defaults unless the bench was told otherwise.
pub fn limits(args: &Args) -> Limits {
    Limits {
        max_concurrency: args
            .privx_max_concurrency
            .unwrap_or(limit::DEFAULT_MAX_CONCURRENCY),
        rate: args.privx_rate_limit.unwrap_or(limit::DEFAULT_RATE),
        burst: limit::DEFAULT_BURST,
    }
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let sim_rt = runtime("bench-sim", Part::Simulator, 1)?;
    let fake_rt = runtime("bench-fake", Part::FakeApi, 1)?;
    let operator_rt = runtime(OPERATOR_THREADS, Part::Operator, 2)?;
    let driver_rt = runtime("bench-driver", Part::Driver, 1)?;

    let sim = sim_rt.block_on(Simulator::start(SimOptions::default()))?;
    let kube = FakeKube::default();
    // Only the write counts: a log of every request would be the biggest thing in memory.
    kube.set_request_log(false);
    kube.put(
        &format!("/api/v1/namespaces/{NS}"),
        namespace_object(NS, json!({})),
    );
    // Both clients' server sides (and their buffers) run on the fake API's runtime.
    let (operator_client, driver_client) = {
        let _fake = fake_rt.enter();
        (kube.client(), kube.client())
    };

    let workers = args.workers.unwrap_or(DEFAULT_CONCURRENCY);
    let limits = limits(args);
    let metrics = Arc::new(Metrics::new());
    let up = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let operator = {
        let _operator = operator_rt.enter();
        let client = kube_writes::counted(operator_client, metrics.clone());
        let privx = privx_client_tuned(
            &sim,
            sim.credentials(),
            PolicyGenerationSetting::Auto,
            |config| {
                config.max_retries = DEFAULT_MAX_RETRIES;
                config.retry_base_delay = DEFAULT_RETRY_BASE_DELAY;
                config.limit = privx_client::Limit::new(limits).expect("valid limits");
            },
        )
        .with_observer(metrics.clone());
        let settings = Settings {
            self_roles: vec!["privx-operator".to_string()].into(),
            hmac_key: HmacKey::new(vec![9; 32]),
            ..Settings::default()
        };
        let controller_metrics: Arc<dyn ControllerMetrics> = metrics.clone();
        let up = up.clone();
        operator_rt.spawn(runner::run(
            client,
            privx,
            settings,
            controller_metrics,
            RunOptions {
                namespaces: Vec::new(),
                concurrency: workers,
                instance: None,
                privx_identity: Some(sim.credentials().api_client_id.clone()),
                ..Default::default()
            },
            stop.clone(),
            move |u| up.store(u, Ordering::SeqCst),
        ))
    };

    let probe = InProcess {
        sim: &sim,
        kube: &kube,
        metrics: &metrics,
    };
    let report = driver_rt.block_on(async {
        progress("in process: waiting for the operator's watches");
        while !up.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        scenario::run(args, driver_client, NS, &probe).await
    });

    stop.cancel();
    let stopped = operator_rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), operator).await });
    if stopped.is_err() {
        progress("the operator did not stop within 60 s");
    }
    sim_rt.block_on(sim.shutdown());
    let mut report = report?;
    report["mode"] = json!("in-process");
    report["setup"] = json!({
        "operator_concurrency": workers,
        "privx_max_concurrency": limits.max_concurrency,
        "privx_rate_limit": limits.rate,
        "privx_rate_burst": limits.burst,
        "refresh_interval_seconds": args.refresh.as_secs(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "commit": commit(),
    });
    Ok(report)
}

/// The commit the bench was built from, when run in a git checkout.
pub fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct InProcess<'a> {
    sim: &'a Simulator,
    kube: &'a FakeKube,
    metrics: &'a Metrics,
}

impl Probe for InProcess<'_> {
    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let status = proc_status("/proc/self/status")?;
        let heap = |part| alloc::live(part) / 1024;
        let others = heap(Part::FakeApi) + heap(Part::Simulator) + heap(Part::Driver);
        let rss = status.get("VmRSS").copied().unwrap_or(0);
        let memory = BTreeMap::from([
            ("process_vm_rss_kib".to_string(), rss),
            (
                "process_vm_hwm_kib".to_string(),
                status.get("VmHWM").copied().unwrap_or(0),
            ),
            ("heap_operator_kib".to_string(), heap(Part::Operator)),
            ("heap_fake_api_kib".to_string(), heap(Part::FakeApi)),
            ("heap_simulator_kib".to_string(), heap(Part::Simulator)),
            ("heap_driver_kib".to_string(), heap(Part::Driver)),
            ("heap_other_kib".to_string(), heap(Part::Other)),
        ]);
        Ok(Snapshot {
            privx: self
                .sim
                .counters()
                .into_iter()
                .map(|(route, c)| (route, c.count as f64))
                .collect(),
            metrics: self.metrics.encode(),
            api_writes: Some(
                self.kube
                    .write_counts()
                    .into_iter()
                    .map(|(k, v)| (k, v as f64))
                    .collect(),
            ),
            rss_kib: (rss - others).max(0) as u64,
            memory,
            cpu_seconds: threads_cpu_seconds(OPERATOR_THREADS)?,
        })
    }

    async fn set_privx_faults(&self, faults: Vec<privx_sim::Fault>) -> anyhow::Result<()> {
        self.sim.set_faults(faults);
        Ok(())
    }
}

/// The `Vm*` lines of a `/proc/<pid>/status` file, in KiB.
pub fn proc_status(path: &str) -> anyhow::Result<BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let kib = value.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((key.to_string(), kib))
        })
        .collect())
}

/// User + system CPU seconds of a `/proc/.../stat` line.
pub fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces: the fields after it start behind the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux the project runs on.
    Some((utime + stime) / 100.0)
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn threads_cpu_seconds(prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        let dir = task?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        total += stat_cpu_seconds(&stat).unwrap_or(0.0);
    }
    Ok(total)
}
