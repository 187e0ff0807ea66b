//! The controller runner as `privx-operator run` assembles it: real watches (initial lists) on
//! the fake Kubernetes API, both controllers, readiness, and a clean stop on the signal.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use privx_client::SecretLocation;
use privx_operator::controller::core::NoMetrics;
use privx_operator::controller::vault_secret::Settings;
use privx_operator::controller::vault_secret::hashing::HmacKey;
use privx_operator::runtime::runner::{self, RunOptions};
use privx_sim::{SimOptions, Simulator};
use serde_json::json;
use support::{FakeKube, NS, policy_path, privx_client_for, secret_path, vs_path};
use tokio_util::sync::CancellationToken;

/// Signals the runner to stop and waits until it has (in-flight reconciles drained).
async fn stop_and_join(stop: &CancellationToken, run: tokio::task::JoinHandle<()>) {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the runner stops on the signal")
        .unwrap();
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The simulator, the operator's PrivX client and a fake API holding the Namespace `demo`.
async fn demo_world() -> (Simulator, privx_client::PrivxClient, FakeKube) {
    let sim = Simulator::start(SimOptions::default()).await.unwrap();
    let privx = privx_client_for(&sim, sim.credentials());
    let kube = FakeKube::default();
    kube.put(
        "/api/v1/namespaces/demo",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    (sim, privx, kube)
}

/// `runner::run` on the fake API in a task of its own; `synced` follows its readiness.
fn spawn_runner(
    kube: &FakeKube,
    privx: privx_client::PrivxClient,
    synced: &Arc<AtomicBool>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_runner_with(kube, privx, synced, stop, RunOptions::default())
}

/// [`spawn_runner`] with these options (concurrency 4 unless they say otherwise).
fn spawn_runner_with(
    kube: &FakeKube,
    privx: privx_client::PrivxClient,
    synced: &Arc<AtomicBool>,
    stop: &CancellationToken,
    options: RunOptions,
) -> tokio::task::JoinHandle<()> {
    let synced = synced.clone();
    let stop = stop.clone();
    let client = kube.client();
    tokio::spawn(async move {
        runner::run(
            client,
            privx,
            Settings {
                self_roles: vec!["privx-operator".to_string()].into(),
                hmac_key: HmacKey::new(vec![3; 32]),
                ..Settings::default()
            },
            Arc::new(NoMetrics),
            RunOptions {
                concurrency: 4,
                ..options
            },
            stop,
            move |up| synced.store(up, Ordering::SeqCst),
        )
        .await
    })
}

#[tokio::test]
async fn runner_lists_reconciles_both_kinds_reports_synced_and_stops_on_signal() {
    let (sim, privx, kube) = demo_world().await;
    let someone_else = privx_client_for(&sim, sim.credentials_of("someone-else").unwrap());
    kube.put(
        &secret_path(NS, "db-creds"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds", "namespace": NS}, "data": {"password": "c2VjcmV0"}}),
    );
    kube.put(
        &vs_path(NS, "db"),
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "metadata": {"name": "db", "namespace": NS},
               "spec": {"source": {"secretRef": {"name": "db-creds"}}, "mirror": {}}}),
    );
    kube.put(
        &policy_path("app-passwords"),
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "PasswordPolicy", "metadata": {"name": "app-passwords"},
               "spec": {"maxVersions": 3}}),
    );

    let synced = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let run = spawn_runner(&kube, privx, &synced, &stop);

    eventually("watches synced", || synced.load(Ordering::SeqCst)).await;
    eventually("the mirrored Secret", || {
        kube.get(&secret_path(NS, "db")).is_some()
    })
    .await;
    eventually("VaultSecret status Synced", || {
        kube.get(&vs_path(NS, "db"))
            .is_some_and(|o| o["status"]["conditions"][0]["reason"] == "Synced")
    })
    .await;
    eventually("PasswordPolicy status with a PrivX id", || {
        kube.get(&policy_path("app-passwords"))
            .is_some_and(|o| o["status"]["id"].is_string())
    })
    .await;
    let stored = someone_else
        .get_secret(&SecretLocation::Shared, "k8s/demo/db")
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "secret");
    let policies = someone_else.list_policies().await.unwrap();
    assert!(policies.iter().any(|p| p.name == "app-passwords"));

    // Narrow watches: Secrets are only ever listed with a selector, never all of them: mirrors
    // by the managed-by label (whole objects, in a store), sources metadata-only without the
    // Secret types that are never sources (stored nowhere; docs/vaultsecret.md).
    let secret_lists: Vec<String> = kube
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/secrets"))
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(
        secret_lists.len(),
        2,
        "mirrors and sources: {secret_lists:?}"
    );
    assert!(
        secret_lists
            .iter()
            .all(|q| q.contains("labelSelector=") || q.contains("fieldSelector=")),
        "{secret_lists:?}"
    );
    assert!(secret_lists.iter().any(|q| q.contains("managed-by")));
    assert!(
        secret_lists
            .iter()
            .any(|q| q.contains("fieldSelector=type%21%3Dhelm.sh")),
        "{secret_lists:?}"
    );

    stop_and_join(&stop, run).await;
}

#[tokio::test]
async fn a_dropped_runner_leaves_no_task_or_watch_behind() {
    // Lease loss drops the runner's future instead of draining it: whatever it spawned (the
    // PasswordPolicy reflector, the readiness ticker) must end with it.
    let (_sim, privx, kube) = demo_world().await;
    let synced = Arc::new(AtomicBool::new(false));
    let run = spawn_runner(&kube, privx, &synced, &CancellationToken::new());
    eventually("watches synced", || synced.load(Ordering::SeqCst)).await;
    assert!(kube.open_watches() > 0);

    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    eventually("every watch closed", || kube.open_watches() == 0).await;
}

/// The claim order reads the runner's claim index (kept with the VaultSecret store by its
/// reflector), not a scan of the store: the older of two objects naming one target gets it, the
/// newer is refused; a spec change that names another target moves it out of the conflict.
#[tokio::test]
async fn two_objects_naming_one_target_are_ordered_through_the_runners_index() {
    let (_sim, privx, kube) = demo_world().await;
    kube.put(
        &secret_path(NS, "db-creds"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds", "namespace": NS}, "data": {"password": "c2VjcmV0"}}),
    );
    let vault_secret = |name: &str, created: &str, target: &str| {
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
               "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
               "spec": {"name": target, "source": {"secretRef": {"name": "db-creds"}}}})
    };
    kube.put(
        &vs_path(NS, "newer"),
        vault_secret("newer", "2026-06-01T00:00:00Z", "k8s/demo/same"),
    );
    kube.put(
        &vs_path(NS, "older"),
        vault_secret("older", "2026-01-01T00:00:00Z", "k8s/demo/same"),
    );

    let synced = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let run = spawn_runner(&kube, privx, &synced, &stop);
    let reason = |name: &str| {
        kube.get(&vs_path(NS, name))
            .and_then(|o| {
                o["status"]["conditions"][0]["reason"]
                    .as_str()
                    .map(String::from)
            })
            .unwrap_or_default()
    };
    eventually("the older object Synced", || reason("older") == "Synced").await;
    eventually("the newer object refused", || reason("newer") == "Conflict").await;
    // Refused by the claim order (the message names the older claimant), not by finding a
    // secret it did not create.
    let message = kube.get(&vs_path(NS, "newer")).unwrap()["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("demo/older"), "{message}");

    let mut moved = kube.get(&vs_path(NS, "newer")).unwrap();
    moved["spec"]["name"] = json!("k8s/demo/other");
    moved["metadata"]["generation"] = json!(2);
    kube.put(&vs_path(NS, "newer"), moved);
    eventually("the moved object Synced", || reason("newer") == "Synced").await;
    assert_eq!(reason("older"), "Synced");

    stop_and_join(&stop, run).await;
}

/// `--selector` and `--controllers`: a release reconciles only the VaultSecrets its selector
/// names (the watch itself is narrowed on the API server), and a controller that is not named
/// does not run; the other release's objects are left alone.
#[tokio::test]
async fn a_release_reconciles_only_the_objects_its_selector_and_controllers_name() {
    let (_sim, privx, kube) = demo_world().await;
    kube.put(
        &secret_path(NS, "db-creds"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-creds", "namespace": NS}, "data": {"password": "c2VjcmV0"}}),
    );
    let vault_secret = |name: &str, labels: serde_json::Value| {
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
               "metadata": {"name": name, "namespace": NS, "labels": labels},
               "spec": {"source": {"secretRef": {"name": "db-creds"}}}})
    };
    kube.put(&vs_path(NS, "other"), vault_secret("other", json!({})));
    kube.put(
        &vs_path(NS, "mine"),
        vault_secret("mine", json!({"privx-operator.dev/release": "a"})),
    );
    kube.put(
        &policy_path("mine"),
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "PasswordPolicy",
               "metadata": {"name": "mine", "labels": {"privx-operator.dev/release": "a"}},
               "spec": {"maxVersions": 3}}),
    );

    let synced = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let run = spawn_runner_with(
        &kube,
        privx,
        &synced,
        &stop,
        RunOptions {
            password_policies: false,
            selector: Some("privx-operator.dev/release=a".parse().unwrap()),
            ..RunOptions::default()
        },
    );
    eventually("the selected VaultSecret Synced", || {
        kube.get(&vs_path(NS, "mine"))
            .is_some_and(|o| o["status"]["conditions"][0]["reason"] == "Synced")
    })
    .await;
    stop_and_join(&stop, run).await;

    let vs_lists: Vec<String> = kube
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/vaultsecrets"))
        .map(|r| r.query.clone())
        .collect();
    assert!(!vs_lists.is_empty());
    assert!(
        vs_lists
            .iter()
            .all(|q| q.contains("labelSelector=privx-operator.dev%2Frelease%3Da")),
        "the VaultSecret watch carries the selector: {vs_lists:?}"
    );
    assert!(
        kube.get(&vs_path(NS, "other")).unwrap()["status"].is_null(),
        "the other release's VaultSecret is not touched"
    );
    assert!(
        kube.get(&policy_path("mine")).unwrap()["status"].is_null(),
        "no PasswordPolicy controller runs"
    );
    // Still read (VaultSecrets may generate to any policy), never written.
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/passwordpolicies"))
    );
    assert!(
        !kube
            .requests()
            .iter()
            .any(|r| r.method != "GET" && r.path.contains("/passwordpolicies")),
        "no PasswordPolicy write"
    );
}

/// The PasswordPolicy controller alone, with a selector: the selected policy is reconciled, the
/// unselected one is not, and no VaultSecret is watched.
#[tokio::test]
async fn the_policy_controller_alone_reconciles_only_selected_policies() {
    let (_sim, privx, kube) = demo_world().await;
    let policy = |name: &str, labels: serde_json::Value| {
        json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "PasswordPolicy",
               "metadata": {"name": name, "labels": labels}, "spec": {"maxVersions": 3}})
    };
    kube.put(&policy_path("other"), policy("other", json!({"team": "b"})));
    kube.put(&policy_path("mine"), policy("mine", json!({"team": "a"})));
    let synced = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let run = spawn_runner_with(
        &kube,
        privx,
        &synced,
        &stop,
        RunOptions {
            vault_secrets: false,
            selector: Some("team=a".parse().unwrap()),
            ..RunOptions::default()
        },
    );
    eventually("the selected policy has a PrivX id", || {
        kube.get(&policy_path("mine"))
            .is_some_and(|o| o["status"]["id"].is_string())
    })
    .await;
    eventually("watches synced", || synced.load(Ordering::SeqCst)).await;
    stop_and_join(&stop, run).await;
    assert!(kube.get(&policy_path("other")).unwrap()["status"].is_null());
    assert!(
        !kube
            .requests()
            .iter()
            .any(|r| r.path.contains("/vaultsecrets") || r.path.ends_with("/secrets")),
        "no VaultSecret, mirror or source watch"
    );
}
