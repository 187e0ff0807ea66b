//! The first ten minutes, without a cluster: every file of `examples/`, unchanged, through the
//! operator's real reconcile code against the fake Kubernetes API and the simulator's demo seed
//! (the PrivX that `run --embedded-privx` serves), in the namespace `demo` the README's "try it"
//! uses. Each VaultSecret and PasswordPolicy must be Ready (`Synced`) on the first pass, with no
//! Warning event. (tests/e2e/examples.rs does the same against a real cluster.)

mod support;

use std::path::Path;

use privx_sim::demo;
use serde_json::{Value, json};
use support::examples::example_files;
use support::{Harness, NS};

fn documents(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("examples/{file}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

#[tokio::test]
async fn every_example_is_ready_against_the_demo_seed_on_the_first_pass() {
    let mut h = Harness::new().await;
    // What examples/vaultsecret-personal.yaml says in its comment that it needs.
    h.namespace(
        NS,
        json!({"privx-operator.dev/allowed-owners": demo::USER_ALICE}),
    );
    h.secret(NS, "alice-ssh-key", &[("ssh-privatekey", "not-a-real-key")]);

    let mut policies = Vec::new();
    let mut vault_secrets = Vec::new();
    let files = example_files();
    assert!(files.len() >= 7, "{files:?}");
    for file in &files {
        for doc in documents(file) {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            match doc["kind"].as_str().unwrap() {
                "PasswordPolicy" => {
                    h.policy(&name, doc["spec"].clone());
                    policies.push((file.clone(), name));
                }
                "VaultSecret" => {
                    assert_eq!(doc["metadata"]["namespace"], NS, "examples/{file}");
                    h.vault_secret(&name, doc["spec"].clone());
                    vault_secrets.push((file.clone(), name));
                }
                "Secret" => {
                    let data: Vec<(String, String)> = doc["stringData"]
                        .as_object()
                        .expect("example Secrets use stringData")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    let pairs: Vec<(&str, &str)> =
                        data.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    h.secret(NS, &name, &pairs);
                }
                "Deployment" => {
                    h.kube.put(
                        &format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"),
                        doc.clone(),
                    );
                }
                other => panic!("examples/{file}: kind {other} is not covered here"),
            }
        }
    }
    assert!(!policies.is_empty() && vault_secrets.len() >= 6);

    for (file, name) in &policies {
        h.reconcile_policy(name)
            .await
            .unwrap_or_else(|e| panic!("examples/{file}: {e}"));
        let (status, reason, message) = h.policy_ready(name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Synced"),
            "examples/{file}: {message}"
        );
    }
    for (file, name) in &vault_secrets {
        h.reconcile(name)
            .await
            .unwrap_or_else(|e| panic!("examples/{file}: {e}"));
        let (status, reason, message) = h.ready_reason(name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Synced"),
            "examples/{file}: {message}"
        );
    }
    // The mirrors are there (a sample of what the README shows).
    let mirror = h
        .secret_data(NS, "app-db-credentials-mirror")
        .expect("the first example's mirror");
    assert_eq!(mirror.get("username").map(String::as_str), Some("app"));
    let url = h
        .secret_data(NS, "orders-database-url")
        .expect("the DATABASE_URL mirror");
    assert_eq!(
        url.get("DATABASE_URL").map(String::as_str),
        Some("postgres://orders:demo-orders-db-password@orders-db:5432/orders?sslmode=require")
    );

    let warnings: Vec<String> = h
        .kube
        .list("/apis/events.k8s.io/")
        .into_iter()
        .chain(h.kube.list("/api/v1/namespaces/"))
        .filter(|o| o["kind"] == "Event" && o["type"] == "Warning")
        .map(|e| format!("{} {}: {}", e["regarding"]["name"], e["reason"], e["note"]))
        .collect();
    assert!(
        warnings.is_empty(),
        "warnings on the first try: {warnings:?}"
    );
    // The check above reads where the recorder writes: the writes that do happen are there.
    let normal = h
        .kube
        .list("/apis/events.k8s.io/")
        .into_iter()
        .filter(|o| o["kind"] == "Event" && o["type"] == "Normal")
        .count();
    assert!(normal >= 1, "no event found: is the event path right?");
}
