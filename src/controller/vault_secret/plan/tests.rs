//! Table-driven tests of the VaultSecret plan: ownership, drift, generation, mirroring,
//! rollout decisions.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::*;
use crate::controller::hashing::HmacKey;
use crate::crd::vault_secret::{MirrorSecretType, MirrorSpec, Ownership, PrivxSecretStatus};
use crate::crd::{VaultSecretSpec, VaultSecretStatus};
use privx_client::{RoleHandle, Secret, SecretData, SecretLocation};

fn data(pairs: &[(&str, &str)]) -> SecretData {
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
}

fn roles(ids: &[&str]) -> Vec<RoleHandle> {
    ids.iter()
        .map(|id| RoleHandle {
            id: id.to_string(),
            ..Default::default()
        })
        .collect()
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn privx_secret(d: Option<SecretData>, read: &[&str], write: &[&str]) -> Secret {
    Secret {
        name: "k8s/ns/app".into(),
        data: d,
        read_roles: roles(read),
        write_roles: roles(write),
        author: Some("operator-client".into()),
        ..Default::default()
    }
}

fn target() -> Target {
    Target {
        location: SecretLocation::Shared,
        name: "k8s/ns/app".into(),
    }
}

fn key() -> HmacKey {
    HmacKey::new(vec![7; 32])
}

fn status_owned(
    ownership: Ownership,
    hash_of: Option<&SecretData>,
    generation: i64,
) -> VaultSecretStatus {
    VaultSecretStatus {
        observed_generation: Some(generation),
        privx: Some(PrivxSecretStatus {
            name: "k8s/ns/app".into(),
            ownership: Some(ownership),
            ..Default::default()
        }),
        data_hash: hash_of.map(|d| key().hash(&data_bytes(d, None).unwrap())),
        ..Default::default()
    }
}

struct Case<'a> {
    spec: VaultSecretSpec,
    status: Option<VaultSecretStatus>,
    source: SourceInput,
    current: Option<Secret>,
    regenerate: Option<&'a str>,
}

impl Case<'_> {
    fn run(&self) -> Result<PrivxPlan, Refusal> {
        let t = target();
        let k = key();
        plan_privx(&PrivxInput {
            spec: &self.spec,
            status: self.status.as_ref(),
            generation: Some(1),
            target: &t,
            source: self.source.clone(),
            read_roles: ids(&["r1"]),
            write_roles: ids(&["w1"]),
            current: self.current.as_ref(),
            regenerate_request: self.regenerate,
            hash_key: &k,
            identity: Some("operator-client"),
        })
    }
}

fn push(d: &SecretData) -> Case<'static> {
    Case {
        spec: VaultSecretSpec::default(),
        status: None,
        source: SourceInput::Secret(d.clone()),
        current: None,
        regenerate: None,
    }
}

fn candidate(value: &str) -> crate::password::Password {
    crate::password::Password::for_tests(value)
}

#[test]
fn absent_secret_is_created_with_data_and_roles() {
    let d = data(&[("user", "app"), ("pass", "s3cret")]);
    let plan = push(&d).run().unwrap();
    assert_eq!(plan.cause, Some(WriteCause::Created));
    assert_eq!(plan.ownership, Some(Ownership::Created));
    match plan.action {
        PrivxAction::Create(body) => {
            assert_eq!(body.data, d);
            assert_eq!(body.read_roles, roles(&["r1"]));
            assert_eq!(body.write_roles, roles(&["w1"]));
        }
        other => panic!("expected create, got {other:?}"),
    }
}

#[test]
fn equal_data_and_roles_mean_no_write() {
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    case.status = Some(status_owned(Ownership::Created, Some(&d), 1));
    case.current = Some(privx_secret(Some(d.clone()), &["r1"], &["w1"]));
    let plan = case.run().unwrap();
    assert_eq!(plan.action, PrivxAction::None);
    assert_eq!(plan.cause, None);
    assert_eq!(plan.data, d);
}

#[test]
fn role_order_and_deleted_handles_do_not_count_as_difference() {
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    case.status = Some(status_owned(Ownership::Created, Some(&d), 1));
    let mut current = privx_secret(Some(d.clone()), &["r1"], &["w1"]);
    current.read_roles.push(RoleHandle {
        id: "gone".into(),
        name: None,
        deleted: Some(true),
    });
    current.read_roles.push(RoleHandle {
        id: "r1".into(),
        name: Some("readers".into()),
        deleted: None,
    });
    case.current = Some(current);
    assert_eq!(case.run().unwrap().action, PrivxAction::None);
}

#[test]
fn changed_source_is_an_update_not_drift() {
    let old = data(&[("k", "v1")]);
    let new = data(&[("k", "v2")]);
    let mut case = push(&new);
    case.status = Some(status_owned(Ownership::Created, Some(&old), 1));
    case.current = Some(privx_secret(Some(old), &["r1"], &["w1"]));
    let plan = case.run().unwrap();
    assert_eq!(plan.cause, Some(WriteCause::Updated));
    assert!(matches!(plan.action, PrivxAction::Update(ref b) if b.data == new));
}

#[test]
fn change_made_in_privx_is_drift_and_put_back() {
    let declared = data(&[("k", "v1")]);
    let mut case = push(&declared);
    case.status = Some(status_owned(Ownership::Created, Some(&declared), 1));
    case.current = Some(privx_secret(
        Some(data(&[("k", "tampered")])),
        &["r1"],
        &["w1"],
    ));
    let plan = case.run().unwrap();
    assert_eq!(plan.cause, Some(WriteCause::DriftCorrected));
    assert!(matches!(plan.action, PrivxAction::Update(ref b) if b.data == declared));

    // Roles changed in PrivX are drift too.
    let mut case = push(&declared);
    case.status = Some(status_owned(Ownership::Created, Some(&declared), 1));
    case.current = Some(privx_secret(
        Some(declared.clone()),
        &["r1", "intruder"],
        &["w1"],
    ));
    assert_eq!(case.run().unwrap().cause, Some(WriteCause::DriftCorrected));
}

#[test]
fn existing_unmanaged_secret_is_a_conflict_unless_adopt() {
    let d = data(&[("k", "mine")]);
    let mut case = push(&d);
    case.current = Some(privx_secret(Some(data(&[("k", "theirs")])), &["x"], &["y"]));
    let refusal = case.run().unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    assert!(refusal.message.contains("k8s/ns/app") && refusal.message.contains("adopt"));
    assert!(!refusal.message.contains("theirs") && !refusal.message.contains("mine"));

    case.spec.adopt = Some(true);
    let plan = case.run().unwrap();
    assert_eq!(plan.ownership, Some(Ownership::Adopted));
    assert_eq!(plan.cause, Some(WriteCause::Adopted));
    assert!(matches!(plan.action, PrivxAction::Update(_)));
}

#[test]
fn a_secret_recorded_for_another_name_is_not_ours() {
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    let mut status = status_owned(Ownership::Created, Some(&d), 1);
    status.privx.as_mut().unwrap().name = "k8s/ns/other".into();
    case.status = Some(status);
    case.current = Some(privx_secret(Some(data(&[("k", "else")])), &["r1"], &["w1"]));
    assert_eq!(case.run().unwrap_err().reason, reason::CONFLICT);
}

#[test]
fn crash_after_create_is_recovered_without_conflict() {
    // Created in PrivX, status never written: identical content is claimed, nothing written.
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    case.current = Some(privx_secret(Some(d.clone()), &["r1"], &["w1"]));
    let plan = case.run().unwrap();
    assert_eq!(plan.ownership, Some(Ownership::Created));
    assert_eq!(plan.action, PrivxAction::None);

    // The same for a generated password: the stored one is kept, not regenerated.
    let case = Case {
        spec: VaultSecretSpec::default(),
        status: None,
        source: SourceInput::Generate {
            key: "password".into(),
            candidate: candidate("new-one"),
        },
        current: Some(privx_secret(
            Some(data(&[("password", "first")])),
            &["r1"],
            &["w1"],
        )),
        regenerate: None,
    };
    let plan = case.run().unwrap();
    assert_eq!(plan.action, PrivxAction::None);
    assert_eq!(plan.data, data(&[("password", "first")]));
}

#[test]
fn unreadable_secret_is_reported_not_overwritten() {
    let d = data(&[("k", "v")]);
    let mut case = push(&d);
    case.status = Some(status_owned(Ownership::Created, Some(&d), 1));
    case.current = Some(privx_secret(None, &["r1"], &["w1"]));
    assert_eq!(case.run().unwrap_err().reason, reason::NOT_READABLE);
}

#[test]
fn read_only_mirror_reads_and_never_writes() {
    let d = data(&[("api-key", "abc")]);
    let mut case = push(&d);
    case.source = SourceInput::ReadOnly;
    case.current = Some(privx_secret(Some(d.clone()), &["x"], &["y"]));
    let plan = case.run().unwrap();
    assert_eq!(plan.action, PrivxAction::None);
    assert_eq!(plan.ownership, None);
    assert_eq!(plan.data, d);

    case.current = None;
    assert_eq!(case.run().unwrap_err().reason, reason::SOURCE_NOT_FOUND);
    case.current = Some(privx_secret(None, &["x"], &["y"]));
    assert_eq!(case.run().unwrap_err().reason, reason::NOT_READABLE);
}

fn generate_case<'a>(
    current: Option<Secret>,
    status: Option<VaultSecretStatus>,
    regenerate: Option<&'a str>,
) -> Case<'a> {
    Case {
        spec: VaultSecretSpec::default(),
        status,
        source: SourceInput::Generate {
            key: "password".into(),
            candidate: candidate("fresh"),
        },
        current,
        regenerate,
    }
}

#[test]
fn generated_password_is_created_once_and_kept() {
    let plan = generate_case(None, None, None).run().unwrap();
    assert!(
        matches!(plan.action, PrivxAction::Create(ref b) if b.data == data(&[("password", "fresh")]))
    );

    let stored = data(&[("password", "kept")]);
    let status = status_owned(Ownership::Created, Some(&stored), 1);
    let current = privx_secret(Some(stored.clone()), &["r1"], &["w1"]);
    let plan = generate_case(Some(current), Some(status), None)
        .run()
        .unwrap();
    assert_eq!(
        plan.action,
        PrivxAction::None,
        "a stored password is never replaced by accident"
    );
    assert_eq!(plan.data, stored);
}

#[test]
fn regenerate_annotation_makes_a_new_password_once() {
    let stored = data(&[("password", "old")]);
    let current = privx_secret(Some(stored.clone()), &["r1"], &["w1"]);
    let status = status_owned(Ownership::Created, Some(&stored), 1);

    let plan = generate_case(
        Some(current.clone()),
        Some(status.clone()),
        Some("2026-11-23"),
    )
    .run()
    .unwrap();
    assert_eq!(plan.cause, Some(WriteCause::Regenerated));
    assert!(
        matches!(plan.action, PrivxAction::Update(ref b) if b.data == data(&[("password", "fresh")]))
    );
    assert_eq!(plan.regenerate_token.as_deref(), Some("2026-11-23"));

    // Once status records the token, the same annotation value changes nothing.
    let mut answered = status;
    answered.regenerate_token = Some("2026-11-23".into());
    let plan = generate_case(Some(current), Some(answered), Some("2026-11-23"))
        .run()
        .unwrap();
    assert_eq!(plan.action, PrivxAction::None);
    assert_eq!(plan.regenerate_token.as_deref(), Some("2026-11-23"));
}

#[test]
fn generated_key_removed_in_privx_is_regenerated_and_extra_keys_dropped() {
    let status = status_owned(Ownership::Created, Some(&data(&[("password", "x")])), 1);
    let current = privx_secret(Some(data(&[("other", "y")])), &["r1"], &["w1"]);
    let plan = generate_case(Some(current), Some(status), None)
        .run()
        .unwrap();
    assert!(
        matches!(plan.action, PrivxAction::Update(ref b) if b.data == data(&[("password", "fresh")]))
    );

    let status = status_owned(Ownership::Created, Some(&data(&[("password", "x")])), 1);
    let current = privx_secret(
        Some(data(&[("password", "x"), ("extra", "y")])),
        &["r1"],
        &["w1"],
    );
    let plan = generate_case(Some(current), Some(status), None)
        .run()
        .unwrap();
    assert_eq!(plan.cause, Some(WriteCause::DriftCorrected));
    assert!(
        matches!(plan.action, PrivxAction::Update(ref b) if b.data == data(&[("password", "x")]))
    );
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
        labels[crate::controller::MANAGED_BY_LABEL],
        "privx-operator"
    );
    assert_eq!(labels[crate::controller::VAULT_SECRET_LABEL], "app");
    assert_eq!(
        secret.metadata.annotations.clone().unwrap()[crate::controller::DATA_HASH_ANNOTATION],
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
fn rollout_only_on_a_change_after_a_previous_sync() {
    assert!(
        !needs_rollout(None, "h1", true),
        "first sync: pods start with the data anyway"
    );
    assert!(
        !needs_rollout(Some("h1"), "h1", true),
        "unchanged: never at restart, never in a loop"
    );
    assert!(needs_rollout(Some("h1"), "h2", true));
    assert!(!needs_rollout(Some("h1"), "h2", false));
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
