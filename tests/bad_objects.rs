//! Objects the controllers cannot use: ones that do not deserialise (delivered by the watch as
//! `DeserializeGuard(Err(InvalidObject))`) and ones that deserialise but fail validation. Each
//! gets an `InvalidSpec` condition naming the problem, waits for a change, never reaches PrivX,
//! and never blocks its own deletion.

mod support;

use std::sync::Arc;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use privx_operator::controller::vault_secret::store::stored::StoredVaultSecret;
use privx_operator::controller::{password_policy, vault_secret};
use privx_operator::crd::PasswordPolicy;
use serde_json::{Value, json};
use support::{Harness, NS, guard_of, policy_path, vs_path};

const FINALIZER: &str = "privx-operator.dev/cleanup";

fn bad_vault_secret(name: &str) -> Value {
    json!({
        "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
        "metadata": {"name": name, "namespace": NS, "generation": 3},
        "spec": {"source": "db-creds", "mirror": {}},
    })
}

fn bad_policy(name: &str) -> Value {
    json!({
        "apiVersion": "privx-operator.dev/v1alpha1", "kind": "PasswordPolicy",
        "metadata": {"name": name, "generation": 2},
        "spec": {"maxVersions": "many", "rotationInterval": "720h"},
    })
}

/// The object at `path` as the watch would deliver it.
fn watched<K>(h: &Harness, path: &str) -> Arc<DeserializeGuard<K>>
where
    K: kube::Resource + serde::de::DeserializeOwned,
{
    Arc::new(guard_of(h.kube.get(path).expect("object exists")))
}

/// The VaultSecret at `path` as the store keeps it after its watch event.
fn watched_vs(h: &Harness, path: &str) -> Arc<StoredVaultSecret> {
    Arc::new(serde_json::from_value(h.kube.get(path).expect("object exists")).unwrap())
}

/// A condition of the raw object at `path`: (status, reason, message, observedGeneration).
fn condition(h: &Harness, path: &str, type_: &str) -> (String, String, String, Value) {
    let object = h.kube.get(path).expect("object exists");
    let c = object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_else(|| panic!("{type_} condition in {}", object["status"]));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
        c["observedGeneration"].clone(),
    )
}

/// Marks the object at `path` deleted with these finalizers, as the API server would.
fn deleted_with(h: &Harness, path: &str, finalizers: Value) {
    let mut object = h.kube.get(path).expect("object exists");
    object["metadata"]["finalizers"] = finalizers;
    h.kube.put(path, object);
    h.delete(path);
}

#[tokio::test]
async fn a_vault_secret_that_does_not_deserialise_is_reported_and_waits() {
    let h = Harness::new().await;
    let path = vs_path(NS, "db");
    h.kube.put(&path, bad_vault_secret("db"));
    let stored = watched_vs(&h, &path);
    let invalid = stored.decode().0.expect_err("spec.source is not an object");
    assert_eq!(invalid.metadata.name.as_deref(), Some("db"));
    h.sim.clear_requests();

    let action = vault_secret::reconcile(stored, h.ctx.clone())
        .await
        .expect("reported, not an error");
    assert_eq!(action, Action::await_change());
    for type_ in ["Ready", "Synced"] {
        let (status, reason, message, generation) = condition(&h, &path, type_);
        assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
        assert!(
            message.contains("VaultSecret schema")
                && message.contains("spec.source: must be an object"),
            "{message}"
        );
        assert_eq!(generation, json!(3));
    }
    assert_eq!(
        h.kube.get(&path).unwrap()["status"]["observedGeneration"],
        3
    );
    assert!(h.sim.requests().is_empty(), "no PrivX call at all");
    assert!(h.kube.get(&support::secret_path(NS, "db")).is_none());
}

#[tokio::test]
async fn a_vault_secret_that_does_not_deserialise_lets_go_of_its_finalizer() {
    let h = Harness::new().await;
    let path = vs_path(NS, "db");
    h.kube.put(&path, bad_vault_secret("db"));
    deleted_with(&h, &path, json!([FINALIZER]));
    h.sim.clear_requests();

    let action = vault_secret::reconcile(watched_vs(&h, &path), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(
        h.kube.get(&path).is_none(),
        "finalizer released, object gone"
    );
    assert!(h.sim.requests().is_empty());

    // Another controller's finalizer stays.
    h.kube.put(&path, bad_vault_secret("db"));
    deleted_with(&h, &path, json!(["example.com/keep", FINALIZER]));
    vault_secret::reconcile(watched_vs(&h, &path), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        h.kube.get(&path).expect("still held")["metadata"]["finalizers"],
        json!(["example.com/keep"])
    );
}

#[tokio::test]
async fn a_vault_secret_that_fails_validation_names_the_field() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret(
        "db",
        json!({"source": {"secretRef": {"name": "db-creds"}}, "refreshInterval": "5s"}),
    );
    h.sim.clear_requests();
    let action = h.reconcile("db").await.expect("reported, not an error");
    assert_eq!(action, Action::await_change());
    let (ready, reason, message) = h.ready_reason("db");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.refreshInterval"), "{message}");
    assert!(h.sim.requests().is_empty(), "no PrivX call at all");
}

/// A value longer than the CRD's maxLength (an object written before the bound existed, or
/// past an API server that did not check it) is refused naming the field and the bound.
#[tokio::test]
async fn a_vault_secret_with_a_too_long_value_names_the_field() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret(
        "db",
        json!({"source": {"secretRef": {"name": "db-creds"}}, "refreshInterval": "1h".repeat(17)}),
    );
    h.sim.clear_requests();
    let action = h.reconcile("db").await.expect("reported, not an error");
    assert_eq!(action, Action::await_change());
    let (ready, reason, message) = h.ready_reason("db");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.refreshInterval: must be at most 32 characters (is 34)"),
        "{message}"
    );
    assert!(h.sim.requests().is_empty(), "no PrivX call at all");
}

#[tokio::test]
async fn a_password_policy_that_does_not_deserialise_is_reported_once_and_waits() {
    let mut h = Harness::new().await;
    let path = policy_path("bad");
    h.policy_object(bad_policy("bad"));
    let guard: Arc<DeserializeGuard<PasswordPolicy>> = watched(&h, &path);
    assert!(guard.0.is_err());
    h.sim.clear_requests();

    let action = password_policy::reconcile(guard, h.ctx.core.clone())
        .await
        .expect("reported, not an error");
    assert_eq!(action, Action::await_change());
    for type_ in ["Ready", "Synced"] {
        let (status, reason, message, generation) = condition(&h, &path, type_);
        assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
        assert!(
            message.contains("PasswordPolicy schema")
                && message.contains("spec.maxVersions: must be an integer"),
            "{message}"
        );
        assert_eq!(generation, json!(2));
    }
    assert!(h.sim.requests().is_empty(), "no PrivX call at all");

    // Nothing changed: the same report again writes nothing (a status write would be a
    // watch event, and the controller would trigger itself forever).
    h.kube.clear_requests();
    password_policy::reconcile(watched(&h, &path), h.ctx.core.clone())
        .await
        .unwrap();
    assert!(h.kube.writes().is_empty(), "{:?}", h.kube_writes());

    // A VaultSecret generating from it says why it cannot.
    h.vault_secret(
        "gen",
        json!({"source": {"generate": {"passwordPolicyRef": {"name": "bad"}, "key": "password"}}}),
    );
    h.reconcile("gen").await.unwrap();
    let (_, reason, message) = h.ready_reason("gen");
    assert_eq!(reason, "PolicyNotFound");
    assert!(message.contains("bad is invalid"), "{message}");
    assert!(h.sim.requests().is_empty());
}

#[tokio::test]
async fn a_synced_password_policy_that_turns_undeserialisable_keeps_its_recorded_state() {
    let mut h = Harness::new().await;
    h.policy("p", json!({"maxVersions": 3, "deletionPolicy": "Delete"}));
    h.reconcile_policy("p").await.unwrap();
    let path = policy_path("p");
    let id = h.get_policy("p").status.unwrap().id.unwrap();

    // Someone breaks the spec (a schema the cluster does not enforce, or an older CRD).
    let mut object = h.kube.get(&path).unwrap();
    object["spec"]["maxVersions"] = json!("many");
    object["metadata"]["generation"] = json!(2);
    h.policy_object(object);
    h.kube.clear_requests();
    password_policy::reconcile(watched(&h, &path), h.ctx.core.clone())
        .await
        .unwrap();
    assert_eq!(condition(&h, &path, "Ready").1, "InvalidSpec");
    // The status is applied whole (server-side apply drops fields a manager stops sending):
    // the PrivX id stays recorded, so fixing the spec finds the same policy again.
    let applied = h
        .kube
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.path.ends_with("/status"))
        .and_then(|r| r.body)
        .expect("status applied");
    assert_eq!(applied["status"]["id"], json!(id), "{applied}");

    let mut fixed = h.kube.get(&path).unwrap();
    fixed["spec"]["maxVersions"] = json!(4);
    h.policy_object(fixed);
    h.sim.clear_requests();
    h.reconcile_policy("p").await.unwrap();
    assert_eq!(h.policy_ready("p").1, "Synced");
    assert_eq!(h.get_policy("p").status.unwrap().id, Some(id.clone()));
    assert!(
        h.privx_writes().iter().all(|w| w.starts_with("PUT ")),
        "updated in place: {:?}",
        h.privx_writes()
    );
    assert_eq!(
        h.someone_else.get_policy(&id).await.unwrap().max_versions,
        Some(4)
    );
}

#[tokio::test]
async fn a_password_policy_that_does_not_deserialise_lets_go_of_its_finalizer() {
    let mut h = Harness::new().await;
    let path = policy_path("bad");
    h.policy_object(bad_policy("bad"));
    deleted_with(&h, &path, json!([FINALIZER]));
    h.sim.clear_requests();
    let action = password_policy::reconcile(watched(&h, &path), h.ctx.core.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(
        h.kube.get(&path).is_none(),
        "finalizer released, object gone"
    );
    assert!(h.sim.requests().is_empty());
}

#[tokio::test]
async fn a_password_policy_that_fails_validation_names_the_field() {
    let mut h = Harness::new().await;
    for (spec, field) in [
        (
            json!({"maxVersions": 3, "retryInterval": "soon"}),
            "spec.retryInterval",
        ),
        (
            json!({"maxVersions": 3, "passwordMinLength": 40, "passwordMaxLength": 20}),
            "spec.passwordMinLength",
        ),
        // Longer than the CRD's maxLength (which the API server would refuse first).
        (
            json!({"maxVersions": 3, "rotationInterval": "1h".repeat(17)}),
            "spec.rotationInterval: must be at most 32 characters (is 34)",
        ),
    ] {
        h.policy("p", spec);
        h.sim.clear_requests();
        let action = h.reconcile_policy("p").await.expect("reported");
        assert_eq!(action, Action::await_change());
        let (ready, reason, message) = h.policy_ready("p");
        assert_eq!((ready.as_str(), reason.as_str()), ("False", "InvalidSpec"));
        assert!(message.contains(field), "{message}");
        assert!(h.sim.requests().is_empty(), "no PrivX call at all");
    }
}
