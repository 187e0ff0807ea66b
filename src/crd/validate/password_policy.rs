//! The semantic checks of a PasswordPolicy's spec.

use super::{FieldError, at_most_chars, length_between, within};
use crate::crd::PasswordPolicySpec;
use crate::crd::duration::{DURATION_CEL_MESSAGE, MAX_DURATION_LENGTH, parse_duration};
use crate::crd::password_policy::{DEFAULT_MAX_LENGTH, DEFAULT_MIN_LENGTH, MAX_PASSWORD_LENGTH};

/// Problems with a PasswordPolicy's spec; empty when it is valid.
pub fn validate_password_policy(spec: &PasswordPolicySpec) -> Vec<FieldError> {
    let mut out = Vec::new();

    if let Some(name) = &spec.name {
        length_between("spec.name", name, 1, 256, &mut out);
    }

    for (field, value) in [
        ("rotationInterval", &spec.rotation_interval),
        ("deleteVersionAfter", &spec.delete_version_after),
        ("retryInterval", &spec.retry_interval),
        ("maxCheckoutDuration", &spec.max_checkout_duration),
    ] {
        let Some(value) = value else { continue };
        if value.chars().count() > MAX_DURATION_LENGTH {
            at_most_chars(
                &format!("spec.{field}"),
                value,
                MAX_DURATION_LENGTH,
                &mut out,
            );
            continue;
        }
        match parse_duration(value) {
            Err(_) => out.push(FieldError::new(
                format!("spec.{field}"),
                format!("spec.{field} {}", DURATION_CEL_MESSAGE),
            )),
            Ok(d) if d.is_zero() && field == "rotationInterval" => out.push(FieldError::new(
                "spec.rotationInterval",
                "spec.rotationInterval must be longer than zero",
            )),
            Ok(_) => {}
        }
    }

    for (field, value) in [
        ("spec.passwordMinLength", spec.password_min_length),
        ("spec.passwordMaxLength", spec.password_max_length),
    ] {
        if let Some(value) = value {
            within(field, value, 1, MAX_PASSWORD_LENGTH, &mut out);
        }
    }
    match (spec.password_min_length, spec.password_max_length) {
        (Some(min), Some(max)) if min > max => out.push(FieldError::new(
            "spec.passwordMinLength",
            "spec.passwordMinLength must not exceed spec.passwordMaxLength",
        )),
        (None, Some(max)) if max < DEFAULT_MIN_LENGTH => out.push(FieldError::new(
            "spec.passwordMaxLength",
            format!("spec.passwordMaxLength is below the default minimum length {DEFAULT_MIN_LENGTH}: set spec.passwordMinLength too"),
        )),
        (Some(min), None) if min > DEFAULT_MAX_LENGTH => out.push(FieldError::new(
            "spec.passwordMinLength",
            format!("spec.passwordMinLength is above the default maximum length {DEFAULT_MAX_LENGTH}: set spec.passwordMaxLength too"),
        )),
        _ => {}
    }

    let classes = [spec.lower(), spec.upper(), spec.numbers(), spec.special()]
        .into_iter()
        .filter(|enabled| *enabled)
        .count() as u32;
    if classes == 0 {
        out.push(FieldError::new(
            "spec",
            "at least one character class (useLowerCase, useUpperCase, useNumbers, useSpecialCharacters) must be enabled",
        ));
    } else if spec.min_length() < classes {
        out.push(FieldError::new(
            "spec.passwordMinLength",
            "spec.passwordMinLength is shorter than the number of enabled character classes",
        ));
    }

    within("spec.maxVersions", spec.max_versions, 1, 1000, &mut out);
    if let Some(retries) = spec.number_of_retries {
        within("spec.numberOfRetries", retries, 0, 100, &mut out);
    }
    if let Some(checkouts) = spec.max_concurrent_checkouts {
        within(
            "spec.maxConcurrentCheckouts",
            checkouts,
            0,
            10_000,
            &mut out,
        );
    }

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> PasswordPolicySpec {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn password_policy_cases() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("maxVersions: 5", &[]),
            (
                "maxVersions: 5\nrotationInterval: P30D\nretryInterval: 5m\ndeleteVersionAfter: 720h0m0s\nmaxCheckoutDuration: PT8H\npasswordMinLength: 4\npasswordMaxLength: 8\nnumberOfRetries: 3",
                &[],
            ),
            ("maxVersions: 0", &[("spec.maxVersions", "from 1 to 1000")]),
            (
                "maxVersions: 1001",
                &[("spec.maxVersions", "from 1 to 1000")],
            ),
            (
                "maxVersions: 1\nnumberOfRetries: 101",
                &[("spec.numberOfRetries", "from 0 to 100")],
            ),
            (
                "maxVersions: 1\nmaxConcurrentCheckouts: 10001",
                &[("spec.maxConcurrentCheckouts", "from 0 to 10000")],
            ),
            ("maxVersions: 1\nname: ''", &[("spec.name", "1 to 256")]),
            (
                "maxVersions: 1\nretryInterval: 1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s",
                &[("spec.retryInterval", "at most 32 characters (is 34)")],
            ),
            (
                "maxVersions: 1\nrotationInterval: 30 days",
                &[("spec.rotationInterval", "must be a duration")],
            ),
            (
                "maxVersions: 1\nrotationInterval: 0s",
                &[("spec.rotationInterval", "longer than zero")],
            ),
            (
                "maxVersions: 1\nretryInterval: P1M",
                &[("spec.retryInterval", "must be a duration")],
            ),
            (
                "maxVersions: 1\ndeleteVersionAfter: x",
                &[("spec.deleteVersionAfter", "must be a duration")],
            ),
            (
                "maxVersions: 1\nmaxCheckoutDuration: PT",
                &[("spec.maxCheckoutDuration", "must be a duration")],
            ),
            (
                "maxVersions: 1\npasswordMinLength: 20\npasswordMaxLength: 10",
                &[(
                    "spec.passwordMinLength",
                    "must not exceed spec.passwordMaxLength",
                )],
            ),
            (
                "maxVersions: 1\npasswordMaxLength: 10",
                &[("spec.passwordMaxLength", "default minimum length 16")],
            ),
            (
                "maxVersions: 1\npasswordMinLength: 40",
                &[("spec.passwordMinLength", "default maximum length 32")],
            ),
            ("maxVersions: 1\npasswordMinLength: 32", &[]),
            (
                "maxVersions: 1\npasswordMinLength: 0\npasswordMaxLength: 2000",
                &[
                    ("spec.passwordMinLength", "from 1 to 1024"),
                    ("spec.passwordMaxLength", "from 1 to 1024"),
                    (
                        "spec.passwordMinLength",
                        "shorter than the number of enabled character classes",
                    ),
                ],
            ),
            (
                "maxVersions: 1\nuseLowerCase: false\nuseUpperCase: false\nuseNumbers: false\nuseSpecialCharacters: false",
                &[("spec", "at least one character class")],
            ),
            (
                "maxVersions: 1\npasswordMinLength: 3\npasswordMaxLength: 8",
                &[(
                    "spec.passwordMinLength",
                    "shorter than the number of enabled character classes",
                )],
            ),
            (
                "maxVersions: 1\npasswordMinLength: 3\npasswordMaxLength: 8\nuseSpecialCharacters: false",
                &[],
            ),
        ];
        for (yaml, expected) in cases {
            let errors = validate_password_policy(&policy(yaml));
            assert_eq!(errors.len(), expected.len(), "{yaml}: {errors:#?}");
            for (error, (field, words)) in errors.iter().zip(expected.iter()) {
                assert_eq!(error.field, *field, "{yaml}: {errors:#?}");
                assert!(error.message.contains(words), "{yaml}: {error}");
            }
        }
    }
}
