//! End-to-end tests against a real cluster: the real CRDs (`crds/`), the real `privx-operator`
//! binary run out of cluster, the real PrivX simulator process and the manifests of `examples/`.
//!
//! Every cluster test is `#[ignore]`d. Run them on purpose, naming the kube context:
//! `PRIVX_OPERATOR_E2E_CONTEXT=kind-privx-e2e cargo test --test e2e -- --ignored --test-threads=1`
//! (docs/testing.md). Without the variable they fail, saying how to set it. Each test makes its
//! own namespace, simulator and operator, and removes them at the end, also on failure.

#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/migration.rs"]
mod migration;

#[path = "support/examples.rs"]
mod example_list;
#[path = "e2e/examples.rs"]
mod examples;

use harness::service_account::{self, AUDIENCE, ClusterIssuer, SERVICE_ACCOUNT};
use harness::{E2e, OperatorAuth, eventually, secret_value};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use privx_client::{PrivxError, RoleHandle, SecretData, SecretLocation, SecretWrite};
use privx_operator::controller::core::finalizer::FINALIZER;
use privx_operator::controller::vault_secret::{
    DATA_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VAULT_SECRET_LABEL,
};
use privx_operator::crd::{Ownership, PasswordPolicy, VaultSecret};
use privx_sim::demo;
use serde_json::{Value, json};

/// The password in examples/vaultsecret-from-secret.yaml.
const EXAMPLE_PASSWORD: &str = "change-me-in-your-real-pipeline";

fn role_ids(roles: &[RoleHandle]) -> Vec<&str> {
    roles.iter().map(|r| r.id.as_str()).collect()
}

fn operator_role() -> RoleHandle {
    RoleHandle {
        id: demo::ROLE_PRIVX_OPERATOR.into(),
        ..Default::default()
    }
}

/// `someone-else` writes a shared secret straight into PrivX (readable and writable by the
/// operator's role), as a human would.
async fn put_in_privx(e2e: &E2e, name: &str, field: &str, value: &str) {
    let write = SecretWrite {
        data: SecretData([(field.to_string(), json!(value))].into()),
        read_roles: vec![operator_role()],
        write_roles: vec![operator_role()],
    };
    let at = SecretLocation::Shared;
    match e2e.someone_else.get_secret(&at, name).await {
        Ok(_) => e2e.someone_else.update_secret(&at, name, &write).await,
        Err(PrivxError::NotFound { .. }) => e2e
            .someone_else
            .create_secret(&at, name, &write)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| panic!("someone-else writing {name:?} in PrivX: {e}"));
}

/// Waits until PrivX holds `expected` in `field` of `name` (compared, never printed).
async fn wait_privx_value(e2e: &E2e, name: &str, field: &str, expected: &str) {
    eventually(
        &format!("PrivX {name:?} to hold the expected {field}"),
        || async {
            match e2e.privx_data(name).await {
                None => Err("no such PrivX secret".into()),
                Some(data) if data.get(field) == Some(&json!(expected)) => Ok(()),
                Some(data) => Err(format!(
                    "fields {:?}, {field} not the expected value",
                    data.keys().collect::<Vec<_>>()
                )),
            }
        },
    )
    .await;
}

/// Waits until the Secret `name` holds `expected` in `key` (compared, never printed).
async fn wait_secret_value(e2e: &E2e, name: &str, key: &str, expected: &str) -> Secret {
    eventually(
        &format!("Secret {name} to hold the expected {key}"),
        || async {
            let secret = e2e.secret(name).await.ok_or("no such Secret")?;
            if secret_value(&secret, key).as_deref() == Some(expected) {
                Ok(secret)
            } else {
                Err(format!("{key} is not the expected value"))
            }
        },
    )
    .await
}

fn status_hash(vs: &VaultSecret) -> String {
    vs.status
        .as_ref()
        .and_then(|s| s.data_hash.clone())
        .expect("status.dataHash after a sync")
}

fn ready_reason(vs: &VaultSecret) -> (String, String, String) {
    let status = vs.status.clone().unwrap_or_default();
    let c = harness::ready_condition(&status.conditions).expect("a Ready condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

// ---- the suite's own guard (runs without a cluster) -------------------------------------

#[test]
fn the_suite_requires_the_context_variable_and_says_how_to_set_it() {
    let unset = harness::context_from(None).unwrap_err().to_string();
    assert!(unset.contains(harness::CONTEXT_VAR), "{unset}");
    assert!(
        unset.contains("cargo test --test e2e -- --ignored"),
        "{unset}"
    );
    assert!(unset.contains("docs/testing.md"), "{unset}");
    let empty = harness::context_from(Some("  ".into()))
        .unwrap_err()
        .to_string();
    assert!(empty.contains(harness::CONTEXT_VAR), "{empty}");
    assert_eq!(
        harness::context_from(Some("kind-privx-e2e".into())).unwrap(),
        "kind-privx-e2e"
    );
}

#[tokio::test]
async fn the_operator_kubeconfig_holds_only_the_named_context() {
    let full = kube::config::Kubeconfig::from_yaml(
        r#"
apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: prod
  cluster: {server: "https://prod.example:6443"}
- name: kind-e2e
  cluster: {server: "https://127.0.0.1:40000"}
users:
- name: prod-admin
  user: {token: prod-token-value}
- name: kind-e2e
  user: {token: kind-token-value}
contexts:
- name: prod
  context: {cluster: prod, user: prod-admin}
- name: kind-e2e
  context: {cluster: kind-e2e, user: kind-e2e}
"#,
    )
    .unwrap();
    let one = harness::kubeconfig_for_context(&full, "kind-e2e").unwrap();
    let text = serde_json::to_string(&one).unwrap();
    assert!(!text.contains("prod"), "nothing of other contexts: {text}");
    // The operator reads it as its default config: the current context is the named one.
    let reread = kube::config::Kubeconfig::from_yaml(&text).unwrap();
    let config = kube::Config::from_custom_kubeconfig(reread, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:40000/");

    let missing = harness::kubeconfig_for_context(&full, "kind-other")
        .unwrap_err()
        .to_string();
    assert!(missing.contains("kind-other"), "{missing}");
}

#[test]
fn examples_are_rewritten_into_the_test_namespace() {
    let ns = "privx-e2e-0000abcd";
    let docs = harness::example_docs("vaultsecret-generated.yaml", ns);
    assert_eq!(docs.len(), 1);
    let vs = &docs[0];
    assert_eq!(vs["metadata"]["namespace"], ns);
    assert_eq!(
        vs["spec"]["name"],
        format!("k8s/{ns}/reporting-db-password")
    );
    assert_eq!(
        vs["spec"]["source"]["generate"]["passwordPolicyRef"]["name"],
        format!("{ns}-app-passwords")
    );
    let policy = &harness::example_docs("passwordpolicy.yaml", ns)[0];
    assert_eq!(policy["metadata"]["name"], format!("{ns}-app-passwords"));
    assert!(policy["metadata"]["namespace"].is_null(), "cluster-scoped");
    assert_eq!(policy["metadata"]["labels"][harness::E2E_LABEL], ns);
    assert_eq!(
        policy["spec"]["name"], "app-passwords",
        "the PrivX name stays"
    );
}

/// The harness's simulator plumbing (child process, JSON line, `someone-else`, request log)
/// needs no cluster, so it is checked here rather than first failing inside a cluster test.
#[tokio::test]
async fn the_simulator_process_serves_someone_else_and_logs_requests() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("privx-e2e-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = harness::Simulator::start(&dir.join("simulator.log"), None).await;
    let someone_else = sim.someone_else();
    let upstream = someone_else
        .get_secret(&SecretLocation::Shared, demo::SECRET_UPSTREAM)
        .await
        .expect("someone-else reads the demo secret");
    assert_eq!(
        upstream.data.unwrap().0["api-key"],
        "demo-upstream-api-key-value"
    );
    someone_else
        .create_secret(
            &SecretLocation::Shared,
            "k8s/demo/by-hand",
            &SecretWrite {
                data: SecretData([("k".to_string(), json!("v"))].into()),
                read_roles: vec![operator_role()],
                write_roles: vec![operator_role()],
            },
        )
        .await
        .unwrap();
    // What counts as a write: the create above; not the refused create of the same name, nor
    // the role lookups (POSTs that only read), nor the token grant.
    let again = someone_else
        .create_secret(
            &SecretLocation::Shared,
            "k8s/demo/by-hand",
            &SecretWrite {
                data: SecretData([("k".to_string(), json!("v"))].into()),
                read_roles: vec![operator_role()],
                write_roles: vec![operator_role()],
            },
        )
        .await;
    assert!(
        matches!(again, Err(PrivxError::AlreadyExists { .. })),
        "{again:?}"
    );
    let names = vec!["privx-operator".to_string()];
    assert_eq!(someone_else.resolve_roles(&names).await.unwrap().len(), 1);
    assert_eq!(someone_else.search_roles(&names).await.unwrap().len(), 1);
    let log = sim.requests().await;
    let routes: Vec<(&str, u16)> = log
        .iter()
        .filter(|r| r.client_id.as_deref() == Some(demo::SOMEONE_ELSE_CLIENT_ID))
        .map(|r| (r.route.as_str(), r.status))
        .collect();
    for seen in [
        ("POST /vault/api/v1/secrets", 201),
        ("POST /vault/api/v1/secrets", 400),
        ("POST /role-store/api/v1/roles/resolve", 200),
        ("POST /role-store/api/v1/roles/search", 200),
    ] {
        assert!(routes.contains(&seen), "{seen:?} not in {routes:?}");
    }
    let writes: Vec<(String, u16)> = harness::writes_of(log, demo::SOMEONE_ELSE_CLIENT_ID)
        .into_iter()
        .map(|r| (r.route, r.status))
        .collect();
    assert_eq!(
        writes,
        [("POST /vault/api/v1/secrets".to_string(), 201)],
        "only the successful create is a write"
    );
    assert!(sim.operator_writes().await.is_empty(), "not the operator's");
    sim.clear_requests().await;
    assert!(sim.requests().await.is_empty());
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

fn jwt_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/jwt")
            .join(name),
    )
    .unwrap()
}

/// The service-account mode's simulator plumbing, without a cluster: the seed the harness
/// writes (a JWKS as the API server publishes it, the subject of the operator's
/// ServiceAccount) reaches the simulator process, which then logs a token of that subject in as
/// the PrivX user it maps to (not the operator's API client).
#[tokio::test]
async fn the_service_account_seed_lets_the_simulator_process_trust_the_cluster_issuer() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("privx-e2e-sa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let public = DecodingKey::from_rsa_pem(&jwt_fixture("rsa-public.pem")).unwrap();
    let mut jwk = Jwk::from_decoding_key(&public, Some(Algorithm::RS256)).unwrap();
    jwk.common.key_id = Some("cluster-key".into());
    let issuer = ClusterIssuer {
        issuer: "https://kubernetes.default.svc.cluster.local".into(),
        jwks: serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap(),
    };
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        serde_json::to_vec(&service_account::seed_trusting(&issuer, "privx-e2e-x")).unwrap(),
    )
    .unwrap();
    let sim = harness::Simulator::start(&dir.join("simulator.log"), Some(&seed)).await;

    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("cluster-key".into());
    let token = |sub: String| {
        jsonwebtoken::encode(
            &header,
            &json!({"iss": issuer.issuer, "sub": sub, "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 600}),
            &EncodingKey::from_rsa_pem(&jwt_fixture("rsa-private.pem")).unwrap(),
        )
        .unwrap()
    };
    let http = reqwest::Client::new();
    let login = |jwt: String| {
        http.post(format!("{}/auth/api/v1/token/login", sim.base_url))
            .json(&json!({"token": jwt}))
            .send()
    };
    let answer = login(token(format!(
        "system:serviceaccount:privx-e2e-x:{SERVICE_ACCOUNT}"
    )))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let access: Value = answer.json().await.unwrap();
    let me: Value = http
        .get(format!("{}/role-store/api/v1/users/current", sim.base_url))
        .bearer_auth(access["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], service_account::SA_USER_ID);
    // Another ServiceAccount of the namespace is nobody in PrivX.
    let other = login(token("system:serviceaccount:privx-e2e-x:default".into()))
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_service_account_kubeconfig_has_only_the_token_user() {
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "admin"}}],
        "users": [{"name": "admin", "user": {"client-key-data": "QURNSU4="}}],
    });
    let json = service_account::with_token_user(kubeconfig, "sa-token");
    let parsed: kube::config::Kubeconfig = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(parsed.auth_infos.len(), 1);
    let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(user.client_key_data.is_none(), "the admin's key is gone");
    assert!(user.token.is_some());
    assert_eq!(
        parsed.contexts[0].context.as_ref().unwrap().user.as_deref(),
        Some("admin")
    );
    assert!(!json.to_string().contains("QURNSU4="));
}

// ---- identity without static credentials (issue 11) ---------------------------------------

/// With service-account token exchange only: the operator's Kubernetes identity is a
/// ServiceAccount with the chart's RBAC (TokenRequest on itself only), PrivX trusts the
/// cluster's own service-account issuer and keys, and no PrivX credential exists anywhere. The
/// ServiceAccount maps to a PrivX user other than the operator's API client (issue 23 §1): a
/// push + mirror VaultSecret with `deletionPolicy: Delete` becomes Ready, is updated when its
/// source changes (the second reconcile sees that user as the author: its own), and is deleted
/// in PrivX when deleted; every PrivX login was a token exchange.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn with_service_account_token_exchange_only_push_and_mirror_become_ready() {
    let e2e = E2e::start_with(OperatorAuth::ServiceAccountToken).await;
    let value = "sa-exchange-e2e-value";
    e2e.apply(E2e::secret_manifest("db", &[("password", value)]))
        .await;
    e2e.apply(push_manifest("db-sa", json!({"deletionPolicy": "Delete"})))
        .await;
    e2e.wait_synced("db-sa").await;
    wait_secret_value(&e2e, "db-sa", "password", value).await;
    let privx_name = e2e.privx_name("db-sa");
    wait_privx_value(&e2e, &privx_name, "password", value).await;
    let stored = e2e
        .someone_else
        .get_secret(&SecretLocation::Shared, &privx_name)
        .await
        .expect("the PrivX secret exists");
    assert_eq!(
        stored.author.as_deref(),
        Some(service_account::SA_USER_ID),
        "written as the ServiceAccount's PrivX user"
    );
    // Reconciled again: an update, not a Conflict.
    let changed = "sa-exchange-e2e-value-2";
    e2e.apply(E2e::secret_manifest("db", &[("password", changed)]))
        .await;
    wait_privx_value(&e2e, &privx_name, "password", changed).await;
    wait_secret_value(&e2e, "db-sa", "password", changed).await;
    e2e.wait_synced("db-sa").await;

    let log = e2e.sim.requests().await;
    let logins: Vec<(&str, u16)> = log
        .iter()
        .filter(|r| r.route.contains("/auth/api/v1/"))
        .map(|r| (r.route.as_str(), r.status))
        .collect();
    assert!(
        logins.contains(&("POST /auth/api/v1/token/login", 200)),
        "{logins:?}"
    );
    let operator_grants = log
        .iter()
        .filter(|r| r.route.contains("/oauth/token"))
        .filter(|r| r.client_id.as_deref() == Some(demo::OPERATOR_CLIENT_ID))
        .count();
    assert_eq!(operator_grants, 0, "no password grant: {logins:?}");
    assert!(
        log.iter()
            .any(|r| r.client_id.as_deref() == Some(service_account::SA_USER_ID) && r.is_write()),
        "the exchanged identity (the ServiceAccount's PrivX user) wrote"
    );
    // Deleted with `Delete`: the author check passes, the finalizer goes, PrivX forgets it.
    e2e.api::<VaultSecret>()
        .delete("db-sa", &DeleteParams::default())
        .await
        .expect("deleting VaultSecret db-sa");
    eventually("VaultSecret db-sa gone", || async {
        match e2e.vault_secret("db-sa").await {
            None => Ok(()),
            Some(vs) => Err(format!("finalizers {:?}", vs.metadata.finalizers)),
        }
    })
    .await;
    assert!(
        e2e.privx_data(&privx_name).await.is_none(),
        "Delete removed the PrivX secret"
    );
}

// ---- VaultSecret behaviours ---------------------------------------------------------------

/// Behaviours 1 (push), 3 (mirror), 7 (finalizer only with Delete) and 11 (status, events).
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn push_stores_the_data_in_privx_and_mirrors_it() {
    let e2e = E2e::start().await;
    e2e.apply(E2e::deployment("web")).await;
    e2e.apply_example("vaultsecret-from-secret.yaml").await;
    let vs = e2e.wait_synced("app-db-credentials").await;
    let privx_name = e2e.privx_name("app-db-credentials");

    // 1: PrivX has the data and the declared roles plus the operator's own.
    let stored = e2e
        .someone_else
        .get_secret(&SecretLocation::Shared, &privx_name)
        .await
        .expect("the PrivX secret exists");
    let data = stored.data.clone().expect("someone-else may read it").0;
    assert_eq!(data["username"], "app");
    assert_eq!(data["password"], EXAMPLE_PASSWORD);
    let read = role_ids(&stored.read_roles);
    assert!(read.contains(&demo::ROLE_APP_READERS), "{read:?}");
    assert!(read.contains(&demo::ROLE_PRIVX_OPERATOR), "{read:?}");
    let write = role_ids(&stored.write_roles);
    assert!(write.contains(&demo::ROLE_APP_WRITERS), "{write:?}");
    assert_eq!(stored.author.as_deref(), Some(demo::OPERATOR_CLIENT_ID));
    let creates: Vec<_> = e2e
        .sim
        .operator_writes()
        .await
        .into_iter()
        .filter(|r| r.route == "POST /vault/api/v1/secrets")
        .collect();
    assert_eq!(creates.len(), 1, "created exactly once: {creates:?}");

    // 3: the mirror, owned, labelled, hashed.
    let mirror = e2e
        .secret("app-db-credentials-mirror")
        .await
        .expect("the mirror exists");
    assert_eq!(mirror.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(
        secret_value(&mirror, "password").as_deref(),
        Some(EXAMPLE_PASSWORD)
    );
    assert_eq!(secret_value(&mirror, "username").as_deref(), Some("app"));
    let labels = mirror.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY_VALUE)
    );
    assert_eq!(
        labels.get(VAULT_SECRET_LABEL).map(String::as_str),
        Some("app-db-credentials")
    );
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("web")
    );
    let owners = mirror.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "VaultSecret");
    assert_eq!(Some(owners[0].uid.clone()), vs.metadata.uid);
    assert_eq!(owners[0].controller, Some(true));
    let hash = status_hash(&vs);
    assert_eq!(
        mirror
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .get(DATA_HASH_ANNOTATION),
        Some(&hash)
    );
    assert!(!hash.contains(EXAMPLE_PASSWORD));

    // The source Secret is never written: its metadata-only watch needs no label (issue 10,
    // point 3: a label patch was one Kubernetes write per object).
    let source = e2e.secret("app-db-credentials").await.unwrap();
    let managers: Vec<String> = source
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .collect();
    assert!(
        !managers.iter().any(|m| m == "privx-operator"),
        "{managers:?}"
    );

    // 11: status and events.
    let status = vs.status.clone().unwrap();
    assert_eq!(status.observed_generation, vs.metadata.generation);
    let privx = status.privx.clone().expect("status.privx");
    assert_eq!(privx.name, privx_name);
    assert_eq!(privx.ownership, Some(Ownership::Created));
    assert_eq!(
        status.mirror_secret_name.as_deref(),
        Some("app-db-credentials-mirror")
    );
    for kind in ["Ready", "Synced"] {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap_or_else(|| panic!("a {kind} condition"));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Synced"));
        assert_eq!(c.observed_generation, vs.metadata.generation);
    }
    let note = e2e.wait_event("app-db-credentials", "Created").await;
    assert!(note.contains(&privx_name), "{note}");
    let status_text = serde_json::to_string(&status).unwrap();
    for (_, _, note) in e2e.events_about("VaultSecret", "app-db-credentials").await {
        assert!(!note.contains(EXAMPLE_PASSWORD));
    }
    assert!(!status_text.contains(EXAMPLE_PASSWORD));

    // 7: the example keeps deletionPolicy Retain (the default), so no finalizer
    // (`deletion_retains_or_deletes_the_privx_secret_as_declared` covers Delete).
    assert!(
        vs.metadata
            .finalizers
            .clone()
            .unwrap_or_default()
            .is_empty(),
        "{:?}",
        vs.metadata.finalizers
    );
}

/// Behaviours 5 (reactive push) and 10 (rollout restart once per change, not on restart).
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn source_changes_reach_privx_and_restart_the_deployment_once() {
    let mut e2e = E2e::start().await;
    e2e.apply(E2e::deployment("web")).await;
    e2e.apply_example("vaultsecret-from-secret.yaml").await;
    let first = e2e.wait_synced("app-db-credentials").await;
    let first_hash = status_hash(&first);
    let (annotation, generation_before) = e2e.deployment_restart("web").await;
    assert_eq!(annotation, None, "no restart on the first sync");

    // 5: a source change reaches PrivX and the mirror (the example's refreshInterval is 5m, so
    // only the watch can bring it within the timeout).
    let mut source = e2e.example_of("vaultsecret-from-secret.yaml", "Secret");
    source["stringData"]["password"] = json!("rotated-by-the-pipeline");
    e2e.apply(source).await;
    let privx_name = e2e.privx_name("app-db-credentials");
    wait_privx_value(&e2e, &privx_name, "password", "rotated-by-the-pipeline").await;
    wait_secret_value(
        &e2e,
        "app-db-credentials-mirror",
        "password",
        "rotated-by-the-pipeline",
    )
    .await;
    let second = eventually("status.dataHash to change", || async {
        let vs = e2e.vault_secret("app-db-credentials").await.unwrap();
        match vs.status.as_ref().and_then(|s| s.data_hash.clone()) {
            Some(h) if h != first_hash => Ok(h),
            _ => Err("still the first hash".into()),
        }
    })
    .await;

    // 10: the pod template carries the new hash: exactly one template change.
    let generation_after = eventually("the Deployment restarted", || async {
        match e2e.deployment_restart("web").await {
            (Some(h), generation) if h == second => Ok(generation),
            (h, _) => Err(format!("template annotation {h:?}")),
        }
    })
    .await;
    assert_eq!(generation_after, generation_before + 1, "one restart");
    e2e.wait_event("app-db-credentials", "Updated").await;
    e2e.wait_event("app-db-credentials", "RolloutRestarted")
        .await;

    // An operator restart changes nothing: no PrivX write, no second restart.
    e2e.sim.clear_requests().await;
    e2e.restart_operator().await;
    e2e.wait_reconciles("vaultsecret", 1).await;
    assert_eq!(e2e.sim.operator_writes().await.len(), 0);
    assert_eq!(
        e2e.deployment_restart("web").await,
        (Some(second), generation_after)
    );
}

/// Behaviour 3: a deleted or hand-edited mirror is put back.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_deleted_or_hand_edited_mirror_is_restored() {
    let e2e = E2e::start().await;
    e2e.apply(E2e::deployment("web")).await;
    e2e.apply_example("vaultsecret-from-secret.yaml").await;
    e2e.wait_synced("app-db-credentials").await;
    let secrets = e2e.api::<Secret>();
    let original = e2e.secret("app-db-credentials-mirror").await.unwrap();

    secrets
        .delete("app-db-credentials-mirror", &DeleteParams::default())
        .await
        .expect("deleting the mirror");
    let restored = eventually("the deleted mirror to come back", || async {
        match e2e.secret("app-db-credentials-mirror").await {
            Some(s) if s.metadata.uid != original.metadata.uid => Ok(s),
            _ => Err("not yet recreated".into()),
        }
    })
    .await;
    assert_eq!(
        secret_value(&restored, "password").as_deref(),
        Some(EXAMPLE_PASSWORD)
    );

    // A hand edit (another field manager, as `kubectl edit` would) is overwritten.
    secrets
        .patch(
            "app-db-credentials-mirror",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "hand-edited"}})),
        )
        .await
        .expect("editing the mirror by hand");
    wait_secret_value(
        &e2e,
        "app-db-credentials-mirror",
        "password",
        EXAMPLE_PASSWORD,
    )
    .await;
}

/// Behaviour 3: a Secret the operator does not own is never taken over.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn an_unmanaged_secret_with_the_mirror_name_is_left_alone() {
    let e2e = E2e::start().await;
    let privx_name = e2e.privx_name("upstream-api-key");
    put_in_privx(&e2e, &privx_name, "api-key", "upstream-value").await;
    e2e.apply(E2e::secret_manifest("upstream-api-key", &[("keep", "me")]))
        .await;
    e2e.apply_example("vaultsecret-readonly-mirror.yaml").await;

    let vs = e2e.wait_ready_reason("upstream-api-key", "Conflict").await;
    let (ready, _, message) = ready_reason(&vs);
    assert_eq!(ready, "False");
    assert!(message.contains("upstream-api-key"), "{message}");
    let untouched = e2e.secret("upstream-api-key").await.unwrap();
    assert_eq!(secret_value(&untouched, "keep").as_deref(), Some("me"));
    assert_eq!(secret_value(&untouched, "API_KEY"), None);
    assert!(untouched.metadata.owner_references.is_none());
    assert!(
        !untouched
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key(MANAGED_BY_LABEL)
    );
}

/// Behaviour 4: without a source PrivX is the truth; its changes reach the mirror within
/// `refreshInterval`, and the operator never writes to PrivX.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_read_only_mirror_follows_privx_within_the_refresh_interval() {
    let e2e = E2e::start().await;
    let privx_name = e2e.privx_name("upstream-api-key");
    put_in_privx(&e2e, &privx_name, "api-key", "upstream-v1").await;
    let mut vs = e2e.example_of("vaultsecret-readonly-mirror.yaml", "VaultSecret");
    assert_eq!(vs["spec"]["name"], privx_name.as_str());
    vs["spec"]["refreshInterval"] = json!("10s");
    e2e.apply(vs).await;
    let synced = e2e.wait_synced("upstream-api-key").await;
    assert_eq!(
        synced.status.unwrap().privx.unwrap().ownership,
        None,
        "read-only: not managed"
    );
    wait_secret_value(&e2e, "upstream-api-key", "API_KEY", "upstream-v1").await;

    // No watch tells the operator about PrivX: only the refresh can bring this.
    put_in_privx(&e2e, &privx_name, "api-key", "upstream-v2").await;
    wait_secret_value(&e2e, "upstream-api-key", "API_KEY", "upstream-v2").await;
    assert_eq!(e2e.sim.operator_writes().await.len(), 0);
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["api-key"],
        "upstream-v2",
        "PrivX keeps what its user wrote"
    );
}

/// Behaviour 6: a change made in PrivX behind the operator's back is put back, with an event.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn drift_in_privx_is_put_back_with_an_event() {
    let e2e = E2e::start().await;
    e2e.apply(E2e::deployment("web")).await;
    for mut doc in e2e.example("vaultsecret-from-secret.yaml") {
        if doc["kind"] == "VaultSecret" {
            doc["spec"]["refreshInterval"] = json!("10s");
        }
        e2e.apply(doc).await;
    }
    e2e.wait_synced("app-db-credentials").await;
    let privx_name = e2e.privx_name("app-db-credentials");
    let current = e2e
        .someone_else
        .get_secret(&SecretLocation::Shared, &privx_name)
        .await
        .unwrap();
    e2e.someone_else
        .update_secret(
            &SecretLocation::Shared,
            &privx_name,
            &SecretWrite {
                data: SecretData(
                    [
                        ("username".to_string(), json!("app")),
                        ("password".to_string(), json!("tampered")),
                    ]
                    .into(),
                ),
                read_roles: current.read_roles.clone(),
                write_roles: current.write_roles.clone(),
            },
        )
        .await
        .expect("someone-else changes the secret in PrivX");

    wait_privx_value(&e2e, &privx_name, "password", EXAMPLE_PASSWORD).await;
    let note = e2e.wait_event("app-db-credentials", "DriftCorrected").await;
    assert!(!note.contains("tampered") && !note.contains(EXAMPLE_PASSWORD));
    let mirror = e2e.secret("app-db-credentials-mirror").await.unwrap();
    assert_eq!(
        secret_value(&mirror, "password").as_deref(),
        Some(EXAMPLE_PASSWORD),
        "the mirror never took the drifted value"
    );
}

/// Behaviours 2 (generate: stable across re-apply and operator restart, new only on request)
/// and 10 (the StatefulSet restarts on the new password only).
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_generated_password_is_stable_until_regeneration_is_requested() {
    let mut e2e = E2e::start().await;
    e2e.apply_example("passwordpolicy.yaml").await;
    e2e.apply(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "reporting"},
        "spec": {
            "replicas": 0,
            "serviceName": "reporting",
            "selector": {"matchLabels": {"app": "reporting"}},
            "template": {
                "metadata": {"labels": {"app": "reporting"}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }))
    .await;
    let mut manifest = e2e.example_of("vaultsecret-generated.yaml", "VaultSecret");
    // The example names no workload (it holds none); this test restarts one.
    manifest["spec"]["mirror"]["rolloutRestartTargets"] =
        json!([{"kind": "StatefulSet", "name": "reporting"}]);
    e2e.apply(manifest.clone()).await;
    let vs = e2e.wait_synced("reporting-db-password").await;
    let privx_name = e2e.privx_name("reporting-db-password");
    let mirror = e2e.secret("reporting-db-password").await.unwrap();
    let first = secret_value(&mirror, "password").expect("a generated password");
    // The policy (examples/passwordpolicy.yaml): 20–32 characters, no special characters.
    assert!((20..=32).contains(&first.len()), "length {}", first.len());
    assert!(first.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["password"],
        first.as_str()
    );
    let first_hash = status_hash(&vs);

    // Re-applied (with a label, so that a reconcile surely follows): same password.
    let before = e2e.reconciles("vaultsecret").await;
    let mut relabelled = manifest.clone();
    relabelled["metadata"]["labels"] = json!({"reapplied": "yes"});
    e2e.apply(relabelled).await;
    e2e.wait_reconciles("vaultsecret", before + 1).await;
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["password"],
        first.as_str()
    );

    // Operator restart: same password, no PrivX write, no restart of the StatefulSet.
    e2e.sim.clear_requests().await;
    e2e.restart_operator().await;
    e2e.wait_reconciles("vaultsecret", 1).await;
    assert_eq!(e2e.sim.operator_writes().await.len(), 0);
    let mirror = e2e.secret("reporting-db-password").await.unwrap();
    assert_eq!(
        secret_value(&mirror, "password").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(statefulset_restart(&e2e, "reporting").await, None);

    // The regenerate annotation asks for a new one, once.
    let mut regenerate = manifest.clone();
    regenerate["metadata"]["annotations"] = json!({"privx-operator.dev/regenerate": "2024-06-01"});
    e2e.apply(regenerate).await;
    e2e.wait_event("reporting-db-password", "Regenerated").await;
    let second = eventually("a new password in the mirror", || async {
        let mirror = e2e.secret("reporting-db-password").await.unwrap();
        match secret_value(&mirror, "password") {
            Some(p) if p != first => Ok(p),
            _ => Err("still the first password".into()),
        }
    })
    .await;
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["password"],
        second.as_str()
    );
    let vs = e2e.wait_synced("reporting-db-password").await;
    let second_hash = status_hash(&vs);
    assert_ne!(second_hash, first_hash);
    assert_eq!(
        vs.status.unwrap().regenerate_token.as_deref(),
        Some("2024-06-01")
    );
    eventually("the StatefulSet restarted", || async {
        match statefulset_restart(&e2e, "reporting").await {
            Some(h) if h == second_hash => Ok(()),
            h => Err(format!("template annotation {h:?}")),
        }
    })
    .await;
}

async fn statefulset_restart(e2e: &E2e, name: &str) -> Option<String> {
    e2e.api::<StatefulSet>()
        .get(name)
        .await
        .expect("reading the StatefulSet")
        .spec
        .template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(DATA_HASH_ANNOTATION).cloned())
}

/// A small VaultSecret pushing the Secret `db` under its default PrivX name.
fn push_manifest(name: &str, extra_spec: Value) -> Value {
    let mut spec = json!({"source": {"secretRef": {"name": "db"}}, "mirror": {}});
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra_spec) {
        spec.extend(extra);
    }
    json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "metadata": {"name": name}, "spec": spec})
}

/// Behaviour 7: `Retain` keeps the PrivX secret and needs no finalizer; `Delete` removes it.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn deletion_retains_or_deletes_the_privx_secret_as_declared() {
    let e2e = E2e::start().await;
    e2e.apply(E2e::secret_manifest("db", &[("password", "db-value")]))
        .await;
    e2e.apply(push_manifest("kept", json!({}))).await;
    e2e.apply(push_manifest(
        "removed",
        json!({"deletionPolicy": "Delete"}),
    ))
    .await;
    let kept = e2e.wait_synced("kept").await;
    let removed = e2e.wait_synced("removed").await;
    assert!(kept.metadata.finalizers.unwrap_or_default().is_empty());
    assert_eq!(removed.metadata.finalizers.unwrap_or_default(), [FINALIZER]);
    let (kept_name, removed_name) = (e2e.privx_name("kept"), e2e.privx_name("removed"));
    assert!(e2e.privx_data(&kept_name).await.is_some());
    assert!(e2e.privx_data(&removed_name).await.is_some());

    let api = e2e.api::<VaultSecret>();
    for name in ["kept", "removed"] {
        api.delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting VaultSecret {name}: {e}"));
    }
    for name in ["kept", "removed"] {
        eventually(&format!("VaultSecret {name} gone"), || async {
            match e2e.vault_secret(name).await {
                None => Ok(()),
                Some(vs) => Err(format!("finalizers {:?}", vs.metadata.finalizers)),
            }
        })
        .await;
    }
    assert!(
        e2e.privx_data(&kept_name).await.is_some(),
        "Retain keeps the PrivX secret"
    );
    assert!(
        e2e.privx_data(&removed_name).await.is_none(),
        "Delete removed the PrivX secret before the object went"
    );
    // The mirrors go with their owners (the cluster's garbage collector).
    eventually("the mirrors garbage-collected", || async {
        let left = [
            e2e.secret("kept").await.is_some(),
            e2e.secret("removed").await.is_some(),
        ];
        if left == [false, false] {
            Ok(())
        } else {
            Err(format!("still present (kept, removed): {left:?}"))
        }
    })
    .await;
}

/// Behaviour 8: an existing PrivX secret is taken over only with `adopt: true`.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn an_existing_privx_secret_is_adopted_only_when_allowed() {
    let e2e = E2e::start().await;
    let privx_name = e2e.privx_name("taken");
    put_in_privx(&e2e, &privx_name, "password", "theirs").await;
    e2e.apply(E2e::secret_manifest("db", &[("password", "mine")]))
        .await;
    e2e.apply(push_manifest("taken", json!({}))).await;

    let vs = e2e.wait_ready_reason("taken", "Conflict").await;
    let (_, _, message) = ready_reason(&vs);
    assert!(message.contains("adopt"), "{message}");
    assert!(!message.contains("theirs") && !message.contains("mine"));
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["password"],
        "theirs"
    );
    assert_eq!(e2e.sim.operator_writes().await.len(), 0);
    assert!(
        e2e.secret("taken").await.is_none(),
        "no mirror of a conflict"
    );

    e2e.apply(push_manifest("taken", json!({"adopt": true})))
        .await;
    let vs = e2e.wait_synced("taken").await;
    assert_eq!(
        vs.status.unwrap().privx.unwrap().ownership,
        Some(Ownership::Adopted)
    );
    assert_eq!(
        e2e.privx_data(&privx_name).await.unwrap()["password"],
        "mine"
    );
    e2e.wait_event("taken", "Adopted").await;
}

/// Behaviour 9: names outside the namespace's prefix, and personal vaults, are refused until a
/// cluster admin allows them on the Namespace.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn tenancy_refuses_foreign_names_until_the_namespace_allows_them() {
    let e2e = E2e::start().await;
    e2e.apply(E2e::secret_manifest("db", &[("password", "x-value")]))
        .await;
    e2e.apply(push_manifest("foreign", json!({"name": "shared/e2e-db"})))
        .await;
    e2e.apply(E2e::secret_manifest(
        "alice-ssh-key",
        &[("ssh-privatekey", "not-a-real-key")],
    ))
    .await;
    e2e.apply_example("vaultsecret-personal.yaml").await;

    let foreign = e2e.wait_ready_reason("foreign", "NotAllowed").await;
    let (ready, _, message) = ready_reason(&foreign);
    assert_eq!(ready, "False");
    assert!(
        message.contains(&format!("k8s/{}/", e2e.ns)) && message.contains("shared/e2e-db"),
        "{message}"
    );
    e2e.wait_event_of_type("foreign", "Warning", "NotAllowed")
        .await;
    let personal = e2e.wait_ready_reason("alice-ssh-key", "NotAllowed").await;
    assert!(ready_reason(&personal).2.contains(demo::USER_ALICE));
    assert_eq!(e2e.sim.operator_writes().await.len(), 0, "nothing written");

    // The Namespace watch brings the change without touching the VaultSecrets.
    e2e.annotate_namespace(json!({
        "privx-operator.dev/allowed-names": "shared/*",
        "privx-operator.dev/allowed-owners": demo::USER_ALICE,
    }))
    .await;
    e2e.wait_synced("foreign").await;
    e2e.wait_synced("alice-ssh-key").await;
    assert!(e2e.privx_data("shared/e2e-db").await.is_some());
    let alice = SecretLocation::Personal {
        user_id: demo::USER_ALICE.into(),
    };
    e2e.someone_else
        .get_secret_metadata(&alice, &e2e.privx_name("alice-ssh-key"))
        .await
        .expect("alice's personal secret exists");
}

/// Behaviour 11: what is wrong is said in status, with a specific reason, and heals.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn status_names_what_is_missing_or_invalid() {
    let e2e = E2e::start().await;
    let mut late = push_manifest("late", json!({}));
    late["spec"]["source"]["secretRef"]["name"] = json!("late-source");
    e2e.apply(late).await;
    let mut no_role = push_manifest("no-role", json!({"readRoles": [{"name": "no-such-role"}]}));
    no_role["spec"]["source"]["secretRef"]["name"] = json!("db");
    e2e.apply(E2e::secret_manifest("db", &[("password", "x-value")]))
        .await;
    e2e.apply(no_role).await;
    e2e.apply(json!({
        "apiVersion": "privx-operator.dev/v1alpha1",
        "kind": "VaultSecret",
        "metadata": {"name": "no-policy"},
        "spec": {"source": {"generate": {"passwordPolicyRef": {"name": format!("{}-nope", e2e.ns)}, "key": "password"}}},
    }))
    .await;

    let vs = e2e.wait_ready_reason("late", "SourceNotFound").await;
    assert!(ready_reason(&vs).2.contains("late-source"));
    let note = e2e
        .wait_event_of_type("late", "Warning", "SourceNotFound")
        .await;
    assert!(note.contains("late-source"), "{note}");
    let vs = e2e.wait_ready_reason("no-role", "InvalidSpec").await;
    let message = ready_reason(&vs).2;
    assert!(
        message.contains("spec.readRoles[0]") && message.contains("no-such-role"),
        "{message}"
    );
    let vs = e2e.wait_ready_reason("no-policy", "PolicyNotFound").await;
    assert_eq!(ready_reason(&vs).0, "False");

    // The source appears later: picked up without touching the VaultSecret.
    e2e.apply(E2e::secret_manifest("late-source", &[("password", "late")]))
        .await;
    e2e.wait_synced("late").await;
    wait_privx_value(&e2e, &e2e.privx_name("late"), "password", "late").await;
}

// ---- PasswordPolicy -------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn password_policies_are_created_updated_and_deleted_as_declared() {
    let e2e = E2e::start().await;
    let retained = e2e.example_of("passwordpolicy.yaml", "PasswordPolicy");
    let retained_name = retained["metadata"]["name"].as_str().unwrap().to_string();
    e2e.apply(retained.clone()).await;
    let policy = e2e.wait_policy_reason(&retained_name, "Synced").await;
    let id = policy.status.unwrap().id.expect("status.id");
    assert!(policy.metadata.finalizers.unwrap_or_default().is_empty());

    // Same fields in PrivX as declared (examples/passwordpolicy.yaml).
    let stored = e2e
        .someone_else
        .get_policy(&id)
        .await
        .expect("policy exists");
    assert_eq!(stored.name, "app-passwords");
    assert_eq!(stored.password_min_length, Some(20));
    assert_eq!(stored.password_max_length, Some(32));
    assert_eq!(stored.use_lower_case, Some(true));
    assert_eq!(stored.use_upper_case, Some(true));
    assert_eq!(stored.use_numbers, Some(true));
    assert_eq!(stored.use_special_characters, Some(false));
    assert_eq!(stored.max_versions, Some(5));
    assert_eq!(stored.number_of_retries, Some(3));
    assert_eq!(
        stored.rotation_interval,
        Some(std::time::Duration::from_secs(720 * 3600))
    );
    assert_eq!(
        stored.retry_interval,
        Some(std::time::Duration::from_secs(300))
    );

    // Edited: PrivX follows.
    let mut edited = retained.clone();
    edited["spec"]["passwordMinLength"] = json!(24);
    edited["spec"]["maxVersions"] = json!(7);
    e2e.apply(edited).await;
    eventually("the PrivX policy updated", || async {
        let p = e2e
            .someone_else
            .get_policy(&id)
            .await
            .map_err(|e| e.to_string())?;
        if p.password_min_length == Some(24) && p.max_versions == Some(7) {
            Ok(())
        } else {
            Err(format!(
                "min length {:?}, max versions {:?}",
                p.password_min_length, p.max_versions
            ))
        }
    })
    .await;

    // Retain: the object goes, the PrivX policy stays.
    let policies = kube::Api::<PasswordPolicy>::all(e2e.client.clone());
    policies
        .delete(&retained_name, &DeleteParams::default())
        .await
        .expect("deleting the Retain policy");
    wait_policy_gone(&policies, &retained_name).await;
    assert!(e2e.someone_else.get_policy(&id).await.is_ok(), "retained");

    // Delete: finalizer while it exists, the PrivX policy removed before the object goes.
    let mut deleted = retained.clone();
    let deleted_name = format!("{retained_name}-delete");
    deleted["metadata"]["name"] = json!(deleted_name);
    deleted["spec"]["name"] = json!("app-passwords-delete");
    deleted["spec"]["deletionPolicy"] = json!("Delete");
    e2e.apply(deleted).await;
    let policy = e2e.wait_policy_reason(&deleted_name, "Synced").await;
    assert_eq!(policy.metadata.finalizers.unwrap_or_default(), [FINALIZER]);
    let id = policy.status.unwrap().id.expect("status.id");
    assert!(e2e.someone_else.get_policy(&id).await.is_ok());
    policies
        .delete(&deleted_name, &DeleteParams::default())
        .await
        .expect("deleting the Delete policy");
    wait_policy_gone(&policies, &deleted_name).await;
    let gone = e2e.someone_else.get_policy(&id).await;
    assert!(matches!(gone, Err(PrivxError::NotFound { .. })), "{gone:?}");
}

async fn wait_policy_gone(policies: &kube::Api<PasswordPolicy>, name: &str) {
    eventually(&format!("PasswordPolicy {name} gone"), || async {
        match policies.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(p) => Err(format!("finalizers {:?}", p.metadata.finalizers)),
        }
    })
    .await;
}

// ---- mirrors applications use as they are (issue 12) -------------------------------------

/// `someone-else` puts a two-field secret (username, password) into PrivX.
async fn put_credentials_in_privx(e2e: &E2e, name: &str, username: &str, password: &str) {
    let write = SecretWrite {
        data: SecretData(
            [
                ("username".to_string(), json!(username)),
                ("password".to_string(), json!(password)),
            ]
            .into(),
        ),
        read_roles: vec![operator_role()],
        write_roles: vec![operator_role()],
    };
    let at = SecretLocation::Shared;
    match e2e.someone_else.get_secret(&at, name).await {
        Ok(_) => e2e.someone_else.update_secret(&at, name, &write).await,
        Err(PrivxError::NotFound { .. }) => e2e
            .someone_else
            .create_secret(&at, name, &write)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| panic!("someone-else writing {name:?} in PrivX: {e}"));
}

/// examples/vaultsecret-database-url.yaml: the templated DATABASE_URL (password URL-encoded);
/// OnChange reads PrivX no more after the sync; force-sync reads it and rewrites the mirror,
/// and status says which value was handled.
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_templated_database_url_follows_on_change_and_force_sync() {
    let e2e = E2e::start().await;
    let privx_name = e2e.privx_name("orders-db");
    put_credentials_in_privx(&e2e, &privx_name, "orders", "p@ss/word").await;
    e2e.apply(E2e::deployment("orders")).await;
    e2e.apply_example("vaultsecret-database-url.yaml").await;
    e2e.wait_synced("orders-database-url").await;
    wait_secret_value(
        &e2e,
        "orders-database-url",
        "DATABASE_URL",
        "postgres://orders:p%40ss%2Fword@orders-db:5432/orders?sslmode=require",
    )
    .await;

    // OnChange: a change in PrivX alone is not read.
    put_credentials_in_privx(&e2e, &privx_name, "orders", "rotated").await;
    e2e.sim.clear_requests().await;
    let before = e2e.reconciles("vaultsecret").await;
    e2e.apply(E2e::secret_manifest("unrelated", &[("x", "y")]))
        .await;
    e2e.wait_reconciles("vaultsecret", before).await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let secret = e2e.secret("orders-database-url").await.expect("mirror");
    assert!(
        secret_value(&secret, "DATABASE_URL").is_some_and(|v| v.contains("p%40ss%2Fword")),
        "not re-read without a change"
    );

    // Force-sync: read, rewritten, recorded.
    let api = e2e.api::<VaultSecret>();
    api.patch(
        "orders-database-url",
        &PatchParams::apply("e2e-user"),
        &Patch::Apply(json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": "orders-database-url", "annotations": {"privx-operator.dev/force-sync": "e2e-1"}},
        })),
    )
    .await
    .expect("annotate");
    wait_secret_value(
        &e2e,
        "orders-database-url",
        "DATABASE_URL",
        "postgres://orders:rotated@orders-db:5432/orders?sslmode=require",
    )
    .await;
    eventually("status.lastForceSync", || async {
        let vs = e2e
            .vault_secret("orders-database-url")
            .await
            .ok_or("gone")?;
        match vs.status.and_then(|s| s.last_force_sync) {
            Some(v) if v == "e2e-1" => Ok(()),
            other => Err(format!("lastForceSync {other:?}")),
        }
    })
    .await;
}

/// examples/vaultsecret-dockerconfigjson.yaml: a kubernetes.io/dockerconfigjson Secret the API
/// server accepts, whose auth field is base64("user:password").
#[tokio::test]
#[ignore = "needs a cluster: set PRIVX_OPERATOR_E2E_CONTEXT (docs/testing.md)"]
async fn a_dockerconfigjson_is_built_from_registry_credentials() {
    let e2e = E2e::start().await;
    put_credentials_in_privx(
        &e2e,
        &e2e.privx_name("registry-credentials"),
        "robot",
        "pull-token",
    )
    .await;
    e2e.apply_example("vaultsecret-dockerconfigjson.yaml").await;
    e2e.wait_synced("registry-pull").await;
    let secret = e2e.secret("registry-pull").await.expect("the mirror");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let config: Value = serde_json::from_str(
        &secret_value(&secret, ".dockerconfigjson").expect(".dockerconfigjson"),
    )
    .expect("valid JSON");
    let auth = &config["auths"]["registry.example.com"];
    assert_eq!(auth["username"], "robot");
    use base64::Engine as _;
    assert_eq!(
        auth["auth"]
            .as_str()
            .map(|a| base64::engine::general_purpose::STANDARD.decode(a).unwrap()),
        Some(b"robot:pull-token".to_vec())
    );
}
