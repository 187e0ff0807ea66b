//! Role names → PrivX role IDs, cached briefly (roles rarely change; one resolve call serves many
//! reconciles).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use privx_client::{PrivxClient, PrivxError};

pub const ROLE_CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct RoleCache {
    entries: Mutex<HashMap<String, (Option<String>, Instant)>>,
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
            let mut entries = self.entries.lock().expect("role cache lock");
            for name in missing {
                let id = roles.iter().find(|r| r.name == name).map(|r| r.id.clone());
                entries.insert(name.clone(), (id.clone(), now));
                out.insert(name, id);
            }
        }
        Ok(out)
    }
}
