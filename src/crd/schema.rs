//! A CRD's structural schema (`openAPIV3Schema`): the one place that reads it out of a CRD
//! ([`crd_schema`], [`served_schema`]), and a small walker over it ([`validate_structure`]):
//! types, required fields, enums, bounds, lengths, item counts and unknown fields — what the
//! API server checks before it runs the CEL rules. Only the keywords structural CRD schemas use
//! are understood.
//!
//! Here, below both users: the controllers (the field paths of an object that does not
//! deserialize) and the offline `check` command.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::crd::validate::FieldError;

/// The `openAPIV3Schema` of `version` of `crd`, as JSON; `None` when the CRD has no such
/// version or that version no schema.
pub fn crd_schema(crd: &CustomResourceDefinition, version: &str) -> Option<Value> {
    let schema = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    Some(serde_json::to_value(schema).expect("a JSONSchemaProps always serializes"))
}

/// The schema of the served version ([`super::VERSION`]) of `crd`.
pub fn served_schema(crd: &CustomResourceDefinition) -> Option<Value> {
    crd_schema(crd, super::VERSION)
}

/// Problems of `value` against `schema`; `path` is the value's field path (empty at the root).
/// At the root, `apiVersion`, `kind` and `metadata` are allowed without being declared, as the
/// API server does for every custom resource.
pub fn validate_structure(schema: &Value, value: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(schema, value, path, &mut out);
    out
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn field_name(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    let push = |out: &mut Vec<FieldError>, message: String| {
        out.push(FieldError::new(field_name(path), message));
    };

    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            push(out, "must not be null".to_string());
        }
        return;
    }

    let declared = schema.get("type").and_then(Value::as_str).or_else(|| {
        (schema.get("properties").is_some() || schema.get("additionalProperties").is_some())
            .then_some("object")
    });
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let type_ok = match declared {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        let expected = match declared {
            _ if int_or_string => "an integer or a string",
            Some("object") => "an object",
            Some("array") => "a list",
            Some("string") => "a string",
            Some("integer") => "an integer",
            Some("number") => "a number",
            Some("boolean") => "a boolean (true or false)",
            _ => "of the declared type",
        };
        push(out, format!("must be {expected}, not {}", type_name(value)));
        return;
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        push(
            out,
            format!("{} is not one of: {}", value, names.join(", ")),
        );
    }

    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    out.push(FieldError::new(
                        child(path, required),
                        "required field is missing",
                    ));
                }
            }
            for (key, item) in map {
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    walk(property, item, &child(path, key), out);
                } else if let Some(additional) = additional {
                    walk(
                        additional,
                        item,
                        &format!("{}[{key}]", field_name(path)),
                        out,
                    );
                } else if path.is_empty()
                    && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    // Checked by the caller.
                } else if !preserve {
                    out.push(FieldError::new(child(path, key), "unknown field"));
                }
            }
            let count = map.len() as u64;
            for problem in bounds(schema, "Properties", count, Value::as_u64, |side, bound| {
                format!("must have at {side} {bound} entries (has {count})")
            }) {
                push(out, problem);
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            for problem in bounds(schema, "Items", count, Value::as_u64, |side, bound| {
                format!("must have at {side} {bound} items (has {count})")
            }) {
                push(out, problem);
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(
                        item_schema,
                        item,
                        &format!("{}[{i}]", field_name(path)),
                        out,
                    );
                }
            }
        }
        Value::String(text) => {
            // The API server counts characters (runes), not bytes.
            let length = text.chars().count() as u64;
            for problem in bounds(schema, "Length", length, Value::as_u64, |side, bound| {
                format!("must be at {side} {bound} characters (is {length})")
            }) {
                push(out, problem);
            }
        }
        Value::Number(number) => {
            if let Some(number) = number.as_f64() {
                for problem in bounds(schema, "imum", number, Value::as_f64, |side, bound| {
                    format!("must be at {side} {bound} (is {number})")
                }) {
                    push(out, problem);
                }
            }
        }
        _ => {}
    }
}

/// The problems of `actual` against the schema's `max{suffix}` and `min{suffix}` bounds
/// (`maxItems`/`minItems`, `maxLength`/`minLength`, `maximum`/`minimum`, ...); `message` words
/// one, given "most" or "least" and the bound.
fn bounds<T: PartialOrd + Copy>(
    schema: &Value,
    suffix: &str,
    actual: T,
    read: fn(&Value) -> Option<T>,
    message: impl Fn(&str, T) -> String,
) -> Vec<String> {
    let bound = |side: &str| schema.get(format!("{side}{suffix}")).and_then(read);
    let mut out = Vec::new();
    if let Some(max) = bound("max")
        && actual > max
    {
        out.push(message("most", max));
    }
    if let Some(min) = bound("min")
        && actual < min
    {
        out.push(message("least", min));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(schema: &Value, value: Value) -> Vec<String> {
        validate_structure(schema, &value, "")
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["count"],
                    "properties": {
                        "count": {"type": "integer", "minimum": 1, "maximum": 10},
                        "ratio": {"type": "number"},
                        "flag": {"type": "boolean", "nullable": true},
                        "mode": {"type": "string", "enum": ["A", "B", null], "nullable": true},
                        "name": {"type": "string", "minLength": 1, "maxLength": 3},
                        "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 2},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "nested": {"type": "object", "properties": {"x": {"type": "string"}}}
                    }
                }
            }
        })
    }

    #[test]
    fn a_valid_object_passes() {
        let value = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"count": 3, "ratio": 0.5, "flag": null, "mode": "B", "name": "äöü",
                     "tags": ["a"], "labels": {"k": "v"}, "free": {"anything": [1]}, "nested": {"x": "y"}}
        });
        assert_eq!(problems(&schema(), value), Vec::<String>::new());
    }

    #[test]
    fn each_keyword_is_enforced_with_its_path() {
        let cases = [
            (json!({}), "spec: required field is missing"),
            (json!({"spec": {}}), "spec.count: required field is missing"),
            (
                json!({"spec": {"count": "3"}}),
                "spec.count: must be an integer, not a string",
            ),
            (
                json!({"spec": {"count": 2.5}}),
                "spec.count: must be an integer, not a number",
            ),
            (
                json!({"spec": {"count": 0}}),
                "spec.count: must be at least 1 (is 0)",
            ),
            (
                json!({"spec": {"count": 11}}),
                "spec.count: must be at most 10 (is 11)",
            ),
            (
                json!({"spec": {"count": 1, "ratio": true}}),
                "spec.ratio: must be a number, not a boolean",
            ),
            (
                json!({"spec": {"count": 1, "flag": "yes"}}),
                "spec.flag: must be a boolean (true or false), not a string",
            ),
            (
                json!({"spec": {"count": 1, "mode": "C"}}),
                "spec.mode: \"C\" is not one of: A, B",
            ),
            (
                json!({"spec": {"count": 1, "name": ""}}),
                "spec.name: must be at least 1 characters (is 0)",
            ),
            (
                json!({"spec": {"count": 1, "name": "abcd"}}),
                "spec.name: must be at most 3 characters (is 4)",
            ),
            (
                json!({"spec": {"count": 1, "name": null}}),
                "spec.name: must not be null",
            ),
            (
                json!({"spec": {"count": 1, "tags": []}}),
                "spec.tags: must have at least 1 items (has 0)",
            ),
            (
                json!({"spec": {"count": 1, "tags": ["a", "b", "c"]}}),
                "spec.tags: must have at most 2 items (has 3)",
            ),
            (
                json!({"spec": {"count": 1, "tags": ["a", 2]}}),
                "spec.tags[1]: must be a string, not an integer",
            ),
            (
                json!({"spec": {"count": 1, "labels": {"k": 1}}}),
                "spec.labels[k]: must be a string, not an integer",
            ),
            (
                json!({"spec": {"count": 1, "labels": {"a": "1", "b": "2", "c": "3"}}}),
                "spec.labels: must have at most 2 entries (has 3)",
            ),
            (
                json!({"spec": {"count": 1, "nested": {"y": 1}}}),
                "spec.nested.y: unknown field",
            ),
            (
                json!({"spec": {"count": 1}, "extra": 1}),
                "extra: unknown field",
            ),
            (
                json!({"spec": {"count": 1, "tags": "a"}}),
                "spec.tags: must be a list, not a string",
            ),
            (json!({"spec": []}), "spec: must be an object, not a list"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                problems(&schema(), value.clone()),
                vec![expected.to_string()],
                "{value}"
            );
        }
    }

    #[test]
    fn schemas_are_found_by_version() {
        for crd in crate::crd::all_crds() {
            let schema = served_schema(&crd).expect("each CRD has a schema at the served version");
            assert_eq!(schema["type"], "object");
            assert!(schema["properties"]["spec"].is_object());
            assert_eq!(crd_schema(&crd, "v1"), None, "no such version");
        }
    }

    #[test]
    fn walks_the_generated_crds() {
        let crds = crate::crd::all_crds();
        let vault_secret = crds
            .iter()
            .find(|c| c.spec.names.kind == "VaultSecret")
            .unwrap();
        let schema = served_schema(vault_secret).expect("the served version has a schema");
        let value = json!({"spec": {"mirror": {"creationPolicy": "Keep",
            "rolloutRestartTargets": [{"kind": "Job", "name": "x"}]},
            "source": {"secretRef": {"nmae": "x"}}}});
        assert_eq!(
            problems(&schema, value),
            [
                "spec.mirror.creationPolicy: \"Keep\" is not one of: Owner, Orphan, Merge",
                "spec.mirror.rolloutRestartTargets[0].kind: \"Job\" is not one of: Deployment, StatefulSet, DaemonSet, Rollout",
                "spec.source.secretRef.name: required field is missing",
                "spec.source.secretRef.nmae: unknown field",
            ]
        );
    }
}
