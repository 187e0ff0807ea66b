//! The semantic checks of a VaultSecret's spec.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::LazyLock;

use regex::Regex;

use super::names::{
    is_dns_subdomain, is_label_value, is_qualified_name, is_secret_key, secret_key_message,
};
use super::{
    FieldError, MAX_REFRESH_INTERVAL, MIN_REFRESH_INTERVAL, at_most_chars, at_most_items,
    length_between,
};
use crate::crd::VaultSecretSpec;
use crate::crd::duration::{MAX_DURATION_LENGTH, parse_duration};
use crate::crd::vault_secret::{
    CreationPolicy, MERGE_ADOPT_MESSAGE, MERGE_IMMUTABLE_MESSAGE, MERGE_TYPE_MESSAGE,
    MirrorSecretType, MirrorSpec, REFUSED_SECRET_TYPES, REFUSED_TYPE_MESSAGE, ROLES_NEED_A_SOURCE,
    RoleRef, SecretSource, TYPE_LENGTH_MESSAGE,
};

const REFRESH_INTERVAL_MESSAGE: &str =
    "spec.refreshInterval must be a duration such as 30s, 5m or 1h, from 10s to 168h (7d)";
const ROLE_REF_MESSAGE: &str = "a role reference needs exactly one of name or id";
const SOURCE_MESSAGE: &str = "spec.source needs exactly one of secretRef or generate";
const MIRROR_NAME_MESSAGE: &str =
    "spec.mirror.secretName must be a valid Secret name (lowercase DNS subdomain)";

static GO_DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([0-9]+(ms|s|m|h))+$").expect("valid regex"));

/// Problems with a VaultSecret's spec; empty when it is valid.
pub fn validate_vault_secret(spec: &VaultSecretSpec) -> Vec<FieldError> {
    let mut out = Vec::new();

    if let Some(name) = &spec.name {
        if name.is_empty() || name.chars().count() > 512 {
            out.push(FieldError::new(
                "spec.name",
                "spec.name must be 1 to 512 characters",
            ));
        }
        if name.chars().any(|c| c.is_control()) {
            out.push(FieldError::new(
                "spec.name",
                "spec.name must not contain control characters",
            ));
        }
    }

    if let Some(owner) = &spec.owner
        && (owner.user_id.is_empty() || owner.user_id.chars().count() > 128)
    {
        out.push(FieldError::new(
            "spec.owner.userId",
            "spec.owner.userId must be 1 to 128 characters",
        ));
    }

    for (field, roles) in [
        ("spec.readRoles", &spec.read_roles),
        ("spec.writeRoles", &spec.write_roles),
    ] {
        if let Some(roles) = roles {
            validate_roles(field, roles, &mut out);
            // Without a source the operator only reads the secret: it sets no roles.
            if spec.source.is_none() && !roles.is_empty() {
                out.push(FieldError::new(field, ROLES_NEED_A_SOURCE));
            }
        }
    }

    if let Some(source) = &spec.source {
        validate_source(source, &mut out);
    }

    if let Some(mirror) = &spec.mirror {
        validate_mirror(mirror, spec.source.as_ref(), &mut out);
    }
    crate::crd::mirror_rules::validate(spec, &mut out);

    if let Some(interval) = &spec.refresh_interval {
        at_most_chars(
            "spec.refreshInterval",
            interval,
            MAX_DURATION_LENGTH,
            &mut out,
        );
        let in_range = GO_DURATION.is_match(interval)
            && parse_duration(interval)
                .is_ok_and(|d| (MIN_REFRESH_INTERVAL..=MAX_REFRESH_INTERVAL).contains(&d));
        if !in_range {
            out.push(FieldError::new(
                "spec.refreshInterval",
                REFRESH_INTERVAL_MESSAGE,
            ));
        }
    }

    out
}

fn validate_roles(field: &str, roles: &[RoleRef], out: &mut Vec<FieldError>) {
    at_most_items(field, roles.len(), 64, out);
    let mut seen = HashSet::new();
    for (i, role) in roles.iter().enumerate() {
        let item = format!("{field}[{i}]");
        match (&role.name, &role.id) {
            (Some(name), None) => length_between(&format!("{item}.name"), name, 1, 256, out),
            (None, Some(id)) => length_between(&format!("{item}.id"), id, 1, 128, out),
            _ => {
                out.push(FieldError::new(&item, ROLE_REF_MESSAGE));
                continue;
            }
        }
        if !seen.insert(role) {
            out.push(FieldError::new(
                &item,
                format!("duplicate role {}", describe_role(role)),
            ));
        }
    }
}

fn describe_role(role: &RoleRef) -> String {
    match (&role.name, &role.id) {
        (Some(name), _) => format!("name {name:?}"),
        (_, Some(id)) => format!("id {id:?}"),
        _ => "reference".to_string(),
    }
}

fn validate_source(source: &SecretSource, out: &mut Vec<FieldError>) {
    if source.secret_ref.is_some() == source.generate.is_some() {
        out.push(FieldError::new("spec.source", SOURCE_MESSAGE));
    }
    if let Some(secret_ref) = &source.secret_ref {
        if !is_dns_subdomain(&secret_ref.name) {
            out.push(FieldError::new(
                "spec.source.secretRef.name",
                format!(
                    "{:?} is not a valid Secret name (lowercase DNS subdomain)",
                    secret_ref.name
                ),
            ));
        }
        if let Some(keys) = &secret_ref.keys {
            let field = "spec.source.secretRef.keys";
            if keys.is_empty() {
                out.push(FieldError::new(
                    field,
                    "must list at least one key (leave it out to push all keys)",
                ));
            }
            at_most_items(field, keys.len(), 256, out);
            let mut seen = HashSet::new();
            for (i, key) in keys.iter().enumerate() {
                let item = format!("{field}[{i}]");
                if !is_secret_key(key) {
                    out.push(FieldError::new(&item, secret_key_message(key)));
                } else if !seen.insert(key) {
                    out.push(FieldError::new(&item, format!("duplicate key {key:?}")));
                }
            }
        }
    }
    if let Some(generate) = &source.generate {
        if !is_secret_key(&generate.key) {
            out.push(FieldError::new(
                "spec.source.generate.key",
                secret_key_message(&generate.key),
            ));
        }
        let policy = &generate.password_policy_ref.name;
        if !is_dns_subdomain(policy) {
            out.push(FieldError::new(
                "spec.source.generate.passwordPolicyRef.name",
                format!("{policy:?} is not a valid PasswordPolicy name (lowercase DNS subdomain)"),
            ));
        }
    }
}

/// The data keys PrivX will hold, where the spec alone tells them.
fn known_source_keys(source: Option<&SecretSource>) -> Option<Vec<String>> {
    let source = source?;
    if let Some(generate) = &source.generate {
        return Some(vec![generate.key.clone()]);
    }
    source.secret_ref.as_ref()?.keys.clone()
}

fn validate_mirror(mirror: &MirrorSpec, source: Option<&SecretSource>, out: &mut Vec<FieldError>) {
    if let Some(name) = &mirror.secret_name
        && !is_dns_subdomain(name)
    {
        out.push(FieldError::new(
            "spec.mirror.secretName",
            MIRROR_NAME_MESSAGE,
        ));
    }

    for (field, map, check_values) in [
        ("spec.mirror.labels", &mirror.labels, true),
        ("spec.mirror.annotations", &mirror.annotations, false),
    ] {
        for (key, value) in map.iter().flatten() {
            if !is_qualified_name(key) {
                out.push(FieldError::new(
                    format!("{field}[{key}]"),
                    format!("{key:?} is not a valid key: [prefix/]name, the name 1 to 63 of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric"),
                ));
            } else if check_values && !is_label_value(value) {
                out.push(FieldError::new(
                    format!("{field}[{key}]"),
                    "a label value must be at most 63 of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric",
                ));
            }
        }
    }

    let known_keys = known_source_keys(source);
    let mapping = mirror.key_mapping.clone().unwrap_or_default();
    validate_key_mapping(&mapping, known_keys.as_deref(), out);

    // With templates the mirror holds their keys (`Replace`), or those over the mapped keys.
    let templated: BTreeSet<&str> = mirror
        .template
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .chain(
            mirror
                .template_from
                .iter()
                .flatten()
                .map(|f| f.config_map_ref.key.as_str()),
        )
        .collect();
    let merge = mirror.merge_policy == Some(crate::crd::vault_secret::MergePolicy::Merge);
    let mirrored: Option<BTreeSet<&str>> = if !templated.is_empty() && !merge {
        Some(templated)
    } else {
        known_keys.as_ref().map(|keys| {
            keys.iter()
                .map(|k| mapping.get(k).unwrap_or(k).as_str())
                .chain(templated)
                .collect()
        })
    };
    if let Some(type_) = &mirror.type_ {
        if type_.is_empty() || type_.len() > 253 {
            out.push(FieldError::new("spec.mirror.type", TYPE_LENGTH_MESSAGE));
        } else if REFUSED_SECRET_TYPES.contains(&type_.as_str()) {
            out.push(FieldError::new("spec.mirror.type", REFUSED_TYPE_MESSAGE));
        }
    }
    if let (Some(mirrored), Some(secret_type)) = (
        &mirrored,
        mirror.type_.as_deref().and_then(MirrorSecretType::builtin),
    ) {
        check_type_keys(secret_type, mirrored, out);
    }
    if mirror.creation_policy() == CreationPolicy::Merge {
        if mirror.type_.is_some() {
            out.push(FieldError::new("spec.mirror.type", MERGE_TYPE_MESSAGE));
        }
        if mirror.immutable() {
            out.push(FieldError::new(
                "spec.mirror.immutable",
                MERGE_IMMUTABLE_MESSAGE,
            ));
        }
        if mirror.adopt() {
            out.push(FieldError::new("spec.mirror.adopt", MERGE_ADOPT_MESSAGE));
        }
    }

    if let Some(targets) = &mirror.rollout_restart_targets {
        let field = "spec.mirror.rolloutRestartTargets";
        at_most_items(field, targets.len(), 32, out);
        let mut seen = HashSet::new();
        for (i, target) in targets.iter().enumerate() {
            let item = format!("{field}[{i}]");
            if !is_dns_subdomain(&target.name) {
                out.push(FieldError::new(
                    format!("{item}.name"),
                    format!(
                        "{:?} is not a valid {} name (lowercase DNS subdomain)",
                        target.name,
                        target.kind.as_str()
                    ),
                ));
            } else if !seen.insert((target.kind.as_str(), target.name.as_str())) {
                out.push(FieldError::new(
                    item,
                    format!("duplicate target {}/{}", target.kind.as_str(), target.name),
                ));
            }
        }
    }
}

fn validate_key_mapping(
    mapping: &BTreeMap<String, String>,
    known_keys: Option<&[String]>,
    out: &mut Vec<FieldError>,
) {
    // Which PrivX field ends up under each Secret key; two fields on one key would overwrite
    // each other.
    let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
    if let Some(keys) = known_keys {
        for key in keys.iter().filter(|k| !mapping.contains_key(*k)) {
            targets.insert(key, key);
        }
    }
    for (from, to) in mapping {
        // The source side is a PrivX field name (any non-empty text PrivX accepts: the point
        // of the mapping is renaming fields that are not valid Secret keys); only the target
        // side is a Secret key.
        let field = format!("spec.mirror.keyMapping[{from}]");
        if from.is_empty() {
            out.push(FieldError::new(
                &field,
                "the PrivX field name must not be empty",
            ));
            continue;
        }
        if !is_secret_key(to) {
            out.push(FieldError::new(&field, secret_key_message(to)));
            continue;
        }
        if let Some(keys) = known_keys
            && !keys.contains(from)
        {
            out.push(FieldError::new(
                &field,
                format!(
                    "{from:?} is not one of the source keys ({})",
                    keys.join(", ")
                ),
            ));
            continue;
        }
        if let Some(other) = targets.insert(to, from) {
            out.push(FieldError::new(
                &field,
                format!("{from:?} and {other:?} would both be written to Secret key {to:?}"),
            ));
        }
    }
}

fn check_type_keys(
    secret_type: MirrorSecretType,
    mirrored: &BTreeSet<&str>,
    out: &mut Vec<FieldError>,
) {
    let required = secret_type.required_keys();
    let satisfied = match secret_type {
        // The API server wants at least one of username and password.
        MirrorSecretType::BasicAuth => required.iter().any(|k| mirrored.contains(k)),
        _ => required.iter().all(|k| mirrored.contains(k)),
    };
    if !satisfied {
        let need = match secret_type {
            MirrorSecretType::BasicAuth => {
                format!("at least one of the keys {}", required.join(", "))
            }
            _ => format!("the keys {}", required.join(", ")),
        };
        let have: Vec<&str> = mirrored.iter().copied().collect();
        out.push(FieldError::new(
            "spec.mirror.type",
            format!(
                "a {} Secret needs {need}, but the mirrored keys are {} (rename with spec.mirror.keyMapping)",
                secret_type.as_str(),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault_secret(yaml: &str) -> VaultSecretSpec {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    /// Each case: a spec and the fields (in order) it must be faulted on, with a word the
    /// message must hold.
    #[test]
    fn vault_secret_cases() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("{}", &[]),
            (
                "name: k8s/demo/app\nsource: {secretRef: {name: app-creds, keys: [username, password]}}\nmirror: {secretName: app-copy, type: kubernetes.io/basic-auth, rolloutRestartTargets: [{kind: Deployment, name: web}]}\nreadRoles: [{name: app-readers}, {id: 5b8c0c1e-0000-4000-8000-000000000001}]\nrefreshInterval: 5m",
                &[],
            ),
            ("name: ''", &[("spec.name", "1 to 512")]),
            ("name: \"a\\tb\"", &[("spec.name", "control characters")]),
            ("owner: {userId: ''}", &[("spec.owner.userId", "1 to 128")]),
            (
                "readRoles: [{name: a}]\nwriteRoles: [{name: b}]",
                &[
                    ("spec.readRoles", "need spec.source"),
                    ("spec.writeRoles", "need spec.source"),
                ],
            ),
            ("readRoles: []\nwriteRoles: []", &[]),
            (
                "source: {secretRef: {name: s}}\nreadRoles: [{name: a}]\nwriteRoles: [{id: b}]",
                &[],
            ),
            (
                "source: {secretRef: {name: s}}\nreadRoles: [{name: a, id: b}, {}, {name: a}, {name: a}]",
                &[
                    ("spec.readRoles[0]", "exactly one of name or id"),
                    ("spec.readRoles[1]", "exactly one of name or id"),
                    ("spec.readRoles[3]", "duplicate role name \"a\""),
                ],
            ),
            (
                "source: {secretRef: {name: s}}\nwriteRoles: [{id: x}, {id: x}]",
                &[("spec.writeRoles[1]", "duplicate")],
            ),
            (
                "source: {secretRef: {name: a}, generate: {key: p, passwordPolicyRef: {name: pp}}}",
                &[("spec.source", "exactly one of secretRef or generate")],
            ),
            ("source: {}", &[("spec.source", "exactly one")]),
            (
                "source: {secretRef: {name: Bad_Name, keys: [ok, 'not ok', ok, '..']}}",
                &[
                    ("spec.source.secretRef.name", "not a valid Secret name"),
                    ("spec.source.secretRef.keys[1]", "not a valid Secret key"),
                    ("spec.source.secretRef.keys[2]", "duplicate key"),
                    ("spec.source.secretRef.keys[3]", "not a valid Secret key"),
                ],
            ),
            (
                "source: {secretRef: {name: a, keys: []}}",
                &[("spec.source.secretRef.keys", "at least one")],
            ),
            (
                "source: {generate: {key: 'pass word', passwordPolicyRef: {name: Policy}}}",
                &[
                    ("spec.source.generate.key", "not a valid Secret key"),
                    (
                        "spec.source.generate.passwordPolicyRef.name",
                        "not a valid PasswordPolicy name",
                    ),
                ],
            ),
            (
                "refreshInterval: 5s",
                &[("spec.refreshInterval", "from 10s to 168h")],
            ),
            (
                "refreshInterval: 169h",
                &[("spec.refreshInterval", "from 10s to 168h")],
            ),
            (
                "refreshInterval: PT5M",
                &[("spec.refreshInterval", "such as 30s")],
            ),
            (
                "refreshInterval: 5x",
                &[("spec.refreshInterval", "such as 30s")],
            ),
            ("refreshInterval: 168h", &[]),
            (
                "refreshInterval: 1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h",
                &[("spec.refreshInterval", "at most 32 characters (is 34)")],
            ),
            ("refreshInterval: 10s", &[]),
            (
                "mirror: {secretName: My_Secret}",
                &[("spec.mirror.secretName", "valid Secret name")],
            ),
            (
                "mirror: {labels: {'app.kubernetes.io/name': web, 'bad key!': x, ok: 'bad value!'}, annotations: {'example.com/note': 'any value at all'}}",
                &[
                    ("spec.mirror.labels[bad key!]", "not a valid key"),
                    ("spec.mirror.labels[ok]", "label value"),
                ],
            ),
            (
                "source: {generate: {key: password, passwordPolicyRef: {name: p}}}\nmirror: {type: kubernetes.io/tls}",
                &[(
                    "spec.mirror.type",
                    "tls.crt, tls.key, but the mirrored keys are password",
                )],
            ),
            (
                "source: {secretRef: {name: s, keys: [cert, key]}}\nmirror: {type: kubernetes.io/tls, keyMapping: {cert: tls.crt, key: tls.key}}",
                &[],
            ),
            (
                "source: {generate: {key: pw, passwordPolicyRef: {name: p}}}\nmirror: {type: kubernetes.io/basic-auth, keyMapping: {pw: password}}",
                &[],
            ),
            // Unknown keys: the type cannot be checked, nor the mapping sources.
            (
                "mirror: {type: kubernetes.io/ssh-auth, keyMapping: {a: b}}",
                &[],
            ),
            (
                "source: {secretRef: {name: s, keys: [a, b, c]}}\nmirror: {keyMapping: {a: b, c: 'x y', d: e}}",
                &[
                    (
                        "spec.mirror.keyMapping[a]",
                        "\"a\" and \"b\" would both be written to Secret key \"b\"",
                    ),
                    ("spec.mirror.keyMapping[c]", "not a valid Secret key"),
                    ("spec.mirror.keyMapping[d]", "not one of the source keys"),
                ],
            ),
            (
                "mirror: {keyMapping: {a: z, b: z, 'x/y': w, 'a b': a_b, 'ü': u, k: '..x'}}",
                &[
                    ("spec.mirror.keyMapping[b]", "would both be written"),
                    ("spec.mirror.keyMapping[k]", "not a valid Secret key"),
                ],
            ),
            (
                "mirror: {rolloutRestartTargets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: web}, {kind: Deployment, name: web}, {kind: DaemonSet, name: Web}]}",
                &[
                    (
                        "spec.mirror.rolloutRestartTargets[2]",
                        "duplicate target Deployment/web",
                    ),
                    (
                        "spec.mirror.rolloutRestartTargets[3].name",
                        "not a valid DaemonSet name",
                    ),
                ],
            ),
        ];
        for (yaml, expected) in cases {
            let errors = validate_vault_secret(&vault_secret(yaml));
            assert_eq!(errors.len(), expected.len(), "{yaml}: {errors:#?}");
            for (error, (field, words)) in errors.iter().zip(expected.iter()) {
                assert_eq!(error.field, *field, "{yaml}: {errors:#?}");
                assert!(error.message.contains(words), "{yaml}: {error}");
            }
        }
    }

    #[test]
    fn too_many_roles_and_targets() {
        let roles: Vec<String> = (0..65).map(|i| format!("{{name: r{i}}}")).collect();
        let targets: Vec<String> = (0..33)
            .map(|i| format!("{{kind: Deployment, name: d{i}}}"))
            .collect();
        let spec = vault_secret(&format!(
            "source: {{secretRef: {{name: s}}}}\nreadRoles: [{}]\nmirror: {{rolloutRestartTargets: [{}]}}",
            roles.join(", "),
            targets.join(", ")
        ));
        let fields: Vec<String> = validate_vault_secret(&spec)
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.readRoles: must have at most 64 items (has 65)",
                "spec.mirror.rolloutRestartTargets: must have at most 32 items (has 33)"
            ]
        );
    }
}
