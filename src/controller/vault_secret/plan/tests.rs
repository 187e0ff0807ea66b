//! Table-driven tests of the VaultSecret plan: ownership, drift, generation, mirroring,
//! rollout decisions.

use super::*;
use crate::controller::vault_secret::hashing::HmacKey;
use crate::crd::vault_secret::{Ownership, PrivxSecretStatus};
use crate::crd::{VaultSecretSpec, VaultSecretStatus};
use privx_client::{RoleHandle, Secret, SecretData, SecretLocation};

pub(super) fn data(pairs: &[(&str, &str)]) -> SecretData {
    SecretData(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect(),
    )
}

pub(super) fn roles(ids: &[&str]) -> Vec<RoleHandle> {
    ids.iter()
        .map(|id| RoleHandle {
            id: id.to_string(),
            ..Default::default()
        })
        .collect()
}

pub(super) fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

pub(super) fn privx_secret(d: Option<SecretData>, read: &[&str], write: &[&str]) -> Secret {
    Secret {
        name: "k8s/ns/app".into(),
        data: d,
        read_roles: roles(read),
        write_roles: roles(write),
        author: Some("operator-client".into()),
        ..Default::default()
    }
}

pub(super) fn target() -> Target {
    Target {
        location: SecretLocation::Shared,
        name: "k8s/ns/app".into(),
    }
}

pub(super) fn key() -> HmacKey {
    HmacKey::new(vec![7; 32])
}

pub(super) fn status_owned(
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

pub(super) struct Case<'a> {
    pub(super) spec: VaultSecretSpec,
    pub(super) status: Option<VaultSecretStatus>,
    pub(super) source: SourceInput,
    pub(super) current: Option<Secret>,
    pub(super) regenerate: Option<&'a str>,
}

impl Case<'_> {
    pub(super) fn run(&self) -> Result<PrivxPlan, Refusal> {
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

pub(super) fn push(d: &SecretData) -> Case<'static> {
    Case {
        spec: VaultSecretSpec::default(),
        status: None,
        source: SourceInput::Secret(d.clone()),
        current: None,
        regenerate: None,
    }
}

pub(super) fn candidate(value: &str) -> crate::password::Password {
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

pub(super) fn generate_case<'a>(
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

#[test]
fn only_a_new_retain_object_that_pushes_creates_without_reading_first() {
    use crate::crd::DeletionPolicy;
    let vs = |deletion: Option<DeletionPolicy>,
              adopt: Option<bool>,
              status: Option<VaultSecretStatus>| {
        let mut vs = VaultSecret::new(
            "app",
            VaultSecretSpec {
                deletion_policy: deletion,
                adopt,
                ..Default::default()
            },
        );
        vs.status = status;
        vs
    };
    let pushes = SourceInput::Secret(data(&[("password", "x")]));
    let written = VaultSecretStatus {
        privx: Some(PrivxSecretStatus {
            name: "k8s/ns/app".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cases = [
        (
            vs(None, None, None),
            &pushes,
            true,
            "new, Retain by default",
        ),
        (
            vs(None, None, Some(VaultSecretStatus::default())),
            &pushes,
            true,
            "a status, no PrivX record",
        ),
        (
            vs(None, None, Some(written)),
            &pushes,
            false,
            "has written PrivX",
        ),
        (
            vs(Some(DeletionPolicy::Delete), None, None),
            &pushes,
            false,
            "Delete records its target first",
        ),
        (
            vs(None, Some(true), None),
            &pushes,
            false,
            "adopt expects an existing secret",
        ),
        (
            vs(None, None, None),
            &SourceInput::ReadOnly,
            false,
            "read-only never writes",
        ),
    ];
    for (object, source, expected, why) in cases {
        assert_eq!(create_unread(&object, source), expected, "{why}");
    }
}
