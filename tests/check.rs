//! `privx-operator check`, driven as a user runs it: the built binary over the examples and the
//! deliberately broken fixtures; and the checker library over arbitrary input (it must not panic).

use std::path::Path;
use std::process::{Command, Output};

use privx_operator::check::{Checker, Format};
use proptest::prelude::*;

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_privx-operator"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn examples_are_valid() {
    let output = check(&["-f", "examples"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(lines(&output), Vec::<String>::new(), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    // Every example file holds an object of ours; the source Secret and the Deployment it
    // restarts (examples/vaultsecret-from-secret.yaml) are skipped.
    let examples = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert!(examples >= 5);
    assert!(
        stderr.contains(&format!(
            "{examples} files, {examples} objects checked (2 of other kinds skipped): no problems"
        )),
        "{stderr}"
    );
}

/// Each broken fixture with the `file: Kind/name: field:` prefixes its problems must start with,
/// in output order.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "bad-duration.yaml",
        &[
            "VaultSecret/bad-duration: spec.refreshInterval: spec.refreshInterval must be a duration",
        ],
    ),
    (
        "malformed.json",
        &["line 2 column 65: invalid JSON: trailing comma"],
    ),
    ("malformed.yaml", &["line 6 column 2: invalid YAML:"]),
    (
        "mirror-ownership.yaml",
        &[
            "VaultSecret/merge-misused: spec.mirror.type: spec.mirror.type cannot be set with creationPolicy Merge",
            "VaultSecret/merge-misused: spec.mirror.immutable: spec.mirror.immutable cannot be true with creationPolicy Merge",
            "VaultSecret/merge-misused: spec.mirror.adopt: spec.mirror.adopt does not apply to creationPolicy Merge",
            "VaultSecret/bad-policy: spec.mirror.adopt: must be a boolean",
            "VaultSecret/bad-policy: spec.mirror.creationPolicy: \"Keep\" is not one of: Owner, Orphan, Merge",
        ],
    ),
    (
        "mirror-sa-token.yaml",
        &[
            "VaultSecret/sa-token: spec.mirror.type: spec.mirror.type may not be kubernetes.io/service-account-token",
        ],
    ),
    (
        "policy-min-above-max.yaml",
        &[
            "PasswordPolicy/min-above-max: spec.passwordMinLength: spec.passwordMinLength must not exceed spec.passwordMaxLength",
        ],
    ),
    (
        "policy-missing-max-versions.yaml",
        &["PasswordPolicy/no-max-versions: spec.maxVersions: required field is missing"],
    ),
    (
        "policy-no-class.yaml",
        &["PasswordPolicy/no-class: spec: at least one character class"],
    ),
    (
        "role-name-and-id.yaml",
        &[
            "VaultSecret/roles: spec.readRoles: spec.readRoles and spec.writeRoles need spec.source",
            "VaultSecret/roles: spec.readRoles[0]: a role reference needs exactly one of name or id",
            "VaultSecret/roles: spec.readRoles[2]: duplicate role name \"db-admins\"",
        ],
    ),
    (
        "semantic.yaml",
        &[
            "VaultSecret/collisions: spec.source.secretRef.keys[2]: duplicate key",
            "VaultSecret/collisions: spec.mirror.keyMapping[cert]: \"cert\" and \"key\" would both be written",
            "VaultSecret/collisions: spec.mirror.type: a kubernetes.io/tls Secret needs the keys tls.crt, tls.key",
            "VaultSecret/collisions: spec.mirror.rolloutRestartTargets[1]: duplicate target Deployment/web",
            "VaultSecret/Bad_Name: metadata.name: \"Bad_Name\" is not a valid VaultSecret name",
            "VaultSecret/Bad_Name: spec.refreshInterval: spec.refreshInterval must be a duration",
        ],
    ),
    (
        "source-both.yaml",
        &[
            "VaultSecret/two-sources: spec.source: spec.source needs exactly one of secretRef or generate",
        ],
    ),
    (
        "unknown-field.yaml",
        &[
            "VaultSecret/typo: spec.source.secretRef.name: required field is missing",
            "VaultSecret/typo: spec.source.secretRef.nmae: unknown field",
        ],
    ),
    (
        "wrong-api-version.yaml",
        &[
            "PasswordPolicy/future: apiVersion: \"privx-operator.dev/v1beta1\" is not served",
            "VaultSecrets/plural: kind: privx-operator.dev has no kind \"VaultSecrets\"",
        ],
    ),
    (
        "wrong-type.json",
        &["PasswordPolicy/json-policy: spec.maxVersions: must be an integer, not a string"],
    ),
    (
        "wrong-type.yaml",
        &[
            "VaultSecret/wrong-types: spec.adopt: must be a boolean",
            "VaultSecret/wrong-types: spec.readRoles: must be a list, not an object",
        ],
    ),
];

#[test]
fn broken_fixtures_each_report_their_problems() {
    let output = check(&["-f", "tests/fixtures/broken"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let mut expected = Vec::new();
    for (file, prefixes) in EXPECTED {
        for prefix in *prefixes {
            expected.push(format!("tests/fixtures/broken/{file}: {prefix}"));
        }
    }
    let actual = lines(&output);
    assert_eq!(actual.len(), expected.len(), "{actual:#?}");
    for (line, prefix) in actual.iter().zip(&expected) {
        assert!(
            line.starts_with(prefix),
            "\n  got: {line}\n want: {prefix}…"
        );
    }
    // Every fixture is covered.
    let fixtures =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken"))
            .unwrap()
            .count();
    assert_eq!(fixtures, EXPECTED.len());
    assert!(
        stderr.contains(&format!("{} problems", expected.len())),
        "{stderr}"
    );
}

#[test]
fn one_broken_file_among_good_ones_fails_and_files_can_be_listed() {
    let output = check(&[
        "-f",
        "examples/passwordpolicy.yaml",
        "tests/fixtures/broken/policy-no-class.yaml",
        "-f",
        "examples/vaultsecret-personal.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(lines(&output).len(), 1, "{:?}", lines(&output));
}

#[test]
fn unreadable_paths_and_usage_errors_exit_2() {
    let missing = check(&["-f", "examples", "-f", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/dir"));
    assert_eq!(check(&[]).status.code(), Some(2), "no -f is a usage error");
    let help = check(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status") && help.contains("FILE_OR_DIR"),
        "{help}"
    );
}

#[test]
fn standard_input_is_read_with_dash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_privx-operator"))
        .args(["check", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: privx-operator.dev/v1alpha1\nkind: PasswordPolicy\nmetadata: {name: p}\nspec: {maxVersions: 0}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        lines(&output),
        ["<stdin>: PasswordPolicy/p: spec.maxVersions: must be at least 1 (is 0)"]
    );
}

#[test]
fn secret_values_of_skipped_objects_never_reach_the_output() {
    let checker = Checker::new();
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2-very-secret}\n---\napiVersion: privx-operator.dev/v1alpha1\nkind: VaultSecret\nmetadata: {name: v}\nspec: {adopt: 3}\n";
    let report = checker.check_text("f.yaml", text, Format::Yaml);
    assert_eq!(report.skipped, 1);
    assert_eq!(report.problems.len(), 1);
    assert!(!report.problems[0].to_string().contains("hunter2"));
}

thread_local! {
    static CHECKER: Checker = Checker::new();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary text, and examples with a slice cut out, never panic the checker.
    #[test]
    fn no_input_panics(text in ".{0,200}", cut in 0usize..2000, len in 0usize..40) {
        for format in [Format::Yaml, Format::Json] {
            CHECKER.with(|checker| checker.check_text("x", &text, format));
        }
        let example = include_str!("../examples/vaultsecret-from-secret.yaml");
        prop_assert!(example.is_ascii());
        let start = cut.min(example.len());
        let end = (start + len).min(example.len());
        let mutated = format!("{}{}", &example[..start], &example[end..]);
        CHECKER.with(|checker| checker.check_text("x", &mutated, Format::Yaml));
    }
}

// ---- one rule per check (issue 10 point 6) ---------------------------------------------------

/// A spec violating rules, as the object `check` and the CEL validator see.
fn object(kind: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut metadata = serde_json::json!({"name": "x"});
    if kind == "VaultSecret" {
        metadata["namespace"] = "demo".into();
    }
    serde_json::json!({"apiVersion": "privx-operator.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
}

/// Whether the error list `fields` covers `field` (the same field, or one inside it:
/// `spec.mirror.template` covers `spec.mirror.template[k]`).
fn covers(fields: &[String], field: &str) -> bool {
    fields.iter().any(|f| {
        f == field || f.starts_with(&format!("{field}[")) || f.starts_with(&format!("{field}."))
    })
}

/// Every CEL rule of a schema (message, rule) that needs no old object.
fn cel_rules(node: &serde_json::Value, out: &mut Vec<(String, String)>) {
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        if !text.contains("oldSelf") {
            out.push((
                rule["message"].as_str().unwrap_or_default().to_string(),
                text.to_string(),
            ));
        }
    }
    for (_, child) in node["properties"].as_object().into_iter().flatten() {
        cel_rules(child, out);
    }
    for key in ["items", "additionalProperties"] {
        if node[key].is_object() {
            cel_rules(&node[key], out);
        }
    }
}

/// The CEL rules (what the API server enforces), `crd::validate` (what the controller enforces
/// before any I/O) and `check` (what a pipeline runs) agree: on every case, each field CEL
/// refuses is refused by `validate` too, and `check` reports every field either refuses. Every
/// CEL rule that needs no old object is broken by some case, so a new rule without its twin in
/// `validate` fails here.
#[test]
fn cel_rules_validate_and_check_agree() {
    use privx_operator::crd::schema::crd_schema;
    use privx_operator::crd::validate::{validate_password_policy, validate_vault_secret};
    use privx_operator::crd::{PasswordPolicySpec, VERSION, VaultSecretSpec, all_crds};
    use serde_json::json;

    let long = "a".repeat(513);
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "VaultSecret",
            json!({"refreshInterval": "5m", "refreshPolicy": "OnChange"}),
        ),
        ("VaultSecret", json!({"refreshPolicy": "CreatedOnce"})),
        (
            "VaultSecret",
            json!({"readRoles": [{"name": "a"}], "writeRoles": [{"id": "b"}]}),
        ),
        ("VaultSecret", json!({"name": ""})),
        ("VaultSecret", json!({"name": long})),
        ("VaultSecret", json!({"name": "a\tb"})),
        ("VaultSecret", json!({"refreshInterval": "5s"})),
        ("VaultSecret", json!({"refreshInterval": "PT5M"})),
        ("VaultSecret", json!({"owner": {"userId": ""}})),
        (
            "VaultSecret",
            json!({"source": {"secretRef": {"name": "s"}}, "readRoles": [{"name": "a", "id": "b"}], "writeRoles": [{}]}),
        ),
        ("VaultSecret", json!({"source": {}})),
        (
            "VaultSecret",
            json!({"source": {"secretRef": {"name": "s"}, "generate": {"key": "k", "passwordPolicyRef": {"name": "p"}}}}),
        ),
        ("VaultSecret", json!({"mirror": {"mergePolicy": "Merge"}})),
        (
            "VaultSecret",
            json!({"mirror": {"secretName": "Not_A_Name"}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"labels": {"kubernetes.io/service-account.name": "x"}, "annotations": {"kubernetes.io/service-account.uid": "y"}}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"template": {".": "x", "..a": "y", "a b": "z"}}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"template": {"big": "x".repeat(65537)}}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"templateFrom": [{"configMapRef": {"name": "Bad_Name", "key": ".."}}]}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"templateFrom": [{"configMapRef": {"name": "ok", "key": "a b"}}]}}),
        ),
        (
            "VaultSecret",
            json!({"mirror": {"creationPolicy": "Merge", "type": "Opaque", "immutable": true, "adopt": true}}),
        ),
        ("VaultSecret", json!({"mirror": {"type": ""}})),
        (
            "VaultSecret",
            json!({"mirror": {"type": "bootstrap.kubernetes.io/token"}}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "rotationInterval": "30 days", "deleteVersionAfter": "x", "retryInterval": "P", "maxCheckoutDuration": "PT"}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "passwordMinLength": 20, "passwordMaxLength": 10}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "passwordMaxLength": 10}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "passwordMinLength": 40}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "passwordMinLength": 3, "passwordMaxLength": 8}),
        ),
        (
            "PasswordPolicy",
            json!({"maxVersions": 1, "useLowerCase": false, "useUpperCase": false, "useNumbers": false, "useSpecialCharacters": false}),
        ),
    ];
    let checker = Checker::new();
    let cel = kube::core::cel::Validator::new();
    let mut rules = Vec::new();
    let mut compiled = std::collections::BTreeMap::new();
    for crd in all_crds() {
        let schema = crd_schema(&crd, VERSION).expect("a schema");
        cel_rules(&schema, &mut rules);
        compiled.insert(
            crd.spec.names.kind.clone(),
            kube::core::cel::compile_schema(&schema),
        );
    }
    let mut broken: std::collections::BTreeSet<String> = Default::default();
    for (kind, spec) in cases {
        let doc = object(kind, spec.clone());
        let cel_failures: Vec<(String, String)> =
            match cel.validate_compiled(&compiled[kind], &doc, None) {
                Ok(()) => Vec::new(),
                Err(failures) => failures
                    .iter()
                    .map(|f| (f.field_path.clone(), f.message.clone()))
                    .collect(),
            };
        let validated: Vec<String> = match kind {
            "VaultSecret" => validate_vault_secret(
                &serde_json::from_value::<VaultSecretSpec>(spec.clone()).unwrap(),
            ),
            _ => validate_password_policy(
                &serde_json::from_value::<PasswordPolicySpec>(spec.clone()).unwrap(),
            ),
        }
        .into_iter()
        .map(|e| e.field)
        .collect();
        let checked: Vec<String> = checker
            .check_text("case.json", &doc.to_string(), Format::Json)
            .problems
            .into_iter()
            .map(|p| p.error.field)
            .collect();
        assert!(
            !cel_failures.is_empty(),
            "{spec}: the case breaks no CEL rule"
        );
        for (field, message) in &cel_failures {
            broken.insert(message.clone());
            assert!(
                covers(&validated, field),
                "{spec}: CEL refuses {field} ({message}) but validate does not: {validated:?}"
            );
        }
        for field in validated.iter().chain(cel_failures.iter().map(|(f, _)| f)) {
            assert!(
                covers(&checked, field),
                "{spec}: check misses {field}: {checked:?}"
            );
        }
    }
    let unbroken: Vec<&(String, String)> =
        rules.iter().filter(|(m, _)| !broken.contains(m)).collect();
    assert!(
        unbroken.is_empty(),
        "CEL rules no case breaks: {unbroken:#?}"
    );
    assert!(rules.len() >= 20, "found {} rules", rules.len());
}

/// "Roles need a source" was a runtime refusal only: `check` now reports it, as the API server.
#[test]
fn check_reports_roles_without_a_source() {
    let text = "apiVersion: privx-operator.dev/v1alpha1\nkind: VaultSecret\nmetadata: {name: ro, namespace: demo}\nspec: {readRoles: [{name: app-readers}]}\n";
    let problems: Vec<String> = Checker::new()
        .check_text("ro.yaml", text, Format::Yaml)
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        problems,
        [
            "ro.yaml: VaultSecret/ro: spec.readRoles: spec.readRoles and spec.writeRoles need spec.source: without a source the operator only reads the secret"
        ]
    );
}
