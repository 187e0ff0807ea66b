//! What a PasswordPolicy sync writes besides PrivX, decided purely: the metadata before the
//! PrivX write (finalizer and cleanup target), the event of the write, the status and its
//! conditions.

use kube::runtime::events::EventType;
use privx_client::PolicyGeneration;

use super::{PolicyAction, PolicyCause, PolicyPlan, reason};
use crate::controller::core::finalizer::{CleanupTarget, MetadataChange, plan_metadata};
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::{DeletionPolicy, PasswordPolicy, PasswordPolicyStatus};

/// Before the PrivX write: the finalizer (with `deletionPolicy: Delete`) and, before a create,
/// the PrivX name in the same patch, so that a crash or a lost answer after the create leaves
/// cleanup and the next reconcile a name to look for. `failure_status` names it too, for a
/// failure reported before the final status.
#[derive(Clone, Debug, PartialEq)]
pub struct BeforeWrite {
    pub metadata: MetadataChange,
    pub failure_status: Option<PasswordPolicyStatus>,
}

pub fn before_write(policy: &PasswordPolicy, name: &str, plan: &PolicyPlan) -> BeforeWrite {
    let wants_finalizer = policy.spec.deletion_policy() == DeletionPolicy::Delete;
    let creates = matches!(plan.action, PolicyAction::Create(_));
    let intent = CleanupTarget {
        name: name.to_string(),
        owner_id: None,
    };
    let status = policy.status.as_ref();
    let failure_status = (wants_finalizer
        && creates
        && status.and_then(|s| s.name.as_deref()) != Some(name))
    .then(|| PasswordPolicyStatus {
        name: Some(name.to_string()),
        ..status.cloned().unwrap_or_default()
    });
    BeforeWrite {
        metadata: plan_metadata(
            &policy.metadata,
            wants_finalizer,
            creates.then_some(&intent),
        ),
        failure_status,
    }
}

/// An event the apply step publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// The event of a write, by its cause.
pub fn written(cause: PolicyCause, name: &str, id: &str) -> PlannedEvent {
    let (reason, note) = match cause {
        PolicyCause::Created => (
            "Created",
            format!("created PrivX password policy {name:?} (id {id})"),
        ),
        PolicyCause::Updated => ("Updated", format!("updated PrivX password policy {name:?}")),
        PolicyCause::DriftCorrected => (
            "DriftCorrected",
            format!(
                "PrivX password policy {name:?} was changed outside Kubernetes; the declared settings were put back"
            ),
        ),
        PolicyCause::Adopted => (
            "Adopted",
            format!("adopted PrivX password policy {name:?} (id {id})"),
        ),
    };
    PlannedEvent {
        type_: EventType::Normal,
        reason,
        note,
    }
}

/// The status after the write and what the metrics report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub event: Option<PlannedEvent>,
    pub status: PasswordPolicyStatus,
    pub conditions: Vec<DesiredCondition>,
    pub ready_reason: &'static str,
}

/// `status.created` / `status.updated` after this sync, without reading PrivX back: a create
/// is now, an update keeps the creation time and is now; without a write, what status already
/// says (no status churn), else what PrivX reported when it was read (`found`).
pub fn times(
    status: Option<&PasswordPolicyStatus>,
    found: Option<&privx_client::PasswordPolicy>,
    action: &PolicyAction,
    now: &str,
) -> Times {
    let recorded =
        |pick: fn(&PasswordPolicyStatus) -> &Option<String>,
         privx: fn(&privx_client::PasswordPolicy) -> &Option<String>| {
            status
                .and_then(|s| pick(s).clone())
                .or_else(|| found.and_then(|f| privx(f).clone()))
        };
    let created = recorded(|s| &s.created, |f| &f.created);
    match action {
        PolicyAction::Create(_) => Times {
            created: Some(now.to_string()),
            updated: Some(now.to_string()),
        },
        PolicyAction::Update { .. } => Times {
            created,
            updated: Some(now.to_string()),
        },
        PolicyAction::None => Times {
            created,
            updated: recorded(|s| &s.updated, |f| &f.updated),
        },
    }
}

/// The PrivX policy's times as status records them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub created: Option<String>,
    pub updated: Option<String>,
}

/// What the sync reports. `id`: the policy's PrivX id after the write; `times`: see [`times`];
/// `unsupported`: declared fields the server's `generation` lacks.
pub fn report(
    policy: &PasswordPolicy,
    name: &str,
    id: &str,
    plan: &PolicyPlan,
    unsupported: &[String],
    generation: PolicyGeneration,
    times: Times,
) -> Report {
    let (ready_reason, conditions) = if unsupported.is_empty() {
        let message =
            format!("PrivX password policy {name:?} (id {id}) matches the declared settings");
        (
            reason::SYNCED,
            vec![
                DesiredCondition::new(condition::READY, true, reason::SYNCED, message.clone()),
                DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, message),
            ],
        )
    } else {
        let message = format!(
            "PrivX speaks the {generation:?} password-policy API, which has no {}; those fields were not sent (remove them, or upgrade PrivX)",
            unsupported.join(", ")
        );
        (
            reason::UNSUPPORTED_FIELD,
            vec![
                DesiredCondition::new(
                    condition::READY,
                    true,
                    reason::UNSUPPORTED_FIELD,
                    message.clone(),
                ),
                DesiredCondition::new(condition::SYNCED, false, reason::UNSUPPORTED_FIELD, message),
            ],
        )
    };
    Report {
        event: plan.cause.map(|cause| written(cause, name, id)),
        status: PasswordPolicyStatus {
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            ownership: Some(plan.ownership),
            created: times.created,
            updated: times.updated,
            conditions: Vec::new(),
            observed_generation: policy.metadata.generation,
            // Kept or set when the status is written (`write_synced_status`).
            last_sync_time: None,
        },
        conditions,
        ready_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Ownership, PasswordPolicySpec};

    fn policy(deletion: Option<DeletionPolicy>) -> PasswordPolicy {
        let mut p = PasswordPolicy::new(
            "p",
            PasswordPolicySpec {
                deletion_policy: deletion,
                ..Default::default()
            },
        );
        p.metadata.generation = Some(2);
        p
    }

    fn create() -> PolicyPlan {
        PolicyPlan {
            action: PolicyAction::Create(Default::default()),
            cause: Some(PolicyCause::Created),
            ownership: Ownership::Created,
            id: None,
        }
    }

    #[test]
    fn a_delete_policy_records_its_name_with_the_finalizer_before_the_create() {
        let b = before_write(&policy(Some(DeletionPolicy::Delete)), "p", &create());
        assert_eq!(b.metadata.finalizer, Some(true));
        assert_eq!(
            b.metadata.cleanup_target,
            Some(Some(r#"{"name":"p"}"#.to_string()))
        );
        assert_eq!(b.failure_status.and_then(|s| s.name).as_deref(), Some("p"));
        let retain = before_write(&policy(None), "p", &create());
        assert!(retain.metadata.is_empty() && retain.failure_status.is_none());
    }

    #[test]
    fn times_come_from_the_write_then_stay_as_recorded() {
        let update = PolicyAction::Update {
            id: "id-1".to_string(),
            policy: Default::default(),
        };
        let created = times(None, None, &PolicyAction::Create(Default::default()), "t1");
        assert_eq!(created.created.as_deref(), Some("t1"));
        assert_eq!(created.updated.as_deref(), Some("t1"));
        let status = PasswordPolicyStatus {
            created: created.created.clone(),
            updated: created.updated.clone(),
            ..Default::default()
        };
        let privx = privx_client::PasswordPolicy {
            created: Some("p0".to_string()),
            updated: Some("p1".to_string()),
            ..Default::default()
        };
        // An update keeps the creation time; a refresh without a write changes nothing.
        let updated = times(Some(&status), Some(&privx), &update, "t2");
        assert_eq!(updated.created.as_deref(), Some("t1"));
        assert_eq!(updated.updated.as_deref(), Some("t2"));
        assert_eq!(
            times(Some(&status), Some(&privx), &PolicyAction::None, "t3"),
            created
        );
        // Adopted or claimed without a write: what PrivX reported.
        let claimed = times(None, Some(&privx), &PolicyAction::None, "t3");
        assert_eq!(claimed.created.as_deref(), Some("p0"));
        assert_eq!(claimed.updated.as_deref(), Some("p1"));
    }

    #[test]
    fn the_report_names_the_policy_and_unsupported_fields() {
        let p = policy(None);
        let r = report(
            &p,
            "p",
            "id-1",
            &create(),
            &[],
            PolicyGeneration::V35,
            Times::default(),
        );
        assert_eq!(r.ready_reason, reason::SYNCED);
        assert_eq!(r.event.map(|e| e.reason), Some("Created"));
        assert_eq!(r.status.id.as_deref(), Some("id-1"));
        assert_eq!(r.status.observed_generation, Some(2));
        let r = report(
            &p,
            "p",
            "id-1",
            &create(),
            &["spec.rotateOnRelease".to_string()],
            PolicyGeneration::V34,
            Times::default(),
        );
        assert_eq!(r.ready_reason, reason::UNSUPPORTED_FIELD);
        assert!(r.conditions[1].message.contains("spec.rotateOnRelease"));
        assert!(!r.conditions[1].status);
    }
}
