//! The scenario both modes run, against whatever Kubernetes API `client` talks to, and the
//! figures it reports. Where the figures come from (simulator counters, the operator's
//! metrics, memory, CPU) is the mode's [`Probe`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use privx_operator::crd::VaultSecret;
use serde_json::{Value, json};

use crate::support::running::{push_mirror_spec, secret_object, vault_secret_object};
use crate::{Args, progress};

/// Everything a mode can measure at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// PrivX requests by route (`GET /vault/api/v1/secrets/{name}`), from the simulator.
    pub privx: BTreeMap<String, f64>,
    /// The operator's `/metrics` text.
    pub metrics: String,
    /// Writes as the API server received them ("verb resource"), when the mode can see them.
    pub api_writes: Option<BTreeMap<String, f64>>,
    /// The operator's resident memory (KiB): measured (cluster) or estimated (in process).
    pub rss_kib: u64,
    /// Extra memory figures of the mode (KiB unless named otherwise).
    pub memory: BTreeMap<String, i64>,
    /// The operator's CPU time (user + system), in seconds.
    pub cpu_seconds: f64,
}

/// Where a mode's figures come from, and its hand on the simulator's faults.
pub trait Probe {
    async fn snapshot(&self) -> anyhow::Result<Snapshot>;
    /// Replaces the simulator's injected faults (`[]`: none).
    async fn set_privx_faults(&self, faults: Vec<privx_sim::Fault>) -> anyhow::Result<()>;
}

/// A series of the metrics text: `name{labels}` exactly.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `privx_operator_kubernetes_writes_total` by "verb resource".
fn operator_writes(text: &str) -> BTreeMap<String, f64> {
    let prefix = "privx_operator_kubernetes_writes_total{";
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(labels[start..end].to_string())
            };
            Some((
                format!("{} {}", label("verb")?, label("resource")?),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

fn diff(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

fn per_object(counts: &BTreeMap<String, f64>, n: usize) -> BTreeMap<String, f64> {
    counts
        .iter()
        .map(|(k, v)| (k.clone(), round(v / n as f64)))
        .collect()
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn total(counts: &BTreeMap<String, f64>) -> f64 {
    // `sum()` of no floats is -0.0.
    counts.values().fold(0.0, |a, b| a + b)
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    round(sorted[i])
}

/// Creates `n` objects from `make(i)` with `concurrency` creates in flight; returns when each
/// create was sent, by index.
async fn create_all<K>(
    api: &Api<K>,
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> Value,
) -> anyhow::Result<Vec<Instant>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut sent: Vec<(usize, Instant)> = futures::stream::iter(0..n)
        .map(|i| {
            let object: K = serde_json::from_value(make(i)).expect("a valid object");
            async move {
                let at = Instant::now();
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| (i, at))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    sent.sort_by_key(|(i, _)| *i);
    Ok(sent.into_iter().map(|(_, at)| at).collect())
}

fn is_ready(vs: &VaultSecret) -> bool {
    vs.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Runs the scenario in namespace `ns` (which exists) and reports its figures.
pub async fn run<P: Probe>(
    args: &Args,
    client: kube::Client,
    ns: &str,
    probe: &P,
) -> anyhow::Result<Value> {
    let n = args.objects;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let vault_secrets: Api<VaultSecret> = Api::namespaced(client.clone(), ns);
    let idle = probe.snapshot().await?;

    // Ready times, from a watch of our own (the first Ready=True of each object).
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let watch = tokio::spawn({
        let ready = ready.clone();
        watcher(vault_secrets.clone(), watcher::Config::default())
            .applied_objects()
            .for_each(move |vs| {
                if let Ok(vs) = vs
                    && is_ready(&vs)
                {
                    let name = vs.metadata.name.clone().unwrap_or_default();
                    ready
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
                futures::future::ready(())
            })
    });

    progress(&format!("creating {n} bare Secrets (the baseline)"));
    let started = Instant::now();
    create_all(&secrets, n, args.create_concurrency, |i| {
        secret_object(
            ns,
            &format!("src-{i}"),
            &[("password", "bench-password-value")],
        )
    })
    .await?;
    let baseline = started.elapsed();
    // Let the operator see the Secrets (its source watch) before the VaultSecrets arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = probe.snapshot().await?;

    progress(&format!("creating {n} push+mirror VaultSecrets"));
    let refresh = format!("{}s", args.refresh.as_secs());
    let delete = args.deletion_policy == "Delete";
    let started = Instant::now();
    let created = create_all(&vault_secrets, n, args.create_concurrency, |i| {
        let mut spec = push_mirror_spec(&format!("src-{i}"));
        spec["refreshInterval"] = json!(refresh);
        if delete {
            spec["deletionPolicy"] = json!("Delete");
        }
        vault_secret_object(ns, &format!("vs-{i}"), spec)
    })
    .await?;
    let create_time = started.elapsed();
    loop {
        let done = ready.lock().unwrap().len();
        if done >= n {
            break;
        }
        if started.elapsed() > args.timeout {
            anyhow::bail!(
                "only {done} of {n} VaultSecrets Ready after {:?}",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_ready = {
        let ready = ready.lock().unwrap();
        let last = *ready.values().max().expect("n > 0");
        last - started
    };
    let mut latencies: Vec<f64> = {
        let ready = ready.lock().unwrap();
        created
            .iter()
            .enumerate()
            .map(|(i, at)| {
                ready[&format!("vs-{i}")]
                    .saturating_duration_since(*at)
                    .as_secs_f64()
            })
            .collect()
    };
    latencies.sort_by(f64::total_cmp);
    progress(&format!("all Ready after {all_ready:?}"));
    // Writes that follow Ready (an event after the status) land before the count is taken.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = probe.snapshot().await?;

    progress(&format!(
        "steady state: two refresh periods ({:?} each)",
        args.refresh
    ));
    tokio::time::sleep(args.refresh * 2 + Duration::from_secs(1)).await;
    let steady = probe.snapshot().await?;
    watch.abort();
    let (outage, last) = match args.outage {
        Some(length) => {
            let (report, last) = outage(args, length, ns, &secrets, &vault_secrets, probe).await?;
            (Some(report), last)
        }
        None => (None, steady.clone()),
    };
    let deletion = if delete {
        Some(delete_all(args, &vault_secrets, n, probe, &last).await?)
    } else {
        None
    };

    let privx_new = diff(&after.privx, &before.privx);
    let writes_new = diff(
        &operator_writes(&after.metrics),
        &operator_writes(&before.metrics),
    );
    let events_new = writes_new
        .iter()
        .filter(|(k, _)| k.ends_with(" events"))
        .fold(0.0, |a, (_, v)| a + v);
    let privx_steady = diff(&steady.privx, &after.privx);
    let writes_steady = diff(
        &operator_writes(&steady.metrics),
        &operator_writes(&after.metrics),
    );
    let privx_steady_reads = privx_steady
        .iter()
        .filter(|(k, _)| k.starts_with("GET "))
        .fold(0.0, |a, (_, v)| a + v);
    let reconciles = |s: &Snapshot| {
        sample(
            &s.metrics,
            r#"privx_operator_reconciles_total{controller="vaultsecret"}"#,
        )
    };
    let reconciles_new = reconciles(&after) - reconciles(&before);
    let duration_sum = |s: &Snapshot| {
        sample(
            &s.metrics,
            r#"privx_operator_reconcile_duration_seconds_sum{controller="vaultsecret"}"#,
        )
    };
    let cpu_new = after.cpu_seconds - before.cpu_seconds;

    Ok(json!({
        "objects": n,
        "create_concurrency": args.create_concurrency,
        "baseline_seconds": round(baseline.as_secs_f64()),
        "vaultsecret_create_seconds": round(create_time.as_secs_f64()),
        "all_ready_seconds": round(all_ready.as_secs_f64()),
        "ratio_all_ready_to_baseline": round(all_ready.as_secs_f64() / baseline.as_secs_f64()),
        "create_to_ready_seconds": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "privx_calls_per_new_object": {
            "total": round(total(&privx_new) / n as f64),
            "by_route": per_object(&privx_new, n),
        },
        "kubernetes_writes_per_new_object": {
            "total_without_events": round((total(&writes_new) - events_new) / n as f64),
            "events": round(events_new / n as f64),
            "by_verb_resource": per_object(&writes_new, n),
            "as_the_api_received_them": after.api_writes.as_ref().zip(before.api_writes.as_ref())
                .map(|(a, b)| {
                    let mut received = diff(a, b);
                    // The bench's own creates are not the operator's.
                    if let Some(creates) = received.get_mut("create vaultsecrets") {
                        *creates -= n as f64;
                    }
                    received.retain(|_, v| *v != 0.0);
                    per_object(&received, n)
                }),
        },
        "steady_state": {
            "seconds": round((args.refresh * 2).as_secs_f64()),
            "kubernetes_writes": total(&writes_steady),
            "kubernetes_writes_by_verb_resource": writes_steady,
            "privx_reads": privx_steady_reads,
            "privx_reads_per_object_per_refresh": round(privx_steady_reads / n as f64 / 2.0),
            "privx_calls_by_route": privx_steady,
        },
        "outage": outage,
        "deletion_policy": args.deletion_policy,
        "deletion": deletion,
        "reconciles_per_new_object": round(reconciles_new / n as f64),
        "operator_cpu_ms_per_reconcile": round(1000.0 * cpu_new / reconciles_new.max(1.0)),
        "operator_cpu_seconds_to_all_ready": round(cpu_new),
        "reconcile_mean_ms": round(1000.0 * (duration_sum(&after) - duration_sum(&before)) / reconciles_new.max(1.0)),
        "operator_rss_mib": {
            "idle": mib(idle.rss_kib),
            "before": mib(before.rss_kib),
            "after": mib(after.rss_kib),
            "steady": mib(steady.rss_kib),
        },
        "memory_detail": {
            "before": before.memory,
            "after": after.memory,
            "steady": steady.memory,
        },
    }))
}

/// The mirrors' `resourceVersion`s (the mirror of `vs-i` is the Secret `vs-i`).
async fn mirror_versions(
    secrets: &Api<Secret>,
    n: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mirrors: std::collections::HashSet<String> = (0..n).map(|i| format!("vs-{i}")).collect();
    Ok(secrets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name?;
            mirrors
                .contains(&name)
                .then(|| (name, s.metadata.resource_version.unwrap_or_default()))
        })
        .collect())
}

/// `--outage`: every `/vault/*` request answers 503 for `length` while the first
/// `--outage-changes` sources change; then PrivX answers again and the bench waits until every
/// VaultSecret is Ready and every changed source's data is in its mirror (so in PrivX, which
/// the mirror is written from). Returns the report and the last snapshot.
async fn outage(
    args: &Args,
    length: Duration,
    ns: &str,
    secrets: &Api<Secret>,
    vault_secrets: &Api<VaultSecret>,
    probe: &impl Probe,
) -> anyhow::Result<(Value, Snapshot)> {
    let n = args.objects;
    let changes = args.outage_changes.min(n);
    let mirrors_before = mirror_versions(secrets, n).await?;
    let before = probe.snapshot().await?;
    progress(&format!(
        "vault outage: every /vault/* request answers 503 for {length:?}; {changes} sources change"
    ));
    probe
        .set_privx_faults(vec![privx_sim::Fault::status("/vault/*", 503)])
        .await?;
    let started = Instant::now();
    let changed_value = |i: usize| format!("changed-during-outage-{i}");
    for i in 0..changes {
        let patch = secret_object(ns, &format!("src-{i}"), &[("password", &changed_value(i))]);
        secrets
            .patch(
                &format!("src-{i}"),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
    }
    // PrivX requests per second of the outage, from the simulator's counters.
    let mut per_second = Vec::new();
    let mut previous = total(&before.privx);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    while started.elapsed() < length {
        tick.tick().await;
        let now = total(&probe.snapshot().await?.privx);
        per_second.push(now - previous);
        previous = now;
    }
    let during = probe.snapshot().await?;
    let outage_seconds = started.elapsed().as_secs_f64();
    let mirrors_during = mirror_versions(secrets, n).await?;
    let touched = mirrors_before
        .iter()
        .filter(|(name, version)| mirrors_during.get(*name) != Some(version))
        .count();

    progress("PrivX answers again");
    probe.set_privx_faults(vec![]).await?;
    let back = Instant::now();
    loop {
        let ready = vault_secrets
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|vs| is_ready(vs))
            .count();
        let mut mirrored = 0;
        for i in 0..changes {
            let mirror = secrets.get_opt(&format!("vs-{i}")).await?;
            let value = mirror
                .and_then(|m| m.data)
                .and_then(|d| d.get("password").map(|v| v.0.clone()));
            if value.as_deref() == Some(changed_value(i).as_bytes()) {
                mirrored += 1;
            }
        }
        if ready == n && mirrored == changes {
            break;
        }
        if back.elapsed() > args.timeout {
            anyhow::bail!(
                "after the outage: {ready} of {n} VaultSecrets Ready, {mirrored} of {changes} changes mirrored after {:?}",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovery = back.elapsed();
    progress(&format!(
        "all Ready and mirrored {recovery:?} after PrivX answered again"
    ));
    let after = probe.snapshot().await?;
    let requests = diff(&during.privx, &before.privx);
    let refusals = |s: &Snapshot| {
        sample(
            &s.metrics,
            r#"privx_operator_privx_breaker_refusals_total{service="vault"}"#,
        )
    };
    let report = json!({
        "seconds": round(outage_seconds),
        "sources_changed": changes,
        "privx_requests": total(&requests),
        "privx_requests_per_second": {
            "mean": round(total(&requests) / outage_seconds),
            "peak": per_second.iter().copied().fold(0.0, f64::max),
        },
        "privx_requests_by_route": requests,
        "calls_refused_by_the_breaker": refusals(&during) - refusals(&before),
        "mirrors_touched_during_outage": touched,
        "all_ready_and_mirrored_seconds_after_privx_is_back": round(recovery.as_secs_f64()),
        "privx_requests_until_then": total(&diff(&after.privx, &during.privx)),
    });
    Ok((report, after))
}

/// `deletionPolicy: Delete`: deletes every VaultSecret while the operator runs and waits until
/// all are gone (their PrivX secrets deleted, finalizers released); what that cost per object.
async fn delete_all(
    args: &Args,
    vault_secrets: &Api<VaultSecret>,
    n: usize,
    probe: &impl Probe,
    steady: &Snapshot,
) -> anyhow::Result<Value> {
    progress(&format!(
        "deleting {n} VaultSecrets (deletionPolicy: Delete)"
    ));
    let started = Instant::now();
    // One delete per object, as many in flight as the creates had.
    futures::stream::iter(0..n)
        .map(|i| async move {
            vault_secrets
                .delete(&format!("vs-{i}"), &DeleteParams::default())
                .await
                .map(|_| ())
        })
        .buffer_unordered(args.create_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    loop {
        let left = vault_secrets
            .list_metadata(&ListParams::default().limit(1))
            .await?
            .items
            .len();
        if left == 0 {
            break;
        }
        if started.elapsed() > args.timeout {
            anyhow::bail!(
                "VaultSecrets still there {:?} after deleting them",
                args.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = started.elapsed();
    progress(&format!("all VaultSecrets gone after {gone:?}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = probe.snapshot().await?;
    let privx = diff(&after.privx, &steady.privx);
    let writes = diff(
        &operator_writes(&after.metrics),
        &operator_writes(&steady.metrics),
    );
    Ok(json!({
        "all_gone_seconds": round(gone.as_secs_f64()),
        "privx_calls_per_object": {
            "total": round(total(&privx) / n as f64),
            "by_route": per_object(&privx, n),
        },
        "kubernetes_writes_per_object": per_object(&writes, n),
    }))
}
