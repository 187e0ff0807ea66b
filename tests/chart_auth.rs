//! The chart's PrivX login modes (`privx.auth.mode`: password, serviceAccountToken, signedJwt)
//! and per-namespace identity, checked statically (no helm here; CI renders them for real):
//! schema entries for each mode, the flags each mode passes exist in the binary and map to its
//! choices, each mode mounts only what it needs, and the RBAC of per-namespace identity
//! (`create` on `serviceaccounts/token`, limited by `resourceNames`) exists only when it is on.

use std::path::PathBuf;

use clap::{Args, FromArgMatches};
use privx_operator::runtime::{AuthMode, RunArgs};
use serde_json::{Value, json};

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/privx-operator")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(chart().join(name)).unwrap()
}

fn values() -> Value {
    serde_saphyr::from_str(&read("values.yaml")).unwrap()
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("values.schema.json")).unwrap();
    jsonschema::draft7::new(&schema).unwrap()
}

fn set(mut values: Value, pointer: &str, new: Value) -> Value {
    *values
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer}")) = new;
    values
}

/// The text between `{{- if <condition> }}` and its `{{- end }}` (no nesting inside).
fn block<'a>(template: &'a str, condition: &str) -> Vec<&'a str> {
    let open = format!("{{{{- if {condition} }}}}");
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find("{{- end }}").expect("the block ends");
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

fn parse_run(args: &[&str]) -> Result<RunArgs, clap::Error> {
    let command = RunArgs::augment_args(clap::Command::new("run").no_binary_name(true));
    let matches = command.try_get_matches_from(args)?;
    RunArgs::from_arg_matches(&matches)
}

#[test]
fn every_mode_passes_the_schema_and_other_modes_are_refused() {
    let validator = validator();
    let base = set(values(), "/privx/url", json!("https://privx.example.com"));
    for mode in ["password", "serviceAccountToken", "signedJwt"] {
        let v = set(base.clone(), "/privx/auth/mode", json!(mode));
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{mode}: {errors:?}");
    }
    let signed = set(
        set(
            set(base.clone(), "/privx/auth/mode", json!("signedJwt")),
            "/privx/auth/signedJwt/existingSecret",
            json!("privx-jwt-key"),
        ),
        "/privx/auth/signedJwt/edAlgName",
        json!("Ed25519"),
    );
    assert!(validator.is_valid(&signed));
    for (pointer, bad) in [
        ("/privx/auth/mode", json!("kerberos")),
        (
            "/privx/auth/serviceAccountToken/expirationSeconds",
            json!(60),
        ),
        ("/privx/auth/serviceAccountToken/audience", json!("")),
        ("/privx/auth/signedJwt/edAlgName", json!("ed25519")),
        ("/privx/auth/signedJwt/lifetime", json!("five minutes")),
        (
            "/privx/namespaceIdentity/serviceAccountName",
            json!("Not/A-Name"),
        ),
        ("/privx/namespaceIdentity/enabled", json!("yes")),
    ] {
        assert!(
            !validator.is_valid(&set(base.clone(), pointer, bad.clone())),
            "{pointer} = {bad} passes"
        );
    }
    let mut unknown = base;
    unknown["privx"]["auth"]["tokenFile"] = json!("/x");
    assert!(!validator.is_valid(&unknown), "unknown keys are refused");
}

#[test]
fn each_chart_mode_maps_to_a_mode_the_binary_accepts() {
    let helpers = read("templates/_helpers.tpl");
    let mapping = helpers
        .lines()
        .find(|l| l.contains("$modes := dict"))
        .expect("the mode mapping");
    for (chart_mode, flag, mode) in [
        ("password", "password", AuthMode::Password),
        (
            "serviceAccountToken",
            "service-account-token",
            AuthMode::ServiceAccountToken,
        ),
        ("signedJwt", "signed-jwt", AuthMode::SignedJwt),
    ] {
        assert!(
            mapping.contains(&format!("\"{chart_mode}\" \"{flag}\"")),
            "{chart_mode} -> {flag}: {mapping}"
        );
        let parsed = parse_run(&[&format!("--privx-auth-mode={flag}")]).unwrap();
        assert_eq!(parsed.auth.privx_auth_mode, mode);
    }
    // The defaults of the chart are the binary's.
    let v = values();
    let defaults = parse_run(&[]).unwrap();
    assert_eq!(v["privx"]["auth"]["mode"], "password");
    assert_eq!(defaults.auth.privx_auth_mode, AuthMode::Password);
    assert_eq!(
        v["privx"]["namespaceIdentity"]["serviceAccountName"],
        json!(defaults.auth.namespace_identity_service_account)
    );
    assert_eq!(
        v["privx"]["namespaceIdentity"]["audience"],
        json!(defaults.auth.namespace_identity_audience)
    );
    assert_eq!(v["privx"]["namespaceIdentity"]["enabled"], json!(false));
    assert!(!defaults.auth.namespace_identity);
    assert_eq!(v["privx"]["auth"]["signedJwt"]["edAlgName"], "EdDSA");
    assert_eq!(v["privx"]["auth"]["signedJwt"]["lifetime"], "5m");
    // Self roles: the chart's default (empty) is the binary's auto.
    assert_eq!(v["privx"]["selfRoles"], json!([]));
    assert_eq!(defaults.privx_self_roles, ["auto"]);
}

#[test]
fn each_mode_mounts_only_what_it_needs() {
    let deployment = read("templates/deployment.yaml");
    // Password: the four credential files, and only in this mode.
    let password = block(&deployment, "eq $auth.mode \"password\"").join("\n");
    for needle in [
        "PRIVX_API_CLIENT_SECRET_FILE",
        "PRIVX_API_OAUTH_CLIENT_SECRET_FILE",
        "name: privx-credentials",
        "mountPath: /etc/privx-operator/credentials",
    ] {
        assert!(password.contains(needle), "{needle}");
    }
    let outside: String = deployment
        .split("{{- if eq $auth.mode \"password\" }}")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part.to_string()
            } else {
                part.split_once("{{- end }}")
                    .map(|(_, rest)| rest.to_string())
                    .unwrap()
            }
        })
        .collect();
    assert!(
        !outside.contains("privx-credentials") && !outside.contains("_SECRET_FILE"),
        "credentials only in password mode"
    );
    // Service-account token: a projected token with the audience and bounded expiry, mounted
    // where --privx-token-file points.
    let sa = block(&deployment, "eq $auth.mode \"serviceAccountToken\"").join("\n");
    assert!(sa.contains("serviceAccountToken:"), "{sa}");
    assert!(sa.contains("audience: {{ $auth.serviceAccountToken.audience | quote }}"));
    assert!(
        sa.contains("expirationSeconds: {{ int $auth.serviceAccountToken.expirationSeconds }}")
    );
    assert!(sa.contains("path: token"));
    assert!(sa.contains("mountPath: /var/run/secrets/privx-operator/token"));
    assert!(sa.contains("--privx-token-file=/var/run/secrets/privx-operator/token/token"));
    // Signed JWT: the key Secret, mounted where --privx-jwt-key-file points, and its claims.
    let jwt = block(&deployment, "eq $auth.mode \"signedJwt\"").join("\n");
    for needle in [
        "--privx-jwt-key-file=/etc/privx-operator/jwt/private.pem",
        "mountPath: /etc/privx-operator/jwt",
        "secretName: {{ $auth.signedJwt.existingSecret }}",
        "path: private.pem",
        "--privx-jwt-issuer=",
        "--privx-jwt-subject=",
        "--privx-token-audience=",
        "--privx-jwt-ed-alg-name=",
    ] {
        assert!(jwt.contains(needle), "{needle}");
    }
    // Every flag these blocks pass parses in the binary.
    parse_run(&[
        "--privx-auth-mode=signed-jwt",
        "--privx-jwt-key-file=/etc/privx-operator/jwt/private.pem",
        "--privx-jwt-issuer=https://issuer",
        "--privx-jwt-subject=svc",
        "--privx-token-audience=privx",
        "--privx-jwt-lifetime=5m",
        "--privx-jwt-ed-alg-name=Ed25519",
        "--privx-login-client-id=x",
        "--privx-login-scope=y",
        "--namespace-identity",
        "--namespace-identity-service-account=privx",
        "--namespace-identity-audience=privx",
    ])
    .unwrap();
    parse_run(&[
        "--privx-auth-mode=service-account-token",
        "--privx-token-file=/var/run/secrets/privx-operator/token/token",
    ])
    .unwrap();
    // Missing pieces of signedJwt fail the install with a message naming the value.
    let helpers = read("templates/_helpers.tpl");
    for value in [
        "privx.auth.signedJwt.existingSecret",
        "privx.auth.signedJwt.issuer",
        "privx.auth.signedJwt.subject",
    ] {
        assert!(helpers.contains(&format!("needs {value}")), "{value}");
    }
    // And static credentials with an exchange mode are refused.
    assert!(helpers.contains("privx.credentials are for privx.auth.mode password"));
    let secret = read("templates/credentials-secret.yaml");
    assert!(secret.contains("(eq .Values.privx.auth.mode \"password\")"));
}

#[test]
fn namespace_identity_rbac_is_one_verb_on_one_name_and_only_when_on() {
    for (file, scope) in [
        (
            "templates/clusterrole.yaml",
            "and $clusterWide $.Values.privx.namespaceIdentity.enabled",
        ),
        (
            "templates/role-namespaces.yaml",
            "$.Values.privx.namespaceIdentity.enabled",
        ),
    ] {
        let template = read(file);
        let blocks = block(&template, scope);
        assert_eq!(blocks.len(), 1, "{file}: one guarded rule");
        let rule = blocks[0];
        assert!(
            rule.contains("resources: [\"serviceaccounts/token\"]"),
            "{file}"
        );
        assert!(
            rule.contains(
                "resourceNames: [{{ $.Values.privx.namespaceIdentity.serviceAccountName | quote }}]"
            ),
            "{file}: limited by resourceNames"
        );
        assert!(rule.contains("verbs: [\"create\"]"), "{file}: create only");
        // Nowhere else: the whole template mentions serviceaccounts only in that block.
        assert_eq!(template.matches("serviceaccounts").count(), 1, "{file}");
    }
    let deployment = read("templates/deployment.yaml");
    let on = block(&deployment, "$nsIdentity.enabled").join("\n");
    assert!(on.contains("\"--namespace-identity\""));
    assert!(on.contains("--namespace-identity-service-account="));
    assert!(on.contains("--namespace-identity-audience="));
}

#[test]
fn notes_explain_each_mode() {
    let notes = read("templates/NOTES.txt");
    for needle in [
        "eq $auth.mode \"serviceAccountToken\"",
        "/openid/v1/jwks",
        "eq $auth.mode \"signedJwt\"",
        ".Values.privx.namespaceIdentity.enabled",
        "IdentityNotFound",
        "auto (the roles PrivX says the operator holds",
    ] {
        assert!(notes.contains(needle), "{needle}");
    }
}
