//! The VaultSecret controller's in-memory state, kept apart from the code that writes: what
//! the watches deliver (VaultSecrets stored compactly, mirrors as digests), the indexes over
//! them (claims by PrivX target), the refresh queue, the shared-vault listing and the role
//! cache. Filled by the runner's watches and by fetch; must not write to Kubernetes or PrivX
//! (the listing and the role cache only read PrivX).

pub mod claims;
pub mod list_pages;
pub mod refreshes;
pub mod roles;
pub mod stored;
pub mod stored_mirror;
