//! The syntax of Kubernetes object names, Secret keys and label keys and values.

use std::sync::LazyLock;

use regex::Regex;

static SECRET_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").expect("valid regex"));
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("valid regex")
});
static LABEL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid regex")
});

/// Is `name` a valid name for a Kubernetes object such as a Secret (a DNS subdomain)?
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && DNS_SUBDOMAIN.is_match(name)
}

/// Is `key` a valid key of a Kubernetes Secret's data? The API server's rule (IsConfigMapKey):
/// 1 to 253 of `[-._a-zA-Z0-9]`, not `.`, and not starting with `..`. The one definition the
/// validation, `check` and the mirror plan share.
pub fn is_secret_key(key: &str) -> bool {
    key.len() <= 253 && SECRET_KEY.is_match(key) && key != "." && !key.starts_with("..")
}

/// Is `key` a valid label or annotation key (`[prefix/]name`)?
pub(super) fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(|p| !p.is_empty() && is_dns_subdomain(p))
        && name.len() <= 63
        && LABEL_NAME.is_match(name)
}

pub(super) fn is_label_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= 63 && LABEL_NAME.is_match(value))
}

pub(super) fn secret_key_message(key: &str) -> String {
    format!(
        "{key:?} is not a valid Secret key: use 1 to 253 of the characters a-z, A-Z, 0-9, '-', '_' and '.'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_syntax() {
        assert!(is_dns_subdomain("app-creds.v2"));
        assert!(!is_dns_subdomain("App"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(is_secret_key("tls.crt"));
        assert!(is_secret_key(".dockerconfigjson"));
        assert!(!is_secret_key("a/b"));
        assert!(!is_secret_key(""));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("/name"));
        assert!(!is_qualified_name("a/b/c"));
    }
}
