//! The first ten minutes: every file in `examples/`, applied as the README's "try it" does
//! against the simulator's demo seed (what `run --embedded-privx` serves), becomes Ready
//! without a Warning event.
//!
//! Offline (no cluster, runs in `cargo test`): every example uses only kinds the harness can
//! apply, PrivX roles the demo seed has, and reads only PrivX secrets the seed holds, with the
//! fields its templates and key mappings name. On a cluster (`#[ignore]`d like the rest of the
//! suite): all of them applied into one test namespace, each VaultSecret and PasswordPolicy
//! `Ready`.

use std::collections::BTreeSet;

use privx_client::{RoleHandle, SecretData, SecretLocation, SecretWrite};
use privx_sim::{demo, demo_seed};
use serde_json::{Value, json};

use super::example_list::example_files;
use super::harness::{E2e, example_docs};

/// The kinds `E2e::apply` knows; an example of another kind could not be tested.
const APPLIABLE: [&str; 5] = [
    "Secret",
    "VaultSecret",
    "PasswordPolicy",
    "Deployment",
    "StatefulSet",
];

/// The field names a VaultSecret's mirror reads from its PrivX data (template variables and
/// key-mapping sources).
fn fields_read(vault_secret: &Value) -> BTreeSet<String> {
    let mirror = &vault_secret["spec"]["mirror"];
    let mut fields: BTreeSet<String> = mirror["keyMapping"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let variable = regex::Regex::new(r"\{\{\s*\(?\s*([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let operand = regex::Regex::new(r"[(~]\s*([A-Za-z_][A-Za-z0-9_]*)\s*[~)]").unwrap();
    for template in mirror["template"]
        .as_object()
        .into_iter()
        .flat_map(|t| t.values())
    {
        let text = template.as_str().unwrap_or_default();
        fields.extend(variable.captures_iter(text).map(|c| c[1].to_string()));
        fields.extend(operand.captures_iter(text).map(|c| c[1].to_string()));
    }
    fields
}

#[test]
fn every_example_fits_the_demo_seed() {
    let seed = demo_seed();
    let roles: BTreeSet<&str> = seed.roles.iter().map(|r| r.name.as_str()).collect();
    let mut policies = BTreeSet::new();
    let mut policy_refs = BTreeSet::new();
    let mut read_only = 0;
    for file in example_files() {
        for doc in example_docs(&file, "demo") {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            assert!(
                APPLIABLE.contains(&kind.as_str()),
                "examples/{file}: kind {kind} cannot be applied by the e2e harness"
            );
            match kind.as_str() {
                "PasswordPolicy" => {
                    policies.insert(doc["metadata"]["name"].as_str().unwrap().to_string());
                }
                "VaultSecret" => {
                    let spec = &doc["spec"];
                    for list in ["readRoles", "writeRoles"] {
                        for role in spec[list].as_array().into_iter().flatten() {
                            let name = role["name"].as_str().unwrap_or_default();
                            assert!(
                                roles.contains(name),
                                "examples/{file}: {list} names {name:?}, which the demo seed lacks"
                            );
                        }
                    }
                    if let Some(name) =
                        spec["source"]["generate"]["passwordPolicyRef"]["name"].as_str()
                    {
                        policy_refs.insert(name.to_string());
                    }
                    if spec.get("source").is_none() && spec.get("owner").is_none() {
                        // Read only: the PrivX secret must be in the seed, with the fields read.
                        read_only += 1;
                        let name = spec["name"]
                            .as_str()
                            .expect("a read-only example names its PrivX secret");
                        let seeded = seed
                            .secrets
                            .iter()
                            .find(|s| s.name == name)
                            .unwrap_or_else(|| panic!("examples/{file} reads {name:?}, which the demo seed lacks (SourceNotFound)"));
                        for field in fields_read(&doc) {
                            assert!(
                                seeded.data.contains_key(&field),
                                "examples/{file} reads the field {field:?} of {name:?}, which the seed's secret lacks"
                            );
                        }
                        assert!(
                            seeded.read_roles.iter().any(|r| r == "privx-operator"),
                            "examples/{file}: the operator's role may not read {name:?} in the seed"
                        );
                    }
                    // A restart target must be in the same file (else: a warning on the first try).
                    for target in spec["mirror"]["rolloutRestartTargets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let in_file = example_docs(&file, "demo").iter().any(|d| {
                            d["kind"] == target["kind"] && d["metadata"]["name"] == target["name"]
                        });
                        assert!(
                            in_file,
                            "examples/{file} restarts {target}, which the file does not hold"
                        );
                    }
                    assert_ne!(
                        spec["deletionPolicy"], "Delete",
                        "examples/{file}: a first try should not delete PrivX data on cleanup"
                    );
                }
                _ => {}
            }
        }
    }
    assert!(read_only >= 3, "read-only examples found: {read_only}");
    assert!(
        policy_refs.is_subset(&policies),
        "examples generate to policies {policy_refs:?}, the examples declare {policies:?}"
    );
}

#[test]
fn the_field_reader_sees_templates_and_key_mappings() {
    let vs = json!({"spec": {"mirror": {
        "keyMapping": {"api-key": "API_KEY"},
        "template": {"a": "{{ username }}:{{ password | urlencode }}", "b": "{{ (user ~ \":\" ~ pass) | b64enc }}"},
    }}});
    let fields: Vec<String> = fields_read(&vs).into_iter().collect();
    assert_eq!(fields, ["api-key", "pass", "password", "user", "username"]);
}

/// The demo seed's `k8s/demo/...` secrets, put under this test's prefix (the harness moves the
/// examples' `k8s/demo/` names there), as `run --embedded-privx` would hold them.
async fn seed_examples_privx_secrets(e2e: &E2e) {
    let operator = RoleHandle {
        id: demo::ROLE_PRIVX_OPERATOR.into(),
        ..Default::default()
    };
    for secret in demo_seed().secrets {
        let Some(rest) = secret.name.strip_prefix("k8s/demo/") else {
            continue;
        };
        let name = e2e.privx_name(rest);
        let write = SecretWrite {
            data: SecretData(secret.data.clone().into_iter().collect()),
            read_roles: vec![operator.clone()],
            write_roles: vec![operator.clone()],
        };
        e2e.someone_else
            .create_secret(&SecretLocation::Shared, &name, &write)
            .await
            .unwrap_or_else(|e| panic!("someone-else creating {name:?} in PrivX: {e}"));
    }
}

#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn every_example_becomes_ready_against_the_demo_seed() {
    let e2e = E2e::start().await;
    seed_examples_privx_secrets(&e2e).await;
    // What examples/vaultsecret-personal.yaml says it needs: the Namespace annotation a cluster
    // admin sets, and the source Secret.
    e2e.annotate_namespace(json!({"privx-operator.dev/allowed-owners": demo::USER_ALICE}))
        .await;
    e2e.apply(E2e::secret_manifest(
        "alice-ssh-key",
        &[("ssh-privatekey", "not-a-real-key")],
    ))
    .await;

    // Policies first, and Synced before anything refers to them, as a newcomer following the
    // examples' comments would do (a VaultSecret generating to a policy the operator has not
    // seen yet reports PolicyNotFound). By then the operator has also seen the Namespace
    // annotation above (its watch delivers long before a PrivX round trip completes).
    let files = example_files();
    let (policy_files, other_files): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|f| e2e.example(f).iter().all(|d| d["kind"] == "PasswordPolicy"));
    let mut policies = Vec::new();
    for file in &policy_files {
        for doc in e2e.example(file) {
            policies.push((
                file.to_string(),
                doc["metadata"]["name"].as_str().unwrap().to_string(),
            ));
            e2e.apply(doc).await;
        }
    }
    assert!(!policies.is_empty(), "no example declares a PasswordPolicy");
    for (file, name) in &policies {
        let policy = e2e.wait_policy_reason(name, "Synced").await;
        assert!(policy.status.is_some(), "examples/{file}");
    }
    let mut vault_secrets = Vec::new();
    for file in &other_files {
        for doc in e2e.example(file) {
            if doc["kind"] == "VaultSecret" {
                vault_secrets.push((
                    file.to_string(),
                    doc["metadata"]["name"].as_str().unwrap().to_string(),
                ));
            }
            e2e.apply(doc).await;
        }
    }
    assert!(vault_secrets.len() >= 6, "{vault_secrets:?}");
    for (file, name) in &vault_secrets {
        e2e.wait_synced(name).await;
        let warnings: Vec<_> = e2e
            .events_about("VaultSecret", name)
            .await
            .into_iter()
            .filter(|(type_, _, _)| type_ == "Warning")
            .map(|(_, reason, note)| format!("{reason}: {note}"))
            .collect();
        assert!(
            warnings.is_empty(),
            "examples/{file}: warnings on the first try: {warnings:?}"
        );
    }
}
