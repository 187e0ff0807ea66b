//! A mirrored Secret as the mirror store keeps it: what the plan reads of it, and no more.
//!
//! A whole `k8s_openapi` Secret costs about 2.1 KB in the store even with one data key: the
//! struct, and a B-tree node of about 540 bytes each for labels, annotations and data, however
//! few entries they hold. With 10,000 mirrors that is about 21 MB. This type is deserialised
//! straight from the watch (the whole Secret exists only while one event is decoded): the
//! metadata the store and the triggers need, the owners' uids, the type, labels and
//! annotations as pairs, and each data key with the SHA-256 digest of its value, so that the
//! plan can tell whether the data is what it would write without keeping the data (nor a
//! secret value) in memory.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::controller::FIELD_MANAGER;

/// The SHA-256 digest of one data value.
pub type ValueDigest = [u8; 32];

fn digest(value: &[u8]) -> ValueDigest {
    Sha256::digest(value).into()
}

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredMirror {
    /// Name, namespace, uid, resourceVersion, deletion; no labels, annotations, owners or
    /// managed fields (they are below).
    pub metadata: ObjectMeta,
    pub type_: Option<String>,
    pub owner_uids: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Sorted by key.
    pub data: Vec<(String, ValueDigest)>,
    pub has_string_data: bool,
    /// Label and annotation keys that the operator's field manager applied and that are still
    /// present (from `managedFields`): what it stops declaring, it removes.
    pub owned_labels: Vec<String>,
    pub owned_annotations: Vec<String>,
}

impl StoredMirror {
    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.labels, key)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }

    /// Whether the data is exactly `bytes` (the same keys, each value the same).
    pub fn data_is(&self, bytes: &BTreeMap<String, Vec<u8>>) -> bool {
        self.data.len() == bytes.len()
            && self
                .data
                .iter()
                .zip(bytes)
                .all(|((k, d), (key, value))| k == key && *d == digest(value))
    }

    /// The data keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.iter().map(|(k, _)| k.as_str())
    }
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The keys under `metadata.<field>` (`f:labels`, `f:annotations`) that the operator's field
/// manager owns by server-side apply, and that `present` holds.
fn owned_keys(
    managed: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
    field: &str,
    present: &BTreeMap<String, String>,
) -> Vec<String> {
    managed
        .iter()
        .filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get(field)?.as_object())
        .flat_map(|keys| keys.keys())
        .filter_map(|k| k.strip_prefix("f:"))
        .filter(|k| present.contains_key(*k))
        .map(String::from)
        .collect()
}

impl From<Secret> for StoredMirror {
    fn from(secret: Secret) -> Self {
        let Secret {
            mut metadata,
            data,
            string_data,
            type_,
            ..
        } = secret;
        let labels = metadata.labels.take().unwrap_or_default();
        let annotations = metadata.annotations.take().unwrap_or_default();
        let managed = metadata.managed_fields.take().unwrap_or_default();
        let owned_labels = owned_keys(&managed, "f:labels", &labels);
        let owned_annotations = owned_keys(&managed, "f:annotations", &annotations);
        let owner_uids = metadata
            .owner_references
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.uid)
            .collect();
        metadata.finalizers = None;
        Self {
            metadata,
            type_,
            owner_uids,
            labels: labels.into_iter().collect(),
            annotations: annotations.into_iter().collect(),
            data: data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, digest(&v.0)))
                .collect(),
            has_string_data: string_data.is_some_and(|s| !s.is_empty()),
            owned_labels,
            owned_annotations,
        }
    }
}

impl<'de> Deserialize<'de> for StoredMirror {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Secret::deserialize(deserializer).map(Self::from)
    }
}

impl kube::Resource for StoredMirror {
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
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "owner-uid"}],
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
        let stored: StoredMirror =
            serde_json::from_value(serde_json::to_value(secret()).unwrap()).unwrap();
        assert_eq!(stored, StoredMirror::from(secret()));
        assert_eq!(stored.metadata.name.as_deref(), Some("m"));
        assert_eq!(stored.metadata.resource_version.as_deref(), Some("7"));
        assert!(stored.metadata.labels.is_none() && stored.metadata.managed_fields.is_none());
        assert_eq!(stored.owner_uids, ["owner-uid"]);
        assert_eq!(stored.label("mine"), Some("2"));
        assert_eq!(stored.annotation("h"), Some("x"));
        assert_eq!(
            stored.owned_labels,
            ["mine"],
            "present and applied by the operator"
        );
        assert_eq!(stored.owned_annotations, ["h"]);
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
            !format!("{stored:?}").contains("s3cret"),
            "no value in the stored form"
        );
    }
}
