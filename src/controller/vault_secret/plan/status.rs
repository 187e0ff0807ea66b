//! The conditions and messages of a VaultSecret's status (pure).

use super::{Target, reason};
use crate::controller::vault_secret::FORCE_SYNC_ANNOTATION;
use crate::controller::vault_secret::restart;
use crate::crd::condition::{self, DesiredCondition};
use crate::crd::vault_secret::{Ownership, RefreshPolicy};
use crate::crd::{VaultSecret, VaultSecretStatus};

/// `Ready` and `Synced` true with `message`.
pub fn synced(message: &str) -> Vec<DesiredCondition> {
    vec![
        DesiredCondition::new(condition::READY, true, reason::SYNCED, message),
        DesiredCondition::new(condition::SYNCED, true, reason::SYNCED, message),
    ]
}

/// The message of a successful sync: a mirror of what PrivX holds, or PrivX as declared.
pub fn synced_message(ownership: Option<Ownership>, target: &Target) -> String {
    match ownership {
        None => format!("mirrored PrivX secret {}", target.describe()),
        Some(Ownership::Created | Ownership::Adopted) => format!(
            "PrivX secret {} matches the declared state",
            target.describe()
        ),
    }
}

/// The message of the condition `type_` status holds.
pub fn condition_message<'a>(
    status: Option<&'a VaultSecretStatus>,
    type_: &str,
) -> Option<&'a str> {
    status
        .and_then(|s| condition::find(&s.conditions, type_))
        .map(|c| c.message.as_str())
}

/// The conditions when PrivX is not read (refresh policy): synced, saying why nothing was
/// read, and what was last known of the restart targets.
pub fn not_read_conditions(vs: &VaultSecret, target: &Target) -> Vec<DesiredCondition> {
    let policy = vs.spec.refresh_policy();
    let message = match policy {
        RefreshPolicy::CreatedOnce => format!(
            "mirror of PrivX secret {} written once (refreshPolicy CreatedOnce); change the {FORCE_SYNC_ANNOTATION} annotation to rewrite it",
            target.describe()
        ),
        _ => format!(
            "PrivX secret {} synced; nothing changed since (refreshPolicy {policy:?})",
            target.describe()
        ),
    };
    let mut conditions = synced(&message);
    if let Some(c) = vs
        .status
        .as_ref()
        .and_then(|s| condition::find(&s.conditions, restart::CONDITION))
    {
        conditions.push(DesiredCondition::new(
            restart::CONDITION,
            c.status == "True",
            restart::reason_of(&c.reason),
            c.message.clone(),
        ));
    }
    conditions
}
