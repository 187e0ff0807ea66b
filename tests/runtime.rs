//! The runtime's parts over real I/O: the HTTP endpoints on a 127.0.0.1 port, leader election
//! and the CRD wait against kube-rs's mock API service, and the shutdown signal with a real
//! SIGTERM; the count of Kubernetes writes against the fake API with the real runner.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition, CustomResourceDefinitionStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::client::Body;
use privx_client::{CallObserver, CallRecord};
use privx_operator::controller::core::ControllerMetrics;
use privx_operator::runtime::crds::{CrdWait, wait_for_crds_established_every};
use privx_operator::runtime::http::{Health, serve_on};
use privx_operator::runtime::leader::{Attempt, LeaderElector, LeaseConfig};
use privx_operator::runtime::metrics::Metrics;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_test::mock;

type MockHandle = mock::Handle<Request<Body>, Response<Body>>;
type Responder = mock::SendResponse<Response<Body>>;

/// Guards against a hang (a missing mock answer); never used to assert how fast anything is.
const HANG_GUARD: Duration = Duration::from_secs(30);

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress (a request the test did not expect?)"))
}

// ---------------------------------------------------------------- HTTP endpoints

fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test]
async fn http_endpoints_serve_liveness_readiness_and_metrics_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let health = Health::new();
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_on(
        listener,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let client = http_client();
    let get = |path: &str| {
        let request = client.get(format!("{base}{path}")).send();
        async move {
            let response = guarded("GET", request).await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };

    let (status, _, body) = get("/livez").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("watches not synced"), "{body}");
    health.set_watches_synced(true);
    let (status, _, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "PrivX has not answered yet");
    health.set_privx_ok(true);
    let (status, _, body) = get("/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    health.set_privx_ok(false);
    assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);

    // As the controllers report a failed reconcile (an error's label, see `controller::core::outcome`).
    ControllerMetrics::reconciled(
        &*metrics,
        "vaultsecret",
        Duration::from_millis(20),
        Some("privx_unavailable"),
    );
    metrics.on_call(&CallRecord {
        endpoint: "POST /auth/api/v1/oauth/token",
        status: 200,
        duration: Duration::from_millis(12),
    });
    metrics.set_object_condition("vaultsecret", "apps/db", "Ready", "False", "InvalidSpec");
    let (status, content_type, body) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    for line in [
        r#"privx_operator_reconciles_total{controller="vaultsecret"} 1"#,
        r#"privx_operator_reconcile_errors_total{controller="vaultsecret",reason="privx_unavailable"} 1"#,
        r#"privx_operator_privx_requests_total{endpoint="POST /auth/api/v1/oauth/token",status="200"} 1"#,
        r#"privx_operator_objects{controller="vaultsecret",condition="Ready",status="False",reason="InvalidSpec"} 1"#,
        "privx_operator_leader 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }

    let (status, _, _) = get("/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    shutdown.cancel();
    guarded("server shutdown", server).await.unwrap().unwrap();
    assert!(
        client.get(format!("{base}/livez")).send().await.is_err(),
        "the listener is closed after shutdown"
    );
}

#[tokio::test]
async fn serve_names_the_flag_when_the_address_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = privx_operator::runtime::http::serve(
        addr,
        Health::new(),
        Arc::new(Metrics::new()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("--http-addr"), "{message}");
    assert!(message.contains(&addr.to_string()), "{message}");
}

// ---------------------------------------------------------------- mock Kubernetes API

fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

async fn next_request(handle: &mut MockHandle) -> (Method, String, Vec<u8>, Responder) {
    let (request, responder) = guarded("next request", handle.next_request())
        .await
        .expect("the client is gone");
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect_bytes().await.unwrap().to_vec();
    (method, path, body, responder)
}

fn respond_json(responder: Responder, status: StatusCode, value: &impl serde::Serialize) {
    responder.send_response(
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(value).unwrap()))
            .unwrap(),
    );
}

fn respond_status(responder: Responder, code: u16, reason: &str) {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": format!("test says {reason}"),
        "reason": reason, "code": code,
    });
    respond_json(responder, StatusCode::from_u16(code).unwrap(), &status);
}

// ---------------------------------------------------------------- leader election

const NAMESPACE: &str = "privx-system";
const LEASE: &str = "privx-operator-leader";
const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/privx-system/leases/privx-operator-leader";
const LEASES_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/privx-system/leases";

fn lease_config(identity: &str, lease_duration: Duration) -> LeaseConfig {
    LeaseConfig {
        namespace: NAMESPACE.into(),
        name: LEASE.into(),
        identity: identity.into(),
        lease_duration,
    }
}

fn lease(holder: Option<&str>, renewed_ago: Duration, transitions: i32, rv: &str) -> Lease {
    // Microseconds, as the API server keeps them (MicroTime), so round trips compare equal.
    let renewed = (jiff::Timestamp::now() - jiff::SignedDuration::try_from(renewed_ago).unwrap())
        .round(jiff::Unit::Microsecond)
        .unwrap();
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            namespace: Some(NAMESPACE.into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

fn parse_lease(body: &[u8]) -> Lease {
    serde_json::from_slice(body).expect("the request body is a Lease")
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref()
}

/// Runs one `try_acquire_or_renew` against a scripted API server.
async fn one_attempt<S, F>(identity: &str, script: S) -> Attempt
where
    S: FnOnce(MockHandle) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (client, handle) = mock_client();
    let server = tokio::spawn(script(handle));
    let elector = LeaderElector::new(client, lease_config(identity, Duration::from_secs(15)));
    let attempt = guarded("attempt", elector.try_acquire_or_renew())
        .await
        .unwrap();
    // Closes the mock service, so a script waiting for one more request sees there is none.
    drop(elector);
    guarded("script", server).await.unwrap();
    attempt
}

#[tokio::test]
async fn acquires_a_lease_that_does_not_exist_by_creating_it() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (method, path, _, responder) = next_request(&mut handle).await;
        assert_eq!((method, path.as_str()), (Method::GET, LEASE_PATH));
        respond_status(responder, 404, "NotFound");

        let (method, path, body, responder) = next_request(&mut handle).await;
        assert_eq!((method, path.as_str()), (Method::POST, LEASES_PATH));
        let created = parse_lease(&body);
        assert_eq!(holder(&created), Some("pod-a"));
        let spec = created.spec.as_ref().unwrap();
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert!(spec.renew_time.is_some());
        respond_json(responder, StatusCode::CREATED, &created);
    })
    .await;
    assert_eq!(attempt, Attempt::Leading);
}

#[tokio::test]
async fn losing_the_create_race_means_not_leader() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        respond_status(responder, 404, "NotFound");
        let (method, _, _, responder) = next_request(&mut handle).await;
        assert_eq!(method, Method::POST);
        respond_status(responder, 409, "AlreadyExists");
    })
    .await;
    assert_eq!(attempt, Attempt::Conflict);
}

#[tokio::test]
async fn acquires_a_released_lease_with_its_resource_version() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        respond_json(
            responder,
            StatusCode::OK,
            &lease(None, Duration::ZERO, 4, "41"),
        );

        let (method, path, body, responder) = next_request(&mut handle).await;
        assert_eq!((method, path.as_str()), (Method::PUT, LEASE_PATH));
        let written = parse_lease(&body);
        assert_eq!(written.metadata.resource_version.as_deref(), Some("41"));
        assert_eq!(holder(&written), Some("pod-a"));
        assert_eq!(written.spec.as_ref().unwrap().lease_transitions, Some(5));
        respond_json(responder, StatusCode::OK, &written);
    })
    .await;
    assert_eq!(attempt, Attempt::Leading);
}

#[tokio::test]
async fn does_not_touch_an_unexpired_lease_of_another_holder() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (method, _, _, responder) = next_request(&mut handle).await;
        assert_eq!(method, Method::GET);
        let held = lease(Some("pod-b"), Duration::from_secs(2), 1, "7");
        respond_json(responder, StatusCode::OK, &held);
        // The elector must answer from this read alone: no further request may come.
        assert!(
            handle.next_request().await.is_none(),
            "no write after the read"
        );
    })
    .await;
    assert_eq!(
        attempt,
        Attempt::Following {
            holder: "pod-b".into()
        }
    );
}

#[tokio::test]
async fn takes_over_an_expired_lease() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        let expired = lease(Some("pod-b"), Duration::from_secs(60), 2, "8");
        respond_json(responder, StatusCode::OK, &expired);

        let (method, _, body, responder) = next_request(&mut handle).await;
        assert_eq!(method, Method::PUT);
        let written = parse_lease(&body);
        assert_eq!(written.metadata.resource_version.as_deref(), Some("8"));
        assert_eq!(holder(&written), Some("pod-a"));
        let spec = written.spec.as_ref().unwrap();
        assert_eq!(spec.lease_transitions, Some(3));
        let old_renewal = expired
            .spec
            .as_ref()
            .unwrap()
            .renew_time
            .as_ref()
            .unwrap()
            .0;
        assert!(spec.renew_time.as_ref().unwrap().0 > old_renewal);
        respond_json(responder, StatusCode::OK, &written);
    })
    .await;
    assert_eq!(attempt, Attempt::Leading);
}

#[tokio::test]
async fn a_conflict_on_takeover_means_not_leader() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        let expired = lease(Some("pod-b"), Duration::from_secs(60), 2, "8");
        respond_json(responder, StatusCode::OK, &expired);
        let (method, _, _, responder) = next_request(&mut handle).await;
        assert_eq!(method, Method::PUT);
        respond_status(responder, 409, "Conflict");
    })
    .await;
    assert_eq!(attempt, Attempt::Conflict);
}

#[tokio::test]
async fn renews_its_own_lease_without_a_transition() {
    let attempt = one_attempt("pod-a", |mut handle| async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        let own = lease(Some("pod-a"), Duration::from_secs(5), 3, "9");
        respond_json(responder, StatusCode::OK, &own);
        let (method, _, body, responder) = next_request(&mut handle).await;
        assert_eq!(method, Method::PUT);
        let written = parse_lease(&body);
        let (old, new) = (own.spec.as_ref().unwrap(), written.spec.as_ref().unwrap());
        assert_eq!(written.metadata.resource_version.as_deref(), Some("9"));
        assert_eq!(new.lease_transitions, Some(3));
        assert_eq!(new.acquire_time, old.acquire_time);
        assert!(new.renew_time.as_ref().unwrap().0 > old.renew_time.as_ref().unwrap().0);
        respond_json(responder, StatusCode::OK, &written);
    })
    .await;
    assert_eq!(attempt, Attempt::Leading);
}

#[tokio::test]
async fn api_errors_name_the_lease() {
    let (client, mut handle) = mock_client();
    let server = tokio::spawn(async move {
        let (_, _, _, responder) = next_request(&mut handle).await;
        respond_status(responder, 403, "Forbidden");
    });
    let elector = LeaderElector::new(client, lease_config("pod-a", Duration::from_secs(15)));
    let error = elector.try_acquire_or_renew().await.unwrap_err();
    server.await.unwrap();
    let message = error.to_string();
    assert!(
        message.contains("privx-system/privx-operator-leader"),
        "{message}"
    );
}

/// A tiny API server for one Lease with the real rules: create fails if it exists, replace
/// fails unless the `resourceVersion` matches. Several candidates share it, each through its
/// own mock client.
#[derive(Default)]
struct LeaseStore {
    lease: Option<Lease>,
    version: u64,
    /// The holder of every successful write, in order.
    written_holders: Vec<Option<String>>,
    /// Reads per candidate.
    reads: std::collections::HashMap<String, usize>,
    /// While set, every request fails with 500 (the API server is unreachable).
    failing: bool,
    /// While set, requests get no answer at all (kept here so they never complete).
    hanging: Option<Vec<Responder>>,
}

impl LeaseStore {
    fn holder(&self) -> Option<String> {
        self.lease.as_ref().and_then(holder).map(str::to_owned)
    }
}

fn serve_lease_store(store: Arc<Mutex<LeaseStore>>, candidate: String, mut handle: MockHandle) {
    tokio::spawn(async move {
        while let Some((request, responder)) = handle.next_request().await {
            let method = request.method().clone();
            let body = request.into_body().collect_bytes().await.unwrap();
            let mut store = store.lock().unwrap();
            if let Some(unanswered) = store.hanging.as_mut() {
                unanswered.push(responder);
                continue;
            }
            if store.failing {
                respond_status(responder, 500, "InternalError");
                continue;
            }
            match method {
                Method::GET => {
                    *store.reads.entry(candidate.clone()).or_default() += 1;
                    match &store.lease {
                        Some(lease) => respond_json(responder, StatusCode::OK, lease),
                        None => respond_status(responder, 404, "NotFound"),
                    }
                }
                Method::POST if store.lease.is_some() => {
                    respond_status(responder, 409, "AlreadyExists")
                }
                Method::PUT
                    if store.lease.as_ref().map(|l| &l.metadata.resource_version)
                        != Some(&parse_lease(&body).metadata.resource_version) =>
                {
                    respond_status(responder, 409, "Conflict")
                }
                Method::POST | Method::PUT => {
                    store.version += 1;
                    let mut lease = parse_lease(&body);
                    lease.metadata.resource_version = Some(store.version.to_string());
                    respond_json(responder, StatusCode::OK, &lease);
                    let written_holder = holder(&lease).map(str::to_owned);
                    store.written_holders.push(written_holder);
                    store.lease = Some(lease);
                }
                other => panic!("unexpected {other} on the lease"),
            }
        }
    });
}

struct Candidate {
    leading: watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_candidate(
    store: &Arc<Mutex<LeaseStore>>,
    identity: &str,
    lease_duration: Duration,
) -> Candidate {
    let (client, handle) = mock_client();
    serve_lease_store(store.clone(), identity.to_owned(), handle);
    let elector = LeaderElector::new(client, lease_config(identity, lease_duration));
    let (on_change, leading) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(elector.run(on_change, shutdown.clone()));
    Candidate {
        leading,
        shutdown,
        task,
    }
}

async fn wait_until(receiver: &mut watch::Receiver<bool>, value: bool) {
    guarded("leadership change", receiver.wait_for(|v| *v == value))
        .await
        .expect("the elector is gone");
}

async fn wait_for_reads(store: &Arc<Mutex<LeaseStore>>, candidate: &str, reads: usize) {
    guarded("reads", async {
        while store
            .lock()
            .unwrap()
            .reads
            .get(candidate)
            .copied()
            .unwrap_or(0)
            < reads
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_steps_down() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let lease_duration = Duration::from_secs(5);
    let mut a = start_candidate(&store, "pod-a", lease_duration);
    wait_until(&mut a.leading, true).await;

    let mut b = start_candidate(&store, "pod-b", lease_duration);
    // Two looks at the held lease, and the standby still stands by.
    wait_for_reads(&store, "pod-b", 2).await;
    assert!(!*b.leading.borrow(), "two leaders at once");
    assert!(*a.leading.borrow());
    assert_eq!(store.lock().unwrap().holder().as_deref(), Some("pod-a"));

    a.shutdown.cancel();
    guarded("leader stops", &mut a.task).await.unwrap();
    assert!(!*a.leading.borrow(), "a stopped leader says so");
    wait_until(&mut b.leading, true).await;

    b.shutdown.cancel();
    guarded("second leader stops", b.task).await.unwrap();
    let store = store.lock().unwrap();
    // A created and renewed, released, then B took over and released in turn: the lease
    // was never written for B while A held it.
    let holders: Vec<Option<&str>> = store.written_holders.iter().map(Option::as_deref).collect();
    let first_b = holders.iter().position(|h| *h == Some("pod-b")).unwrap();
    assert!(
        holders[..first_b - 1].iter().all(|h| *h == Some("pod-a")),
        "{holders:?}"
    );
    assert_eq!(
        holders[first_b - 1],
        None,
        "A released before B took over: {holders:?}"
    );
    assert_eq!(
        holders.last(),
        Some(&None),
        "B released on shutdown: {holders:?}"
    );
    assert_eq!(
        store
            .lease
            .as_ref()
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .lease_transitions,
        Some(1)
    );
}

#[tokio::test]
async fn a_standby_takes_over_after_the_leader_dies() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let lease_duration = Duration::from_secs(1);
    let mut a = start_candidate(&store, "pod-a", lease_duration);
    wait_until(&mut a.leading, true).await;
    let mut b = start_candidate(&store, "pod-b", lease_duration);
    wait_for_reads(&store, "pod-b", 1).await;

    // Killed: no step-down, the lease simply stops being renewed.
    a.task.abort();
    let _ = a.task.await;
    wait_until(&mut b.leading, true).await;
    {
        let store = store.lock().unwrap();
        assert_eq!(store.holder().as_deref(), Some("pod-b"));
        assert!(
            !store.written_holders.contains(&None),
            "nobody released: B took the expired lease"
        );
    }
    b.shutdown.cancel();
    guarded("leader stops", b.task).await.unwrap();
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_back_and_returns_when_it_can() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let mut a = start_candidate(&store, "pod-a", Duration::from_secs(1));
    wait_until(&mut a.leading, true).await;

    store.lock().unwrap().failing = true;
    wait_until(&mut a.leading, false).await;
    // Nobody took the lease: A gave up because its renew deadline passed.
    assert_eq!(store.lock().unwrap().holder().as_deref(), Some("pod-a"));

    store.lock().unwrap().failing = false;
    wait_until(&mut a.leading, true).await;
    a.shutdown.cancel();
    guarded("leader stops", a.task).await.unwrap();
    assert_eq!(store.lock().unwrap().holder(), None);
}

#[tokio::test]
async fn a_leader_whose_renewal_hangs_steps_back_by_the_deadline() {
    let store = Arc::new(Mutex::new(LeaseStore::default()));
    let mut a = start_candidate(&store, "pod-a", Duration::from_secs(3));
    wait_until(&mut a.leading, true).await;

    store.lock().unwrap().hanging = Some(Vec::new());
    wait_until(&mut a.leading, false).await;
    assert!(!store.lock().unwrap().hanging.as_ref().unwrap().is_empty());
    a.shutdown.cancel();
    guarded("elector stops", a.task).await.unwrap();
}

// ---------------------------------------------------------------- CRD wait

const CRD_PATH: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/";

fn crd(name: &str, established: &str) -> CustomResourceDefinition {
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: Some(CustomResourceDefinitionStatus {
            conditions: Some(vec![CustomResourceDefinitionCondition {
                type_: "Established".into(),
                status: established.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn crd_wait_polls_until_every_crd_is_established() {
    let (client, mut handle) = mock_client();
    let names = [
        "vaultsecrets.privx-operator.dev",
        "passwordpolicies.privx-operator.dev",
    ];
    let server = tokio::spawn(async move {
        // Poll 1: the first is missing; poll 2: installed, not established; poll 3: both ready.
        for (round, first_state) in [(1, None), (2, Some("False")), (3, Some("True"))] {
            for (index, name) in names.iter().enumerate() {
                let (method, path, _, responder) = next_request(&mut handle).await;
                assert_eq!(method, Method::GET);
                assert_eq!(path, format!("{CRD_PATH}{name}"), "round {round}");
                match (index, first_state) {
                    (0, None) => respond_status(responder, 404, "NotFound"),
                    (0, Some(state)) => respond_json(responder, StatusCode::OK, &crd(name, state)),
                    _ => respond_json(responder, StatusCode::OK, &crd(name, "True")),
                }
            }
        }
        assert!(
            handle.next_request().await.is_none(),
            "no poll after success"
        );
    });
    let outcome = guarded(
        "crd wait",
        wait_for_crds_established_every(
            client,
            &names,
            Duration::from_millis(10),
            CancellationToken::new(),
        ),
    )
    .await;
    assert_eq!(outcome, CrdWait::Established);
    guarded("script", server).await.unwrap();
}

#[tokio::test]
async fn crd_wait_ends_on_shutdown() {
    let (client, mut handle) = mock_client();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let (_, _, _, responder) = next_request(&mut handle).await;
            respond_status(responder, 404, "NotFound");
            shutdown.cancel();
        }
    });
    let outcome = guarded(
        "crd wait",
        wait_for_crds_established_every(
            client,
            &["vaultsecrets.privx-operator.dev"],
            Duration::from_secs(3600),
            shutdown,
        ),
    )
    .await;
    assert_eq!(outcome, CrdWait::Cancelled);
    server.await.unwrap();
}

// ---------------------------------------------------------------- shutdown signal

#[cfg(unix)]
#[tokio::test]
async fn sigterm_cancels_the_shutdown_token() {
    let token = privx_operator::runtime::shutdown::shutdown_signal().unwrap();
    assert!(!token.is_cancelled());
    // The handler is installed, so this SIGTERM reaches the token instead of ending the tests.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    guarded("shutdown token", token.cancelled()).await;
}

// ---------------------------------------------------------------- Kubernetes writes metric

#[tokio::test]
async fn every_kubernetes_write_of_a_reconcile_is_counted_by_verb_and_resource() {
    use privx_operator::controller::core::ControllerMetrics;
    use privx_operator::controller::vault_secret::Settings;
    use privx_operator::controller::vault_secret::hashing::HmacKey;
    use privx_operator::runtime::kube_writes;
    use privx_operator::runtime::runner::{self, RunOptions};
    use support::running::{
        eventually, namespace_object, push_mirror_spec, ready_reason, secret_object,
        vault_secret_object,
    };

    let sim = privx_sim::Simulator::start(privx_sim::SimOptions::default())
        .await
        .unwrap();
    let privx = support::privx_client_for(&sim, sim.credentials());
    let kube = support::FakeKube::default();
    kube.put(
        "/api/v1/namespaces/apps",
        namespace_object("apps", json!({})),
    );
    kube.put(
        &support::secret_path("apps", "db-creds"),
        secret_object("apps", "db-creds", &[("password", "s3cret-value")]),
    );
    kube.put(
        &support::vs_path("apps", "db"),
        vault_secret_object("apps", "db", push_mirror_spec("db-creds")),
    );

    let metrics = Arc::new(Metrics::new());
    let client = kube_writes::counted(kube.client(), metrics.clone());
    let stop = CancellationToken::new();
    let run = tokio::spawn({
        let controller_metrics: Arc<dyn ControllerMetrics> = metrics.clone();
        let stop = stop.clone();
        let settings = Settings {
            self_roles: vec!["privx-operator".to_string()].into(),
            hmac_key: HmacKey::new(vec![5; 32]),
            ..Settings::default()
        };
        let options = RunOptions {
            namespaces: vec![],
            concurrency: 2,
            instance: None,
            privx_identity: Some(sim.credentials().api_client_id.clone()),
            ..Default::default()
        };
        runner::run(
            client,
            privx,
            settings,
            controller_metrics,
            options,
            stop,
            |_| {},
        )
    });
    eventually("the VaultSecret Synced", HANG_GUARD, || {
        ready_reason(&kube, "apps", "db") == "Synced"
    })
    .await;

    let metric = |verb: &str, resource: &str| {
        metrics
            .encode()
            .lines()
            .find_map(|line| {
                line.strip_prefix(&format!(
                    r#"privx_operator_kubernetes_writes_total{{verb="{verb}",resource="{resource}"}} "#
                ))
                .map(|v| v.parse::<f64>().unwrap() as usize)
            })
            .unwrap_or(0)
    };
    // What the fake API received, by "verb resource", is what the metric says.
    eventually(
        "the metric to match the writes the API received",
        HANG_GUARD,
        || {
            let received = kube.write_counts();
            !received.is_empty()
                && received.iter().all(|(key, count)| {
                    let (verb, resource) = key.split_once(' ').unwrap();
                    metric(verb, resource) == *count
                })
        },
    )
    .await;
    let received = kube.write_counts();
    for expected in ["patch vaultsecrets/status", "create events"] {
        assert!(received.contains_key(expected), "{received:?}");
    }
    assert!(
        received.keys().any(|k| k.ends_with(" secrets")),
        "the mirror is written: {received:?}"
    );
    let text = metrics.encode();
    assert!(
        !text.contains("s3cret-value") && !text.contains("db-creds"),
        "no value or object name in a label: {text}"
    );
    assert_eq!(metric("get", "secrets"), 0, "reads are not writes");

    stop.cancel();
    guarded("runner stops", run).await.unwrap();
}

/// kube's default retries of a 503 (15, backing off to 1,000 s) would hold a reconcile and its
/// worker for minutes; the operator's client tries `1 + RETRIES` times, then the error reaches
/// the controller (whose backoff and status take over).
#[tokio::test]
async fn the_operators_client_hands_an_unavailable_api_back_after_a_few_retries() {
    use k8s_openapi::api::core::v1::Secret;
    use privx_operator::runtime::kube_writes;
    use support::fake_kube::Fault;

    let kube = support::FakeKube::default();
    let served = kube.serve_http().await.unwrap();
    let client = kube_writes::client(served.config("demo"), Arc::new(Metrics::new())).unwrap();
    let api: kube::Api<Secret> = kube::Api::default_namespaced(client);
    assert_eq!(
        guarded("a 404", api.get_opt("x"))
            .await
            .unwrap()
            .map(|s| s.metadata.name),
        None
    );

    kube.fail(Fault::Unavailable);
    let error = guarded("the error comes back", api.get("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 503),
        "{error}"
    );
    assert_eq!(kube.refused(), 1 + kube_writes::RETRIES as usize);
}

/// The same event about the same object twice is one Event with a series (count 2), as with
/// kube-rs's recorder; another note is another Event. The cache holds one entry per identity.
#[tokio::test]
async fn an_identical_event_joins_the_series_of_the_first() {
    use kube::runtime::events::{Event, EventType, Reporter};
    use privx_operator::controller::core::recorder::Recorder;

    let kube = support::FakeKube::default();
    let recorder = Recorder::new(
        kube.client(),
        Reporter {
            controller: "privx-operator".into(),
            instance: None,
        },
    );
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("privx-operator.dev/v1alpha1".into()),
        kind: Some("VaultSecret".into()),
        namespace: Some("demo".into()),
        name: Some("db".into()),
        uid: Some("u-1".into()),
        ..Default::default()
    };
    let event = |note: &str| Event {
        type_: EventType::Warning,
        reason: "PrivXUnavailable".into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event("down"), &regarding).await.unwrap();
    recorder.publish(&event("down"), &regarding).await.unwrap();
    recorder.publish(&event("other"), &regarding).await.unwrap();

    let counts = kube.write_counts();
    assert_eq!(counts.get("create events"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("patch events"), Some(&1), "{counts:?}");
    let events = kube.list("/apis/events.k8s.io/v1/namespaces/demo/events");
    let down = events
        .iter()
        .find(|e| e["note"] == "down")
        .expect("the first event");
    assert_eq!(down["series"]["count"], 2, "{down}");
    assert_eq!(down["regarding"]["uid"], "u-1");
    assert_eq!(down["reportingController"], "privx-operator");
    assert_eq!(recorder.cached(), 2);

    // The first Event gone (deleted, or expired by the API server): the next one starts anew.
    let name = down["metadata"]["name"].as_str().unwrap();
    kube.remove(&format!(
        "/apis/events.k8s.io/v1/namespaces/demo/events/{name}"
    ));
    recorder.publish(&event("down"), &regarding).await.unwrap();
    assert_eq!(kube.write_counts().get("create events"), Some(&3));
    let again = kube.list("/apis/events.k8s.io/v1/namespaces/demo/events");
    assert!(
        again
            .iter()
            .any(|e| e["note"] == "down" && e["series"].is_null()),
        "{again:?}"
    );
}
