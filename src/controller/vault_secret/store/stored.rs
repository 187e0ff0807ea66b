//! A VaultSecret as the store keeps it: its metadata, and its spec and status encoded.
//!
//! Decoded, a VaultSecret costs about 1.9 KB in the store even with a one-line spec: the
//! 1.1 KB struct (spec and status are mostly empty options) and some twenty small allocations
//! of the status's strings. Kept as the compact JSON of its spec and status instead, LZ4
//! compressed (one allocation; the two conditions repeat their message and time, the PrivX
//! record its author and times: about 1,030 bytes of JSON become 640), it costs about 1.4 KB
//! less, 14 MB at 10,000 objects. A reconcile decodes its object once (microseconds, against
//! the milliseconds of its round trips); the few fields the runner's triggers read of every
//! object are kept decoded beside it.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::reflector::ObjectRef;
use serde::{Deserialize, Deserializer, Serialize};

use crate::crd::{VaultSecret, VaultSecretSpec, VaultSecretStatus};

/// A reconcile request of the VaultSecret controller.
pub type VsRef = ObjectRef<StoredVaultSecret>;

/// See the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVaultSecret {
    metadata: ObjectMeta,
    /// The JSON of spec and status (LZ4, size prepended), or why the object could not be
    /// decoded.
    body: Result<Box<[u8]>, Box<str>>,
    /// The PasswordPolicy the object generates from.
    policy: Option<Box<str>>,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    spec: &'a VaultSecretSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a VaultSecretStatus>,
}

#[derive(Deserialize)]
struct Body {
    spec: VaultSecretSpec,
    status: Option<VaultSecretStatus>,
}

impl StoredVaultSecret {
    /// The object as the controller reads it.
    pub fn decode(&self) -> DeserializeGuard<VaultSecret> {
        let invalid = |error: String| InvalidObject {
            error,
            metadata: self.metadata.clone(),
        };
        DeserializeGuard(match &self.body {
            Ok(bytes) => lz4_flex::block::decompress_size_prepended(bytes)
                .map_err(|e| format!("stored object: {e}"))
                .and_then(|json| serde_json::from_slice::<Body>(&json).map_err(|e| e.to_string()))
                .map(|body| VaultSecret {
                    metadata: self.metadata.clone(),
                    spec: body.spec,
                    status: body.status,
                })
                .map_err(invalid),
            Err(error) => Err(invalid(error.to_string())),
        })
    }

    /// The PasswordPolicy a valid object generates its data from.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// Whether the object could be decoded when it was watched.
    pub fn is_valid(&self) -> bool {
        self.body.is_ok()
    }
}

impl From<DeserializeGuard<VaultSecret>> for StoredVaultSecret {
    /// Also drops what no controller reads of the metadata (`managedFields`, the
    /// last-applied annotation).
    fn from(guard: DeserializeGuard<VaultSecret>) -> Self {
        match guard.0 {
            Ok(mut vs) => {
                crate::controller::core::strip::strip(&mut vs.metadata);
                let body = BodyRef {
                    spec: &vs.spec,
                    status: vs.status.as_ref(),
                };
                let policy = vs
                    .spec
                    .source
                    .as_ref()
                    .and_then(|s| s.generate.as_ref())
                    .map(|g| g.password_policy_ref.name.as_str().into());
                Self {
                    body: serde_json::to_vec(&body)
                        .map(|json| lz4_flex::block::compress_prepend_size(&json).into())
                        .map_err(|e| e.to_string().into()),
                    metadata: vs.metadata,
                    policy,
                }
            }
            Err(mut invalid) => {
                crate::controller::core::strip::strip(&mut invalid.metadata);
                Self {
                    metadata: invalid.metadata,
                    body: Err(invalid.error.into()),
                    policy: None,
                }
            }
        }
    }
}

impl From<VaultSecret> for StoredVaultSecret {
    fn from(vs: VaultSecret) -> Self {
        DeserializeGuard(Ok(vs)).into()
    }
}

impl<'de> Deserialize<'de> for StoredVaultSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DeserializeGuard::<VaultSecret>::deserialize(deserializer).map(Self::from)
    }
}

impl Resource for StoredVaultSecret {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        VaultSecret::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        VaultSecret::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        VaultSecret::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        VaultSecret::plural(dt)
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
    use serde_json::json;

    fn object(spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"namespace": "ns", "name": "vs", "uid": "u", "resourceVersion": "3", "generation": 2},
            "spec": spec,
            "status": {"observedGeneration": 2, "dataHash": "h", "conditions": [{
                "type": "Ready", "status": "True", "reason": "Synced", "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        })
    }

    #[test]
    fn decodes_to_the_object_it_was_made_of() {
        let json = object(json!({
            "source": {"generate": {"passwordPolicyRef": {"name": "strong"}, "key": "password"}},
            "mirror": {"labels": {"team": "a"}},
        }));
        let stored: StoredVaultSecret = serde_json::from_value(json.clone()).unwrap();
        let direct: VaultSecret = serde_json::from_value(json).unwrap();
        assert!(stored.is_valid());
        assert_eq!(stored.decode().0.unwrap(), direct);
        assert_eq!(stored.policy(), Some("strong"));
        assert_eq!(stored.meta().resource_version.as_deref(), Some("3"));
        assert_eq!(
            StoredVaultSecret::from(direct.clone()).decode().0.unwrap(),
            direct
        );
    }

    #[test]
    fn an_invalid_object_stays_invalid_with_its_error() {
        let json = object(json!({"source": {"secretRef": {"name": 7}}}));
        let stored: StoredVaultSecret = serde_json::from_value(json).unwrap();
        assert!(!stored.is_valid());
        assert_eq!(stored.policy(), None);
        let invalid = stored.decode().0.unwrap_err();
        assert_eq!(invalid.metadata.name.as_deref(), Some("vs"));
        assert!(invalid.error.contains("integer `7`"), "{}", invalid.error);
    }
}
