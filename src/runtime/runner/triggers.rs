//! What starts a reconcile, and what objects keep in the stores.
//!
//! [`hash`] covers what a change of which must start a reconcile: the uid (a re-created
//! object), the generation (spec), labels, annotations, finalizers and deletion. A status
//! write changes none of them. [`Changes`] remembers the last hash per object, so a re-list
//! after a watch outage triggers only the objects that changed meanwhile.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;

/// Annotations of Namespaces the operator reads start with this.
const OPERATOR_PREFIX: &str = "privx-operator.dev/";

/// A Namespace keeps its name, uid, version and the operator's annotations only.
pub fn strip_namespace(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        annotations: meta.annotations.take().map(|a| {
            a.into_iter()
                .filter(|(k, _)| k.starts_with(OPERATOR_PREFIX))
                .collect()
        }),
        ..ObjectMeta::default()
    };
}

/// The hash of what must trigger a reconcile when it changes.
pub fn hash<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

/// The hash of what the VaultSecrets read of their Namespace.
pub fn namespace_hash(ns: &PartialObjectMeta<Namespace>) -> u64 {
    let mut h = DefaultHasher::new();
    ns.metadata.uid.hash(&mut h);
    ns.metadata.annotations.hash(&mut h);
    h.finish()
}

/// The last trigger hash per object key. Cheap to clone; clones share the map.
#[derive(Clone, Default)]
pub struct Changes {
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl Changes {
    /// Records `hash` for `key`; whether it differs from the last one (or is the first).
    pub fn changed(&self, key: &str, hash: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(key.to_string(), hash) != Some(hash)
    }

    pub fn forget(&self, key: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Keeps only the keys `keep` says still exist (after a re-list: objects deleted while the
    /// watch was down send no delete event, and would otherwise stay here for good).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| keep(key));
    }

    /// How many objects are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

use crate::controller::vault_secret::store::stored::VsRef;

/// The VaultSecrets pushing from one Secret (their names: a source is in its VaultSecret's
/// namespace), and the Secret's last seen resourceVersion.
#[derive(Default)]
struct Referrers {
    /// Sorted (almost always one).
    objects: Box<[Box<str>]>,
    seen: Option<Box<str>>,
}

/// One namespace of the index.
#[derive(Default)]
struct InNamespace {
    by_source: HashMap<Box<str>, Referrers>,
    /// VaultSecret → its source Secret.
    source_of: HashMap<Box<str>, Box<str>>,
}

/// Kept small (it holds every VaultSecret with a source): names by namespace, no object
/// references (the requests are built from the names when a Secret changes).
#[derive(Default)]
struct Index {
    namespaces: HashMap<Box<str>, InNamespace>,
}

/// Which VaultSecrets push from which Secret: maps the events of the metadata-only watch of
/// all Secrets to reconcile requests without storing any Secret. Cheap to clone.
#[derive(Clone, Default)]
pub struct SourceIndex {
    inner: Arc<Mutex<Index>>,
}

impl SourceIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the source Secret of `vs` (in its namespace), or that it has none.
    pub fn set(&self, vs: &VsRef, source: Option<&str>) {
        let namespace = vs.namespace.as_deref().unwrap_or_default();
        let name = vs.name.as_str();
        let mut index = self.lock();
        let current = index
            .namespaces
            .get(namespace)
            .and_then(|n| n.source_of.get(name));
        if current.map(|s| &**s) == source {
            return;
        }
        Self::unlink(&mut index, namespace, name);
        let Some(source) = source else {
            return;
        };
        if !index.namespaces.contains_key(namespace) {
            index
                .namespaces
                .insert(namespace.into(), InNamespace::default());
        }
        let within = index.namespaces.get_mut(namespace).expect("just inserted");
        let referrers = match within.by_source.get_mut(source) {
            Some(r) => r,
            None => within.by_source.entry(source.into()).or_default(),
        };
        if let Err(at) = referrers.objects.binary_search_by(|k| (**k).cmp(name)) {
            let mut grown = referrers.objects.to_vec();
            grown.insert(at, name.into());
            referrers.objects = grown.into_boxed_slice();
        }
        within.source_of.insert(name.into(), source.into());
    }

    pub fn remove(&self, vs: &VsRef) {
        let namespace = vs.namespace.as_deref().unwrap_or_default();
        Self::unlink(&mut self.lock(), namespace, &vs.name);
    }

    fn unlink(index: &mut Index, namespace: &str, name: &str) {
        let Some(within) = index.namespaces.get_mut(namespace) else {
            return;
        };
        if let Some(old) = within.source_of.remove(name)
            && let Some(referrers) = within.by_source.get_mut(&old)
        {
            referrers.objects = referrers
                .objects
                .iter()
                .filter(|k| &***k != name)
                .cloned()
                .collect();
            if referrers.objects.is_empty() {
                within.by_source.remove(&old);
            }
        }
        if within.source_of.is_empty() {
            index.namespaces.remove(namespace);
        }
    }

    /// The VaultSecrets to reconcile for this event of `secret`: those pushing from it, unless
    /// the event carries the version already seen (a re-list after a watch outage).
    pub fn referrers_if_changed(&self, secret: &PartialObjectMeta<Secret>) -> Vec<VsRef> {
        let (Some(ns), Some(name)) = (&secret.metadata.namespace, &secret.metadata.name) else {
            return Vec::new();
        };
        let mut index = self.lock();
        let Some(referrers) = index
            .namespaces
            .get_mut(ns.as_str())
            .and_then(|n| n.by_source.get_mut(name.as_str()))
        else {
            return Vec::new();
        };
        let version = secret.metadata.resource_version.as_deref();
        let deleted = secret.metadata.deletion_timestamp.is_some();
        if !deleted && version.is_some() && referrers.seen.as_deref() == version {
            return Vec::new();
        }
        referrers.seen = version.map(Into::into);
        referrers
            .objects
            .iter()
            .map(|name| ObjectRef::new(name).within(ns))
            .collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        let index = self.lock();
        index.namespaces.values().map(|n| n.source_of.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            generation: Some(1),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn namespaces_keep_only_the_operator_annotations() {
        let mut m = meta(&[("privx-operator.dev/allowed-names", "a*"), ("other", "1")]);
        m.labels = Some([("l".to_string(), "v".to_string())].into());
        strip_namespace(&mut m);
        assert_eq!(m.labels, None);
        assert_eq!(
            m.annotations.unwrap().keys().collect::<Vec<_>>(),
            ["privx-operator.dev/allowed-names"]
        );
    }

    #[test]
    fn status_and_resource_version_do_not_change_the_hash_spec_and_finalizers_do() {
        let mut vs = Secret {
            metadata: meta(&[]),
            ..Default::default()
        };
        let before = hash(&vs);
        vs.metadata.resource_version = Some("99".into());
        vs.data = Some(Default::default());
        assert_eq!(hash(&vs), before);
        vs.metadata.finalizers = Some(vec!["f".into()]);
        assert_ne!(hash(&vs), before);
        let with_finalizer = hash(&vs);
        vs.metadata.generation = Some(2);
        assert_ne!(hash(&vs), with_finalizer);
        let changes = Changes::default();
        assert!(changes.changed("k", 1));
        assert!(!changes.changed("k", 1));
        assert!(changes.changed("k", 2));
        // Deleted keys go: by a delete event, or by the sweep after a re-list.
        assert!(changes.changed("gone", 1));
        assert!(changes.changed("deleted-while-down", 1));
        changes.forget("gone");
        assert_eq!(changes.len(), 2);
        changes.retain(|key| key == "k");
        assert_eq!(changes.len(), 1);
        assert!(
            changes.changed("deleted-while-down", 1),
            "forgotten: new again"
        );
    }

    #[test]
    fn the_source_index_maps_a_secret_to_its_referrers_once_per_version() {
        let index = SourceIndex::default();
        let vs = ObjectRef::new("db").within("demo");
        index.set(&vs, Some("creds"));
        let secret = |rv: &str| PartialObjectMeta::<Secret> {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("demo".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(index.referrers_if_changed(&secret("1")), vec![vs.clone()]);
        assert!(
            index.referrers_if_changed(&secret("1")).is_empty(),
            "same version"
        );
        assert_eq!(index.referrers_if_changed(&secret("2")), vec![vs.clone()]);
        let second = ObjectRef::new("app").within("demo");
        index.set(&second, Some("creds"));
        assert_eq!(
            index.referrers_if_changed(&secret("3")),
            vec![second.clone(), vs.clone()],
            "both, by name"
        );
        index.remove(&second);
        assert_eq!(index.len(), 1);
        index.set(&vs, Some("other"));
        assert!(
            index.referrers_if_changed(&secret("3")).is_empty(),
            "no longer referenced"
        );
        index.remove(&vs);
        assert_eq!(index.len(), 0);
    }
}
