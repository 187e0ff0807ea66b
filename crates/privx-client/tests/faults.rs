//! The client under faults, against the simulator over real HTTP: outage messages are fixed
//! text (issue 13 item 6) and the write gate refuses writes unsent (item 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use privx_client::config::CredentialSource;
use privx_client::{
    Credentials, PrivxClient, PrivxConfig, PrivxError, RoleHandle, SecretData, SecretLocation,
    SecretWrite,
};
use privx_sim::{Fault, SimOptions, Simulator, demo};
use serde_json::json;

async fn start() -> (Simulator, PrivxClient) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let c = sim.credentials();
    let mut config = PrivxConfig::new(
        sim.base_url(),
        CredentialSource::Static(Credentials {
            oauth_client_id: c.oauth_client_id.clone(),
            oauth_client_secret: c.oauth_client_secret.clone(),
            api_client_id: c.api_client_id.clone(),
            api_client_secret: c.api_client_secret.clone(),
        }),
    );
    config.max_retries = 0;
    config.timeout = Duration::from_millis(500);
    let client = PrivxClient::new(config).unwrap();
    (sim, client)
}

fn write(value: &str) -> SecretWrite {
    SecretWrite {
        data: SecretData([("password".to_string(), json!(value))].into()),
        read_roles: vec![RoleHandle {
            id: demo::ROLE_PRIVX_OPERATOR.into(),
            ..Default::default()
        }],
        write_roles: vec![RoleHandle {
            id: demo::ROLE_PRIVX_OPERATOR.into(),
            ..Default::default()
        }],
    }
}

async fn read_error(client: &PrivxClient) -> String {
    client
        .get_secret(&SecretLocation::Shared, "app/db")
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn outage_messages_are_fixed_strings_without_the_body() {
    let (sim, client) = start().await;
    let op = r#"PrivX unavailable during get shared secret "app/db""#;

    // A proxy's HTML page (the simulator answers 502/503/504 without a code that way).
    sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    assert_eq!(
        read_error(&client).await,
        format!("{op}: HTTP 503 from vault")
    );
    sim.set_faults(vec![Fault::status("/vault/*", 502)]);
    assert_eq!(
        read_error(&client).await,
        format!("{op}: HTTP 502 from vault")
    );

    // PrivX's JSON error with MAX_LOAD: the code, none of PrivX's words.
    sim.set_faults(vec![Fault::status("/vault/*", 503).with_code("MAX_LOAD")]);
    let text = read_error(&client).await;
    assert_eq!(text, format!("{op}: HTTP 503 from vault (MAX_LOAD)"));
    assert!(!text.contains("injected fault"), "{text}");

    // No answer at all.
    sim.set_faults(vec![Fault::drop_connection("/vault/*")]);
    assert_eq!(
        read_error(&client).await,
        format!("{op}: connection lost talking to vault")
    );
    sim.set_faults(vec![Fault::latency("/vault/*", Duration::from_secs(2))]);
    assert_eq!(
        read_error(&client).await,
        format!("{op}: timeout talking to vault")
    );

    // The token endpoint down names the auth service.
    let fresh = start().await;
    fresh.0.set_faults(vec![Fault::token_endpoint_down()]);
    let text = fresh.1.ping().await.unwrap_err().to_string();
    assert!(text.ends_with("HTTP 503 from auth"), "{text}");
    fresh.0.shutdown().await;

    // Nothing listening.
    let base = sim.base_url();
    sim.shutdown().await;
    let c = demo_credentials_client(&base);
    let text = c
        .get_secret(&SecretLocation::Shared, "app/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(text.ends_with("connection refused by PrivX"), "{text}");
}

fn demo_credentials_client(base: &str) -> PrivxClient {
    let mut config = PrivxConfig::new(
        base.to_string(),
        CredentialSource::Static(Credentials {
            oauth_client_id: "x".into(),
            oauth_client_secret: "y".into(),
            api_client_id: "z".into(),
            api_client_secret: "w".into(),
        }),
    );
    config.max_retries = 0;
    PrivxClient::new(config).unwrap()
}

#[tokio::test]
async fn a_closed_write_gate_refuses_writes_unsent_and_lets_reads_through() {
    let (sim, client) = start().await;
    let open = Arc::new(AtomicBool::new(true));
    let client = client.with_write_gate({
        let open = open.clone();
        Arc::new(move || open.load(Ordering::SeqCst))
    });
    let at = SecretLocation::Shared;
    client
        .create_secret(&at, "gated/one", &write("v1"))
        .await
        .expect("an open gate lets writes through");

    open.store(false, Ordering::SeqCst);
    sim.clear_requests();
    let err = client
        .create_secret(&at, "gated/two", &write("v2"))
        .await
        .unwrap_err();
    assert!(matches!(err, PrivxError::WriteRefused { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = client
        .update_secret(&at, "gated/one", &write("v3"))
        .await
        .unwrap_err();
    assert!(matches!(err, PrivxError::WriteRefused { .. }), "{err:?}");
    let err = client.delete_secret(&at, "gated/one").await.unwrap_err();
    assert!(matches!(err, PrivxError::WriteRefused { .. }), "{err:?}");
    // Reads (and the role look-ups, POSTs that only read) still go.
    let stored = client.get_secret(&at, "gated/one").await.unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "v1");
    client
        .resolve_roles(&["privx-operator".to_string()])
        .await
        .expect("a read-only POST is not a write");
    let writes: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method != "GET" && !r.route.contains("/oauth/token") && !r.route.contains("/roles/")
        })
        .map(|r| r.route)
        .collect();
    assert!(writes.is_empty(), "no write reached PrivX: {writes:?}");

    // Every clone shares the gate; opening it lets writes through again.
    let clone = client.clone();
    assert!(matches!(
        clone.delete_secret(&at, "gated/one").await,
        Err(PrivxError::WriteRefused { .. })
    ));
    open.store(true, Ordering::SeqCst);
    clone.delete_secret(&at, "gated/one").await.unwrap();
    sim.shutdown().await;
}
