//! Several namespace watches of one kind, feeding one store.
//!
//! A store's writer expects one list at a time (`Init`, `InitApply`…, `InitDone` swaps the
//! buffer in), so interleaved lists of several namespaces would leave only the last one. The
//! merge keeps the writer's view whole: until every namespace has listed, everything goes into
//! the one initial buffer and a single `InitDone` follows the last list; after that, a namespace
//! that lists again (its watch could not resume) upserts what it lists and deletes, from the
//! store, its objects the new list no longer has.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

use super::Events;

struct State<K: Resource<DynamicType = ()>> {
    listed: Vec<bool>,
    all_listed: bool,
    /// Per namespace: what its current re-list has delivered so far.
    relisting: Vec<Option<HashSet<ObjectRef<K>>>>,
}

/// One event stream out of one per namespace (`namespaces[i]` is the scope of `streams[i]`);
/// a single stream is passed on untouched. `stored(namespace)` answers what the store holds of
/// a namespace (for the deletions a re-list implies).
pub fn merge<K, F>(streams: Vec<Events<K>>, namespaces: Vec<String>, stored: F) -> Events<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(&str) -> Vec<K> + Send + 'static,
{
    if streams.len() <= 1 {
        return stream::select_all(streams).boxed();
    }
    let n = streams.len();
    let tagged = stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |e| (i, e))),
    );
    let state = State::<K> {
        listed: vec![false; n],
        all_listed: false,
        relisting: (0..n).map(|_| None).collect(),
    };
    stream::once(futures::future::ready(Ok(Event::Init)))
        .chain(
            tagged
                .scan(state, move |state, (i, event)| {
                    let out = step(state, i, event, &namespaces[i], &stored);
                    futures::future::ready(Some(stream::iter(out)))
                })
                .flatten(),
        )
        .boxed()
}

type Item<K> = Result<Event<K>, watcher::Error>;

fn step<K>(
    state: &mut State<K>,
    i: usize,
    event: Item<K>,
    namespace: &str,
    stored: &impl Fn(&str) -> Vec<K>,
) -> Vec<Item<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let event = match event {
        Ok(event) => event,
        Err(e) => return vec![Err(e)],
    };
    if !state.all_listed {
        return match event {
            Event::Init => Vec::new(),
            Event::InitApply(o) | Event::Apply(o) => vec![Ok(Event::InitApply(o))],
            Event::Delete(o) => vec![Ok(Event::Delete(o))],
            Event::InitDone => {
                state.listed[i] = true;
                if state.listed.iter().all(|l| *l) {
                    state.all_listed = true;
                    vec![Ok(Event::InitDone)]
                } else {
                    Vec::new()
                }
            }
        };
    }
    match event {
        Event::Init => {
            state.relisting[i] = Some(HashSet::new());
            Vec::new()
        }
        Event::InitApply(o) => {
            if let Some(seen) = &mut state.relisting[i] {
                seen.insert(ObjectRef::from_obj(&o));
            }
            vec![Ok(Event::Apply(o))]
        }
        Event::Apply(o) => vec![Ok(Event::Apply(o))],
        Event::Delete(o) => vec![Ok(Event::Delete(o))],
        Event::InitDone => {
            let Some(seen) = state.relisting[i].take() else {
                return Vec::new();
            };
            stored(namespace)
                .into_iter()
                .filter(|o| !seen.contains(&ObjectRef::from_obj(o)))
                .map(|o| Ok(Event::Delete(o)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::{self, Store};

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some(ns.into());
        c
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut v: Vec<String> = store
            .state()
            .iter()
            .map(|c| {
                format!(
                    "{}/{}",
                    c.metadata.namespace.clone().unwrap(),
                    c.metadata.name.clone().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn two_namespaces_fill_one_store_and_a_relist_deletes_what_is_gone() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (a_tx, a_rx) = futures::channel::mpsc::unbounded::<Item<ConfigMap>>();
        let (b_tx, b_rx) = futures::channel::mpsc::unbounded::<Item<ConfigMap>>();
        let mut merged = merge(
            vec![a_rx.boxed(), b_rx.boxed()],
            vec!["a".into(), "b".into()],
            super::super::in_namespace(store.clone()),
        );
        let mut pump = async |n: usize, writer: &mut reflector::store::Writer<ConfigMap>| {
            for _ in 0..n {
                let e = merged.next().await.unwrap().unwrap();
                writer.apply_watcher_event(&e);
            }
        };
        for e in [Event::Init, Event::InitApply(cm("a", "1")), Event::InitDone] {
            a_tx.unbounded_send(Ok(e)).unwrap();
        }
        // Init (synthetic) + InitApply a/1; a's InitDone yields nothing yet.
        pump(2, &mut writer).await;
        for e in [Event::Init, Event::InitApply(cm("b", "1")), Event::InitDone] {
            b_tx.unbounded_send(Ok(e)).unwrap();
        }
        pump(2, &mut writer).await;
        assert_eq!(names(&store), ["a/1", "b/1"], "both lists in one store");

        a_tx.unbounded_send(Ok(Event::Apply(cm("a", "2")))).unwrap();
        pump(1, &mut writer).await;
        // a re-lists and no longer has a/1.
        for e in [Event::Init, Event::InitApply(cm("a", "2")), Event::InitDone] {
            a_tx.unbounded_send(Ok(e)).unwrap();
        }
        pump(2, &mut writer).await; // Apply a/2, Delete a/1
        assert_eq!(names(&store), ["a/2", "b/1"]);
    }
}
