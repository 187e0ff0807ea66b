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
    m.type_ = Some(MirrorSecretType::BasicAuth);
    assert!(matches!(
        plan_mirror(Some(&m), &owner(), &d, "h", Some(&opaque)).unwrap(),
        MirrorAction::Replace(_)
    ));
    m.type_ = Some(MirrorSecretType::Tls);
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
