//! Standard `metav1.Condition`s: building them and merging them into a status without
//! touching `lastTransitionTime` when nothing changed (so status writes can be skipped).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

/// A condition as the controller wants it; the transition time is filled in by [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Merges desired conditions into the current list. A condition whose status did not change
/// keeps its `lastTransitionTime`; reason, message and generation are updated in place.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let previous = current.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The current condition of a type, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = merge(
            &[],
            &[DesiredCondition::new(READY, true, "Synced", "ok")],
            Some(1),
            t(10),
        );
        let second = merge(
            &first,
            &[DesiredCondition::new(READY, true, "Synced", "ok")],
            Some(1),
            t(20),
        );
        assert_eq!(first, second);
        let flipped = merge(
            &second,
            &[DesiredCondition::new(
                READY,
                false,
                "PrivXUnavailable",
                "down",
            )],
            Some(1),
            t(30),
        );
        assert_eq!(flipped[0].last_transition_time, t(30));
        assert_eq!(flipped[0].reason, "PrivXUnavailable");
    }
}
