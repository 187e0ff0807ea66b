//! The pure middle of the PasswordPolicy reconcile: the desired PrivX policy, ownership,
//! comparison by meaning, and what to write.

use crate::crd::duration::parse_duration;
use crate::crd::{Ownership, PasswordPolicySpec, PasswordPolicyStatus};
use privx_client::{PasswordPolicy, PolicyGeneration};

pub mod ownership;
pub mod status;

pub use crate::controller::core::outcome::reason;

/// The refusal of a plan: the reason and message of the conditions.
pub use crate::controller::core::outcome::Refusal;

/// The PrivX name of a policy object.
pub fn privx_name(spec: &PasswordPolicySpec, metadata_name: &str) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| metadata_name.to_string())
}

/// The policy as PrivX should hold it, in generation-neutral form, and the declared fields
/// the server's generation lacks (camelCase, `spec.` prefixed).
pub fn desired_policy(
    spec: &PasswordPolicySpec,
    name: &str,
    generation: PolicyGeneration,
) -> Result<(PasswordPolicy, Vec<String>), Refusal> {
    let duration = |field: &str,
                    value: &Option<String>|
     -> Result<Option<std::time::Duration>, Refusal> {
        value
            .as_deref()
            .map(|v| {
                parse_duration(v)
                    .map_err(|e| Refusal::new(reason::INVALID_SPEC, format!("spec.{field}: {e}")))
            })
            .transpose()
    };
    let mut policy = PasswordPolicy {
        id: None,
        name: name.to_string(),
        rotation_interval: duration("rotationInterval", &spec.rotation_interval)?,
        // Lengths and classes are always sent with their effective values: the operator's
        // password generator uses the same values, so both agree.
        password_min_length: Some(spec.min_length()),
        password_max_length: Some(spec.max_length()),
        use_special_characters: Some(spec.special()),
        use_lower_case: Some(spec.lower()),
        use_upper_case: Some(spec.upper()),
        use_numbers: Some(spec.numbers()),
        max_versions: Some(spec.max_versions),
        number_of_retries: spec.number_of_retries,
        retry_interval: duration("retryInterval", &spec.retry_interval)?,
        delete_version_after: duration("deleteVersionAfter", &spec.delete_version_after)?,
        fallback_to_previous: spec.fallback_to_previous,
        max_concurrent_checkouts: spec.max_concurrent_checkouts,
        max_checkout_duration: duration("maxCheckoutDuration", &spec.max_checkout_duration)?,
        rotate_on_release: spec.rotate_on_release,
        verify_after_rotation: spec.verify_after_rotation,
        ..Default::default()
    };
    let unsupported: Vec<String> = policy
        .fields_unsupported_by(generation)
        .into_iter()
        .map(|f| format!("spec.{f}"))
        .collect();
    // Not sent to a server that would refuse it; the condition names it instead.
    match generation {
        PolicyGeneration::V34 => {
            policy.max_concurrent_checkouts = None;
            policy.max_checkout_duration = None;
            policy.rotate_on_release = None;
            policy.verify_after_rotation = None;
        }
        PolicyGeneration::V35 => {
            policy.delete_version_after = None;
            policy.fallback_to_previous = None;
        }
    }
    Ok((policy, unsupported))
}

/// Whether PrivX's policy matches the desired one in meaning: every field the desired policy
/// sets is equal (durations are compared as time spans, so `720h` equals `P30D`). Fields the
/// spec leaves out are PrivX's to default.
pub fn matches(desired: &PasswordPolicy, current: &PasswordPolicy) -> bool {
    fn same<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
        want.is_none() || want == have
    }
    desired.name == current.name
        && same(&desired.rotation_interval, &current.rotation_interval)
        && same(&desired.password_min_length, &current.password_min_length)
        && same(&desired.password_max_length, &current.password_max_length)
        && same(
            &desired.use_special_characters,
            &current.use_special_characters,
        )
        && same(&desired.use_lower_case, &current.use_lower_case)
        && same(&desired.use_upper_case, &current.use_upper_case)
        && same(&desired.use_numbers, &current.use_numbers)
        && same(&desired.max_versions, &current.max_versions)
        && same(&desired.number_of_retries, &current.number_of_retries)
        && same(&desired.retry_interval, &current.retry_interval)
        && same(&desired.delete_version_after, &current.delete_version_after)
        && same(&desired.fallback_to_previous, &current.fallback_to_previous)
        && same(
            &desired.max_concurrent_checkouts,
            &current.max_concurrent_checkouts,
        )
        && same(
            &desired.max_checkout_duration,
            &current.max_checkout_duration,
        )
        && same(&desired.rotate_on_release, &current.rotate_on_release)
        && same(
            &desired.verify_after_rotation,
            &current.verify_after_rotation,
        )
}

/// What to do in PrivX.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyAction {
    None,
    Create(PasswordPolicy),
    Update { id: String, policy: PasswordPolicy },
}

/// Why a write happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyCause {
    Created,
    Updated,
    DriftCorrected,
    Adopted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyPlan {
    pub action: PolicyAction,
    pub cause: Option<PolicyCause>,
    pub ownership: Ownership,
    /// The PrivX id, when known before the action.
    pub id: Option<String>,
}

/// What was found in PrivX.
#[derive(Clone, Debug)]
pub enum Found<'a> {
    /// No policy with the recorded id nor with the name.
    Nothing,
    /// The policy with the id status recorded.
    Recorded(&'a PasswordPolicy),
    /// A policy of that name that status does not record.
    ByName(&'a PasswordPolicy),
}

/// Decides what to do in PrivX.
pub fn plan_policy(
    desired: &PasswordPolicy,
    found: Found<'_>,
    status: Option<&PasswordPolicyStatus>,
    adopt: bool,
    generation_changed: bool,
    identity: Option<&str>,
) -> Result<PolicyPlan, Refusal> {
    match found {
        Found::Nothing => Ok(PolicyPlan {
            action: PolicyAction::Create(desired.clone()),
            cause: Some(PolicyCause::Created),
            ownership: Ownership::Created,
            id: None,
        }),
        Found::Recorded(current) => {
            // Status is a claim: PrivX's creator must confirm it, else it counts as found by name.
            if let Some(recorded) = status.and_then(|s| s.ownership)
                && !ownership::confirm(recorded, current, identity)
            {
                return plan_policy(
                    desired,
                    Found::ByName(current),
                    None,
                    adopt,
                    generation_changed,
                    identity,
                );
            }
            let id = current.id.clone().unwrap_or_default();
            let ownership = status
                .and_then(|s| s.ownership)
                .unwrap_or(Ownership::Created);
            if matches(desired, current) {
                return Ok(PolicyPlan {
                    action: PolicyAction::None,
                    cause: None,
                    ownership,
                    id: Some(id),
                });
            }
            Ok(PolicyPlan {
                action: PolicyAction::Update {
                    id: id.clone(),
                    policy: desired.clone(),
                },
                cause: Some(if generation_changed {
                    PolicyCause::Updated
                } else {
                    PolicyCause::DriftCorrected
                }),
                ownership,
                id: Some(id),
            })
        }
        Found::ByName(current) => {
            let id = current.id.clone().unwrap_or_default();
            if matches(desired, current)
                && crate::controller::core::may_be_ours(current.created_by.as_deref(), identity)
            {
                // Identical content, and PrivX names no other creator: we created it and
                // crashed before recording so. Claiming it loses nothing.
                return Ok(PolicyPlan {
                    action: PolicyAction::None,
                    cause: None,
                    ownership: Ownership::Created,
                    id: Some(id),
                });
            }
            if !adopt {
                return Err(Refusal::new(
                    reason::CONFLICT,
                    format!(
                        "PrivX password policy {:?} already exists (id {id}) and is not managed by this PasswordPolicy; set spec.adopt: true to take it over",
                        desired.name
                    ),
                ));
            }
            Ok(PolicyPlan {
                action: PolicyAction::Update {
                    id: id.clone(),
                    policy: desired.clone(),
                },
                cause: Some(PolicyCause::Adopted),
                ownership: Ownership::Adopted,
                id: Some(id),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec() -> PasswordPolicySpec {
        PasswordPolicySpec {
            rotation_interval: Some("720h".into()),
            retry_interval: Some("5m".into()),
            max_versions: 5,
            number_of_retries: Some(3),
            ..Default::default()
        }
    }

    fn desired(s: &PasswordPolicySpec, g: PolicyGeneration) -> PasswordPolicy {
        desired_policy(s, "db-rotation", g).unwrap().0
    }

    fn stored(p: &PasswordPolicy, id: &str) -> PasswordPolicy {
        PasswordPolicy {
            id: Some(id.into()),
            created: Some("2026-01-01T00:00:00Z".into()),
            ..p.clone()
        }
    }

    #[test]
    fn desired_policy_has_effective_defaults_and_parsed_durations() {
        let (p, unsupported) =
            desired_policy(&spec(), "db-rotation", PolicyGeneration::V34).unwrap();
        assert!(unsupported.is_empty());
        assert_eq!(p.rotation_interval, Some(Duration::from_secs(720 * 3600)));
        assert_eq!(p.password_min_length, Some(16));
        assert_eq!(p.password_max_length, Some(32));
        assert_eq!(p.use_numbers, Some(true));
        assert_eq!(p.max_versions, Some(5));
    }

    #[test]
    fn fields_of_the_other_generation_are_named_not_sent() {
        let mut s = spec();
        s.fallback_to_previous = Some(true);
        s.delete_version_after = Some("P30D".into());
        let (p, unsupported) = desired_policy(&s, "x", PolicyGeneration::V35).unwrap();
        assert_eq!(
            unsupported,
            ["spec.deleteVersionAfter", "spec.fallbackToPrevious"]
        );
        assert_eq!(p.fallback_to_previous, None);
        let (p, unsupported) = desired_policy(&s, "x", PolicyGeneration::V34).unwrap();
        assert!(unsupported.is_empty());
        assert_eq!(p.fallback_to_previous, Some(true));

        let mut s = spec();
        s.rotate_on_release = Some(true);
        s.max_checkout_duration = Some("PT8H".into());
        let (_, unsupported) = desired_policy(&s, "x", PolicyGeneration::V34).unwrap();
        assert_eq!(
            unsupported,
            ["spec.maxCheckoutDuration", "spec.rotateOnRelease"]
        );
    }

    #[test]
    fn bad_duration_names_the_field() {
        let mut s = spec();
        s.retry_interval = Some("soon".into());
        let e = desired_policy(&s, "x", PolicyGeneration::V34).unwrap_err();
        assert_eq!(e.reason, reason::INVALID_SPEC);
        assert!(e.message.starts_with("spec.retryInterval"), "{}", e.message);
    }

    #[test]
    fn create_when_absent() {
        let d = desired(&spec(), PolicyGeneration::V34);
        let plan = plan_policy(&d, Found::Nothing, None, false, false, None).unwrap();
        assert_eq!(plan.action, PolicyAction::Create(d));
        assert_eq!(plan.cause, Some(PolicyCause::Created));
    }

    #[test]
    fn same_meaning_is_a_no_op_whatever_the_spelling() {
        // The spec says 720h; PrivX 35 answers P30D: parsed, both are 30 days.
        let d = desired(&spec(), PolicyGeneration::V35);
        let mut current = stored(&d, "id-1");
        current.rotation_interval = crate::crd::duration::parse_duration("P30D").ok();
        current.retry_interval = crate::crd::duration::parse_duration("PT5M").ok();
        let status = PasswordPolicyStatus {
            id: Some("id-1".into()),
            ownership: Some(Ownership::Created),
            ..Default::default()
        };
        let plan = plan_policy(
            &d,
            Found::Recorded(&current),
            Some(&status),
            false,
            false,
            None,
        )
        .unwrap();
        assert_eq!(plan.action, PolicyAction::None);
    }

    #[test]
    fn fields_left_to_privx_do_not_count_as_drift() {
        let d = desired(&spec(), PolicyGeneration::V34);
        let mut current = stored(&d, "id-1");
        current.fallback_to_previous = Some(false);
        assert!(matches(&d, &current));
    }

    #[test]
    fn change_in_privx_is_drift_change_in_spec_is_update() {
        let d = desired(&spec(), PolicyGeneration::V34);
        let mut current = stored(&d, "id-1");
        current.max_versions = Some(99);
        let plan = plan_policy(&d, Found::Recorded(&current), None, false, false, None).unwrap();
        assert_eq!(plan.cause, Some(PolicyCause::DriftCorrected));
        assert!(matches!(plan.action, PolicyAction::Update { ref id, .. } if id == "id-1"));
        let plan = plan_policy(&d, Found::Recorded(&current), None, false, true, None).unwrap();
        assert_eq!(plan.cause, Some(PolicyCause::Updated));
    }

    #[test]
    fn unmanaged_policy_of_the_same_name_needs_adopt() {
        let d = desired(&spec(), PolicyGeneration::V34);
        let mut theirs = stored(&d, "id-9");
        theirs.max_versions = Some(1);
        let e = plan_policy(&d, Found::ByName(&theirs), None, false, false, None).unwrap_err();
        assert_eq!(e.reason, reason::CONFLICT);
        assert!(e.message.contains("adopt") && e.message.contains("id-9"));
        let plan = plan_policy(&d, Found::ByName(&theirs), None, true, false, None).unwrap();
        assert_eq!(plan.ownership, Ownership::Adopted);
        assert_eq!(plan.cause, Some(PolicyCause::Adopted));
        // Identical content (e.g. our own create before a crash) is claimed without a write.
        let same = stored(&d, "id-3");
        let plan = plan_policy(&d, Found::ByName(&same), None, false, false, None).unwrap();
        assert_eq!(plan.action, PolicyAction::None);
        assert_eq!(plan.id.as_deref(), Some("id-3"));
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn identical_policy_created_by_someone_else_needs_adopt() {
        let spec = PasswordPolicySpec {
            max_versions: 5,
            ..Default::default()
        };
        let (desired, _) = desired_policy(&spec, "p", PolicyGeneration::V34).unwrap();
        let mut theirs = desired.clone();
        theirs.id = Some("id-7".into());
        let plan_as_me = |p: &PasswordPolicy| {
            plan_policy(&desired, Found::ByName(p), None, false, false, Some("me"))
        };
        theirs.created_by = Some("a-human".into());
        let e = plan_as_me(&theirs).unwrap_err();
        assert_eq!(e.reason, reason::CONFLICT);
        theirs.created_by = Some("me".into());
        let plan = plan_as_me(&theirs).unwrap();
        assert_eq!(plan.action, PolicyAction::None);
        assert_eq!(plan.ownership, Ownership::Created);
    }
}
