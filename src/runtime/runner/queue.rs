//! The work-queue depth of a controller: objects whose reconcile was asked for (a watch event,
//! a due refresh, a referenced object's change) and has not started yet. Keys are kept once,
//! as the controller's scheduler keeps one request per object; a reconcile that starts, or an
//! object that is deleted, takes its key out. Reported as `privx_operator_work_queue_depth`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::ObjectRef;

use crate::controller::core::ControllerMetrics;

/// The keys waiting for one controller's reconcile.
#[derive(Clone)]
pub struct Queued {
    controller: &'static str,
    keys: Arc<Mutex<HashSet<String>>>,
    metrics: Arc<dyn ControllerMetrics>,
}

impl Queued {
    pub fn new(controller: &'static str, metrics: Arc<dyn ControllerMetrics>) -> Self {
        Self {
            controller,
            keys: Arc::default(),
            metrics,
        }
    }

    /// A reconcile of `key` was asked for.
    pub fn asked(&self, key: String) {
        let depth = {
            let mut keys = self.lock();
            keys.insert(key);
            keys.len()
        };
        self.metrics.queued(self.controller, depth);
    }

    /// A reconcile of the object `reference` (its key is `namespace/name`, or `name`) was asked
    /// for.
    pub fn asked_ref<K: kube::Resource>(&self, reference: &ObjectRef<K>) {
        self.asked(match &reference.namespace {
            Some(namespace) => format!("{namespace}/{}", reference.name),
            None => reference.name.clone(),
        });
    }

    /// The reconcile of `key` started, or the object is gone: it no longer waits.
    pub fn started(&self, key: &str) {
        let depth = {
            let mut keys = self.lock();
            if !keys.remove(key) {
                return;
            }
            keys.len()
        };
        self.metrics.queued(self.controller, depth);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::core::NoMetrics;

    #[test]
    fn a_key_waits_once_until_its_reconcile_starts() {
        let q = Queued::new("vaultsecret", Arc::new(NoMetrics));
        q.asked("demo/a".into());
        q.asked("demo/a".into());
        q.asked_ref(&ObjectRef::<k8s_openapi::api::core::v1::Secret>::new("b").within("demo"));
        assert_eq!(q.len(), 2);
        q.started("demo/a");
        q.started("demo/unknown");
        assert_eq!(q.len(), 1);
        q.started("demo/b");
        assert_eq!(q.len(), 0);
    }
}
