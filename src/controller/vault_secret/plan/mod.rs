//! The pure middle of the VaultSecret reconcile: from what was fetched to what must be written.
//!
//! No I/O here. Every decision about ownership, drift, generation, mirroring, rollout restarts
//! and status is a function of its inputs, tested on small fixtures.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use privx_client::{Secret, SecretData, SecretLocation};

use self::refresh::RefreshDecision;
use super::Settings;
use super::store::stored_mirror::StoredMirror;
use crate::controller::core::finalizer::{CleanupTarget, MetadataChange, plan_metadata};
pub use crate::controller::core::outcome::{Refusal, reason};
use crate::controller::core::{Next, Stop};
use crate::crd::condition::DesiredCondition;
use crate::crd::vault_secret::{CreationPolicy, RolloutTarget};
use crate::crd::{DeletionPolicy, VaultSecret, VaultSecretStatus};
use crate::template::Template;

mod claim;
pub mod events;
mod mirror;
pub mod ownership;

mod privx;
pub mod refresh;
pub mod restarts;
pub mod roles;
pub mod source;
pub mod status;
pub mod tenancy;

pub use claim::*;
pub use events::PlannedEvent;
pub use mirror::*;
pub use privx::*;
pub use restarts::TargetCheck;

/// Where the secret lives in PrivX.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

/// Everything the plan looks at: the object, what the fetch step found, the settings.
pub struct Observed<'a> {
    pub vs: &'a VaultSecret,
    pub target: &'a Target,
    pub source: SourceInput,
    /// The compiled mirror templates (empty without templates).
    pub templates: &'a [Template],
    /// The mirrored Secret as it is (store, or read when the store lacks it).
    pub existing_mirror: Option<&'a StoredMirror>,
    /// The PrivX secret as it is.
    pub current: Option<&'a Secret>,
    /// The operator's own roles, and every role name PrivX was asked about with its id.
    pub self_roles: &'a [String],
    pub resolved_roles: &'a BTreeMap<String, Option<String>>,
    /// This object and the other VaultSecrets naming the same PrivX secret.
    pub me: Candidate,
    pub others: Vec<Candidate>,
    /// The declared restart targets with what the fetch step found (empty when restarts are
    /// off or none are declared).
    pub restart_checks: &'a [(RolloutTarget, TargetCheck)],
    pub decision: &'a RefreshDecision,
    pub inputs_hash: String,
    /// The object's refresh interval.
    pub refresh: Duration,
    pub settings: &'a Settings,
    /// The PrivX identity this object writes with (the author PrivX records), if known.
    pub identity: Option<&'a str>,
    /// "now" as PrivX writes its timestamps.
    pub now: &'a str,
}

/// Everything the apply step does, in its order. Its `Debug` prints no secret value: PrivX data
/// prints as keys (`SecretData`), the mirrored Secret as its name, type and data keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Finalizer and cleanup-target annotation, one patch, before the PrivX write.
    pub metadata: MetadataChange,
    pub privx: PrivxAction,
    pub mirror: MirrorAction,
    /// Keys of the mirror added by hand, removed after applying it.
    pub stray_keys: Vec<String>,
    /// Workloads to restart, and the token their pod templates get.
    pub restarts: Vec<RolloutTarget>,
    pub restart_token: String,
    pub events: Vec<PlannedEvent>,
    pub status: VaultSecretStatus,
    pub conditions: Vec<DesiredCondition>,
    /// The status a failure of a later step is reported on (it names the target written to).
    pub failure_status: Option<VaultSecretStatus>,
    pub requeue: Option<Duration>,
}

/// The mirrored Secret without its data: name, type and the data keys (k8s `ByteString` would
/// print the value's bytes).
impl std::fmt::Debug for MirrorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (variant, secret) = match self {
            Self::NotDeclared => return f.write_str("NotDeclared"),
            Self::InSync => return f.write_str("InSync"),
            Self::Apply(secret) => ("Apply", secret),
            Self::Replace(secret) => ("Replace", secret),
            Self::Patch {
                secret,
                takeover: true,
            } => ("Takeover", secret),
            Self::Patch { secret, .. } => ("Patch", secret),
        };
        let keys: Vec<&str> = secret
            .data
            .iter()
            .flat_map(|d| d.keys())
            .chain(secret.string_data.iter().flat_map(|d| d.keys()))
            .map(String::as_str)
            .collect();
        f.debug_struct(variant)
            .field("namespace", &secret.metadata.namespace)
            .field("name", &secret.metadata.name)
            .field("type", &secret.type_)
            .field("labels", &secret.metadata.labels)
            .field("annotations", &secret.metadata.annotations)
            .field("data_keys", &keys)
            .finish()
    }
}

impl Plan {
    /// A plan that writes nothing but status (PrivX is not read now).
    fn status_only(status: VaultSecretStatus, conditions: Vec<DesiredCondition>) -> Self {
        Self {
            metadata: MetadataChange::default(),
            privx: PrivxAction::None,
            mirror: MirrorAction::NotDeclared,
            stray_keys: Vec::new(),
            restarts: Vec::new(),
            restart_token: String::new(),
            events: Vec::new(),
            status,
            conditions,
            failure_status: None,
            requeue: None,
        }
    }
}

/// Decides the whole sync: refusals, the PrivX write, the mirror, finalizer and cleanup target,
/// restarts, events and status.
pub fn plan(o: &Observed<'_>) -> Result<Plan, Stop> {
    let vs = o.vs;
    let spec = &vs.spec;
    let status = vs.status.as_ref();
    let target = o.target;
    let key = &o.settings.hmac_key;
    let identity = o.identity;
    let later = |r: Refusal| (r, Next::After(o.refresh));

    let (read_roles, write_roles) =
        roles::role_ids(spec, &o.source, o.self_roles, o.resolved_roles, o.refresh)?;
    let author_is_operator = o
        .current
        .is_some_and(|c| crate::controller::core::may_be_ours(c.author.as_deref(), identity));
    if let Some(other) = claimant(&o.me, &o.others, author_is_operator) {
        return Err(later(Refusal::new(
            reason::CONFLICT,
            format!(
                "PrivX secret {} is already declared by VaultSecret {other}",
                target.describe()
            ),
        )));
    }

    let privx_plan = plan_privx(&PrivxInput {
        spec,
        status,
        generation: vs.metadata.generation,
        target,
        source: o.source.clone(),
        read_roles,
        write_roles,
        current: o.current,
        regenerate_request: vs
            .annotations()
            .get(crate::controller::vault_secret::REGENERATE_ANNOTATION)
            .map(String::as_str),
        hash_key: key,
        identity,
    })
    .map_err(later)?;
    let bytes = data_bytes(&privx_plan.data, None)
        .map_err(|m| (Refusal::new(reason::INVALID_SPEC, m), Next::AwaitChange))?;
    let hash = key.hash(&bytes);
    let name = vs.name_any();
    let namespace = vs.namespace().unwrap_or_default();
    let uid = vs.uid().unwrap_or_default();
    let owner = Owner {
        name: &name,
        namespace: &namespace,
        uid: &uid,
    };
    let mirror_spec = spec.mirror.as_ref();
    let mirrored = match mirror_spec {
        Some(m) => mirror_bytes(m, &privx_plan.data, o.templates).map_err(later)?,
        None => BTreeMap::new(),
    };
    let templated = !o.templates.is_empty();
    let mirror_hash = mirror_hash(key, &hash, templated, &mirrored);
    let mirror = plan_mirror_bytes(
        mirror_spec,
        &owner,
        mirrored.clone(),
        &mirror_hash,
        o.existing_mirror,
        o.decision.forced,
    )
    .map_err(|r| {
        // A Secret to merge into may be created any moment, and its creation is not watched.
        let retry = if r.reason == reason::MIRROR_NOT_FOUND {
            super::SOURCE_RETRY.min(o.refresh)
        } else {
            o.refresh
        };
        (r, Next::After(retry))
    })?;
    let merge = mirror_spec.is_some_and(|m| m.creation_policy() == CreationPolicy::Merge);
    let stray_keys = match &mirror {
        // Merge: the other keys are someone else's.
        MirrorAction::Apply(_) | MirrorAction::Patch { .. } if merge => Vec::new(),
        MirrorAction::Apply(secret) | MirrorAction::Patch { secret, .. } => {
            stray_keys(o.existing_mirror, secret)
        }
        _ => Vec::new(),
    };

    // Finalizer first, and with it the target the PrivX write concerns (cleanup's record, should
    // the status write after the PrivX write never happen).
    // Merge: the Secret is not ours to be garbage collected, so our keys are removed from it
    // at deletion (the finalizer guards that).
    let wants_finalizer = (spec.deletion_policy() == DeletionPolicy::Delete
        && privx_plan.ownership.is_some())
        || merge;
    let writes = privx_plan.action != PrivxAction::None;
    let intent = CleanupTarget {
        name: target.name.clone(),
        owner_id: target.owner_id().map(String::from),
    };
    let metadata = plan_metadata(&vs.metadata, wants_finalizer, writes.then_some(&intent));
    let failure_status = (wants_finalizer && writes)
        .then(|| intent_status(status.and_then(|s| s.privx.as_ref()), target))
        .flatten()
        .map(|privx| VaultSecretStatus {
            privx: Some(privx),
            ..status.cloned().unwrap_or_default()
        });

    // Restarts: with templates the mirror's own hash is what the application reads.
    let previous = if templated {
        o.existing_mirror
            .and_then(|m| m.annotation(crate::controller::vault_secret::DATA_HASH_ANNOTATION))
    } else {
        status.and_then(|s| s.data_hash.as_deref())
    };
    let new = if templated { &mirror_hash } else { &hash };
    // A takeover restarts when the data the workloads read until now differs from PrivX's.
    let changed = !o.restart_checks.is_empty()
        && if mirror.is_takeover() {
            o.existing_mirror.is_some_and(|m| !m.data_is(&mirrored))
        } else {
            restarts::data_changed(key, previous, new, &mirrored, o.existing_mirror)
        };
    let restart_plan = (!o.restart_checks.is_empty()).then(|| {
        restarts::plan_restarts(
            o.restart_checks,
            changed,
            status::condition_message(status, crate::controller::vault_secret::restart::CONDITION),
        )
    });

    let mut events: Vec<PlannedEvent> = restart_plan
        .as_ref()
        .and_then(|r| r.event.clone())
        .into_iter()
        .collect();
    events.extend(privx_plan.cause.map(|cause| events::written(cause, target)));

    let after = after_write(
        o.current,
        &privx_plan.action,
        identity,
        o.now,
        status.and_then(|s| s.privx.as_ref()),
    );
    let new_status = VaultSecretStatus {
        conditions: Vec::new(),
        observed_generation: vs.metadata.generation,
        // Kept or set when the status is written (`write_synced_status`).
        last_sync_time: None,
        privx: Some(privx_status(target, &privx_plan, after.as_ref())),
        data_hash: Some(hash),
        mirror_secret_name: mirror_spec.map(|m| mirror_name(m, &name).to_string()),
        regenerate_token: privx_plan.regenerate_token.clone(),
        last_force_sync: o.decision.last_force_sync.clone(),
        inputs_hash: Some(o.inputs_hash.clone()),
    };
    let mut conditions = status::synced(&status::synced_message(privx_plan.ownership, target));
    let restarts = match restart_plan {
        Some(r) => {
            conditions.push(r.condition);
            r.restart
        }
        None => Vec::new(),
    };
    Ok(Plan {
        metadata,
        privx: privx_plan.action,
        mirror,
        stray_keys,
        restarts,
        restart_token: mirror_hash,
        events,
        status: new_status,
        conditions,
        failure_status,
        requeue: o.decision.requeue,
    })
}

/// Whether this sync may create the PrivX secret without reading it first (one PrivX call for
/// a new object instead of two): the object pushes data (a source Secret or a generated
/// password), has never written PrivX (no `status.privx`), keeps the secret when deleted
/// (`Retain`: nothing is recorded on the object before the write) and does not ask to adopt.
/// PrivX answers a create of a name that exists with an error (409, or 400 VALUE_DUPLICATE),
/// never by overwriting it; the driver then reads the secret and plans again, as it would
/// have from the start. So the worst case is one failed create, and nothing is overwritten.
pub fn create_unread(vs: &VaultSecret, source: &SourceInput) -> bool {
    !matches!(source, SourceInput::ReadOnly)
        && vs.status.as_ref().is_none_or(|s| s.privx.is_none())
        && vs.spec.deletion_policy() == DeletionPolicy::Retain
        && vs.spec.adopt != Some(true)
}

/// Validation and the tenancy rule, before anything is fetched: `InvalidSpec` naming every
/// field, or `NotAllowed` naming the annotation that would allow the target.
pub fn admit(
    vs: &VaultSecret,
    target: &Target,
    template: &crate::controller::vault_secret::plan::tenancy::NameTemplate,
    namespace_policy: &crate::controller::vault_secret::plan::tenancy::NamespacePolicy,
) -> Result<(), Stop> {
    crate::controller::core::invalid_spec(&crate::crd::validate::validate_vault_secret(&vs.spec))?;
    crate::controller::vault_secret::plan::tenancy::check_access(
        template,
        &vs.namespace().unwrap_or_default(),
        namespace_policy,
        &target.name,
        target.owner_id(),
    )
    .map_err(|message| {
        (
            Refusal::new(reason::NOT_ALLOWED, message),
            Next::AwaitChange,
        )
    })
}

/// Whether the last reconcile synced this target successfully (Ready, with a data hash).
pub fn synced_before(status: Option<&VaultSecretStatus>, target: &Target) -> bool {
    let Some(status) = status else {
        return false;
    };
    status.data_hash.is_some()
        && status
            .privx
            .as_ref()
            .is_some_and(|p| p.name == target.name && p.owner_id.as_deref() == target.owner_id())
        && crate::crd::condition::find(&status.conditions, crate::crd::condition::READY)
            .is_some_and(|c| c.status == "True" && c.reason == reason::SYNCED)
}

/// The refresh policy says PrivX is not read now: status keeps what the last sync recorded
/// and says why; the next reconcile comes with a change.
pub fn not_read(vs: &VaultSecret, target: &Target) -> Plan {
    let mut status = vs.status.clone().unwrap_or_default();
    status.observed_generation = vs.metadata.generation;
    let conditions = status::not_read_conditions(vs, target);
    Plan::status_only(status, conditions)
}

#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod tests;
