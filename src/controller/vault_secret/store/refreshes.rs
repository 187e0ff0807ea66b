//! The periodic refreshes of many objects, kept compactly.
//!
//! kube's controller scheduler keeps an object that waits for its next refresh
//! (`Action::requeue`) as two copies of its reconcile request, each an object reference of
//! four strings, in a hash map and in a delay queue: about 0.6 KB per object, 6 MB at 10,000
//! objects that all wait for their refresh. The runner keeps them here instead, one shared key
//! and a due second per object (about 0.1 KB), and a ticker turns what is due into reconcile
//! requests. Failures still back off through the controller's scheduler (few objects at once).
//!
//! Only the runner [`Refreshes::activate`]s the queue (it runs the ticker). Inactive, as in
//! tools and tests that call a reconcile directly, [`Refreshes::after`] answers the plain
//! `Action::requeue`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use tokio::time::Instant;

/// See the module documentation.
pub struct Refreshes {
    queue: Mutex<Queue>,
    active: AtomicBool,
    origin: Instant,
}

#[derive(Default)]
struct Queue {
    /// Each waiting object's due second (since `origin`).
    due: HashMap<Arc<str>, u64>,
    /// The objects due in each second.
    by_second: BTreeMap<u64, Vec<Arc<str>>>,
}

impl Queue {
    fn unschedule(&mut self, key: &Arc<str>, second: u64) {
        if let Some(keys) = self.by_second.get_mut(&second) {
            keys.retain(|k| !Arc::ptr_eq(k, key));
            if keys.is_empty() {
                self.by_second.remove(&second);
            }
        }
    }
}

impl Default for Refreshes {
    fn default() -> Self {
        Self {
            queue: Mutex::default(),
            active: AtomicBool::new(false),
            origin: Instant::now(),
        }
    }
}

impl Refreshes {
    /// From now on, refreshes wait here (the caller takes what is due, every second).
    pub fn activate(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    /// The object `key` is refreshed again after `delay`: queued here (the reconcile then
    /// awaits changes only), or, inactive, the controller's own requeue.
    pub fn after(&self, key: &str, delay: Duration) -> Action {
        if !self.active.load(Ordering::Relaxed) {
            return Action::requeue(delay);
        }
        let second = (Instant::now() + delay - self.origin).as_secs_f64().ceil() as u64;
        let mut queue = self.lock();
        let key = match queue.due.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        if let Some(before) = queue.due.insert(key.clone(), second) {
            queue.unschedule(&key, before);
        }
        queue.by_second.entry(second).or_default().push(key);
        Action::await_change()
    }

    /// The object no longer waits for a refresh (it needs none, or it is gone).
    pub fn forget(&self, key: &str) {
        let mut queue = self.lock();
        if let Some((key, second)) = queue.due.remove_entry(key) {
            queue.unschedule(&key, second);
        }
    }

    /// The keys due by `now`, taken out of the queue.
    pub fn take_due(&self, now: Instant) -> Vec<Arc<str>> {
        let now = now.saturating_duration_since(self.origin).as_secs();
        let mut queue = self.lock();
        let mut due = Vec::new();
        while let Some(entry) = queue.by_second.first_entry() {
            if *entry.key() > now {
                break;
            }
            for key in entry.remove() {
                queue.due.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// How many objects wait for a refresh.
    pub fn len(&self) -> usize {
        self.lock().due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(keys: Vec<Arc<str>>) -> Vec<String> {
        let mut v: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn inactive_it_is_the_controllers_requeue() {
        let refreshes = Refreshes::default();
        let every = Duration::from_secs(60);
        assert_eq!(refreshes.after("ns/a", every), Action::requeue(every));
        assert!(refreshes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn active_it_hands_out_each_object_once_when_due() {
        let refreshes = Refreshes::default();
        refreshes.activate();
        let s = Duration::from_secs;
        assert_eq!(refreshes.after("ns/a", s(10)), Action::await_change());
        refreshes.after("ns/b", s(20));
        refreshes.after("ns/c", s(10));
        assert_eq!(refreshes.len(), 3);
        assert!(
            refreshes.take_due(Instant::now()).is_empty(),
            "nothing due yet"
        );

        tokio::time::advance(s(11)).await;
        assert_eq!(names(refreshes.take_due(Instant::now())), ["ns/a", "ns/c"]);
        assert!(refreshes.take_due(Instant::now()).is_empty(), "taken once");

        // Rescheduled before it is due: only the new time counts.
        refreshes.after("ns/b", s(30));
        tokio::time::advance(s(10)).await;
        assert!(refreshes.take_due(Instant::now()).is_empty());
        tokio::time::advance(s(21)).await;
        assert_eq!(names(refreshes.take_due(Instant::now())), ["ns/b"]);

        // Forgotten: never handed out.
        refreshes.after("ns/d", s(10));
        refreshes.forget("ns/d");
        tokio::time::advance(s(11)).await;
        assert!(refreshes.take_due(Instant::now()).is_empty());
        assert!(refreshes.is_empty());
        assert!(refreshes.lock().by_second.is_empty(), "no stale entries");
    }
}
