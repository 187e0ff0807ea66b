//! `check` of mirror templates, offline: each `spec.mirror.template` entry compiles, uses only
//! the sandbox's filters (no tests, no functions), and reads only data fields the spec says the
//! secret will have (when it says: a generated key, or the listed keys of a source Secret,
//! under their `keyMapping` names). Templates in ConfigMaps are checked by the operator when
//! it renders them (the ConfigMap is not part of the VaultSecret).

use std::collections::BTreeSet;

use crate::crd::VaultSecretSpec;
use crate::crd::validate::FieldError;
use crate::template::{self, DATA_VARIABLE, Template};

/// Problems of the inline templates of a VaultSecret's mirror.
pub fn check_templates(spec: &VaultSecretSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(mirror) = &spec.mirror else {
        return out;
    };
    let provided = provided_fields(spec);
    for (key, text) in mirror.template.iter().flatten() {
        let field = format!("spec.mirror.template[{key}]");
        let analysis = match template::analyse(&Template::inline(key.clone(), text.clone())) {
            Ok(a) => a,
            Err(e) => {
                let message = match e.line {
                    Some(line) => format!("line {line}: {}", e.message),
                    None => e.message,
                };
                out.push(FieldError::new(field, message));
                continue;
            }
        };
        for unknown in &analysis.unknown {
            out.push(FieldError::new(&field, unknown.to_string()));
        }
        let called: BTreeSet<&str> = analysis
            .unknown
            .iter()
            .filter(|u| u.what == "function")
            .map(|u| u.name.as_str())
            .collect();
        if let Some(provided) = &provided {
            for read in &analysis.reads {
                if read == DATA_VARIABLE || called.contains(read.as_str()) {
                    continue;
                }
                if !provided.contains(read) {
                    out.push(FieldError::new(
                        &field,
                        format!(
                            "reads {read:?}, which the secret will not have (its fields here: {})",
                            provided.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// The data fields a template will see, when the spec tells them: the generated key, or the
/// listed keys of the source Secret, renamed by `keyMapping`. `None`: PrivX decides (read-only,
/// or all keys of a source Secret).
fn provided_fields(spec: &VaultSecretSpec) -> Option<BTreeSet<String>> {
    let source = spec.source.as_ref()?;
    let fields: Vec<String> = match (&source.generate, &source.secret_ref) {
        (Some(g), _) => vec![g.key.clone()],
        (None, Some(r)) => r.keys.clone()?,
        (None, None) => return None,
    };
    let mapping = spec
        .mirror
        .as_ref()
        .and_then(|m| m.key_mapping.clone())
        .unwrap_or_default();
    Some(
        fields
            .into_iter()
            .map(|f| mapping.get(&f).cloned().unwrap_or(f))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Checker, Format};

    fn spec(yaml: &str) -> VaultSecretSpec {
        serde_saphyr::from_str(yaml).expect("spec")
    }

    #[test]
    fn syntax_unknown_names_and_missing_fields_are_reported_per_key() {
        let s = spec(
            r#"
source:
  secretRef: {name: db, keys: [user, pass]}
mirror:
  keyMapping: {user: username}
  template:
    GOOD: "postgres://{{ username }}:{{ pass | urlencode }}@db/app"
    BROKEN: "{{ username "
    UNKNOWN: "{{ pass | sha256sum }}{{ now() }}{% if pass is defined %}{% endif %}"
    MISSING: "{{ user }}:{{ password }}"
"#,
        );
        let errors: Vec<String> = check_templates(&s).iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].starts_with("spec.mirror.template[BROKEN]: line 1: syntax error"));
        assert!(errors[1].starts_with("spec.mirror.template[MISSING]: "));
        assert!(errors[1].contains(
            "reads \"password\", which the secret will not have (its fields here: pass, username)"
        ));
        assert!(
            errors[2].contains("reads \"user\""),
            "mapped away: {}",
            errors[2]
        );
        assert!(errors[3].contains("unknown filter \"sha256sum\""));
        assert!(errors[4].contains("unknown function \"now\""));
        assert!(errors[5].contains("unknown test \"defined\""));
    }

    #[test]
    fn reads_are_not_checked_when_privx_decides_the_fields() {
        let s = spec(
            r#"
mirror:
  template:
    URL: "{{ anything }}{{ data['tls.crt'] }}"
"#,
        );
        assert!(check_templates(&s).is_empty());
    }

    #[test]
    fn the_checker_reports_templates_types_and_reserved_keys() {
        let yaml = r#"
apiVersion: privx-operator.dev/v1alpha1
kind: VaultSecret
metadata: {name: bad, namespace: demo}
spec:
  source:
    generate: {passwordPolicyRef: {name: p}, key: password}
  refreshPolicy: OnChange
  refreshInterval: 5m
  mirror:
    type: kubernetes.io/dockerconfigjson
    labels: {kubernetes.io/service-account.name: default}
    template:
      config.json: "{{ password | nope }}"
---
apiVersion: privx-operator.dev/v1alpha1
kind: VaultSecret
metadata: {name: token, namespace: demo}
spec:
  mirror:
    type: kubernetes.io/service-account-token
"#;
        let report = Checker::new().check_text("x.yaml", yaml, Format::Yaml);
        let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        for want in [
            "spec.mirror.template[config.json]: line 1: unknown filter \"nope\"",
            "a kubernetes.io/dockerconfigjson Secret needs the keys .dockerconfigjson, but the mirrored keys are config.json",
            "refreshPolicy Periodic only",
            "kubernetes.io/service-account.* keys",
            "VaultSecret/token",
        ] {
            assert!(all.contains(want), "{want:?} not in:\n{all}");
        }
        let token: Vec<&String> = text
            .iter()
            .filter(|t| t.contains("VaultSecret/token"))
            .collect();
        assert!(
            token.iter().any(|t| t.contains("spec.mirror.type")),
            "service-account-token refused: {token:?}"
        );
    }
}
