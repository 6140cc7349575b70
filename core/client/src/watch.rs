//! One resource's watch as a stream of [`Change`]s.
//!
//! kube-runtime's watcher lists, then watches, and lists again whenever the watch breaks
//! (a restarted API server, a compacted resource version). A re-list shows what exists now;
//! whatever existed before and is missing was deleted while nobody watched. The stream here
//! remembers which keys it has reported and, at the end of every re-list, reports the missing
//! ones as [`Change::Deleted`], so a cache fed from it never keeps a ghost.

use std::collections::HashSet;
use std::fmt::Debug;

use futures::{Stream, StreamExt as _};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;

/// An object's namespace (empty for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `obj`.
    pub fn of<K: Resource>(obj: &K) -> ObjectKey {
        ObjectKey {
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What happened to one object of a watched resource.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// The object was added or changed (or listed).
    Applied(K),
    /// The object was deleted.
    Deleted(ObjectKey),
    /// A list finished: everything that exists has been reported. The first one means the
    /// consumer's view is complete.
    Synced,
}

/// Tracks the keys a stream has reported, to turn a re-list into deletions.
#[derive(Debug, Default)]
struct Tracker {
    known: HashSet<ObjectKey>,
    listing: Option<HashSet<ObjectKey>>,
}

impl Tracker {
    fn apply<K: Resource>(&mut self, event: Event<K>) -> Vec<Change<K>> {
        match event {
            Event::Apply(obj) => {
                self.known.insert(ObjectKey::of(&obj));
                vec![Change::Applied(obj)]
            }
            Event::Delete(obj) => {
                let key = ObjectKey::of(&obj);
                self.known.remove(&key);
                vec![Change::Deleted(key)]
            }
            Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                let key = ObjectKey::of(&obj);
                if let Some(listed) = &mut self.listing {
                    listed.insert(key.clone());
                }
                self.known.insert(key);
                vec![Change::Applied(obj)]
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let mut gone: Vec<ObjectKey> = self.known.difference(&listed).cloned().collect();
                gone.sort();
                self.known = listed;
                let mut out: Vec<Change<K>> = gone.into_iter().map(Change::Deleted).collect();
                out.push(Change::Synced);
                out
            }
        }
    }
}

/// Every change to the objects `api` reaches, forever: the watch is re-established with
/// backoff after errors, which are logged with `what` (such as `"pods"`).
pub fn changes<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
) -> impl Stream<Item = Change<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut tracker = Tracker::default();
    watcher::watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(event) => Some(futures::stream::iter(tracker.apply(event))),
                Err(e) => {
                    tracing::warn!(resource = what, error = %e, "watch failed; retrying");
                    None
                }
            };
            futures::future::ready(out)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn pod(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p
    }

    fn names(changes: &[Change<Pod>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Applied(p) => format!("+{}", p.name_any()),
                Change::Deleted(k) => format!("-{k}"),
                Change::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn a_relist_reports_what_vanished_while_nobody_watched() {
        let mut t = Tracker::default();
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(pod("a")),
            Event::InitApply(pod("b")),
            Event::InitDone,
            Event::Apply(pod("c")),
            Event::Delete(pod("a")),
        ] {
            out.extend(t.apply(e));
        }
        assert_eq!(names(&out), ["+a", "+b", "synced", "+c", "-ns/a"]);
        // The watch broke; meanwhile b was deleted and d created.
        let mut out = Vec::new();
        for e in [
            Event::Init,
            Event::InitApply(pod("c")),
            Event::InitApply(pod("d")),
            Event::InitDone,
        ] {
            out.extend(t.apply(e));
        }
        assert_eq!(names(&out), ["+c", "+d", "-ns/b", "synced"]);
    }
}
