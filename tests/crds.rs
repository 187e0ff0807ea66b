//! The committed CRDs are exactly what the binary generates, every CEL rule compiles, and
//! every regex-checked string is bounded (maxLength).

use privx_operator::crd::schema::crd_schema;
use privx_operator::crd::{all_crds, crd_file_name, crd_yaml, crds_yaml};
use serde_json::Value;

#[test]
fn committed_crds_are_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for crd in all_crds() {
        let path = dir.join(crd_file_name(&crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -- crd --out-dir crds`",
                path.display()
            )
        });
        assert_eq!(
            committed,
            crd_yaml(&crd),
            "{} is stale; run `cargo run -- crd --out-dir crds`",
            path.display()
        );
    }
}

#[test]
fn crd_stream_holds_both_kinds() {
    let stream = crds_yaml();
    assert_eq!(stream.matches("kind: CustomResourceDefinition").count(), 2);
    assert!(stream.contains("name: vaultsecrets.privx-operator.dev"));
    assert!(stream.contains("name: passwordpolicies.privx-operator.dev"));
}

#[test]
fn every_cel_rule_compiles() {
    let mut rules = 0;
    for crd in all_crds() {
        for version in &crd.spec.versions {
            let schema = crd_schema(&crd, &version.name).expect("every version has a schema");
            rules += serde_json::to_string(&schema)
                .unwrap()
                .matches("\"rule\"")
                .count();
            let compiled = kube::core::cel::compile_schema(&schema);
            let errors: Vec<String> = compiled
                .compilation_errors()
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            assert!(
                errors.is_empty(),
                "{}: {errors:#?}",
                crd.metadata.name.as_deref().unwrap()
            );
        }
    }
    assert!(
        rules >= 15,
        "expected the CEL rules to be in the schema, found {rules}"
    );
}

#[test]
fn no_schema_defaults_that_gitops_would_see_as_drift() {
    for crd in all_crds() {
        let json = serde_json::to_value(&crd).unwrap();
        let text = serde_json::to_string(&json).unwrap();
        assert!(
            !text.contains("\"default\":"),
            "{} has a schema default",
            crd.metadata.name.as_deref().unwrap()
        );
    }
}

/// The receivers of `.matches(` in a CEL rule: `self`, `self.a.b`, or a macro variable (`k`).
fn matches_receivers(rule: &str) -> Vec<String> {
    regex::Regex::new(r"([A-Za-z_][A-Za-z0-9_.]*)\.matches\(")
        .unwrap()
        .captures_iter(rule)
        .map(|c| c[1].to_string())
        .collect()
}

/// The schema of `self.a.b` relative to `node` (`self` is `node`).
fn resolve<'a>(node: &'a Value, receiver: &str) -> Option<&'a Value> {
    let mut at = node;
    for part in receiver.split('.').skip(1) {
        at = at.get("properties")?.get(part)?;
    }
    Some(at)
}

fn bounded_string(node: &Value) -> bool {
    node["type"] == "string" && node["maxLength"].as_u64().is_some()
}

/// Walks a structural schema; reports every string checked by a `pattern` or a CEL `matches`
/// without a `maxLength`. Returns how many such strings it looked at.
fn unbounded_patterns(node: &Value, path: &str, missing: &mut Vec<String>) -> usize {
    let mut checked = 0;
    if node.get("pattern").is_some() {
        checked += 1;
        if !bounded_string(node) {
            missing.push(format!("{path}: pattern without maxLength"));
        }
    }
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        for receiver in matches_receivers(text) {
            checked += 1;
            if receiver == "self" || receiver.starts_with("self.") {
                if !resolve(node, &receiver).is_some_and(bounded_string) {
                    missing.push(format!("{path}: {receiver} in `{text}` has no maxLength"));
                }
                continue;
            }
            // A macro variable: over a map's keys (`self.all(k, ...)`) or a list's items.
            let binding = regex::Regex::new(&format!(
                r"(self(?:\.[A-Za-z0-9_]+)*)\.(?:all|exists|exists_one|map|filter)\(\s*{receiver}\s*,"
            ))
            .unwrap();
            let Some(collection) = binding.captures(text).and_then(|c| resolve(node, &c[1])) else {
                missing.push(format!(
                    "{path}: cannot tell what {receiver} is in `{text}`"
                ));
                continue;
            };
            if let Some(items) = collection.get("items") {
                if !bounded_string(items) {
                    missing.push(format!("{path}: items of `{text}` have no maxLength"));
                }
            } else if collection.get("additionalProperties").is_some() {
                // Map keys cannot carry a maxLength in a structural schema: the map must be
                // bounded in size and the rule must bound the key before matching it.
                let bounds_key = text.contains(&format!("{receiver}.size() <= "))
                    && text.find(&format!("{receiver}.size() <= "))
                        < text.find(&format!("{receiver}.matches("));
                if collection["maxProperties"].as_u64().is_none() || !bounds_key {
                    missing.push(format!(
                        "{path}: map keys matched in `{text}` need maxProperties and a size bound before matches"
                    ));
                }
            } else {
                missing.push(format!(
                    "{path}: {receiver} in `{text}` is neither key nor item"
                ));
            }
        }
    }
    for (name, child) in node["properties"].as_object().into_iter().flatten() {
        checked += unbounded_patterns(child, &format!("{path}.{name}"), missing);
    }
    for key in ["items", "additionalProperties"] {
        if node[key].is_object() {
            checked += unbounded_patterns(&node[key], &format!("{path}[*]"), missing);
        }
    }
    checked
}

/// Issue 13 item 14: the API server estimates a CEL rule's cost from the longest value it may
/// see; an unbounded string under a regex sits near the per-rule budget, and a stricter server
/// could refuse the CRD. Every regex-checked string has a maxLength.
#[test]
fn every_string_checked_by_a_pattern_or_cel_matches_has_a_max_length() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for crd in all_crds() {
        for version in &crd.spec.versions {
            let schema = crd_schema(&crd, &version.name).expect("a schema");
            let name = crd.metadata.name.clone().unwrap_or_default();
            checked += unbounded_patterns(&schema, &name, &mut missing);
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    // The four PasswordPolicy durations, refreshInterval, spec.name, secretName, template keys,
    // configMapRef name and key.
    assert!(checked >= 10, "only {checked} regex-checked strings found");
}

#[test]
fn the_max_length_walk_catches_an_unbounded_string() {
    let schema = serde_json::json!({"type": "object", "properties": {
        "a": {"type": "string", "x-kubernetes-validations": [{"rule": "self.matches('^x$')"}]},
        "b": {"type": "string", "pattern": "^y$"},
        "m": {"type": "object", "additionalProperties": {"type": "string"},
              "x-kubernetes-validations": [{"rule": "self.all(k, k.matches('^z$'))"}]},
    }});
    let mut missing = Vec::new();
    assert_eq!(unbounded_patterns(&schema, "t", &mut missing), 3);
    assert_eq!(missing.len(), 3, "{missing:#?}");
}
