//! Role names → PrivX role IDs, cached briefly (roles rarely change; one resolve call serves many
//! reconciles). Role names come from tenants' specs, so the cache is bounded: expired names are
//! swept out whenever new ones are added, and at most [`ROLE_CACHE_MAX`] are kept (the oldest
//! go first).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use privx_client::{PrivxClient, PrivxError};

pub const ROLE_CACHE_TTL: Duration = Duration::from_secs(60);
/// The most role names kept.
pub const ROLE_CACHE_MAX: usize = 4096;

type Entries = HashMap<String, (Option<String>, Instant)>;

#[derive(Default)]
pub struct RoleCache {
    entries: Mutex<Entries>,
}

/// Adds what PrivX answered at `now`, dropping expired names and, beyond [`ROLE_CACHE_MAX`],
/// the oldest.
fn remember(entries: &mut Entries, answered: Vec<(String, Option<String>)>, now: Instant) {
    entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ROLE_CACHE_TTL);
    for (name, id) in answered {
        entries.insert(name, (id, now));
    }
    if entries.len() > ROLE_CACHE_MAX {
        let mut by_age: Vec<(Instant, String)> = entries
            .iter()
            .map(|(n, (_, at))| (*at, n.clone()))
            .collect();
        by_age.sort();
        let excess = entries.len() - ROLE_CACHE_MAX;
        for (_, name) in by_age.into_iter().take(excess) {
            entries.remove(&name);
        }
    }
}

impl RoleCache {
    /// Resolves names to IDs (`None` for names PrivX does not know). Only names missing from the
    /// cache or expired are sent to PrivX, in one call.
    pub async fn resolve(
        &self,
        privx: &PrivxClient,
        names: &[String],
    ) -> Result<BTreeMap<String, Option<String>>, PrivxError> {
        let now = Instant::now();
        let mut out = BTreeMap::new();
        let mut missing = Vec::new();
        {
            let entries = self.entries.lock().expect("role cache lock");
            for name in names {
                match entries.get(name) {
                    Some((id, at)) if now.duration_since(*at) < ROLE_CACHE_TTL => {
                        out.insert(name.clone(), id.clone());
                    }
                    _ => missing.push(name.clone()),
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            let roles = privx.resolve_roles(&missing).await?;
            let answered: Vec<(String, Option<String>)> = missing
                .into_iter()
                .map(|name| {
                    let id = roles.iter().find(|r| r.name == name).map(|r| r.id.clone());
                    (name, id)
                })
                .collect();
            out.extend(answered.iter().cloned());
            remember(
                &mut self.entries.lock().expect("role cache lock"),
                answered,
                now,
            );
        }
        Ok(out)
    }

    /// How many role names are cached.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("role cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<usize>) -> Vec<(String, Option<String>)> {
        range.map(|i| (format!("role-{i}"), None)).collect()
    }

    /// Issue 23 §4: tenant-chosen role names cannot grow the cache without bound.
    #[test]
    fn the_role_cache_sweeps_expired_names_and_keeps_at_most_the_bound() {
        let mut entries = Entries::new();
        let start = Instant::now();
        remember(&mut entries, names(0..10), start);
        assert_eq!(entries.len(), 10);
        // A minute later the first ten have expired: only the new one stays.
        let later = start + ROLE_CACHE_TTL;
        remember(&mut entries, names(10..11), later);
        assert_eq!(entries.len(), 1);
        assert!(entries.contains_key("role-10"));
        // A flood of distinct names at once: the bound holds, the newest stay.
        remember(&mut entries, names(11..(ROLE_CACHE_MAX + 100)), later);
        assert_eq!(entries.len(), ROLE_CACHE_MAX);
        let newer = later + Duration::from_secs(1);
        remember(&mut entries, names(0..1), newer);
        assert_eq!(entries.len(), ROLE_CACHE_MAX);
        assert!(entries.contains_key("role-0"), "the newest is kept");
    }
}
