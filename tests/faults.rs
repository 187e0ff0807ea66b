//! Faults the operator must survive (issue 13): PrivX outages (503, MAX_LOAD) during a burst
//! and during source changes, token expiry and revocation, 2 s PrivX latency, the API server's
//! watches closing, the operator killed mid-burst, a create whose answer is lost — each through
//! the real runner against the fake Kubernetes API and the PrivX simulator — and lease loss
//! (item 8): the elector, the lease gate and the gated clients, two candidates on one fake API.
//!
//! Wait limits (`eventually`) are generous bounds on how long a test may wait, not timed
//! assertions of performance; the bounds asserted are counts.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use privx_client::{PrivxClient, RoleHandle, SecretData, SecretLocation, SecretWrite};
use privx_operator::runtime::leader::{LeaderElector, LeaseConfig};
use privx_operator::runtime::lease_gate::LeaseGate;
use privx_sim::{Fault, SimOptions, Simulator, demo};
use serde_json::{Value, json};
use support::fake_kube::Fault as KubeFault;
use support::running::{
    Running, eventually, namespace_object, push_mirror_spec, ready_reason, secret_object,
    vault_secret_object,
};
use support::{FakeKube, NS, privx_client_for, secret_path, vs_path};

const LONG: Duration = Duration::from_secs(30);

// ---- lease loss (item 8) ----

const LEASE_NS: &str = "ops";
const LEASE: Duration = Duration::from_secs(1);

fn elector(kube: &FakeKube, identity: &str) -> LeaderElector {
    LeaderElector::new(
        kube.client(),
        LeaseConfig {
            namespace: LEASE_NS.into(),
            name: "privx-operator".into(),
            identity: identity.into(),
            lease_duration: LEASE,
        },
    )
}

/// Starts an elector; its leadership shows on the returned channel.
fn campaign(
    elector: LeaderElector,
    freezer: &Freezer,
) -> (
    tokio::sync::watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(freezer.wrap(elector.run(tx, Default::default())));
    (rx, task)
}

fn lease_holder(kube: &FakeKube) -> Option<String> {
    kube.get(&format!(
        "/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/privx-operator"
    ))
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

/// Freezes the futures it wraps as SIGSTOP freezes a process: they are not polled until
/// thawed (their timers fire meanwhile, their wake-ups wait).
#[derive(Clone, Default)]
struct Freezer {
    frozen: Arc<AtomicBool>,
    wakers: Arc<Mutex<Vec<Waker>>>,
}

impl Freezer {
    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        for waker in self.wakers.lock().unwrap().drain(..) {
            waker.wake();
        }
    }

    fn wrap<F: Future>(&self, future: F) -> Frozen<F> {
        Frozen {
            inner: Box::pin(future),
            freezer: self.clone(),
        }
    }
}

struct Frozen<F> {
    inner: Pin<Box<F>>,
    freezer: Freezer,
}

impl<F: Future> Future for Frozen<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.freezer.frozen.load(Ordering::SeqCst) {
            self.freezer.wakers.lock().unwrap().push(cx.waker().clone());
            return Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

fn secret_write(value: &str) -> SecretWrite {
    let role = RoleHandle {
        id: demo::ROLE_PRIVX_OPERATOR.into(),
        ..Default::default()
    };
    SecretWrite {
        data: SecretData([("password".to_string(), json!(value))].into()),
        read_roles: vec![role.clone()],
        write_roles: vec![role],
    }
}

/// What a leader's controllers do, reduced to writes: a ConfigMap apply and a PrivX create,
/// every 20 ms, through the gated clients. Counts the attempts.
async fn keep_writing(kube: kube::Client, privx: PrivxClient, who: &str, attempts: Arc<AtomicU64>) {
    let api: Api<ConfigMap> = Api::namespaced(kube, LEASE_NS);
    for i in 0u64.. {
        attempts.fetch_add(1, Ordering::SeqCst);
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{who}-writes")}, "data": {"n": i.to_string()}});
        let _ = api
            .patch(
                &format!("{who}-writes"),
                &PatchParams::apply(who).force(),
                &Patch::Apply(object),
            )
            .await;
        let _ = privx
            .create_secret(
                &SecretLocation::Shared,
                &format!("lease/{who}-{i}"),
                &secret_write("v"),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn configmap_writes(kube: &FakeKube, who: &str) -> usize {
    kube.writes_to(&format!(
        "/api/v1/namespaces/{LEASE_NS}/configmaps/{who}-writes"
    ))
    .len()
}

fn privx_creates(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.route == "POST /vault/api/v1/secrets")
        .count()
}

#[tokio::test]
async fn a_killed_leader_is_replaced_by_the_standby() {
    let kube = FakeKube::default();
    let none = Freezer::default();
    let a = elector(&kube, "a");
    let gate_a = a.gate();
    let (mut a_leads, a_task) = campaign(a, &none);
    a_leads.wait_for(|l| *l).await.unwrap();
    assert!(gate_a.is_open());
    let b = elector(&kube, "b");
    let gate_b = b.gate();
    let (mut b_leads, _b_task) = campaign(b, &none);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!*b_leads.borrow(), "a standby while the leader renews");
    assert!(!gate_b.is_open());

    // Killed: no step-down, the Lease runs out.
    a_task.abort();
    tokio::time::timeout(Duration::from_secs(10), b_leads.wait_for(|l| *l))
        .await
        .expect("the standby takes over once the lease has run out")
        .unwrap();
    assert_eq!(lease_holder(&kube).as_deref(), Some("b"));
    assert!(gate_b.is_open());
    // The dead leader's gate ran out on its own clock, too.
    assert!(!gate_a.is_open());
}

#[tokio::test]
async fn a_paused_leader_writes_nothing_after_the_hand_off() {
    let kube = FakeKube::default();
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let a_process = Freezer::default();
    let a = elector(&kube, "a");
    let gate_a = a.gate();
    let (mut a_leads, _a_task) = campaign(a, &a_process);
    a_leads.wait_for(|l| *l).await.unwrap();
    let attempts = Arc::new(AtomicU64::new(0));
    tokio::spawn(a_process.wrap(keep_writing(
        gate_a.kube_client(kube.client()),
        privx_client_for(&sim, sim.credentials()).with_write_gate(gate_a.privx_gate()),
        "a",
        attempts.clone(),
    )));
    eventually("the leader writes", LONG, || {
        configmap_writes(&kube, "a") >= 3 && privx_creates(&sim) >= 3
    })
    .await;

    let (mut b_leads, _b_task) = campaign(elector(&kube, "b"), &Freezer::default());
    // SIGSTOP: everything of process "a" stands still. What was on the wire settles.
    a_process.freeze();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kube_before = configmap_writes(&kube, "a");
    let privx_before = privx_creates(&sim);
    let attempts_before = attempts.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), b_leads.wait_for(|l| *l))
        .await
        .expect("the standby takes over the frozen leader's lease")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGCONT: "a" resumes where it stood, its writer first in line.
    a_process.thaw();
    eventually("the old leader's writer runs again", LONG, || {
        attempts.load(Ordering::SeqCst) >= attempts_before + 5
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), a_leads.wait_for(|l| !*l))
        .await
        .expect("the old leader learns it lost the lease")
        .unwrap();
    assert_eq!(
        configmap_writes(&kube, "a"),
        kube_before,
        "no Kubernetes write from the old leader after the hand-off"
    );
    assert_eq!(
        privx_creates(&sim),
        privx_before,
        "no PrivX write from the old leader after the hand-off"
    );
    assert!(
        gate_a.refused() >= 10,
        "its writes were refused: {}",
        gate_a.refused()
    );
    assert_eq!(lease_holder(&kube).as_deref(), Some("b"));
}

#[tokio::test]
async fn a_closed_gate_refuses_kubernetes_writes_but_not_reads_or_the_lease() {
    let kube = FakeKube::default();
    let gate = LeaseGate::closed();
    let client = gate.kube_client(kube.client());
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), LEASE_NS);
    assert!(configmaps.get_opt("x").await.unwrap().is_none(), "reads go");
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let err = configmaps
        .patch("x", &PatchParams::apply("t"), &Patch::Apply(object.clone()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no longer holds a valid leader lease"),
        "{err}"
    );
    assert!(kube.writes().is_empty(), "{:?}", kube.writes());
    assert_eq!(gate.refused(), 1);
    // The Lease itself is the elector's business: a gated client may still write it.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client, LEASE_NS);
    leases
        .patch(
            "l",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
            ),
        )
        .await
        .unwrap();
    // Open: writes go.
    gate.renewed(std::time::Instant::now(), LEASE, Duration::ZERO);
    configmaps
        .patch("x", &PatchParams::apply("t"), &Patch::Apply(object))
        .await
        .unwrap();
    assert_eq!(configmap_count(&kube), 1);
}

fn configmap_count(kube: &FakeKube) -> usize {
    kube.list(&format!("/api/v1/namespaces/{LEASE_NS}/configmaps/"))
        .len()
}

// ---- the fault suite: the real runner, the fake API, the simulator ----

async fn setup() -> (FakeKube, Arc<Simulator>) {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let kube = FakeKube::default();
    kube.put(
        &format!("/api/v1/namespaces/{NS}"),
        namespace_object(NS, json!({})),
    );
    (kube, Arc::new(sim))
}

fn start(kube: &FakeKube, sim: &Simulator) -> Running {
    Running::start(kube, sim, privx_client_for(sim, sim.credentials()), &[])
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A source Secret `<name>-src` holding `value` and a push + mirror VaultSecret `<name>`.
fn push(kube: &FakeKube, name: &str, value: &str, delete_policy: bool) {
    let source = format!("{name}-src");
    kube.put(
        &secret_path(NS, &source),
        secret_object(NS, &source, &[("password", value)]),
    );
    let mut spec = push_mirror_spec(&source);
    if delete_policy {
        spec["deletionPolicy"] = json!("Delete");
    }
    kube.put(&vs_path(NS, name), vault_secret_object(NS, name, spec));
}

/// The Ready condition's (reason, message).
fn ready(kube: &FakeKube, name: &str) -> (String, String) {
    let vs = kube.get(&vs_path(NS, name)).unwrap_or(Value::Null);
    let condition = vs["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null);
    let text = |k: &str| condition[k].as_str().unwrap_or_default().to_string();
    (text("reason"), text("message"))
}

fn all_have_reason(kube: &FakeKube, objects: &[String], reason: &str) -> bool {
    objects.iter().all(|n| ready_reason(kube, NS, n) == reason)
}

fn count_with_reason(kube: &FakeKube, objects: &[String], reason: &str) -> usize {
    objects
        .iter()
        .filter(|n| ready_reason(kube, NS, n) == reason)
        .count()
}

fn mirror_password(kube: &FakeKube, name: &str) -> Option<String> {
    use base64::Engine;
    let secret = kube.get(&secret_path(NS, name))?;
    let encoded = secret["data"]["password"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Requests that reached the simulator's vault service.
fn vault_requests(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.route.contains(" /vault/"))
        .count()
}

/// The most reconcile attempts one object can make within `window` under the per-object
/// backoff (each pause at least half its step: 0.5 s, 1 s, 2 s, ...), plus one for a trigger
/// that is not a retry (the object's own creation or its source's change).
fn attempts_within(window: Duration) -> usize {
    use privx_operator::controller::core::backoff::delay_for_attempt;
    let mut elapsed = Duration::ZERO;
    let mut attempts = 1;
    loop {
        elapsed += delay_for_attempt(attempts as u32) / 2;
        if elapsed > window {
            return attempts + 1;
        }
        attempts += 1;
    }
}

/// The client of `support::privx_client_for` sends each request at most twice (one retry).
const SENDS_PER_CALL: usize = 2;

/// Holds a PrivX fault for at least `window` and until `settled` holds (a slow machine
/// lengthens the outage instead of failing the test); returns how many vault requests arrived
/// meanwhile and how long the outage lasted.
async fn outage(
    sim: &Simulator,
    fault: Fault,
    window: Duration,
    during: impl FnOnce(),
    settled: impl FnMut() -> bool,
) -> (usize, Duration) {
    let started = std::time::Instant::now();
    sim.clear_requests();
    sim.set_faults(vec![fault]);
    during();
    tokio::time::sleep(window).await;
    eventually("every object reports the outage", LONG, settled).await;
    let requests = vault_requests(sim);
    let lasted = started.elapsed();
    sim.set_faults(vec![]);
    (requests, lasted)
}

/// The vault requests of an outage stay within the backoff's bound for `objects` objects
/// (printed for the record: `cargo test --test faults -- --nocapture`).
fn assert_bounded(what: &str, requests: usize, objects: usize, window: Duration) {
    let bound = objects * SENDS_PER_CALL * attempts_within(window);
    eprintln!(
        "{what}: {requests} vault requests in {window:?} for {objects} objects (bound {bound})"
    );
    assert!(
        requests <= bound,
        "{what}: {requests} vault requests in {window:?} (bound {bound})"
    );
}

#[tokio::test]
async fn privx_outage_during_a_burst_and_during_source_changes() {
    const N: usize = 40;
    let window = Duration::from_secs(4);
    let (kube, sim) = setup().await;
    let running = start(&kube, &sim);
    eventually("watches up", LONG, || running.up()).await;
    let objects = names("burst", N);

    // A burst of new objects while PrivX (behind its proxy) answers 503 with an HTML page.
    let kube_in = kube.clone();
    let objs = objects.clone();
    let (requests, lasted) = outage(
        &sim,
        Fault::status("/vault/*", 503),
        window,
        move || {
            for name in &objs {
                push(&kube_in, name, "v1", false);
            }
        },
        || all_have_reason(&kube, &objects, "PrivXUnavailable"),
    )
    .await;
    for name in &objects {
        let (_, message) = ready(&kube, name);
        assert!(message.ends_with(": HTTP 503 from vault"), "{message}");
        assert!(!message.contains('<'), "{message}");
        assert!(kube.get(&secret_path(NS, name)).is_none(), "no mirror yet");
    }
    assert_bounded("burst outage", requests, N, lasted);
    eventually("every object Synced after the outage", LONG, || {
        all_have_reason(&kube, &objects, "Synced")
    })
    .await;

    // Source changes while PrivX is overloaded (JSON MAX_LOAD): mirrors keep what PrivX had.
    let kube_in = kube.clone();
    let objs = objects.clone();
    let (requests, lasted) = outage(
        &sim,
        Fault::status("/vault/*", 503).with_code("MAX_LOAD"),
        window,
        move || {
            for name in &objs {
                let source = format!("{name}-src");
                kube_in.put(
                    &secret_path(NS, &source),
                    secret_object(NS, &source, &[("password", "v2")]),
                );
            }
        },
        || {
            objects.iter().all(|n| {
                ready(&kube, n)
                    .1
                    .ends_with("HTTP 503 from vault (MAX_LOAD)")
            })
        },
    )
    .await;
    for name in &objects {
        let (reason, message) = ready(&kube, name);
        assert_eq!(reason, "PrivXUnavailable", "{name}: {message}");
        assert!(
            message.ends_with(": HTTP 503 from vault (MAX_LOAD)"),
            "{message}"
        );
        assert!(!message.contains("injected fault"), "{message}");
        assert_eq!(
            mirror_password(&kube, name).as_deref(),
            Some("v1"),
            "the mirror is untouched during the outage"
        );
    }
    assert_bounded("MAX_LOAD outage", requests, N, lasted);
    eventually("every object Synced with the new value", LONG, || {
        all_have_reason(&kube, &objects, "Synced")
            && objects
                .iter()
                .all(|n| mirror_password(&kube, n).as_deref() == Some("v2"))
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn token_expiry_and_revocation_mid_burst_surface_no_error() {
    const N: usize = 30;
    let (kube, sim) = setup().await;
    sim.set_token_lifetime(Duration::from_secs(1));
    let running = start(&kube, &sim);
    eventually("watches up", LONG, || running.up()).await;
    let objects = names("tok", N);
    for (i, name) in objects.iter().enumerate() {
        push(&kube, name, "v1", false);
        if i % 10 == 5 {
            // Revoked: every token granted so far is answered 401 from now on.
            sim.expire_all_tokens();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    eventually("every object Synced", LONG, || {
        all_have_reason(&kube, &objects, "Synced")
    })
    .await;
    let grants = sim
        .requests()
        .iter()
        .filter(|r| r.route.contains("/oauth/token"))
        .count();
    assert!(grants >= 2, "tokens were renewed ({grants} grants)");
    let reasons = kube.event_reasons();
    assert!(
        !reasons
            .iter()
            .any(|r| r.contains("Unavailable") || r.contains("Unauth") || r.contains("Error")),
        "{reasons:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn two_seconds_of_privx_latency_still_get_everything_ready() {
    const N: usize = 6;
    let (kube, sim) = setup().await;
    sim.set_faults(vec![Fault::latency("/vault/*", Duration::from_secs(2))]);
    let running = start(&kube, &sim);
    eventually("watches up", LONG, || running.up()).await;
    let objects = names("slow", N);
    for name in &objects {
        push(&kube, name, "v1", false);
    }
    eventually(
        "every object Synced despite 2 s answers",
        Duration::from_secs(90),
        || all_have_reason(&kube, &objects, "Synced"),
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn watches_closing_and_the_api_server_restarting_mid_burst_resume_work() {
    const N: usize = 20;
    let (kube, sim) = setup().await;
    let running = start(&kube, &sim);
    eventually("watches up", LONG, || running.up()).await;
    let objects = names("api", N);
    for (i, name) in objects.iter().enumerate() {
        push(&kube, name, "v1", false);
        if i == N / 2 {
            kube.close_watches();
        }
    }
    // The API server goes away (every watch cut, connections refused) and comes back.
    kube.fail(KubeFault::Refuse);
    tokio::time::sleep(Duration::from_secs(2)).await;
    kube.recover();
    let later = names("api-later", 5);
    for name in &later {
        push(&kube, name, "v1", false);
    }
    eventually("every object Synced after the restart", LONG, || {
        all_have_reason(&kube, &objects, "Synced") && all_have_reason(&kube, &later, "Synced")
    })
    .await;
    eventually("watches up again", LONG, || running.up()).await;
    running.stop().await;
}

/// The operator in a runtime of its own, so that it can be killed: every task it spawned (the
/// controllers, reflectors, the fake API's connection, PrivX connections) dies at once, no drain.
struct Process {
    runtime: tokio::runtime::Runtime,
    _running: Running,
}

impl Process {
    async fn start(kube: &FakeKube, sim: &Arc<Simulator>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (kube, sim) = (kube.clone(), sim.clone());
        let running = runtime
            .spawn(async move { start(&kube, &sim) })
            .await
            .unwrap();
        Self {
            runtime,
            _running: running,
        }
    }

    /// SIGKILL.
    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

/// Successful creates of shared secrets, and creates refused as duplicates.
fn creates(sim: &Simulator) -> (usize, usize) {
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == "POST /vault/api/v1/secrets")
        .collect();
    let ok = posts
        .iter()
        .filter(|r| (200..300).contains(&r.status))
        .count();
    let duplicate = posts
        .iter()
        .filter(|r| r.status == 409 || r.error_code.as_deref() == Some("VALUE_DUPLICATE"))
        .count();
    (ok, duplicate)
}

/// The shared secrets in PrivX whose names start with `k8s/<NS>/<prefix>`.
async fn secrets_named(sim: &Simulator, prefix: &str) -> Vec<String> {
    privx_client_for(sim, sim.credentials())
        .list_secrets(&SecretLocation::Shared)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n.starts_with(&format!("k8s/{NS}/{prefix}")))
        .collect()
}

#[tokio::test]
async fn killed_mid_burst_no_duplicate_every_object_ready_nothing_leaked() {
    const N: usize = 30;
    let (kube, sim) = setup().await;
    let first = Process::start(&kube, &sim).await;
    let objects = names("kill", N);
    for name in &objects {
        push(&kube, name, "v1", true);
    }
    eventually("part of the burst done", LONG, || {
        count_with_reason(&kube, &objects, "Synced") >= 3
    })
    .await;
    first.kill();
    let done_at_kill = count_with_reason(&kube, &objects, "Synced");
    eprintln!("killed with {done_at_kill} of {N} objects Synced");

    let running = start(&kube, &sim);
    eventually("every object Synced after the restart", LONG, || {
        all_have_reason(&kube, &objects, "Synced")
    })
    .await;
    let (ok, duplicate) = creates(&sim);
    assert_eq!(
        (ok, duplicate),
        (N, 0),
        "one create per object ({done_at_kill} were done when killed), none refused as a duplicate"
    );
    assert_eq!(secrets_named(&sim, "kill-").await.len(), N);

    // Delete everything (deletionPolicy Delete): nothing is left in PrivX.
    for name in &objects {
        kube.delete(&vs_path(NS, name));
    }
    eventually("every VaultSecret gone", LONG, || {
        objects.iter().all(|n| kube.get(&vs_path(NS, n)).is_none())
    })
    .await;
    assert_eq!(
        secrets_named(&sim, "kill-").await,
        Vec::<String>::new(),
        "leaked"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_claimed_not_repeated() {
    let (kube, sim) = setup().await;
    let running = start(&kube, &sim);
    eventually("watches up", LONG, || running.up()).await;
    let create = "POST /vault/api/v1/secrets";
    for (name, fault) in [
        ("lost-drop", Fault::drop_connection(create)),
        ("lost-503", Fault::status(create, 503)),
    ] {
        sim.set_faults(vec![fault.after_handling().for_next(1)]);
        push(&kube, name, "v1", true);
        eventually(&format!("{name} Synced"), LONG, || {
            ready_reason(&kube, NS, name) == "Synced"
        })
        .await;
        let vs = kube.get(&vs_path(NS, name)).unwrap();
        assert_eq!(
            vs["status"]["privx"]["name"],
            format!("k8s/{NS}/{name}"),
            "the object claims the secret its lost create made"
        );
    }
    let posts = sim
        .requests()
        .into_iter()
        .filter(|r| r.route == create)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(posts, [0, 503], "one create each, never repeated");
    assert_eq!(mirror_password(&kube, "lost-drop").as_deref(), Some("v1"));
    running.stop().await;
}

/// The real runner through gated clients: it works while the gate is open (watches stream
/// through the layer) and, once the gate closes, no write of any kind reaches either side.
#[tokio::test]
async fn the_runner_through_gated_clients_stops_writing_when_the_gate_closes() {
    use privx_operator::controller::core::NoMetrics;
    use privx_operator::controller::vault_secret::Settings;
    use privx_operator::controller::vault_secret::hashing::HmacKey;
    use privx_operator::runtime::runner::{self, RunOptions};

    let (kube, sim) = setup().await;
    let gate = LeaseGate::closed();
    gate.renewed(
        std::time::Instant::now(),
        Duration::from_secs(3600),
        Duration::ZERO,
    );
    let settings = Settings {
        self_roles: vec!["privx-operator".to_string()].into(),
        hmac_key: HmacKey::new(vec![7; 32]),
        ..Settings::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(runner::run(
        gate.kube_client(kube.client()),
        privx_client_for(&sim, sim.credentials()).with_write_gate(gate.privx_gate()),
        settings,
        Arc::new(NoMetrics),
        RunOptions {
            namespaces: vec![],
            concurrency: 4,
            instance: None,
            privx_identity: Some(sim.credentials().api_client_id.clone()),
            ..Default::default()
        },
        stop.clone(),
        |_| {},
    ));
    push(&kube, "gated", "v1", true);
    eventually("Synced through the gated clients", LONG, || {
        ready_reason(&kube, NS, "gated") == "Synced"
    })
    .await;

    gate.close();
    kube.clear_requests();
    sim.clear_requests();
    // Work arrives: a source change, a new object, a deletion.
    kube.put(
        &secret_path(NS, "gated-src"),
        secret_object(NS, "gated-src", &[("password", "v2")]),
    );
    push(&kube, "gated-new", "v1", false);
    kube.delete(&vs_path(NS, "gated"));
    eventually("the runner tried and was refused", LONG, || {
        gate.refused() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kube_writes: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    // The test's own writes above went to the fake directly, not through a request.
    assert_eq!(kube_writes, Vec::<String>::new());
    let privx_writes: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method != "GET" && !r.route.contains("/oauth/") && !r.route.contains("/roles/")
        })
        .map(|r| r.route)
        .collect();
    assert_eq!(privx_writes, Vec::<String>::new());
    stop.cancel();
    task.abort();
}

// ---- issue 22: a PrivX outage costs PrivX a trickle, set by the probe schedule ----

/// A shortened probe schedule, so that a few seconds of outage see several probes.
const BREAKER: privx_client::BreakerSettings = privx_client::BreakerSettings {
    failure_threshold: privx_client::breaker::DEFAULT_FAILURE_THRESHOLD,
    first_probe_interval: Duration::from_millis(200),
    max_probe_interval: Duration::from_millis(1600),
    max_pause: Duration::from_secs(300),
};

/// The most vault requests an outage of `window` can cost, whatever the number of objects:
/// the outage answers that open the breaker (every request in flight then, each with its one
/// retry, at most `--privx-max-concurrency` of them) and the probes of the schedule.
fn outage_bound(window: Duration) -> usize {
    let in_flight = privx_client::limit::DEFAULT_MAX_CONCURRENCY;
    BREAKER.failure_threshold as usize
        + in_flight * SENDS_PER_CALL
        + BREAKER.max_probes_within(window) as usize
}

/// N push + mirror objects through an outage of `/vault/*`: the vault requests stay within a
/// bound derived from the probe schedule (the same bound for 100 and 1,000 objects), no mirror
/// is written meanwhile, and once PrivX answers every object is Ready again and the sources
/// changed during the outage reach PrivX and the mirrors. Recovery time and request rate are
/// printed (`-- --nocapture`), not asserted: they are figures (docs/benchmarks.md).
async fn outage_costs_a_trickle(n: usize) {
    const CHANGED: usize = 20;
    let (kube, sim) = setup().await;
    let privx = support::privx_client_tuned(
        &sim,
        sim.credentials(),
        privx_client::config::PolicyGenerationSetting::Auto,
        |c| c.breakers = privx_client::Breakers::new(BREAKER).unwrap(),
    );
    let running = Running::start_with(&kube, &sim, privx, &[], 16);
    eventually("watches up", LONG, || running.up()).await;
    let objects = names("trickle", n);
    for name in &objects {
        push(&kube, name, "v1", false);
    }
    eventually("every object Synced", Duration::from_secs(180), || {
        all_have_reason(&kube, &objects, "Synced")
    })
    .await;

    let secret_writes = |kube: &FakeKube| {
        kube.requests()
            .iter()
            .filter(|r| {
                r.method != "GET"
                    && r.path.contains("/secrets/trickle-")
                    && !r.path.contains("-src")
            })
            .count()
    };
    let writes_before = secret_writes(&kube);
    let changed = &objects[..CHANGED];
    let started = std::time::Instant::now();
    sim.clear_requests();
    sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    for name in changed {
        let source = format!("{name}-src");
        kube.put(
            &secret_path(NS, &source),
            secret_object(NS, &source, &[("password", "v2")]),
        );
    }
    // The outage lasts at least 4 s, and until every changed object has reported it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    eventually("the changed objects report the outage", LONG, || {
        changed
            .iter()
            .all(|n| ready_reason(&kube, NS, n) == "PrivXUnavailable")
    })
    .await;
    let requests = vault_requests(&sim);
    let lasted = started.elapsed();
    let bound = outage_bound(lasted);
    assert_eq!(
        secret_writes(&kube),
        writes_before,
        "no mirror is written during the outage"
    );
    assert!(
        changed
            .iter()
            .all(|n| mirror_password(&kube, n).as_deref() == Some("v1")),
        "the mirrors keep what PrivX had"
    );
    sim.set_faults(vec![]);
    let back = std::time::Instant::now();
    eventually(
        "every object Synced, the changes in PrivX and the mirrors",
        Duration::from_secs(120),
        || {
            all_have_reason(&kube, &objects, "Synced")
                && changed
                    .iter()
                    .all(|n| mirror_password(&kube, n).as_deref() == Some("v2"))
        },
    )
    .await;
    let recovery = back.elapsed();
    let someone_else = privx_client_for(&sim, sim.credentials_of("someone-else").unwrap());
    for name in changed {
        let stored = someone_else
            .get_secret(&SecretLocation::Shared, &format!("k8s/{NS}/{name}"))
            .await
            .unwrap();
        assert_eq!(stored.data.unwrap().0["password"], "v2", "{name}");
    }
    eprintln!(
        "{n} objects, {lasted:?} of vault outage: {requests} vault requests ({:.2}/s; bound {bound}); all Ready {recovery:?} after PrivX answered",
        requests as f64 / lasted.as_secs_f64()
    );
    assert!(
        requests <= bound,
        "{requests} vault requests in {lasted:?} for {n} objects (bound {bound}, from the probe schedule)"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_privx_outage_costs_a_bound_set_by_the_probe_schedule_at_100_objects() {
    outage_costs_a_trickle(100).await;
}

#[tokio::test]
async fn a_privx_outage_costs_the_same_bound_at_1000_objects() {
    outage_costs_a_trickle(1000).await;
}
