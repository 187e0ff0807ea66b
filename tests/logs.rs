//! Secret values never reach the logs: a push, a generated password and a PrivX outage are
//! reconciled with every log line captured at TRACE level for the operator and DEBUG for
//! everything else, and none of the values appears.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use privx_sim::Fault;
use serde_json::json;
use support::{Harness, NS};

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

#[tokio::test]
async fn no_secret_value_in_any_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug,privx_operator=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
    h.secret(NS, "db-creds", &[("password", "s3cr3t-changed")]);
    let _ = h.reconcile("db").await;
    drop(_guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 10, "the capture works: {logs}");
    for value in ["s3cr3t-in-source", "s3cr3t-changed", generated.as_str()] {
        assert!(!logs.contains(value), "a secret value reached the logs");
    }
    // Nor the base64 form of the source value.
    assert!(!logs.contains("czNjcjN0LWluLXNvdXJjZQ"));
}
