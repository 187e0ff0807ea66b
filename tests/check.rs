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
    // Every example file holds an object of ours, and the plain Secret is skipped.
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
            "{examples} files, {examples} objects checked (1 of other kinds skipped): no problems"
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
        "mirror-sa-token.yaml",
        &[
            "VaultSecret/sa-token: spec.mirror.type: \"kubernetes.io/service-account-token\" is not one of:",
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
