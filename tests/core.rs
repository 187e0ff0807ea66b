//! The reconcile core (issue 10) through the real runner, against the fake Kubernetes API
//! (watch events, server-side apply, resourceVersions, status subresource) and the PrivX
//! simulator: what triggers a reconcile, what the stores hold before one, how many round trips
//! a new object costs, what deleted objects leave behind, and how watches come back.

mod support;

use std::sync::Arc;
use std::time::Duration;

use privx_operator::controller::vault_secret;
use privx_sim::{SimOptions, Simulator};
use serde_json::json;
use support::fake_kube::Fault;
use support::running::{
    Running, eventually, namespace_object, push_mirror_spec, ready_reason, secret_object,
    vault_secret_object,
};
use support::{FakeKube, Harness, NS, privx_client_for, secret_path, vs_path};

const SECS: Duration = Duration::from_secs(5);

/// PrivX calls of the secrets API the operator made (token grants and role look-ups excluded).
fn privx_secret_calls(sim: &Simulator) -> Vec<String> {
    let me = sim.credentials().api_client_id;
    sim.requests()
        .into_iter()
        .filter(|r| r.client_id.as_deref() == Some(me.as_str()))
        .filter(|r| r.route.contains("/vault/api/v1/secrets"))
        .map(|r| r.route)
        .collect()
}

async fn setup() -> (FakeKube, Simulator) {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let kube = FakeKube::default();
    kube.put("/api/v1/namespaces/demo", namespace_object(NS, json!({})));
    (kube, sim)
}

/// The fake API and the simulator with the source Secret `db-creds` and the VaultSecret `db`
/// of `spec`, and the runner started on them.
async fn running_with(spec: serde_json::Value) -> (FakeKube, Simulator, Running) {
    let (kube, sim) = setup().await;
    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-1")]),
    );
    kube.put(&vs_path(NS, "db"), vault_secret_object(NS, "db", spec));
    let running = Running::start(&kube, &sim, privx_client_for(&sim, sim.credentials()), &[]);
    (kube, sim, running)
}

/// Puts the VaultSecret `name` (pushing from `db-creds`) and waits until it is Synced. The
/// VaultSecret watch delivers its events in order, so by then the operator has taken its
/// trigger decision on every VaultSecret event before the marker's (our own status writes,
/// someone else's): a negative assertion waits for this positive marker, not for a sleep. The
/// marker costs exactly one reconcile.
async fn processed_marker(kube: &FakeKube, name: &str) {
    kube.put(
        &vs_path(NS, name),
        vault_secret_object(NS, name, push_mirror_spec("db-creds")),
    );
    eventually(&format!("marker {name} Synced"), SECS, || {
        ready_reason(kube, NS, name) == "Synced"
    })
    .await;
}

/// The reasons of the events posted about the object `name`.
fn event_reasons_of(kube: &FakeKube, name: &str) -> Vec<String> {
    kube.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/events"))
        .filter_map(|r| r.body)
        .filter(|b| b["regarding"]["name"] == name || b["involvedObject"]["name"] == name)
        .filter_map(|b| b["reason"].as_str().map(String::from))
        .collect()
}

fn reconciles(running: &Running) -> f64 {
    running
        .sample(r#"privx_operator_reconciles_total{controller="vaultsecret"}"#)
        .unwrap_or(0.0)
}

/// What a new object cost: reconciles, PrivX secret calls, Kubernetes writes (events aside),
/// event reasons — and the object as it ended up.
struct Cost {
    reconciles: f64,
    privx: Vec<String>,
    writes: Vec<String>,
    events: Vec<String>,
    object: serde_json::Value,
}

async fn cost_of_a_new_object(spec: serde_json::Value) -> Cost {
    let (kube, sim) = setup().await;
    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-1")]),
    );
    let running = Running::start(&kube, &sim, privx_client_for(&sim, sim.credentials()), &[]);
    eventually("watches up", SECS, || running.up()).await;
    sim.clear_requests();
    kube.clear_requests();

    kube.put(&vs_path(NS, "db"), vault_secret_object(NS, "db", spec));
    eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
    // The status write is the reconcile's last: what it cost in PrivX and Kubernetes is in.
    let privx = privx_secret_calls(&sim);
    let writes = kube
        .writes()
        .iter()
        .filter(|r| !r.path.contains("/events"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    // The echoes of our writes came back before the marker's event: had they (wrongly)
    // triggered, there would be more than the marker's one reconcile.
    processed_marker(&kube, "marker").await;
    let cost = Cost {
        reconciles: reconciles(&running) - 1.0,
        privx,
        writes,
        events: event_reasons_of(&kube, "db"),
        object: kube.get(&vs_path(NS, "db")).unwrap(),
    };
    running.stop().await;
    cost
}

/// Points 2 and 3: our own status and mirror writes do not start another reconcile, and a new
/// (`Retain`) object costs one PrivX write and no read (it creates without reading first), two
/// Kubernetes writes and one event.
#[tokio::test]
async fn a_new_object_costs_one_privx_write_and_our_writes_do_not_retrigger() {
    let cost = cost_of_a_new_object(push_mirror_spec("db-creds")).await;
    assert_eq!(cost.reconciles, 1.0, "one reconcile for one new object");
    assert_eq!(cost.privx, ["POST /vault/api/v1/secrets"]);
    assert_eq!(
        cost.writes,
        [
            format!("PATCH {}", secret_path(NS, "db")),
            format!("PATCH {}/status", vs_path(NS, "db")),
        ]
    );
    assert_eq!(cost.events, ["Created"]);
}

/// Point 3 with `deletionPolicy: Delete`: the finalizer and the cleanup target go in one
/// metadata patch before the PrivX write, then the mirror and the status — three Kubernetes
/// writes and one event, one reconcile, one PrivX read and one write.
#[tokio::test]
async fn a_new_delete_object_costs_at_most_three_kubernetes_writes_and_one_event() {
    let mut spec = push_mirror_spec("db-creds");
    spec["deletionPolicy"] = json!("Delete");
    let cost = cost_of_a_new_object(spec).await;
    assert_eq!(cost.reconciles, 1.0, "one reconcile for one new object");
    assert_eq!(
        cost.privx,
        [
            "GET /vault/api/v1/secrets/{name}",
            "POST /vault/api/v1/secrets"
        ]
    );
    assert_eq!(
        cost.writes,
        [
            format!("PATCH {}", vs_path(NS, "db")),
            format!("PATCH {}", secret_path(NS, "db")),
            format!("PATCH {}/status", vs_path(NS, "db")),
        ],
        "finalizer + cleanup target, mirror, status"
    );
    assert_eq!(cost.events, ["Created"]);
    let metadata = &cost.object["metadata"];
    assert_eq!(
        metadata["finalizers"],
        json!(["privx-operator.dev/cleanup"])
    );
    assert_eq!(
        metadata["annotations"]["privx-operator.dev/cleanup-target"],
        r#"{"name":"k8s/demo/db"}"#
    );
    assert_eq!(cost.object["status"]["privx"]["ownership"], "Created");
}

/// Point 2: a change of what the operator reads (spec) triggers; a status write by someone
/// else, which changes nothing the operator reads, does not.
#[tokio::test]
async fn spec_changes_trigger_and_status_writes_do_not() {
    let (kube, _sim, running) = running_with(push_mirror_spec("db-creds")).await;
    eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
    processed_marker(&kube, "marker-1").await;
    let before = reconciles(&running);

    let api: kube::Api<privx_operator::crd::VaultSecret> = kube::Api::namespaced(kube.client(), NS);
    api.patch_status(
        "db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "written by someone else", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
    )
    .await
    .unwrap();
    processed_marker(&kube, "marker-2").await;
    assert_eq!(
        reconciles(&running),
        before + 1.0,
        "a status write is not a change (the one reconcile is the marker's)"
    );
    let before = reconciles(&running);

    let mut object = kube.get(&vs_path(NS, "db")).unwrap();
    object["spec"]["mirror"]["labels"] = json!({"team": "a"});
    kube.put(&vs_path(NS, "db"), object);
    eventually("a reconcile for the spec change", SECS, || {
        reconciles(&running) > before
    })
    .await;
    eventually("the new label on the mirror", SECS, || {
        kube.get(&secret_path(NS, "db"))
            .is_some_and(|m| m["metadata"]["labels"]["team"] == "a")
    })
    .await;
    running.stop().await;
}

/// Point 1: a Namespace annotation applied before the operator starts is honoured by the first
/// reconcile (no decision is made from a Namespace store that has not listed yet).
#[tokio::test]
async fn a_namespace_annotation_set_before_start_is_honoured_on_the_first_reconcile() {
    let (kube, sim) = setup().await;
    kube.put(
        "/api/v1/namespaces/demo",
        namespace_object(NS, json!({"privx-operator.dev/allowed-names": "legacy/*"})),
    );
    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-1")]),
    );
    for i in 0..20 {
        let mut spec = push_mirror_spec("db-creds");
        spec["name"] = json!(format!("legacy/db-{i}"));
        kube.put(
            &vs_path(NS, &format!("db-{i}")),
            vault_secret_object(NS, &format!("db-{i}"), spec),
        );
    }
    let running = Running::start(&kube, &sim, privx_client_for(&sim, sim.credentials()), &[]);
    eventually("all Synced", SECS, || {
        (0..20).all(|i| ready_reason(&kube, NS, &format!("db-{i}")) == "Synced")
    })
    .await;
    assert!(
        !kube.event_reasons().iter().any(|r| r == "NotAllowed"),
        "{:?}",
        kube.event_reasons()
    );
    running.stop().await;
}

/// Point 7: an object deleted without a finalizer (`Retain`) leaves the object gauge.
#[tokio::test]
async fn a_deleted_retain_object_leaves_the_object_gauge() {
    let (kube, _sim, running) = running_with(push_mirror_spec("db-creds")).await;
    let ready = r#"privx_operator_objects{controller="vaultsecret",condition="Ready",status="True",reason="Synced"}"#;
    eventually("the object counted Ready", SECS, || {
        running.sample(ready) == Some(1.0)
    })
    .await;

    assert_eq!(kube.delete(&vs_path(NS, "db")), 200);
    eventually("the object leaves the gauge", SECS, || {
        running.sample(ready).is_none()
    })
    .await;
    running.stop().await;
}

/// Point 7: a failing object deleted without a finalizer (`Retain`) leaves the backoff map,
/// which `privx_operator_retrying_objects` counts.
#[tokio::test]
async fn a_deleted_retain_object_leaves_the_backoff_map() {
    let (kube, sim) = setup().await;
    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-1")]),
    );
    sim.set_faults(vec![privx_sim::Fault::status("/vault/*", 503)]);
    kube.put(
        &vs_path(NS, "db"),
        vault_secret_object(NS, "db", push_mirror_spec("db-creds")),
    );
    let running = Running::start(&kube, &sim, privx_client_for(&sim, sim.credentials()), &[]);
    let retrying = r#"privx_operator_retrying_objects{controller="vaultsecret"}"#;
    eventually("the failing object waits to retry", SECS, || {
        running.sample(retrying) == Some(1.0)
    })
    .await;

    assert_eq!(kube.delete(&vs_path(NS, "db")), 200);
    eventually("the deleted object leaves the backoff map", SECS, || {
        running.sample(retrying) == Some(0.0)
    })
    .await;
    running.stop().await;
}

/// Issue 14 item 5 (point 3's source watch): a source Secret created after its VaultSecret,
/// without any label, is noticed within seconds.
#[tokio::test]
async fn a_source_secret_created_later_is_noticed_within_seconds_unlabelled() {
    let (kube, sim) = setup().await;
    kube.put(
        &vs_path(NS, "db"),
        vault_secret_object(NS, "db", push_mirror_spec("db-creds")),
    );
    let running = Running::start(&kube, &sim, privx_client_for(&sim, sim.credentials()), &[]);
    eventually("SourceNotFound", SECS, || {
        ready_reason(&kube, NS, "db") == "SourceNotFound"
    })
    .await;

    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-1")]),
    );
    eventually("Synced within seconds", Duration::from_secs(3), || {
        ready_reason(&kube, NS, "db") == "Synced"
    })
    .await;
    let source = kube.get(&secret_path(NS, "db-creds")).unwrap();
    assert!(
        source["metadata"]["labels"].is_null(),
        "the source is not written: {source}"
    );
    running.stop().await;
}

/// Point 1: `--namespaces a,b` runs one controller per kind: PasswordPolicies and Namespaces
/// are listed once, not once per namespace.
#[tokio::test]
async fn several_namespaces_share_one_controller_and_one_watch_per_cluster_kind() {
    let (kube, sim) = setup().await;
    for ns in ["a", "b"] {
        kube.put(
            &format!("/api/v1/namespaces/{ns}"),
            namespace_object(ns, json!({})),
        );
        kube.put(
            &secret_path(ns, "creds"),
            secret_object(ns, "creds", &[("password", "pw")]),
        );
        kube.put(
            &vs_path(ns, "db"),
            vault_secret_object(ns, "db", push_mirror_spec("creds")),
        );
    }
    let running = Running::start(
        &kube,
        &sim,
        privx_client_for(&sim, sim.credentials()),
        &["a", "b"],
    );
    eventually("both Synced", SECS, || {
        ready_reason(&kube, "a", "db") == "Synced" && ready_reason(&kube, "b", "db") == "Synced"
    })
    .await;
    let lists = |resource: &str| {
        kube.requests()
            .iter()
            .filter(|r| r.verb() == "list" && r.resource() == resource)
            .count()
    };
    assert_eq!(lists("passwordpolicies"), 1);
    assert_eq!(lists("namespaces"), 1);
    assert_eq!(lists("vaultsecrets"), 2, "one per namespace");
    // A VaultSecret created later in either namespace is picked up by the one controller.
    kube.put(
        &vs_path("b", "late"),
        vault_secret_object("b", "late", push_mirror_spec("creds")),
    );
    eventually("the late one Synced", SECS, || {
        ready_reason(&kube, "b", "late") == "Synced"
    })
    .await;
    running.stop().await;
}

/// Issue 13 item 10: after the API server comes back, every watch resumes within seconds,
/// reconciles resume, and readiness is false while the watches are down.
#[tokio::test]
async fn watches_come_back_after_an_api_outage_and_readiness_follows() {
    let (kube, sim, running) = running_with(push_mirror_spec("db-creds")).await;
    eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
    assert!(running.up());

    kube.fail(Fault::Refuse);
    eventually("readiness false while the watches are down", SECS, || {
        !running.up()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kube.recover();
    eventually(
        "every watch back within seconds",
        Duration::from_secs(8),
        || running.up(),
    )
    .await;

    // Reconciles resume: a new object and a source change both go through.
    kube.put(
        &vs_path(NS, "new"),
        vault_secret_object(NS, "new", push_mirror_spec("db-creds")),
    );
    kube.put(
        &secret_path(NS, "db-creds"),
        secret_object(NS, "db-creds", &[("password", "pw-2")]),
    );
    eventually("the new object Synced", SECS, || {
        ready_reason(&kube, NS, "new") == "Synced"
    })
    .await;
    let someone_else = privx_client_for(&sim, sim.credentials_of("someone-else").unwrap());
    let mut pushed = false;
    for _ in 0..100 {
        let stored = someone_else
            .get_secret(&privx_client::SecretLocation::Shared, "k8s/demo/db")
            .await
            .unwrap();
        if stored.data.unwrap().0["password"] == "pw-2" {
            pushed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pushed, "the source change reached PrivX after the outage");
    running.stop().await;
}

/// Issue 14 item 2: a finalizer patch from a stale copy (409 Conflict) is retried at once on a
/// fresh read: no KubernetesError event, no Ready=False.
#[tokio::test]
async fn a_stale_finalizer_patch_is_retried_quietly() {
    let h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "pw")]);
    let mut spec = push_mirror_spec("db-creds");
    spec["deletionPolicy"] = json!("Delete");
    h.vault_secret("db", spec);
    let stale = h.get_vs("db");
    // Someone else changes the object: the copy in hand is now one resourceVersion behind.
    let mut object = h.kube.get(&vs_path(NS, "db")).unwrap();
    object["metadata"]["labels"] = json!({"touched": "yes"});
    h.kube.put(&vs_path(NS, "db"), object);

    let result = vault_secret::reconcile(Arc::new(stale.into()), h.ctx.clone()).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(h.ready_reason("db").1, "Synced");
    assert!(
        !h.kube
            .event_reasons()
            .iter()
            .any(|r| r == "KubernetesError"),
        "{:?}",
        h.kube.event_reasons()
    );
    let vs = h.get_vs("db");
    assert!(
        vs.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "privx-operator.dev/cleanup")
    );
    assert_eq!(
        vs.metadata.labels.unwrap()["touched"],
        "yes",
        "the other writer's change is kept"
    );
}

/// The mirror watch triggers its owner: a hand edit of the mirrored Secret (another field
/// manager) is put back without waiting for the refresh, and a deleted mirror comes back.
#[tokio::test]
async fn a_hand_edited_or_deleted_mirror_is_put_back_by_its_watch() {
    let mut spec = push_mirror_spec("db-creds");
    spec["refreshInterval"] = json!("1h");
    let (kube, _sim, running) = running_with(spec).await;
    eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
    let mirror_value = || {
        kube.get(&secret_path(NS, "db"))
            .and_then(|m| m["data"]["password"].as_str().map(String::from))
    };
    let original = mirror_value().expect("mirrored");

    let mut edited = kube.get(&secret_path(NS, "db")).unwrap();
    edited["data"]["password"] = json!("aGFuZC1lZGl0ZWQ=");
    kube.put_as(&secret_path(NS, "db"), edited, "kubectl-edit");
    eventually("the hand edit put back", SECS, || {
        mirror_value().as_ref() == Some(&original)
    })
    .await;

    kube.delete(&secret_path(NS, "db"));
    eventually("the deleted mirror back", SECS, || {
        mirror_value().as_ref() == Some(&original)
    })
    .await;
    running.stop().await;
}

/// Refreshes wait in the runner's own queue (not the controller's scheduler) and still happen:
/// with `refreshInterval: 10s` the object reads PrivX again about 10 s after its first sync,
/// with no change to it.
#[tokio::test]
async fn an_unchanged_object_is_refreshed_after_its_interval() {
    let mut spec = push_mirror_spec("db-creds");
    spec["refreshInterval"] = json!("10s");
    let (kube, sim, running) = running_with(spec).await;
    eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
    sim.clear_requests();
    let before = reconciles(&running);
    eventually("a refresh", Duration::from_secs(15), || {
        privx_secret_calls(&sim)
            .iter()
            .any(|r| r.starts_with("GET"))
    })
    .await;
    eventually("the refresh done", SECS, || reconciles(&running) > before).await;
    processed_marker(&kube, "marker").await;
    assert_eq!(
        reconciles(&running),
        before + 2.0,
        "one reconcile for the refresh (and the marker's)"
    );
    running.stop().await;
}
