//! Table-driven tests of the VaultSecret plan, second part: mirroring, claimants, secret keys
//! (the fixtures are the first part's).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::tests::*;
use super::*;
use crate::controller::vault_secret::store::stored_mirror::StoredMirror;
use crate::crd::vault_secret::{MirrorSecretType, MirrorSpec, Ownership};
use privx_client::SecretData;

/// [`super::plan_mirror`] with the existing mirror as a whole Secret, stored as the store would.
fn plan_mirror(
    mirror: Option<&MirrorSpec>,
    owner: &Owner<'_>,
    data: &SecretData,
    hash: &str,
    existing: Option<&KubeSecret>,
) -> Result<MirrorAction, Refusal> {
    let stored = existing.map(|e| StoredMirror::from(e.clone()));
    super::plan_mirror(mirror, owner, data, hash, stored.as_ref())
}

/// [`super::stray_keys`] with the existing mirror as a whole Secret.
fn stray_keys(existing: Option<&KubeSecret>, desired: &KubeSecret) -> Vec<String> {
    let stored = existing.map(|e| StoredMirror::from(e.clone()));
    super::stray_keys(stored.as_ref(), desired)
}

fn owner() -> Owner<'static> {
    Owner {
        name: "app",
        namespace: "ns",
        uid: "uid-1",
    }
}

fn mirror() -> MirrorSpec {
    MirrorSpec {
        secret_name: Some("app-creds".into()),
        ..Default::default()
    }
}

fn applied(action: MirrorAction) -> KubeSecret {
    match action {
        MirrorAction::Apply(s) | MirrorAction::Replace(s) => *s,
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn mirror_is_written_with_owner_label_and_hash() {
    let d = data(&[("user", "app"), ("pass", "p")]);
    let secret =
        applied(plan_mirror(Some(&mirror()), &owner(), &d, "hmac-sha256:ab", None).unwrap());
    assert_eq!(secret.metadata.name.as_deref(), Some("app-creds"));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(
        labels[crate::controller::vault_secret::MANAGED_BY_LABEL],
        "privx-operator"
    );
    assert_eq!(
        labels[crate::controller::vault_secret::VAULT_SECRET_LABEL],
        "app"
    );
    assert_eq!(
        secret.metadata.annotations.clone().unwrap()
            [crate::controller::vault_secret::DATA_HASH_ANNOTATION],
        "hmac-sha256:ab"
    );
    let refs = secret.metadata.owner_references.clone().unwrap();
    assert_eq!(refs[0].uid, "uid-1");
    assert_eq!(refs[0].controller, Some(true));
    assert_eq!(secret.data.unwrap()["pass"], ByteString(b"p".to_vec()));
}

#[test]
fn mirror_in_sync_is_left_alone_and_hand_edits_are_restored() {
    let d = data(&[("k", "v")]);
    let desired = applied(plan_mirror(Some(&mirror()), &owner(), &d, "h", None).unwrap());
    assert_eq!(
        plan_mirror(Some(&mirror()), &owner(), &d, "h", Some(&desired)).unwrap(),
        MirrorAction::InSync
    );
    let mut edited = desired.clone();
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("k".into(), ByteString(b"hacked".to_vec()));
    assert!(matches!(
        plan_mirror(Some(&mirror()), &owner(), &d, "h", Some(&edited)).unwrap(),
        MirrorAction::Apply(_)
    ));
    // Extra labels someone else added do not count as a difference.
    let mut labelled = desired.clone();
    labelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "x".into());
    assert_eq!(
        plan_mirror(Some(&mirror()), &owner(), &d, "h", Some(&labelled)).unwrap(),
        MirrorAction::InSync
    );
}

#[test]
fn foreign_secret_of_the_mirror_name_is_a_conflict() {
    let foreign = KubeSecret {
        metadata: ObjectMeta {
            name: Some("app-creds".into()),
            owner_references: Some(vec![OwnerReference {
                uid: "someone-else".into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    let refusal = plan_mirror(
        Some(&mirror()),
        &owner(),
        &data(&[("k", "v")]),
        "h",
        Some(&foreign),
    )
    .unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    assert!(refusal.message.contains("ns/app-creds"));
}

#[test]
fn mirror_type_change_replaces_and_type_keys_are_required() {
    let d = data(&[("username", "u"), ("password", "p")]);
    let mut m = mirror();
    let opaque = applied(plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap());
    m.type_ = Some("kubernetes.io/basic-auth".into());
    assert!(matches!(
        plan_mirror(Some(&m), &owner(), &d, "h", Some(&opaque)).unwrap(),
        MirrorAction::Replace(_)
    ));
    m.type_ = Some("kubernetes.io/tls".into());
    let refusal = plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap_err();
    assert_eq!(refusal.reason, reason::INVALID_SPEC);
    assert!(refusal.message.contains("tls.crt"));
}

#[test]
fn key_mapping_renames_and_refuses_collisions_and_bad_keys() {
    let d = data(&[("user name", "u"), ("pw", "p")]);
    let mut m = mirror();
    let refusal = plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap_err();
    assert!(refusal.message.contains("user name"), "{}", refusal.message);
    m.key_mapping = Some(BTreeMap::from([
        ("user name".to_string(), "username".to_string()),
        ("pw".to_string(), "password".to_string()),
    ]));
    let secret = applied(plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap());
    let keys: Vec<_> = secret.data.unwrap().keys().cloned().collect();
    assert_eq!(keys, ["password", "username"]);
    m.key_mapping = Some(BTreeMap::from([
        ("user name".to_string(), "x".to_string()),
        ("pw".to_string(), "x".to_string()),
    ]));
    assert!(plan_mirror(Some(&m), &owner(), &d, "h", None).is_err());
}

#[test]
fn non_string_values_are_mirrored_as_json_text() {
    let d = SecretData(BTreeMap::from([
        ("n".to_string(), serde_json::json!(5)),
        ("o".to_string(), serde_json::json!({"a": true})),
    ]));
    let bytes = data_bytes(&d, None).unwrap();
    assert_eq!(bytes["n"], b"5");
    assert_eq!(bytes["o"], br#"{"a":true}"#);
}

#[test]
fn no_plan_output_leaks_values_through_debug() {
    let d = data(&[("k", "very-secret-value")]);
    let plan = push(&d).run().unwrap();
    assert!(!format!("{plan:?}").contains("very-secret-value"));
    let refusal = Case {
        current: Some(privx_secret(Some(data(&[("k", "other-secret")])), &[], &[])),
        ..push(&d)
    }
    .run()
    .unwrap_err();
    assert!(
        !format!("{refusal:?}").contains("secret-value")
            && !refusal.message.contains("other-secret")
    );
}

#[test]
fn keys_added_by_hand_to_the_mirror_are_strays() {
    let d = data(&[("k", "v")]);
    let desired = applied(plan_mirror(Some(&mirror()), &owner(), &d, "h", None).unwrap());
    let mut edited = desired.clone();
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("extra".into(), ByteString(b"x".to_vec()));
    assert!(matches!(
        plan_mirror(Some(&mirror()), &owner(), &d, "h", Some(&edited)).unwrap(),
        MirrorAction::Apply(_)
    ));
    assert_eq!(stray_keys(Some(&edited), &desired), ["extra"]);
    assert!(stray_keys(Some(&desired), &desired).is_empty());
    assert!(stray_keys(None, &desired).is_empty());
}

#[test]
fn identical_content_by_another_author_is_not_claimed() {
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    let mut theirs = privx_secret(Some(d.clone()), &["r1"], &["w1"]);
    theirs.author = Some("a-human".into());
    case.current = Some(theirs);
    assert_eq!(case.run().unwrap_err().reason, reason::CONFLICT);
    // Without an author PrivX gives no evidence either way: identical content is claimed.
    let mut unknown = privx_secret(Some(d.clone()), &["r1"], &["w1"]);
    unknown.author = None;
    case.current = Some(unknown);
    assert_eq!(case.run().unwrap().ownership, Some(Ownership::Created));
}

#[test]
fn the_claimant_order_is_total_and_the_owner_keeps_it() {
    use super::{Candidate, claimant};
    let t = |s: &str| Some(s.parse::<k8s_openapi::jiff::Timestamp>().unwrap());
    let c = |key: &str, ts: &str, uid: &str, owns: bool| Candidate {
        key: key.into(),
        created: t(ts),
        uid: uid.into(),
        records_ownership: owns,
    };
    let a = c("ns/a", "2026-01-01T00:00:00Z", "u-2", false);
    let b = c("ns/b", "2026-01-01T00:00:00Z", "u-1", false);
    // Same second: the uid decides, the same way from both sides.
    assert_eq!(
        claimant(&a, std::slice::from_ref(&b), true),
        Some("ns/b".into())
    );
    assert_eq!(claimant(&b, std::slice::from_ref(&a), true), None);
    // Earlier wins over the uid.
    let early = c("ns/e", "2025-12-31T23:59:59Z", "u-9", false);
    assert_eq!(
        claimant(&b, std::slice::from_ref(&early), true),
        Some("ns/e".into())
    );
    // The recorded owner keeps it when PrivX names the operator as author...
    let owner = c("ns/o", "2026-01-01T00:00:00Z", "u-9", true);
    assert_eq!(claimant(&owner, &[b.clone(), early.clone()], true), None);
    assert_eq!(
        claimant(&early, std::slice::from_ref(&owner), true),
        Some("ns/o".into())
    );
    // ...but not on status alone.
    assert_eq!(
        claimant(&owner, std::slice::from_ref(&early), false),
        Some("ns/e".into())
    );
}

#[test]
fn one_secret_key_rule_for_plan_and_validation() {
    // The plan refuses exactly the keys validation refuses (one rule: `is_secret_key`).
    let plans = |key: &str| {
        plan_mirror(
            Some(&mirror()),
            &owner(),
            &data(&[(key, "v")]),
            "hmac-sha256:ab",
            None,
        )
        .is_ok()
    };
    for key in ["a", "tls.crt", ".dockerconfigjson", "a-b_c.d", ".x"] {
        assert!(plans(key), "{key}");
        assert!(crate::crd::validate::is_secret_key(key), "{key}");
    }
    for key in ["", ".", "..", "..x", "a b", "ü", "a/b"] {
        assert!(!plans(key), "{key}");
        assert!(!crate::crd::validate::is_secret_key(key), "{key}");
    }
}

// --- creationPolicy, adopt, immutable, custom types (issue 24) ---

use crate::controller::vault_secret::VAULT_SECRET_UID_ANNOTATION;
use crate::crd::vault_secret::CreationPolicy;

fn with_policy(policy: CreationPolicy) -> MirrorSpec {
    MirrorSpec {
        creation_policy: Some(policy),
        ..mirror()
    }
}

/// A Secret someone else wrote: `user` data, an ExternalSecret as its controller, and a
/// non-controller owner that must survive a takeover.
fn eso_secret(value: &str) -> KubeSecret {
    KubeSecret {
        metadata: ObjectMeta {
            name: Some("app-creds".into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([("team".into(), "a".into())])),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: "external-secrets.io/v1".into(),
                    kind: "ExternalSecret".into(),
                    name: "app".into(),
                    uid: "eso-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                },
                OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "keep".into(),
                    uid: "cm-uid".into(),
                    controller: None,
                    block_owner_deletion: None,
                },
            ]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "k".to_string(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

fn owner_uids(secret: &KubeSecret) -> Vec<String> {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect()
}

#[test]
fn orphan_mirrors_carry_no_owner_reference_but_record_their_vault_secret() {
    let d = data(&[("k", "v")]);
    let m = with_policy(CreationPolicy::Orphan);
    let desired = applied(plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap());
    assert!(desired.metadata.owner_references.is_none());
    assert_eq!(
        desired.metadata.annotations.as_ref().unwrap()[VAULT_SECRET_UID_ANNOTATION],
        "uid-1"
    );
    assert_eq!(
        plan_mirror(Some(&m), &owner(), &d, "h", Some(&desired)).unwrap(),
        MirrorAction::InSync,
        "steady state: no write"
    );
    // Another VaultSecret's orphaned mirror is not ours...
    let other = Owner {
        name: "other",
        uid: "uid-2",
        ..owner()
    };
    let refusal = plan_mirror(Some(&m), &other, &d, "h", Some(&desired)).unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    // ...but a VaultSecret re-created under the same name (a new uid) takes its mirror back.
    let again = Owner {
        uid: "uid-3",
        ..owner()
    };
    assert!(matches!(
        plan_mirror(Some(&m), &again, &d, "h", Some(&desired)).unwrap(),
        MirrorAction::Apply(_)
    ));
    // From Owner to Orphan: our owner reference is dropped by a patch, nothing is replaced.
    let owned = applied(plan_mirror(Some(&mirror()), &owner(), &d, "h", None).unwrap());
    match plan_mirror(Some(&m), &owner(), &d, "h", Some(&owned)).unwrap() {
        MirrorAction::Patch { secret, takeover } => {
            assert!(!takeover);
            assert!(owner_uids(&secret).is_empty());
        }
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn merge_writes_only_its_keys_into_an_existing_secret_and_never_creates_one() {
    let d = data(&[("k", "v")]);
    let m = MirrorSpec {
        secret_name: Some("app-creds".into()),
        creation_policy: Some(CreationPolicy::Merge),
        ..Default::default()
    };
    let refusal = plan_mirror(Some(&m), &owner(), &d, "h", None).unwrap_err();
    assert_eq!(refusal.reason, reason::MIRROR_NOT_FOUND);
    assert!(
        refusal.message.contains("ns/app-creds"),
        "{}",
        refusal.message
    );

    let mut theirs = eso_secret("theirs");
    theirs.data.as_mut().unwrap().remove("k");
    theirs
        .data
        .as_mut()
        .unwrap()
        .insert("other".into(), ByteString(b"x".to_vec()));
    let mut token = theirs.clone();
    token.type_ = Some("kubernetes.io/service-account-token".into());
    let refusal = plan_mirror(Some(&m), &owner(), &d, "h", Some(&token)).unwrap_err();
    assert_eq!(
        refusal.reason,
        reason::CONFLICT,
        "never into a token Secret"
    );
    let desired = applied(plan_mirror(Some(&m), &owner(), &d, "h", Some(&theirs)).unwrap());
    assert!(desired.type_.is_none(), "the type is someone else's");
    assert!(
        desired.metadata.owner_references.is_none(),
        "so are the owners"
    );
    assert_eq!(
        desired.data.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["k"]
    );
    // After the apply: their key, their owners, our key and labels.
    let mut merged = theirs.clone();
    merged
        .data
        .as_mut()
        .unwrap()
        .extend(desired.data.clone().unwrap());
    merged
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .extend(desired.metadata.labels.clone().unwrap());
    merged.metadata.annotations = desired.metadata.annotations.clone();
    assert_eq!(
        plan_mirror(Some(&m), &owner(), &d, "h", Some(&merged)).unwrap(),
        MirrorAction::InSync
    );
}

#[test]
fn a_foreign_secret_is_taken_over_in_place_only_with_adopt() {
    let d = data(&[("k", "v")]);
    let foreign = eso_secret("v");
    let refusal = plan_mirror(Some(&mirror()), &owner(), &d, "h", Some(&foreign)).unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    assert!(
        refusal.message.contains("spec.mirror.adopt"),
        "{}",
        refusal.message
    );

    let adopt = MirrorSpec {
        adopt: Some(true),
        ..mirror()
    };
    let action = plan_mirror(Some(&adopt), &owner(), &d, "h", Some(&foreign)).unwrap();
    assert!(action.is_takeover());
    let MirrorAction::Patch { secret, .. } = action else {
        unreachable!()
    };
    assert_eq!(
        owner_uids(&secret),
        ["cm-uid", "uid-1"],
        "the ExternalSecret's controller reference replaced by ours, the other owner kept"
    );

    let orphan = MirrorSpec {
        creation_policy: Some(CreationPolicy::Orphan),
        ..adopt.clone()
    };
    let MirrorAction::Patch { secret, takeover } =
        plan_mirror(Some(&orphan), &owner(), &d, "h", Some(&foreign)).unwrap()
    else {
        panic!("a takeover patch")
    };
    assert!(takeover);
    assert_eq!(owner_uids(&secret), ["cm-uid"], "controller removed");

    // A takeover never changes the type (that would delete the Secret).
    let tls = MirrorSpec {
        type_: Some("example.com/custom".into()),
        ..adopt.clone()
    };
    let refusal = plan_mirror(Some(&tls), &owner(), &d, "h", Some(&foreign)).unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    // Nor takes another VaultSecret's mirror.
    let theirs = applied(
        plan_mirror(
            Some(&mirror()),
            &Owner {
                uid: "uid-2",
                ..owner()
            },
            &d,
            "h",
            None,
        )
        .unwrap(),
    );
    let refusal = plan_mirror(Some(&adopt), &owner(), &d, "h", Some(&theirs)).unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
}

#[test]
fn immutable_mirrors_are_replaced_when_their_data_changes() {
    let m = MirrorSpec {
        immutable: Some(true),
        ..mirror()
    };
    let before = applied(plan_mirror(Some(&m), &owner(), &data(&[("k", "v")]), "h", None).unwrap());
    assert_eq!(before.immutable, Some(true));
    assert_eq!(
        plan_mirror(Some(&m), &owner(), &data(&[("k", "v")]), "h", Some(&before)).unwrap(),
        MirrorAction::InSync
    );
    assert!(matches!(
        plan_mirror(
            Some(&m),
            &owner(),
            &data(&[("k", "w")]),
            "h2",
            Some(&before)
        )
        .unwrap(),
        MirrorAction::Replace(_)
    ));
    // Only a new Secret can be mutable again.
    assert!(matches!(
        plan_mirror(
            Some(&mirror()),
            &owner(),
            &data(&[("k", "v")]),
            "h",
            Some(&before)
        )
        .unwrap(),
        MirrorAction::Replace(_)
    ));
}

#[test]
fn custom_types_are_mirrored_and_builtin_types_keep_their_key_checks() {
    let m = MirrorSpec {
        type_: Some("example.com/database".into()),
        ..mirror()
    };
    let secret = applied(plan_mirror(Some(&m), &owner(), &data(&[("k", "v")]), "h", None).unwrap());
    assert_eq!(secret.type_.as_deref(), Some("example.com/database"));
    assert_eq!(
        MirrorSecretType::builtin("kubernetes.io/ssh-auth"),
        Some(MirrorSecretType::SshAuth)
    );
    assert_eq!(MirrorSecretType::builtin("example.com/database"), None);
}

#[test]
fn merge_removal_takes_only_what_the_operator_alone_owns() {
    use crate::controller::core::FIELD_MANAGER;
    let secret: KubeSecret = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "app-creds", "namespace": "ns", "resourceVersion": "9",
            "managedFields": [
                {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:k": {}, "f:shared": {}},
                              "f:metadata": {"f:labels": {"f:privx-operator.dev/vaultsecret": {}}}}},
                {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {"f:other": {}, "f:shared": {}}}},
            ],
        },
        "data": {"k": "dg==", "shared": "eA==", "other": "eQ=="},
    }))
    .unwrap();
    let patch = merge_removal(&secret).unwrap();
    assert_eq!(patch["data"], serde_json::json!({"k": null}));
    assert_eq!(
        patch["metadata"]["labels"],
        serde_json::json!({"privx-operator.dev/vaultsecret": null})
    );
    assert_eq!(patch["metadata"]["resourceVersion"], "9");
    let mut not_ours = secret.clone();
    not_ours.metadata.managed_fields.as_mut().unwrap().remove(0);
    assert_eq!(merge_removal(&not_ours), None);
}
