//! Our own writes, so that their watch events do not start another reconcile.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;

/// Our own writes, per object, so that their watch events do not start another reconcile.
/// [`OwnWrites::begin`] before the write marks the object pending: the first event that
/// arrives while it is pending is taken as the echo (it may race the write's answer).
/// [`OwnWrites::finish`] with the written object then records its resourceVersion, unless the
/// echo already came. Any other version passes. At worst a foreign change that lands in the
/// same instant as our write is taken for the echo, and our own echo then triggers once: a
/// change is never lost. The map holds at most one entry per object.
#[derive(Default)]
pub struct OwnWrites {
    versions: Mutex<HashMap<String, Expect>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Pending,
    Version(String),
}

impl OwnWrites {
    fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<String> {
        let meta = obj.meta();
        Some(Self::key(
            &K::kind(&()),
            meta.namespace.as_deref(),
            meta.name.as_deref()?,
        ))
    }

    fn key(kind: &str, namespace: Option<&str>, name: &str) -> String {
        format!("{kind}/{}/{name}", namespace.unwrap_or_default())
    }

    /// Before writing the object `kind` `namespace/name`.
    pub fn begin(&self, kind: &str, namespace: Option<&str>, name: &str) {
        self.lock()
            .insert(Self::key(kind, namespace, name), Expect::Pending);
    }

    /// After the write: its answer `written`, or `None` when it failed.
    pub fn finish<K: Resource<DynamicType = ()>>(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        written: Option<&K>,
    ) {
        let key = Self::key(kind, namespace, name);
        let mut versions = self.lock();
        if versions.get(&key) != Some(&Expect::Pending) {
            return;
        }
        match written.and_then(|w| w.meta().resource_version.clone()) {
            Some(rv) => versions.insert(key, Expect::Version(rv)),
            None => versions.remove(&key),
        };
    }

    /// Whether this watch event of `obj` is the echo of our own last write (taken once).
    pub fn is_echo<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        let Some(key) = Self::key_of(obj) else {
            return false;
        };
        let rv = obj.meta().resource_version.as_deref();
        let mut versions = self.lock();
        let echo = match versions.get(&key) {
            Some(Expect::Pending) => true,
            Some(Expect::Version(ours)) => Some(ours.as_str()) == rv,
            None => false,
        };
        if echo {
            versions.remove(&key);
        }
        echo
    }

    /// Forgets an object (it is gone).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        if let Some(key) = Self::key_of(obj) {
            self.lock().remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expect>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }
}
