//! Mirrored Secrets as the operator keeps them: what the plan reads of each, and no more.
//!
//! A whole `k8s_openapi` Secret costs about 2.1 KB in a store even with one data key (the
//! struct, and a B-tree node of about 540 bytes each for labels, annotations and data, however
//! few entries they hold), and a kube `Store` adds a 360-byte `ObjectMeta` and a four-string
//! key per object. With 10,000 mirrors that was about 24 MB. So mirrors are not kept in a kube
//! store at all: the watch decodes each event into a [`WatchedMirror`] (the whole Secret exists
//! only while one event is decoded), whose [`StoredMirror`] — type, the VaultSecret owners,
//! labels and annotations as boxed pairs (with whether the operator's field manager applied
//! them), and each data key with a keyed digest of its value (HMAC-SHA-256 under a random key of
//! this process, never written anywhere: a digest cannot be checked against guessed values
//! without the key, so a heap dump or a stray print of one gives nothing away) — goes into the
//! [`MirrorStore`], keyed by namespace and name. The plan can tell from it whether the mirror is
//! what it would write without keeping the data (nor a secret value) in memory. Its `Debug`
//! shows the data keys only.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ManagedFieldsEntry, ObjectMeta, OwnerReference,
};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use serde::{Deserialize, Deserializer};
use sha2::Sha256;

use super::stored::VsRef;
use crate::controller::core::FIELD_MANAGER;
use crate::controller::vault_secret::VAULT_SECRET_LABEL;
use crate::crd::VaultSecret;

/// The keyed digest of one data value (HMAC-SHA-256 under [`DIGEST_KEY`]).
pub type ValueDigest = [u8; 32];

/// The key of the value digests: random per process, only ever compared in memory.
static DIGEST_KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
});

fn digest(value: &[u8]) -> ValueDigest {
    let mut mac = Hmac::<Sha256>::new_from_slice(&*DIGEST_KEY).expect("HMAC takes any key length");
    mac.update(value);
    mac.finalize().into_bytes().into()
}

/// A label or annotation, and whether the operator's field manager applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pair {
    key: Box<str>,
    value: Box<str>,
    owned: bool,
}

/// See the module documentation.
#[derive(Clone, Default, PartialEq)]
pub struct StoredMirror {
    type_: Option<Box<str>>,
    /// The VaultSecrets among the owners: name and uid.
    owners: Box<[(Box<str>, Box<str>)]>,
    labels: Box<[Pair]>,
    annotations: Box<[Pair]>,
    /// Sorted by key.
    data: Box<[(Box<str>, ValueDigest)]>,
    has_string_data: bool,
    immutable: bool,
    /// The owner references of other kinds (an `ExternalSecret`, a `VaultStaticSecret`...),
    /// kept whole: a takeover replaces the controller among them and keeps the rest. Mirrors
    /// have none, so this costs an empty slice.
    other_owners: Box<[OwnerReference]>,
}

/// Keys only: no value digest is printed.
impl std::fmt::Debug for StoredMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredMirror")
            .field("type_", &self.type_)
            .field("owners", &self.owners)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("data_keys", &self.keys().collect::<Vec<_>>())
            .field("has_string_data", &self.has_string_data)
            .finish()
    }
}

fn find<'a>(pairs: &'a [Pair], key: &str) -> Option<&'a str> {
    pairs.iter().find(|p| &*p.key == key).map(|p| &*p.value)
}

fn has_all(pairs: &[Pair], want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| find(pairs, k) == Some(v.as_str()))
}

fn drops_owned(pairs: &[Pair], want: &BTreeMap<String, String>) -> bool {
    pairs.iter().any(|p| p.owned && !want.contains_key(&*p.key))
}

impl StoredMirror {
    /// The Secret type (`Opaque` when unset).
    pub fn type_(&self) -> &str {
        self.type_.as_deref().unwrap_or("Opaque")
    }

    /// Whether the VaultSecret with this uid is among the owners.
    pub fn owned_by(&self, uid: &str) -> bool {
        self.owners.iter().any(|(_, u)| &**u == uid)
    }

    /// Whether a VaultSecret other than the one with this uid is among the owners.
    pub fn owned_by_another(&self, uid: &str) -> bool {
        self.owners.iter().any(|(_, u)| &**u != uid)
    }

    /// The owner references of other kinds than VaultSecret.
    pub fn other_owners(&self) -> &[OwnerReference] {
        &self.other_owners
    }

    /// Whether the Secret is immutable.
    pub fn immutable(&self) -> bool {
        self.immutable
    }

    /// Whether the data holds every key of `bytes` with its value (other keys aside).
    pub fn data_contains(&self, bytes: &BTreeMap<String, Vec<u8>>) -> bool {
        bytes.iter().all(|(key, value)| {
            self.data
                .binary_search_by(|(k, _)| (**k).cmp(key.as_str()))
                .is_ok_and(|i| self.data[i].1 == digest(value))
        })
    }

    /// The names of the VaultSecrets among the owners.
    pub fn owner_names(&self) -> impl Iterator<Item = &str> {
        self.owners.iter().map(|(name, _)| &**name)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.labels, key)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }

    /// Whether every label of `want` is present with its value.
    pub fn has_labels(&self, want: &BTreeMap<String, String>) -> bool {
        has_all(&self.labels, want)
    }

    /// Whether every annotation of `want` is present with its value.
    pub fn has_annotations(&self, want: &BTreeMap<String, String>) -> bool {
        has_all(&self.annotations, want)
    }

    /// Whether a label the operator applied before is not in `want` (applying `want` removes
    /// it: field ownership); others' labels stay.
    pub fn drops_owned_labels(&self, want: &BTreeMap<String, String>) -> bool {
        drops_owned(&self.labels, want)
    }

    /// As [`Self::drops_owned_labels`], for annotations.
    pub fn drops_owned_annotations(&self, want: &BTreeMap<String, String>) -> bool {
        drops_owned(&self.annotations, want)
    }

    /// Whether the Secret has `stringData` (the API server folds it into data; a Secret that
    /// still shows it was not written by server-side apply of ours).
    pub fn has_string_data(&self) -> bool {
        self.has_string_data
    }

    /// Whether the data is exactly `bytes` (the same keys, each value the same).
    pub fn data_is(&self, bytes: &BTreeMap<String, Vec<u8>>) -> bool {
        self.data.len() == bytes.len()
            && self
                .data
                .iter()
                .zip(bytes)
                .all(|((k, d), (key, value))| &**k == key && *d == digest(value))
    }

    /// The data keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.iter().map(|(k, _)| &**k)
    }
}

/// The keys under `metadata.<field>` (`f:labels`, `f:annotations`) that the operator's field
/// manager owns by server-side apply.
fn owned_keys<'a>(managed: &'a [ManagedFieldsEntry], field: &str) -> Vec<&'a str> {
    managed
        .iter()
        .filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get(field)?.as_object())
        .flat_map(|keys| keys.keys())
        .filter_map(|k| k.strip_prefix("f:"))
        .collect()
}

fn pairs(map: Option<BTreeMap<String, String>>, owned: &[&str]) -> Box<[Pair]> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(key, value)| Pair {
            owned: owned.contains(&key.as_str()),
            key: key.into(),
            value: value.into(),
        })
        .collect()
}

/// Splits a Secret into the metadata a watch needs (name, namespace, uid, resourceVersion,
/// deletion) and what the plan reads.
fn split(secret: Secret) -> (ObjectMeta, StoredMirror) {
    let Secret {
        metadata,
        data,
        string_data,
        type_,
        immutable,
    } = secret;
    let managed = metadata.managed_fields.unwrap_or_default();
    let owned_labels = owned_keys(&managed, "f:labels");
    let owned_annotations = owned_keys(&managed, "f:annotations");
    let kind = VaultSecret::kind(&());
    let api_version = VaultSecret::api_version(&());
    let (ours, others): (Vec<_>, Vec<_>) = metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .partition(|r| r.kind == kind && r.api_version == api_version);
    let owners = ours
        .into_iter()
        .map(|r| (r.name.into(), r.uid.into()))
        .collect();
    let stored = StoredMirror {
        type_: type_.map(Into::into),
        owners,
        labels: pairs(metadata.labels, &owned_labels),
        annotations: pairs(metadata.annotations, &owned_annotations),
        data: data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into(), digest(&v.0)))
            .collect(),
        has_string_data: string_data.is_some_and(|s| !s.is_empty()),
        immutable: immutable == Some(true),
        other_owners: others.into(),
    };
    let metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        resource_version: metadata.resource_version,
        deletion_timestamp: metadata.deletion_timestamp,
        ..Default::default()
    };
    (metadata, stored)
}

impl From<Secret> for StoredMirror {
    fn from(secret: Secret) -> Self {
        split(secret).1
    }
}

/// One mirrored Secret as its watch event carries it: the metadata the watch and the echo check
/// need, and the part that is stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchedMirror {
    pub metadata: ObjectMeta,
    pub mirror: Arc<StoredMirror>,
}

impl WatchedMirror {
    /// The VaultSecrets that own this Secret, as objects to reconcile: its VaultSecret owner
    /// references, and the VaultSecret its label names (mirrors without an owner reference:
    /// `Orphan` and `Merge`).
    pub fn owners(&self) -> Vec<VsRef> {
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        let mut names: Vec<&str> = self.mirror.owner_names().collect();
        if let Some(labelled) = self.mirror.label(VAULT_SECRET_LABEL)
            && !names.contains(&labelled)
        {
            names.push(labelled);
        }
        names
            .into_iter()
            .map(|name| ObjectRef::new(name).within(namespace))
            .collect()
    }
}

impl From<Secret> for WatchedMirror {
    fn from(secret: Secret) -> Self {
        let (metadata, mirror) = split(secret);
        Self {
            metadata,
            mirror: Arc::new(mirror),
        }
    }
}

impl<'de> Deserialize<'de> for WatchedMirror {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Secret::deserialize(deserializer).map(Self::from)
    }
}

impl Resource for WatchedMirror {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

type ByNamespace = HashMap<Box<str>, HashMap<Box<str>, Arc<StoredMirror>>>;

/// The mirrored Secrets by namespace and name, kept from their watch events as a reflector
/// keeps a store: a list (`Init` … `InitDone`) is gathered aside and replaces the whole at its
/// end, so that readers never see a half list.
#[derive(Clone, Default)]
pub struct MirrorStore {
    maps: Arc<RwLock<Maps>>,
}

#[derive(Default)]
struct Maps {
    live: ByNamespace,
    listing: Option<ByNamespace>,
}

fn insert(maps: &mut ByNamespace, mirror: &WatchedMirror) {
    let (Some(namespace), Some(name)) = (&mirror.metadata.namespace, &mirror.metadata.name) else {
        return;
    };
    match maps.get_mut(namespace.as_str()) {
        Some(names) => {
            names.insert(name.as_str().into(), mirror.mirror.clone());
        }
        None => {
            let names = HashMap::from([(name.as_str().into(), mirror.mirror.clone())]);
            maps.insert(namespace.as_str().into(), names);
        }
    }
}

impl MirrorStore {
    /// The mirrored Secret `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<StoredMirror>> {
        self.read().live.get(namespace)?.get(name).cloned()
    }

    /// Applies one watch event.
    pub fn apply(&self, event: &Event<WatchedMirror>) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Init => maps.listing = Some(ByNamespace::default()),
            Event::InitApply(m) => insert(maps.listing.get_or_insert_default(), m),
            Event::InitDone => {
                if let Some(listed) = maps.listing.take() {
                    maps.live = listed;
                }
            }
            Event::Apply(m) => insert(&mut maps.live, m),
            Event::Delete(m) => {
                let (Some(namespace), Some(name)) = (&m.metadata.namespace, &m.metadata.name)
                else {
                    return;
                };
                if let Some(names) = maps.live.get_mut(namespace.as_str()) {
                    names.remove(name.as_str());
                    if names.is_empty() {
                        maps.live.remove(namespace.as_str());
                    }
                }
            }
        }
    }

    /// The mirrors of one namespace, as watch objects (for the namespace merge's re-list).
    pub fn in_namespace(&self, namespace: &str) -> Vec<WatchedMirror> {
        self.read()
            .live
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(name, mirror)| WatchedMirror {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    ..Default::default()
                },
                mirror: mirror.clone(),
            })
            .collect()
    }

    /// How many mirrors the store holds.
    pub fn len(&self) -> usize {
        self.read().live.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": "m", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"a": "1", "mine": "2"},
                "annotations": {"h": "x"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "X", "name": "o", "uid": "other-uid"},
                    {"apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret", "name": "vs", "uid": "owner-uid", "controller": true},
                ],
                "managedFields": [{
                    "manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:mine": {}, "f:gone": {}}, "f:annotations": {"f:h": {}}}},
                }],
            },
            "type": "Opaque",
            "data": {"password": "czNjcmV0", "user": "YWRtaW4="},
        }))
        .unwrap()
    }

    #[test]
    fn keeps_what_the_plan_reads_and_digests_the_data() {
        let watched: WatchedMirror =
            serde_json::from_value(serde_json::to_value(secret()).unwrap()).unwrap();
        assert_eq!(watched, WatchedMirror::from(secret()));
        assert_eq!(watched.metadata.name.as_deref(), Some("m"));
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("7"));
        assert!(watched.metadata.labels.is_none() && watched.metadata.managed_fields.is_none());
        assert_eq!(watched.owners(), [ObjectRef::new("vs").within("ns")]);
        let stored = &watched.mirror;
        assert!(stored.owned_by("owner-uid"));
        assert!(
            !stored.owned_by("other-uid"),
            "only VaultSecret owners count"
        );
        assert_eq!(stored.label("mine"), Some("2"));
        assert_eq!(stored.annotation("h"), Some("x"));
        assert_eq!(stored.type_(), "Opaque");
        let want = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(stored.has_labels(&want(&[("mine", "2")])));
        assert!(!stored.has_labels(&want(&[("mine", "3")])), "another value");
        assert!(
            !stored.drops_owned_labels(&want(&[("mine", "2")])),
            "`a` is someone else's; `gone` is not present"
        );
        assert!(
            stored.drops_owned_labels(&want(&[])),
            "`mine` was applied by us"
        );
        assert!(stored.drops_owned_annotations(&want(&[])));
        assert!(!stored.drops_owned_annotations(&want(&[("h", "y")])));
        assert_eq!(stored.keys().collect::<Vec<_>>(), ["password", "user"]);
        let mut bytes = BTreeMap::from([
            ("password".to_string(), b"s3cret".to_vec()),
            ("user".to_string(), b"admin".to_vec()),
        ]);
        assert!(stored.data_is(&bytes));
        bytes.insert("user".into(), b"root".to_vec());
        assert!(!stored.data_is(&bytes), "another value");
        bytes.remove("user");
        assert!(!stored.data_is(&bytes), "a key fewer");
        assert!(
            !format!("{watched:?}").contains("s3cret"),
            "no value in the stored form"
        );
    }

    /// Issue 23 §2: the value digests are keyed (not the SHA-256 anyone can compute from a
    /// guessed value), and `Debug` prints the data keys only, never a digest.
    #[test]
    fn value_digests_are_keyed_and_never_printed() {
        use sha2::Digest;
        let stored = WatchedMirror::from(secret()).mirror;
        let (key, stored_digest) = &stored.data[0];
        assert_eq!(&**key, "password");
        let unkeyed: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert_ne!(stored_digest, &unkeyed, "an unkeyed SHA-256 of the value");
        let printed = format!("{stored:?}");
        assert!(printed.contains("password"), "{printed}");
        for digest in [stored_digest, &unkeyed] {
            let bytes = format!("{:?}", &digest[..4]);
            let bytes = bytes.trim_matches(|c| c == '[' || c == ']');
            assert!(!printed.contains(bytes), "a digest printed: {printed}");
        }
        assert!(!printed.contains("s3cret") && !printed.contains("czNjcmV0"));
    }

    fn watched(ns: &str, name: &str, key: &str) -> WatchedMirror {
        let mut s = secret();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.data = Some(BTreeMap::from([(key.into(), Default::default())]));
        s.into()
    }

    fn keys(store: &MirrorStore, ns: &str, name: &str) -> Option<Vec<String>> {
        store
            .get(ns, name)
            .map(|m| m.keys().map(String::from).collect())
    }

    #[test]
    fn the_store_follows_events_and_swaps_a_list_in_whole() {
        let store = MirrorStore::default();
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(watched("a", "1", "k")));
        assert_eq!(keys(&store, "a", "1"), None, "not before the list is done");
        store.apply(&Event::InitDone);
        assert_eq!(keys(&store, "a", "1"), Some(vec!["k".into()]));

        store.apply(&Event::Apply(watched("a", "1", "k2")));
        store.apply(&Event::Apply(watched("b", "2", "k")));
        assert_eq!(keys(&store, "a", "1"), Some(vec!["k2".into()]));
        assert_eq!(store.len(), 2);
        assert_eq!(store.in_namespace("b").len(), 1);

        // A re-list that no longer has a/1: the old view stays until it is done.
        store.apply(&Event::Init);
        store.apply(&Event::InitApply(watched("b", "2", "k")));
        assert_eq!(store.len(), 2);
        store.apply(&Event::InitDone);
        assert_eq!(keys(&store, "a", "1"), None);
        assert_eq!(store.len(), 1);

        store.apply(&Event::Delete(watched("b", "2", "k")));
        assert!(store.is_empty());
        assert!(store.in_namespace("b").is_empty());
    }
}
