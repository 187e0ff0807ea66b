//! The operator's controllers as `privx-operator run` assembles them (`runner::run`), running
//! against the fake Kubernetes API and the PrivX simulator: for tests of the reconcile core
//! (triggers, stores, round trips, outages) and for the in-process benchmark.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use privx_client::PrivxClient;
use privx_operator::controller::core::ControllerMetrics;
use privx_operator::controller::vault_secret::Settings;
use privx_operator::controller::vault_secret::hashing::HmacKey;
use privx_operator::runtime::metrics::Metrics;
use privx_operator::runtime::runner::{self, RunOptions};
use privx_sim::Simulator;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::FakeKube;

/// A running operator.
pub struct Running {
    pub metrics: Arc<Metrics>,
    /// What the runner last reported: every watch listed and up.
    pub watches_up: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts the controllers on `kube` with `privx`, watching `namespaces` (empty: all).
    pub fn start(
        kube: &FakeKube,
        sim: &Simulator,
        privx: PrivxClient,
        namespaces: &[&str],
    ) -> Self {
        Self::start_with(kube, sim, privx, namespaces, 8)
    }

    pub fn start_with(
        kube: &FakeKube,
        sim: &Simulator,
        privx: PrivxClient,
        namespaces: &[&str],
        concurrency: u16,
    ) -> Self {
        Self::start_tuned(kube, sim, privx, namespaces, concurrency, |_| {})
    }

    /// As `start_with`, the controllers' `Settings` changed by `tune` last (e.g. per-namespace
    /// identity).
    pub fn start_tuned(
        kube: &FakeKube,
        sim: &Simulator,
        privx: PrivxClient,
        namespaces: &[&str],
        concurrency: u16,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let watches_up = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let controller_metrics: Arc<dyn ControllerMetrics> = metrics.clone();
        let task = tokio::spawn({
            let client = kube.client();
            let stop = stop.clone();
            let up = watches_up.clone();
            let mut settings = Settings {
                self_roles: vec!["privx-operator".to_string()].into(),
                hmac_key: HmacKey::new(vec![7; 32]),
                ..Settings::default()
            };
            tune(&mut settings);
            let options = RunOptions {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                concurrency,
                instance: None,
                privx_identity: Some(sim.credentials().api_client_id.clone()),
                ..Default::default()
            };
            async move {
                runner::run(
                    client,
                    privx,
                    settings,
                    controller_metrics,
                    options,
                    stop,
                    move |u| up.store(u, Ordering::SeqCst),
                )
                .await
            }
        });
        Self {
            metrics,
            watches_up,
            stop,
            task,
        }
    }

    pub fn up(&self) -> bool {
        self.watches_up.load(Ordering::SeqCst)
    }

    /// One sample of the operator's metrics (`series` = `name{labels}`), if present.
    pub fn sample(&self, series: &str) -> Option<f64> {
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("a number"))
    }

    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the runner stops on the signal")
            .expect("the runner does not panic");
    }
}

/// Waits until `check` holds, polling every 20 ms; panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

pub fn namespace_object(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}})
}

pub fn secret_object(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data})
}

pub fn vault_secret_object(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A push + mirror spec from the Secret `source`.
pub fn push_mirror_spec(source: &str) -> Value {
    json!({"source": {"secretRef": {"name": source}}, "mirror": {}})
}

/// The Ready reason of a VaultSecret in the fake API ("" when none yet).
pub fn ready_reason(kube: &FakeKube, ns: &str, name: &str) -> String {
    kube.get(&super::vs_path(ns, name))
        .and_then(|o| {
            o["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        })
        .unwrap_or_default()
}
