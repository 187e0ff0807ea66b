//! `--selector`: a Kubernetes label selector (the `kubectl -l` syntax) that limits the objects
//! one release of the operator reconciles, so that several releases can share a cluster.
//!
//! The selector narrows the VaultSecret watch on the API server and filters which
//! PasswordPolicies the PasswordPolicy controller reconciles. The PasswordPolicy store itself
//! stays whole: a selected VaultSecret may generate its password to any policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use kube::core::{Expression, Selector, SelectorExt};

/// A parsed label selector; displays as the API server takes it.
#[derive(Clone, Debug)]
pub struct LabelSelector {
    text: String,
    selector: Selector,
}

impl LabelSelector {
    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        self.selector.matches(labels.unwrap_or(&empty))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut expressions = Vec::new();
        for requirement in split_requirements(text)? {
            expressions.push(parse_requirement(&requirement)?);
        }
        if expressions.is_empty() {
            return Err(
                "an empty selector selects everything: leave the flag unset instead".into(),
            );
        }
        let selector: Selector = expressions.into_iter().collect();
        Ok(Self {
            text: selector.to_string(),
            selector,
        })
    }
}

/// The comma-separated requirements, commas inside `( )` kept.
fn split_requirements(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0u32, String::new());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Err(format!("unbalanced ')' in {text:?}")),
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(format!("unbalanced '(' in {text:?}"));
    }
    parts.push(current);
    Ok(parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect())
}

fn parse_requirement(requirement: &str) -> Result<Expression, String> {
    let key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        let valid = !k.is_empty()
            && k.len() <= 317
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
        if valid {
            Ok(k.to_string())
        } else {
            Err(format!("{k:?} is not a label key (in {requirement:?})"))
        }
    };
    let value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        let valid = v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if valid {
            Ok(v.to_string())
        } else {
            Err(format!("{v:?} is not a label value (in {requirement:?})"))
        }
    };
    let set = |rest: &str| -> Result<BTreeSet<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("expected a set like (a,b) in {requirement:?}"))?;
        inner.split(',').map(value).collect()
    };
    if let Some((k, v)) = requirement.split_once("!=") {
        return Ok(Expression::NotEqual(key(k)?, value(v)?));
    }
    if let Some((k, v)) = requirement.split_once("==") {
        return Ok(Expression::Equal(key(k)?, value(v)?));
    }
    if let Some((k, v)) = requirement.split_once('=') {
        return Ok(Expression::Equal(key(k)?, value(v)?));
    }
    if let Some(k) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(k)?));
    }
    let words: Vec<&str> = requirement.splitn(2, char::is_whitespace).collect();
    match words.as_slice() {
        [k] => Ok(Expression::Exists(key(k)?)),
        [k, rest] => {
            let rest = rest.trim_start();
            if let Some(s) = rest.strip_prefix("notin") {
                Ok(Expression::NotIn(key(k)?, set(s)?))
            } else if let Some(s) = rest.strip_prefix("in") {
                Ok(Expression::In(key(k)?, set(s)?))
            } else {
                Err(format!(
                    "expected =, ==, !=, in or notin in {requirement:?}"
                ))
            }
        }
        _ => Err(format!("cannot read {requirement:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_sets_and_existence_select_as_kubectl_does() {
        let s: LabelSelector = "team=a, tier in (gold,silver),!legacy,privx-operator.dev/release"
            .parse()
            .unwrap();
        let selected = labels(&[
            ("team", "a"),
            ("tier", "gold"),
            ("privx-operator.dev/release", "x"),
        ]);
        assert!(s.matches(Some(&selected)));
        let mut legacy = selected.clone();
        legacy.insert("legacy".into(), "1".into());
        assert!(!s.matches(Some(&legacy)));
        let mut bronze = selected.clone();
        bronze.insert("tier".into(), "bronze".into());
        assert!(!s.matches(Some(&bronze)));
        assert!(!s.matches(None));
        let n: LabelSelector = "team!=b,env notin (prod)".parse().unwrap();
        assert!(n.matches(None));
        assert!(!n.matches(Some(&labels(&[("env", "prod")]))));
        assert_eq!(
            "a==1".parse::<LabelSelector>().unwrap().to_string(),
            "a=1",
            "shown as the API server takes it"
        );
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (text, words) in [
            ("", "empty"),
            ("a in (x", "unbalanced"),
            ("a)", "unbalanced"),
            ("a in x", "set"),
            ("a=b c", "label value"),
            ("bad key=1", "label key"),
            ("=1", "label key"),
        ] {
            let e = text.parse::<LabelSelector>().unwrap_err();
            assert!(e.contains(words), "{text:?}: {e}");
        }
    }
}
