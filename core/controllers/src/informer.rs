//! Shared watch caches: one watch per resource for the whole controller manager.
//!
//! An [`Informer`] keeps the objects of one resource in memory, fed by a kube-runtime watcher
//! (through [`keelson_client::changes`], which turns a re-list into deletions), and tells the
//! handlers registered on it what changed, with the object before and after. Controllers read
//! the cache instead of the API server and register handlers that put keys on their work
//! queues; whatever a handler is told, the controller reads the current state again when it
//! reconciles, so a missed intermediate state never matters.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt as _;
use keelson_client::{Change, ObjectKey};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// Called with (old, new): (None, Some) for an addition, (Some, Some) for an update and
/// (Some, None) for a deletion.
pub type Handler<K> = Box<dyn Fn(Option<&Arc<K>>, Option<&Arc<K>>) + Send + Sync>;

/// The cache of one resource and the handlers interested in it.
pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    api: Api<K>,
    what: &'static str,
    /// Ordered by namespace, then name, so a namespace's objects are one range.
    objects: RwLock<BTreeMap<ObjectKey, Arc<K>>>,
    handlers: Mutex<Vec<Arc<Handler<K>>>>,
    synced: watch::Sender<bool>,
    /// Set when a controller reads or watches this resource: only used informers run.
    used: AtomicBool,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over everything `api` reaches; `what` names it in logs.
    pub fn new(api: Api<K>, what: &'static str) -> Self {
        Self {
            inner: Arc::new(Inner {
                api,
                what,
                objects: RwLock::new(BTreeMap::new()),
                handlers: Mutex::new(Vec::new()),
                synced: watch::channel(false).0,
                used: AtomicBool::new(false),
            }),
        }
    }

    /// Registers `handler`; it sees every change from the first list on.
    pub fn on_change(
        &self,
        handler: impl Fn(Option<&Arc<K>>, Option<&Arc<K>>) + Send + Sync + 'static,
    ) {
        self.inner.used.store(true, Ordering::Relaxed);
        if let Ok(mut h) = self.inner.handlers.lock() {
            h.push(Arc::new(Box::new(handler)));
        }
    }

    /// Drops every handler. Handlers may hold the context that holds this informer; the
    /// manager clears them when it stops the controllers, so nothing keeps the caches alive.
    pub fn clear_handlers(&self) {
        if let Ok(mut h) = self.inner.handlers.lock() {
            h.clear();
        }
    }

    /// Marks the informer as needed without a handler (a controller that only reads it).
    pub fn use_cache(&self) -> &Self {
        self.inner.used.store(true, Ordering::Relaxed);
        self
    }

    /// Whether a controller needs this informer.
    pub fn is_used(&self) -> bool {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// The cached object `namespace/name` (namespace empty for cluster-scoped kinds).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.inner.objects.read().ok()?.get(&key).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner
            .objects
            .read()
            .map(|o| o.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey {
            namespace: namespace.to_string(),
            name: String::new(),
        };
        let Ok(objects) = self.inner.objects.read() else {
            return Vec::new();
        };
        objects
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.inner.objects.read().map(|o| o.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list has been taken in.
    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits for the first list.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The API the informer watches, for controllers to write through.
    pub fn api(&self) -> &Api<K> {
        &self.inner.api
    }

    /// Watches forever (until dropped), updating the cache and calling handlers.
    pub async fn run(self, config: watcher::Config) {
        let stream = keelson_client::changes(self.inner.api.clone(), config, self.inner.what);
        let mut stream = std::pin::pin!(stream);
        while let Some(change) = stream.next().await {
            self.apply(change);
        }
    }

    /// Takes one change into the cache and tells the handlers.
    pub fn apply(&self, change: Change<K>) {
        let (old, new) = match change {
            Change::Applied(obj) => {
                let key = ObjectKey::of(&obj);
                let new = Arc::new(obj);
                let old = match self.inner.objects.write() {
                    Ok(mut o) => o.insert(key, new.clone()),
                    Err(_) => return,
                };
                // A re-list repeats objects that did not change; handlers need not hear them.
                if let Some(o) = &old
                    && o.meta().resource_version.is_some()
                    && o.meta().resource_version == new.meta().resource_version
                {
                    return;
                }
                (old, Some(new))
            }
            Change::Deleted(key) => {
                let old = match self.inner.objects.write() {
                    Ok(mut o) => o.remove(&key),
                    Err(_) => return,
                };
                if old.is_none() {
                    return;
                }
                (old, None)
            }
            Change::Synced => {
                self.inner.synced.send_replace(true);
                return;
            }
        };
        let handlers: Vec<_> = match self.inner.handlers.lock() {
            Ok(h) => h.clone(),
            Err(_) => return,
        };
        for h in handlers {
            h(old.as_ref(), new.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some(ns.into());
        p.metadata.resource_version = Some(rv.into());
        p
    }

    fn informer() -> Informer<Pod> {
        // The API is never called in these tests; any client shape will do.
        let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        Informer::new(Api::all(client), "pods")
    }

    #[tokio::test]
    async fn handlers_see_old_and_new_and_namespaces_are_ranges() {
        let inf = informer();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        inf.on_change(move |old, new| {
            let name = |p: Option<&Arc<Pod>>| {
                p.map(|p| {
                    format!(
                        "{}@{}",
                        p.metadata.name.clone().unwrap(),
                        p.metadata.resource_version.clone().unwrap()
                    )
                })
                .unwrap_or_else(|| "-".into())
            };
            s.lock()
                .unwrap()
                .push(format!("{}>{}", name(old), name(new)));
        });
        inf.apply(Change::Applied(pod("a", "p1", "1")));
        inf.apply(Change::Applied(pod("b", "p2", "2")));
        inf.apply(Change::Applied(pod("a", "p3", "3")));
        inf.apply(Change::Applied(pod("a", "p1", "1"))); // a re-list repeating p1: not news
        inf.apply(Change::Applied(pod("a", "p1", "4")));
        inf.apply(Change::Deleted(ObjectKey {
            namespace: "b".into(),
            name: "p2".into(),
        }));
        inf.apply(Change::Deleted(ObjectKey {
            namespace: "b".into(),
            name: "gone".into(),
        }));
        assert!(!inf.has_synced());
        inf.apply(Change::Synced);
        assert!(inf.has_synced());
        assert_eq!(
            *seen.lock().unwrap(),
            ["->p1@1", "->p2@2", "->p3@3", "p1@1>p1@4", "p2@2>-"]
        );
        let names: Vec<_> = inf
            .list_namespace("a")
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["p1", "p3"]);
        assert!(inf.list_namespace("b").is_empty());
        assert!(inf.get("a", "p3").is_some());
        assert_eq!(inf.len(), 2);
    }
}
