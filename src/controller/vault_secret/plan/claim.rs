//! Which of several VaultSecrets naming one PrivX secret may write it (a total, stable order).

use super::Target;
use crate::crd::VaultSecretStatus;

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
