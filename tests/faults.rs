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
