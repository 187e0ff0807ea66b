//! Password-policy bodies of both generations (docs/privx-api.md section 3): which fields each generation
//! has, strict validation of a request body, duration spellings (Go for v34, ISO 8601 for v35)
//! and translation between them (used for seed policies and the normalising option), and the
//! fields of an answer.

use serde_json::{Map, Value};

use super::error::ApiError;
use super::{PolicyUnknownFields, PolicyUnsetFields, SimPolicyGeneration};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Text,
    Count,
    Flag,
    Duration,
}

const COMMON_FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("rotation_interval", Kind::Duration),
    ("password_min_length", Kind::Count),
    ("password_max_length", Kind::Count),
    ("use_special_characters", Kind::Flag),
    ("use_lower_case", Kind::Flag),
    ("use_upper_case", Kind::Flag),
    ("use_numbers", Kind::Flag),
    ("max_versions", Kind::Count),
    ("number_of_retries", Kind::Count),
    ("retry_interval", Kind::Duration),
];
const V34_FIELDS: &[(&str, Kind)] = &[
    ("delete_version_after", Kind::Duration),
    ("fallback_to_previous", Kind::Flag),
];
const V35_FIELDS: &[(&str, Kind)] = &[
    ("max_concurrent_checkouts", Kind::Count),
    ("max_checkout_duration", Kind::Duration),
    ("rotate_on_release", Kind::Flag),
    ("verify_after_rotation", Kind::Flag),
];
/// Set by the server; accepted in requests and ignored.
pub(crate) const SERVER_SET_FIELDS: &[&str] =
    &["id", "created", "updated", "created_by", "updated_by"];

fn own_fields(generation: SimPolicyGeneration) -> &'static [(&'static str, Kind)] {
    match generation {
        SimPolicyGeneration::V34 => V34_FIELDS,
        SimPolicyGeneration::V35 => V35_FIELDS,
    }
}

fn other_fields(generation: SimPolicyGeneration) -> &'static [(&'static str, Kind)] {
    match generation {
        SimPolicyGeneration::V34 => V35_FIELDS,
        SimPolicyGeneration::V35 => V34_FIELDS,
    }
}

fn kind_of(field: &str, generation: SimPolicyGeneration) -> Option<Kind> {
    COMMON_FIELDS
        .iter()
        .chain(own_fields(generation))
        .find(|(name, _)| *name == field)
        .map(|(_, kind)| *kind)
}

/// Whether `value` of `field` means "not set": `null`, or `""` for a duration (the zero value
/// the vendor's Go SDK sends for every duration it has no value for).
fn is_unset(field: &str, value: &Value, generation: SimPolicyGeneration) -> bool {
    value.is_null()
        || (value.as_str() == Some("") && kind_of(field, generation) == Some(Kind::Duration))
}

/// Checks a request body against `generation` and returns the policy fields to store (server-set
/// fields, unset values and, with [`PolicyUnknownFields::Ignore`], unknown fields removed).
/// Errors name the field at fault in `property`.
pub(crate) fn validate_policy(
    body: &Value,
    generation: SimPolicyGeneration,
    unknown_fields: PolicyUnknownFields,
) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(object) = body else {
        return Err(ApiError::new(
            400,
            "INVALID_REQUEST_DATA",
            "password policy must be a JSON object",
        ));
    };
    let mut fields = Map::new();
    for (field, value) in object {
        if SERVER_SET_FIELDS.contains(&field.as_str()) || is_unset(field, value, generation) {
            continue;
        }
        let Some(kind) = kind_of(field, generation) else {
            if unknown_fields == PolicyUnknownFields::Ignore {
                continue;
            }
            let message = if other_fields(generation).iter().any(|(n, _)| n == field) {
                format!("field {field} does not exist in this PrivX version's password policies")
            } else {
                format!("unknown field {field}")
            };
            return Err(ApiError::bad_request(
                "INVALID_REQUEST_DATA",
                field,
                message,
            ));
        };
        check_kind(field, kind, value, generation)?;
        fields.insert(field.clone(), value.clone());
    }
    match fields.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() => {}
        _ => {
            return Err(ApiError::bad_request(
                "REQUIRED_VALUE_MISSING",
                "name",
                "name is required",
            ));
        }
    }
    match fields.get("max_versions").and_then(Value::as_u64) {
        None => {
            return Err(ApiError::bad_request(
                "REQUIRED_VALUE_MISSING",
                "max_versions",
                "max_versions is required",
            ));
        }
        Some(0) => {
            return Err(ApiError::bad_request(
                "VALUE_OUT_OF_BOUNDS",
                "max_versions",
                "max_versions must be at least 1",
            ));
        }
        Some(_) => {}
    }
    let min = fields.get("password_min_length").and_then(Value::as_u64);
    let max = fields.get("password_max_length").and_then(Value::as_u64);
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return Err(ApiError::bad_request(
            "VALUE_OUT_OF_BOUNDS",
            "password_min_length",
            "password_min_length is greater than password_max_length",
        ));
    }
    Ok(fields)
}

fn check_kind(
    field: &str,
    kind: Kind,
    value: &Value,
    generation: SimPolicyGeneration,
) -> Result<(), ApiError> {
    let type_error = |expected: &str| {
        ApiError::bad_request(
            "VALUE_INCORRECT_TYPE",
            field,
            format!("{field} must be {expected}"),
        )
    };
    match kind {
        Kind::Text if !value.is_string() => Err(type_error("a string")),
        Kind::Flag if !value.is_boolean() => Err(type_error("a boolean")),
        Kind::Count if value.as_u64().is_none() => Err(type_error("a non-negative integer")),
        Kind::Duration => {
            let Some(text) = value.as_str() else {
                return Err(type_error("a duration string"));
            };
            let valid = match generation {
                SimPolicyGeneration::V34 => parse_go_duration(text).is_some(),
                SimPolicyGeneration::V35 => parse_iso_duration(text).is_some(),
            };
            if valid {
                Ok(())
            } else {
                let expected = match generation {
                    SimPolicyGeneration::V34 => "a Go duration such as 720h0m0s",
                    SimPolicyGeneration::V35 => "an ISO 8601 duration such as P30D",
                };
                Err(ApiError::bad_request(
                    "VALUE_INCORRECT_FORMAT",
                    field,
                    format!("{field} must be {expected}"),
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Rewrites durations into `generation`'s canonical spelling (either spelling accepted on input)
/// and drops fields `generation` does not have. Fails on an unparsable duration.
pub(crate) fn translate_policy(
    fields: &Map<String, Value>,
    generation: SimPolicyGeneration,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (field, value) in fields {
        if SERVER_SET_FIELDS.contains(&field.as_str()) {
            continue;
        }
        if other_fields(generation).iter().any(|(n, _)| n == field)
            || is_unset(field, value, generation)
        {
            continue;
        }
        if kind_of(field, generation) == Some(Kind::Duration)
            && let Some(text) = value.as_str()
        {
            let seconds = parse_go_duration(text)
                .or_else(|| parse_iso_duration(text))
                .ok_or_else(|| format!("{field}: {text:?} is not a duration"))?;
            out.insert(
                field.clone(),
                Value::String(format_duration(seconds, generation)),
            );
            continue;
        }
        out.insert(field.clone(), value.clone());
    }
    Ok(out)
}

/// The stored fields as an answer shows them: with [`PolicyUnsetFields::Zero`] every field of
/// `generation` is present, unset ones with their zero value (`0`, `false`, `""`).
pub(crate) fn answer_fields(
    stored: &Map<String, Value>,
    generation: SimPolicyGeneration,
    unset_fields: PolicyUnsetFields,
) -> Map<String, Value> {
    let mut out = stored.clone();
    if unset_fields == PolicyUnsetFields::Zero {
        for (field, kind) in COMMON_FIELDS.iter().chain(own_fields(generation)) {
            let zero = match kind {
                Kind::Text | Kind::Duration => Value::String(String::new()),
                Kind::Count => Value::from(0),
                Kind::Flag => Value::Bool(false),
            };
            out.entry(*field).or_insert(zero);
        }
    }
    out
}

/// The canonical spelling of a whole number of seconds in `generation`.
pub(crate) fn format_duration(seconds: u64, generation: SimPolicyGeneration) -> String {
    match generation {
        SimPolicyGeneration::V34 => format_go(seconds),
        SimPolicyGeneration::V35 => format_iso(seconds),
    }
}

/// Go's `time.Duration.String()` for whole seconds: `720h0m0s`, `5m0s`, `30s`, `0s`.
fn format_go(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// ISO 8601: `P30D`, `PT5M`, `P1DT2H`, `PT0S`.
fn format_iso(seconds: u64) -> String {
    if seconds == 0 {
        return "PT0S".to_string();
    }
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if h > 0 || m > 0 || s > 0 {
        out.push('T');
        for (n, unit) in [(h, 'H'), (m, 'M'), (s, 'S')] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
    }
    out
}

/// Parses a Go duration (`720h0m0s`, `0h5m0s`, `1.5h`, `300ms`, `0`) into whole seconds
/// (fractions truncated). Signs are refused: policy durations are never negative.
pub(crate) fn parse_go_duration(text: &str) -> Option<u64> {
    if text == "0" {
        return Some(0);
    }
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += value * scale;
    }
    Some((nanos / 1e9) as u64)
}

/// Parses an ISO 8601 duration (`P30D`, `PT5M`, `P1Y2M3W4DT5H6M7.5S`) into whole seconds; years
/// count 365 days and months 30 (only used to translate spellings, never for time arithmetic).
pub(crate) fn parse_iso_duration(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => {
            if time.is_empty() {
                return None;
            }
            (date, Some(time))
        }
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut seconds = 0f64;
    let mut components = 0;
    for (part, units) in [
        (
            date,
            &[
                ('Y', 365.0 * 86_400.0),
                ('M', 30.0 * 86_400.0),
                ('W', 7.0 * 86_400.0),
                ('D', 86_400.0),
            ][..],
        ),
        (
            time.unwrap_or(""),
            &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..],
        ),
    ] {
        let mut rest = part;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let number = &rest[..number_len];
            if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
                return None;
            }
            let value: f64 = number.parse().ok()?;
            let unit = rest[number_len..].chars().next()?;
            // Units must come in order, each at most once.
            let position = units[next_unit..].iter().position(|(u, _)| *u == unit)?;
            let (_, scale) = units[next_unit + position];
            if number.contains('.') && unit != 'S' {
                return None;
            }
            next_unit += position + 1;
            seconds += value * scale;
            components += 1;
            rest = &rest[number_len + unit.len_utf8()..];
        }
    }
    if components == 0 {
        return None;
    }
    Some(seconds as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REFUSE: PolicyUnknownFields = PolicyUnknownFields::Refuse;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("720h0m0s"), Some(720 * 3600));
        assert_eq!(parse_go_duration("0h5m0s"), Some(300));
        assert_eq!(parse_go_duration("1.5h"), Some(5400));
        assert_eq!(parse_go_duration("0"), Some(0));
        for bad in ["", "P30D", "5", "h", "5x", "-5m", "1..5h"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_durations_parse() {
        assert_eq!(parse_iso_duration("P30D"), Some(30 * 86_400));
        assert_eq!(parse_iso_duration("PT5M"), Some(300));
        assert_eq!(parse_iso_duration("P1DT2H"), Some(86_400 + 7200));
        assert_eq!(parse_iso_duration("PT0.5S"), Some(0));
        for bad in [
            "", "P", "PT", "720h0m0s", "P5", "PT5D", "P1D2D", "PT1M1H", "p30d",
        ] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_format_canonically() {
        assert_eq!(format_go(720 * 3600), "720h0m0s");
        assert_eq!(format_go(300), "5m0s");
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_iso(30 * 86_400), "P30D");
        assert_eq!(format_iso(300), "PT5M");
        assert_eq!(format_iso(86_400 + 3661), "P1DT1H1M1S");
        assert_eq!(format_iso(0), "PT0S");
    }

    #[test]
    fn wrong_generation_duration_names_the_field() {
        let body = json!({"name": "p", "max_versions": 3, "rotation_interval": "720h0m0s"});
        let error = validate_policy(&body, SimPolicyGeneration::V35, REFUSE).unwrap_err();
        assert_eq!(error.code, "VALUE_INCORRECT_FORMAT");
        assert_eq!(error.property.as_deref(), Some("rotation_interval"));
        assert!(validate_policy(&body, SimPolicyGeneration::V34, REFUSE).is_ok());
    }

    #[test]
    fn other_generation_field_is_refused() {
        let body = json!({"name": "p", "max_versions": 3, "rotate_on_release": true});
        let error = validate_policy(&body, SimPolicyGeneration::V34, REFUSE).unwrap_err();
        assert_eq!(error.code, "INVALID_REQUEST_DATA");
        assert_eq!(error.property.as_deref(), Some("rotate_on_release"));
    }

    #[test]
    fn required_fields_are_checked() {
        let error = validate_policy(
            &json!({"max_versions": 3}),
            SimPolicyGeneration::V34,
            REFUSE,
        )
        .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.property.as_deref()),
            ("REQUIRED_VALUE_MISSING", Some("name"))
        );
        let error =
            validate_policy(&json!({"name": "x"}), SimPolicyGeneration::V34, REFUSE).unwrap_err();
        assert_eq!(error.property.as_deref(), Some("max_versions"));
        let error = validate_policy(
            &json!({"name": "x", "max_versions": "3"}),
            SimPolicyGeneration::V34,
            REFUSE,
        )
        .unwrap_err();
        assert_eq!(error.code, "VALUE_INCORRECT_TYPE");
    }

    #[test]
    fn translation_converts_durations_and_drops_foreign_fields() {
        let fields = json!({"name": "p", "rotation_interval": "720h0m0s",
            "delete_version_after": "1h", "retry_interval": "PT5M"});
        let v35 = translate_policy(fields.as_object().unwrap(), SimPolicyGeneration::V35).unwrap();
        assert_eq!(v35["rotation_interval"], "P30D");
        assert_eq!(v35["retry_interval"], "PT5M");
        assert!(!v35.contains_key("delete_version_after"));
        let v34 = translate_policy(&v35, SimPolicyGeneration::V34).unwrap();
        assert_eq!(v34["rotation_interval"], "720h0m0s");
        assert_eq!(v34["retry_interval"], "5m0s");
    }

    #[test]
    fn empty_durations_are_unset_in_both_generations() {
        for generation in [SimPolicyGeneration::V34, SimPolicyGeneration::V35] {
            let body = json!({"name": "p", "max_versions": 3, "rotation_interval": "",
                "retry_interval": ""});
            let fields = validate_policy(&body, generation, REFUSE).unwrap();
            assert!(!fields.contains_key("rotation_interval"), "{generation:?}");
            assert!(!fields.contains_key("retry_interval"), "{generation:?}");
        }
        let body = json!({"name": "p", "max_versions": 3, "max_checkout_duration": ""});
        let fields = validate_policy(&body, SimPolicyGeneration::V35, REFUSE).unwrap();
        assert!(!fields.contains_key("max_checkout_duration"));
        // Only durations: an empty name is still missing, and "" is no number.
        let error = validate_policy(
            &json!({"name": "", "max_versions": 3}),
            SimPolicyGeneration::V35,
            REFUSE,
        )
        .unwrap_err();
        assert_eq!(error.property.as_deref(), Some("name"));
        let error = validate_policy(
            &json!({"name": "p", "max_versions": 3, "max_concurrent_checkouts": ""}),
            SimPolicyGeneration::V35,
            REFUSE,
        )
        .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.property.as_deref()),
            ("VALUE_INCORRECT_TYPE", Some("max_concurrent_checkouts"))
        );
        // A v35 field sent to v34 is unknown there, empty or not.
        let error = validate_policy(&body, SimPolicyGeneration::V34, REFUSE).unwrap_err();
        assert_eq!(error.property.as_deref(), Some("max_checkout_duration"));
    }

    #[test]
    fn ignored_unknown_fields_are_not_stored() {
        let body = json!({"name": "p", "max_versions": 3, "rotate_on_release": true,
            "max_checkout_duration": "PT1H", "colour": "blue", "fallback_to_previous": true});
        let error = validate_policy(&body, SimPolicyGeneration::V34, REFUSE).unwrap_err();
        assert_eq!(error.code, "INVALID_REQUEST_DATA");
        let fields =
            validate_policy(&body, SimPolicyGeneration::V34, PolicyUnknownFields::Ignore).unwrap();
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["fallback_to_previous", "max_versions", "name"]);
        // Ignoring names does not loosen the checks of known fields.
        let bad = json!({"name": "p", "max_versions": 3, "rotation_interval": "P30D",
            "rotate_on_release": true});
        let error = validate_policy(&bad, SimPolicyGeneration::V34, PolicyUnknownFields::Ignore)
            .unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.property.as_deref()),
            ("VALUE_INCORRECT_FORMAT", Some("rotation_interval"))
        );
    }

    #[test]
    fn answers_carry_every_field_of_the_generation() {
        let stored = validate_policy(
            &json!({"name": "p", "max_versions": 3, "rotation_interval": "P30D"}),
            SimPolicyGeneration::V35,
            REFUSE,
        )
        .unwrap();
        let answer = answer_fields(&stored, SimPolicyGeneration::V35, PolicyUnsetFields::Zero);
        let mut expected: Vec<&str> = COMMON_FIELDS
            .iter()
            .chain(V35_FIELDS)
            .map(|(n, _)| *n)
            .collect();
        expected.sort_unstable();
        let mut names: Vec<&str> = answer.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(answer["rotation_interval"], "P30D");
        assert_eq!(answer["max_checkout_duration"], "");
        assert_eq!(answer["max_concurrent_checkouts"], 0);
        assert_eq!(answer["rotate_on_release"], false);
        // Written back unchanged, the zero-filled answer stores what was stored.
        let again =
            validate_policy(&Value::Object(answer), SimPolicyGeneration::V35, REFUSE).unwrap();
        assert_eq!(
            again.get("rotation_interval"),
            stored.get("rotation_interval")
        );
        assert!(!again.contains_key("max_checkout_duration"));
        let v34 = answer_fields(&stored, SimPolicyGeneration::V34, PolicyUnsetFields::Zero);
        assert_eq!(v34["delete_version_after"], "");
        assert!(!v34.contains_key("max_checkout_duration"));
        assert_eq!(
            answer_fields(&stored, SimPolicyGeneration::V35, PolicyUnsetFields::Omit),
            stored
        );
    }

    #[test]
    fn translation_drops_empty_durations() {
        let fields = json!({"name": "p", "rotation_interval": "", "retry_interval": "5m"});
        let v35 = translate_policy(fields.as_object().unwrap(), SimPolicyGeneration::V35).unwrap();
        assert!(!v35.contains_key("rotation_interval"));
        assert_eq!(v35["retry_interval"], "PT5M");
    }
}
