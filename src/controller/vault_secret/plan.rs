//! The pure middle of the VaultSecret reconcile: from what was fetched to what must be written.
//!
//! No I/O here. Every decision about ownership, drift, generation, mirroring, rollout restarts
//! and status is a function of its inputs, tested on small fixtures.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::controller::hashing::HmacKey;
use crate::controller::{
    DATA_HASH_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VAULT_SECRET_LABEL,
};
use crate::crd::vault_secret::{
    MergePolicy, MirrorSecretType, MirrorSpec, Ownership, PrivxSecretStatus, RESERVED_KEY_PREFIX,
};
use crate::crd::{VaultSecretSpec, VaultSecretStatus};
use crate::template::{Origin, Template};
use privx_client::{RoleHandle, Secret, SecretData, SecretLocation, SecretWrite};

pub use crate::controller::outcome::{Refusal, reason};

pub mod ownership;

/// Where the secret lives in PrivX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub location: SecretLocation,
    pub name: String,
}

impl Target {
    pub fn owner_id(&self) -> Option<&str> {
        match &self.location {
            SecretLocation::Shared => None,
            SecretLocation::Personal { user_id } => Some(user_id),
        }
    }

    /// How the target is named in messages: `"k8s/ns/x"` or `"k8s/ns/x" of user u`.
    pub fn describe(&self) -> String {
        match self.owner_id() {
            None => format!("{:?}", self.name),
            Some(u) => format!("{:?} (personal, user {u})", self.name),
        }
    }
}

/// The data source as fetched.
#[derive(Clone, Debug)]
pub enum SourceInput {
    /// No source: PrivX is the source of truth.
    ReadOnly,
    /// The selected keys of the source Secret, as text.
    Secret(SecretData),
    /// A password to generate into `key`; `candidate` is used only if a new one is needed.
    Generate {
        key: String,
        candidate: crate::password::Password,
    },
}

/// Everything the PrivX plan looks at.
#[derive(Clone, Debug)]
pub struct PrivxInput<'a> {
    pub spec: &'a VaultSecretSpec,
    pub status: Option<&'a VaultSecretStatus>,
    pub generation: Option<i64>,
    pub target: &'a Target,
    pub source: SourceInput,
    /// Desired role IDs (spec roles plus the operator's own), sorted and deduplicated.
    pub read_roles: Vec<String>,
    pub write_roles: Vec<String>,
    /// The secret in PrivX now, if it exists.
    pub current: Option<&'a Secret>,
    /// The value of the regenerate annotation, if set.
    pub regenerate_request: Option<&'a str>,
    /// The key of the data hash (to tell whether the source changed since the last sync).
    pub hash_key: &'a HmacKey,
    /// The operator's PrivX identity, if known (see `Settings::privx_identity`).
    pub identity: Option<&'a str>,
}

/// What to do in PrivX.
#[derive(Clone, Debug, PartialEq)]
pub enum PrivxAction {
    /// Nothing to write.
    None,
    Create(SecretWrite),
    Update(SecretWrite),
}

/// Why a write happens (for events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCause {
    /// The secret did not exist.
    Created,
    /// The declared state changed (spec or source).
    Updated,
    /// Someone changed the secret in PrivX; it is put back.
    DriftCorrected,
    /// An existing secret was adopted and overwritten.
    Adopted,
    /// A new password was requested with the regenerate annotation.
    Regenerated,
}

/// The outcome of the PrivX plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivxPlan {
    pub action: PrivxAction,
    pub cause: Option<WriteCause>,
    /// How this object manages the secret after the action (`None` for read-only mirrors).
    pub ownership: Option<Ownership>,
    /// The data PrivX holds after the action (what is mirrored and hashed).
    pub data: SecretData,
    /// The regenerate annotation value the data answers (recorded in status).
    pub regenerate_token: Option<String>,
}

fn sorted_ids(handles: &[RoleHandle]) -> Vec<String> {
    let mut ids: Vec<String> = handles
        .iter()
        .filter(|h| h.deleted != Some(true))
        .map(|h| h.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn handles(ids: &[String]) -> Vec<RoleHandle> {
    ids.iter()
        .map(|id| RoleHandle {
            id: id.clone(),
            ..Default::default()
        })
        .collect()
}

/// Decides what to do in PrivX.
pub fn plan_privx(input: &PrivxInput<'_>) -> Result<PrivxPlan, Refusal> {
    let target = input.target;
    let current = input.current;

    // Without a source the operator only reads.
    if matches!(input.source, SourceInput::ReadOnly) {
        let Some(current) = current else {
            return Err(Refusal::new(
                reason::SOURCE_NOT_FOUND,
                format!(
                    "PrivX secret {} does not exist (without spec.source the operator only reads it)",
                    target.describe()
                ),
            ));
        };
        let Some(data) = current.data.clone() else {
            return Err(not_readable(target));
        };
        return Ok(PrivxPlan {
            action: PrivxAction::None,
            cause: None,
            ownership: None,
            data,
            regenerate_token: None,
        });
    }

    let regenerate_token = input.regenerate_request.map(String::from);
    let recorded = input
        .status
        .and_then(|s| s.privx.as_ref())
        .filter(|p| p.name == target.name && p.owner_id.as_deref() == target.owner_id())
        .and_then(|p| p.ownership);

    let Some(current) = current else {
        // Absent: create it.
        let data = match &input.source {
            SourceInput::Secret(data) => data.clone(),
            SourceInput::Generate { key, candidate } => generated(key, candidate),
            SourceInput::ReadOnly => unreachable!("handled above"),
        };
        let body = SecretWrite {
            data: data.clone(),
            read_roles: handles(&input.read_roles),
            write_roles: handles(&input.write_roles),
        };
        return Ok(PrivxPlan {
            action: PrivxAction::Create(body),
            cause: Some(WriteCause::Created),
            ownership: Some(Ownership::Created),
            data,
            regenerate_token,
        });
    };

    let roles_match = sorted_ids(&current.read_roles) == input.read_roles
        && sorted_ids(&current.write_roles) == input.write_roles;

    // Decide whether this object may write the existing secret. What status records is only
    // a claim (status is writable by tenants): PrivX's author must confirm it.
    let recorded =
        recorded.and_then(|o| ownership::confirm(o, current, input.identity, input.spec.adopt()));
    let ownership = match recorded {
        Some(o) => o,
        None => {
            if roles_match
                && looks_like_ours(&input.source, current.data.as_ref())
                && crate::controller::may_be_ours(current.author.as_deref(), input.identity)
            {
                // We created it and crashed before recording so: PrivX does not name another
                // author and the content is exactly what we would have written.
                Ownership::Created
            } else if input.spec.adopt() {
                Ownership::Adopted
            } else {
                return Err(Refusal::new(
                    reason::CONFLICT,
                    format!(
                        "PrivX secret {} already exists and is not managed by this VaultSecret; set spec.adopt: true to take it over (its data and roles will be replaced)",
                        target.describe()
                    ),
                ));
            }
        }
    };
    let newly_adopted = recorded.is_none() && ownership == Ownership::Adopted;

    // Adopting means overwriting: data the operator cannot read is replaced as well.
    let empty = SecretData::default();
    let current_data = match current.data.as_ref() {
        Some(d) => d,
        None if newly_adopted => &empty,
        None => return Err(not_readable(target)),
    };

    let regenerate_requested = match (&input.source, input.regenerate_request) {
        (SourceInput::Generate { .. }, Some(req)) => {
            input.status.and_then(|s| s.regenerate_token.as_deref()) != Some(req)
        }
        _ => false,
    };

    let desired = match &input.source {
        SourceInput::Secret(data) => data.clone(),
        SourceInput::Generate { key, candidate } => {
            let existing = current_data
                .0
                .get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty());
            match existing {
                // PrivX holds the password: keep it, unless a new one was asked for.
                Some(value) if !regenerate_requested => {
                    SecretData(BTreeMap::from([(key.clone(), value.into())]))
                }
                _ => generated(key, candidate),
            }
        }
        SourceInput::ReadOnly => unreachable!("handled above"),
    };

    if &desired == current_data && roles_match {
        return Ok(PrivxPlan {
            action: PrivxAction::None,
            cause: None,
            ownership: Some(ownership),
            data: desired,
            regenerate_token: regenerate_token
                .or_else(|| input.status.and_then(|s| s.regenerate_token.clone())),
        });
    }

    let cause = if newly_adopted {
        WriteCause::Adopted
    } else if regenerate_requested {
        WriteCause::Regenerated
    } else if is_drift(input, &desired) {
        WriteCause::DriftCorrected
    } else {
        WriteCause::Updated
    };
    Ok(PrivxPlan {
        action: PrivxAction::Update(SecretWrite {
            data: desired.clone(),
            read_roles: handles(&input.read_roles),
            write_roles: handles(&input.write_roles),
        }),
        cause: Some(cause),
        ownership: Some(ownership),
        data: desired,
        regenerate_token,
    })
}

fn generated(key: &str, candidate: &crate::password::Password) -> SecretData {
    SecretData(BTreeMap::from([(
        key.to_string(),
        candidate.expose().into(),
    )]))
}

fn not_readable(target: &Target) -> Refusal {
    Refusal::new(
        reason::NOT_READABLE,
        format!(
            "PrivX returned secret {} without its data: the operator's API client holds none of its read roles",
            target.describe()
        ),
    )
}

/// Whether an unrecorded existing secret has exactly the content this object would have
/// created (same data for a Secret source; exactly the one generated key for `generate`).
fn looks_like_ours(source: &SourceInput, current: Option<&SecretData>) -> bool {
    let Some(current) = current else {
        return false;
    };
    match source {
        SourceInput::Secret(data) => data == current,
        SourceInput::Generate { key, .. } => {
            current.0.len() == 1
                && current
                    .0
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_some_and(|s| !s.is_empty())
        }
        SourceInput::ReadOnly => false,
    }
}

/// Drift: the declared state did not change since the last sync (same generation, same source
/// data), yet PrivX differs — someone else changed it.
fn is_drift(input: &PrivxInput<'_>, desired: &SecretData) -> bool {
    let Some(status) = input.status else {
        return false;
    };
    if status.observed_generation.is_none() || status.observed_generation != input.generation {
        return false;
    }
    match (&input.source, &status.data_hash) {
        (SourceInput::Generate { .. }, Some(_)) => true,
        (SourceInput::Secret(_), Some(previous)) => {
            data_bytes(desired, None).is_ok_and(|bytes| &input.hash_key.hash(&bytes) == previous)
        }
        _ => false,
    }
}

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

/// Whether `key` is a valid Secret data key (the one rule, shared with validation).
pub fn valid_secret_key(key: &str) -> bool {
    crate::crd::validate::is_secret_key(key)
}

/// What to do with the mirrored Secret.
#[derive(Clone, Debug, PartialEq)]
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
    existing: Option<&KubeSecret>,
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
    key: &crate::controller::hashing::HmacKey,
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
    existing: Option<&KubeSecret>,
    force: bool,
) -> Result<MirrorAction, Refusal> {
    let Some(mirror) = mirror else {
        return Ok(MirrorAction::NotDeclared);
    };
    let name = mirror_name(mirror, owner.name);
    if let Some(bad) = bytes.keys().find(|k| !valid_secret_key(k)) {
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
    let ours = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == owner.uid);
    if !ours {
        return Err(Refusal::new(
            reason::CONFLICT,
            format!(
                "Secret {}/{name} already exists and is not managed by this VaultSecret; it is left alone (delete it or choose another spec.mirror.secretName)",
                owner.namespace
            ),
        ));
    }
    let existing_type = existing.type_.as_deref().unwrap_or("Opaque");
    if existing_type != type_.as_str() {
        return Ok(MirrorAction::Replace(Box::new(desired)));
    }
    let existing_data: BTreeMap<String, Vec<u8>> = existing
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let contains = |have: &Option<BTreeMap<String, String>>, want: &BTreeMap<String, String>| {
        want.iter()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    // Labels and annotations this operator applied before but no longer declares: applying
    // without them makes the API server remove them (field ownership); others' stay.
    let dropped = |field: &str, want: &BTreeMap<String, String>| {
        owned_metadata_keys(existing, field)
            .iter()
            .any(|k| !want.contains_key(k))
    };
    let in_sync = existing_data == bytes
        && existing.string_data.is_none()
        && contains(&existing.metadata.labels, &labels)
        && contains(&existing.metadata.annotations, &annotations)
        && !dropped("f:labels", &labels)
        && !dropped("f:annotations", &annotations);
    Ok(if in_sync && !force {
        MirrorAction::InSync
    } else {
        MirrorAction::Apply(Box::new(desired))
    })
}

/// The keys under `metadata.<field>` (`f:labels`, `f:annotations`) that the operator's field
/// manager owns on `object` by server-side apply, read from `managedFields`, and still present.
pub fn owned_metadata_keys(object: &KubeSecret, field: &str) -> Vec<String> {
    let present = |k: &str| match field {
        "f:labels" => object
            .metadata
            .labels
            .as_ref()
            .is_some_and(|m| m.contains_key(k)),
        _ => object
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|m| m.contains_key(k)),
    };
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(crate::controller::FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get(field)?.as_object())
        .flat_map(|keys| keys.keys())
        .filter_map(|k| k.strip_prefix("f:"))
        .filter(|k| present(k))
        .map(String::from)
        .collect()
}

/// Keys of an existing mirrored Secret that the desired one lacks (added by hand). Server-side
/// apply cannot remove fields another manager owns, so these are removed by a merge patch.
pub fn stray_keys(existing: Option<&KubeSecret>, desired: &KubeSecret) -> Vec<String> {
    let Some(existing) = existing else {
        return Vec::new();
    };
    let wanted = desired.data.as_ref();
    existing
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !wanted.is_some_and(|w| w.contains_key(*k)))
        .cloned()
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

/// Whether listed workloads must be restarted: only when the mirrored data changed from a
/// previously synced value (never on the first sync, never when unchanged, so never at
/// operator restart and never in a loop).
pub fn needs_rollout(previous_hash: Option<&str>, new_hash: &str, targets_declared: bool) -> bool {
    targets_declared && previous_hash.is_some_and(|p| p != new_hash)
}

/// A VaultSecret naming a PrivX secret, as the claimant order sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// `namespace/name`, for messages.
    pub key: String,
    pub created: Option<k8s_openapi::jiff::Timestamp>,
    pub uid: String,
    /// Status records that this object created or adopted the target.
    pub records_ownership: bool,
}

/// Whether `status` records ownership (created or adopted) of exactly `target`.
pub fn records_ownership(status: Option<&VaultSecretStatus>, target: &Target) -> bool {
    status.and_then(|s| s.privx.as_ref()).is_some_and(|p| {
        p.ownership.is_some() && p.name == target.name && p.owner_id.as_deref() == target.owner_id()
    })
}

/// Which of several VaultSecrets naming one PrivX secret may write it: the one that already
/// owns it (status records it, and PrivX names the operator as the author), else the first by
/// creation time, then uid — a total order that does not change while the objects live (the
/// API server's timestamps have one-second resolution, so the time alone ties). Returns the
/// key of the claimant when it is not `me`.
pub fn claimant(me: &Candidate, others: &[Candidate], author_is_operator: bool) -> Option<String> {
    let rank = |c: &Candidate| {
        (
            !(author_is_operator && c.records_ownership),
            c.created.is_none(),
            c.created,
            c.uid.clone(),
        )
    };
    let mine = rank(me);
    others
        .iter()
        .filter(|o| rank(o) < mine)
        .min_by_key(|o| rank(o))
        .map(|o| o.key.clone())
}

/// The status record of the target to write before the PrivX write, unless status already
/// names exactly this target (then its ownership, if any, is kept as it is).
pub fn intent_status(
    recorded: Option<&PrivxSecretStatus>,
    target: &Target,
) -> Option<PrivxSecretStatus> {
    let same = recorded
        .is_some_and(|r| r.name == target.name && r.owner_id.as_deref() == target.owner_id());
    (!same).then(|| PrivxSecretStatus {
        name: target.name.clone(),
        owner_id: target.owner_id().map(String::from),
        ..Default::default()
    })
}

/// The PrivX part of the status after a successful sync.
/// What PrivX records of the secret after `action`, known without reading it back: the
/// operator (`identity`) is the author of what it created and the last writer of what it wrote,
/// at `now`. `None` when nothing exists and nothing was written. With nothing to write, the
/// times status recorded at our last write stay (PrivX's own clock and format differ by
/// milliseconds; taking them would write status once more for nothing) as long as PrivX names
/// the same last writer.
pub fn after_write(
    current: Option<&Secret>,
    action: &PrivxAction,
    identity: Option<&str>,
    now: &str,
    recorded: Option<&PrivxSecretStatus>,
) -> Option<Secret> {
    match action {
        PrivxAction::None => {
            let mut after = current.cloned()?;
            if let Some(r) = recorded.filter(|r| {
                r.name == after.name && r.updated.is_some() && r.updated_by == after.updated_by
            }) {
                after.created = r.created.clone().or(after.created);
                after.updated = r.updated.clone();
            }
            Some(after)
        }
        PrivxAction::Create(_) => Some(Secret {
            author: identity.map(String::from),
            updated_by: identity.map(String::from),
            created: Some(now.to_string()),
            updated: Some(now.to_string()),
            ..Secret::default()
        }),
        PrivxAction::Update(_) => {
            let mut after = current.cloned().unwrap_or_default();
            after.data = None;
            after.updated_by = identity.map(String::from);
            after.updated = Some(now.to_string());
            Some(after)
        }
    }
}

pub fn privx_status(
    target: &Target,
    plan: &PrivxPlan,
    current: Option<&Secret>,
) -> PrivxSecretStatus {
    PrivxSecretStatus {
        name: target.name.clone(),
        owner_id: target.owner_id().map(String::from),
        ownership: plan.ownership,
        author: current.and_then(|c| c.author.clone()),
        created: current.and_then(|c| c.created.clone()),
        updated: current.and_then(|c| c.updated.clone()),
        updated_by: current.and_then(|c| c.updated_by.clone()),
    }
}

#[cfg(test)]
mod tests;
