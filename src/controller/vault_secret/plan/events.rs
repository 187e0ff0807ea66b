//! The events a sync publishes, with their text (pure): what was written to PrivX and why, and
//! restart targets that cannot be restarted.

use kube::runtime::events::EventType;

use super::{Target, WriteCause};

/// An event the apply step publishes about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// The event of a PrivX write, by its cause.
pub fn written(cause: WriteCause, target: &Target) -> PlannedEvent {
    let described = target.describe();
    let (reason, note) = match cause {
        WriteCause::Created => ("Created", format!("created PrivX secret {described}")),
        WriteCause::Updated => ("Updated", format!("updated PrivX secret {described}")),
        WriteCause::DriftCorrected => (
            "DriftCorrected",
            format!(
                "PrivX secret {described} was changed outside Kubernetes; the declared data and roles were put back"
            ),
        ),
        WriteCause::Adopted => (
            "Adopted",
            format!("adopted and overwrote PrivX secret {described}"),
        ),
        WriteCause::Regenerated => (
            "Regenerated",
            format!("generated a new password for PrivX secret {described}"),
        ),
    };
    PlannedEvent {
        type_: EventType::Normal,
        reason,
        note,
    }
}

/// A warning that restart targets cannot be restarted (published when the message is new).
pub fn restart_target_unavailable(message: &str) -> PlannedEvent {
    PlannedEvent {
        type_: EventType::Warning,
        reason: "RolloutTargetUnavailable",
        note: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privx_client::SecretLocation;

    #[test]
    fn every_cause_has_its_reason_and_names_the_target() {
        let target = Target {
            location: SecretLocation::Shared,
            name: "k8s/ns/app".into(),
        };
        for (cause, reason) in [
            (WriteCause::Created, "Created"),
            (WriteCause::Updated, "Updated"),
            (WriteCause::DriftCorrected, "DriftCorrected"),
            (WriteCause::Adopted, "Adopted"),
            (WriteCause::Regenerated, "Regenerated"),
        ] {
            let e = written(cause, &target);
            assert_eq!((e.type_, e.reason), (EventType::Normal, reason));
            assert!(e.note.contains("\"k8s/ns/app\""), "{}", e.note);
        }
    }
}
