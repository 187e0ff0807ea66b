//! Watches of the fake API: label and field selectors, the change history a watch resumes
//! from, and the newline-delimited `WatchEvent` stream each open watch receives.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::path::Target;

/// The response body type of the fake: whole answers and endless watch streams alike.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

pub fn whole(bytes: Vec<u8>) -> FakeBody {
    Full::new(Bytes::from(bytes)).boxed_unsync()
}

pub fn streaming(rx: UnboundedReceiver<Bytes>) -> FakeBody {
    StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }))
    .boxed_unsync()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as a watch replays it. `object` is the state after the write (for a
/// deletion: the last state, with the deletion's resourceVersion).
#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub target: Target,
    pub old: Option<Arc<Value>>,
    pub object: Arc<Value>,
}

/// An open watch.
pub struct Subscription {
    pub id: u64,
    pub collection: Target,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub metadata_only: bool,
    pub tx: UnboundedSender<Bytes>,
}

impl Subscription {
    pub fn matches(&self, target: &Target, object: &Value) -> bool {
        self.collection.contains(target)
            && self
                .labels
                .matches(object["metadata"]["labels"].as_object())
            && self.fields.matches(object)
    }

    /// Sends what this watch sees of `change` (an object leaving the selector is a DELETED
    /// event, one entering it an ADDED, as the API server does). False when the watch is gone.
    pub fn deliver(&self, change: &Change) -> bool {
        let now = self.matches(&change.target, &change.object);
        let before = change
            .old
            .as_ref()
            .is_some_and(|o| self.matches(&change.target, o));
        let event = match change.kind {
            ChangeKind::Added if now => "ADDED",
            ChangeKind::Modified if now && before => "MODIFIED",
            ChangeKind::Modified if now => "ADDED",
            ChangeKind::Modified if before => "DELETED",
            ChangeKind::Deleted if before || now => "DELETED",
            _ => return !self.tx.is_closed(),
        };
        self.send(event, &change.object)
    }

    pub fn send(&self, event: &str, object: &Value) -> bool {
        self.tx
            .send(event_line(event, object, self.metadata_only))
            .is_ok()
    }
}

pub fn event_line(event: &str, object: &Value, metadata_only: bool) -> Bytes {
    let object = if metadata_only && event != "ERROR" && event != "BOOKMARK" {
        partial_metadata(object)
    } else {
        object.clone()
    };
    let mut line = serde_json::to_vec(&json!({"type": event, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

/// The object as `PartialObjectMetadata` (what `Accept: ...;as=PartialObjectMetadata` asks).
pub fn partial_metadata(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

/// A parsed `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`).
#[derive(Clone, Debug, Default)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Clone, Debug)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    terms.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        terms.push(&s[start..]);
        let mut out = Vec::new();
        for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            let bad = || format!("unable to parse requirement {term:?} of labelSelector {s:?}");
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(bad)?;
                Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
            };
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((key, rest)) = term.split_once(" notin ") {
                Requirement::NotIn(key.trim().to_string(), set(rest)?)
            } else if let Some((key, rest)) = term.split_once(" in ") {
                Requirement::In(key.trim().to_string(), set(rest)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Requirement::NotIn(key.trim().to_string(), vec![value.trim().to_string()])
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Requirement::In(key.trim().to_string(), vec![value.trim().to_string()])
            } else if term.contains([' ', '(', ')']) {
                return Err(bad());
            } else {
                Requirement::Exists(term.to_string())
            };
            out.push(req);
        }
        Ok(LabelSelector(out))
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector` (`metadata.name=x`, `type!=y`, comma-separated; any dotted path).
#[derive(Clone, Debug, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, eq, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(format!(
                    "invalid fieldSelector {s:?}: {term:?} has no operator"
                ));
            };
            out.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let found = path
                .split('.')
                .try_fold(object, |v, k| v.get(k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (found == *want) == *eq
        })
    }
}
