//! The validation of a VaultSecret's mirror templates and refresh policy, in code (what the
//! CEL rules on these fields check, repeated with the same messages; see `validate`).

use super::VaultSecretSpec;
use super::validate::FieldError;
use super::vault_secret::{
    CONFIG_MAP_KEY_MESSAGE, CONFIG_MAP_NAME_MESSAGE, RESERVED_KEY_PREFIX, RefreshPolicy,
    TEMPLATE_KEY_MESSAGE, TEMPLATE_VALUE_MESSAGE,
};

/// Problems with `spec.refreshPolicy`, `spec.mirror.template*`, `mergePolicy` and reserved
/// label/annotation keys.
pub fn validate(spec: &VaultSecretSpec, out: &mut Vec<FieldError>) {
    if spec.refresh_interval.is_some()
        && spec
            .refresh_policy
            .is_some_and(|p| p != RefreshPolicy::Periodic)
    {
        out.push(FieldError::new(
            "spec.refreshInterval",
            "spec.refreshInterval applies to refreshPolicy Periodic only (OnChange and CreatedOnce never read PrivX on a schedule)",
        ));
    }
    if spec.refresh_policy == Some(RefreshPolicy::CreatedOnce) && spec.mirror.is_none() {
        out.push(FieldError::new(
            "spec.refreshPolicy",
            "spec.refreshPolicy CreatedOnce needs spec.mirror (it writes the mirror once)",
        ));
    }
    let Some(mirror) = &spec.mirror else {
        return;
    };
    if mirror.merge_policy.is_some() && mirror.template.is_none() && mirror.template_from.is_none()
    {
        out.push(FieldError::new(
            "spec.mirror.mergePolicy",
            "spec.mirror.mergePolicy needs spec.mirror.template or spec.mirror.templateFrom",
        ));
    }
    for (field, map) in [
        ("spec.mirror.labels", &mirror.labels),
        ("spec.mirror.annotations", &mirror.annotations),
    ] {
        if map
            .iter()
            .flatten()
            .any(|(k, _)| k.starts_with(RESERVED_KEY_PREFIX))
        {
            out.push(FieldError::new(
                field,
                format!("{field} may not set kubernetes.io/service-account.* keys"),
            ));
        }
    }
    if let Some(template) = &mirror.template {
        if template.len() > 64 {
            out.push(FieldError::new(
                "spec.mirror.template",
                format!("must have at most 64 keys (has {})", template.len()),
            ));
        }
        for (key, text) in template {
            if !super::validate::is_secret_key(key) {
                out.push(FieldError::new(
                    format!("spec.mirror.template[{key}]"),
                    TEMPLATE_KEY_MESSAGE,
                ));
            }
            if text.chars().count() > crate::template::MAX_TEMPLATE_LEN {
                out.push(FieldError::new(
                    format!("spec.mirror.template[{key}]"),
                    TEMPLATE_VALUE_MESSAGE,
                ));
            }
        }
    }
    if let Some(from) = &mirror.template_from {
        if from.len() > 16 {
            out.push(FieldError::new(
                "spec.mirror.templateFrom",
                format!("must have at most 16 items (has {})", from.len()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, f) in from.iter().enumerate() {
            let key = &f.config_map_ref.key;
            if !super::validate::is_dns_subdomain(&f.config_map_ref.name) {
                out.push(FieldError::new(
                    format!("spec.mirror.templateFrom[{i}].configMapRef.name"),
                    CONFIG_MAP_NAME_MESSAGE,
                ));
            }
            if !super::validate::is_secret_key(key) {
                out.push(FieldError::new(
                    format!("spec.mirror.templateFrom[{i}].configMapRef.key"),
                    CONFIG_MAP_KEY_MESSAGE,
                ));
                continue;
            }
            if mirror
                .template
                .as_ref()
                .is_some_and(|t| t.contains_key(key))
                || !seen.insert(key)
            {
                out.push(FieldError::new(
                    format!("spec.mirror.templateFrom[{i}].configMapRef.key"),
                    format!("another template already produces the Secret key {key:?}"),
                ));
            }
        }
    }
}

/// The Secret keys templates produce (inline and from ConfigMaps).
pub fn template_keys(spec: &VaultSecretSpec) -> std::collections::BTreeSet<String> {
    let Some(mirror) = &spec.mirror else {
        return Default::default();
    };
    mirror
        .template
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .chain(
            mirror
                .template_from
                .iter()
                .flatten()
                .map(|f| f.config_map_ref.key.clone()),
        )
        .collect()
}
