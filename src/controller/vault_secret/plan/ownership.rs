//! Who owns a PrivX secret, decided without trusting status alone (pure).
//!
//! Status is writable by anyone who may write `vaultsecrets/status`, so what it records is a
//! claim, not a proof. Before the operator updates or deletes a PrivX secret that status names,
//! the claim is checked twice: the name (and personal owner) must be reachable from the object's
//! namespace by the same tenancy rule that guards creation, and PrivX must not name another
//! author. Cleanup without an ownership record (a crash between the PrivX write and the status
//! write) falls back to the target recorded with the finalizer (the cleanup-target annotation,
//! re-checked the same way) or the one the object would have written, deleted only when PrivX
//! names the operator as its author.

use privx_client::{Secret, SecretLocation};

use super::{Refusal, Target, reason};
use crate::controller::core::may_be_ours;
use crate::controller::vault_secret::plan::tenancy::{NameTemplate, NamespacePolicy, check_access};
use crate::crd::DeletionPolicy;
use crate::crd::vault_secret::{Ownership, PrivxSecretStatus};

/// Whether PrivX confirms the ownership status records. `Created`: PrivX names no other author.
/// `Adopted`: adoption is still allowed by the spec, or PrivX names the operator as the last
/// writer. `None`: the record is not confirmed and counts as absent.
pub fn confirm(
    recorded: Ownership,
    current: &Secret,
    identity: Option<&str>,
    adopt: bool,
) -> Option<Ownership> {
    let confirmed = match recorded {
        Ownership::Created => may_be_ours(current.author.as_deref(), identity),
        Ownership::Adopted => adopt || may_be_ours(current.updated_by.as_deref(), identity),
    };
    confirmed.then_some(recorded)
}

/// Whether PrivX proves the operator created `current`: it names an author and that author is
/// the operator's own identity. Unknown on either side proves nothing.
pub fn provably_ours(current: &Secret, identity: Option<&str>) -> bool {
    matches!((current.author.as_deref(), identity), (Some(a), Some(me)) if a == me)
}

/// The target a status record names.
pub fn recorded_target(record: &PrivxSecretStatus) -> Target {
    Target {
        location: match &record.owner_id {
            Some(user_id) => SecretLocation::Personal {
                user_id: user_id.clone(),
            },
            None => SecretLocation::Shared,
        },
        name: record.name.clone(),
    }
}

/// What a deleted VaultSecret knows about itself.
#[derive(Clone, Debug)]
pub struct CleanupInput<'a> {
    pub namespace: &'a str,
    pub template: &'a NameTemplate,
    pub namespace_policy: &'a NamespacePolicy,
    pub deletion_policy: DeletionPolicy,
    pub adopt: bool,
    /// Whether the object writes PrivX (has a source); read-only mirrors never delete.
    pub writes: bool,
    /// What status records, else the cleanup-target annotation written with the finalizer
    /// before the PrivX write (no ownership).
    pub recorded: Option<&'a PrivxSecretStatus>,
    /// The target the spec computes; `None` when the spec cannot be read.
    pub computed: Option<Target>,
}

/// The PrivX secret cleanup must look at, and what status claims about it.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanupCandidate {
    pub target: Target,
    /// The ownership status records; `None` for the fallback (intent or computed target).
    pub recorded: Option<Ownership>,
}

/// Picks the PrivX secret a deletion may concern. `Ok(None)`: nothing to delete, release the
/// finalizer. `Err`: status names something this namespace may not reach; nothing is deleted
/// and the finalizer stays until a person removes it.
pub fn cleanup_candidate(input: &CleanupInput<'_>) -> Result<Option<CleanupCandidate>, Refusal> {
    if input.deletion_policy != DeletionPolicy::Delete {
        return Ok(None);
    }
    let reachable = |target: &Target| {
        check_access(
            input.template,
            input.namespace,
            input.namespace_policy,
            &target.name,
            target.owner_id(),
        )
    };
    let refuse = |target: &Target, why: String| {
        Refusal::new(
            reason::NOT_ALLOWED,
            format!(
                "status.privx names PrivX secret {}, which this namespace may not reach: {why}; it was not deleted, and the finalizer {} stays until it is removed by hand",
                target.describe(),
                crate::controller::core::finalizer::FINALIZER
            ),
        )
    };
    if let Some(record) = input.recorded
        && let Some(ownership) = record.ownership
    {
        let target = recorded_target(record);
        reachable(&target).map_err(|why| refuse(&target, why))?;
        return Ok(Some(CleanupCandidate {
            target,
            recorded: Some(ownership),
        }));
    }
    if !input.writes {
        return Ok(None);
    }
    // No ownership recorded: the intent written before the PrivX write, else the computed target.
    if let Some(record) = input.recorded {
        let target = recorded_target(record);
        reachable(&target).map_err(|why| refuse(&target, why))?;
        return Ok(Some(CleanupCandidate {
            target,
            recorded: None,
        }));
    }
    Ok(input
        .computed
        .clone()
        .filter(|target| reachable(target).is_ok())
        .map(|target| CleanupCandidate {
            target,
            recorded: None,
        }))
}

/// What cleanup does with the candidate, given what PrivX holds under its name.
#[derive(Clone, Debug, PartialEq)]
pub enum CleanupDecision {
    /// Delete the PrivX secret, then release the finalizer.
    Delete,
    /// Nothing of ours is there: release the finalizer without deleting.
    Release,
    /// Status claims a secret PrivX does not confirm: keep it and the finalizer, report why.
    Refuse(Refusal),
}

/// Decides the deletion by the author rule.
pub fn cleanup_decision(
    candidate: &CleanupCandidate,
    current: Option<&Secret>,
    identity: Option<&str>,
    adopt: bool,
) -> CleanupDecision {
    let Some(current) = current else {
        return CleanupDecision::Release;
    };
    match candidate.recorded {
        Some(ownership) => {
            if confirm(ownership, current, identity, adopt).is_some() {
                CleanupDecision::Delete
            } else {
                CleanupDecision::Refuse(Refusal::new(
                    reason::CONFLICT,
                    format!(
                        "status.privx claims PrivX secret {} as {ownership:?}, but PrivX names {} as its {}; it was not deleted, and the finalizer {} stays until it is removed by hand",
                        candidate.target.describe(),
                        match ownership {
                            Ownership::Created => current.author.as_deref(),
                            Ownership::Adopted => current.updated_by.as_deref(),
                        }
                        .unwrap_or("someone else"),
                        match ownership {
                            Ownership::Created => "author",
                            Ownership::Adopted => "last writer",
                        },
                        crate::controller::core::finalizer::FINALIZER
                    ),
                ))
            }
        }
        None if provably_ours(current, identity) => CleanupDecision::Delete,
        None => CleanupDecision::Release,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "operator-client";

    fn secret(author: &str) -> Secret {
        Secret {
            name: "k8s/team-a/db".into(),
            author: Some(author.into()),
            updated_by: Some(author.into()),
            ..Default::default()
        }
    }

    fn record(name: &str, owner: Option<&str>, ownership: Option<Ownership>) -> PrivxSecretStatus {
        PrivxSecretStatus {
            name: name.into(),
            owner_id: owner.map(String::from),
            ownership,
            ..Default::default()
        }
    }

    fn input<'a>(
        template: &'a NameTemplate,
        policy: &'a NamespacePolicy,
        recorded: Option<&'a PrivxSecretStatus>,
    ) -> CleanupInput<'a> {
        CleanupInput {
            namespace: "team-a",
            template,
            namespace_policy: policy,
            deletion_policy: DeletionPolicy::Delete,
            adopt: false,
            writes: true,
            recorded,
            computed: Some(Target {
                location: SecretLocation::Shared,
                name: "k8s/team-a/db".into(),
            }),
        }
    }

    #[test]
    fn a_status_naming_another_namespace_is_refused_not_deleted() {
        let t = NameTemplate::default();
        let p = NamespacePolicy::default();
        let forged = record("legacy/db-password", None, Some(Ownership::Created));
        let e = cleanup_candidate(&input(&t, &p, Some(&forged))).unwrap_err();
        assert_eq!(e.reason, reason::NOT_ALLOWED);
        assert!(
            e.message.contains("legacy/db-password")
                && e.message
                    .contains(crate::controller::vault_secret::ALLOWED_NAMES_ANNOTATION)
                && e.message
                    .contains(crate::controller::core::finalizer::FINALIZER),
            "{}",
            e.message
        );
        // Another user's personal secret under an allowed name: refused by the owner rule.
        let personal = record("k8s/team-a/db", Some("u-9"), Some(Ownership::Created));
        let e = cleanup_candidate(&input(&t, &p, Some(&personal))).unwrap_err();
        assert!(e.message.contains("u-9"), "{}", e.message);
        // A forged intent record is refused the same way.
        let intent = record("k8s/team-b/db", None, None);
        assert!(cleanup_candidate(&input(&t, &p, Some(&intent))).is_err());
    }

    #[test]
    fn retain_and_read_only_never_delete() {
        let t = NameTemplate::default();
        let p = NamespacePolicy::default();
        let mut i = input(&t, &p, None);
        i.deletion_policy = DeletionPolicy::Retain;
        assert_eq!(cleanup_candidate(&i), Ok(None));
        let mut i = input(&t, &p, None);
        i.writes = false;
        assert_eq!(cleanup_candidate(&i), Ok(None));
    }

    #[test]
    fn without_a_record_the_computed_target_is_deleted_only_when_provably_ours() {
        let t = NameTemplate::default();
        let p = NamespacePolicy::default();
        let c = cleanup_candidate(&input(&t, &p, None)).unwrap().unwrap();
        assert_eq!(c.recorded, None);
        assert_eq!(c.target.name, "k8s/team-a/db");
        assert_eq!(
            cleanup_decision(&c, Some(&secret(ME)), Some(ME), false),
            CleanupDecision::Delete
        );
        assert_eq!(
            cleanup_decision(&c, Some(&secret("a-human")), Some(ME), false),
            CleanupDecision::Release
        );
        // Unknown identity or author proves nothing.
        assert_eq!(
            cleanup_decision(&c, Some(&secret(ME)), None, false),
            CleanupDecision::Release
        );
        assert_eq!(
            cleanup_decision(&c, None, Some(ME), false),
            CleanupDecision::Release
        );
        // The intent record names the target when the spec cannot be read.
        let intent = record("k8s/team-a/other", None, None);
        let mut i = input(&t, &p, Some(&intent));
        i.computed = None;
        let c = cleanup_candidate(&i).unwrap().unwrap();
        assert_eq!(c.target.name, "k8s/team-a/other");
    }

    #[test]
    fn a_recorded_claim_needs_the_author() {
        let t = NameTemplate::default();
        let p = NamespacePolicy::default();
        let created = record("k8s/team-a/db", None, Some(Ownership::Created));
        let c = cleanup_candidate(&input(&t, &p, Some(&created)))
            .unwrap()
            .unwrap();
        assert_eq!(
            cleanup_decision(&c, Some(&secret(ME)), Some(ME), false),
            CleanupDecision::Delete
        );
        let CleanupDecision::Refuse(r) =
            cleanup_decision(&c, Some(&secret("a-human")), Some(ME), false)
        else {
            panic!("must refuse")
        };
        assert_eq!(r.reason, reason::CONFLICT);
        assert!(r.message.contains("a-human"), "{}", r.message);

        let adopted = record("k8s/team-a/db", None, Some(Ownership::Adopted));
        let c = cleanup_candidate(&input(&t, &p, Some(&adopted)))
            .unwrap()
            .unwrap();
        let mut theirs_we_wrote = secret("a-human");
        theirs_we_wrote.updated_by = Some(ME.into());
        assert_eq!(
            cleanup_decision(&c, Some(&theirs_we_wrote), Some(ME), false),
            CleanupDecision::Delete
        );
        assert!(matches!(
            cleanup_decision(&c, Some(&secret("a-human")), Some(ME), false),
            CleanupDecision::Refuse(_)
        ));
        assert_eq!(
            cleanup_decision(&c, Some(&secret("a-human")), Some(ME), true),
            CleanupDecision::Delete
        );
    }

    #[test]
    fn confirmation_of_a_recorded_ownership() {
        assert_eq!(
            confirm(Ownership::Created, &secret(ME), Some(ME), false),
            Some(Ownership::Created)
        );
        assert_eq!(
            confirm(Ownership::Created, &secret("x"), Some(ME), true),
            None
        );
        assert_eq!(
            confirm(Ownership::Adopted, &secret("x"), Some(ME), true),
            Some(Ownership::Adopted)
        );
        assert_eq!(
            confirm(Ownership::Adopted, &secret("x"), Some(ME), false),
            None
        );
    }
}
