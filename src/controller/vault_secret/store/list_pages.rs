//! The shared-vault listing that read-only mirrors refresh from (one list request serves many
//! objects instead of one GET each).
//!
//! - **Only what is claimed is kept**: of a listing, only the secrets some VaultSecret names
//!   (the caller's `keep`) are held, with their data; the rest of the vault is dropped as the
//!   pages are read.
//! - **Single-flight, no lock across I/O**: concurrent refreshes share one listing under way (a
//!   `OnceCell` they all await); the state lock is held only to look and to install.
//! - **Writes never wait**: [`ListPages::invalidate`] takes the state lock for an instant and
//!   bumps a generation; a listing started before a write is never installed after it.
//! - **Listed only when cheaper**: a listing costs one request per 100 shared secrets (as many
//!   as the last listing took), reading each object one GET each; a new listing is made only
//!   when the read-only shared objects outnumber its pages. Before the first listing its price
//!   is unknown and taken as one page: the first listing is the probe that measures it. A
//!   listing that is fresh, or under way, costs nothing more and is always used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use privx_client::{PrivxClient, PrivxError, Secret, SecretLocation};

/// PrivX's list page (the client asks for its maximum).
const PAGE: usize = 100;

struct Listing {
    at: Instant,
    /// The claimed secrets listed with their data.
    by_name: HashMap<String, Secret>,
}

/// A listing under way, awaited by every refresh that wants it.
struct Pending {
    generation: u64,
    done: tokio::sync::OnceCell<Option<Arc<Listing>>>,
}

#[derive(Default)]
struct State {
    listing: Option<Arc<Listing>>,
    pending: Option<Arc<Pending>>,
    /// Bumped by every write: a listing of an older generation is not installed.
    generation: u64,
    /// Requests (pages) the last listing took; `None`: never listed.
    last_pages: Option<usize>,
}

/// See the module documentation.
#[derive(Default)]
pub struct ListPages {
    state: Mutex<State>,
}

impl ListPages {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared secret `name` with its data from a listing at most `max_age` old (a listing
    /// under way is awaited, not repeated; a new one is made only if cheaper than `readers`
    /// GETs, one per read-only shared object). Only secrets `keep` accepts are held. `None`:
    /// not listed now (dearer than GETs), not in the listing, listed without its data, or a
    /// listing this caller did not start failed — read it with a GET.
    pub async fn get(
        &self,
        privx: &PrivxClient,
        name: &str,
        max_age: Duration,
        readers: usize,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Option<Secret>, PrivxError> {
        let pending = {
            let mut state = self.state();
            if let Some(listing) = &state.listing
                && listing.at.elapsed() <= max_age
            {
                return Ok(listing.by_name.get(name).cloned());
            }
            match &state.pending {
                Some(p) if p.generation == state.generation => p.clone(),
                _ if readers <= state.last_pages.unwrap_or(1) => return Ok(None),
                _ => {
                    let p = Arc::new(Pending {
                        generation: state.generation,
                        done: tokio::sync::OnceCell::new(),
                    });
                    state.pending = Some(p.clone());
                    p
                }
            }
        };
        let mut failure = None;
        let listing = pending
            .done
            .get_or_init(|| async {
                match privx.list_secrets(&SecretLocation::Shared).await {
                    Ok(items) => {
                        let pages = items.len().div_ceil(PAGE).max(1);
                        let by_name = items
                            .into_iter()
                            .filter(|s| s.data.is_some() && keep(&s.name))
                            .map(|s| (s.name.clone(), s))
                            .collect();
                        self.state().last_pages = Some(pages);
                        Some(Arc::new(Listing {
                            at: Instant::now(),
                            by_name,
                        }))
                    }
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                }
            })
            .await
            .clone();
        {
            let mut state = self.state();
            if state
                .pending
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, &pending))
            {
                state.pending = None;
                if pending.generation == state.generation
                    && let Some(listing) = &listing
                {
                    state.listing = Some(listing.clone());
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(listing.and_then(|l| l.by_name.get(name).cloned()))
    }

    /// Forgets the listing (after a write, so that nobody reads the old data from it); a
    /// listing under way is not installed. Never waits for a listing.
    pub fn invalidate(&self) {
        let mut state = self.state();
        state.listing = None;
        state.generation += 1;
    }

    /// How many secrets the listing holds (for tests and benchmarks of its memory).
    pub fn held(&self) -> usize {
        self.state().listing.as_ref().map_or(0, |l| l.by_name.len())
    }

    /// The bytes of names and data the listing holds (an estimate of its memory).
    pub fn held_bytes(&self) -> usize {
        self.state().listing.as_ref().map_or(0, |l| {
            l.by_name
                .values()
                .map(|s| {
                    s.name.len()
                        + s.data
                            .as_ref()
                            .map_or(0, |d| serde_json::to_vec(&d.0).map_or(0, |v| v.len()))
                })
                .sum()
        })
    }
}
