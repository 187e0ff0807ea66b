//! The PrivX client against the simulator, over real HTTP on 127.0.0.1.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privx_client::config::CredentialSource;
use privx_client::{
    CallObserver, CallRecord, Credentials, PasswordPolicy, PolicyGeneration,
    PolicyGenerationSetting, PrivxClient, PrivxConfig, PrivxError, RoleHandle, SecretData,
    SecretLocation, SecretWrite,
};
use privx_sim::{
    Fault, ListCount, PolicyListShape, SimCredentials, SimOptions, SimPolicyGeneration, Simulator,
    demo,
};
use serde_json::json;

const TOKEN_ROUTE: &str = "POST /auth/api/v1/oauth/token";

fn credentials(c: &SimCredentials) -> Credentials {
    Credentials {
        oauth_client_id: c.oauth_client_id.clone(),
        oauth_client_secret: c.oauth_client_secret.clone(),
        api_client_id: c.api_client_id.clone(),
        api_client_secret: c.api_client_secret.clone(),
    }
}

fn config(sim: &Simulator, source: CredentialSource) -> PrivxConfig {
    let mut config = PrivxConfig::new(sim.base_url(), source);
    config.timeout = Duration::from_secs(5);
    config.max_retries = 3;
    config.retry_base_delay = Duration::from_millis(10);
    config
}

fn client(sim: &Simulator) -> PrivxClient {
    let source = CredentialSource::Static(credentials(&sim.credentials()));
    PrivxClient::new(config(sim, source)).expect("client builds")
}

async fn start(options: SimOptions) -> (Simulator, PrivxClient) {
    let sim = Simulator::start(options).await.expect("simulator starts");
    let client = client(&sim);
    (sim, client)
}

fn count_route(sim: &Simulator, route: &str) -> usize {
    sim.requests().iter().filter(|r| r.route == route).count()
}

fn data(pairs: &[(&str, &str)]) -> SecretData {
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

fn role(id: &str) -> RoleHandle {
    RoleHandle {
        id: id.into(),
        ..Default::default()
    }
}

fn write(pairs: &[(&str, &str)]) -> SecretWrite {
    SecretWrite {
        data: data(pairs),
        read_roles: vec![
            role(demo::ROLE_PRIVX_OPERATOR),
            role(demo::ROLE_APP_READERS),
        ],
        write_roles: vec![role(demo::ROLE_PRIVX_OPERATOR)],
    }
}

/// Every secret operation at one location, and what the simulator saw.
async fn secret_lifecycle(client: &PrivxClient, at: &SecretLocation, name: &str) {
    client
        .create_secret(at, name, &write(&[("password", "first-value")]))
        .await
        .expect("create");

    let got = client.get_secret(at, name).await.expect("get");
    assert_eq!(got.name, name);
    assert_eq!(got.data, Some(data(&[("password", "first-value")])));
    let read: BTreeSet<_> = got.read_roles.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        read,
        BTreeSet::from([demo::ROLE_PRIVX_OPERATOR, demo::ROLE_APP_READERS])
    );

    let meta = client
        .get_secret_metadata(at, name)
        .await
        .expect("metadata");
    assert_eq!(meta.name, name);
    assert!(meta.data.is_none());

    let listed = client.list_secrets(at).await.expect("list");
    assert!(listed.iter().any(|s| s.name == name), "{name} listed");

    client
        .update_secret(at, name, &write(&[("password", "second-value")]))
        .await
        .expect("update");
    let got = client.get_secret(at, name).await.expect("get after update");
    assert_eq!(got.data, Some(data(&[("password", "second-value")])));

    client.delete_secret(at, name).await.expect("delete");
    assert!(matches!(
        client.get_secret(at, name).await,
        Err(PrivxError::NotFound { .. })
    ));
    assert!(matches!(
        client.delete_secret(at, name).await,
        Err(PrivxError::NotFound { .. })
    ));
}

#[tokio::test]
async fn shared_secret_endpoints() {
    let (sim, client) = start(SimOptions::default()).await;
    client.ping().await.expect("ping");
    secret_lifecycle(&client, &SecretLocation::Shared, "k8s/test/lifecycle").await;
    let routes: BTreeSet<String> = sim.requests().into_iter().map(|r| r.route).collect();
    for route in [
        "POST /vault/api/v1/secrets",
        "GET /vault/api/v1/secrets/{name}",
        "GET /vault/api/v1/metadata/secrets/{name}",
        "GET /vault/api/v1/secrets",
        "PUT /vault/api/v1/secrets/{name}",
        "DELETE /vault/api/v1/secrets/{name}",
    ] {
        assert!(routes.contains(route), "{route} not called: {routes:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn personal_secret_endpoints() {
    let (sim, client) = start(SimOptions::default()).await;
    let at = SecretLocation::Personal {
        user_id: demo::OPERATOR_CLIENT_ID.into(),
    };
    secret_lifecycle(&client, &at, "my personal/secret").await;
    let routes: BTreeSet<String> = sim.requests().into_iter().map(|r| r.route).collect();
    for route in [
        "POST /vault/api/v1/user/{user_id}/secrets",
        "GET /vault/api/v1/user/{user_id}/secrets/{name}",
        "GET /vault/api/v1/user/{user_id}/metadata/secrets/{name}",
        "GET /vault/api/v1/user/{user_id}/secrets",
        "PUT /vault/api/v1/user/{user_id}/secrets/{name}",
        "DELETE /vault/api/v1/user/{user_id}/secrets/{name}",
    ] {
        assert!(routes.contains(route), "{route} not called: {routes:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn roles_resolve_by_name() {
    let (sim, client) = start(SimOptions::default()).await;
    let resolved = client
        .resolve_roles(&[
            "privx-operator".into(),
            "app-readers".into(),
            "no-such-role".into(),
        ])
        .await
        .expect("resolve");
    let pairs: BTreeSet<_> = resolved
        .iter()
        .map(|r| (r.name.as_str(), r.id.as_str()))
        .collect();
    assert_eq!(
        pairs,
        BTreeSet::from([
            ("privx-operator", demo::ROLE_PRIVX_OPERATOR),
            ("app-readers", demo::ROLE_APP_READERS)
        ])
    );
    assert!(client.resolve_roles(&[]).await.unwrap().is_empty());
    sim.shutdown().await;
}

/// Creates 260 secrets and lists them back, with `count` as a total and as a page size.
#[tokio::test]
async fn paging_over_more_than_250_secrets() {
    for list_count in [ListCount::Total, ListCount::PageSize] {
        let (sim, client) = start(SimOptions {
            list_count,
            ..Default::default()
        })
        .await;
        let mut expected: BTreeSet<String> = client
            .list_secrets(&SecretLocation::Shared)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let seeded = privx_sim::demo_seed()
            .secrets
            .iter()
            .filter(|s| s.owner_id.is_none())
            .count();
        assert_eq!(expected.len(), seeded, "the demo seed's shared secrets");
        assert!(seeded >= 2);
        for i in 0..260 {
            let name = format!("bulk/secret-{i:03}");
            client
                .create_secret(&SecretLocation::Shared, &name, &write(&[("n", "value")]))
                .await
                .unwrap();
            expected.insert(name);
        }
        sim.clear_requests();
        let listed = client.list_secrets(&SecretLocation::Shared).await.unwrap();
        let names: Vec<String> = listed.into_iter().map(|s| s.name).collect();
        let unique: BTreeSet<String> = names.iter().cloned().collect();
        assert_eq!(names.len(), unique.len(), "{list_count:?}: no duplicates");
        assert_eq!(unique, expected, "{list_count:?}: every secret");
        let pages = count_route(&sim, "GET /vault/api/v1/secrets");
        assert!((3..=4).contains(&pages), "{list_count:?}: {pages} pages");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn token_expiring_between_calls_fails_no_call() {
    let (sim, client) = start(SimOptions::default()).await;
    sim.set_token_lifetime(Duration::from_secs(2));
    client.list_secrets(&SecretLocation::Shared).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    client.list_secrets(&SecretLocation::Shared).await.unwrap();
    let log = sim.requests();
    assert_eq!(
        count_route(&sim, TOKEN_ROUTE),
        2,
        "a new grant for the second call"
    );
    assert!(
        log.iter().all(|r| r.status != 401),
        "no call met an expired token"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_calls_on_a_cold_cache_make_one_token_request() {
    let (sim, client) = start(SimOptions::default()).await;
    // A slow login, so that every call arrives while the grant is in flight.
    sim.set_faults(vec![Fault::latency(
        TOKEN_ROUTE,
        Duration::from_millis(300),
    )]);
    let calls = (0..50).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().expect("call succeeds");
    }
    assert_eq!(count_route(&sim, TOKEN_ROUTE), 1);
    assert_eq!(count_route(&sim, "GET /vault/api/v1/secrets/{name}"), 50);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_401_causes_one_refresh_and_one_retry() {
    let (sim, client) = start(SimOptions::default()).await;
    client.ping().await.unwrap();
    sim.expire_all_tokens();
    sim.clear_requests();
    let secret = client
        .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
        .await
        .expect("retried after a refresh");
    assert_eq!(secret.name, demo::SECRET_UPSTREAM);
    let seen: Vec<(String, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.route, r.status))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("GET /vault/api/v1/secrets/{name}".to_string(), 401),
            (TOKEN_ROUTE.to_string(), 200),
            ("GET /vault/api/v1/secrets/{name}".to_string(), 200),
        ]
    );

    // A 401 that persists: one refresh, one retry, then Unauthenticated (never a loop).
    sim.clear_requests();
    sim.set_faults(vec![Fault::status("GET /vault/api/v1/secrets/{name}", 401)]);
    let err = client
        .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
        .await
        .unwrap_err();
    assert!(matches!(err, PrivxError::Unauthenticated { .. }), "{err:?}");
    assert_eq!(count_route(&sim, "GET /vault/api/v1/secrets/{name}"), 2);
    assert_eq!(count_route(&sim, TOKEN_ROUTE), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn typed_errors_for_denied_missing_and_duplicate() {
    for duplicate_status in [400, 409] {
        let (sim, client) = start(SimOptions {
            duplicate_status,
            ..Default::default()
        })
        .await;
        let at = SecretLocation::Shared;
        client
            .create_secret(&at, "dup", &write(&[("k", "value-1")]))
            .await
            .unwrap();
        let err = client
            .create_secret(&at, "dup", &write(&[("k", "value-2")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrivxError::AlreadyExists { .. }),
            "{duplicate_status}: {err:?}"
        );
        assert!(matches!(
            client.get_secret(&at, "never-created").await,
            Err(PrivxError::NotFound { .. })
        ));
        // The operator's roles are not among the legacy secret's write roles.
        let err = client
            .update_secret(&at, demo::SECRET_LEGACY, &write(&[("password", "x-value")]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrivxError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn retries_with_backoff_on_503_and_max_load_then_gives_up() {
    let (sim, client) = start(SimOptions::default()).await;
    let route = "GET /vault/api/v1/secrets/{name}";
    let at = SecretLocation::Shared;

    // Two proxy 503s, then success.
    sim.set_faults(vec![Fault::status(route, 503).for_next(2)]);
    client
        .get_secret(&at, demo::SECRET_UPSTREAM)
        .await
        .expect("third try works");
    assert_eq!(count_route(&sim, route), 3);

    // MAX_LOAD with a Retry-After, once: the service is paused for every caller (the
    // circuit breaker, tests/breaker.rs), so the call is not retried into the pause; the
    // breaker's probe after the pause lets calls go again.
    sim.clear_requests();
    sim.set_faults(vec![
        Fault::status(route, 503)
            .with_code("MAX_LOAD")
            .with_retry_after(1)
            .for_next(1),
    ]);
    let err = client
        .get_secret(&at, demo::SECRET_UPSTREAM)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrivxError::Unavailable { retry_after: Some(d), refused: false, .. } if d == Duration::from_secs(1)),
        "{err:?}"
    );
    assert_eq!(count_route(&sim, route), 1);
    let mut breakers = client.breakers().subscribe();
    breakers
        .wait_for(|s| s.state(privx_client::Service::Vault) == privx_client::BreakerState::Closed)
        .await
        .unwrap();
    client
        .get_secret(&at, demo::SECRET_UPSTREAM)
        .await
        .expect("after the pause");

    // A dropped connection is retried too.
    sim.clear_requests();
    sim.set_faults(vec![Fault::drop_connection(route).for_next(1)]);
    client
        .get_secret(&at, demo::SECRET_UPSTREAM)
        .await
        .expect("after a drop");

    // Overloaded for good: 1 + max_retries attempts, then a clean retryable error.
    sim.clear_requests();
    sim.set_faults(vec![Fault::status(route, 500).with_code("MAX_LOAD")]);
    let err = client
        .get_secret(&at, demo::SECRET_UPSTREAM)
        .await
        .unwrap_err();
    assert!(matches!(err, PrivxError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(count_route(&sim, route), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn names_with_spaces_slashes_and_non_ascii_round_trip() {
    let (sim, client) = start(SimOptions::default()).await;
    let at = SecretLocation::Shared;
    let names = [
        "with spaces in it",
        "k8s/ns/with/slashes",
        "ääkköset/日本語 ✓",
        "odd%chars?#&+=",
    ];
    for name in names {
        client
            .create_secret(&at, name, &write(&[("k", "value")]))
            .await
            .unwrap_or_else(|e| panic!("create {name:?}: {e}"));
        let got = client.get_secret(&at, name).await.unwrap();
        assert_eq!(got.name, name);
        client
            .update_secret(&at, name, &write(&[("k", "other")]))
            .await
            .unwrap();
        assert_eq!(
            client.get_secret_metadata(&at, name).await.unwrap().name,
            name
        );
    }
    let listed: BTreeSet<String> = client
        .list_secrets(&at)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for name in names {
        assert!(listed.contains(name), "{name:?} listed");
        client.delete_secret(&at, name).await.unwrap();
    }
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.path == "/vault/api/v1/secrets/k8s%2Fns%2Fwith%2Fslashes"),
        "a slash travels as %2F"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn secret_values_never_appear_in_errors() {
    const VALUE: &str = "TOP-SECRET-VALUE-8d1f";
    let (sim, client) = start(SimOptions::default()).await;
    let at = SecretLocation::Shared;
    let body = write(&[("password", VALUE)]);
    assert!(!format!("{body:?}").contains(VALUE));
    client
        .create_secret(&at, "leak-check", &body)
        .await
        .unwrap();

    let mut errors = vec![
        client
            .create_secret(&at, "leak-check", &body)
            .await
            .unwrap_err(),
        client
            .update_secret(&at, demo::SECRET_LEGACY, &body)
            .await
            .unwrap_err(),
    ];
    sim.set_faults(vec![Fault::status("PUT /vault/api/v1/secrets/{name}", 400)]);
    errors.push(
        client
            .update_secret(&at, "leak-check", &body)
            .await
            .unwrap_err(),
    );
    sim.set_faults(vec![Fault::status("PUT /vault/api/v1/secrets/{name}", 503)]);
    errors.push(
        client
            .update_secret(&at, "leak-check", &body)
            .await
            .unwrap_err(),
    );
    sim.set_faults(vec![Fault::drop_connection(
        "PUT /vault/api/v1/secrets/{name}",
    )]);
    errors.push(
        client
            .update_secret(&at, "leak-check", &body)
            .await
            .unwrap_err(),
    );
    sim.set_faults(vec![]);
    let huge = write(&[("password", VALUE), ("blob", &"x".repeat(1_100_000))]);
    errors.push(
        client
            .update_secret(&at, "leak-check", &huge)
            .await
            .unwrap_err(),
    );

    let labels: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            PrivxError::AlreadyExists { .. } => "already_exists",
            PrivxError::PermissionDenied { .. } => "permission_denied",
            PrivxError::InvalidRequest { .. } => "invalid_request",
            PrivxError::Unavailable { .. } => "unavailable",
            _ => "other",
        })
        .collect();
    assert_eq!(
        labels,
        [
            "already_exists",
            "permission_denied",
            "invalid_request",
            "unavailable",
            "unavailable",
            "invalid_request"
        ]
    );
    for err in &errors {
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(VALUE), "leak: {shown}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_back_off_without_new_logins() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let mut wrong = credentials(&sim.credentials());
    wrong.api_client_secret = "not-the-secret".into();
    let client = PrivxClient::new(config(&sim, CredentialSource::Static(wrong))).unwrap();
    let first = client.ping().await.unwrap_err();
    assert!(
        matches!(first, PrivxError::Unauthenticated { .. }),
        "{first:?}"
    );
    assert!(first.to_string().contains("invalid_grant"), "{first}");
    assert!(!first.to_string().contains("not-the-secret"));
    for _ in 0..5 {
        let again = client
            .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
            .await
            .unwrap_err();
        assert!(matches!(again, PrivxError::Unauthenticated { .. }));
    }
    assert_eq!(count_route(&sim, TOKEN_ROUTE), 1, "one failed login only");
    assert_eq!(sim.requests().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn credential_files_are_reread_when_they_change() {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let right = sim.credentials();
    let other = sim
        .credentials_of(demo::SOMEONE_ELSE_CLIENT_NAME)
        .expect("second API client");
    let dir = tempdir();
    let write_files = |c: &SimCredentials| {
        for (file, value) in [
            ("oauth-client-id", &c.oauth_client_id),
            ("oauth-client-secret", &c.oauth_client_secret),
            ("api-client-id", &c.api_client_id),
            ("api-client-secret", &c.api_client_secret),
        ] {
            // A trailing newline, as `kubectl create secret --from-file` often leaves one.
            std::fs::write(dir.join(file), format!("{value}\n")).unwrap();
        }
    };
    let mut wrong = right.clone();
    wrong.api_client_secret = "stale-secret".into();
    write_files(&wrong);
    let source = CredentialSource::Files {
        oauth_client_id: dir.join("oauth-client-id"),
        oauth_client_secret: dir.join("oauth-client-secret"),
        api_client_id: dir.join("api-client-id"),
        api_client_secret: dir.join("api-client-secret"),
    };
    let client = PrivxClient::new(config(&sim, source)).unwrap();
    assert!(matches!(
        client.ping().await,
        Err(PrivxError::Unauthenticated { .. })
    ));

    // The mounted Secret is rotated: the refusal is lifted and the new values are used.
    write_files(&right);
    client.ping().await.expect("new credentials work at once");
    client
        .list_secrets(&SecretLocation::Shared)
        .await
        .expect("calls work");

    // Rotated to another API client: the cached token is dropped and a new login made.
    write_files(&other);
    client.list_secrets(&SecretLocation::Shared).await.unwrap();
    let last = sim.requests().into_iter().last().unwrap();
    assert_eq!(
        last.client_id.as_deref(),
        Some(demo::SOMEONE_ELSE_CLIENT_ID)
    );
    assert_eq!(count_route(&sim, TOKEN_ROUTE), 3);
    std::fs::remove_dir_all(&dir).ok();
    sim.shutdown().await;
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "privx-client-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn tls_with_a_private_ca_bundle() {
    let sim = Simulator::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(sim.base_url().starts_with("https://"));
    let dir = tempdir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    let source = || CredentialSource::Static(credentials(&sim.credentials()));

    let mut trusted = config(&sim, source());
    trusted.ca_file = Some(ca.clone());
    trusted.ca_only = true;
    let client = PrivxClient::new(trusted).unwrap();
    client.ping().await.expect("the private CA is trusted");

    let mut untrusted = config(&sim, source());
    untrusted.max_retries = 0;
    let client = PrivxClient::new(untrusted).unwrap();
    let err = client.ping().await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "verification is on: {err}"
    );

    // The CA bundle is re-read when it changes: first another CA, then the right one.
    let other_sim = Simulator::start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let rotating = dir.join("rotating.pem");
    std::fs::write(&rotating, other_sim.ca_pem().unwrap()).unwrap();
    let mut rotated = config(&sim, source());
    rotated.ca_file = Some(rotating.clone());
    rotated.ca_only = true;
    rotated.max_retries = 0;
    let client = PrivxClient::new(rotated).unwrap();
    assert!(client.ping().await.is_err(), "another CA is not trusted");
    std::fs::write(&rotating, format!("{}\n", sim.ca_pem().unwrap())).unwrap();
    client.ping().await.expect("the rotated bundle is used");
    other_sim.shutdown().await;

    let mut broken = config(&sim, source());
    std::fs::write(dir.join("bad.pem"), "not a certificate").unwrap();
    broken.ca_file = Some(dir.join("bad.pem"));
    assert!(matches!(
        PrivxClient::new(broken),
        Err(PrivxError::Config(_))
    ));
    std::fs::remove_dir_all(&dir).ok();
    sim.shutdown().await;
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<CallRecord>>,
    refreshes: Mutex<Vec<bool>>,
}

impl CallObserver for Recorder {
    fn on_call(&self, record: &CallRecord) {
        self.calls.lock().unwrap().push(record.clone());
    }
    fn on_token_refresh(&self, ok: bool) {
        self.refreshes.lock().unwrap().push(ok);
    }
}

#[tokio::test]
async fn calls_are_reported_by_route_template_and_status() {
    let (sim, client) = start(SimOptions::default()).await;
    let recorder = Arc::new(Recorder::default());
    let client = client.with_observer(recorder.clone());
    client
        .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
        .await
        .unwrap();
    let _ = client
        .get_secret(&SecretLocation::Shared, "missing one")
        .await;
    let calls: Vec<(&str, u16)> = recorder
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        calls,
        vec![
            (TOKEN_ROUTE, 200),
            ("GET /vault/api/v1/secrets/{name}", 200),
            ("GET /vault/api/v1/secrets/{name}", 404),
        ]
    );
    assert_eq!(*recorder.refreshes.lock().unwrap(), vec![true]);
    sim.shutdown().await;
}

fn policy(name: &str) -> PasswordPolicy {
    PasswordPolicy {
        name: name.into(),
        rotation_interval: Some(Duration::from_secs(30 * 86400)),
        password_min_length: Some(12),
        password_max_length: Some(24),
        use_special_characters: Some(true),
        use_lower_case: Some(true),
        use_upper_case: Some(true),
        use_numbers: Some(true),
        max_versions: Some(3),
        number_of_retries: Some(2),
        retry_interval: Some(Duration::from_secs(300)),
        ..Default::default()
    }
}

async fn policy_lifecycle(client: &PrivxClient, generation: PolicyGeneration) {
    let mut p = policy("k8s-test-policy");
    match generation {
        PolicyGeneration::V34 => {
            p.delete_version_after = Some(Duration::from_secs(90 * 86400));
            p.fallback_to_previous = Some(true);
        }
        PolicyGeneration::V35 => {
            p.max_concurrent_checkouts = Some(2);
            p.max_checkout_duration = Some(Duration::from_secs(3600));
            p.rotate_on_release = Some(true);
            p.verify_after_rotation = Some(false);
        }
    }
    let id = client.create_policy(&p).await.expect("create policy");
    let got = client.get_policy(&id).await.expect("get policy");
    assert_eq!(got.id.as_deref(), Some(id.as_str()));
    let mut comparable = got.clone();
    comparable.id = None;
    comparable.created = None;
    comparable.updated = None;
    comparable.created_by = None;
    comparable.updated_by = None;
    assert_eq!(comparable, p, "{generation:?} round trip");

    let listed = client.list_policies().await.expect("list policies");
    assert!(listed.iter().any(|q| q.id.as_deref() == Some(id.as_str())));
    assert!(listed.iter().any(|q| q.name == "default-rotation"));

    p.password_min_length = Some(14);
    p.rotation_interval = Some(Duration::from_secs(7 * 86400));
    client.update_policy(&id, &p).await.expect("update policy");
    let got = client.get_policy(&id).await.unwrap();
    assert_eq!(got.password_min_length, Some(14));
    assert_eq!(got.rotation_interval, Some(Duration::from_secs(7 * 86400)));

    // A field the generation lacks is refused by the client, naming the field.
    let mut foreign = policy("foreign");
    match generation {
        PolicyGeneration::V34 => foreign.rotate_on_release = Some(true),
        PolicyGeneration::V35 => foreign.fallback_to_previous = Some(true),
    }
    let err = client.create_policy(&foreign).await.unwrap_err();
    let expected_field = match generation {
        PolicyGeneration::V34 => "rotateOnRelease",
        PolicyGeneration::V35 => "fallbackToPrevious",
    };
    assert!(
        matches!(&err, PrivxError::Unsupported { field, .. } if field == expected_field),
        "{err:?}"
    );

    client.delete_policy(&id).await.expect("delete policy");
    assert!(matches!(
        client.get_policy(&id).await,
        Err(PrivxError::NotFound { .. })
    ));
}

#[tokio::test]
async fn password_policies_in_both_generations() {
    for (sim_generation, generation) in [
        (SimPolicyGeneration::V34, PolicyGeneration::V34),
        (SimPolicyGeneration::V35, PolicyGeneration::V35),
    ] {
        for report_version in [true, false] {
            let (sim, client) = start(SimOptions {
                policy_generation: sim_generation,
                report_version,
                policy_list_shape: if report_version {
                    PolicyListShape::Object
                } else {
                    PolicyListShape::WrappedInArray
                },
                ..Default::default()
            })
            .await;
            assert_eq!(
                client.policy_generation().await.unwrap(),
                generation,
                "detected (version reported: {report_version})"
            );
            policy_lifecycle(&client, generation).await;
            sim.shutdown().await;
        }
    }
}

/// Without a version and without any policy to look at, the client guesses, and corrects the
/// guess once when the server refuses a generation-specific field.
#[tokio::test]
async fn guessed_generation_is_corrected_once() {
    let mut seed = privx_sim::demo_seed();
    seed.policies.clear();
    let (sim, client) = start(SimOptions {
        seed,
        policy_generation: SimPolicyGeneration::V34,
        report_version: false,
        ..Default::default()
    })
    .await;
    let id = client
        .create_policy(&policy("after-a-wrong-guess"))
        .await
        .expect("created after switching generation");
    assert_eq!(
        client.policy_generation().await.unwrap(),
        PolicyGeneration::V34
    );
    let got = client.get_policy(&id).await.unwrap();
    assert_eq!(got.rotation_interval, Some(Duration::from_secs(30 * 86400)));
    assert_eq!(
        count_route(&sim, "POST /secrets-manager/api/v1/password-policy"),
        2,
        "one refused try in the guessed generation, one in the other"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn configured_generation_is_used_without_detection() {
    let sim = Simulator::start(SimOptions {
        policy_generation: SimPolicyGeneration::V35,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut config = config(
        &sim,
        CredentialSource::Static(credentials(&sim.credentials())),
    );
    config.policy_generation = PolicyGenerationSetting::V35;
    let client = PrivxClient::new(config).unwrap();
    assert_eq!(
        client.policy_generation().await.unwrap(),
        PolicyGeneration::V35
    );
    assert!(sim.requests().is_empty(), "no detection calls");
    sim.shutdown().await;
}
