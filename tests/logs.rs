//! Secret values never reach the logs: a push, a generated password and a PrivX outage are
//! reconciled with every log line captured at TRACE level for the operator and DEBUG for
//! everything else, and none of the values appears. And through a compact run of the fault
//! scenarios (issue 13) with the real runner, a marker value appears nowhere: not in logs at
//! TRACE, events, status, errors or metrics.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use base64::Engine;
use privx_client::config::PolicyGenerationSetting;
use privx_sim::{Fault, SimOptions, Simulator};
use serde_json::json;
use support::fake_kube::Fault as KubeFault;
use support::running::{
    Running, eventually, namespace_object, push_mirror_spec, ready_reason, secret_object,
    vault_secret_object,
};
use support::{FakeKube, Harness, NS, privx_client_tuned, secret_path, vs_path};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// Captures every log line of this thread passing `filter` until the guard drops.
    fn install(filter: &str) -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // A callsite another thread reached first may have cached "never enabled": ask again.
        tracing::callsite::rebuild_interest_cache();
        (capture, guard)
    }
}

/// Every form a value could take in text: as is, base64 (Kubernetes data), the byte array a
/// `Debug` of k8s `ByteString` or `Vec<u8>` prints (`115, 51, ...`), and JSON-escaped.
fn leak_forms(value: &str) -> Vec<String> {
    let bytes = format!("{:?}", value.as_bytes());
    let escaped = serde_json::to_string(value).unwrap();
    let mut forms = vec![
        value.to_string(),
        base64::engine::general_purpose::STANDARD.encode(value),
        bytes.trim_matches(|c| c == '[' || c == ']').to_string(),
        escaped.trim_matches('"').to_string(),
    ];
    forms.dedup();
    forms
}

#[tokio::test]
async fn no_secret_value_in_any_log_line() {
    let (capture, _guard) = Capture::install("debug,privx_operator=trace");

    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "s3cr3t-in-source")]);
    h.vault_secret(
        "db",
        json!({"source": {"secretRef": {"name": "db-creds"}}, "mirror": {}}),
    );
    h.reconcile("db").await.unwrap();
    h.policy("pw", json!({"maxVersions": 2}));
    h.vault_secret(
        "gen",
        json!({"source": {"generate": {"passwordPolicyRef": {"name": "pw"}, "key": "password"}}, "mirror": {}}),
    );
    h.reconcile("gen").await.unwrap();
    let generated = h.secret_data(NS, "gen").unwrap()["password"].clone();
    h.sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    // A value JSON escapes differently ("quotes" and a backslash), written during the outage.
    let escaping = r#"s3cr3t-"quoted"\-changed"#;
    h.secret(NS, "db-creds", &[("password", escaping)]);
    let _ = h.reconcile("db").await;
    drop(_guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 10, "the capture works: {logs}");
    for value in ["s3cr3t-in-source", escaping, generated.as_str()] {
        for form in leak_forms(value) {
            assert!(
                !logs.contains(&form),
                "a secret value reached the logs as {form:?}"
            );
        }
    }
}

/// Marker values: what the scenarios push. None may appear outside the Secrets and PrivX.
const MARKERS: [&str; 4] = [
    "m4rk3r-first-Qx7",
    "m4rk3r-max-load-Zp2",
    "m4rk3r-revoked-Hk9",
    "m4rk3r-lost-Wn4",
];

fn set_sources(kube: &FakeKube, objects: &[&str], value: &str) {
    for name in objects {
        let source = format!("{name}-src");
        kube.put(
            &secret_path(NS, &source),
            secret_object(NS, &source, &[("password", value)]),
        );
    }
}

async fn all_synced(kube: &FakeKube, objects: &[&str]) {
    eventually("every object Synced", Duration::from_secs(30), || {
        objects
            .iter()
            .all(|n| ready_reason(kube, NS, n) == "Synced")
    })
    .await;
}

#[tokio::test]
async fn no_marker_value_anywhere_through_the_fault_scenarios() {
    let (capture, _guard) =
        Capture::install("debug,privx_operator=trace,privx_client=trace,privx_sim=off");

    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let kube = FakeKube::default();
    kube.put(
        &format!("/api/v1/namespaces/{NS}"),
        namespace_object(NS, json!({})),
    );
    // A short timeout, so that latency turns into timeouts too.
    let privx = privx_client_tuned(
        &sim,
        sim.credentials(),
        PolicyGenerationSetting::Auto,
        |c| c.timeout = Duration::from_millis(300),
    );
    let running = Running::start(&kube, &sim, privx, &[]);
    eventually("watches up", Duration::from_secs(10), || running.up()).await;
    let objects = ["m-a", "m-b", "m-c"];

    // A burst during a 503 outage (HTML), then recovery.
    sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    set_sources(&kube, &objects, MARKERS[0]);
    for name in objects {
        let mut spec = push_mirror_spec(&format!("{name}-src"));
        spec["deletionPolicy"] = json!("Delete");
        kube.put(&vs_path(NS, name), vault_secret_object(NS, name, spec));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sim.set_faults(vec![]);
    all_synced(&kube, &objects).await;

    // Source changes during MAX_LOAD and timeouts; the API server failing meanwhile.
    sim.set_faults(vec![
        Fault::latency("PUT /vault/*", Duration::from_millis(500)).for_next(2),
        Fault::status("/vault/*", 503).with_code("MAX_LOAD"),
    ]);
    set_sources(&kube, &objects, MARKERS[1]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    kube.fail(KubeFault::Unavailable);
    tokio::time::sleep(Duration::from_millis(500)).await;
    kube.recover();
    sim.set_faults(vec![]);
    all_synced(&kube, &objects).await;

    // Tokens revoked mid-change.
    sim.expire_all_tokens();
    set_sources(&kube, &objects, MARKERS[2]);
    all_synced(&kube, &objects).await;

    // A create whose answer is lost.
    sim.set_faults(vec![
        Fault::drop_connection("POST /vault/api/v1/secrets")
            .after_handling()
            .for_next(1),
    ]);
    set_sources(&kube, &["m-lost"], MARKERS[3]);
    kube.put(
        &vs_path(NS, "m-lost"),
        vault_secret_object(NS, "m-lost", push_mirror_spec("m-lost-src")),
    );
    all_synced(&kube, &["m-lost"]).await;

    // Delete (cleanup path) and stop.
    for name in objects {
        kube.delete(&vs_path(NS, name));
    }
    eventually("deleted", Duration::from_secs(30), || {
        objects.iter().all(|n| kube.get(&vs_path(NS, n)).is_none())
    })
    .await;
    let metrics = running.metrics.encode();
    running.stop().await;
    drop(_guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("PrivX unavailable") || logs.contains("HTTP 503 from vault"),
        "the capture saw the outage"
    );
    // Every status ever written (the objects deleted since included), and what is left.
    let mut statuses: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.is_write() && r.path.ends_with("/status"))
        .filter_map(|r| r.body.map(|b| b.to_string()))
        .collect();
    assert!(statuses.len() >= 4, "status writes were seen");
    statuses.extend(
        kube.list("/apis/privx-operator.dev/v1alpha1/")
            .iter()
            .map(|o| o["status"].to_string()),
    );
    let events: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/events"))
        .filter_map(|r| r.body.map(|b| b.to_string()))
        .collect();
    assert!(!events.is_empty(), "events were posted");
    let places = [
        ("logs", logs),
        ("status", statuses.join("\n")),
        ("events", events.join("\n")),
        ("metrics", metrics),
    ];
    for marker in MARKERS {
        for form in leak_forms(marker) {
            for (place, text) in &places {
                assert!(
                    !text.contains(&form),
                    "a marker value reached the {place} as {form:?}"
                );
            }
        }
    }
}
