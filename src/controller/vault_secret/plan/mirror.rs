//! The mirror part of the plan: the mirrored Secret's bytes (key mapping, templates, merge
//! policy), its hash, and whether it must be written, replaced or left alone.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::{Refusal, reason};
use crate::controller::vault_secret::store::stored_mirror::StoredMirror;
use crate::controller::vault_secret::{
    DATA_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VAULT_SECRET_LABEL,
};
use crate::crd::vault_secret::{MergePolicy, MirrorSecretType, MirrorSpec, RESERVED_KEY_PREFIX};
use crate::template::{Origin, Template};
use privx_client::SecretData;

/// PrivX data as Secret bytes, keys renamed by the mapping. Strings are stored as their UTF-8
/// bytes, other JSON values as JSON text. Two fields mapped to one key is an error.
pub fn data_bytes(
    data: &SecretData,
    mapping: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    for (field, value) in &data.0 {
        let key = mapping
            .and_then(|m| m.get(field))
            .cloned()
            .unwrap_or_else(|| field.clone());
        let bytes = match value {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        };
        if out.insert(key.clone(), bytes).is_some() {
            return Err(format!(
                "spec.mirror.keyMapping: two PrivX fields map to the Secret key {key:?}"
            ));
        }
    }
    Ok(out)
}

/// What to do with the mirrored Secret. `Debug` shows the Secret's data keys only (see
/// `plan/mod.rs`).
#[derive(Clone, PartialEq)]
pub enum MirrorAction {
    /// No mirror declared.
    NotDeclared,
    /// Already as desired.
    InSync,
    /// Server-side apply this Secret.
    Apply(Box<KubeSecret>),
    /// The type changed (immutable in Kubernetes): delete, then apply.
    Replace(Box<KubeSecret>),
}

/// Identity of the VaultSecret for owner references and labels.
#[derive(Clone, Debug)]
pub struct Owner<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
}

impl Owner<'_> {
    fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: format!("{}/{}", crate::crd::GROUP, crate::crd::VERSION),
            kind: "VaultSecret".into(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The name of the mirrored Secret.
pub fn mirror_name<'a>(mirror: &'a MirrorSpec, owner_name: &'a str) -> &'a str {
    mirror.secret_name.as_deref().unwrap_or(owner_name)
}

/// Decides what to do with the mirrored Secret.
pub fn plan_mirror(
    mirror: Option<&MirrorSpec>,
    owner: &Owner<'_>,
    data: &SecretData,
    hash: &str,
    existing: Option<&StoredMirror>,
) -> Result<MirrorAction, Refusal> {
    let bytes = match mirror {
        Some(m) => mirror_bytes(m, data, &[])?,
        None => BTreeMap::new(),
    };
    plan_mirror_bytes(mirror, owner, bytes, hash, existing, false)
}

/// The templates of a mirror: `spec.mirror.template` (by key), then `templateFrom` with the
/// ConfigMap texts fetched for it (`None`: the ConfigMap or its key is missing).
pub fn mirror_templates(
    mirror: &MirrorSpec,
    config_maps: &[Option<String>],
) -> Result<Vec<Template>, Refusal> {
    let mut out: Vec<Template> = mirror
        .template
        .iter()
        .flatten()
        .map(|(key, text)| Template::inline(key.clone(), text.clone()))
        .collect();
    for (index, from) in mirror.template_from.iter().flatten().enumerate() {
        let r = &from.config_map_ref;
        let Some(text) = config_maps.get(index).cloned().flatten() else {
            return Err(Refusal::new(
                reason::SOURCE_NOT_FOUND,
                format!(
                    "spec.mirror.templateFrom[{index}]: ConfigMap {:?} has no key {:?} (or does not exist)",
                    r.name, r.key
                ),
            ));
        };
        out.push(Template {
            key: r.key.clone(),
            origin: Origin::ConfigMap {
                index,
                name: r.name.clone(),
                key: r.key.clone(),
            },
            text,
        });
    }
    Ok(out)
}

/// The mirrored Secret's data: the PrivX fields renamed by `keyMapping`, replaced by or merged
/// with the template outputs (`mergePolicy`). Template errors name the key and the line.
pub fn mirror_bytes(
    mirror: &MirrorSpec,
    data: &SecretData,
    templates: &[Template],
) -> Result<BTreeMap<String, Vec<u8>>, Refusal> {
    let mapped = data_bytes(data, mirror.key_mapping.as_ref())
        .map_err(|m| Refusal::new(reason::INVALID_SPEC, m))?;
    if templates.is_empty() {
        return Ok(mapped);
    }
    // Templates read the data under the names the mirror gives them (after keyMapping).
    let fields: BTreeMap<String, serde_json::Value> = data
        .0
        .iter()
        .map(|(field, value)| {
            let key = mirror
                .key_mapping
                .as_ref()
                .and_then(|m| m.get(field))
                .cloned()
                .unwrap_or_else(|| field.clone());
            (key, value.clone())
        })
        .collect();
    let rendered = crate::template::render_all(templates, &fields)
        .map_err(|e| Refusal::new(reason::TEMPLATE_ERROR, e.to_string()))?;
    Ok(match mirror.merge_policy.unwrap_or_default() {
        MergePolicy::Replace => rendered,
        MergePolicy::Merge => {
            let mut merged = mapped;
            merged.extend(rendered);
            merged
        }
    })
}

/// The hash the mirror carries and restarts follow: the PrivX data's hash without templates
/// (as before templates existed), the mirrored bytes' hash with them (a template change
/// changes what the application reads).
pub fn mirror_hash(
    key: &crate::controller::vault_secret::hashing::HmacKey,
    data_hash: &str,
    templated: bool,
    bytes: &BTreeMap<String, Vec<u8>>,
) -> String {
    if templated {
        key.hash(bytes)
    } else {
        data_hash.to_string()
    }
}

/// Decides what to do with the mirrored Secret, given its data. `force`: write it even when it
/// looks in sync (force-sync).
pub fn plan_mirror_bytes(
    mirror: Option<&MirrorSpec>,
    owner: &Owner<'_>,
    bytes: BTreeMap<String, Vec<u8>>,
    hash: &str,
    existing: Option<&StoredMirror>,
    force: bool,
) -> Result<MirrorAction, Refusal> {
    let Some(mirror) = mirror else {
        return Ok(MirrorAction::NotDeclared);
    };
    let name = mirror_name(mirror, owner.name);
    if let Some(bad) = bytes
        .keys()
        .find(|k| !crate::crd::validate::is_secret_key(k))
    {
        return Err(Refusal::new(
            reason::INVALID_SPEC,
            format!(
                "PrivX field {bad:?} is not a valid Secret key (letters, digits, '-', '_', '.'); rename it with spec.mirror.keyMapping"
            ),
        ));
    }
    let type_ = mirror.type_.unwrap_or_default();
    check_type_keys(type_, &bytes)?;

    if let Some(key) = mirror
        .labels
        .iter()
        .chain(mirror.annotations.iter())
        .flatten()
        .map(|(k, _)| k)
        .find(|k| k.starts_with(RESERVED_KEY_PREFIX))
    {
        return Err(Refusal::new(
            reason::INVALID_SPEC,
            format!(
                "spec.mirror labels and annotations may not set {key:?} (kubernetes.io/service-account.* is reserved)"
            ),
        ));
    }
    let mut labels = mirror.labels.clone().unwrap_or_default();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(VAULT_SECRET_LABEL.into(), owner.name.to_string());
    let mut annotations = mirror.annotations.clone().unwrap_or_default();
    annotations.insert(DATA_HASH_ANNOTATION.into(), hash.to_string());

    let desired = KubeSecret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(owner.namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: Some(vec![owner.reference()]),
            ..Default::default()
        },
        type_: Some(type_.as_str().to_string()),
        data: Some(
            bytes
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    };

    let Some(existing) = existing else {
        return Ok(MirrorAction::Apply(Box::new(desired)));
    };
    let ours = existing.owned_by(owner.uid);
    if !ours {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "Secret {}/{name} already exists and is not managed by this VaultSecret; it is left alone (delete it or choose another spec.mirror.secretName)",
                owner.namespace
            ),
        ));
    }
    let existing_type = existing.type_();
    if existing_type != type_.as_str() {
        return Ok(MirrorAction::Replace(Box::new(desired)));
    }
    // Labels and annotations this operator applied before but no longer declares: applying
    // without them makes the API server remove them (field ownership); others' stay.
    let in_sync = existing.data_is(&bytes)
        && !existing.has_string_data()
        && existing.has_labels(&labels)
        && existing.has_annotations(&annotations)
        && !existing.drops_owned_labels(&labels)
        && !existing.drops_owned_annotations(&annotations);
    Ok(if in_sync && !force {
        MirrorAction::InSync
    } else {
        MirrorAction::Apply(Box::new(desired))
    })
}

/// Keys of an existing mirrored Secret that the desired one lacks (added by hand). Server-side
/// apply cannot remove fields another manager owns, so these are removed by a merge patch.
pub fn stray_keys(existing: Option<&StoredMirror>, desired: &KubeSecret) -> Vec<String> {
    let Some(existing) = existing else {
        return Vec::new();
    };
    let wanted = desired.data.as_ref();
    existing
        .keys()
        .filter(|k| !wanted.is_some_and(|w| w.contains_key(*k)))
        .map(String::from)
        .collect()
}

fn check_type_keys(
    type_: MirrorSecretType,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<(), Refusal> {
    let required = type_.required_keys();
    let ok = match type_ {
        MirrorSecretType::BasicAuth => required.iter().any(|k| data.contains_key(*k)),
        _ => required.iter().all(|k| data.contains_key(*k)),
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            reason::INVALID_SPEC,
            format!(
                "spec.mirror.type {} needs the key(s) {} in the mirrored data (map fields with spec.mirror.keyMapping)",
                type_.as_str(),
                required.join(", ")
            ),
        ))
    }
}
