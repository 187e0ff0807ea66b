//! The PrivX part of the plan: create, update, adopt or leave the secret, and what PrivX
//! records after the write (known without reading it back).

use std::collections::BTreeMap;

use super::ownership;
use super::{Refusal, SourceInput, Target, data_bytes, reason};
use crate::controller::vault_secret::hashing::HmacKey;
use crate::crd::vault_secret::{Ownership, PrivxSecretStatus};
use crate::crd::{VaultSecretSpec, VaultSecretStatus};
use privx_client::{RoleHandle, Secret, SecretData, SecretWrite};

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
    /// The PrivX identity this object writes with, if known: the operator's, or with
    /// per-namespace identity the namespace's user (see `fetch::PrivxAs`).
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
                && crate::controller::core::may_be_ours(current.author.as_deref(), input.identity)
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

/// The status record of the target a PrivX write concerns, for a failure reported before the
/// final status (the finalizer's cleanup-target annotation records it for cleanup), unless
/// status already names exactly this target (then its ownership, if any, is kept as it is).
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

/// The PrivX part of the status after a successful sync.
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
