//! Table tests of the whole plan (`plan::plan`): from what fetch observed to the finalizer and
//! cleanup target, the PrivX write, events, restarts, status and refusals — no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;

use super::tests::{data, key, privx_secret, target};
use super::*;
use crate::controller::core::finalizer::CLEANUP_TARGET_ANNOTATION;
use crate::controller::core::finalizer::FINALIZER;
use crate::controller::vault_secret::Settings;
use crate::crd::vault_secret::{
    MirrorSpec, Ownership, PrivxSecretStatus, RolloutKind, RolloutTarget,
};
use crate::crd::{VaultSecretSpec, condition};

const UID: &str = "uid-1";

/// One row: the object and what fetch found. `plan` runs it.
struct Row {
    vs: VaultSecret,
    source: SourceInput,
    current: Option<Secret>,
    mirror: Option<KubeSecret>,
    others: Vec<Candidate>,
    checks: Vec<(RolloutTarget, TargetCheck)>,
    settings: Settings,
}

fn row(spec: VaultSecretSpec) -> Row {
    let mut vs = VaultSecret::new("app", spec);
    vs.metadata.namespace = Some("ns".into());
    vs.metadata.uid = Some(UID.into());
    vs.metadata.generation = Some(1);
    Row {
        vs,
        source: SourceInput::Secret(data(&[("password", "v1")])),
        current: None,
        mirror: None,
        others: Vec::new(),
        checks: Vec::new(),
        settings: Settings {
            hmac_key: key(),
            ..Settings::default()
        },
    }
}

fn push_spec() -> VaultSecretSpec {
    serde_json::from_value(serde_json::json!({
        "source": {"secretRef": {"name": "db"}},
        "mirror": {"secretName": "app-creds"},
    }))
    .unwrap()
}

fn delete_spec() -> VaultSecretSpec {
    VaultSecretSpec {
        deletion_policy: Some(crate::crd::DeletionPolicy::Delete),
        ..push_spec()
    }
}

impl Row {
    fn plan(&self) -> Result<Plan, Stop> {
        let decision = crate::controller::vault_secret::plan::refresh::RefreshDecision {
            read_privx: true,
            forced: false,
            last_force_sync: None,
            requeue: Some(Duration::from_secs(3600)),
            routine: false,
        };
        let resolved = BTreeMap::new();
        let stored = self
            .mirror
            .clone()
            .map(crate::controller::vault_secret::store::stored_mirror::StoredMirror::from);
        plan(&Observed {
            vs: &self.vs,
            target: &target(),
            source: self.source.clone(),
            templates: &[],
            existing_mirror: stored.as_ref(),
            current: self.current.as_ref(),
            self_roles: &[],
            resolved_roles: &resolved,
            me: Candidate {
                key: "ns/app".into(),
                created: None,
                uid: UID.into(),
                records_ownership: records_ownership(self.vs.status.as_ref(), &target()),
            },
            others: self.others.clone(),
            restart_checks: &self.checks,
            decision: &decision,
            inputs_hash: "inputs".into(),
            refresh: Duration::from_secs(3600),
            settings: &self.settings,
            identity: Some("operator-client"),
            now: "2026-01-01T00:00:00Z",
        })
    }

    /// The object as it is after a successful first sync of `plan`.
    fn synced(mut self, plan: &Plan, mirror: &str) -> Self {
        self.vs.status = Some(plan.status.clone());
        self.current = Some(privx_secret(Some(data(&[("password", mirror)])), &[], &[]));
        self.mirror = Some(mirror_secret(mirror, plan));
        self.vs.metadata.finalizers = plan
            .metadata
            .finalizer
            .filter(|f| *f)
            .map(|_| vec![FINALIZER.into()]);
        self
    }
}

fn mirror_secret(value: &str, plan: &Plan) -> KubeSecret {
    let mut m = match &plan.mirror {
        MirrorAction::Apply(s) => (**s).clone(),
        other => panic!("expected a mirror write, got {other:?}"),
    };
    m.data = Some(BTreeMap::from([(
        "password".to_string(),
        ByteString(value.as_bytes().to_vec()),
    )]));
    m
}

fn reasons(plan: &Plan) -> Vec<&'static str> {
    plan.events.iter().map(|e| e.reason).collect()
}

#[test]
fn a_new_delete_object_puts_finalizer_and_cleanup_target_in_one_patch_before_the_create() {
    let p = row(delete_spec()).plan().unwrap();
    assert_eq!(p.metadata.finalizer, Some(true));
    assert_eq!(
        p.metadata.cleanup_target,
        Some(Some(r#"{"name":"k8s/ns/app"}"#.to_string()))
    );
    assert!(matches!(p.privx, PrivxAction::Create(_)));
    assert!(matches!(p.mirror, MirrorAction::Apply(_)));
    assert_eq!(reasons(&p), ["Created"]);
    // A failure after this point is reported on a status naming the target, unclaimed.
    let failure = p
        .failure_status
        .clone()
        .expect("intent in the failure status");
    let intent = failure.privx.unwrap();
    assert_eq!(
        (intent.name.as_str(), intent.ownership),
        ("k8s/ns/app", None)
    );
    // The status after success claims it.
    assert_eq!(
        p.status.privx.as_ref().and_then(|s| s.ownership),
        Some(Ownership::Created)
    );
    let ready = p
        .conditions
        .iter()
        .find(|c| c.type_ == condition::READY)
        .unwrap();
    assert!(ready.status && ready.reason == reason::SYNCED);
    assert_eq!(p.requeue, Some(Duration::from_secs(3600)));
}

#[test]
fn retain_objects_get_no_finalizer_and_read_only_mirrors_never_do() {
    let p = row(push_spec()).plan().unwrap();
    assert!(p.metadata.is_empty() && p.failure_status.is_none());
    let mut read_only = row(VaultSecretSpec {
        source: None,
        ..delete_spec()
    });
    read_only.source = SourceInput::ReadOnly;
    read_only.current = Some(privx_secret(Some(data(&[("password", "v")])), &[], &[]));
    let p = read_only.plan().unwrap();
    assert!(p.metadata.is_empty(), "{:?}", p.metadata);
    assert_eq!(p.privx, PrivxAction::None);
    assert!(p.events.is_empty());
}

#[test]
fn steady_state_plans_no_write_and_no_event() {
    let r = row(delete_spec());
    let first = r.plan().unwrap();
    let mut r = r.synced(&first, "v1");
    r.vs.metadata.annotations = Some(BTreeMap::from([(
        CLEANUP_TARGET_ANNOTATION.to_string(),
        r#"{"name":"k8s/ns/app"}"#.to_string(),
    )]));
    let p = r.plan().unwrap();
    assert!(p.metadata.is_empty(), "{:?}", p.metadata);
    assert_eq!(p.privx, PrivxAction::None);
    assert_eq!(p.mirror, MirrorAction::InSync);
    assert!(p.events.is_empty() && p.failure_status.is_none());
    // Switching to Retain drops the finalizer and the annotation in one patch.
    r.vs.spec.deletion_policy = None;
    let p = r.plan().unwrap();
    assert_eq!(p.metadata.finalizer, Some(false));
    assert_eq!(p.metadata.cleanup_target, Some(None));
}

#[test]
fn an_older_claimant_is_a_conflict_naming_it() {
    let mut r = row(push_spec());
    r.others.push(Candidate {
        key: "other/first".into(),
        created: None,
        uid: "uid-0".into(),
        records_ownership: false,
    });
    let (refusal, next) = r.plan().unwrap_err();
    assert_eq!(refusal.reason, reason::CONFLICT);
    assert!(
        refusal.message.contains("other/first"),
        "{}",
        refusal.message
    );
    assert!(matches!(next, Next::After(d) if d == Duration::from_secs(3600)));
}

#[test]
fn restarts_follow_the_data_not_the_key() {
    let web = RolloutTarget {
        kind: RolloutKind::Deployment,
        name: "web".into(),
    };
    let mut r = row(VaultSecretSpec {
        mirror: Some(MirrorSpec {
            secret_name: Some("app-creds".into()),
            rollout_restart_targets: Some(vec![web.clone()]),
            ..Default::default()
        }),
        ..push_spec()
    });
    r.checks = vec![(web.clone(), TargetCheck::Available)];
    let first = r.plan().unwrap();
    assert!(first.restarts.is_empty(), "never on the first sync");
    let r = r.synced(&first, "v1");

    // The same data under the same key: nothing to restart.
    assert!(r.plan().unwrap().restarts.is_empty());
    // Changed data: restart, with the new hash as the token.
    let mut changed = row(VaultSecretSpec::default());
    changed.vs = r.vs.clone();
    changed.checks = r.checks.clone();
    changed.mirror = r.mirror.clone();
    changed.current = r.current.clone();
    changed.source = SourceInput::Secret(data(&[("password", "v2")]));
    let p = changed.plan().unwrap();
    assert_eq!(p.restarts, std::slice::from_ref(&web));
    assert_eq!(Some(&p.restart_token), p.status.data_hash.as_ref());

    // A new key with the same data: hashes rewritten, no restart.
    let mut rekeyed = row(VaultSecretSpec::default());
    rekeyed.vs = r.vs.clone();
    rekeyed.checks = r.checks.clone();
    rekeyed.mirror = r.mirror.clone();
    rekeyed.current = r.current.clone();
    rekeyed.settings.hmac_key = crate::controller::vault_secret::hashing::HmacKey::new(vec![9; 32]);
    let p = rekeyed.plan().unwrap();
    assert!(p.restarts.is_empty(), "a new key alone restarts nothing");
    assert_ne!(p.status.data_hash, r.vs.status.as_ref().unwrap().data_hash);
    assert!(
        matches!(p.mirror, MirrorAction::Apply(_)),
        "the mirror's hash is rewritten"
    );
    // A new key and new data: restart.
    rekeyed.source = SourceInput::Secret(data(&[("password", "v2")]));
    assert_eq!(rekeyed.plan().unwrap().restarts, [web]);
}

#[test]
fn not_read_keeps_the_record_and_the_restart_condition() {
    let mut vs = row(push_spec()).vs;
    vs.status = Some(crate::crd::VaultSecretStatus {
        privx: Some(PrivxSecretStatus {
            name: "k8s/ns/app".into(),
            ..Default::default()
        }),
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: crate::controller::vault_secret::restart::CONDITION.into(),
            status: "False".into(),
            reason: "TargetNotFound".into(),
            message: "gone".into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }],
        ..Default::default()
    });
    let p = not_read(&vs, &target());
    assert_eq!(p.status.privx.as_ref().unwrap().name, "k8s/ns/app");
    assert!(p.metadata.is_empty() && p.events.is_empty());
    assert_eq!(p.privx, PrivxAction::None);
    let restart = p
        .conditions
        .iter()
        .find(|c| c.type_ == crate::controller::vault_secret::restart::CONDITION)
        .unwrap();
    assert_eq!(
        (restart.status, restart.reason.as_str()),
        (false, "TargetNotFound")
    );
}

/// Issue 23 §2: a plan that mirrors a value prints no form of it — not as text, not as the
/// byte array k8s `ByteString` prints, not JSON-escaped, not base64 — only the data keys.
#[test]
fn debug_of_a_plan_shows_mirror_keys_never_the_value() {
    let value = "s3\"cr\\et";
    let mut r = row(push_spec());
    r.source = SourceInput::Secret(data(&[("password", value)]));
    let p = r.plan().unwrap();
    assert!(matches!(p.mirror, MirrorAction::Apply(_)));
    let printed = format!("{p:?}");
    assert!(printed.contains("password"), "{printed}");
    let bytes = format!("{:?}", value.as_bytes());
    let escaped = serde_json::to_string(value).unwrap();
    let base64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(value)
    };
    for form in [
        value,
        bytes.trim_matches(|c| c == '[' || c == ']'),
        escaped.trim_matches('"'),
        &base64,
    ] {
        assert!(!printed.contains(form), "{form:?} in {printed}");
    }
}
