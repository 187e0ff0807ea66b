//! VaultSecret reconcile tests: the real controller code against a fake Kubernetes API and the
//! real PrivX simulator over 127.0.0.1.

mod support;

use privx_client::{SecretData, SecretLocation, SecretWrite};
use privx_sim::Fault;
use serde_json::json;
use support::{Harness, NS, secret_path, vs_path};

fn push_spec() -> serde_json::Value {
    json!({
        "readRoles": [{"name": "app-readers"}],
        "writeRoles": [{"name": "app-writers"}],
        "source": {"secretRef": {"name": "db-creds"}},
        "mirror": {"secretName": "db-creds-mirror"},
    })
}

const PRIVX_NAME: &str = "k8s/demo/db";

#[tokio::test]
async fn push_creates_once_mirrors_and_then_stays_quiet() {
    let mut h = Harness::new().await;
    h.secret(
        NS,
        "db-creds",
        &[("username", "app"), ("password", "pa55-value")],
    );
    h.vault_secret("db", push_spec());
    h.sim.clear_requests();

    h.reconcile("db").await.expect("first reconcile");

    // PrivX holds the data with the declared roles plus the operator's own.
    let stored = h
        .someone_else
        .get_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "pa55-value");
    let read: Vec<_> = stored.read_roles.iter().map(|r| r.id.as_str()).collect();
    assert!(
        read.contains(&"10000000-0000-4000-8000-000000000002"),
        "app-readers: {read:?}"
    );
    assert!(
        read.contains(&"10000000-0000-4000-8000-000000000001"),
        "the operator's own role: {read:?}"
    );
    assert_eq!(
        h.privx_writes(),
        ["POST /vault/api/v1/secrets"],
        "exactly one PrivX write"
    );

    // Mirror, owner reference, label, hash.
    let mirror = h
        .kube
        .get(&secret_path(NS, "db-creds-mirror"))
        .expect("mirror written");
    assert_eq!(
        h.secret_data(NS, "db-creds-mirror").unwrap()["password"],
        "pa55-value"
    );
    assert_eq!(
        mirror["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "privx-operator"
    );
    assert_eq!(
        mirror["metadata"]["ownerReferences"][0]["kind"],
        "VaultSecret"
    );
    let vs = h.get_vs("db");
    let status = vs.status.clone().unwrap();
    let hash = status.data_hash.clone().unwrap();
    assert_eq!(
        mirror["metadata"]["annotations"]["privx-operator.dev/data-hash"],
        hash.as_str()
    );
    assert_eq!(h.ready_reason("db").1, "Synced");
    assert_eq!(status.privx.as_ref().unwrap().name, PRIVX_NAME);
    assert!(h.kube.event_reasons().contains(&"Created".to_string()));

    // Economy of a new object: one PrivX write (above); in Kubernetes one mirror apply and one
    // status apply. The source Secret is not labelled (a write per object): its metadata-only
    // watch needs no label (docs/vaultsecret.md).
    let writes: Vec<String> = h
        .kube
        .writes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            format!("PATCH {}", secret_path(NS, "db-creds-mirror")),
            format!("PATCH {}/status", vs_path(NS, "db")),
        ]
    );

    // Steady state: no Kubernetes writes, one PrivX read.
    h.kube.clear_requests();
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();
    assert!(h.kube.writes().is_empty(), "{:?}", h.kube.writes());
    assert!(h.privx_writes().is_empty());
    assert_eq!(h.privx_reads(), ["GET /vault/api/v1/secrets/{name}"]);

    // Secret values never reach status, events or any request the operator sent to Kubernetes
    // except the mirrored Secret itself.
    let status_text = serde_json::to_string(&h.get_vs("db").status).unwrap();
    assert!(!status_text.contains("pa55-value"));
    assert!(
        h.kube
            .event_notes()
            .iter()
            .all(|n| !n.contains("pa55-value"))
    );
}

#[tokio::test]
async fn source_change_is_pushed_and_restarts_targets_once() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "v1")]);
    let mut spec = push_spec();
    spec["mirror"]["rolloutRestartTargets"] = json!([{"kind": "Deployment", "name": "web"}]);
    h.vault_secret("db", spec);
    h.kube.put(
        "/apis/apps/v1/namespaces/demo/deployments/web",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS}, "spec": {"template": {"metadata": {}}}}),
    );
    h.reconcile("db").await.unwrap();
    let deployment_patches = |h: &Harness| {
        h.kube
            .writes()
            .iter()
            .filter(|r| r.path.contains("/deployments/web"))
            .count()
    };
    assert_eq!(deployment_patches(&h), 0, "no restart on the first sync");

    h.secret(NS, "db-creds", &[("password", "v2")]);
    h.kube.clear_requests();
    h.reconcile("db").await.unwrap();
    let stored = h
        .someone_else
        .get_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "v2");
    assert_eq!(
        h.secret_data(NS, "db-creds-mirror").unwrap()["password"],
        "v2"
    );
    assert_eq!(deployment_patches(&h), 1);
    let hash = h.get_vs("db").status.unwrap().data_hash.unwrap();
    let deployment = h
        .kube
        .get("/apis/apps/v1/namespaces/demo/deployments/web")
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["privx-operator.dev/data-hash"],
        hash.as_str()
    );
    assert!(h.kube.event_reasons().contains(&"Updated".to_string()));

    // Nothing changed: no restart again (not at operator restart, not in a loop).
    h.kube.clear_requests();
    h.reconcile("db").await.unwrap();
    assert_eq!(deployment_patches(&h), 0);
}

#[tokio::test]
async fn drift_in_privx_is_put_back_with_an_event() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "declared")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.unwrap();

    h.change_in_privx(PRIVX_NAME, "password", "tampered").await;

    h.reconcile("db").await.unwrap();
    let stored = h
        .someone_else
        .get_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "declared");
    assert!(
        h.kube
            .event_reasons()
            .contains(&"DriftCorrected".to_string())
    );
    assert_eq!(
        h.secret_data(NS, "db-creds-mirror").unwrap()["password"],
        "declared"
    );
}

#[tokio::test]
async fn existing_privx_secret_is_not_overwritten_without_adopt() {
    let mut h = Harness::new().await;
    h.namespace(
        NS,
        json!({"privx-operator.dev/allowed-names": "legacy/*, shared/*"}),
    );
    // Someone created shared/db by hand, readable and writable by the operator's role.
    let operator_role = privx_client::RoleHandle {
        id: "10000000-0000-4000-8000-000000000001".into(),
        ..Default::default()
    };
    h.someone_else
        .create_secret(
            &SecretLocation::Shared,
            "shared/db",
            &SecretWrite {
                data: SecretData([("password".to_string(), json!("theirs"))].into()),
                read_roles: vec![operator_role.clone()],
                write_roles: vec![operator_role],
            },
        )
        .await
        .unwrap();
    h.secret(NS, "db-creds", &[("password", "mine")]);
    let mut spec = push_spec();
    spec["name"] = json!("shared/db");
    h.vault_secret("db", spec.clone());
    h.sim.clear_requests();

    h.reconcile("db")
        .await
        .expect("a conflict is a status, not an error");
    let (ready, reason, message) = h.ready_reason("db");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Conflict"));
    assert!(message.contains("adopt"), "{message}");
    assert!(!message.contains("theirs") && !message.contains("mine"));
    // A new object creates without reading first: PrivX refuses the taken name (never
    // overwrites on create), the operator reads the secret and writes nothing more.
    let writes: Vec<(String, u16)> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.route.starts_with(r.method.as_str()))
        .filter(|r| !r.route.contains("/oauth/token") && !r.route.contains("/roles/resolve"))
        .map(|r| (r.route, r.status))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].0, "POST /vault/api/v1/secrets");
    assert!(
        [400, 409].contains(&writes[0].1),
        "the create of a taken name is refused: {writes:?}"
    );
    assert!(
        h.privx_reads()
            .iter()
            .any(|r| r == "GET /vault/api/v1/secrets/{name}"),
        "then the secret is read: {:?}",
        h.privx_reads()
    );
    assert!(h.kube.get(&secret_path(NS, "db-creds-mirror")).is_none());
    let untouched = h
        .someone_else
        .get_secret(&SecretLocation::Shared, "shared/db")
        .await
        .unwrap();
    assert_eq!(untouched.data.unwrap().0["password"], "theirs");

    // With adopt: taken over and overwritten.
    spec["adopt"] = json!(true);
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    let stored = h
        .someone_else
        .get_secret(&SecretLocation::Shared, "shared/db")
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap().0["password"], "mine");
    let status = h.get_vs("db").status.unwrap();
    assert_eq!(
        status.privx.unwrap().ownership,
        Some(privx_operator::crd::Ownership::Adopted)
    );
    assert!(h.kube.event_reasons().contains(&"Adopted".to_string()));

    // Adopting a secret the operator's API client may not write is reported, not forced.
    let mut spec = push_spec();
    spec["name"] = json!("legacy/db-password");
    spec["adopt"] = json!(true);
    spec["mirror"]["secretName"] = json!("legacy-mirror");
    h.vault_secret("legacy", spec);
    assert!(h.reconcile("legacy").await.is_err());
    assert_eq!(h.ready_reason("legacy").1, "PermissionDenied");
}

#[tokio::test]
async fn names_outside_the_namespace_prefix_are_refused_before_any_privx_call() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = push_spec();
    spec["name"] = json!("k8s/other-team/db");
    h.vault_secret("db", spec);
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "NotAllowed");
    assert!(message.contains("k8s/demo/"), "{message}");
    assert!(h.sim.requests().is_empty(), "no PrivX call at all");

    // A personal secret needs its owner allowed on the Namespace.
    let mut spec = push_spec();
    spec["owner"] = json!({"userId": "20000000-0000-4000-8000-000000000001"});
    h.vault_secret("mine", spec);
    h.reconcile("mine").await.unwrap();
    assert_eq!(h.ready_reason("mine").1, "NotAllowed");
    h.namespace(
        NS,
        json!({"privx-operator.dev/allowed-owners": "20000000-0000-4000-8000-000000000001"}),
    );
    h.reconcile("mine").await.unwrap();
    assert_eq!(h.ready_reason("mine").1, "Synced");
    let personal = SecretLocation::Personal {
        user_id: "20000000-0000-4000-8000-000000000001".into(),
    };
    let stored = h.someone_else.get_secret(&personal, "k8s/demo/mine").await;
    assert!(
        h.privx_writes().iter().any(|w| w.contains("/user/")),
        "{:?}",
        h.privx_writes()
    );
    let _ = stored;
}

#[tokio::test]
async fn read_only_mirror_follows_privx() {
    let mut h = Harness::new().await;
    h.vault_secret(
        "upstream",
        json!({"name": "k8s/demo/upstream-api-key", "mirror": {"keyMapping": {"api-key": "API_KEY"}}}),
    );
    h.reconcile("upstream").await.unwrap();
    assert_eq!(
        h.secret_data(NS, "upstream").unwrap()["API_KEY"],
        "demo-upstream-api-key-value"
    );
    assert!(h.privx_writes().is_empty());

    h.change_in_privx("k8s/demo/upstream-api-key", "api-key", "rotated")
        .await;
    let action = h.reconcile("upstream").await.unwrap();
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
    assert_eq!(h.secret_data(NS, "upstream").unwrap()["API_KEY"], "rotated");

    // Hand edits of the mirror are restored.
    h.secret(NS, "upstream", &[("API_KEY", "hand-edited")]);
    let mut mirror = h.kube.get(&secret_path(NS, "upstream")).unwrap();
    mirror["metadata"]["ownerReferences"] = json!([{"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "name": "upstream", "uid": h.get_vs("upstream").metadata.uid}]);
    h.kube.put(&secret_path(NS, "upstream"), mirror);
    h.reconcile("upstream").await.unwrap();
    assert_eq!(h.secret_data(NS, "upstream").unwrap()["API_KEY"], "rotated");

    // A key added by hand is removed, and then the mirror is quiet again.
    let mut mirror = h.kube.get(&secret_path(NS, "upstream")).unwrap();
    mirror["data"]["EXTRA"] = json!("eA==");
    h.kube.put(&secret_path(NS, "upstream"), mirror);
    h.reconcile("upstream").await.unwrap();
    let keys: Vec<String> = h.secret_data(NS, "upstream").unwrap().into_keys().collect();
    assert_eq!(keys, ["API_KEY"]);
    h.kube.clear_requests();
    h.reconcile("upstream").await.unwrap();
    assert!(h.kube.writes().is_empty(), "{:?}", h.kube.writes());
}

#[tokio::test]
async fn foreign_secret_with_the_mirror_name_is_left_alone() {
    let mut h = Harness::new().await;
    h.secret(NS, "upstream", &[("keep", "me")]);
    h.vault_secret(
        "upstream",
        json!({"name": "k8s/demo/upstream-api-key", "mirror": {}}),
    );
    h.reconcile("upstream").await.unwrap();
    assert_eq!(h.ready_reason("upstream").1, "Conflict");
    assert_eq!(h.secret_data(NS, "upstream").unwrap()["keep"], "me");
}

#[tokio::test]
async fn generated_password_follows_the_policy_and_is_stable_until_asked() {
    let mut h = Harness::new().await;
    h.policy(
        "app-passwords",
        json!({"maxVersions": 3, "passwordMinLength": 20, "passwordMaxLength": 24, "useSpecialCharacters": false}),
    );
    let spec = json!({
        "source": {"generate": {"passwordPolicyRef": {"name": "app-passwords"}, "key": "password"}},
        "mirror": {},
    });
    h.vault_secret("gen", spec.clone());
    h.reconcile("gen").await.unwrap();
    let first = h.secret_data(NS, "gen").unwrap()["password"].clone();
    assert!((20..=24).contains(&first.len()), "{first}");
    assert!(
        first.chars().all(|c| c.is_ascii_alphanumeric()),
        "no specials: {first}"
    );

    // Re-apply and reconcile again: same password (PrivX holds it).
    h.vault_secret("gen", spec.clone());
    h.reconcile("gen").await.unwrap();
    assert_eq!(h.secret_data(NS, "gen").unwrap()["password"], first);

    // A policy change does not regenerate.
    h.policy(
        "app-passwords",
        json!({"maxVersions": 3, "passwordMinLength": 30, "passwordMaxLength": 30}),
    );
    h.reconcile("gen").await.unwrap();
    assert_eq!(h.secret_data(NS, "gen").unwrap()["password"], first);

    // The regenerate annotation does, once.
    h.vault_secret_with(
        "gen",
        spec.clone(),
        json!({"annotations": {"privx-operator.dev/regenerate": "1"}}),
    );
    h.reconcile("gen").await.unwrap();
    let second = h.secret_data(NS, "gen").unwrap()["password"].clone();
    assert_ne!(second, first);
    assert_eq!(
        second.len(),
        30,
        "the new password follows the current policy"
    );
    assert!(h.kube.event_reasons().contains(&"Regenerated".to_string()));
    h.reconcile("gen").await.unwrap();
    assert_eq!(h.secret_data(NS, "gen").unwrap()["password"], second);
    assert!(
        h.kube
            .event_notes()
            .iter()
            .all(|n| !n.contains(&second) && !n.contains(&first))
    );
}

#[tokio::test]
async fn missing_policy_and_missing_source_are_reported() {
    let mut h = Harness::new().await;
    h.vault_secret(
        "gen",
        json!({"source": {"generate": {"passwordPolicyRef": {"name": "nope"}, "key": "password"}}}),
    );
    h.reconcile("gen").await.unwrap();
    assert_eq!(h.ready_reason("gen").1, "PolicyNotFound");

    h.vault_secret("db", push_spec());
    h.reconcile("db").await.unwrap();
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "SourceNotFound");
    assert!(message.contains("db-creds"));
    h.secret(NS, "db-creds", &[("password", "late")]);
    h.reconcile("db").await.unwrap();
    assert_eq!(h.ready_reason("db").1, "Synced");
}

#[tokio::test]
async fn privx_down_leaves_the_mirror_untouched_and_recovers() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "v1")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.unwrap();
    let mirror_before = h.kube.get(&secret_path(NS, "db-creds-mirror")).unwrap();

    h.sim.set_faults(vec![Fault::status("/vault/*", 503)]);
    h.secret(NS, "db-creds", &[("password", "v2")]);
    let err = h
        .reconcile("db")
        .await
        .expect_err("PrivX down is an error for backoff");
    assert!(!err.to_string().contains("v2"));
    let (ready, reason, _) = h.ready_reason("db");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "PrivXUnavailable")
    );
    assert_eq!(
        h.kube.get(&secret_path(NS, "db-creds-mirror")).unwrap()["data"],
        mirror_before["data"]
    );

    h.sim.set_faults(vec![]);
    h.reconcile("db").await.unwrap();
    assert_eq!(h.ready_reason("db").1, "Synced");
    assert_eq!(
        h.secret_data(NS, "db-creds-mirror").unwrap()["password"],
        "v2"
    );
}

#[tokio::test]
async fn delete_policy_removes_the_privx_secret_and_the_finalizer() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = push_spec();
    spec["deletionPolicy"] = json!("Delete");
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    let vs = h.kube.get(&vs_path(NS, "db")).unwrap();
    assert_eq!(
        vs["metadata"]["finalizers"],
        json!(["privx-operator.dev/cleanup"])
    );

    h.delete(&vs_path(NS, "db"));
    h.reconcile("db").await.unwrap();
    assert!(
        h.kube.get(&vs_path(NS, "db")).is_none(),
        "finalizer released, object gone"
    );
    let gone = h
        .someone_else
        .get_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await;
    assert!(
        matches!(gone, Err(privx_client::PrivxError::NotFound { .. })),
        "{gone:?}"
    );
}

#[tokio::test]
async fn retain_policy_needs_no_finalizer_and_keeps_the_privx_secret() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.unwrap();
    assert!(h.kube.get(&vs_path(NS, "db")).unwrap()["metadata"]["finalizers"].is_null());
    h.delete(&vs_path(NS, "db"));
    assert!(h.kube.get(&vs_path(NS, "db")).is_none());
    assert!(
        h.someone_else
            .get_secret(&SecretLocation::Shared, PRIVX_NAME)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn delete_never_blocks_when_privx_never_had_the_secret() {
    let mut h = Harness::new().await;
    // Invalid: the source is missing, so nothing is ever created; the finalizer is never added.
    let mut spec = push_spec();
    spec["deletionPolicy"] = json!("Delete");
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    assert!(h.kube.get(&vs_path(NS, "db")).unwrap()["metadata"]["finalizers"].is_null());

    // A finalizer left from an earlier life, with nothing recorded: released without PrivX.
    let mut o = h.kube.get(&vs_path(NS, "db")).unwrap();
    o["metadata"]["finalizers"] = json!(["privx-operator.dev/cleanup"]);
    h.kube.put(&vs_path(NS, "db"), o);
    h.delete(&vs_path(NS, "db"));
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();
    assert!(h.kube.get(&vs_path(NS, "db")).is_none());
    assert!(h.privx_writes().is_empty());
}

#[tokio::test]
async fn crash_between_privx_create_and_status_is_harmless() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.unwrap();
    // Simulate the crash: status lost.
    let mut o = h.kube.get(&vs_path(NS, "db")).unwrap();
    o["status"] = serde_json::Value::Null;
    h.kube.put(&vs_path(NS, "db"), o);
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();
    assert_eq!(h.ready_reason("db").1, "Synced");
    // Without a status the object looks new and creates without reading first: PrivX refuses
    // the taken name, the operator reads it, recognises its own secret, and writes no more.
    let writes: Vec<(String, u16)> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.route.starts_with("POST /vault"))
        .map(|r| (r.route, r.status))
        .collect();
    assert!(
        writes.iter().all(|(_, status)| [400, 409].contains(status)),
        "no duplicate create: {writes:?}"
    );
    assert!(
        !h.privx_writes().iter().any(|w| w.starts_with("PUT")),
        "nothing overwritten: {:?}",
        h.privx_writes()
    );
}

#[tokio::test]
async fn two_objects_declaring_one_privx_secret_the_younger_is_refused() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = push_spec();
    spec["name"] = json!("k8s/demo/shared");
    h.vault_secret("first", spec.clone());
    spec["mirror"]["secretName"] = json!("second-mirror");
    h.vault_secret("second", spec);
    h.reconcile("first").await.unwrap();
    h.reconcile("second").await.unwrap();
    let (_, reason, message) = h.ready_reason("second");
    assert_eq!(reason, "Conflict");
    assert!(message.contains("demo/first"), "{message}");
}

#[tokio::test]
async fn unknown_role_is_an_invalid_spec_naming_the_field() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = push_spec();
    spec["readRoles"] = json!([{"name": "app-readers"}, {"name": "no-such-role"}]);
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.readRoles[1]") && message.contains("no-such-role"),
        "{message}"
    );
}

#[tokio::test]
async fn identical_secret_created_by_someone_else_is_not_claimed() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "same")]);
    h.vault_secret("db", push_spec());
    // Someone else creates exactly what the object declares, before the operator does.
    h.reconcile("db").await.unwrap();
    let mine = h
        .someone_else
        .get_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await
        .unwrap();
    h.someone_else
        .delete_secret(&SecretLocation::Shared, PRIVX_NAME)
        .await
        .unwrap();
    h.someone_else
        .create_secret(
            &SecretLocation::Shared,
            PRIVX_NAME,
            &SecretWrite {
                data: mine.data.clone().unwrap(),
                read_roles: mine.read_roles.clone(),
                write_roles: mine.write_roles.clone(),
            },
        )
        .await
        .unwrap();
    let mut o = h.kube.get(&vs_path(NS, "db")).unwrap();
    o["status"] = serde_json::Value::Null;
    h.kube.put(&vs_path(NS, "db"), o);
    h.reconcile("db").await.unwrap();
    assert_eq!(h.ready_reason("db").1, "Conflict");
}

/// `status.lastSyncTime` (the `Last Sync` column) is written with a status write that happens
/// anyway, never on its own: an unchanged object keeps it and costs no Kubernetes write; a sync
/// that changes something moves it forward.
#[tokio::test]
async fn the_last_sync_time_rides_on_writes_that_happen_anyway() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "one")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.expect("first reconcile");
    let first = h
        .get_vs("db")
        .status
        .unwrap()
        .last_sync_time
        .expect("set with the first status write");

    let writes = h.kube_writes().len();
    h.reconcile("db").await.expect("steady reconcile");
    assert_eq!(h.kube_writes().len(), writes, "steady state writes nothing");
    assert_eq!(
        h.get_vs("db").status.unwrap().last_sync_time,
        Some(first.clone())
    );

    h.secret(NS, "db-creds", &[("password", "two")]);
    h.reconcile("db").await.expect("reconcile after a change");
    let second = h.get_vs("db").status.unwrap().last_sync_time.unwrap();
    assert!(second.0 >= first.0, "{second:?} after {first:?}");
    assert!(
        h.kube_writes().len() > writes,
        "the change was written, with the time"
    );
}
