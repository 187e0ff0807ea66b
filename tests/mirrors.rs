//! Mirrors applications can use as they are (issue 12): templates, refresh policies,
//! force-sync, debounced restarts, list-page refresh. The real controller code against the
//! fake Kubernetes API and the real PrivX simulator over 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use privx_client::{SecretData, SecretLocation, SecretWrite};
use serde_json::{Value, json};
use support::{Harness, NS, secret_path};

/// The operator's own role in the demo seed (so the secrets someone else writes are readable).
const OPERATOR_ROLE: &str = "10000000-0000-4000-8000-000000000001";

fn push_spec(source: &str) -> Value {
    json!({
        "source": {"secretRef": {"name": source}},
        "mirror": {"secretName": format!("{source}-mirror")},
    })
}

/// A PrivX secret written by someone else, readable by the operator.
async fn privx_secret(h: &Harness, name: &str, data: Value) {
    let data: SecretData = serde_json::from_value(data).unwrap();
    h.someone_else
        .create_secret(
            &SecretLocation::Shared,
            name,
            &SecretWrite {
                data,
                read_roles: vec![privx_client::RoleHandle {
                    id: OPERATOR_ROLE.into(),
                    ..Default::default()
                }],
                write_roles: vec![privx_client::RoleHandle {
                    id: OPERATOR_ROLE.into(),
                    ..Default::default()
                }],
            },
        )
        .await
        .expect("someone else creates the secret");
}

fn condition(h: &Harness, name: &str, type_: &str) -> Option<(String, String, String)> {
    h.get_vs(name)
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason, c.message))
}

/// PrivX requests the simulator saw, token grants excluded.
fn privx_calls(h: &Harness) -> Vec<String> {
    h.sim
        .requests()
        .into_iter()
        .filter(|r| !r.route.contains("/oauth/token"))
        .map(|r| format!("{} {}", r.method, r.route))
        .collect()
}

fn annotate(h: &Harness, name: &str, key: &str, value: &str) {
    let vs = h.get_vs(name);
    let spec = serde_json::to_value(&vs.spec).unwrap();
    let mut annotations = vs.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(key.into(), value.into());
    h.vault_secret_with(name, spec, json!({"annotations": annotations}));
}

// ---------------------------------------------------------------------------------------------
// Templates

#[tokio::test]
async fn a_templated_database_url_is_mirrored_and_keys_merge_on_request() {
    let mut h = Harness::new().await;
    h.secret(NS, "db", &[("username", "app"), ("password", "p@ss/w:rd")]);
    let mut spec = push_spec("db");
    spec["mirror"]["template"] = json!({
        "DATABASE_URL": "postgres://{{ username }}:{{ password | urlencode }}@db:5432/app",
    });
    h.vault_secret("app", spec.clone());
    h.reconcile("app").await.unwrap();
    let data = h.secret_data(NS, "db-mirror").unwrap();
    assert_eq!(
        data,
        [(
            "DATABASE_URL".to_string(),
            "postgres://app:p%40ss%2Fw%3Ard@db:5432/app".to_string()
        )]
        .into(),
        "Replace (the default): the template outputs only"
    );
    assert_eq!(condition(&h, "app", "Ready").unwrap().0, "True");

    spec["mirror"]["mergePolicy"] = json!("Merge");
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
    let data = h.secret_data(NS, "db-mirror").unwrap();
    assert_eq!(
        data.keys().cloned().collect::<Vec<_>>(),
        ["DATABASE_URL", "password", "username"]
    );
}

#[tokio::test]
async fn a_template_from_a_config_map_renders_a_whole_file() {
    let mut h = Harness::new().await;
    h.secret(NS, "db", &[("username", "app"), ("password", "pw")]);
    h.kube.put(
        &format!("/api/v1/namespaces/{NS}/configmaps/app-config"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": NS},
               "data": {"app.yaml": "database:\n  user: {{ username }}\n  password: {{ password | toJson }}\n"}}),
    );
    let mut spec = push_spec("db");
    spec["mirror"]["templateFrom"] =
        json!([{"configMapRef": {"name": "app-config", "key": "app.yaml"}}]);
    h.vault_secret("app", spec.clone());
    h.reconcile("app").await.unwrap();
    assert_eq!(
        h.secret_data(NS, "db-mirror").unwrap()["app.yaml"],
        "database:\n  user: app\n  password: \"pw\"\n"
    );

    // A missing ConfigMap key is reported, naming it.
    spec["mirror"]["templateFrom"] =
        json!([{"configMapRef": {"name": "app-config", "key": "other.yaml"}}]);
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
    let (status, reason, message) = condition(&h, "app", "Ready").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SourceNotFound")
    );
    assert!(message.contains("spec.mirror.templateFrom[0]") && message.contains("other.yaml"));
}

#[tokio::test]
async fn a_template_error_names_the_key_and_line_in_status_never_the_data() {
    let mut h = Harness::new().await;
    h.secret(
        NS,
        "db",
        &[("username", "app"), ("password", "S3cr3t-value")],
    );
    let mut spec = push_spec("db");
    spec["mirror"]["template"] = json!({
        "URL": "first line\n{{ password | fromJson }}",
    });
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
    let (status, reason, message) = condition(&h, "app", "Ready").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TemplateError")
    );
    assert!(
        message.contains("spec.mirror.template[\"URL\"], line 2"),
        "{message}"
    );
    assert!(!message.contains("S3cr3t"), "{message}");
    assert!(h.kube.event_notes().iter().all(|n| !n.contains("S3cr3t")));
    assert!(
        h.secret_data(NS, "db-mirror").is_none(),
        "nothing half-rendered is written"
    );
}

// ---------------------------------------------------------------------------------------------
// Refresh policies and force-sync

#[tokio::test]
async fn on_change_reads_privx_only_when_something_changed() {
    let mut h = Harness::new().await;
    h.secret(NS, "db", &[("password", "v1")]);
    let mut spec = push_spec("db");
    spec["refreshPolicy"] = json!("OnChange");
    h.vault_secret("app", spec);
    assert_eq!(h.reconcile("app").await.unwrap(), Action::await_change());
    assert_eq!(h.secret_data(NS, "db-mirror").unwrap()["password"], "v1");

    // Nothing changed: no PrivX request at all, no requeue.
    h.sim.clear_requests();
    assert_eq!(h.reconcile("app").await.unwrap(), Action::await_change());
    assert_eq!(privx_calls(&h), Vec::<String>::new());
    assert_eq!(condition(&h, "app", "Ready").unwrap().0, "True");

    // The source changed: read and pushed.
    h.secret(NS, "db", &[("password", "v2")]);
    h.reconcile("app").await.unwrap();
    assert!(
        privx_calls(&h).iter().any(|c| c.starts_with("PUT")),
        "{:?}",
        privx_calls(&h)
    );
    assert_eq!(h.secret_data(NS, "db-mirror").unwrap()["password"], "v2");
}

#[tokio::test]
async fn created_once_writes_the_mirror_once_until_forced() {
    let mut h = Harness::new().await;
    privx_secret(&h, "k8s/demo/api-key", json!({"key": "k1"})).await;
    h.vault_secret(
        "api",
        json!({"name": "k8s/demo/api-key", "refreshPolicy": "CreatedOnce", "mirror": {"secretName": "api-key"}}),
    );
    h.reconcile("api").await.unwrap();
    assert_eq!(
        h.ready_reason("api").0,
        "True",
        "{:?}",
        h.ready_reason("api")
    );
    assert_eq!(h.secret_data(NS, "api-key").unwrap()["key"], "k1");

    h.change_in_privx("k8s/demo/api-key", "key", "k2").await;
    h.sim.clear_requests();
    assert_eq!(h.reconcile("api").await.unwrap(), Action::await_change());
    assert_eq!(
        privx_calls(&h),
        Vec::<String>::new(),
        "CreatedOnce never reads again"
    );
    assert_eq!(h.secret_data(NS, "api-key").unwrap()["key"], "k1");
    assert!(
        condition(&h, "api", "Ready")
            .unwrap()
            .2
            .contains("force-sync")
    );

    // Force-sync: read and rewritten; status says which value was handled.
    annotate(
        &h,
        "api",
        "privx-operator.dev/force-sync",
        "2026-12-02T10:00",
    );
    h.reconcile("api").await.unwrap();
    assert_eq!(h.secret_data(NS, "api-key").unwrap()["key"], "k2");
    assert_eq!(
        h.get_vs("api").status.unwrap().last_force_sync.as_deref(),
        Some("2026-12-02T10:00")
    );

    // The same value again is handled already.
    h.change_in_privx("k8s/demo/api-key", "key", "k3").await;
    h.sim.clear_requests();
    h.reconcile("api").await.unwrap();
    assert_eq!(privx_calls(&h), Vec::<String>::new());
    assert_eq!(h.secret_data(NS, "api-key").unwrap()["key"], "k2");

    // A deleted mirror is written again.
    h.delete(&secret_path(NS, "api-key"));
    h.reconcile("api").await.unwrap();
    assert_eq!(h.secret_data(NS, "api-key").unwrap()["key"], "k3");
}

#[tokio::test]
async fn force_sync_rewrites_the_mirror_in_every_policy() {
    for policy in ["Periodic", "OnChange", "CreatedOnce"] {
        let mut h = Harness::new().await;
        privx_secret(&h, "k8s/demo/api-key", json!({"key": "k1"})).await;
        h.vault_secret(
            "api",
            json!({"name": "k8s/demo/api-key", "refreshPolicy": policy, "mirror": {"secretName": "api-key"}}),
        );
        h.reconcile("api").await.unwrap();
        let mirror_writes = |h: &Harness| {
            h.kube_writes()
                .iter()
                .filter(|w| w.contains("/secrets/api-key"))
                .count()
        };
        h.kube.clear_requests();
        h.reconcile("api").await.unwrap();
        assert_eq!(mirror_writes(&h), 0, "{policy}: in sync, not written");

        annotate(&h, "api", "privx-operator.dev/force-sync", "now");
        h.kube.clear_requests();
        h.sim.clear_requests();
        h.reconcile("api").await.unwrap();
        assert!(
            privx_calls(&h).iter().any(|c| c.starts_with("GET")),
            "{policy}: PrivX read"
        );
        assert_eq!(
            mirror_writes(&h),
            1,
            "{policy}: the mirror is rewritten though in sync"
        );
        assert_eq!(
            h.get_vs("api").status.unwrap().last_force_sync.as_deref(),
            Some("now"),
            "{policy}"
        );
    }
}

#[tokio::test]
async fn force_sync_and_policy_changes_never_regenerate_a_password() {
    for policy in ["Periodic", "OnChange", "CreatedOnce"] {
        let mut h = Harness::new().await;
        h.policy(
            "strong",
            json!({"maxVersions": 3, "passwordMinLength": 24, "passwordMaxLength": 24}),
        );
        let spec = json!({
            "source": {"generate": {"passwordPolicyRef": {"name": "strong"}, "key": "password"}},
            "refreshPolicy": policy,
            "mirror": {"secretName": "gen"},
        });
        h.vault_secret("gen", spec.clone());
        h.reconcile("gen").await.unwrap();
        let first = h.secret_data(NS, "gen").unwrap()["password"].clone();
        assert_eq!(first.len(), 24);

        annotate(&h, "gen", "privx-operator.dev/force-sync", "1");
        h.reconcile("gen").await.unwrap();
        let mut other = spec.clone();
        other["refreshPolicy"] = json!(if policy == "Periodic" {
            "OnChange"
        } else {
            "Periodic"
        });
        let annotations = h.get_vs("gen").metadata.annotations.clone();
        h.vault_secret_with("gen", other, json!({"annotations": annotations}));
        h.reconcile("gen").await.unwrap();
        assert_eq!(
            h.secret_data(NS, "gen").unwrap()["password"],
            first,
            "{policy}"
        );
        assert!(
            !h.kube.event_reasons().contains(&"Regenerated".to_string()),
            "{policy}"
        );

        // Nor does a PasswordPolicy change.
        h.policy(
            "strong",
            json!({"maxVersions": 3, "passwordMinLength": 30, "passwordMaxLength": 30}),
        );
        h.reconcile("gen").await.unwrap();
        assert_eq!(
            h.secret_data(NS, "gen").unwrap()["password"],
            first,
            "{policy}"
        );

        // Only the regenerate annotation makes a new one.
        annotate(&h, "gen", "privx-operator.dev/regenerate", "please");
        h.reconcile("gen").await.unwrap();
        assert_ne!(
            h.secret_data(NS, "gen").unwrap()["password"],
            first,
            "{policy}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Restarts

fn deployment(h: &Harness, name: &str) {
    h.kube.put(
        &format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS}, "spec": {"template": {"metadata": {}}}}),
    );
}

fn patches_of(h: &Harness, path_part: &str) -> Vec<Value> {
    h.kube
        .writes()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains(path_part))
        .filter_map(|r| r.body)
        .collect()
}

/// Replaces the harness's settings (the context is rebuilt around the same clients).
fn with_debounce(mut h: Harness, window: Duration) -> Harness {
    let mut ctx = Arc::try_unwrap(h.ctx)
        .ok()
        .expect("no other user of the context");
    ctx.settings.restart_debounce = window;
    h.ctx = Arc::new(ctx);
    h
}

#[tokio::test]
async fn several_vault_secrets_changing_restart_one_deployment_once() {
    let window = Duration::from_secs(2);
    let mut h = with_debounce(Harness::new().await, window);
    deployment(&h, "web");
    for name in ["a", "b", "c"] {
        h.secret(NS, name, &[("password", "v1")]);
        let mut spec = push_spec(name);
        spec["mirror"]["rolloutRestartTargets"] = json!([{"kind": "Deployment", "name": "web"}]);
        h.vault_secret(name, spec);
        h.reconcile(name).await.unwrap();
    }
    assert!(
        patches_of(&h, "/deployments/web").is_empty(),
        "no restart on first syncs"
    );

    h.kube.clear_requests();
    for name in ["a", "b", "c"] {
        h.secret(NS, name, &[("password", "v2")]);
        h.reconcile(name).await.unwrap();
    }
    assert!(
        patches_of(&h, "/deployments/web").is_empty(),
        "restarts wait for the window"
    );
    // The restart queue runs on tokio's clock: paused, a window passes in no real time and the
    // queue's timer fires before ours (only PrivX, over real sockets, needs the real clock:
    // nothing here reaches it until `resume`).
    tokio::time::pause();
    tokio::time::sleep(window).await;
    let patches = patches_of(&h, "/deployments/web");
    assert_eq!(
        patches.len(),
        1,
        "one restart for three changes: {patches:?}"
    );
    let c_hash = h.get_vs("c").status.unwrap().data_hash.unwrap();
    assert_eq!(
        patches[0]["spec"]["template"]["metadata"]["annotations"]["privx-operator.dev/data-hash"],
        c_hash.as_str(),
        "the latest data"
    );
    let reasons = h.kube.event_reasons();
    assert_eq!(
        reasons.iter().filter(|r| *r == "RolloutRestarted").count(),
        3,
        "each VaultSecret is told: {reasons:?}"
    );

    // Changes right after the restart wait a full window after it.
    h.kube.clear_requests();
    tokio::time::resume();
    h.secret(NS, "a", &[("password", "v3")]);
    h.reconcile("a").await.unwrap();
    tokio::time::pause();
    tokio::time::sleep(window / 2).await;
    assert!(patches_of(&h, "/deployments/web").is_empty());
    tokio::time::sleep(window).await;
    assert_eq!(patches_of(&h, "/deployments/web").len(), 1);
}

#[tokio::test]
async fn an_argo_rollout_is_restarted_through_spec_restart_at() {
    let mut h = Harness::new().await;
    h.kube.put(
        &format!("/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/canary"),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "canary", "namespace": NS}, "spec": {}}),
    );
    h.secret(NS, "db", &[("password", "v1")]);
    let mut spec = push_spec("db");
    spec["mirror"]["rolloutRestartTargets"] = json!([{"kind": "Rollout", "name": "canary"}]);
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
    h.secret(NS, "db", &[("password", "v2")]);
    h.kube.clear_requests();
    h.reconcile("app").await.unwrap();
    let patches = patches_of(&h, "/rollouts/canary");
    assert_eq!(patches.len(), 1, "{patches:?}");
    let at = patches[0]["spec"]["restartAt"]
        .as_str()
        .expect("spec.restartAt");
    let at: jiff::Timestamp = at.parse().expect("an RFC 3339 time");
    assert!((jiff::Timestamp::now() - at).get_seconds().abs() < 60);
    assert!(
        patches[0]["spec"].get("template").is_none(),
        "no pod-template change"
    );
}

#[tokio::test]
async fn a_missing_restart_target_is_reported_without_failing_the_sync() {
    let mut h = Harness::new().await;
    deployment(&h, "web");
    h.secret(NS, "db", &[("password", "v1")]);
    let mut spec = push_spec("db");
    spec["mirror"]["rolloutRestartTargets"] = json!([
        {"kind": "Deployment", "name": "web"},
        {"kind": "StatefulSet", "name": "ghost"},
    ]);
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
    let (status, reason, message) = condition(&h, "app", "RestartTargets").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TargetNotFound")
    );
    assert!(
        message.contains("StatefulSet ghost does not exist"),
        "{message}"
    );
    assert_eq!(
        condition(&h, "app", "Ready").unwrap().0,
        "True",
        "the data is synced"
    );
    assert!(
        h.kube
            .event_reasons()
            .contains(&"RolloutTargetUnavailable".to_string())
    );

    // The existing target is still restarted when the data changes.
    h.secret(NS, "db", &[("password", "v2")]);
    h.kube.clear_requests();
    h.reconcile("app").await.unwrap();
    assert_eq!(patches_of(&h, "/deployments/web").len(), 1);
    assert_eq!(h.secret_data(NS, "db-mirror").unwrap()["password"], "v2");
    let id = h.ctx.settings.hmac_key.id();
    let hash = h.get_vs("app").status.unwrap().data_hash.unwrap();
    assert!(hash.starts_with(&format!("hmac-sha256:{id}:")), "{hash}");
}

/// Replaces the operator's HMAC key (a new key Secret, a renamed release), as a restart with
/// another key would.
fn with_key(mut h: Harness, key: u8) -> Harness {
    let mut ctx = Arc::try_unwrap(h.ctx)
        .ok()
        .expect("no other user of the context");
    ctx.settings.hmac_key =
        privx_operator::controller::vault_secret::hashing::HmacKey::new(vec![key; 32]);
    h.ctx = Arc::new(ctx);
    h
}

/// A synced VaultSecret `app` mirroring source `db` with `web` as restart target.
async fn synced_with_restart_target(h: &mut Harness) {
    deployment(h, "web");
    h.secret(NS, "db", &[("password", "v1")]);
    let mut spec = push_spec("db");
    spec["mirror"]["rolloutRestartTargets"] = json!([{"kind": "Deployment", "name": "web"}]);
    h.vault_secret("app", spec);
    h.reconcile("app").await.unwrap();
}

fn mirror_hash(h: &Harness) -> String {
    h.kube.get(&secret_path(NS, "db-mirror")).unwrap()["metadata"]["annotations"]
        ["privx-operator.dev/data-hash"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Issue 13 item 9: a new HMAC key with unchanged data re-hashes without restarting.
#[tokio::test]
async fn a_new_hmac_key_rehashes_without_restarting_when_the_data_is_unchanged() {
    let mut h = Harness::new().await;
    synced_with_restart_target(&mut h).await;
    let old_status = h.get_vs("app").status.unwrap();
    let old_mirror_hash = mirror_hash(&h);

    let mut h = with_key(h, 99);
    let new_id = h.ctx.settings.hmac_key.id();
    h.kube.clear_requests();
    h.reconcile("app").await.unwrap();
    assert!(
        patches_of(&h, "/deployments/web").is_empty(),
        "no restart for a new key alone"
    );
    assert!(
        !h.kube
            .event_reasons()
            .iter()
            .any(|r| r == "RolloutRestarted"),
        "{:?}",
        h.kube.event_reasons()
    );
    let status = h.get_vs("app").status.unwrap();
    let (data_hash, inputs_hash) = (status.data_hash.unwrap(), status.inputs_hash.unwrap());
    assert_ne!(Some(&data_hash), old_status.data_hash.as_ref());
    assert_ne!(Some(&inputs_hash), old_status.inputs_hash.as_ref());
    for hash in [&data_hash, &inputs_hash, &mirror_hash(&h)] {
        assert!(
            hash.starts_with(&format!("hmac-sha256:{new_id}:")),
            "rewritten with the new key: {hash}"
        );
    }
    assert_ne!(mirror_hash(&h), old_mirror_hash);
    assert_eq!(h.secret_data(NS, "db-mirror").unwrap()["password"], "v1");
}

/// Issue 13 item 9: a new HMAC key together with a real change still restarts.
#[tokio::test]
async fn a_new_hmac_key_with_changed_data_restarts() {
    let mut h = Harness::new().await;
    synced_with_restart_target(&mut h).await;
    let mut h = with_key(h, 99);
    h.secret(NS, "db", &[("password", "v2")]);
    h.kube.clear_requests();
    h.reconcile("app").await.unwrap();
    assert_eq!(patches_of(&h, "/deployments/web").len(), 1);
    assert_eq!(h.secret_data(NS, "db-mirror").unwrap()["password"], "v2");
    let id = h.ctx.settings.hmac_key.id();
    let hash = h.get_vs("app").status.unwrap().data_hash.unwrap();
    assert!(hash.starts_with(&format!("hmac-sha256:{id}:")), "{hash}");
}

// ---------------------------------------------------------------------------------------------
// List pages

#[tokio::test]
async fn routine_refreshes_of_read_only_mirrors_read_privx_by_list_pages() {
    const N: usize = 150;
    let mut h = Harness::new().await;
    for i in 0..N {
        privx_secret(
            &h,
            &format!("k8s/demo/item-{i:03}"),
            json!({"value": format!("v{i}")}),
        )
        .await;
        h.vault_secret(
            &format!("item-{i:03}"),
            json!({"name": format!("k8s/demo/item-{i:03}"), "mirror": {}}),
        );
    }
    for i in 0..N {
        h.reconcile(&format!("item-{i:03}")).await.unwrap();
    }
    assert_eq!(h.secret_data(NS, "item-042").unwrap()["value"], "v42");

    // The refresh of all of them: list pages, not one GET each.
    h.change_in_privx("k8s/demo/item-007", "value", "changed")
        .await;
    h.sim.clear_requests();
    for i in 0..N {
        h.reconcile(&format!("item-{i:03}")).await.unwrap();
    }
    let calls = privx_calls(&h);
    assert!(
        calls.len() <= N.div_ceil(100),
        "{} PrivX requests for {N} read-only objects: {calls:?}",
        calls.len()
    );
    assert!(calls.iter().all(|c| c.starts_with("GET")), "{calls:?}");
    assert_eq!(
        h.secret_data(NS, "item-007").unwrap()["value"],
        "changed",
        "the listing carries the data"
    );
    // Only what some VaultSecret names is held: the demo seed's two other shared secrets not.
    assert_eq!(h.ctx.list_pages.held(), N);
    println!(
        "list pages: {} PrivX requests for the refresh of {N} read-only objects; {} secrets, {} bytes of names and data held",
        calls.len(),
        h.ctx.list_pages.held(),
        h.ctx.list_pages.held_bytes()
    );
}

/// Issue 23 §3: 10 read-only mirrors in a vault of 10,000 shared secrets. The first routine
/// refresh lists (the probe that measures the vault: one request per 100 secrets) and keeps only
/// the 10 secrets named, which serve that refresh; once that listing is stale, a new one would
/// cost more than 10 GETs, so each object GETs.
#[tokio::test]
async fn a_big_vault_with_few_read_only_mirrors_holds_only_theirs_and_then_reads_each() {
    const BULK: usize = 10_000;
    const N: usize = 10;
    let mut seed = privx_sim::demo_seed();
    let secret = |name: String, value: String| privx_sim::SeedSecret {
        name,
        owner_id: None,
        data: serde_json::from_value(json!({"value": value})).unwrap(),
        read_roles: vec!["privx-operator".into()],
        write_roles: vec!["privx-operator".into()],
    };
    seed.secrets
        .extend((0..BULK).map(|i| secret(format!("bulk/other-{i:05}"), format!("x{i}"))));
    seed.secrets
        .extend((0..N).map(|i| secret(format!("k8s/demo/ro-{i}"), format!("v{i}"))));
    let total = seed.secrets.len();
    let mut h = Harness::with_options(privx_sim::SimOptions {
        seed,
        ..Default::default()
    })
    .await;
    for i in 0..N {
        h.vault_secret(
            &format!("ro-{i}"),
            json!({"name": format!("k8s/demo/ro-{i}"), "mirror": {}}),
        );
        h.reconcile(&format!("ro-{i}")).await.unwrap();
    }
    assert_eq!(h.secret_data(NS, "ro-3").unwrap()["value"], "v3");

    // First routine refresh: the probe listing, every page once; the 10 held, nothing else.
    h.sim.clear_requests();
    for i in 0..N {
        h.reconcile(&format!("ro-{i}")).await.unwrap();
    }
    let probe = privx_calls(&h);
    let pages = total.div_ceil(100);
    assert!(
        probe.len() <= pages,
        "{} requests, {pages} pages: {probe:?}",
        probe.len()
    );
    assert!(probe.iter().all(|c| c == "GET GET /vault/api/v1/secrets"));
    let held = h.ctx.list_pages.held();
    assert_eq!(held, N, "only the named secrets are kept");
    let held_bytes = h.ctx.list_pages.held_bytes();
    assert!(held_bytes < 1000, "{held_bytes} bytes held");

    // The listing goes stale (as a write, or its age, makes it): a new one would cost more
    // than reading each, so one GET per object.
    h.ctx.list_pages.invalidate();
    h.sim.clear_requests();
    for i in 0..N {
        h.reconcile(&format!("ro-{i}")).await.unwrap();
    }
    let then = privx_calls(&h);
    assert_eq!(
        then,
        vec!["GET GET /vault/api/v1/secrets/{name}".to_string(); N],
        "one GET each, no listing"
    );
    println!(
        "list pages, {total} shared secrets and {N} read-only objects: probe refresh {} requests, later refreshes {} requests; {} secrets, {held_bytes} bytes of names and data held",
        probe.len(),
        then.len(),
        held,
    );
}

/// Issue 23 §3: refreshes that want the listing at once share one (single-flight, every page
/// read once), and a write does not wait for it: it only makes sure that listing, begun before
/// the write, is not kept.
#[tokio::test]
async fn concurrent_refreshes_share_one_listing_and_a_write_does_not_wait_for_it() {
    let h = Harness::new().await;
    h.sim.set_faults(vec![privx_sim::Fault::latency(
        "GET /vault/api/v1/secrets",
        Duration::from_millis(300),
    )]);
    h.sim.clear_requests();
    let name = privx_sim::demo::SECRET_UPSTREAM;
    let gets = (0..20).map(|_| {
        h.ctx
            .list_pages
            .get(&h.ctx.privx, name, Duration::from_secs(60), 100, |_| true)
    });
    let (results, ()) = tokio::join!(futures::future::join_all(gets), async {
        // A PrivX write while the listing is under way: returns at once (no await at all).
        h.ctx.list_pages.invalidate();
    });
    for result in results {
        let secret = result.expect("the listing").expect("listed with its data");
        assert_eq!(secret.name, name);
    }
    let lists: Vec<_> = privx_calls(&h)
        .into_iter()
        .filter(|c| c == "GET GET /vault/api/v1/secrets")
        .collect();
    assert_eq!(lists.len(), 1, "one listing for 20 refreshes: {lists:?}");
    assert_eq!(
        h.ctx.list_pages.held(),
        0,
        "a listing begun before a write is not kept after it"
    );
}

// ---------------------------------------------------------------------------------------------
// Who owns the mirror, and taking over Secrets of other operators (issue 24). The real runner,
// its watches included, against the fake API (garbage collection on) and the simulator.

mod ownership {
    use std::time::Duration;

    use privx_sim::{SimOptions, Simulator};
    use serde_json::{Value, json};

    use super::support::running::{
        Running, eventually, namespace_object, ready_reason, secret_object, vault_secret_object,
    };
    use super::support::{FakeKube, NS, privx_client_for, secret_path, vs_path};

    const SECS: Duration = Duration::from_secs(10);
    const WEB: &str = "/apis/apps/v1/namespaces/demo/deployments/web";

    fn b64(v: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    }

    async fn start(kube: &FakeKube, sim: &Simulator) -> Running {
        let running = Running::start_tuned(
            kube,
            sim,
            privx_client_for(sim, sim.credentials()),
            &[],
            8,
            // No debounce: a restart is made within the reconcile, before its status write.
            |s| s.restart_debounce = Duration::ZERO,
        );
        eventually("watches up", SECS, || running.up()).await;
        running
    }

    async fn world() -> (FakeKube, Simulator) {
        let sim = Simulator::start(SimOptions::default()).await.unwrap();
        let kube = FakeKube::default();
        kube.put("/api/v1/namespaces/demo", namespace_object(NS, json!({})));
        kube.put(
            &secret_path(NS, "db-creds"),
            secret_object(NS, "db-creds", &[("password", "pw-1")]),
        );
        kube.put(
            WEB,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": NS},
                   "spec": {"template": {"metadata": {}}}}),
        );
        (kube, sim)
    }

    fn spec(policy: &str, extra: Value) -> Value {
        let mut mirror = json!({"secretName": "app", "creationPolicy": policy});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            mirror[k] = v;
        }
        json!({"source": {"secretRef": {"name": "db-creds"}}, "mirror": mirror})
    }

    fn reconciles(running: &Running) -> f64 {
        running
            .sample(r#"privx_operator_reconciles_total{controller="vaultsecret"}"#)
            .unwrap_or(0.0)
    }

    fn mirror(kube: &FakeKube) -> Option<Value> {
        kube.get(&secret_path(NS, "app"))
    }

    fn value(kube: &FakeKube, key: &str) -> Option<String> {
        mirror(kube).and_then(|m| m["data"][key].as_str().map(String::from))
    }

    fn restarts(kube: &FakeKube) -> usize {
        kube.writes_to(WEB).len()
    }

    /// Touches the VaultSecret (a label: a real change, so a reconcile) and checks that the
    /// reconcile writes nothing to Kubernetes.
    async fn steady(kube: &FakeKube, running: &Running, what: &str) {
        let mut vs = kube.get(&vs_path(NS, "db")).unwrap();
        let n = vs["metadata"]["labels"]["touch"]
            .as_str()
            .map_or(0, |n| n.parse::<u32>().unwrap() + 1);
        vs["metadata"]["labels"]["touch"] = json!(n.to_string());
        let before = reconciles(running);
        kube.clear_requests();
        kube.put(&vs_path(NS, "db"), vs);
        eventually("the reconcile of the touch", SECS, || {
            reconciles(running) > before
        })
        .await;
        let writes: Vec<String> = kube
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "{what}: steady state writes {writes:?}");
    }

    /// Someone else's Secret `app`: their key, label and (dangling) owner, written by another
    /// field manager.
    fn theirs(kube: &FakeKube, owner_kind: (&str, &str), data: &[(&str, &str)]) -> String {
        let mut s = secret_object(NS, "app", data);
        s["metadata"]["labels"] = json!({"team": "a"});
        s["metadata"]["ownerReferences"] = json!([{
            "apiVersion": owner_kind.0, "kind": owner_kind.1, "name": "app",
            "uid": "11111111-0000-4000-8000-000000000001",
            "controller": true, "blockOwnerDeletion": true,
        }]);
        let put = kube.put_as(&secret_path(NS, "app"), s, "external-secrets");
        put["metadata"]["uid"].as_str().unwrap().to_string()
    }

    fn owner_kinds(m: &Value) -> Vec<String> {
        m["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["kind"].as_str().unwrap().to_string())
            .collect()
    }

    /// Each policy through create, steady state, update, hand edit and deletion of the
    /// VaultSecret: Owner deletes the Secret, Orphan keeps it, Merge removes only its keys.
    #[tokio::test]
    async fn each_creation_policy_creates_updates_restores_and_deletes_as_declared() {
        for policy in ["Owner", "Orphan", "Merge"] {
            let (kube, sim) = world().await;
            if policy == "Merge" {
                theirs(&kube, ("v1", "ConfigMap"), &[("theirs", "x")]);
            }
            kube.put(
                &vs_path(NS, "db"),
                vault_secret_object(NS, "db", spec(policy, json!({}))),
            );
            let running = start(&kube, &sim).await;
            eventually(&format!("{policy}: Synced"), SECS, || {
                ready_reason(&kube, NS, "db") == "Synced"
            })
            .await;
            let m = mirror(&kube).unwrap();
            assert_eq!(m["data"]["password"], b64("pw-1"), "{policy}");
            match policy {
                "Owner" => assert_eq!(owner_kinds(&m), ["VaultSecret"]),
                "Orphan" => assert!(owner_kinds(&m).is_empty(), "{m}"),
                _ => {
                    assert_eq!(owner_kinds(&m), ["ConfigMap"], "their owner untouched");
                    assert_eq!(m["data"]["theirs"], b64("x"), "their key untouched");
                    assert_eq!(m["metadata"]["labels"]["team"], "a", "their label too");
                }
            }
            steady(&kube, &running, policy).await;

            // Update: the source changes, the mirror follows.
            kube.put(
                &secret_path(NS, "db-creds"),
                secret_object(NS, "db-creds", &[("password", "pw-2")]),
            );
            eventually(&format!("{policy}: the update mirrored"), SECS, || {
                value(&kube, "password") == Some(b64("pw-2"))
            })
            .await;

            // A hand edit is put back by the mirror's watch.
            let mut edited = mirror(&kube).unwrap();
            edited["data"]["password"] = json!(b64("hand-edited"));
            kube.put_as(&secret_path(NS, "app"), edited, "kubectl-edit");
            eventually(&format!("{policy}: the hand edit put back"), SECS, || {
                value(&kube, "password") == Some(b64("pw-2"))
            })
            .await;
            steady(&kube, &running, policy).await;

            kube.delete(&vs_path(NS, "db"));
            eventually(&format!("{policy}: the VaultSecret gone"), SECS, || {
                kube.get(&vs_path(NS, "db")).is_none()
            })
            .await;
            match policy {
                "Owner" => assert!(mirror(&kube).is_none(), "collected with its owner"),
                "Orphan" => assert_eq!(value(&kube, "password"), Some(b64("pw-2"))),
                _ => {
                    let m = mirror(&kube).expect("someone else's Secret stays");
                    assert!(m["data"].get("password").is_none(), "our key removed: {m}");
                    assert_eq!(m["data"]["theirs"], b64("x"));
                    assert_eq!(m["metadata"]["labels"], json!({"team": "a"}));
                    assert_eq!(owner_kinds(&m), ["ConfigMap"]);
                }
            }
            running.stop().await;
        }
    }

    /// Merge never creates the Secret, and says so in status.
    #[tokio::test]
    async fn merge_without_the_secret_creates_nothing_and_says_so() {
        let (kube, sim) = world().await;
        kube.put(
            &vs_path(NS, "db"),
            vault_secret_object(NS, "db", spec("Merge", json!({}))),
        );
        let running = start(&kube, &sim).await;
        eventually("MirrorNotFound", SECS, || {
            ready_reason(&kube, NS, "db") == "MirrorNotFound"
        })
        .await;
        assert!(mirror(&kube).is_none());
        assert!(
            kube.writes().iter().all(|w| !w.path.contains("/secrets")),
            "no Secret written"
        );
        running.stop().await;
    }

    /// A takeover of a Secret an ESO ExternalSecret owns: one write to the Secret, same uid,
    /// the ExternalSecret's controller reference replaced by ours; a restart only when the data
    /// differs. Without `adopt`, Conflict and no write.
    #[tokio::test]
    async fn an_eso_owned_secret_is_taken_over_in_one_write_restarting_only_on_new_data() {
        for (existing, restarts_wanted) in [("pw-1", 0), ("old", 1)] {
            let (kube, sim) = world().await;
            let uid = theirs(
                &kube,
                ("external-secrets.io/v1", "ExternalSecret"),
                &[("password", existing)],
            );
            kube.put(
                &vs_path(NS, "db"),
                vault_secret_object(
                    NS,
                    "db",
                    spec(
                        "Owner",
                        json!({"adopt": true, "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}),
                    ),
                ),
            );
            let read_at =
                kube.get(&secret_path(NS, "app")).unwrap()["metadata"]["resourceVersion"].clone();
            kube.clear_requests();
            let running = start(&kube, &sim).await;
            eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
            assert_eq!(restarts(&kube), restarts_wanted, "{existing}: restarts");
            // The takeover is a compare-and-set on the version it was read at: a change
            // someone makes in between is not overwritten (409, read again next time).
            let takeover = &kube.writes_to(&secret_path(NS, "app"))[0];
            assert_eq!(
                takeover.body.as_ref().unwrap()["metadata"]["resourceVersion"],
                read_at,
                "{existing}: the takeover patch carries the version read"
            );
            let m = mirror(&kube).unwrap();
            assert_eq!(m["metadata"]["uid"], uid, "{existing}: the same Secret");
            assert_eq!(m["data"]["password"], b64("pw-1"));
            assert_eq!(owner_kinds(&m), ["VaultSecret"], "{existing}: {m}");
            assert_eq!(m["metadata"]["labels"]["team"], "a", "their label kept");
            assert_eq!(
                kube.writes_to(&secret_path(NS, "app")).len(),
                1,
                "{existing}: one write to the Secret"
            );
            steady(&kube, &running, "after the takeover").await;
            running.stop().await;
        }
    }

    /// An immutable mirror is replaced (a new Secret) when its data changes, and the declared
    /// workloads restart once; unchanged, it is left alone.
    #[tokio::test]
    async fn an_immutable_mirror_is_replaced_on_a_data_change_and_restarts() {
        let (kube, sim) = world().await;
        kube.put(
            &vs_path(NS, "db"),
            vault_secret_object(
                NS,
                "db",
                spec(
                    "Owner",
                    json!({"immutable": true, "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}]}),
                ),
            ),
        );
        let running = start(&kube, &sim).await;
        eventually("Synced", SECS, || ready_reason(&kube, NS, "db") == "Synced").await;
        let first = mirror(&kube).unwrap();
        assert_eq!(first["immutable"], true);
        steady(&kube, &running, "immutable").await;

        kube.put(
            &secret_path(NS, "db-creds"),
            secret_object(NS, "db-creds", &[("password", "pw-2")]),
        );
        eventually("the new data mirrored", SECS, || {
            value(&kube, "password") == Some(b64("pw-2"))
        })
        .await;
        let second = mirror(&kube).unwrap();
        assert_ne!(
            second["metadata"]["uid"], first["metadata"]["uid"],
            "a new Secret"
        );
        assert_eq!(second["immutable"], true);
        eventually("one restart", SECS, || restarts(&kube) == 1).await;
        running.stop().await;
    }

    #[tokio::test]
    async fn without_adopt_a_foreign_secret_is_a_conflict_and_never_written() {
        let (kube, sim) = world().await;
        theirs(
            &kube,
            ("secrets.hashicorp.com/v1beta1", "VaultStaticSecret"),
            &[("password", "old")],
        );
        kube.put(
            &vs_path(NS, "db"),
            vault_secret_object(NS, "db", spec("Owner", json!({}))),
        );
        kube.clear_requests();
        let running = start(&kube, &sim).await;
        eventually("Conflict", SECS, || {
            ready_reason(&kube, NS, "db") == "Conflict"
        })
        .await;
        assert!(kube.writes_to(&secret_path(NS, "app")).is_empty());
        assert_eq!(value(&kube, "password"), Some(b64("old")));
        running.stop().await;
    }
}
