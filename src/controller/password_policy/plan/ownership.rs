//! Who owns a PrivX password policy, decided without trusting status alone (pure).
//!
//! Status records the policy id the object manages; before that policy is updated or deleted,
//! PrivX's `created_by` (or, for an adopted policy, the spec's `adopt` or `updated_by`) must
//! confirm the claim. Without a record (a crash between the create and the status write, or a
//! create whose answer was lost), the policy of the recorded or computed name that PrivX says
//! the operator created is this object's.

use privx_client::PasswordPolicy;

use super::{Refusal, reason};
use crate::controller::core::may_be_ours;
use crate::crd::Ownership;

/// Whether PrivX confirms the ownership status records. `Created`: PrivX names no other
/// creator. `Adopted` stays adopted (with or without `spec.adopt`, as documented): the object is
/// cluster-scoped and its status is written by cluster admins only, unlike a VaultSecret's.
pub fn confirm(recorded: Ownership, current: &PasswordPolicy, identity: Option<&str>) -> bool {
    match recorded {
        Ownership::Created => may_be_ours(current.created_by.as_deref(), identity),
        Ownership::Adopted => true,
    }
}

/// Whether PrivX proves the operator created `policy` (a known author equal to the operator).
pub fn provably_ours(policy: &PasswordPolicy, identity: Option<&str>) -> bool {
    matches!((policy.created_by.as_deref(), identity), (Some(a), Some(me)) if a == me)
}

/// After a create whose outcome is unknown (timeout, lost connection, 5xx) or that PrivX
/// answered `AlreadyExists`: the policy among `listed` that this create made, if PrivX shows
/// one — the declared name and settings, and no other creator.
pub fn created_by_us<'a>(
    listed: &'a [PasswordPolicy],
    desired: &PasswordPolicy,
    identity: Option<&str>,
) -> Option<&'a PasswordPolicy> {
    listed.iter().find(|p| {
        p.name == desired.name
            && super::matches(desired, p)
            && may_be_ours(p.created_by.as_deref(), identity)
    })
}

/// What cleanup does with the policy it found.
#[derive(Clone, Debug, PartialEq)]
pub enum CleanupDecision {
    Delete(String),
    Release,
    Refuse(Refusal),
}

/// Cleanup of a recorded policy (`recorded` = the ownership status records).
pub fn recorded_cleanup(
    recorded: Ownership,
    current: Option<&PasswordPolicy>,
    identity: Option<&str>,
) -> CleanupDecision {
    let Some(current) = current else {
        return CleanupDecision::Release;
    };
    let id = current.id.clone().unwrap_or_default();
    if confirm(recorded, current, identity) {
        return CleanupDecision::Delete(id);
    }
    let who = match recorded {
        Ownership::Created => current.created_by.as_deref(),
        Ownership::Adopted => current.updated_by.as_deref(),
    }
    .unwrap_or("someone else");
    CleanupDecision::Refuse(Refusal::new(
        reason::CONFLICT,
        format!(
            "status claims PrivX password policy {id} as {recorded:?}, but PrivX names {who} as its {}; it was not deleted, and the finalizer {} stays until it is removed by hand",
            match recorded {
                Ownership::Created => "creator",
                Ownership::Adopted => "last writer",
            },
            crate::controller::core::finalizer::FINALIZER
        ),
    ))
}

/// Cleanup without a record: the listed policy of `name` that PrivX says the operator created.
pub fn unrecorded_cleanup(
    listed: &[PasswordPolicy],
    name: &str,
    identity: Option<&str>,
) -> CleanupDecision {
    listed
        .iter()
        .find(|p| p.name == name && provably_ours(p, identity))
        .and_then(|p| p.id.clone())
        .map_or(CleanupDecision::Release, CleanupDecision::Delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, name: &str, by: &str) -> PasswordPolicy {
        PasswordPolicy {
            id: Some(id.into()),
            name: name.into(),
            created_by: Some(by.into()),
            updated_by: Some(by.into()),
            max_versions: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn recorded_claims_need_privx_to_agree() {
        let ours = policy("1", "p", "me");
        let theirs = policy("2", "p", "human");
        assert_eq!(
            recorded_cleanup(Ownership::Created, Some(&ours), Some("me")),
            CleanupDecision::Delete("1".into())
        );
        assert!(matches!(
            recorded_cleanup(Ownership::Created, Some(&theirs), Some("me")),
            CleanupDecision::Refuse(r) if r.message.contains("human")
        ));
        assert_eq!(
            recorded_cleanup(Ownership::Adopted, Some(&theirs), Some("me")),
            CleanupDecision::Delete("2".into())
        );
        assert_eq!(
            recorded_cleanup(Ownership::Created, None, Some("me")),
            CleanupDecision::Release
        );
    }

    #[test]
    fn without_a_record_only_a_provably_own_policy_is_deleted() {
        let listed = [policy("1", "p", "human"), policy("2", "p", "me")];
        assert_eq!(
            unrecorded_cleanup(&listed, "p", Some("me")),
            CleanupDecision::Delete("2".into())
        );
        assert_eq!(
            unrecorded_cleanup(&listed, "p", None),
            CleanupDecision::Release
        );
        assert_eq!(
            unrecorded_cleanup(&listed[..1], "p", Some("me")),
            CleanupDecision::Release
        );
    }

    #[test]
    fn an_unknown_create_is_claimed_only_when_privx_shows_ours() {
        let mut desired = policy("", "p", "");
        desired.id = None;
        desired.created_by = None;
        desired.updated_by = None;
        let listed = [policy("1", "p", "human"), policy("2", "p", "me")];
        assert_eq!(
            created_by_us(&listed, &desired, Some("me")).and_then(|p| p.id.as_deref()),
            Some("2")
        );
        let mut other_settings = listed.clone();
        other_settings[1].max_versions = Some(9);
        assert!(created_by_us(&other_settings, &desired, Some("me")).is_none());
        assert!(created_by_us(&listed[..1], &desired, Some("me")).is_none());
    }
}
