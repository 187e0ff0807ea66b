//! The data source as the plan sees it (pure): the selected keys of the source Secret as text,
//! or a password to the PasswordPolicy's rules; every refusal about the source is decided here.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;

use super::{Refusal, SourceInput, reason};
use crate::controller::core::{Next, Stop};
use crate::crd::PasswordPolicySpec;
use crate::crd::vault_secret::SourceSecretRef;
use crate::password::{Password, PasswordRules};
use privx_client::SecretData;

/// The source Secret `namespace/secret_ref.name` (`None`: it does not exist) as PrivX data.
/// Missing pieces are looked for again after `retry` (an unlabelled Secret that appears later
/// is not seen by the narrow Secret watch).
pub fn from_secret(
    namespace: &str,
    secret_ref: &SourceSecretRef,
    secret: Option<&BTreeMap<String, ByteString>>,
    retry: Duration,
) -> Result<SourceInput, Stop> {
    let name = &secret_ref.name;
    let not_found = |message: String| {
        (
            Refusal::new(reason::SOURCE_NOT_FOUND, message),
            Next::After(retry),
        )
    };
    let Some(all) = secret else {
        return Err(not_found(format!(
            "source Secret {namespace}/{name} not found"
        )));
    };
    let wanted: Vec<String> = match &secret_ref.keys {
        Some(keys) => keys.clone(),
        None => all.keys().cloned().collect(),
    };
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|k| !all.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(not_found(format!(
            "source Secret {namespace}/{name} has no key(s) {}",
            missing.join(", ")
        )));
    }
    let mut data = BTreeMap::new();
    for key in wanted {
        let text = String::from_utf8(all[&key].0.clone()).map_err(|_| {
            (
                Refusal::new(
                    reason::INVALID_SPEC,
                    format!(
                        "source Secret {namespace}/{name} key {key:?} is not UTF-8 text; PrivX stores text"
                    ),
                ),
                Next::AwaitChange,
            )
        })?;
        data.insert(key, serde_json::Value::String(text));
    }
    Ok(SourceInput::Secret(SecretData(data)))
}

/// What the store holds of the PasswordPolicy a `generate` source names.
pub enum PolicyLookup<'a> {
    Missing,
    /// It exists but does not deserialise (the error).
    Invalid(&'a str),
    Found(&'a PasswordPolicySpec),
}

/// A password candidate for `key` by the policy's rules, made by `generate` (random; used only
/// if PrivX holds no password yet). An unknown policy is looked for again after `refresh`.
pub fn from_policy<E: std::fmt::Display>(
    policy_name: &str,
    key: &str,
    policy: PolicyLookup<'_>,
    refresh: Duration,
    generate: impl FnOnce(&PasswordRules) -> Result<Password, E>,
) -> Result<SourceInput, Stop> {
    let spec = match policy {
        PolicyLookup::Missing => {
            return Err((
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} not found"),
                ),
                Next::After(refresh),
            ));
        }
        PolicyLookup::Invalid(error) => {
            return Err((
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} is invalid: {error}"),
                ),
                Next::AwaitChange,
            ));
        }
        PolicyLookup::Found(spec) => spec,
    };
    let candidate = generate(&PasswordRules::from(spec)).map_err(|e| {
        (
            Refusal::new(
                reason::INVALID_SPEC,
                format!("PasswordPolicy {policy_name} cannot generate a password: {e}"),
            ),
            Next::AwaitChange,
        )
    })?;
    Ok(SourceInput::Generate {
        key: key.to_string(),
        candidate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(30);

    fn secret_ref(keys: Option<&[&str]>) -> SourceSecretRef {
        SourceSecretRef {
            name: "db".into(),
            keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn bytes(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn the_selected_keys_become_text_and_missing_pieces_are_retried() {
        let all = bytes(&[("user", b"app"), ("password", b"pw")]);
        let SourceInput::Secret(d) =
            from_secret("ns", &secret_ref(Some(&["password"])), Some(&all), RETRY).unwrap()
        else {
            panic!("a Secret source");
        };
        assert_eq!(d.0.keys().collect::<Vec<_>>(), ["password"]);
        let (r, next) = from_secret("ns", &secret_ref(None), None, RETRY).unwrap_err();
        assert_eq!(
            (r.reason, r.message.as_str()),
            (reason::SOURCE_NOT_FOUND, "source Secret ns/db not found")
        );
        assert!(matches!(next, Next::After(d) if d == RETRY));
        let (r, _) =
            from_secret("ns", &secret_ref(Some(&["token"])), Some(&all), RETRY).unwrap_err();
        assert!(r.message.ends_with("has no key(s) token"), "{}", r.message);
        let binary = bytes(&[("blob", &[0xff, 0xfe])]);
        let (r, next) = from_secret("ns", &secret_ref(None), Some(&binary), RETRY).unwrap_err();
        assert_eq!(r.reason, reason::INVALID_SPEC);
        assert!(
            !r.message.contains('\u{fffd}'),
            "never the bytes: {}",
            r.message
        );
        assert!(matches!(next, Next::AwaitChange));
    }

    #[test]
    fn the_policy_must_exist_be_valid_and_generate() {
        let spec = PasswordPolicySpec::default();
        let never = |_: &PasswordRules| -> Result<Password, String> { unreachable!() };
        let (r, next) =
            from_policy("p", "password", PolicyLookup::Missing, RETRY, never).unwrap_err();
        assert_eq!(r.reason, reason::POLICY_NOT_FOUND);
        assert!(matches!(next, Next::After(_)));
        let (r, next) =
            from_policy("p", "password", PolicyLookup::Invalid("bad"), RETRY, never).unwrap_err();
        assert!(r.message.ends_with("is invalid: bad") && matches!(next, Next::AwaitChange));
        let (r, _) = from_policy("p", "password", PolicyLookup::Found(&spec), RETRY, |_| {
            Err::<Password, _>("no classes")
        })
        .unwrap_err();
        assert_eq!(r.reason, reason::INVALID_SPEC);
        let ok = from_policy("p", "password", PolicyLookup::Found(&spec), RETRY, |_| {
            Ok::<_, String>(Password::for_tests("generated"))
        })
        .unwrap();
        assert!(matches!(ok, SourceInput::Generate { key, .. } if key == "password"));
    }
}
