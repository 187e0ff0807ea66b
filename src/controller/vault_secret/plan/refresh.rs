//! The refresh-policy decision: when a VaultSecret reads PrivX again (`Periodic`, `OnChange`,
//! `CreatedOnce`, force-sync).
//!
//! [`decide`] is pure: from what status recorded and what the reconcile saw, whether to read
//! PrivX, whether to rewrite the mirror even when it looks in sync, what `status.lastForceSync`
//! becomes and when to look again. (The shared listing read-only mirrors refresh from is
//! `store::list_pages`.)

use std::time::Duration;

use crate::controller::vault_secret::hashing::HmacKey;
use crate::crd::vault_secret::RefreshPolicy;

/// What the decision looks at.
#[derive(Clone, Debug)]
pub struct RefreshInput<'a> {
    pub policy: RefreshPolicy,
    /// The `Periodic` interval.
    pub interval: Duration,
    /// The `privx-operator.dev/force-sync` annotation's value.
    pub force_sync: Option<&'a str>,
    /// `status.lastForceSync`.
    pub last_force_sync: Option<&'a str>,
    /// A sync succeeded before (status holds its data hash for this generation's target).
    pub synced_before: bool,
    /// What the last sync read besides PrivX changed (`status.inputsHash` differs).
    pub inputs_changed: bool,
    /// A mirror is declared and is not in the cluster.
    pub mirror_missing: bool,
    /// The regenerate annotation asks for a password not yet generated.
    pub regenerate_pending: bool,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshDecision {
    /// Read PrivX (and plan, and write what differs). `false`: nothing is read or written.
    pub read_privx: bool,
    /// A new force-sync value: rewrite the mirror even when it looks in sync.
    pub forced: bool,
    /// The value for `status.lastForceSync`.
    pub last_force_sync: Option<String>,
    /// When to reconcile again without a change; `None`: only on a change.
    pub requeue: Option<Duration>,
    /// A routine read of unchanged inputs (may come from a shared list page).
    pub routine: bool,
}

/// Decides whether this reconcile reads PrivX.
///
/// A force-sync value not handled yet always reads and rewrites, in every policy. Without one:
/// the first sync, a missing mirror and a pending regenerate request always read; then
/// `Periodic` reads every time, `OnChange` only when the inputs changed, `CreatedOnce` never.
pub fn decide(input: &RefreshInput<'_>) -> RefreshDecision {
    let forced = input
        .force_sync
        .is_some_and(|v| Some(v) != input.last_force_sync);
    let last_force_sync = if forced {
        input.force_sync.map(String::from)
    } else {
        input.last_force_sync.map(String::from)
    };
    let must = forced || !input.synced_before || input.mirror_missing || input.regenerate_pending;
    let by_policy = match input.policy {
        RefreshPolicy::Periodic => true,
        RefreshPolicy::OnChange => input.inputs_changed,
        RefreshPolicy::CreatedOnce => false,
    };
    RefreshDecision {
        read_privx: must || by_policy,
        forced,
        last_force_sync,
        requeue: match input.policy {
            RefreshPolicy::Periodic => Some(input.interval),
            RefreshPolicy::OnChange | RefreshPolicy::CreatedOnce => None,
        },
        routine: !must && !input.inputs_changed && input.policy == RefreshPolicy::Periodic,
    }
}

/// Keyed hash of the inputs of a sync other than PrivX: the generation and each named part
/// (source data, PasswordPolicy spec, template texts).
pub fn inputs_hash(key: &HmacKey, generation: Option<i64>, parts: &[(&str, &[u8])]) -> String {
    let mut map: std::collections::BTreeMap<String, Vec<u8>> = parts
        .iter()
        .map(|(name, bytes)| (format!("part:{name}"), bytes.to_vec()))
        .collect();
    map.insert(
        "generation".into(),
        generation.unwrap_or_default().to_be_bytes().to_vec(),
    );
    key.hash(&map)
}

/// How old a shared listing may be for a routine refresh: the spread of the jittered refresh
/// (±10%), so that every object of one interval finds the listing one of them read.
pub fn listing_max_age(interval: Duration) -> Duration {
    interval / 5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(policy: RefreshPolicy) -> RefreshInput<'static> {
        RefreshInput {
            policy,
            interval: Duration::from_secs(3600),
            force_sync: None,
            last_force_sync: None,
            synced_before: true,
            inputs_changed: false,
            mirror_missing: false,
            regenerate_pending: false,
        }
    }

    const ALL: [RefreshPolicy; 3] = [
        RefreshPolicy::Periodic,
        RefreshPolicy::OnChange,
        RefreshPolicy::CreatedOnce,
    ];

    #[test]
    fn unchanged_inputs_read_only_when_periodic() {
        let reads: Vec<bool> = ALL.map(|p| decide(&base(p)).read_privx).to_vec();
        assert_eq!(reads, [true, false, false]);
        let requeues: Vec<Option<Duration>> = ALL.map(|p| decide(&base(p)).requeue).to_vec();
        assert_eq!(requeues, [Some(Duration::from_secs(3600)), None, None]);
        assert!(decide(&base(RefreshPolicy::Periodic)).routine);
    }

    #[test]
    fn changed_inputs_read_unless_created_once() {
        let reads: Vec<bool> = ALL
            .map(|p| {
                decide(&RefreshInput {
                    inputs_changed: true,
                    ..base(p)
                })
                .read_privx
            })
            .to_vec();
        assert_eq!(reads, [true, true, false]);
        assert!(
            !decide(&RefreshInput {
                inputs_changed: true,
                ..base(RefreshPolicy::Periodic)
            })
            .routine,
            "a change is read with a GET of its own"
        );
    }

    #[test]
    fn first_sync_missing_mirror_and_regenerate_read_in_every_policy() {
        for policy in ALL {
            for input in [
                RefreshInput {
                    synced_before: false,
                    ..base(policy)
                },
                RefreshInput {
                    mirror_missing: true,
                    ..base(policy)
                },
                RefreshInput {
                    regenerate_pending: true,
                    ..base(policy)
                },
            ] {
                let d = decide(&input);
                assert!(d.read_privx, "{input:?}");
                assert!(!d.forced && !d.routine, "{input:?}");
            }
        }
    }

    #[test]
    fn force_sync_reads_and_rewrites_in_every_policy_once_per_value() {
        for policy in ALL {
            let d = decide(&RefreshInput {
                force_sync: Some("2026-12-02T10:00"),
                last_force_sync: Some("older"),
                ..base(policy)
            });
            assert!(d.read_privx && d.forced && !d.routine, "{policy:?}");
            assert_eq!(d.last_force_sync.as_deref(), Some("2026-12-02T10:00"));

            // Handled: the same value again is no force.
            let d = decide(&RefreshInput {
                force_sync: Some("2026-12-02T10:00"),
                last_force_sync: Some("2026-12-02T10:00"),
                ..base(policy)
            });
            assert!(!d.forced, "{policy:?}");
            assert_eq!(d.last_force_sync.as_deref(), Some("2026-12-02T10:00"));

            // First value ever.
            let d = decide(&RefreshInput {
                force_sync: Some("1"),
                ..base(policy)
            });
            assert!(d.forced && d.read_privx);

            // Annotation removed: nothing forced, the record stays.
            let d = decide(&RefreshInput {
                last_force_sync: Some("1"),
                ..base(policy)
            });
            assert!(!d.forced);
            assert_eq!(d.last_force_sync.as_deref(), Some("1"));
        }
    }

    #[test]
    fn inputs_hash_separates_parts_and_generations() {
        let key = HmacKey::new(vec![1; 32]);
        let a = inputs_hash(&key, Some(1), &[("x", b"ab"), ("y", b"c")]);
        assert_ne!(a, inputs_hash(&key, Some(1), &[("x", b"a"), ("y", b"bc")]));
        assert_ne!(a, inputs_hash(&key, Some(2), &[("x", b"ab"), ("y", b"c")]));
        assert_eq!(a, inputs_hash(&key, Some(1), &[("x", b"ab"), ("y", b"c")]));
    }

    #[test]
    fn listing_age_covers_the_jitter_spread() {
        assert_eq!(
            listing_max_age(Duration::from_secs(3600)),
            Duration::from_secs(720)
        );
    }
}
