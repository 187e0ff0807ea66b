//! What no controller reads is dropped before an object enters a store: the runner's watches
//! and the stored VaultSecrets both strip with this.

use kube::api::ObjectMeta;

/// The annotation `kubectl apply` keeps the whole last applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Drops what no controller reads before the object enters a store.
pub fn strip(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_drops_managed_fields_and_last_applied_only() {
        let mut m = ObjectMeta {
            name: Some("x".into()),
            annotations: Some(
                [(LAST_APPLIED, "{...}"), ("keep", "1")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        m.managed_fields = Some(vec![Default::default()]);
        strip(&mut m);
        assert_eq!(m.managed_fields, None);
        assert_eq!(m.annotations.unwrap().keys().collect::<Vec<_>>(), ["keep"]);
    }
}
