//! The Argo CD health checks and the force-sync action of docs/gitops.md, run as Argo CD runs
//! them (Lua 5.1, Argo CD's gopher-lua dialect, through mlua with a vendored Lua) against
//! objects built from the operator's own types and condition builder: every condition reason the
//! controllers report, a stale `observedGeneration`, no status yet.
//!
//! The scripts are taken from the documentation itself, so the docs cannot drift from what is
//! tested.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt, Table};
use privx_operator::controller::core::outcome::reason;
use privx_operator::crd::condition::{DesiredCondition, READY, SYNCED, merge};
use privx_operator::crd::{
    PasswordPolicy, PasswordPolicySpec, PasswordPolicyStatus, VaultSecret, VaultSecretSpec,
    VaultSecretStatus,
};
use serde_json::{Value, json};

/// The `data:` entries of every YAML block in docs/gitops.md that configures `argocd-cm`.
fn argocd_cm() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gitops.md");
    let text = std::fs::read_to_string(path).expect("docs/gitops.md");
    let mut entries = BTreeMap::new();
    for block in text.split("```yaml\n").skip(1) {
        let block = block.split("\n```").next().unwrap();
        let Ok(doc) = serde_saphyr::from_str::<Value>(block) else {
            continue;
        };
        if let Some(data) = doc["data"].as_object() {
            for (key, value) in data {
                if key.starts_with("resource.customizations.") {
                    entries.insert(key.clone(), value.as_str().unwrap().to_string());
                }
            }
        }
    }
    entries
}

fn script(key: &str) -> String {
    argocd_cm()
        .remove(key)
        .unwrap_or_else(|| panic!("docs/gitops.md has no {key}"))
}

fn lua_value(lua: &Lua, value: &Value) -> mlua::Value {
    // JSON null becomes nil, as Argo CD hands objects to Lua.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    lua.to_value_with(value, options).expect("object to Lua")
}

/// Runs a health script against `obj`: (status, message).
fn health(script: &str, obj: &Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("obj", lua_value(&lua, obj)).unwrap();
    let result: Table = lua
        .load(script)
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("the health script failed: {e}"));
    (
        result.get::<String>("status").unwrap(),
        result
            .get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

fn conditions(
    ready: bool,
    reason: &str,
    generation: i64,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let synced = ready && reason != reason::UNSUPPORTED_FIELD;
    merge(
        &[],
        &[
            DesiredCondition::new(READY, ready, reason, format!("because {reason}")),
            DesiredCondition::new(SYNCED, synced, reason, format!("because {reason}")),
        ],
        Some(generation),
        Time(jiff::Timestamp::UNIX_EPOCH),
    )
}

fn vault_secret(status: Option<(bool, &str, i64)>, generation: i64) -> Value {
    let mut vs = VaultSecret::new("app", VaultSecretSpec::default());
    vs.metadata.namespace = Some("demo".into());
    vs.metadata.generation = Some(generation);
    vs.status = status.map(|(ready, reason, observed)| VaultSecretStatus {
        conditions: conditions(ready, reason, observed),
        observed_generation: Some(observed),
        ..Default::default()
    });
    serde_json::to_value(&vs).unwrap()
}

fn password_policy(status: Option<(bool, &str, i64)>, generation: i64) -> Value {
    let mut pp = PasswordPolicy::new("app-passwords", PasswordPolicySpec::default());
    pp.metadata.generation = Some(generation);
    pp.status = status.map(|(ready, reason, observed)| PasswordPolicyStatus {
        conditions: conditions(ready, reason, observed),
        observed_generation: Some(observed),
        ..Default::default()
    });
    serde_json::to_value(&pp).unwrap()
}

/// Every reason the controllers report, with the health docs/gitops.md promises for it when
/// `Ready` is False.
const FALSE_REASONS: [(&str, &str); 13] = [
    (reason::PRIVX_UNAVAILABLE, "Progressing"),
    (reason::KUBERNETES_ERROR, "Progressing"),
    (reason::INVALID_SPEC, "Degraded"),
    (reason::CONFLICT, "Degraded"),
    (reason::NOT_ALLOWED, "Degraded"),
    (reason::SOURCE_NOT_FOUND, "Degraded"),
    (reason::POLICY_NOT_FOUND, "Degraded"),
    (reason::PERMISSION_DENIED, "Degraded"),
    (reason::NOT_READABLE, "Degraded"),
    (reason::IDENTITY_NOT_FOUND, "Degraded"),
    (reason::TEMPLATE_ERROR, "Degraded"),
    (reason::DELETE_BLOCKED, "Degraded"),
    (reason::SYNCED, "Degraded"),
];

#[test]
fn vault_secret_health_follows_the_ready_condition() {
    let script = script("resource.customizations.health.privx-operator.dev_VaultSecret");
    let (status, message) = health(&script, &vault_secret(Some((true, reason::SYNCED, 3)), 3));
    assert_eq!(status, "Healthy");
    assert_eq!(message, "Synced: because Synced");
    for (reason, expected) in FALSE_REASONS {
        let (status, message) = health(&script, &vault_secret(Some((false, reason, 3)), 3));
        assert_eq!(status, expected, "Ready=False {reason}");
        assert!(message.starts_with(reason), "{message}");
    }
}

#[test]
fn password_policy_health_follows_the_ready_condition() {
    let script = script("resource.customizations.health.privx-operator.dev_PasswordPolicy");
    for reason in [reason::SYNCED, reason::UNSUPPORTED_FIELD] {
        let (status, _) = health(&script, &password_policy(Some((true, reason, 1)), 1));
        assert_eq!(status, "Healthy", "Ready=True {reason}");
    }
    for (reason, expected) in FALSE_REASONS {
        let (status, _) = health(&script, &password_policy(Some((false, reason, 1)), 1));
        assert_eq!(status, expected, "Ready=False {reason}");
    }
}

#[test]
fn stale_or_missing_status_is_progressing() {
    for key in [
        "resource.customizations.health.privx-operator.dev_VaultSecret",
        "resource.customizations.health.privx-operator.dev_PasswordPolicy",
    ] {
        let script = script(key);
        let objects = if key.ends_with("VaultSecret") {
            [
                vault_secret(Some((true, reason::SYNCED, 1)), 2),
                vault_secret(None, 1),
            ]
        } else {
            [
                password_policy(Some((true, reason::SYNCED, 1)), 2),
                password_policy(None, 1),
            ]
        };
        let (status, message) = health(&script, &objects[0]);
        assert_eq!(status, "Progressing", "{key}: observedGeneration behind");
        assert!(message.contains("generation 2"), "{message}");
        let (status, message) = health(&script, &objects[1]);
        assert_eq!(status, "Progressing", "{key}: no status");
        assert!(message.contains("Waiting"), "{message}");
        // A status whose conditions are present but hold no Ready yet.
        let mut no_ready = objects[0].clone();
        no_ready["status"]["conditions"] = json!([]);
        assert_eq!(health(&script, &no_ready).0, "Progressing");
    }
}

/// The action's definition: (discovery script, action script).
fn force_sync_action() -> (String, String) {
    let text = script("resource.customizations.actions.privx-operator.dev_VaultSecret");
    let action: Value = serde_saphyr::from_str(&text).expect("the action entry is YAML");
    let discovery = action["discovery.lua"]
        .as_str()
        .expect("discovery.lua")
        .to_string();
    let definition = action["definitions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "force-sync"))
        .expect("a force-sync definition");
    (
        discovery,
        definition["action.lua"]
            .as_str()
            .expect("action.lua")
            .to_string(),
    )
}

#[test]
fn the_force_sync_action_is_offered_and_sets_only_the_annotation() {
    let (discovery, action) = force_sync_action();
    let lua = Lua::new();
    let obj = vault_secret(Some((true, reason::SYNCED, 1)), 1);
    lua.globals().set("obj", lua_value(&lua, &obj)).unwrap();
    let offered: Table = lua.load(&discovery).eval().expect("discovery runs");
    assert!(offered.contains_key("force-sync").unwrap());

    for mut before in [obj.clone(), {
        let mut annotated = obj.clone();
        annotated["metadata"]["annotations"] =
            json!({"privx-operator.dev/force-sync": "2020-01-01T00:00:00Z", "keep": "me"});
        annotated
    }] {
        let lua = Lua::new();
        lua.globals().set("obj", lua_value(&lua, &before)).unwrap();
        let after: mlua::Value = lua.load(&action).eval().expect("the action runs");
        let after: Value = lua
            .from_value(after)
            .expect("the action returns the object");
        let stamp = after["metadata"]["annotations"]["privx-operator.dev/force-sync"]
            .as_str()
            .expect("the annotation is set")
            .to_string();
        let parsed: jiff::Timestamp = stamp
            .parse()
            .unwrap_or_else(|e| panic!("{stamp:?} is not an RFC 3339 time: {e}"));
        assert!(parsed > "2024-01-01T00:00:00Z".parse().unwrap(), "{stamp}");
        // Nothing else changed.
        before["metadata"]["annotations"]["privx-operator.dev/force-sync"] = json!(stamp);
        assert_eq!(
            normalise(after),
            normalise(before),
            "the action changed more than the annotation"
        );
    }
}

/// Lua has one table type (an empty JSON array comes back as an empty object) and, in 5.1, one
/// number type (an integer comes back as a float).
fn normalise(value: Value) -> Value {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
            json!(n.as_f64().unwrap() as i64)
        }
        Value::Array(items) if items.is_empty() => json!({}),
        Value::Array(items) => Value::Array(items.into_iter().map(normalise).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalise(v))).collect())
        }
        other => other,
    }
}

#[test]
fn a_broken_health_script_is_caught() {
    // The harness must notice a script that answers wrongly, or the tests above prove nothing.
    let wrong = "hs = {}\nhs.status = \"Healthy\"\nreturn hs";
    let (status, _) = health(wrong, &vault_secret(Some((false, reason::CONFLICT, 1)), 1));
    assert_ne!(status, "Degraded");
}
