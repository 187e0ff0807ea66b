//! The per-condition object gauge: each object counts once in the series of each of its
//! conditions' (status, reason), and leaves them when it is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ObjectLabels {
    controller: String,
    condition: String,
    status: String,
    reason: String,
}

/// What each object's conditions contribute to the gauge: by controller, by object key, the
/// (condition, status, reason) of each condition. Kept small: at 10,000 objects this is one
/// boxed key and one short boxed list per object, and reasons (a handful of words) are kept
/// once and shared.
#[derive(Default)]
pub(super) struct ObjectConditions {
    by_controller: HashMap<&'static str, HashMap<Box<str>, Box<[Contribution]>>>,
    reasons: HashSet<Arc<str>>,
    /// By controller, by object key: when the object last synced successfully (or, until it
    /// first does, when it was first reported), for the staleness gauge.
    fresh_since: HashMap<&'static str, HashMap<Box<str>, Instant>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Contribution {
    condition: &'static str,
    status: &'static str,
    reason: Arc<str>,
}

impl ObjectConditions {
    fn reason(&mut self, reason: &str) -> Arc<str> {
        if let Some(known) = self.reasons.get(reason) {
            return known.clone();
        }
        let new: Arc<str> = reason.into();
        self.reasons.insert(new.clone());
        new
    }
}

impl Metrics {
    /// Records the current status and reason of one condition of one object (`key` is e.g.
    /// `namespace/name`). Replaces what the same object and condition reported before.
    pub fn set_object_condition(
        &self,
        controller: &'static str,
        key: &str,
        condition: &'static str,
        status: &'static str,
        reason: &str,
    ) {
        let mut conditions = self.lock_object_conditions();
        let now = Contribution {
            condition,
            status,
            reason: conditions.reason(reason),
        };
        let objects = conditions.by_controller.entry(controller).or_default();
        let contributions = match objects.get_mut(key) {
            Some(c) => c,
            None => objects.entry(key.into()).or_default(),
        };
        match contributions.iter_mut().find(|c| c.condition == condition) {
            Some(before) if *before == now => return,
            Some(before) => {
                let before = std::mem::replace(before, now);
                self.decrement_object(controller, condition, before.status, &before.reason);
            }
            None => {
                let mut grown = contributions.to_vec();
                grown.push(now);
                *contributions = grown.into_boxed_slice();
            }
        }
        self.objects
            .get_or_create(&object_labels(controller, condition, status, reason))
            .inc();
    }

    /// Records that `key` synced successfully now (`synced`), or only that it exists.
    pub(super) fn touch_object(&self, controller: &'static str, key: &str, synced: bool) {
        let mut conditions = self.lock_object_conditions();
        let objects = conditions.fresh_since.entry(controller).or_default();
        match objects.get_mut(key) {
            Some(at) if synced => *at = Instant::now(),
            Some(_) => {}
            None => {
                objects.insert(key.into(), Instant::now());
            }
        }
    }

    /// Per controller, how long ago its stalest object last synced successfully (an object that
    /// never did counts from when it was first seen), as of `now`.
    pub(super) fn staleness_at(&self, now: Instant) -> Vec<(&'static str, f64)> {
        let conditions = self.lock_object_conditions();
        conditions
            .fresh_since
            .iter()
            .map(|(controller, objects)| {
                let oldest = objects
                    .values()
                    .map(|at| now.saturating_duration_since(*at).as_secs_f64())
                    .fold(0.0, f64::max);
                (*controller, oldest)
            })
            .collect()
    }

    /// Forgets every condition of an object (it was deleted).
    pub fn forget_object(&self, controller: &str, key: &str) {
        let mut conditions = self.lock_object_conditions();
        if let Some(objects) = conditions.fresh_since.get_mut(controller) {
            objects.remove(key);
        }
        let Some(gone) = conditions
            .by_controller
            .get_mut(controller)
            .and_then(|o| o.remove(key))
        else {
            return;
        };
        for c in gone.iter() {
            self.decrement_object(controller, c.condition, c.status, &c.reason);
        }
    }

    fn lock_object_conditions(&self) -> std::sync::MutexGuard<'_, ObjectConditions> {
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
