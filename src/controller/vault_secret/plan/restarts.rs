//! Rollout restarts (pure): whether the data the workloads read changed, which declared targets
//! are restarted, and the `RestartTargets` condition and event.
//!
//! A recorded hash names the key it was made with (see [`HmacKey::made`]). Made with the
//! current key, it is compared as it is. Made with another key (a new HMAC key Secret, a renamed
//! release) it says nothing about the data, so the new mirrored bytes are compared with the
//! bytes the existing mirror holds: only a real change restarts, and the hashes are rewritten
//! with the new key either way — a new key is not a restart storm.

use std::collections::BTreeMap;

use crate::controller::vault_secret::store::stored_mirror::StoredMirror;

use super::events::{PlannedEvent, restart_target_unavailable};
use crate::controller::vault_secret::hashing::HmacKey;
use crate::controller::vault_secret::restart;
use crate::crd::condition::DesiredCondition;
use crate::crd::vault_secret::RolloutTarget;

/// What the fetch step found of one restart target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetCheck {
    /// It exists and may be read (so it may be restarted).
    Available,
    /// It cannot be restarted: the condition reason and what is wrong.
    Unavailable {
        code: &'static str,
        what: &'static str,
    },
}

/// Whether the workloads must be restarted: only when what they read changed from a previously
/// synced value (never on the first sync, never when unchanged, so never at operator restart
/// and never in a loop). `previous`: the recorded hash; `new`: the hash now; `new_bytes` and
/// `existing`: the mirrored bytes now and the mirror as it is, for a hash of another key.
pub fn data_changed(
    key: &HmacKey,
    previous: Option<&str>,
    new: &str,
    new_bytes: &BTreeMap<String, Vec<u8>>,
    existing: Option<&StoredMirror>,
) -> bool {
    match previous {
        None => false,
        Some(previous) if key.made(previous) => previous != new,
        // Another key: the bytes decide. Without a mirror to compare with, the data may have
        // changed: restart rather than leave workloads on stale data.
        Some(_) => existing.is_none_or(|m| !m.data_is(new_bytes)),
    }
}

/// The restart part of a sync: the targets to restart, the condition, and an event when its
/// message is new. `checks` pairs each declared target with what the fetch step found.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPlan {
    pub restart: Vec<RolloutTarget>,
    pub condition: DesiredCondition,
    pub event: Option<PlannedEvent>,
}

pub fn plan_restarts(
    checks: &[(RolloutTarget, TargetCheck)],
    changed: bool,
    previous_message: Option<&str>,
) -> RestartPlan {
    let mut problems = Vec::new();
    let mut reason_code = restart::AVAILABLE;
    let mut restart_now = Vec::new();
    for (target, check) in checks {
        match check {
            TargetCheck::Available if changed => restart_now.push(target.clone()),
            TargetCheck::Available => {}
            TargetCheck::Unavailable { code, what } => {
                reason_code = code;
                problems.push(format!("{} {} {what}", target.kind.as_str(), target.name));
            }
        }
    }
    if problems.is_empty() {
        return RestartPlan {
            restart: restart_now,
            condition: DesiredCondition::new(
                restart::CONDITION,
                true,
                restart::AVAILABLE,
                "every restart target exists and can be restarted",
            ),
            event: None,
        };
    }
    let message = format!(
        "restart target(s) not restarted: {} (the data is synced)",
        problems.join("; ")
    );
    RestartPlan {
        restart: restart_now,
        event: (previous_message != Some(message.as_str()))
            .then(|| restart_target_unavailable(&message)),
        condition: DesiredCondition::new(restart::CONDITION, false, reason_code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::vault_secret::RolloutKind;
    use k8s_openapi::ByteString;

    fn bytes(v: &str) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("password".to_string(), v.as_bytes().to_vec())])
    }

    fn mirror(v: &str) -> StoredMirror {
        StoredMirror::from(k8s_openapi::api::core::v1::Secret {
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(v.as_bytes().to_vec()),
            )])),
            ..Default::default()
        })
    }

    #[test]
    fn same_key_compares_hashes() {
        let key = HmacKey::new(vec![1; 32]);
        let old = key.hash(&bytes("a"));
        let new = key.hash(&bytes("b"));
        assert!(
            !data_changed(&key, None, &new, &bytes("b"), None),
            "first sync"
        );
        assert!(!data_changed(&key, Some(&old), &old, &bytes("a"), None));
        assert!(data_changed(
            &key,
            Some(&old),
            &new,
            &bytes("b"),
            Some(&mirror("b"))
        ));
    }

    #[test]
    fn another_key_compares_the_mirrored_bytes() {
        let before = HmacKey::new(vec![1; 32]);
        let now = HmacKey::new(vec![2; 32]);
        let old = before.hash(&bytes("a"));
        let new = now.hash(&bytes("a"));
        assert_ne!(old, new);
        assert!(!data_changed(
            &now,
            Some(&old),
            &new,
            &bytes("a"),
            Some(&mirror("a"))
        ));
        assert!(data_changed(
            &now,
            Some(&old),
            &new,
            &bytes("b"),
            Some(&mirror("a"))
        ));
        // An unprefixed hash of before key ids is "another key" as well.
        let legacy = "hmac-sha256:00ff";
        assert!(!data_changed(
            &now,
            Some(legacy),
            &new,
            &bytes("a"),
            Some(&mirror("a"))
        ));
        // No mirror to compare with: the data may have changed.
        assert!(data_changed(&now, Some(&old), &new, &bytes("a"), None));
    }

    #[test]
    fn unavailable_targets_are_reported_once_and_available_ones_restarted() {
        let t = |name: &str| RolloutTarget {
            kind: RolloutKind::Deployment,
            name: name.into(),
        };
        let checks = [
            (t("web"), TargetCheck::Available),
            (
                t("gone"),
                TargetCheck::Unavailable {
                    code: "TargetNotFound",
                    what: "does not exist",
                },
            ),
        ];
        let p = plan_restarts(&checks, true, None);
        assert_eq!(p.restart, [t("web")]);
        assert!(!p.condition.status);
        assert_eq!(p.condition.reason, "TargetNotFound");
        let event = p.event.expect("a new problem is an event");
        assert_eq!(event.reason, "RolloutTargetUnavailable");
        let again = plan_restarts(&checks, false, Some(&p.condition.message));
        assert!(again.restart.is_empty() && again.event.is_none());
        let fine = plan_restarts(&checks[..1], false, None);
        assert!(fine.condition.status && fine.event.is_none());
    }
}
