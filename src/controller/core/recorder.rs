//! Publishes Kubernetes Events (`events.k8s.io/v1`) as kube-rs's `Recorder` does, with a
//! compact cache.
//!
//! As kube-rs and client-go do, the same event about the same object within [`SERIES_TTL`] is
//! not a new Event: the first one gets a `series` (count, last observed time) by a patch. To
//! know, kube-rs keeps every Event it published, whole, for 6 minutes, and scans all of them on
//! every publish: after a burst of 10,000 new objects that is about 2 KB per object held for
//! 6 minutes (the biggest single consumer of the operator's heap) and an O(N) scan per event.
//! Here the cache keeps a 64-bit digest of each recent event's identity with the Event's name,
//! count and time (about 100 bytes), and forgets expired entries at most once per
//! [`SWEEP_EVERY`].

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;

/// Identical events of one object within this long form one series (kube-rs's and
/// client-go's 6 minutes).
pub const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// How often at most expired entries are forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The Event an identical one joins: its name, how many it counts, when it was last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recent {
    name: String,
    count: i32,
    last: Instant,
}

/// Recent events by the digest of their identity.
#[derive(Debug)]
struct Cache {
    recent: HashMap<u64, Recent>,
    swept: Instant,
}

impl Cache {
    fn new(now: Instant) -> Self {
        Self {
            recent: HashMap::new(),
            swept: now,
        }
    }

    /// The Event that an event with identity `key` joins at `now`, if any, counted.
    fn join(&mut self, key: u64, now: Instant) -> Option<Recent> {
        if now.duration_since(self.swept) >= SWEEP_EVERY {
            self.recent
                .retain(|_, r| now.duration_since(r.last) < SERIES_TTL);
            self.swept = now;
        }
        let recent = self.recent.get_mut(&key)?;
        if now.duration_since(recent.last) >= SERIES_TTL {
            self.recent.remove(&key);
            return None;
        }
        Some(Recent {
            name: recent.name.clone(),
            count: recent.count + 1,
            last: now,
        })
    }

    /// Records what was published (a new Event, or a series step of one).
    fn record(&mut self, key: u64, recent: Recent) {
        self.recent.insert(key, recent);
    }

    fn len(&self) -> usize {
        self.recent.len()
    }
}

/// The identity of an event, as kube-rs keys it: type, action, reason, note, reporter, the
/// object it is about and the related one.
fn identity(reporter: &Reporter, event: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    matches!(event.type_, EventType::Warning).hash(&mut h);
    event.action.hash(&mut h);
    event.reason.hash(&mut h);
    event.note.hash(&mut h);
    reporter.controller.hash(&mut h);
    reporter.instance.hash(&mut h);
    for reference in [Some(regarding), event.secondary.as_ref()] {
        reference
            .map(|r| {
                (
                    &r.api_version,
                    &r.kind,
                    &r.namespace,
                    &r.name,
                    &r.uid,
                    &r.field_path,
                )
            })
            .hash(&mut h);
    }
    h.finish()
}

/// Publishes events for the controllers. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    reporter: Reporter,
    cache: Arc<Mutex<Cache>>,
}

impl Recorder {
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            cache: Arc::new(Mutex::new(Cache::new(Instant::now()))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes `event` about `regarding`: a new Event, or the next step of the series of an
    /// identical one published within [`SERIES_TTL`].
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let key = identity(&self.reporter, event, regarding);
        let now = Instant::now();
        let joined = self.lock().join(key, now);
        if let Some(recent) = joined {
            let series = EventSeries {
                count: recent.count,
                last_observed_time: MicroTime(jiff::Timestamp::now()),
            };
            let patched = api
                .patch(
                    &recent.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "series": series })),
                )
                .await;
            match patched {
                Ok(_) => {
                    self.lock().record(key, recent);
                    return Ok(());
                }
                // The first Event is gone (deleted, or expired by the API server): start anew.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let created = api
            .create(&PostParams::default(), &self.new_event(event, regarding))
            .await?;
        let recent = Recent {
            name: created.metadata.name.unwrap_or_default(),
            count: 1,
            last: now,
        };
        self.lock().record(key, recent);
        Ok(())
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = jiff::Timestamp::now();
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    /// Recent events remembered for series (for tests and benchmarks).
    pub fn cached(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(name: &str, last: Instant) -> Recent {
        Recent {
            name: name.into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn an_identical_event_within_the_ttl_joins_the_series_later_it_starts_anew() {
        let t0 = Instant::now();
        let mut cache = Cache::new(t0);
        assert_eq!(cache.join(1, t0), None);
        cache.record(1, recent("a.1", t0));
        let t1 = t0 + Duration::from_secs(10);
        let joined = cache.join(1, t1).unwrap();
        assert_eq!((joined.name.as_str(), joined.count), ("a.1", 2));
        cache.record(1, joined);
        assert_eq!(cache.join(2, t1), None, "another identity");
        // The TTL runs from the last time the event was seen.
        let t2 = t1 + SERIES_TTL - Duration::from_secs(1);
        assert_eq!(cache.join(1, t2).unwrap().count, 3);
        assert_eq!(cache.join(1, t1 + SERIES_TTL), None, "expired");
    }

    #[test]
    fn expired_entries_are_forgotten_at_most_once_per_sweep_interval() {
        let t0 = Instant::now();
        let mut cache = Cache::new(t0);
        cache.record(1, recent("a", t0));
        cache.record(2, recent("b", t0 + SERIES_TTL));
        // Before the sweep interval nothing is scanned, even if entry 1 has expired.
        let early = t0 + SWEEP_EVERY / 2;
        cache.join(3, early);
        assert_eq!(cache.len(), 2);
        let later = t0 + SERIES_TTL + SWEEP_EVERY;
        cache.join(3, later);
        assert_eq!(cache.len(), 1, "entry 1 expired, entry 2 is recent");
    }

    #[test]
    fn the_identity_covers_the_note_reason_and_object() {
        let reporter = Reporter {
            controller: "c".into(),
            instance: None,
        };
        let event = |reason: &str, note: &str| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let object = |uid: &str| ObjectReference {
            name: Some("x".into()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        let key = |e: Event, o: ObjectReference| identity(&reporter, &e, &o);
        let base = key(event("Synced", "n"), object("u1"));
        assert_eq!(base, key(event("Synced", "n"), object("u1")));
        assert_ne!(base, key(event("Synced", "other"), object("u1")));
        assert_ne!(base, key(event("Created", "n"), object("u1")));
        assert_ne!(base, key(event("Synced", "n"), object("u2")));
    }
}
