//! The mirror part of the plan: the mirrored Secret's bytes (key mapping, templates, merge
//! policy), its hash, and whether it must be written, replaced, taken over or left alone
//! (`creationPolicy`, `adopt`, `immutable`).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::{Refusal, reason};
use crate::controller::vault_secret::store::stored_mirror::StoredMirror;
use crate::controller::vault_secret::{
    DATA_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VAULT_SECRET_LABEL,
    VAULT_SECRET_UID_ANNOTATION,
};
use crate::crd::vault_secret::{
    CreationPolicy, MergePolicy, MirrorSecretType, MirrorSpec, REFUSED_SECRET_TYPES,
    RESERVED_KEY_PREFIX,
};
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
    /// The type changed, or the data of an immutable Secret: delete, then apply.
    Replace(Box<KubeSecret>),
    /// Owner references must go that server-side apply cannot remove (another manager's, or
    /// ours set by a patch): one merge patch sets this Secret's metadata (owner references
    /// as listed, labels and annotations added) and data. `takeover`: the Secret was not
    /// this object's before (`spec.mirror.adopt`).
    Patch {
        secret: Box<KubeSecret>,
        takeover: bool,
    },
}

impl MirrorAction {
    /// Makes a patch conditional on the Secret still being at `version` (the one it was read
    /// at): a takeover or an owner-reference change must not overwrite a change someone made
    /// in between (the API answers 409, and the next reconcile reads again). Other actions
    /// are server-side applies of our own fields and need none.
    pub fn expect_version(&mut self, version: Option<&str>) {
        if let (Self::Patch { secret, .. }, Some(version)) = (self, version) {
            secret.metadata.resource_version = Some(version.to_string());
        }
    }

    /// Whether this takes over a Secret this object did not manage before.
    pub fn is_takeover(&self) -> bool {
        matches!(self, Self::Patch { takeover: true, .. })
    }
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
    let policy = mirror.creation_policy();
    let type_ = mirror.secret_type();
    let immutable = mirror.immutable();
    if let Some(builtin) = MirrorSecretType::builtin(type_) {
        check_type_keys(builtin, &bytes)?;
    }

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
    if policy != CreationPolicy::Owner {
        annotations.insert(VAULT_SECRET_UID_ANNOTATION.into(), owner.uid.to_string());
    }

    // Merge: the Secret's type and owners are someone else's, so neither is applied.
    let desired = KubeSecret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(owner.namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: (policy == CreationPolicy::Owner).then(|| vec![owner.reference()]),
            ..Default::default()
        },
        type_: (policy != CreationPolicy::Merge).then(|| type_.to_string()),
        immutable: immutable.then_some(true),
        data: Some(
            bytes
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    };

    let Some(existing) = existing else {
        if policy == CreationPolicy::Merge {
            return Err(Refusal::new(
                reason::MIRROR_NOT_FOUND,
                format!(
                    "Secret {}/{name} does not exist: creationPolicy Merge writes into a Secret someone else creates, and creates none",
                    owner.namespace
                ),
            ));
        }
        return Ok(MirrorAction::Apply(Box::new(desired)));
    };
    // An `Orphan`/`Merge` mirror records its VaultSecret's uid. Another uid under this
    // object's name is an earlier VaultSecret of the same name (two cannot live at once in a
    // namespace: it is gone, e.g. the CRD was reinstalled): its mirror is taken back.
    let recorded_uid = existing.annotation(VAULT_SECRET_UID_ANNOTATION);
    let earlier_self = existing.label(VAULT_SECRET_LABEL) == Some(owner.name);
    let recorded_ours = recorded_uid.is_some_and(|u| u == owner.uid || earlier_self);
    if existing.owned_by_another(owner.uid) || (recorded_uid.is_some() && !recorded_ours) {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "Secret {}/{name} is the mirror of another VaultSecret ({}); it is left alone",
                owner.namespace,
                existing
                    .owner_names()
                    .next()
                    .or(existing.label(VAULT_SECRET_LABEL))
                    .unwrap_or("unknown")
            ),
        ));
    }
    let ours = existing.owned_by(owner.uid) || recorded_ours;
    if policy == CreationPolicy::Merge {
        if REFUSED_SECRET_TYPES.contains(&existing.type_()) {
            return Err(Refusal::new(
                reason::CONFLICT,
                format!(
                    "Secret {}/{name} has type {}: creationPolicy Merge never writes into token Secrets",
                    owner.namespace,
                    existing.type_()
                ),
            ));
        }
        if existing.owned_by(owner.uid) {
            // Our owner reference (from creationPolicy Owner before) would let the garbage
            // collector delete someone else's Secret: it goes, their owners stay.
            let mut secret = desired;
            secret.metadata.owner_references = Some(existing.other_owners().to_vec());
            return Ok(MirrorAction::Patch {
                secret: Box::new(secret),
                takeover: false,
            });
        }
        let in_sync = existing.data_contains(&bytes)
            && existing.has_labels(&labels)
            && existing.has_annotations(&annotations)
            && !existing.drops_owned_labels(&labels)
            && !existing.drops_owned_annotations(&annotations);
        return Ok(if in_sync && !force {
            MirrorAction::InSync
        } else {
            MirrorAction::Apply(Box::new(desired))
        });
    }
    if !ours {
        return take_over(mirror, owner, name, desired, &bytes, existing);
    }
    if existing.type_() != type_ || (existing.immutable() && !existing.data_is(&bytes)) {
        return Ok(MirrorAction::Replace(Box::new(desired)));
    }
    if existing.immutable() && !immutable {
        // Kubernetes never makes an immutable Secret mutable again.
        return Ok(MirrorAction::Replace(Box::new(desired)));
    }
    if policy == CreationPolicy::Orphan && existing.owned_by(owner.uid) {
        let mut secret = desired;
        secret.metadata.owner_references = Some(existing.other_owners().to_vec());
        return Ok(MirrorAction::Patch {
            secret: Box::new(secret),
            takeover: false,
        });
    }
    // Labels and annotations this operator applied before but no longer declares: applying
    // without them makes the API server remove them (field ownership); others' stay.
    let in_sync = existing.data_is(&bytes)
        && !existing.has_string_data()
        && existing.immutable() == immutable
        && (policy == CreationPolicy::Orphan || existing.owned_by(owner.uid))
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

/// A Secret this object did not write: refused (`Conflict`) unless `spec.mirror.adopt`; taken
/// over in place otherwise — same object (never deleted), its previous controller owner
/// reference replaced by ours (`Owner`) or removed (`Orphan`), other owners kept.
fn take_over(
    mirror: &MirrorSpec,
    owner: &Owner<'_>,
    name: &str,
    desired: KubeSecret,
    bytes: &BTreeMap<String, Vec<u8>>,
    existing: &StoredMirror,
) -> Result<MirrorAction, Refusal> {
    let what = format!("Secret {}/{name}", owner.namespace);
    if !mirror.adopt() {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "{what} already exists and is not managed by this VaultSecret; it is left alone (set spec.mirror.adopt: true to take it over, or choose another spec.mirror.secretName)"
            ),
        ));
    }
    let type_ = mirror.secret_type();
    if existing.type_() != type_ {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "{what} has type {:?}, spec.mirror.type is {type_:?}: a takeover keeps the Secret, and Kubernetes cannot change its type (declare its type)",
                existing.type_()
            ),
        ));
    }
    if existing.immutable() && !existing.data_is(bytes) {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "{what} is immutable and its data differs from PrivX's: it cannot be taken over without deleting it"
            ),
        ));
    }
    let mut owners: Vec<OwnerReference> = existing
        .other_owners()
        .iter()
        .filter(|r| r.controller != Some(true))
        .cloned()
        .collect();
    if mirror.creation_policy() == CreationPolicy::Owner {
        owners.push(owner.reference());
    }
    let mut secret = desired;
    secret.metadata.owner_references = Some(owners);
    Ok(MirrorAction::Patch {
        secret: Box::new(secret),
        takeover: true,
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

/// What a deleted `creationPolicy: Merge` VaultSecret removes from the Secret it merged into:
/// the data keys, labels and annotations that only the operator's field manager owns (by apply
/// or by patch), as a merge patch of nulls with the Secret's resourceVersion as precondition;
/// `None` when nothing is ours. Keys someone else also owns, and everything else, stay.
pub fn merge_removal(secret: &KubeSecret) -> Option<serde_json::Value> {
    use crate::controller::core::FIELD_MANAGER;
    let managed = secret
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let keys = |path: &[&str], mine: bool| -> std::collections::BTreeSet<String> {
        managed
            .iter()
            .filter(|m| (m.manager.as_deref() == Some(FIELD_MANAGER)) == mine)
            .filter_map(|m| {
                let mut at = &m.fields_v1.as_ref()?.0;
                for step in path {
                    at = at.get(*step)?;
                }
                at.as_object()
            })
            .flat_map(|o| o.keys())
            .filter_map(|k| k.strip_prefix("f:").map(String::from))
            .collect()
    };
    let only_ours = |path: &[&str]| -> serde_json::Map<String, serde_json::Value> {
        let others = keys(path, false);
        keys(path, true)
            .into_iter()
            .filter(|k| !others.contains(k))
            .map(|k| (k, serde_json::Value::Null))
            .collect()
    };
    let data = only_ours(&["f:data"]);
    let labels = only_ours(&["f:metadata", "f:labels"]);
    let annotations = only_ours(&["f:metadata", "f:annotations"]);
    if data.is_empty() && labels.is_empty() && annotations.is_empty() {
        return None;
    }
    Some(serde_json::json!({
        "metadata": {
            "resourceVersion": secret.metadata.resource_version,
            "labels": labels,
            "annotations": annotations,
        },
        "data": data,
    }))
}
