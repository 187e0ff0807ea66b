//! Safety of the reconcile layer (issue 13): status is not trusted for deletes and updates,
//! intent is recorded before PrivX writes, undeserialisable objects still clean up, unknown
//! outcomes are not retried blindly, claimants are ordered stably. The real controller code
//! against the fake Kubernetes API and the real simulator.

mod support;

use std::sync::Arc;

use privx_client::{PrivxError, SecretData, SecretLocation, SecretWrite};
use privx_operator::controller::vault_secret;
use privx_operator::controller::vault_secret::store::stored::StoredVaultSecret;
use privx_sim::Fault;
use serde_json::{Value, json};
use support::{Harness, NS, guard_of, vs_path};

const FINALIZER: &str = "privx-operator.dev/cleanup";
const PRIVX_NAME: &str = "k8s/demo/db";

fn delete_spec() -> Value {
    json!({
        "source": {"secretRef": {"name": "db-creds"}},
        "deletionPolicy": "Delete",
    })
}

/// Changes the raw object at `path` with `f` (as a tenant with write access would).
fn edit(h: &Harness, path: &str, f: impl FnOnce(&mut Value)) {
    let mut o = h.kube.get(path).expect("object exists");
    f(&mut o);
    h.kube.put(path, o);
}

/// Someone else (not the operator) creates a shared PrivX secret.
async fn someone_elses_secret(h: &Harness, name: &str, value: &str) {
    h.someone_else
        .create_secret(
            &SecretLocation::Shared,
            name,
            &SecretWrite {
                data: SecretData([("password".to_string(), json!(value))].into()),
                ..Default::default()
            },
        )
        .await
        .expect("someone else creates it");
}

async fn exists(h: &Harness, name: &str) -> bool {
    match h
        .someone_else
        .get_secret_metadata(&SecretLocation::Shared, name)
        .await
    {
        Ok(_) => true,
        Err(PrivxError::NotFound { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_forged_status_cannot_aim_a_delete_outside_the_namespace() {
    let mut h = Harness::new().await;
    someone_elses_secret(&h, "legacy/payroll-db", "legacy-value").await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.reconcile("db").await.unwrap();
    let path = vs_path(NS, "db");
    assert_eq!(
        h.kube.get(&path).unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );

    // The tenant rewrites status to name a secret outside every namespace prefix, then deletes.
    edit(&h, &path, |o| {
        o["status"]["privx"]["name"] = json!("legacy/payroll-db")
    });
    h.delete(&path);
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();

    assert!(exists(&h, "legacy/payroll-db").await, "not deleted");
    assert!(h.privx_writes().is_empty(), "{:?}", h.privx_writes());
    let o = h.kube.get(&path).expect("finalizer kept");
    assert_eq!(o["metadata"]["finalizers"], json!([FINALIZER]));
    let (status, reason, message) = h.ready_reason("db");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NotAllowed"));
    assert!(
        message.contains("legacy/payroll-db")
            && message.contains("privx-operator.dev/allowed-names"),
        "{message}"
    );
    assert!(h.kube.event_reasons().contains(&"NotAllowed".to_string()));
}

#[tokio::test]
async fn a_forged_ownership_neither_overwrites_nor_deletes_someone_elses_secret() {
    let mut h = Harness::new().await;
    h.namespace(NS, json!({"privx-operator.dev/allowed-names": "shared/*"}));
    someone_elses_secret(&h, "shared/db", "theirs").await;
    h.secret(NS, "db-creds", &[("password", "mine")]);
    let mut spec = delete_spec();
    spec["name"] = json!("shared/db");
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    assert_eq!(h.ready_reason("db").1, "Conflict");

    // The tenant claims in status that the operator created it.
    let path = vs_path(NS, "db");
    edit(&h, &path, |o| {
        o["status"]["privx"] = json!({"name": "shared/db", "ownership": "Created"});
    });
    h.sim.clear_requests();
    h.reconcile("db").await.unwrap();
    assert!(h.privx_writes().is_empty(), "{:?}", h.privx_writes());
    assert_eq!(h.ready_reason("db").1, "Conflict");
    let theirs = h
        .someone_else
        .get_secret_metadata(&SecretLocation::Shared, "shared/db")
        .await
        .unwrap();
    assert_eq!(
        theirs.updated_by, theirs.author,
        "never written by the operator"
    );

    // With a finalizer forged too, deletion is refused and the finalizer stays.
    edit(&h, &path, |o| {
        o["metadata"]["finalizers"] = json!([FINALIZER])
    });
    h.delete(&path);
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, "shared/db").await);
    assert!(h.privx_writes().is_empty(), "{:?}", h.privx_writes());
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "Conflict");
    assert!(
        message.contains("someone-else") || message.contains("author"),
        "{message}"
    );
    assert!(h.kube.get(&path).is_some(), "finalizer kept");
}

#[tokio::test]
async fn deletion_after_a_crash_before_the_status_write_deletes_what_the_operator_created() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, PRIVX_NAME).await);
    // The crash: PrivX written, finalizer on, status never written.
    let path = vs_path(NS, "db");
    edit(&h, &path, |o| o["status"] = Value::Null);
    h.delete(&path);
    h.reconcile("db").await.unwrap();
    assert!(
        !exists(&h, PRIVX_NAME).await,
        "the PrivX secret did not leak"
    );
    assert!(h.kube.get(&path).is_none(), "finalizer released");
}

#[tokio::test]
async fn without_a_record_a_secret_of_someone_else_is_left_alone() {
    let mut h = Harness::new().await;
    someone_elses_secret(&h, PRIVX_NAME, "theirs").await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    let path = vs_path(NS, "db");
    edit(&h, &path, |o| {
        o["metadata"]["finalizers"] = json!([FINALIZER])
    });
    h.delete(&path);
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, PRIVX_NAME).await, "not ours: not deleted");
    assert!(
        h.kube.get(&path).is_none(),
        "nothing of ours: finalizer released"
    );
}

#[tokio::test]
async fn the_target_is_recorded_before_the_privx_write() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.sim
        .set_faults(vec![Fault::status("POST /vault/api/v1/secrets", 503)]);
    assert!(h.reconcile("db").await.is_err());
    let vs = h.get_vs("db");
    let privx = vs.status.unwrap().privx.expect("the target is recorded");
    assert_eq!(privx.name, PRIVX_NAME);
    assert_eq!(
        privx.ownership, None,
        "not claimed before PrivX confirmed it"
    );
    assert_eq!(h.ready_reason("db").1, "PrivXUnavailable");
}

#[tokio::test]
async fn an_undeserialisable_object_is_cleaned_up_from_its_status() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, PRIVX_NAME).await);
    let path = vs_path(NS, "db");
    edit(&h, &path, |o| o["spec"]["refreshInterval"] = json!(5));
    h.delete(&path);
    let stored: Arc<StoredVaultSecret> = Arc::new(guard_of(h.kube.get(&path).unwrap()));
    assert!(!stored.is_valid(), "the object no longer deserialises");
    vault_secret::reconcile(stored, h.ctx.clone())
        .await
        .unwrap();
    assert!(
        !exists(&h, PRIVX_NAME).await,
        "deleted from what status recorded"
    );
    assert!(h.kube.get(&path).is_none(), "finalizer released");
}

fn policy_spec() -> Value {
    json!({"maxVersions": 5, "rotationInterval": "720h", "deletionPolicy": "Delete"})
}

const POLICY_CREATE: &str = "POST /secrets-manager/api/v1/password-policy";

async fn policies_named(h: &Harness, name: &str) -> usize {
    h.someone_else
        .list_policies()
        .await
        .unwrap()
        .iter()
        .filter(|p| p.name == name)
        .count()
}

fn posts(h: &Harness, route: &str) -> usize {
    h.sim.requests().iter().filter(|r| r.route == route).count()
}

/// A harness whose PrivX client would retry an unavailable answer twice.
async fn impatient() -> Harness {
    Harness::build_tuned(
        privx_client::config::PolicyGenerationSetting::Auto,
        privx_sim::SimOptions {
            policy_unique_names: false,
            ..Default::default()
        },
        Arc::new(privx_operator::controller::core::NoMetrics),
        |c| {
            c.max_retries = 2;
        },
    )
    .await
}

#[tokio::test]
async fn a_policy_create_answered_503_is_re_read_before_any_second_post() {
    let mut h = impatient().await;
    h.policy("p", policy_spec());
    h.sim
        .set_faults(vec![Fault::status(POLICY_CREATE, 503).for_next(1)]);
    h.sim.clear_requests();
    assert!(h.reconcile_policy("p").await.is_err());
    assert_eq!(posts(&h, POLICY_CREATE), 1, "no blind retry of the create");
    let (_, reason, message) = h.policy_ready("p");
    assert_eq!(reason, "PrivXUnavailable");
    assert!(message.contains("503"), "{message}");
    h.reconcile_policy("p").await.unwrap();
    assert_eq!(
        posts(&h, POLICY_CREATE),
        2,
        "the next reconcile re-read, then created"
    );
    assert_eq!(policies_named(&h, "p").await, 1);
}

#[tokio::test]
async fn already_exists_from_a_create_is_reported_as_a_conflict() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    // PrivX answers the create as if someone else had taken the name in between.
    h.sim.set_faults(vec![
        Fault::status("POST /vault/api/v1/secrets", 409).for_next(1),
    ]);
    assert!(h.reconcile("db").await.is_err());
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "Conflict", "{message}");
    assert!(message.contains("already exists"), "{message}");
}

#[tokio::test]
async fn a_policy_deleted_after_a_crash_before_its_status_write_is_deleted_in_privx() {
    let mut h = Harness::new().await;
    h.policy("p", policy_spec());
    h.reconcile_policy("p").await.unwrap();
    assert_eq!(policies_named(&h, "p").await, 1);
    let path = support::policy_path("p");
    edit(&h, &path, |o| o["status"] = Value::Null);
    h.delete(&path);
    h.reconcile_policy("p").await.unwrap();
    assert_eq!(policies_named(&h, "p").await, 0, "the policy did not leak");
    assert!(h.kube.get(&path).is_none());
}

#[tokio::test]
async fn an_undeserialisable_policy_is_cleaned_up_from_its_status() {
    let mut h = Harness::new().await;
    h.policy("p", policy_spec());
    h.reconcile_policy("p").await.unwrap();
    let path = support::policy_path("p");
    edit(&h, &path, |o| o["spec"]["maxVersions"] = json!("many"));
    h.delete(&path);
    let guard = Arc::new(guard_of(h.kube.get(&path).unwrap()));
    privx_operator::controller::password_policy::reconcile(guard, h.ctx.core.clone())
        .await
        .unwrap();
    assert_eq!(
        policies_named(&h, "p").await,
        0,
        "deleted from what status recorded"
    );
    assert!(h.kube.get(&path).is_none());
}

#[tokio::test]
async fn the_owner_keeps_its_secret_when_a_tied_claimant_appears() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let spec = json!({"name": "k8s/demo/shared", "source": {"secretRef": {"name": "db-creds"}}});
    let same_second = json!({"creationTimestamp": "2026-11-23T01:00:00Z"});
    let mut owner_meta = same_second.clone();
    owner_meta["uid"] = json!("uid-zzz");
    h.vault_secret_with("owner", spec.clone(), owner_meta);
    h.reconcile("owner").await.unwrap();
    assert_eq!(h.ready_reason("owner").1, "Synced");
    // Once more, so the store holds the owner with its status (as the watch would deliver it).
    h.reconcile("owner").await.unwrap();

    // A second object, created in the same second, whose uid sorts first.
    let mut late_meta = same_second;
    late_meta["uid"] = json!("uid-aaa");
    h.vault_secret_with("late", spec, late_meta);
    h.reconcile("late").await.unwrap();
    let (_, reason, message) = h.ready_reason("late");
    assert_eq!(reason, "Conflict");
    assert!(message.contains("demo/owner"), "{message}");
    h.sim.clear_requests();
    h.reconcile("owner").await.unwrap();
    assert_eq!(h.ready_reason("owner").1, "Synced", "the owner keeps it");
    // Order stays the same on every pass.
    h.reconcile("late").await.unwrap();
    assert_eq!(h.ready_reason("late").1, "Conflict");
}

#[tokio::test]
async fn labels_removed_from_the_spec_are_removed_from_the_mirror_others_stay() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = json!({
        "source": {"secretRef": {"name": "db-creds"}},
        "mirror": {"secretName": "m", "labels": {"team": "a", "tier": "db"}, "annotations": {"note": "n"}},
    });
    h.vault_secret("db", spec.clone());
    h.reconcile("db").await.unwrap();
    // What the API server records: the operator's apply owns its labels and annotations; a
    // person added a label of their own.
    let mirror = support::secret_path(NS, "m");
    edit(&h, &mirror, |o| {
        o["metadata"]["labels"]["by-hand"] = json!("yes");
        o["metadata"]["managedFields"] = json!([{
            "manager": "privx-operator", "operation": "Apply", "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {
                "f:labels": {"f:team": {}, "f:tier": {}, "f:app.kubernetes.io/managed-by": {}, "f:privx-operator.dev/vaultsecret": {}},
                "f:annotations": {"f:note": {}, "f:privx-operator.dev/data-hash": {}},
            }},
        }]);
    });
    spec["mirror"]["labels"] = json!({"team": "a"});
    spec["mirror"]["annotations"] = json!({});
    h.vault_secret("db", spec);
    h.kube.clear_requests();
    h.reconcile("db").await.unwrap();
    let apply = h
        .kube
        .writes()
        .into_iter()
        .find(|r| r.path == mirror)
        .expect("the mirror is applied again");
    let body = apply.body.expect("apply body");
    let labels = body["metadata"]["labels"].as_object().unwrap();
    assert!(labels.contains_key("team"));
    assert!(
        !labels.contains_key("tier"),
        "dropped from the apply: {labels:?}"
    );
    assert!(
        !labels.contains_key("by-hand"),
        "never claimed by the operator"
    );
    assert!(body["metadata"]["annotations"].get("note").is_none());
    assert!(
        apply.query.contains("fieldManager=privx-operator"),
        "server-side apply with the operator's field manager: {}",
        apply.query
    );
}

#[tokio::test]
async fn privx_fields_that_are_not_secret_keys_are_mirrored_through_key_mapping() {
    let mut h = Harness::new().await;
    // A PrivX secret the operator may read, with field names no Secret key allows.
    h.ctx
        .privx
        .create_secret(
            &SecretLocation::Shared,
            "k8s/demo/odd",
            &SecretWrite {
                data: SecretData(
                    [
                        ("a b".to_string(), json!("1")),
                        ("ü".to_string(), json!("2")),
                    ]
                    .into(),
                ),
                // The operator's own role, so it may read the data back.
                read_roles: vec![privx_client::RoleHandle {
                    id: "10000000-0000-4000-8000-000000000001".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    h.vault_secret(
        "odd",
        json!({"mirror": {"secretName": "odd", "keyMapping": {"a b": "a_b", "ü": "u"}}}),
    );
    h.reconcile("odd").await.unwrap();
    assert_eq!(
        h.ready_reason("odd").1,
        "Synced",
        "{:?}",
        h.ready_reason("odd")
    );
    let data = h.secret_data(NS, "odd").unwrap();
    assert_eq!(data["a_b"], "1");
    assert_eq!(data["u"], "2");
}

/// Issue 11 in deletion: with per-namespace identity on, cleanup reads and deletes as the
/// namespace's identity, never as the operator's. Here the namespace has no usable identity:
/// nothing is deleted (today's cleanup deleted with the operator's own client), the finalizer
/// stays and status says why.
#[tokio::test]
async fn with_per_namespace_identity_cleanup_never_deletes_as_the_operator() {
    use privx_operator::identity::{
        NamespaceIdentities, NamespaceIdentityConfig, SelfRolesSetting,
    };
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, PRIVX_NAME).await);

    // The operator restarts with per-namespace identity; the namespace's ServiceAccount token
    // cannot be had from this API.
    let template = privx_client::PrivxConfig::new(
        h.sim.base_url(),
        privx_client::CredentialSource::Static(privx_client::Credentials {
            oauth_client_id: "unused".into(),
            oauth_client_secret: "unused".into(),
            api_client_id: "unused".into(),
            api_client_secret: "unused".into(),
        }),
    );
    let identities = NamespaceIdentities::new(
        h.kube.client(),
        template,
        NamespaceIdentityConfig {
            service_account: "privx".into(),
            audience: "privx".into(),
            expiration: std::time::Duration::from_secs(600),
            self_roles: SelfRolesSetting::Auto,
        },
        None,
    );
    let mut ctx = Arc::try_unwrap(h.ctx)
        .ok()
        .expect("no other user of the context");
    ctx.settings.namespace_identity = Some(Arc::new(identities));
    h.ctx = Arc::new(ctx);

    let path = vs_path(NS, "db");
    h.delete(&path);
    let _ = h.reconcile("db").await;
    assert!(
        exists(&h, PRIVX_NAME).await,
        "not deleted with the operator's identity"
    );
    assert!(h.kube.get(&path).is_some(), "finalizer kept");
    let (_, reason, message) = h.ready_reason("db");
    assert_eq!(reason, "IdentityNotFound", "{message}");
}

const CLEANUP_TARGET: &str = "privx-operator.dev/cleanup-target";

/// Issue 13 item 4 with the intent in the finalizer's patch: a crash after the PrivX write and
/// before any status write, then a spec that no longer deserialises — cleanup still finds the
/// PrivX secret through the annotation recorded with the finalizer.
#[tokio::test]
async fn without_status_or_spec_the_cleanup_target_annotation_still_cleans_up() {
    let mut h = Harness::new().await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    let mut spec = delete_spec();
    spec["name"] = json!("k8s/demo/explicit");
    h.vault_secret("db", spec);
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, "k8s/demo/explicit").await);
    let path = vs_path(NS, "db");
    assert_eq!(
        h.kube.get(&path).unwrap()["metadata"]["annotations"][CLEANUP_TARGET],
        r#"{"name":"k8s/demo/explicit"}"#
    );
    edit(&h, &path, |o| {
        o["status"] = Value::Null;
        o["spec"]["refreshInterval"] = json!(5);
    });
    h.delete(&path);
    let stored: Arc<StoredVaultSecret> = Arc::new(guard_of(h.kube.get(&path).unwrap()));
    assert!(!stored.is_valid(), "the object no longer deserialises");
    vault_secret::reconcile(stored, h.ctx.clone())
        .await
        .unwrap();
    assert!(
        !exists(&h, "k8s/demo/explicit").await,
        "deleted from the annotation"
    );
    assert!(h.kube.get(&path).is_none(), "finalizer released");
}

/// The annotation is user-writable like status: a forged one gets the same re-checks.
#[tokio::test]
async fn a_forged_cleanup_target_annotation_cannot_aim_a_delete_outside_the_namespace() {
    let mut h = Harness::new().await;
    someone_elses_secret(&h, "legacy/payroll-db", "legacy-value").await;
    h.secret(NS, "db-creds", &[("password", "x")]);
    h.vault_secret("db", delete_spec());
    h.reconcile("db").await.unwrap();
    let path = vs_path(NS, "db");
    edit(&h, &path, |o| {
        o["status"] = Value::Null;
        o["metadata"]["annotations"][CLEANUP_TARGET] = json!(r#"{"name":"legacy/payroll-db"}"#);
    });
    h.delete(&path);
    h.reconcile("db").await.unwrap();
    assert!(exists(&h, "legacy/payroll-db").await, "not deleted");
    assert!(h.kube.get(&path).is_some(), "finalizer kept");
    assert_eq!(h.ready_reason("db").1, "NotAllowed");
}
