//! The watch cache: every object of every resource, kept in memory from one store watch, with
//! a window of recent events per resource. LIST and WATCH are served from here so that many
//! clients cost one store watch, as the Kubernetes API server's cacher does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use keelson_store::{EventKind, KeyValue, ListOptions, Revision, Store};

use crate::status::{ApiError, ApiResult};

/// Root of every key the API server writes.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// Events kept per resource for watches that resume from a resourceVersion.
const HISTORY_PER_RESOURCE: usize = 10_000;
/// Live events buffered per watcher before a slow watcher is cut off (it then resumes from its
/// last resourceVersion, which the history window usually still covers).
const BROADCAST_CAPACITY: usize = 8_192;

/// One object as the cache holds it: parsed, and serialised with its resourceVersion.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub revision: Revision,
    pub value: Value,
    /// JSON encoding of `value`, ready to be written into responses.
    pub raw: Bytes,
}

impl CachedObject {
    pub fn from_kv(kv: &KeyValue) -> Option<Self> {
        let mut value: Value = serde_json::from_slice(&kv.value).ok()?;
        set_resource_version(&mut value, kv.mod_revision);
        let raw = Bytes::from(serde_json::to_vec(&value).ok()?);
        let (namespace, name) = split_key(&kv.key);
        Some(Self {
            key: kv.key.clone(),
            namespace,
            name,
            revision: kv.mod_revision,
            value,
            raw,
        })
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        labels_of(&self.value)
    }
}

pub fn labels_of(value: &Value) -> BTreeMap<String, String> {
    value
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_resource_version(value: &mut Value, rev: Revision) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// `/registry/<resource>/<ns>/<name>` or `/registry/<resource>/<name>` -> (ns, name).
fn split_key(key: &str) -> (String, String) {
    let rest = key.strip_prefix(REGISTRY_PREFIX).unwrap_or(key);
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    match parts.as_slice() {
        [_, ns, name] => (ns.to_string(), name.to_string()),
        [_, name] => (String::new(), name.to_string()),
        _ => (String::new(), String::new()),
    }
}

/// The resource id a key belongs to: the segment after `/registry/`.
pub fn resource_of(key: &str) -> Option<&str> {
    key.strip_prefix(REGISTRY_PREFIX)?.split('/').next()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// A change seen by the cache. `prev` lets watchers with selectors turn a change that moves an
/// object into or out of their selection into ADDED or DELETED, as Kubernetes does.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: WatchEventType,
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
}

impl CacheEvent {
    pub fn revision(&self) -> Revision {
        self.object.revision
    }
}

struct ResourceCache {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event with a revision greater than this is in `history`.
    complete_after: Revision,
    tx: broadcast::Sender<Arc<CacheEvent>>,
}

impl ResourceCache {
    fn new(complete_after: Revision) -> Self {
        Self {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            complete_after,
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }
}

struct Inner {
    resources: HashMap<String, ResourceCache>,
    /// Revision at which the cache was first filled: history for resources seen later starts here.
    start: Revision,
}

/// How a watch starts.
#[derive(Clone, Copy, Debug)]
pub enum WatchStart {
    /// Current state as ADDED events, then changes.
    Snapshot,
    /// Changes after this revision.
    After(Revision),
}

/// What a new watcher gets: the events to send first, the live receiver, and the revision the
/// initial events bring it to.
pub struct Subscription {
    pub initial: Vec<Arc<CacheEvent>>,
    pub rx: broadcast::Receiver<Arc<CacheEvent>>,
    pub revision: Revision,
}

pub struct WatchCache {
    inner: RwLock<Inner>,
    revision: watch::Sender<Revision>,
}

impl WatchCache {
    /// Fills the cache from the store and keeps it current from one watch on `/registry/`.
    /// The returned task ends with an error if the store watch fails for good.
    pub async fn start(
        store: Arc<dyn Store>,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>), keelson_store::Error> {
        let list = store.list(REGISTRY_PREFIX, ListOptions::default()).await?;
        let resources = Self::build(&list.items, list.revision);
        let cache = Arc::new(Self {
            inner: RwLock::new(Inner {
                resources,
                start: list.revision,
            }),
            revision: watch::channel(list.revision).0,
        });
        let task = tokio::spawn(Self::follow(cache.clone(), store, list.revision));
        Ok((cache, task))
    }

    fn build(items: &[KeyValue], revision: Revision) -> HashMap<String, ResourceCache> {
        let mut resources: HashMap<String, ResourceCache> = HashMap::new();
        for kv in items {
            let Some(res) = resource_of(&kv.key) else {
                continue;
            };
            let Some(obj) = CachedObject::from_kv(kv) else {
                tracing::warn!(key = %kv.key, "skipping undecodable object in store");
                continue;
            };
            resources
                .entry(res.to_string())
                .or_insert_with(|| ResourceCache::new(revision))
                .objects
                .insert(kv.key.clone(), Arc::new(obj));
        }
        resources
    }

    /// Replaces everything with a fresh list. Dropping the old broadcast senders ends every
    /// open watch; history starts again at `revision`.
    fn reset(&self, items: &[KeyValue], revision: Revision) {
        let resources = Self::build(items, revision);
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        inner.resources = resources;
        inner.start = revision;
        self.revision.send_replace(revision);
    }

    async fn follow(cache: Arc<Self>, store: Arc<dyn Store>, mut after: Revision) {
        loop {
            // Every key, not only objects: a write outside the registry (a service IP or node
            // port released after its Service is deleted) moves the store's revision too, and
            // a consistent read waits for the cache to reach the store's revision.
            let mut stream = match store.watch("/", after).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "watch cache: store watch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) => {
                        after = ev.revision();
                        cache.apply(ev);
                    }
                    Err(keelson_store::Error::Compacted { .. }) => {
                        // History the cache needed is gone: start over from a fresh list, as
                        // Kubernetes' cacher does. Watchers are closed and resume (or relist).
                        tracing::warn!("watch cache: fell behind a compaction; relisting");
                        match store.list(REGISTRY_PREFIX, ListOptions::default()).await {
                            Ok(list) => {
                                after = list.revision;
                                cache.reset(&list.items, list.revision);
                            }
                            Err(e) => tracing::error!(error = %e, "watch cache: relist failed"),
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "watch cache: store watch ended; resuming");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn apply(&self, ev: keelson_store::Event) {
        let rev = ev.revision();
        let Some(res) = resource_of(&ev.kv.key).map(str::to_string) else {
            self.revision.send_replace(rev);
            return;
        };
        let Some(obj) = CachedObject::from_kv(&ev.kv) else {
            tracing::warn!(key = %ev.kv.key, "watch cache: undecodable object");
            self.revision.send_replace(rev);
            return;
        };
        let obj = Arc::new(obj);
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let start = inner.start;
        let rc = inner
            .resources
            .entry(res)
            .or_insert_with(|| ResourceCache::new(start));
        let prev = match ev.kind {
            EventKind::Deleted => rc.objects.remove(&ev.kv.key),
            _ => rc.objects.insert(ev.kv.key.clone(), obj.clone()),
        };
        let kind = match ev.kind {
            EventKind::Created => WatchEventType::Added,
            EventKind::Updated => WatchEventType::Modified,
            EventKind::Deleted => WatchEventType::Deleted,
        };
        let event = Arc::new(CacheEvent {
            kind,
            object: obj,
            prev,
        });
        rc.history.push_back(event.clone());
        while rc.history.len() > HISTORY_PER_RESOURCE {
            if let Some(old) = rc.history.pop_front() {
                rc.complete_after = old.revision();
            }
        }
        // No receivers is not an error: nobody is watching this resource right now.
        let _ = rc.tx.send(event);
        // Published after the broadcast, under the lock, so that a reader who sees revision R
        // finds every event up to R already queued on its receiver.
        self.revision.send_replace(rev);
    }

    /// The latest revision the cache has applied.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied `rev`, or fails with a Timeout after `limit`.
    pub async fn wait_for(&self, rev: Revision, limit: Duration) -> ApiResult<()> {
        let mut rx = self.revision.subscribe();
        let ok = tokio::time::timeout(limit, rx.wait_for(|r| *r >= rev)).await;
        match ok {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {rev}, current: {}",
                self.revision()
            ))
            .with_details(serde_json::json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1
            }))),
        }
    }

    /// The objects of `resource` (optionally in one namespace) in key order, and the revision
    /// they reflect.
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
    ) -> (Vec<Arc<CachedObject>>, Revision) {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let rev = self.revision();
        let Some(rc) = inner.resources.get(resource) else {
            return (Vec::new(), rev);
        };
        let items = match namespace {
            Some(ns) => {
                let prefix = format!("{REGISTRY_PREFIX}{resource}/{ns}/");
                rc.objects
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, v)| v.clone())
                    .collect()
            }
            None => rc.objects.values().cloned().collect(),
        };
        (items, rev)
    }

    /// Starts a watch on `resource`. Fails with 410 Gone when `start` is older than the history
    /// the cache holds.
    pub fn subscribe(&self, resource: &str, start: WatchStart) -> ApiResult<Subscription> {
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let begin = inner.start;
        let rev = self.revision();
        let rc = inner
            .resources
            .entry(resource.to_string())
            .or_insert_with(|| ResourceCache::new(begin));
        let initial = match start {
            WatchStart::Snapshot => rc
                .objects
                .values()
                .map(|o| {
                    Arc::new(CacheEvent {
                        kind: WatchEventType::Added,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            WatchStart::After(after) => {
                if after < rc.complete_after {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {after} ({})",
                        rc.complete_after + 1
                    )));
                }
                rc.history
                    .iter()
                    .filter(|e| e.revision() > after)
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            initial,
            rx: rc.tx.subscribe(),
            revision: rev,
        })
    }

    /// One object by key, as the cache holds it (possibly a few milliseconds behind the store).
    pub fn get(&self, resource: &str, key: &str) -> Option<Arc<CachedObject>> {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        inner.resources.get(resource)?.objects.get(key).cloned()
    }

    /// Number of objects of `resource` (for metrics and quota).
    pub fn count(&self, resource: &str) -> usize {
        let inner = match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        inner.resources.get(resource).map_or(0, |r| r.objects.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split() {
        assert_eq!(
            split_key("/registry/pods/default/nginx"),
            ("default".into(), "nginx".into())
        );
        assert_eq!(
            split_key("/registry/nodes/n1"),
            (String::new(), "n1".into())
        );
        assert_eq!(
            resource_of("/registry/leases.coordination.k8s.io/a/b"),
            Some("leases.coordination.k8s.io")
        );
    }
}
