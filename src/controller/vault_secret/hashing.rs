//! The keyed hash of synced data (HMAC-SHA256 with a key the operator keeps in a Secret in its
//! own namespace). The hash shows that data changed without revealing it; the key prevents
//! guessing low-entropy values from the hash.
//!
//! Every hash names the key it was made with: `hmac-sha256:<key id>:<hex>`, the key id being the
//! first 8 hex digits of a SHA-256 of the key under a fixed label (it identifies the key without
//! revealing anything usable about it). A hash made with another key, or an old one without a
//! key id, says nothing about the data: callers compare the data itself before acting on it (see
//! `vault_secret::plan::restarts`), so a new key is never a restart storm.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use sha2::Sha256;

use super::Error;

/// The key of the data hashes. `Debug` never shows it.
#[derive(Clone)]
pub struct HmacKey(Vec<u8>);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

const KEY_FIELD: &str = "key";

/// The key id a recorded hash names; `None` for old hashes made before hashes carried one.
pub fn key_id_of(hash: &str) -> Option<&str> {
    let rest = hash.strip_prefix("hmac-sha256:")?;
    let (id, hex) = rest.split_once(':')?;
    (id.len() == 8 && !hex.is_empty()).then_some(id)
}

impl HmacKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// A fresh random 32-byte key.
    pub fn random() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The key id: 8 hex digits of SHA-256(label || key). Never the key, nor a MAC made with it.
    pub fn id(&self) -> String {
        use sha2::Digest;
        let mut digest = Sha256::new();
        digest.update(b"privx-operator hmac key id\0");
        digest.update(&self.0);
        digest.finalize()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `hash` was made with this key (it names this key's id). Old hashes without a
    /// key id count as made with another key.
    pub fn made(&self, hash: &str) -> bool {
        key_id_of(hash) == Some(self.id().as_str())
    }

    /// `hmac-sha256:<key id>:<hex>` of a canonical encoding of the data (sorted keys,
    /// length-prefixed).
    pub fn hash(&self, data: &BTreeMap<String, Vec<u8>>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for (k, v) in data {
            mac.update(&(k.len() as u64).to_be_bytes());
            mac.update(k.as_bytes());
            mac.update(&(v.len() as u64).to_be_bytes());
            mac.update(v);
        }
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac-sha256:{}:{hex}", self.id())
    }

    /// Reads the key from `namespace/name`, creating the Secret with a random key when absent.
    /// Never overwrites an existing Secret; two replicas racing both end up with the winner's key.
    pub async fn load_or_create(
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Self, Error> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for _ in 0..3 {
            if let Some(secret) = api.get_opt(name).await.map_err(Error::kube(format!(
                "get HMAC key Secret {namespace}/{name}"
            )))? {
                let key = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY_FIELD))
                    .map(|b| b.0.clone())
                    .filter(|k| k.len() >= 16)
                    .ok_or_else(|| {
                        Error::Blocked(format!(
                            "Secret {namespace}/{name} has no usable '{KEY_FIELD}' (at least 16 bytes); delete it to have a new key generated"
                        ))
                    })?;
                return Ok(Self(key));
            }
            let key = Self::random();
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(BTreeMap::from([(
                        super::MANAGED_BY_LABEL.to_string(),
                        super::MANAGED_BY_VALUE.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(
                    KEY_FIELD.to_string(),
                    ByteString(key.0.clone()),
                )])),
                type_: Some("Opaque".to_string()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => return Ok(key),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => {
                    return Err(Error::kube(format!(
                        "create HMAC key Secret {namespace}/{name}"
                    ))(e));
                }
            }
        }
        Err(Error::Blocked(format!(
            "could not read or create Secret {namespace}/{name}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_keyed_stable_and_sensitive() {
        let data = BTreeMap::from([
            ("a".to_string(), b"x".to_vec()),
            ("b".to_string(), b"y".to_vec()),
        ]);
        let k1 = HmacKey::new(vec![1; 32]);
        let k2 = HmacKey::new(vec![2; 32]);
        assert_eq!(k1.hash(&data), k1.hash(&data.clone()));
        assert_ne!(k1.hash(&data), k2.hash(&data));
        let mut changed = data.clone();
        changed.insert("b".into(), b"z".to_vec());
        assert_ne!(k1.hash(&data), k1.hash(&changed));
        // Moving bytes between key and value changes the hash (length prefixes).
        let shifted = BTreeMap::from([
            ("ax".to_string(), b"".to_vec()),
            ("b".to_string(), b"y".to_vec()),
        ]);
        assert_ne!(k1.hash(&data), k1.hash(&shifted));
        assert!(k1.hash(&data).starts_with("hmac-sha256:"));
        assert!(!k1.hash(&data).contains('x'));
        assert_eq!(format!("{k1:?}"), "HmacKey(<redacted>)");
    }

    #[test]
    fn every_hash_names_its_key_without_revealing_it() {
        let data = BTreeMap::from([("a".to_string(), b"x".to_vec())]);
        let k1 = HmacKey::new(vec![1; 32]);
        let k2 = HmacKey::new(vec![2; 32]);
        let h1 = k1.hash(&data);
        assert_eq!(key_id_of(&h1), Some(k1.id().as_str()));
        assert_eq!(k1.id().len(), 8);
        assert_ne!(k1.id(), k2.id());
        assert!(k1.made(&h1) && !k2.made(&h1));
        // The id is not the start of the key's bytes in hex, nor of the MAC.
        assert!(!k1.id().starts_with("0101"));
        assert!(!h1.ends_with(&k1.id()));
        // Old, unprefixed hashes name no key.
        let legacy = format!("hmac-sha256:{}", "ab".repeat(32));
        assert_eq!(key_id_of(&legacy), None);
        assert!(!k1.made(&legacy));
    }
}
