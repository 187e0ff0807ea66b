//! Tenancy: which PrivX names (and personal vaults) a namespace may reach.
//!
//! By default a namespace reaches exactly the names its template prefix yields (with the
//! default template `k8s/{namespace}/{name}`, namespace `team-a` reaches `k8s/team-a/...`).
//! A cluster admin widens that with annotations on the Namespace (users cannot, as they do not
//! own the Namespace object): `privx-operator.dev/allowed-names` lists glob patterns (`*` any
//! run of characters, `?` one character), `privx-operator.dev/allowed-owners` lists PrivX user
//! IDs whose personal vaults the namespace may write (`*` for any). Personal secrets are refused
//! unless their owner is listed. Pure functions only.

use std::collections::BTreeMap;

/// The operator-wide template of default PrivX names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    template: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

impl NameTemplate {
    /// Accepts templates with exactly one `{namespace}` followed later by exactly one `{name}`,
    /// so that every namespace gets a prefix of its own.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason| TemplateError {
            template: template.to_string(),
            reason,
        };
        let ns = template
            .find("{namespace}")
            .ok_or_else(|| fail("must contain {namespace}"))?;
        let name = template
            .find("{name}")
            .ok_or_else(|| fail("must contain {name}"))?;
        if template.matches("{namespace}").count() != 1 || template.matches("{name}").count() != 1 {
            return Err(fail("{namespace} and {name} must appear once each"));
        }
        if ns > name {
            return Err(fail("{namespace} must come before {name}"));
        }
        let separator = &template[ns + "{namespace}".len()..name];
        if separator.is_empty() {
            return Err(fail("{namespace} and {name} need a separator between them"));
        }
        // Namespace names are DNS labels ([a-z0-9-]). A separator with a character outside
        // that set ends the namespace unambiguously: no namespace's prefix is a prefix of
        // another's, and two namespaces never render the same name. `{namespace}-{name}`
        // would let namespace `team` reach `team-a`'s names.
        if !separator.chars().any(|c| !is_namespace_char(c)) {
            return Err(fail(
                "the separator between {namespace} and {name} must contain a character that cannot occur in a namespace name (such as '/', '.', '_' or ':'), or one namespace could reach another's names",
            ));
        }
        Ok(Self {
            template: template.to_string(),
        })
    }

    /// The default PrivX name of a VaultSecret.
    pub fn render(&self, namespace: &str, name: &str) -> String {
        self.template
            .replace("{namespace}", namespace)
            .replace("{name}", name)
    }

    /// The prefix every default name of `namespace` starts with.
    pub fn prefix(&self, namespace: &str) -> String {
        let cut = self.template.find("{name}").expect("validated");
        self.template[..cut].replace("{namespace}", namespace)
    }
}

/// Whether `c` may occur in a namespace name (an RFC 1123 DNS label).
fn is_namespace_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

impl Default for NameTemplate {
    fn default() -> Self {
        Self::parse("k8s/{namespace}/{name}").expect("valid default")
    }
}

/// What a namespace's annotations allow beyond its prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub allowed_names: Vec<String>,
    pub allowed_owners: Vec<String>,
}

impl NamespacePolicy {
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let list = |key: &str| -> Vec<String> {
            annotations
                .and_then(|a| a.get(key))
                .map(|v| {
                    v.split([',', '\n'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            allowed_names: list(crate::controller::vault_secret::ALLOWED_NAMES_ANNOTATION),
            allowed_owners: list(crate::controller::vault_secret::ALLOWED_OWNERS_ANNOTATION),
        }
    }
}

/// Checks that `namespace` may reach the PrivX secret `name` (personal to `owner` if given).
/// The error is the message of a `NotAllowed` condition.
pub fn check_access(
    template: &NameTemplate,
    namespace: &str,
    policy: &NamespacePolicy,
    name: &str,
    owner: Option<&str>,
) -> Result<(), String> {
    let prefix = template.prefix(namespace);
    let by_prefix = name.starts_with(&prefix) && name.len() > prefix.len();
    let by_pattern = policy.allowed_names.iter().any(|p| glob_match(p, name));
    if !by_prefix && !by_pattern {
        let widened = if policy.allowed_names.is_empty() {
            String::new()
        } else {
            format!(" or match {}", policy.allowed_names.join(", "))
        };
        return Err(format!(
            "namespace {namespace} may only reach PrivX names starting with {prefix:?}{widened}; {name:?} does not (a cluster admin can allow it with the Namespace annotation {})",
            crate::controller::vault_secret::ALLOWED_NAMES_ANNOTATION
        ));
    }
    if let Some(owner) = owner
        && !policy.allowed_owners.iter().any(|o| o == "*" || o == owner)
    {
        return Err(format!(
            "namespace {namespace} may not write personal secrets of PrivX user {owner} (a cluster admin can allow it with the Namespace annotation {})",
            crate::controller::vault_secret::ALLOWED_OWNERS_ANNOTATION
        ));
    }
    Ok(())
}

/// Glob match: `*` matches any run of characters (including `/`), `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = NameTemplate::default();
        assert_eq!(t.render("team-a", "db"), "k8s/team-a/db");
        assert_eq!(t.prefix("team-a"), "k8s/team-a/");
        let t = NameTemplate::parse("{namespace}.{name}").unwrap();
        assert_eq!(t.prefix("ns"), "ns.");
        for bad in [
            "k8s/{name}",
            "{name}/{namespace}",
            "{namespace}{name}",
            "{namespace}/{name}/{name}",
            "static",
            "{namespace}-{name}",
            "k8s-{namespace}--x{name}",
        ] {
            assert!(NameTemplate::parse(bad).is_err(), "{bad}");
        }
        let e = NameTemplate::parse("{namespace}-{name}").unwrap_err();
        assert!(e.to_string().contains("separator"), "{e}");
        for good in [
            "{namespace}_{name}",
            "{namespace}:{name}",
            "x/{namespace}-/{name}",
        ] {
            assert!(NameTemplate::parse(good).is_ok(), "{good}");
        }
        // With such a separator, no namespace reaches another's names.
        let t = NameTemplate::parse("{namespace}_{name}").unwrap();
        assert!(!t.render("team-a", "db").starts_with(&t.prefix("team")));
    }

    #[test]
    fn default_tenancy_is_the_prefix() {
        let t = NameTemplate::default();
        let none = NamespacePolicy::default();
        assert!(check_access(&t, "team-a", &none, "k8s/team-a/db", None).is_ok());
        assert!(check_access(&t, "team-a", &none, "k8s/team-a/sub/db", None).is_ok());
        let e = check_access(&t, "team-a", &none, "k8s/team-b/db", None).unwrap_err();
        assert!(
            e.contains("k8s/team-a/") && e.contains("k8s/team-b/db"),
            "{e}"
        );
        // A namespace whose name is a prefix of another's must not reach the other's names.
        assert!(check_access(&t, "team", &none, "k8s/team-a/db", None).is_err());
        assert!(check_access(&t, "team-a", &none, "k8s/team-a/", None).is_err());
        assert!(check_access(&t, "team-a", &none, "legacy/db-password", None).is_err());
    }

    #[test]
    fn annotations_widen() {
        let t = NameTemplate::default();
        let ann = BTreeMap::from([
            (
                crate::controller::vault_secret::ALLOWED_NAMES_ANNOTATION.to_string(),
                "shared/db-*, legacy/?ey".to_string(),
            ),
            (
                crate::controller::vault_secret::ALLOWED_OWNERS_ANNOTATION.to_string(),
                "u-1".to_string(),
            ),
        ]);
        let p = NamespacePolicy::from_annotations(Some(&ann));
        assert!(check_access(&t, "a", &p, "shared/db-main", None).is_ok());
        assert!(check_access(&t, "a", &p, "legacy/key", None).is_ok());
        assert!(check_access(&t, "a", &p, "legacy/keys", None).is_err());
        assert!(check_access(&t, "a", &p, "k8s/a/x", Some("u-1")).is_ok());
        assert!(
            check_access(&t, "a", &p, "k8s/a/x", Some("u-2"))
                .unwrap_err()
                .contains("u-2")
        );
        assert!(
            check_access(&t, "a", &NamespacePolicy::default(), "k8s/a/x", Some("u-1")).is_err()
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a*c", "ac"));
        assert!(!glob_match("a*c", "acb"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*/db-*", "x/y/db-1"));
        assert!(glob_match("ä*", "äö"));
    }
}
