//! Which VaultSecrets name which PrivX target: the index the claim order reads, so that a
//! reconcile finds the other claimants of its target without rendering the target of every
//! VaultSecret in the store (that scan made each reconcile O(N), a burst of N objects O(N²)).
//!
//! The VaultSecret reflector keeps it in step with the store: every applied object is
//! [`ClaimIndex::set`] right after the store has it, every deleted one [`ClaimIndex::remove`]d.
//! Readers take the keys from here and the objects from the store, and check the target again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use kube::core::DeserializeGuard;

use crate::controller::vault_secret::plan::Target;
use crate::controller::vault_secret::plan::tenancy::NameTemplate;
use crate::controller::vault_secret::{key_of, target_of};
use crate::crd::VaultSecret;

/// Object keys (`namespace/name`) by the PrivX target they name. Invalid objects name none.
///
/// Kept small (it holds every object): targets are kept as a digest (keyed per process), so a
/// target's name is not stored twice; a digest that two targets share only adds a candidate,
/// which the reader drops when it checks the target.
#[derive(Default)]
pub struct ClaimIndex {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    digests: RandomState,
    /// Sorted keys (almost always one: a second claimant is a conflict).
    by_target: HashMap<u64, Box<[Box<str>]>>,
    by_key: HashMap<Box<str>, u64>,
    /// The read-only objects of the shared vault (what the shared listing would serve).
    read_only_shared: std::collections::HashSet<Box<str>>,
}

impl Inner {
    fn digest(&self, target: &Target) -> u64 {
        self.digests.hash_one(target)
    }

    fn remove(&mut self, key: &str) {
        self.read_only_shared.remove(key);
        let Some(old) = self.by_key.remove(key) else {
            return;
        };
        if let Some(keys) = self.by_target.get_mut(&old) {
            let rest: Box<[Box<str>]> = keys.iter().filter(|k| &***k != key).cloned().collect();
            if rest.is_empty() {
                self.by_target.remove(&old);
            } else {
                *keys = rest;
            }
        }
    }
}

impl ClaimIndex {
    pub fn set(&self, guard: &DeserializeGuard<VaultSecret>, template: &NameTemplate) {
        let key = key_of(guard);
        let mut inner = self.inner.lock().expect("claim index lock");
        let digest = guard
            .0
            .as_ref()
            .ok()
            .map(|vs| inner.digest(&target_of(vs, template)));
        let read_only_shared = guard
            .0
            .as_ref()
            .is_ok_and(|vs| vs.spec.source.is_none() && vs.spec.owner.is_none());
        if inner.by_key.get(key.as_str()) == digest.as_ref() {
            if read_only_shared {
                inner.read_only_shared.insert(key.as_str().into());
            } else {
                inner.read_only_shared.remove(key.as_str());
            }
            return;
        }
        inner.remove(&key);
        if read_only_shared && digest.is_some() {
            inner.read_only_shared.insert(key.as_str().into());
        }
        if let Some(digest) = digest {
            let keys = inner.by_target.entry(digest).or_default();
            if let Err(at) = keys.binary_search_by(|k| (**k).cmp(key.as_str())) {
                let mut grown = keys.to_vec();
                grown.insert(at, key.as_str().into());
                *keys = grown.into_boxed_slice();
            }
            inner.by_key.insert(key.into_boxed_str(), digest);
        }
    }

    pub fn remove(&self, key: &str) {
        self.inner.lock().expect("claim index lock").remove(key);
    }

    /// How many valid read-only objects name a shared secret.
    pub fn read_only_shared(&self) -> usize {
        self.inner
            .lock()
            .expect("claim index lock")
            .read_only_shared
            .len()
    }

    /// Whether some object may name the shared secret `name` (a digest shared with another
    /// target may say yes; never no for a claimed one).
    pub fn claims_shared(&self, name: &str) -> bool {
        let inner = self.inner.lock().expect("claim index lock");
        let target = Target {
            location: privx_client::SecretLocation::Shared,
            name: name.to_string(),
        };
        inner.by_target.contains_key(&inner.digest(&target))
    }

    /// The keys of the objects that may name `target` (check each object's target).
    pub fn naming(&self, target: &Target) -> Vec<String> {
        let inner = self.inner.lock().expect("claim index lock");
        inner
            .by_target
            .get(&inner.digest(target))
            .map(|keys| keys.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use privx_client::SecretLocation;
    use serde_json::json;

    fn vs(ns: &str, name: &str, spec: serde_json::Value) -> DeserializeGuard<VaultSecret> {
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"namespace": ns, "name": name}, "spec": spec,
        }))
        .unwrap()))
    }

    fn shared(name: &str) -> Target {
        Target {
            location: SecretLocation::Shared,
            name: name.into(),
        }
    }

    #[test]
    fn follows_each_object_to_its_current_target_and_forgets_removed_ones() {
        let index = ClaimIndex::default();
        let template = NameTemplate::default();
        index.set(&vs("a", "one", json!({"name": "x"})), &template);
        index.set(&vs("b", "two", json!({"name": "x"})), &template);
        index.set(&vs("a", "three", json!({"name": "y"})), &template);
        assert_eq!(index.naming(&shared("x")), vec!["a/one", "b/two"]);

        // A changed spec.name moves the object; the old target no longer lists it.
        index.set(&vs("b", "two", json!({"name": "y"})), &template);
        assert_eq!(index.naming(&shared("x")), vec!["a/one"]);
        assert_eq!(index.naming(&shared("y")), vec!["a/three", "b/two"]);

        // The same target for another owner is another target.
        index.set(
            &vs("a", "one", json!({"name": "x", "owner": {"userId": "u1"}})),
            &template,
        );
        assert!(index.naming(&shared("x")).is_empty());

        // All three read only (no source) and, but for the personal one, shared.
        assert_eq!(index.read_only_shared(), 2);
        assert!(index.claims_shared("y") && !index.claims_shared("x"));

        index.remove("a/three");
        index.remove("b/two");
        assert!(index.naming(&shared("y")).is_empty());
        assert_eq!(index.inner.lock().unwrap().by_key.len(), 1);
        assert_eq!(index.read_only_shared(), 0);
        // A source makes an object a writer, not a reader of the listing.
        index.set(&vs("a", "four", json!({"name": "z"})), &template);
        assert_eq!(index.read_only_shared(), 1);
        index.set(
            &vs(
                "a",
                "four",
                json!({"name": "z", "source": {"secretRef": {"name": "s"}}}),
            ),
            &template,
        );
        assert_eq!(index.read_only_shared(), 0);
    }

    #[test]
    fn an_object_that_no_longer_parses_names_no_target() {
        let index = ClaimIndex::default();
        let template = NameTemplate::default();
        index.set(&vs("a", "one", json!({"name": "x"})), &template);
        let broken: DeserializeGuard<VaultSecret> = serde_json::from_value(json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"namespace": "a", "name": "one"}, "spec": {"name": 5},
        }))
        .unwrap();
        assert!(broken.0.is_err());
        index.set(&broken, &template);
        assert!(index.naming(&shared("x")).is_empty());
        assert!(index.inner.lock().unwrap().by_key.is_empty());
    }
}
