//! The shared-vault listing that read-only mirrors refresh from (one list request serves many
//! objects instead of one GET each).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use privx_client::{PrivxClient, PrivxError, Secret, SecretLocation};

struct Listing {
    at: Instant,
    by_name: HashMap<String, Secret>,
}

/// The shared secrets as last listed (all pages, 100 items each), shared by the routine
/// refreshes of read-only mirrors: one list request serves 100 objects instead of 100 GETs.
/// One listing at a time (a lock held across the read): concurrent refreshes wait for it.
#[derive(Default)]
pub struct ListPages {
    listing: tokio::sync::Mutex<Option<Listing>>,
}

impl ListPages {
    /// The shared secret `name` with its data from a listing at most `max_age` old (read now
    /// if there is none). `None`: not in the listing, or listed without its data — read it
    /// with a GET.
    pub async fn get(
        &self,
        privx: &PrivxClient,
        name: &str,
        max_age: Duration,
    ) -> Result<Option<Secret>, PrivxError> {
        let mut listing = self.listing.lock().await;
        let fresh = listing.as_ref().is_some_and(|l| l.at.elapsed() <= max_age);
        if !fresh {
            let items = privx.list_secrets(&SecretLocation::Shared).await?;
            *listing = Some(Listing {
                at: Instant::now(),
                by_name: items.into_iter().map(|s| (s.name.clone(), s)).collect(),
            });
        }
        Ok(listing
            .as_ref()
            .and_then(|l| l.by_name.get(name))
            .filter(|s| s.data.is_some())
            .cloned())
    }

    /// Forgets the listing (after a write, so that nobody reads the old data from it).
    pub async fn invalidate(&self) {
        *self.listing.lock().await = None;
    }
}
