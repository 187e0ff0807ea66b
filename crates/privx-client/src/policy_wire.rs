//! Both generations of PrivX's PasswordPolicy object (docs/privx-api.md section 3) and how to tell which
//! one a server speaks. Reading accepts either spelling of durations; writing uses the
//! generation's own and refuses fields it lacks.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{PasswordPolicy, PolicyGeneration, PrivxError};
use crate::duration::{format_go, format_iso, parse_duration};

/// The policy as it travels; durations are strings in the generation's spelling.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WirePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_special_characters: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_lower_case: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_upper_case: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_numbers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_versions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number_of_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delete_version_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fallback_to_previous: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrent_checkouts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_checkout_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotate_on_release: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_after_rotation: Option<bool>,
    #[serde(default, skip_serializing)]
    created: Option<String>,
    #[serde(default, skip_serializing)]
    updated: Option<String>,
    #[serde(default, skip_serializing)]
    created_by: Option<String>,
    #[serde(default, skip_serializing)]
    updated_by: Option<String>,
}

/// The generation's name in messages.
pub(crate) fn generation_name(generation: PolicyGeneration) -> &'static str {
    match generation {
        PolicyGeneration::V34 => "v34",
        PolicyGeneration::V35 => "v35",
    }
}

pub(crate) fn other(generation: PolicyGeneration) -> PolicyGeneration {
    match generation {
        PolicyGeneration::V34 => PolicyGeneration::V35,
        PolicyGeneration::V35 => PolicyGeneration::V34,
    }
}

/// The JSON body of a create or update in `generation`'s shape; `Unsupported` names the first
/// camelCase field the generation lacks (all of them, comma-separated, when several).
pub(crate) fn to_wire(
    policy: &PasswordPolicy,
    generation: PolicyGeneration,
) -> Result<Value, PrivxError> {
    let unsupported = policy.fields_unsupported_by(generation);
    if !unsupported.is_empty() {
        return Err(PrivxError::Unsupported {
            generation: generation_name(generation).into(),
            field: unsupported.join(", "),
        });
    }
    let fmt = |d: Option<Duration>| {
        d.map(|d| match generation {
            PolicyGeneration::V34 => format_go(d),
            PolicyGeneration::V35 => format_iso(d),
        })
    };
    let wire = WirePolicy {
        id: policy.id.clone(),
        name: policy.name.clone(),
        rotation_interval: fmt(policy.rotation_interval),
        password_min_length: policy.password_min_length,
        password_max_length: policy.password_max_length,
        use_special_characters: policy.use_special_characters,
        use_lower_case: policy.use_lower_case,
        use_upper_case: policy.use_upper_case,
        use_numbers: policy.use_numbers,
        max_versions: policy.max_versions,
        number_of_retries: policy.number_of_retries,
        retry_interval: fmt(policy.retry_interval),
        delete_version_after: fmt(policy.delete_version_after),
        fallback_to_previous: policy.fallback_to_previous,
        max_concurrent_checkouts: policy.max_concurrent_checkouts,
        max_checkout_duration: fmt(policy.max_checkout_duration),
        rotate_on_release: policy.rotate_on_release,
        verify_after_rotation: policy.verify_after_rotation,
        ..Default::default()
    };
    Ok(serde_json::to_value(wire).expect("a policy always serializes"))
}

/// A policy as the server sent it, in either generation. The error names the field at fault.
pub(crate) fn from_wire(value: Value) -> Result<PasswordPolicy, String> {
    let wire: WirePolicy = serde_json::from_value(value).map_err(|e| {
        format!(
            "the password policy is not the expected JSON ({:?} error)",
            e.classify()
        )
    })?;
    let dur = |field: &str, v: Option<String>| -> Result<Option<Duration>, String> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => parse_duration(text)
                .map(Some)
                .map_err(|e| format!("password policy field {field}: {e}")),
        }
    };
    Ok(PasswordPolicy {
        id: wire.id,
        name: wire.name,
        rotation_interval: dur("rotation_interval", wire.rotation_interval)?,
        password_min_length: wire.password_min_length,
        password_max_length: wire.password_max_length,
        use_special_characters: wire.use_special_characters,
        use_lower_case: wire.use_lower_case,
        use_upper_case: wire.use_upper_case,
        use_numbers: wire.use_numbers,
        max_versions: wire.max_versions,
        number_of_retries: wire.number_of_retries,
        retry_interval: dur("retry_interval", wire.retry_interval)?,
        delete_version_after: dur("delete_version_after", wire.delete_version_after)?,
        fallback_to_previous: wire.fallback_to_previous,
        max_concurrent_checkouts: wire.max_concurrent_checkouts,
        max_checkout_duration: dur("max_checkout_duration", wire.max_checkout_duration)?,
        rotate_on_release: wire.rotate_on_release,
        verify_after_rotation: wire.verify_after_rotation,
        created: wire.created,
        updated: wire.updated,
        created_by: wire.created_by,
        updated_by: wire.updated_by,
    })
}

/// The policy list in any of the shapes seen: `{count, items}`, the doc page's
/// `[{count, items}]`, or a bare array of policies.
pub(crate) fn policy_list_items(body: Value) -> Option<Vec<Value>> {
    match body {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => Some(items),
            Some(Value::Null) | None => Some(Vec::new()),
            Some(_) => None,
        },
        Value::Array(items) => {
            let wrapped = items.len() == 1
                && items[0].get("items").is_some()
                && items[0].get("name").is_none();
            if wrapped {
                policy_list_items(items.into_iter().next().expect("one element"))
            } else {
                Some(items)
            }
        }
        Value::Null => Some(Vec::new()),
        _ => None,
    }
}

const V34_ONLY: [&str; 2] = ["delete_version_after", "fallback_to_previous"];
const V35_ONLY: [&str; 4] = [
    "max_concurrent_checkouts",
    "max_checkout_duration",
    "rotate_on_release",
    "verify_after_rotation",
];
const DURATIONS: [&str; 4] = [
    "rotation_interval",
    "retry_interval",
    "delete_version_after",
    "max_checkout_duration",
];

/// The generation a listed policy's shape shows, if any: generation-only fields, else the
/// spelling of its durations.
pub(crate) fn generation_from_policy(policy: &Value) -> Option<PolicyGeneration> {
    let has = |field: &str| policy.get(field).is_some_and(|v| !v.is_null());
    if V35_ONLY.iter().any(|f| has(f)) {
        return Some(PolicyGeneration::V35);
    }
    if V34_ONLY.iter().any(|f| has(f)) {
        return Some(PolicyGeneration::V34);
    }
    DURATIONS.iter().find_map(|f| {
        let text = policy.get(*f)?.as_str()?.trim();
        if text.is_empty() {
            None
        } else if text.starts_with('P') {
            Some(PolicyGeneration::V35)
        } else {
            Some(PolicyGeneration::V34)
        }
    })
}

/// The generation a service status answer names through its version, if any
/// (`"version": "35.1.0"`, or `app_version` / `privx_version`, or `status.version`).
pub(crate) fn generation_from_status(status: &Value) -> Option<PolicyGeneration> {
    let version = ["version", "app_version", "privx_version"]
        .iter()
        .find_map(|k| status.get(*k).and_then(Value::as_str))
        .or_else(|| {
            status
                .get("status")
                .and_then(|s| s.get("version"))
                .and_then(Value::as_str)
        })?;
    let major: u32 = version
        .trim()
        .trim_start_matches(['v', 'V'])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    match major {
        0 => None, // a development build says nothing
        1..=34 => Some(PolicyGeneration::V34),
        _ => Some(PolicyGeneration::V35),
    }
}

/// Whether a policy body carries a duration (whose spelling tells the generation).
pub(crate) fn has_duration(body: &Value) -> bool {
    DURATIONS.iter().any(|f| {
        body.get(*f)
            .and_then(Value::as_str)
            .is_some_and(|d| !d.trim().is_empty())
    })
}

/// Whether a refusal's `property` hints that the other generation was expected.
pub(crate) fn property_suggests_other_generation(property: &str) -> bool {
    let p = property.trim();
    DURATIONS.contains(&p) || V34_ONLY.contains(&p) || V35_ONLY.contains(&p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> PasswordPolicy {
        PasswordPolicy {
            name: "p".into(),
            rotation_interval: Some(Duration::from_secs(30 * 86400)),
            retry_interval: Some(Duration::from_secs(300)),
            max_versions: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn writes_each_generations_durations() {
        let v34 = to_wire(&sample(), PolicyGeneration::V34).unwrap();
        assert_eq!(v34["rotation_interval"], json!("720h0m0s"));
        assert_eq!(v34["retry_interval"], json!("5m0s"));
        let v35 = to_wire(&sample(), PolicyGeneration::V35).unwrap();
        assert_eq!(v35["rotation_interval"], json!("P30D"));
        assert_eq!(v35["retry_interval"], json!("PT5M"));
        assert!(v35.get("created").is_none());
        assert!(v35.get("fallback_to_previous").is_none());
    }

    #[test]
    fn refuses_fields_the_generation_lacks() {
        let mut p = sample();
        p.fallback_to_previous = Some(true);
        match to_wire(&p, PolicyGeneration::V35) {
            Err(PrivxError::Unsupported { field, generation }) => {
                assert_eq!(field, "fallbackToPrevious");
                assert_eq!(generation, "v35");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(to_wire(&p, PolicyGeneration::V34).is_ok());
        let mut p = sample();
        p.rotate_on_release = Some(true);
        assert!(matches!(
            to_wire(&p, PolicyGeneration::V34),
            Err(PrivxError::Unsupported { field, .. }) if field == "rotateOnRelease"
        ));
    }

    #[test]
    fn reads_either_spelling() {
        let a = from_wire(json!({"id":"1","name":"p","rotation_interval":"720h0m0s","retry_interval":"0h5m0s","max_versions":5})).unwrap();
        let b = from_wire(json!({"id":"1","name":"p","rotation_interval":"P30D","retry_interval":"PT5M","max_versions":5})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rotation_interval, Some(Duration::from_secs(30 * 86400)));
        let err = from_wire(json!({"name":"p","retry_interval":"often"})).unwrap_err();
        assert!(err.contains("retry_interval"), "{err}");
    }

    #[test]
    fn reads_answers_with_every_field_zero_filled() {
        // A server that answers every field of its generation, unset ones with zero values
        // ("" for durations), as PrivX's Go SDK models them: "" is "not set", not an error.
        let v35 = json!({"id":"1","name":"p","rotation_interval":"P30D","retry_interval":"",
            "password_min_length":0,"password_max_length":0,"use_special_characters":false,
            "use_lower_case":false,"use_upper_case":false,"use_numbers":false,"max_versions":5,
            "number_of_retries":0,"max_concurrent_checkouts":0,"max_checkout_duration":"",
            "rotate_on_release":false,"verify_after_rotation":false});
        let policy = from_wire(v35.clone()).unwrap();
        assert_eq!(
            policy.rotation_interval,
            Some(Duration::from_secs(30 * 86400))
        );
        assert_eq!(policy.retry_interval, None);
        assert_eq!(policy.max_checkout_duration, None);
        assert_eq!(policy.max_concurrent_checkouts, Some(0));
        assert_eq!(generation_from_policy(&v35), Some(PolicyGeneration::V35));
        let v34 = json!({"name":"p","rotation_interval":"","retry_interval":"",
            "delete_version_after":"","fallback_to_previous":false,"max_versions":5});
        let policy = from_wire(v34.clone()).unwrap();
        assert_eq!(policy.delete_version_after, None);
        assert_eq!(generation_from_policy(&v34), Some(PolicyGeneration::V34));
        // Without generation-only fields, empty durations say nothing about the generation.
        assert_eq!(
            generation_from_policy(&json!({"rotation_interval":"","retry_interval":"5m0s"})),
            Some(PolicyGeneration::V34)
        );
    }

    #[test]
    fn accepts_every_list_shape() {
        let p = json!({"name":"p"});
        for body in [
            json!({"count":1,"items":[p.clone()]}),
            json!([{"count":1,"items":[p.clone()]}]),
            json!([p.clone()]),
        ] {
            assert_eq!(policy_list_items(body).unwrap(), vec![p.clone()]);
        }
        assert_eq!(
            policy_list_items(json!({"count":0})).unwrap(),
            Vec::<Value>::new()
        );
        assert!(policy_list_items(json!("nope")).is_none());
    }

    #[test]
    fn detects_generation_from_shape_and_status() {
        assert_eq!(
            generation_from_policy(&json!({"rotation_interval":"P30D"})),
            Some(PolicyGeneration::V35)
        );
        assert_eq!(
            generation_from_policy(&json!({"rotation_interval":"720h0m0s"})),
            Some(PolicyGeneration::V34)
        );
        assert_eq!(
            generation_from_policy(&json!({"fallback_to_previous":false})),
            Some(PolicyGeneration::V34)
        );
        assert_eq!(
            generation_from_policy(&json!({"rotate_on_release":true,"rotation_interval":"1h"})),
            Some(PolicyGeneration::V35)
        );
        assert_eq!(generation_from_policy(&json!({"name":"p"})), None);
        assert_eq!(
            generation_from_status(&json!({"version":"35.2.1"})),
            Some(PolicyGeneration::V35)
        );
        assert_eq!(
            generation_from_status(&json!({"app_version":"v34.0"})),
            Some(PolicyGeneration::V34)
        );
        assert_eq!(generation_from_status(&json!({"status":"ok"})), None);
        assert_eq!(generation_from_status(&json!({"version":"devel"})), None);
    }

    #[test]
    fn a_body_with_a_duration_shows_its_generation() {
        assert!(has_duration(
            &to_wire(&sample(), PolicyGeneration::V35).unwrap()
        ));
        let mut no_duration = PasswordPolicy {
            name: "p".into(),
            max_versions: Some(1),
            ..Default::default()
        };
        no_duration.rotate_on_release = Some(true);
        assert!(!has_duration(
            &to_wire(&no_duration, PolicyGeneration::V35).unwrap()
        ));
        assert!(!has_duration(&json!({"rotation_interval": ""})));
    }

    #[test]
    fn generation_hints_in_properties() {
        assert!(property_suggests_other_generation("rotation_interval"));
        assert!(property_suggests_other_generation("fallback_to_previous"));
        assert!(!property_suggests_other_generation("name"));
    }
}
