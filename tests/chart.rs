//! The Helm chart (`charts/privx-operator`), the Dockerfile and their agreement with the binary,
//! checked statically, without helm (real Helm renders the chart in the separate CI step
//! `.ci/helm`, which also validates the rendered manifests against Kubernetes' schema):
//! - the chart's CRDs (`files/crds/`, rendered by `templates/crds.yaml` so that `helm upgrade`
//!   upgrades them) are byte-identical to `crds/` and to what the binary generates;
//! - `values.yaml` passes `values.schema.json`, and the schema refuses wrong values;
//! - a static lint of the templates: balanced `{{ }}` and blocks, every `.Values.x.y` path
//!   exists in `values.yaml`, and each template's text parses as YAML once its actions are
//!   blanked out (an action alone on its lines is dropped, an inline one becomes a scalar);
//! - every flag and environment variable the Deployment passes exists in `privx-operator run`,
//!   and the chart's defaults equal the binary's;
//! - RBAC: no wildcards, no verbs beyond those the code uses, optional rights behind their switch;
//!   the tenant roles aggregated to view/edit/admin name VaultSecrets only;
//! - every metric the PrometheusRule and the Grafana dashboard use is one the operator exports.
//!
//! Limits of this lint (`.ci/helm` covers them by rendering): text inside `{{ if }}` branches is parsed with
//! every branch present at once, so it cannot catch a wrong indentation of `nindent` output or
//! an error that shows only for some values; paths relative to `with`/`range` (`.x`) are not
//! checked against `values.yaml`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use privx_operator::crd::{all_crds, crd_file_name, crd_yaml};
use privx_operator::runtime::RunArgs;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/privx-operator")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not YAML: {e}"))
}

fn values() -> Value {
    yaml(&read(&chart().join("values.yaml")), "values.yaml")
}

fn schema() -> jsonschema::Validator {
    let text = read(&chart().join("values.schema.json"));
    let schema: Value = serde_json::from_str(&text).expect("values.schema.json is JSON");
    jsonschema::draft7::new(&schema).expect("values.schema.json is a valid draft-07 schema")
}

fn schema_errors(validator: &jsonschema::Validator, values: &Value) -> Vec<String> {
    validator
        .iter_errors(values)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Sets `pointer` (a JSON pointer) in `values`, creating objects on the way; `None` removes it.
fn with(mut values: Value, pointer: &str, new: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer has a slash");
    let mut node = &mut values;
    for segment in parent.split('/').skip(1) {
        node = node
            .as_object_mut()
            .unwrap()
            .entry(segment)
            .or_insert_with(|| json!({}));
    }
    let object = node.as_object_mut().expect("the parent is an object");
    match new {
        Some(v) => {
            object.insert(key.to_string(), v);
        }
        None => {
            object.remove(key);
        }
    }
    values
}

fn run_command() -> clap::Command {
    RunArgs::augment_args(clap::Command::new("run"))
}

fn run_arg(long: &str) -> clap::Arg {
    run_command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap_or_else(|| panic!("privx-operator run has no --{long}"))
        .clone()
}

fn run_default(long: &str) -> String {
    let arg = run_arg(long);
    let defaults = arg.get_default_values();
    assert_eq!(defaults.len(), 1, "--{long} has one default");
    defaults[0].to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// CRDs

#[test]
fn chart_crds_are_byte_identical_to_the_generated_ones() {
    assert!(
        !chart().join("crds").exists(),
        "the chart has a crds/ folder again: Helm never upgrades those (the CRDs are templates)"
    );
    let chart_crds = chart().join("files/crds");
    let mut expected_files = BTreeSet::new();
    for crd in all_crds() {
        let file = crd_file_name(&crd);
        let in_chart = read(&chart_crds.join(&file));
        let in_repo = read(&repo().join("crds").join(&file));
        assert!(
            in_chart == in_repo,
            "charts/privx-operator/files/crds/{file} differs from crds/{file}; copy it over"
        );
        assert!(
            in_chart == crd_yaml(&crd),
            "charts/privx-operator/files/crds/{file} is stale; run `cargo run -- crd --out-dir crds` and copy"
        );
        expected_files.insert(file);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&chart_crds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected_files,
        "unexpected files in the chart's files/crds/"
    );
    let template = read(&chart().join("templates/crds.yaml"));
    assert!(template.contains(".Files.Glob \"files/crds/*.yaml\""));
    assert!(template.contains("\"helm.sh/resource-policy\" \"keep\""));
    assert_eq!(
        values()["crds"],
        json!({"install": true, "keep": true, "annotations": {}})
    );
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart_yaml = yaml(&read(&chart().join("Chart.yaml")), "Chart.yaml");
    assert_eq!(chart_yaml["apiVersion"], "v2");
    assert_eq!(chart_yaml["name"], "privx-operator");
    assert_eq!(chart_yaml["appVersion"], env!("CARGO_PKG_VERSION"));
    // The CRDs' CEL transition rules need 1.29 (docs/installation.md says the same).
    assert_eq!(chart_yaml["kubeVersion"], ">=1.29.0-0");
    let home = chart_yaml["home"].as_str().expect("home");
    assert!(
        !home.contains("ssh.com"),
        "home is the project, not the vendor's product page"
    );
    assert_eq!(chart_yaml["sources"][0], home);
    for key in [
        "artifacthub.io/license",
        "artifacthub.io/crds",
        "artifacthub.io/links",
    ] {
        assert!(
            chart_yaml["annotations"].get(key).is_some(),
            "Chart.yaml lacks the Artifact Hub annotation {key}"
        );
    }
    assert_eq!(
        chart_yaml["annotations"]["artifacthub.io/license"],
        env!("CARGO_PKG_LICENSE")
    );
}

// ---------------------------------------------------------------------------------------------
// values.yaml and its schema

#[test]
fn values_yaml_passes_the_schema() {
    let errors = schema_errors(&schema(), &values());
    assert!(
        errors.is_empty(),
        "values.yaml fails its schema: {errors:#?}"
    );
}

#[test]
fn a_full_production_configuration_passes_the_schema() {
    let mut v = values();
    for (pointer, value) in [
        ("/replicaCount", json!(3)),
        ("/privx/url", json!("https://privx.example.com:8443/")),
        (
            "/privx/credentials/existingSecret",
            json!("privx-api-client"),
        ),
        ("/privx/ca/existingConfigMap", json!("privx-ca")),
        ("/privx/ca/only", json!(true)),
        ("/privx/selfRoles", json!(["k8s-operator"])),
        ("/privx/policyGeneration", json!("v35")),
        ("/namespaces", json!(["team-a", "team-b"])),
        ("/logFormat", json!("json")),
        ("/logLevel", json!("info,privx_operator=debug")),
        ("/networkPolicy/enabled", json!(true)),
        ("/networkPolicy/apiServer/cidrs", json!(["10.0.0.1/32"])),
        ("/networkPolicy/privx/cidrs", json!(["192.0.2.10/32"])),
        ("/podDisruptionBudget/enabled", json!(true)),
        ("/podDisruptionBudget/minAvailable", json!(1)),
        ("/serviceMonitor/enabled", json!(true)),
        ("/image/digest", json!(format!("sha256:{}", "a".repeat(64)))),
        (
            "/image/repository",
            json!("registry.example.com/privx-operator"),
        ),
        ("/prometheusRule/enabled", json!(true)),
        ("/grafanaDashboard/enabled", json!(true)),
        ("/extraArgs", json!(["--privx-token-expiration=15m"])),
        ("/extraVolumes", json!([{"name": "extra", "emptyDir": {}}])),
        (
            "/extraVolumeMounts",
            json!([{"name": "extra", "mountPath": "/extra"}]),
        ),
        (
            "/extraObjects",
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "kind: ConfigMap"]),
        ),
        (
            "/hostAliases",
            json!([{"ip": "192.0.2.10", "hostnames": ["privx.example.com"]}]),
        ),
        (
            "/dnsConfig",
            json!({"options": [{"name": "ndots", "value": "2"}]}),
        ),
        ("/deploymentAnnotations", json!({"a": "b"})),
        ("/revisionHistoryLimit", json!(2)),
    ] {
        v = with(v, pointer, Some(value));
    }
    let errors = schema_errors(&schema(), &v);
    assert!(errors.is_empty(), "{errors:#?}");

    let created = with(
        with(
            with(
                with(values(), "/privx/credentials/create", Some(json!(true))),
                "/privx/credentials/apiClientId",
                Some(json!("id")),
            ),
            "/privx/credentials/apiClientSecret",
            Some(json!("s")),
        ),
        "/privx/credentials/oauthClientSecret",
        Some(json!("o")),
    );
    let errors = schema_errors(&schema(), &created);
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_refuses_wrong_values() {
    let validator = schema();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "replicas as a word",
            with(values(), "/replicaCount", Some(json!("two"))),
            "/replicaCount",
        ),
        (
            "zero replicas",
            with(values(), "/replicaCount", Some(json!(0))),
            "/replicaCount",
        ),
        (
            "unknown log format",
            with(values(), "/logFormat", Some(json!("xml"))),
            "/logFormat",
        ),
        (
            "missing PrivX URL",
            with(values(), "/privx/url", None),
            "/privx",
        ),
        (
            "plain http to a remote PrivX",
            with(
                values(),
                "/privx/url",
                Some(json!("http://privx.example.com")),
            ),
            "/privx/url",
        ),
        (
            "two replicas without leader election",
            with(
                with(values(), "/replicaCount", Some(json!(2))),
                "/leaderElection/enabled",
                Some(json!(false)),
            ),
            "/leaderElection/enabled",
        ),
        (
            "a typo in a key",
            with(values(), "/logLevle", Some(json!("debug"))),
            "",
        ),
        (
            "an invalid namespace name",
            with(values(), "/namespaces", Some(json!(["Team_A"]))),
            "/namespaces/0",
        ),
        (
            "name template with {name} before {namespace}",
            with(values(), "/nameTemplate", Some(json!("{name}/{namespace}"))),
            "/nameTemplate",
        ),
        (
            "name template whose separator could occur in a namespace name",
            with(values(), "/nameTemplate", Some(json!("{namespace}-{name}"))),
            "/nameTemplate",
        ),
        (
            "unknown policy generation",
            with(values(), "/privx/policyGeneration", Some(json!("v36"))),
            "/privx/policyGeneration",
        ),
        (
            "a duration without a unit",
            with(values(), "/privx/timeout", Some(json!("30"))),
            "/privx/timeout",
        ),
        (
            "created credentials without the secret values",
            with(values(), "/privx/credentials/create", Some(json!(true))),
            "/privx/credentials",
        ),
        (
            "two CA sources",
            with(
                with(
                    values(),
                    "/privx/ca/pem",
                    Some(json!(
                        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
                    )),
                ),
                "/privx/ca/existingSecret",
                Some(json!("privx-ca")),
            ),
            "/privx/ca/existingSecret",
        ),
        (
            "CA-only trust without a CA",
            with(values(), "/privx/ca/only", Some(json!(true))),
            "/privx/ca",
        ),
        (
            "a NetworkPolicy without CIDRs",
            with(values(), "/networkPolicy/enabled", Some(json!(true))),
            "/networkPolicy/apiServer/cidrs",
        ),
        (
            "a privileged port",
            with(values(), "/httpPort", Some(json!(80))),
            "/httpPort",
        ),
        (
            "an extra argument that is not a flag",
            with(values(), "/extraArgs", Some(json!(["run"]))),
            "/extraArgs/0",
        ),
        (
            "a negative revision history",
            with(values(), "/revisionHistoryLimit", Some(json!(-1))),
            "/revisionHistoryLimit",
        ),
        (
            "a typo under crds",
            with(values(), "/crds/kepp", Some(json!(true))),
            "/crds",
        ),
        (
            "a dnsConfig key Kubernetes lacks",
            with(values(), "/dnsConfig/nameserver", Some(json!(["1.1.1.1"]))),
            "/dnsConfig",
        ),
        (
            "an image digest that is not sha256",
            with(values(), "/image/digest", Some(json!("latest"))),
            "/image/digest",
        ),
    ];
    for (what, values, path) in cases {
        let errors = schema_errors(&validator, &values);
        assert!(!errors.is_empty(), "the schema accepted {what}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{path}:")) || e.starts_with(&format!("{path}/"))),
            "{what}: expected an error at {path:?}, got {errors:#?}"
        );
    }
}

#[test]
fn schema_enums_are_the_binarys_choices() {
    let text = read(&chart().join("values.schema.json"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    for (pointer, long) in [
        ("/properties/logFormat/enum", "log-format"),
        (
            "/properties/privx/properties/policyGeneration/enum",
            "privx-policy-generation",
        ),
    ] {
        let in_schema: BTreeSet<String> = schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("schema has no {pointer}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let in_binary: BTreeSet<String> = run_arg(long)
            .get_possible_values()
            .iter()
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(in_schema, in_binary, "{pointer} vs --{long}");
    }
}

#[test]
fn chart_defaults_are_the_binarys_defaults() {
    let v = values();
    let port = run_default("http-addr")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    for (value, long) in [
        (
            v["nameTemplate"].as_str().unwrap().to_string(),
            "name-template",
        ),
        (v["logFormat"].as_str().unwrap().to_string(), "log-format"),
        (v["logLevel"].as_str().unwrap().to_string(), "log-level"),
        (
            v["privx"]["timeout"].as_str().unwrap().to_string(),
            "privx-timeout",
        ),
        (
            v["privx"]["policyGeneration"].as_str().unwrap().to_string(),
            "privx-policy-generation",
        ),
        (
            v["leaderElection"]["leaseDuration"]
                .as_str()
                .unwrap()
                .to_string(),
            "lease-duration",
        ),
        (v["concurrency"].to_string(), "concurrency"),
        (
            v["privx"]["maxConcurrency"].to_string(),
            "privx-max-concurrency",
        ),
        (v["privx"]["rateLimit"].to_string(), "privx-rate-limit"),
        (v["privx"]["rateBurst"].to_string(), "privx-rate-burst"),
        (
            v["rolloutRestart"]["enabled"].to_string(),
            "rollout-restart",
        ),
    ] {
        assert_eq!(value, run_default(long), "chart default vs --{long}");
    }
    assert_eq!(v["httpPort"].to_string(), port, "httpPort vs --http-addr");
}

#[test]
fn secure_defaults() {
    let v = values();
    let pod = &v["podSecurityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
    assert_ne!(pod["runAsUser"], 0);
    let container = &v["securityContext"];
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["readOnlyRootFilesystem"], true);
    assert_eq!(container["privileged"], false);
    assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));
    assert!(container["capabilities"].get("add").is_none());
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                v["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} is unset"
            );
        }
    }
    assert_eq!(v["privx"]["credentials"]["create"], false);
    assert_eq!(v["privx"]["ca"]["only"], false);

    let deployment = read(&chart().join("templates/deployment.yaml"));
    for probe in [
        "livenessProbe:\n            httpGet:\n              path: /livez",
        "readinessProbe:\n            httpGet:\n              path: /readyz",
    ] {
        assert!(deployment.contains(probe), "deployment lacks {probe:?}");
    }
    assert!(deployment.contains("toYaml .Values.securityContext"));
    assert!(deployment.contains("toYaml .Values.podSecurityContext"));
    assert!(deployment.contains("toYaml .Values.resources"));
}

// ---------------------------------------------------------------------------------------------
// Static template lint

/// A template split into text and actions, with the conditions each text piece sits under.
struct Parsed {
    /// (text, the actions of the enclosing blocks, innermost last)
    texts: Vec<(String, Vec<String>)>,
    actions: Vec<String>,
    /// Text with every action replaced by [`MARK`].
    marked: String,
}

const MARK: char = '\u{1}';

fn parse_template(name: &str, source: &str) -> Parsed {
    let mut texts = Vec::new();
    let mut actions = Vec::new();
    let mut marked = String::new();
    let mut stack: Vec<String> = Vec::new();
    let mut rest = source;
    loop {
        let open = rest.find("{{");
        let stray_close = rest.find("}}");
        if let Some(close) = stray_close
            && open.is_none_or(|o| close < o)
        {
            panic!("{name}: `}}}}` without `{{{{` near {:?}", &rest[..close]);
        }
        let Some(open) = open else {
            texts.push((rest.to_string(), stack.clone()));
            marked.push_str(rest);
            break;
        };
        texts.push((rest[..open].to_string(), stack.clone()));
        marked.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("{name}: `{{{{` never closed near {:?}", &rest[open..]));
        let inner = &after[..close];
        assert!(
            !inner.contains("{{"),
            "{name}: `{{{{` inside an action: {inner:?}"
        );
        let action = inner
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim()
            .to_string();
        let keyword = action.split_whitespace().next().unwrap_or("");
        if !action.starts_with("/*") {
            match keyword {
                "if" | "range" | "with" | "define" | "block" => stack.push(action.clone()),
                "end" => {
                    stack
                        .pop()
                        .unwrap_or_else(|| panic!("{name}: `end` without an open block"));
                }
                _ => {}
            }
        }
        actions.push(action);
        marked.push(MARK);
        rest = &after[close + 2..];
    }
    assert!(stack.is_empty(), "{name}: blocks left open: {stack:?}");
    Parsed {
        texts,
        actions,
        marked,
    }
}

/// The templates (also those in sub-folders such as `tests/`), by their path under `templates/`.
fn templates() -> Vec<(String, String)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
            if path.is_dir() {
                walk(&path, &format!("{name}/"), out);
            } else {
                out.push((name, read(&path)));
            }
        }
    }
    let mut files = Vec::new();
    walk(&chart().join("templates"), "", &mut files);
    files.sort();
    assert!(files.len() >= 10, "templates missing: {files:?}");
    files
}

#[test]
fn templates_have_balanced_actions_and_blocks() {
    for (name, source) in templates() {
        let parsed = parse_template(&name, &source);
        assert!(!parsed.actions.is_empty() || name.ends_with(".txt"));
    }
}

#[test]
fn the_balance_check_catches_mistakes() {
    for broken in [
        "a: {{ .Values.x }",
        "a: {{ .Values.x }}}}",
        "{{ if .Values.x }}a: 1",
        "a: 1\n{{ end }}",
    ] {
        let outcome = std::panic::catch_unwind(|| parse_template("broken", broken));
        assert!(outcome.is_err(), "accepted {broken:?}");
    }
}

#[test]
fn every_values_path_in_the_templates_exists_in_values_yaml() {
    let v = values();
    let path_re = regex::Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").unwrap();
    let mut checked = 0;
    for (name, source) in templates() {
        for action in parse_template(&name, &source).actions {
            for capture in path_re.captures_iter(&action) {
                let path = &capture[1];
                let mut node = &v;
                for segment in path.split('.').skip(1) {
                    node = node.get(segment).unwrap_or_else(|| {
                        panic!("{name}: .Values{path} is not in values.yaml (at {segment:?})")
                    });
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} .Values references found");
}

/// The template's text as YAML documents, with actions blanked out.
fn blanked_documents(name: &str, source: &str) -> Vec<String> {
    let parsed = parse_template(name, source);
    let mut text = String::new();
    for line in parsed.marked.lines() {
        let only_actions = line.contains(MARK) && line.chars().all(|c| c == MARK || c == ' ');
        if !only_actions {
            text.push_str(&line.replace(MARK, "x"));
            text.push('\n');
        }
    }
    text.split("\n---\n")
        .map(str::to_string)
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim().starts_with('#') && l.trim() != "---")
        })
        .collect()
}

#[test]
fn template_text_is_yaml_once_actions_are_blanked() {
    let mut kinds = BTreeSet::new();
    for (name, source) in templates() {
        // Documents these render are not in their text: the CRDs come from files/crds/ (checked
        // above), extraObjects from the values.
        if !name.ends_with(".yaml") || name == "crds.yaml" || name == "extra-objects.yaml" {
            continue;
        }
        let documents = blanked_documents(&name, &source);
        assert!(!documents.is_empty(), "{name} holds no document");
        for doc in documents {
            let value: Value = serde_saphyr::from_str(&doc)
                .unwrap_or_else(|e| panic!("{name} is not YAML once blanked: {e}\n{doc}"));
            for key in ["apiVersion", "kind", "metadata"] {
                assert!(value.get(key).is_some(), "{name}: a document without {key}");
            }
            kinds.insert(value["kind"].as_str().unwrap().to_string());
        }
    }
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "ConfigMap",
        "PrometheusRule",
        "Job",
        "Pod",
    ] {
        assert!(kinds.contains(kind), "no template renders a {kind}");
    }
}

#[test]
fn the_yaml_check_catches_a_broken_template() {
    let broken =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n   labels: [\n";
    let docs = blanked_documents("broken", broken);
    assert!(serde_saphyr::from_str::<Value>(&docs[0]).is_err());
}

#[test]
fn deployment_flags_and_environment_exist_in_the_binary() {
    let deployment = read(&chart().join("templates/deployment.yaml"));
    let command = run_command();
    let flags: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    // Flags the chart passes (only when their value is set) before the runtime has them.
    let pending_flags = ["privx-self-roles"];
    let flag_re = regex::Regex::new(r#""--([a-z][a-z0-9-]*)"#).unwrap();
    let used: BTreeSet<String> = flag_re
        .captures_iter(&deployment)
        .map(|c| c[1].to_string())
        .collect();
    assert!(used.len() >= 12, "too few flags found: {used:?}");
    for flag in &used {
        assert!(
            flags.contains(flag) || pending_flags.contains(&flag.as_str()),
            "the chart passes --{flag}, which `privx-operator run` does not have"
        );
    }
    for flag in [
        "http-addr",
        "log-format",
        "log-level",
        "name-template",
        "namespaces",
        "privx-ca-file",
        "privx-ca-only",
        "privx-policy-generation",
        "concurrency",
        "privx-max-concurrency",
        "privx-rate-limit",
        "privx-rate-burst",
        "leader-election",
        "lease-duration",
        "rollout-restart",
        "privx-self-roles",
    ] {
        assert!(used.contains(flag), "the chart never passes --{flag}");
    }

    let mut known_env: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    // Read by `privx::config` (credentials as files) and by leader election (holder identity).
    known_env.extend(
        [
            "PRIVX_API_CLIENT_ID_FILE",
            "PRIVX_API_CLIENT_SECRET_FILE",
            "PRIVX_API_OAUTH_CLIENT_ID_FILE",
            "PRIVX_API_OAUTH_CLIENT_SECRET_FILE",
            "POD_NAME",
        ]
        .map(str::to_string),
    );
    let env_re = regex::Regex::new(r"(?m)^\s+- name: ([A-Z][A-Z0-9_]*)$").unwrap();
    let env: BTreeSet<String> = env_re
        .captures_iter(&deployment)
        .map(|c| c[1].to_string())
        .collect();
    for required in [
        "POD_NAMESPACE",
        "PRIVX_API_BASE_URL",
        "PRIVX_API_CLIENT_ID_FILE",
        "PRIVX_API_OAUTH_CLIENT_SECRET_FILE",
    ] {
        assert!(
            env.contains(required),
            "the Deployment does not set {required}"
        );
    }
    for name in &env {
        assert!(
            known_env.contains(name),
            "the Deployment sets {name}, which nothing reads"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC

#[test]
fn rbac_grants_only_the_verbs_the_code_uses() {
    let allowed: BTreeSet<&str> = [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ]
    .into();
    let verbs_re = regex::Regex::new(r"verbs: \[([^\]]*)\]").unwrap();
    let mut rules = 0;
    for (name, source) in templates() {
        assert!(
            !source.contains("\"*\"") && !source.contains("'*'") && !source.contains("- \"*\""),
            "{name} grants a wildcard"
        );
        if name == TENANT_ROLES {
            continue; // rights of namespace users, not the operator's (see below)
        }
        for capture in verbs_re.captures_iter(&source) {
            rules += 1;
            for verb in capture[1].split(',') {
                let verb = verb.trim().trim_matches('"');
                assert!(allowed.contains(verb), "{name} grants {verb}");
                // Delete is for Secrets only (a mirrored Secret whose immutable type changed).
                if verb == "delete" {
                    let line = capture.get(0).unwrap().start();
                    let before = &source[..line];
                    let rule_start = before.rfind("- apiGroups").unwrap_or(0);
                    assert!(
                        before[rule_start..].contains("resources: [\"secrets\"]"),
                        "{name}: delete is for secrets only"
                    );
                }
                // Only the Lease and the VaultSecrets' finalizers subresource (owner
                // references with blockOwnerDeletion) are updated; the rest is patched.
                if verb == "update" {
                    let line = capture.get(0).unwrap().start();
                    let before = &source[..line];
                    let rule = &before[before.rfind("- apiGroups").unwrap_or(0)..];
                    assert!(
                        (name == "role-operator.yaml" && rule.contains("leases"))
                            || rule.contains("resources: [\"vaultsecrets/finalizers\"]"),
                        "{name}: update is for Leases and vaultsecrets/finalizers only"
                    );
                }
            }
        }
    }
    assert!(rules >= 12, "found only {rules} RBAC rules");
}

/// The ClusterRoles aggregated to the built-in view, edit and admin roles.
const TENANT_ROLES: &str = "clusterrole-aggregated.yaml";

/// Namespace users get VaultSecrets through the built-in roles, and nothing else: no
/// PasswordPolicies (cluster-wide, for cluster admins), no status, no Secrets (the built-in
/// roles decide those); read rights go to view, write rights to edit (and so admin); both
/// behind their switches and `rbac.create`.
#[test]
fn tenant_roles_aggregate_vaultsecrets_only() {
    let source = read(&chart().join("templates").join(TENANT_ROLES));
    let parsed = parse_template(TENANT_ROLES, &source);
    let resources_re = regex::Regex::new(r"resources: \[([^\]]*)\]").unwrap();
    let resources: Vec<String> = resources_re
        .captures_iter(&source)
        .map(|c| c[1].to_string())
        .collect();
    assert_eq!(resources, ["\"vaultsecrets\"", "\"vaultsecrets\""]);
    for (text, enclosing) in &parsed.texts {
        let under = |needle: &str| enclosing.iter().any(|a| a.contains(needle));
        if text.contains("aggregate-to-view") {
            assert!(under("rbac.aggregateToView") && under("rbac.create"));
            assert!(text.contains("verbs: [\"get\", \"list\", \"watch\"]"));
        }
        if text.contains("verbs: [\"create\"") {
            assert!(under("rbac.aggregateToEdit") && under("rbac.create"));
            assert!(
                !text.contains("aggregate-to-view"),
                "write rights aggregate to view"
            );
            assert!(text.contains("aggregate-to-edit") && text.contains("aggregate-to-admin"));
        }
    }
    let v = values();
    assert_eq!(v["rbac"]["aggregateToView"], true);
    assert_eq!(v["rbac"]["aggregateToEdit"], true);
}

#[test]
fn optional_rights_sit_behind_their_switches() {
    let mut apps_rules = 0;
    let mut lease_rules = 0;
    for (name, source) in templates() {
        for (text, enclosing) in parse_template(&name, &source).texts {
            let under = |needle: &str| enclosing.iter().any(|a| a.contains(needle));
            if text.contains("apiGroups: [\"apps\"]") {
                apps_rules += 1;
                assert!(
                    under("rolloutRestart.enabled"),
                    "{name}: workload rights outside `if rolloutRestart.enabled`"
                );
            }
            if text.contains("coordination.k8s.io") {
                lease_rules += 1;
                assert!(
                    under("privx-operator.leaderElection"),
                    "{name}: Lease rights outside the leader-election switch"
                );
                assert!(
                    name == "role-operator.yaml",
                    "{name}: Lease rights belong in the operator's own namespace only"
                );
            }
            if (text.contains("\"vaultsecrets\"") || text.contains("- vaultsecrets\n"))
                && name != TENANT_ROLES
            {
                assert!(
                    name == "role-namespaces.yaml"
                        || under("$clusterWide")
                        || (name == "uninstall-check.yaml" && under("range $namespace")),
                    "{name}: cluster-wide VaultSecret rights although namespaces may be restricted"
                );
            }
            if text.contains("resources: [\"secrets\"]") && name == "clusterrole.yaml" {
                assert!(
                    under("$clusterWide"),
                    "{name}: cluster-wide Secret rights unguarded"
                );
            }
        }
    }
    assert_eq!(
        apps_rules, 2,
        "workload rules: one cluster-wide, one per namespace"
    );
    assert!(lease_rules >= 1);
}

/// Issue 13 item 11: mirrors carry an owner reference with `blockOwnerDeletion: true`, which
/// the OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift) allows only to
/// whoever may `update` the owner's `finalizers` subresource. Both RBAC variants grant it, and
/// only it.
#[test]
fn mirrors_owner_references_are_allowed_under_owner_reference_enforcement() {
    let rule = "  - apiGroups: [\"privx-operator.dev\"]\n    resources: [\"vaultsecrets/finalizers\"]\n    verbs: [\"update\"]\n";
    for (file, guard) in [
        ("clusterrole.yaml", "if $clusterWide"),
        (
            "role-namespaces.yaml",
            "range $namespace := .Values.namespaces",
        ),
    ] {
        let source = read(&chart().join("templates").join(file));
        assert_eq!(
            source.matches(rule).count(),
            1,
            "{file}: one finalizers rule"
        );
        assert_eq!(
            source.matches("vaultsecrets/finalizers").count(),
            1,
            "{file}: no other rule names the finalizers subresource"
        );
        let (_, enclosing) = parse_template(file, &source)
            .texts
            .into_iter()
            .find(|(text, _)| text.contains(rule))
            .expect("the rule is in one text piece");
        assert!(
            enclosing.iter().any(|a| a.contains(guard)),
            "{file}: the finalizers rule sits under `{guard}`: {enclosing:?}"
        );
        assert!(
            enclosing.iter().any(|a| a.contains(".Values.rbac.create")),
            "{file}: behind rbac.create"
        );
    }
    // The code does set blockOwnerDeletion (the reason for the right).
    let plan = read(&repo().join("src/controller/vault_secret/plan/mirror.rs"));
    assert!(plan.contains("block_owner_deletion: Some(true)"));
}

// ---------------------------------------------------------------------------------------------
// Container image

#[test]
fn dockerfile_is_from_scratch_pinned_and_runs_as_the_charts_user() {
    let dockerfile = read(&repo().join("Dockerfile"));
    let lines: Vec<&str> = dockerfile.lines().filter(|l| !l.starts_with('#')).collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    // No base image to pull, so no tag that could float: the base is image/debian.lock.
    assert_eq!(from, [&"FROM scratch"]);
    // The chart's podSecurityContext runs the pod as 65532:65532; the image agrees by itself.
    assert!(lines.contains(&"USER 65532:65532"));
    assert!(lines.contains(&"ENTRYPOINT [\"/privx-operator\"]"));
    assert!(lines.contains(&"CMD [\"run\"]"));
    for label in ["source", "revision", "version", "licenses"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "no OCI label {label}"
        );
    }
    let copied: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        copied,
        [
            "target/image/${TARGETARCH}/base/",
            "image/etc/",
            "LICENSE",
            "target/image/${TARGETARCH}/privx-operator",
        ],
        "the image holds the assembled base, its /etc, the licence and the binary"
    );

    // The build context is only what the Dockerfile copies, for both architectures.
    let ignore = read(&repo().join(".dockerignore"));
    let entries: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries.first(), Some(&"*"), "everything is left out first");
    for source in &copied {
        for arch in ["amd64", "arm64"] {
            let source = source.replace("${TARGETARCH}", arch);
            assert!(
                entries
                    .iter()
                    .filter_map(|e| e.strip_prefix('!'))
                    .any(|kept| source.starts_with(kept)),
                ".dockerignore leaves out {source}"
            );
        }
    }

    let passwd = read(&repo().join("image/etc/passwd"));
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:"))
    );
    // Every pinned package carries the SHA-256 of its .deb.
    let lock = read(&repo().join("image/debian.lock"));
    let pins: Vec<Vec<&str>> = lock
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(!pins.is_empty());
    for pin in pins {
        assert_eq!(pin.len(), 4, "package version arch sha256: {pin:?}");
        assert!(
            pin[3].len() == 64 && pin[3].chars().all(|c| c.is_ascii_hexdigit()),
            "{pin:?}"
        );
    }
}

/// The e2e suite's service-account mode (tests/e2e/service_account.rs) runs the operator with
/// RBAC written out by hand, to be the chart's for listed namespaces: each of its rules must be
/// one the chart grants (same group, resource and verbs), or the e2e test proves nothing about
/// the chart.
#[test]
fn the_e2e_service_account_rbac_is_the_charts() {
    let harness = read(&repo().join("tests/e2e/service_account.rs"));
    let call =
        regex::Regex::new(r"rule\(\s*&\[([^\]]*)\],\s*&\[([^\]]*)\],\s*&\[([^\]]*)\]").unwrap();
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty() || text.trim() == "\"\"")
            .collect()
    };
    let chart_rules: Vec<String> = ["clusterrole.yaml", "role-namespaces.yaml"]
        .iter()
        .flat_map(|f| {
            read(&chart().join("templates").join(f))
                .split("  - apiGroups:")
                .skip(1)
                .map(|b| format!("apiGroups:{b}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut checked = 0;
    for c in call.captures_iter(&harness) {
        let (groups, resources, verbs) = (list(&c[1]), list(&c[2]), list(&c[3]));
        let verbs_line = format!(
            "verbs: [{}]",
            verbs
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for group in &groups {
            for resource in &resources {
                checked += 1;
                let granted = chart_rules.iter().any(|rule| {
                    let first_line = rule.lines().next().unwrap_or_default();
                    first_line.contains(&format!("\"{group}\""))
                        && (rule.contains(&format!("\"{resource}\""))
                            || rule.contains(&format!("- {resource}\n")))
                        && rule.contains(&verbs_line)
                });
                assert!(
                    granted,
                    "the e2e harness grants {group:?}/{resource} {verbs_line}, the chart does not"
                );
            }
        }
    }
    assert!(checked >= 14, "found only {checked} harness rules");
}

// ---------------------------------------------------------------------------------------------
// Monitoring shipped with the chart

/// The series names the operator exports, from its own registry: one report through every
/// reporting interface (a family without a sample is not encoded at all), then the `# TYPE`
/// lines of the OpenMetrics text, one per family; counters are scraped as `_total`, histograms
/// as `_bucket`, `_sum` and `_count`. Fails when the registry has a family no report reached.
fn exported_series() -> BTreeSet<String> {
    use privx_client::{CallObserver, CallRecord};
    use privx_operator::controller::core::ControllerMetrics;
    let metrics = privx_operator::runtime::metrics::Metrics::new();
    metrics.reconciled("vaultsecret", std::time::Duration::from_millis(5), None);
    metrics.reconciled(
        "vaultsecret",
        std::time::Duration::from_millis(5),
        Some("kubernetes"),
    );
    metrics.object_condition("vaultsecret", "demo/app", true, "Synced");
    metrics.retrying("vaultsecret", 1);
    metrics.queued("vaultsecret", 1);
    metrics.on_call(&CallRecord {
        endpoint: "GET /vault/api/v1/secrets/{name}",
        status: 200,
        duration: std::time::Duration::from_millis(5),
    });
    metrics.on_token_refresh(true);
    metrics.on_breaker_state(
        privx_client::breaker::Service::Vault,
        privx_client::breaker::BreakerState::Open,
    );
    metrics.on_breaker_refusal(privx_client::breaker::Service::Vault);
    metrics.kubernetes_write("patch", "vaultsecrets/status");
    metrics.set_leader(true);
    let text = metrics.encode();

    let source = read(&repo().join("src/runtime/metrics/mod.rs"));
    let registered = source.matches("registry.register(").count()
        + source.matches("registry.register_with_unit(").count();
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(
        families, registered,
        "src/runtime/metrics registers {registered} families, the reports above reached {families}: report into the new one here"
    );
    let mut series = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("`# TYPE name type`");
        match kind {
            "counter" => {
                series.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    series.insert(format!("{name}{suffix}"));
                }
            }
            "info" => {
                series.insert(format!("{name}_info"));
            }
            _ => {
                series.insert(name.to_string());
            }
        }
    }
    series
}

/// Every `privx_operator_*` name in `text` that the operator does not export.
fn unknown_metrics(text: &str, exported: &BTreeSet<String>) -> BTreeSet<String> {
    let name_re = regex::Regex::new(r"\bprivx_operator_[a-z0-9_]+\b").unwrap();
    name_re
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .filter(|name| !exported.contains(name))
        .collect()
}

/// Every metric the shipped alerts (PrometheusRule), the Grafana dashboard and the alerts in
/// docs/operations.md use is one the operator exports, so that none silently never fires or
/// stays empty after a rename.
#[test]
fn alerts_and_dashboard_use_only_metrics_the_operator_exports() {
    let exported = exported_series();
    assert!(
        exported.contains("privx_operator_reconciles_total")
            && exported.contains("privx_operator_privx_request_duration_seconds_bucket")
            && exported.contains("privx_operator_leader"),
        "the registry's families: {exported:?}"
    );
    let rule = read(&chart().join("files/prometheus-rules.yaml"));
    let dashboard = read(&chart().join("dashboards/privx-operator.json"));
    let operations = read(&repo().join("docs/operations.md"));
    let alerts_doc = &operations[operations
        .find("## Alerts")
        .expect("operations.md has its alerts")..];
    let name_re = regex::Regex::new(r"\bprivx_operator_[a-z0-9_]+\b").unwrap();
    for (what, text, at_least) in [
        ("files/prometheus-rules.yaml", rule.as_str(), 6),
        ("dashboards/privx-operator.json", dashboard.as_str(), 9),
        ("docs/operations.md alerts", alerts_doc, 6),
    ] {
        let unknown = unknown_metrics(text, &exported);
        assert!(
            unknown.is_empty(),
            "{what} uses metrics the operator does not export: {unknown:?}"
        );
        let used = name_re
            .find_iter(text)
            .map(|m| m.as_str())
            .collect::<BTreeSet<_>>();
        assert!(
            used.len() >= at_least,
            "{what} uses only {used:?}: did the check lose its input?"
        );
    }
    // Every alert of the chart's rule is also in the docs (one list, documented once).
    let alert_re = regex::Regex::new(r"(?m)^\s*- alert: (\w+)$").unwrap();
    let chart_alerts: BTreeSet<&str> = alert_re
        .captures_iter(&rule)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let doc_alerts: BTreeSet<&str> = alert_re
        .captures_iter(alerts_doc)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(chart_alerts.len() >= 7, "{chart_alerts:?}");
    assert_eq!(
        chart_alerts, doc_alerts,
        "chart alerts vs docs/operations.md"
    );
    // The dashboard is JSON with panels.
    let dashboard: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
}

#[test]
fn the_metric_check_catches_a_name_the_operator_lacks() {
    let exported = exported_series();
    let unknown = unknown_metrics(
        "rate(privx_operator_reconciles_total[5m]) + privx_operator_reconcile_total + privx_operator_leader",
        &exported,
    );
    assert_eq!(
        unknown,
        BTreeSet::from(["privx_operator_reconcile_total".to_string()])
    );
}
