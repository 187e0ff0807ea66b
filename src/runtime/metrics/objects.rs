//! The per-condition object gauge: each object counts once in the series of each of its
//! conditions' (status, reason), and leaves them when it is deleted.

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ObjectLabels {
    controller: String,
    condition: String,
    status: String,
    reason: String,
}

/// Identifies one condition of one object: (controller, object key, condition type).
pub(super) type ObjectConditionKey = (String, String, String);

impl Metrics {
    /// Records the current status and reason of one condition of one object (`key` is e.g.
    /// `namespace/name`). Replaces what the same object and condition reported before.
    pub fn set_object_condition(
        &self,
        controller: &str,
        key: &str,
        condition: &str,
        status: &str,
        reason: &str,
    ) {
        let mut conditions = self.lock_object_conditions();
        let slot = (controller.to_owned(), key.to_owned(), condition.to_owned());
        let new_value = (status.to_owned(), reason.to_owned());
        if conditions.get(&slot) == Some(&new_value) {
            return;
        }
        if let Some((old_status, old_reason)) = conditions.insert(slot, new_value) {
            self.decrement_object(controller, condition, &old_status, &old_reason);
        }
        self.objects
            .get_or_create(&object_labels(controller, condition, status, reason))
            .inc();
    }

    /// Forgets every condition of an object (it was deleted).
    pub fn forget_object(&self, controller: &str, key: &str) {
        let mut conditions = self.lock_object_conditions();
        let forgotten: Vec<ObjectConditionKey> = conditions
            .keys()
            .filter(|(c, k, _)| c == controller && k == key)
            .cloned()
            .collect();
        for slot in forgotten {
            if let Some((status, reason)) = conditions.remove(&slot) {
                self.decrement_object(controller, &slot.2, &status, &reason);
            }
        }
    }

    fn lock_object_conditions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ObjectConditionKey, (String, String)>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.object_conditions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Called with the object-conditions lock held.
    fn decrement_object(&self, controller: &str, condition: &str, status: &str, reason: &str) {
        let labels = object_labels(controller, condition, status, reason);
        let remaining = self.objects.get_or_create(&labels).dec() - 1;
        if remaining <= 0 {
            // Drop empty series so reasons that no object has any more vanish from /metrics.
            self.objects.remove(&labels);
        }
    }
}

fn object_labels(controller: &str, condition: &str, status: &str, reason: &str) -> ObjectLabels {
    ObjectLabels {
        controller: controller.to_owned(),
        condition: condition.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
    }
}
