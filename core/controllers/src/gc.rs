//! The garbage collector: deletes objects whose owners are gone and carries out the
//! `orphan` and `foregroundDeletion` finalizers, the part of kube-controller-manager's
//! `garbagecollector` that matters for the kinds Keelson serves.
//!
//! Dependents are the cached pods and ReplicationControllers with `ownerReferences`. An owner
//! is looked up by uid: in the caches for the cached kinds (confirmed with a live GET before
//! anything is deleted, since a cache may lag), through discovery and a live GET for any
//! other kind the API server serves; an owner of a kind nobody serves leaves the dependent
//! alone. Two queues: dependents to check, and owners being deleted with one of the two
//! finalizers.
//!
//! - A dependent whose owners are all gone is deleted (propagation `Background`); one that
//!   still has a live owner only loses the references to the gone ones. Before a deletion the
//!   dependent is read live and its owners judged again if its references changed (the
//!   cache may not show it re-pointed to a live owner yet), and it is deleted only as read
//!   (uid and resourceVersion preconditions): if it changed meanwhile, it is checked again,
//!   as Kubernetes' `attemptToDeleteItem` does.
//! - An owner with `orphan`: its dependents lose their references to it, then the finalizer
//!   is removed and the API server completes the deletion.
//! - An owner with `foregroundDeletion`: its dependents are deleted; once none that block
//!   it (`blockOwnerDeletion`) remain, the finalizer is removed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, ResourceQuota, Secret,
    Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::discovery::Scope;
use kube::{Api, Resource};
use serde_json::{Value, json};

use crate::informer::Informer;
use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Result, is_conflict, is_not_found};

/// The finalizer the API server sets for `propagationPolicy=Orphan`.
pub(crate) const ORPHAN: &str = "orphan";
/// The finalizer the API server sets for `propagationPolicy=Foreground`.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// How often an owner in foreground deletion looks again while dependents remain (their
/// deletions requeue it sooner).
const FOREGROUND_RECHECK: Duration = Duration::from_secs(5);

/// The kinds the collector follows through the shared caches, as dependents and as owners
/// (every core/v1 kind the controller manager caches, but Leases, which are cached for one
/// namespace only, and Events, which Kubernetes' collector ignores too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Pod,
    ReplicationController,
    Service,
    Endpoints,
    Secret,
    ConfigMap,
    ServiceAccount,
    ResourceQuota,
    Node,
    Namespace,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::Pod,
        Kind::ReplicationController,
        Kind::Service,
        Kind::Endpoints,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::ServiceAccount,
        Kind::ResourceQuota,
        Kind::Node,
        Kind::Namespace,
    ];

    fn of(api_version: &str, kind: &str) -> Option<Kind> {
        if api_version != "v1" {
            return None;
        }
        Kind::ALL.into_iter().find(|k| k.resource().kind == kind)
    }

    fn resource(self) -> ApiResource {
        match self {
            Kind::Pod => ApiResource::erase::<Pod>(&()),
            Kind::ReplicationController => ApiResource::erase::<ReplicationController>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Endpoints => ApiResource::erase::<Endpoints>(&()),
            Kind::Secret => ApiResource::erase::<Secret>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
            Kind::Node => ApiResource::erase::<Node>(&()),
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
        }
    }

    fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }
}

/// Runs `$body` with `$inf` bound to the shared informer of `$kind`.
macro_rules! with_informer {
    ($informers:expr, $kind:expr, |$inf:ident| $body:expr) => {{
        let i = $informers;
        match $kind {
            Kind::Pod => {
                let $inf = &i.pods;
                $body
            }
            Kind::ReplicationController => {
                let $inf = &i.replication_controllers;
                $body
            }
            Kind::Service => {
                let $inf = &i.services;
                $body
            }
            Kind::Endpoints => {
                let $inf = &i.endpoints;
                $body
            }
            Kind::Secret => {
                let $inf = &i.secrets;
                $body
            }
            Kind::ConfigMap => {
                let $inf = &i.config_maps;
                $body
            }
            Kind::ServiceAccount => {
                let $inf = &i.service_accounts;
                $body
            }
            Kind::ResourceQuota => {
                let $inf = &i.resource_quotas;
                $body
            }
            Kind::Node => {
                let $inf = &i.nodes;
                $body
            }
            Kind::Namespace => {
                let $inf = &i.namespaces;
                $body
            }
        }
    }};
}

/// One object the collector works on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Item {
    kind: Kind,
    namespace: String,
    name: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
    }
}

impl Item {
    fn of(kind: Kind, meta: &ObjectMeta) -> Item {
        Item {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// The cached dependents of each owner uid: Kubernetes' dependency graph, reduced to its
/// edges.
#[derive(Debug, Default)]
struct OwnerIndex {
    by_owner: Mutex<HashMap<String, HashSet<Item>>>,
}

impl OwnerIndex {
    /// Takes in a change of a cached object of `kind`.
    fn update(&self, kind: Kind, old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) {
        let Some(meta) = new.or(old) else {
            return;
        };
        let item = Item::of(kind, meta);
        let uids = |m: Option<&ObjectMeta>| -> HashSet<String> {
            m.and_then(|m| m.owner_references.as_ref())
                .map(|refs| refs.iter().map(|r| r.uid.clone()).collect())
                .unwrap_or_default()
        };
        let (before, after) = (uids(old), uids(new));
        if before.is_empty() && after.is_empty() {
            return;
        }
        let Ok(mut owned) = self.by_owner.lock() else {
            return;
        };
        for uid in before.difference(&after) {
            if let Some(set) = owned.get_mut(uid) {
                set.remove(&item);
                if set.is_empty() {
                    owned.remove(uid);
                }
            }
        }
        for uid in after {
            owned.entry(uid).or_default().insert(item.clone());
        }
    }

    /// The objects with an owner reference to `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<Item> {
        self.by_owner
            .lock()
            .ok()
            .and_then(|o| o.get(uid).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// What became of an owner.
#[derive(Debug)]
enum Owner {
    /// It exists (with this uid); its metadata.
    Present(Box<ObjectMeta>),
    /// No object of that kind, name and uid.
    Absent,
    /// Its kind is not served: nothing can be concluded.
    Unknown,
}

/// Starts the garbage collector: handlers on the cached kinds, and the workers of both
/// queues.
pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let gc = Arc::new(Gc {
        ctx: ctx.clone(),
        dependents: Queue::new(),
        owners: Queue::new(),
        owned: OwnerIndex::default(),
        discovered: Mutex::new(HashMap::new()),
    });
    for kind in Kind::ALL {
        with_informer!(&ctx.informers, kind, |inf| watch(&gc, inf, kind));
    }
    let workers = ctx.config.concurrent_syncs;
    let g = gc.clone();
    let dependents: Task = Box::pin(run_workers(
        "garbagecollector",
        gc.dependents.clone(),
        workers.saturating_mul(4),
        move |item: Item| {
            let g = g.clone();
            async move { g.check_dependent(&item).await }
        },
    ));
    let g = gc.clone();
    let owners: Task = Box::pin(run_workers(
        "garbagecollector",
        gc.owners.clone(),
        workers,
        move |item: Item| {
            let g = g.clone();
            async move { g.process_owner(&item).await }
        },
    ));
    Ok(vec![dependents, owners])
}

/// Registers the collector's handler on one cached kind.
fn watch<K>(gc: &Arc<Gc>, informer: &Informer<K>, kind: Kind)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let g = gc.clone();
    informer
        .on_change(move |old, new| g.changed(kind, old.map(|o| o.meta()), new.map(|n| n.meta())));
}

struct Gc {
    ctx: Arc<Context>,
    /// Objects with owner references to check (Kubernetes' `attemptToDelete`).
    dependents: Queue<Item>,
    /// Owners being deleted with `orphan` or `foregroundDeletion`.
    owners: Queue<Item>,
    /// The cached dependents of each owner.
    owned: OwnerIndex,
    /// Discovery answers for the owner kinds outside the caches, by (apiVersion, kind).
    discovered: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

/// Where an owner of `kind` referenced from namespace `ns` lives: owner references never
/// cross namespaces, and cluster-scoped owners have none.
fn owner_namespace(kind: Kind, ns: &str) -> &str {
    if kind.namespaced() { ns } else { "" }
}

/// Whether `meta` references `uid` among its owners.
fn references<'a>(meta: &'a ObjectMeta, uid: &str) -> Option<&'a OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.uid == uid)
}

/// Whether the object is being deleted and waits for this collector.
fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

/// A merge patch setting the owner references to `refs` (removing the field when empty),
/// with the resourceVersion they were computed from as a precondition.
pub(crate) fn owner_refs_patch(resource_version: Option<&str>, refs: &[&OwnerReference]) -> Value {
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        json!(refs)
    };
    json!({"metadata": {"resourceVersion": resource_version, "ownerReferences": refs}})
}

impl Gc {
    /// Maps a change of a cached object to work: check it as a dependent, process it as an
    /// owner being deleted, check the dependents of an owner that went, and wake owners
    /// waiting for it.
    fn changed(&self, kind: Kind, old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) {
        self.owned.update(kind, old, new);
        if let Some(n) = new {
            let refs_changed = old.is_none_or(|o| o.owner_references != n.owner_references);
            if refs_changed && n.owner_references.as_ref().is_some_and(|r| !r.is_empty()) {
                self.dependents.add(Item::of(kind, n));
            }
            if n.deletion_timestamp.is_some()
                && (has_finalizer(n, ORPHAN) || has_finalizer(n, FOREGROUND))
            {
                self.owners.add(Item::of(kind, n));
            }
        }
        if let (Some(o), None) = (old, new)
            && let Some(uid) = o.uid.as_deref()
        {
            for item in self.dependents_of(uid) {
                self.dependents.add(item);
            }
        }
        for m in [old, new].into_iter().flatten() {
            let ns = m.namespace.as_deref().unwrap_or_default();
            for r in m.owner_references.iter().flatten() {
                if let Some(k) = Kind::of(&r.api_version, &r.kind)
                    && let Some(owner) = self.cached_meta(k, owner_namespace(k, ns), &r.name)
                    && owner.uid.as_deref() == Some(r.uid.as_str())
                    && owner.deletion_timestamp.is_some()
                {
                    self.owners.add(Item::of(k, &owner));
                }
            }
        }
    }

    /// The cached objects with an owner reference to `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<Item> {
        self.owned.dependents_of(uid)
    }

    fn cached_meta(&self, kind: Kind, ns: &str, name: &str) -> Option<ObjectMeta> {
        with_informer!(&self.ctx.informers, kind, |inf| inf
            .get(ns, name)
            .map(|o| o.metadata.clone()))
    }

    fn api(&self, kind: Kind, ns: &str) -> Api<DynamicObject> {
        if kind.namespaced() {
            Api::namespaced_with(self.ctx.client.clone(), ns, &kind.resource())
        } else {
            Api::all_with(self.ctx.client.clone(), &kind.resource())
        }
    }

    /// Checks a dependent's owners: deletes it when all are gone, drops the references to
    /// the gone ones when some remain. The cache is enough to decide that nothing is to be
    /// done; a deletion is decided again on the dependent read live, and made with its uid
    /// and resourceVersion as preconditions (a conflict: it changed, check it again).
    async fn check_dependent(&self, item: &Item) -> Result<Requeue> {
        let Some(mut meta) = self.cached_meta(item.kind, &item.namespace, &item.name) else {
            return Ok(Requeue::No);
        };
        let api = self.api(item.kind, &item.namespace);
        // Whether `meta` was read live rather than from the cache.
        let mut live = false;
        loop {
            if meta.deletion_timestamp.is_some() {
                return Ok(Requeue::No);
            }
            let refs = meta.owner_references.clone().unwrap_or_default();
            if refs.is_empty() {
                return Ok(Requeue::No);
            }
            let mut solid = Vec::new();
            let mut dangling = Vec::new();
            let mut waiting = false;
            for r in &refs {
                match self.owner(&item.namespace, r).await? {
                    Owner::Unknown => return Ok(Requeue::No),
                    Owner::Absent => dangling.push(r),
                    Owner::Present(m) => {
                        if m.deletion_timestamp.is_some() && has_finalizer(&m, FOREGROUND) {
                            waiting = true;
                        } else {
                            solid.push(r);
                        }
                    }
                }
            }
            if !solid.is_empty() {
                if dangling.is_empty() {
                    return Ok(Requeue::No);
                }
                let keep: Vec<&OwnerReference> = refs
                    .iter()
                    .filter(|r| !dangling.iter().any(|d| d.uid == r.uid))
                    .collect();
                let patch = owner_refs_patch(meta.resource_version.as_deref(), &keep);
                tracing::info!(object = %item, "removing references to owners that are gone");
                return match api
                    .patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(Requeue::No),
                    Err(e) if is_not_found(&e) => Ok(Requeue::No),
                    Err(e) => Err(e.into()),
                };
            }
            if waiting {
                // The owner's foreground deletion deletes it.
                return Ok(Requeue::No);
            }
            if !live {
                // The cache may be behind: the dependent may have been given a live owner a
                // moment ago. Read it, and judge its owners again if its references changed.
                let fresh = match api.get(&item.name).await {
                    Ok(o) => o.metadata,
                    Err(e) if is_not_found(&e) => return Ok(Requeue::No),
                    Err(e) => return Err(e.into()),
                };
                if fresh.uid != meta.uid {
                    // Another object of that name now: its own events bring it here.
                    return Ok(Requeue::No);
                }
                let changed = fresh.owner_references != meta.owner_references
                    || fresh.deletion_timestamp.is_some();
                meta = fresh;
                live = true;
                if changed {
                    continue;
                }
            }
            tracing::info!(object = %item, "deleting object whose owners are all gone");
            let deleted = delete_background(
                &api,
                &item.name,
                meta.uid.clone(),
                meta.resource_version.clone(),
            )
            .await?;
            return Ok(if deleted {
                Requeue::No
            } else {
                // It changed since it was read: look again.
                Requeue::After(Duration::ZERO)
            });
        }
    }

    /// Looks an owner up: the cache first for the cached kinds, then the API server.
    async fn owner(&self, ns: &str, r: &OwnerReference) -> Result<Owner> {
        if let Some(kind) = Kind::of(&r.api_version, &r.kind) {
            if let Some(m) = self.cached_meta(kind, owner_namespace(kind, ns), &r.name)
                && m.uid.as_deref() == Some(r.uid.as_str())
            {
                return Ok(Owner::Present(Box::new(m)));
            }
            // The cache may not show it yet: ask before concluding it is gone.
            let ns = kind.namespaced().then_some(ns);
            return self.live_owner(&kind.resource(), ns, r).await;
        }
        let Some((resource, namespaced)) = self.discover(&r.api_version, &r.kind).await? else {
            return Ok(Owner::Unknown);
        };
        self.live_owner(&resource, namespaced.then_some(ns), r)
            .await
    }

    async fn live_owner(
        &self,
        resource: &ApiResource,
        ns: Option<&str>,
        r: &OwnerReference,
    ) -> Result<Owner> {
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, resource),
            None => Api::all_with(self.ctx.client.clone(), resource),
        };
        match api.get(&r.name).await {
            Ok(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                Ok(Owner::Present(Box::new(o.metadata)))
            }
            Ok(_) => Ok(Owner::Absent),
            Err(e) if is_not_found(&e) => Ok(Owner::Absent),
            Err(e) => Err(e.into()),
        }
    }

    /// The resource and scope of an owner kind outside the caches; `None` when the API
    /// server does not serve it.
    async fn discover(&self, api_version: &str, kind: &str) -> Result<Option<(ApiResource, bool)>> {
        let key = (api_version.to_string(), kind.to_string());
        if let Ok(d) = self.discovered.lock()
            && let Some(found) = d.get(&key)
        {
            return Ok(Some(found.clone()));
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.ctx.client, &gvk).await {
            Ok((resource, caps)) => {
                let found = (resource, caps.scope == Scope::Namespaced);
                if let Ok(mut d) = self.discovered.lock() {
                    d.insert(key, found.clone());
                }
                Ok(Some(found))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Carries out an owner's `foregroundDeletion` or `orphan` finalizer.
    async fn process_owner(&self, item: &Item) -> Result<Requeue> {
        let Some(meta) = self.cached_meta(item.kind, &item.namespace, &item.name) else {
            return Ok(Requeue::No);
        };
        let Some(uid) = meta.uid.as_deref() else {
            return Ok(Requeue::No);
        };
        if meta.deletion_timestamp.is_none() {
            return Ok(Requeue::No);
        }
        if has_finalizer(&meta, FOREGROUND) {
            return self.foreground(item, uid).await;
        }
        if has_finalizer(&meta, ORPHAN) {
            self.orphan(item, uid).await?;
            self.remove_finalizer(item, uid, ORPHAN).await?;
        }
        Ok(Requeue::No)
    }

    /// The dependents of the owner `item` with `uid`, listed live (the cache may not show
    /// the newest ones yet): in the owner's namespace, or everywhere for a cluster-scoped
    /// owner.
    async fn live_dependents(&self, item: &Item, uid: &str) -> Result<Vec<(Kind, DynamicObject)>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let api = if item.kind.namespaced() {
                if !kind.namespaced() {
                    continue;
                }
                self.api(kind, &item.namespace)
            } else {
                Api::all_with(self.ctx.client.clone(), &kind.resource())
            };
            let list = api.list(&ListParams::default()).await?;
            out.extend(
                list.items
                    .into_iter()
                    .filter(|o| references(&o.metadata, uid).is_some())
                    .map(|o| (kind, o)),
            );
        }
        Ok(out)
    }

    /// Deletes the owner's dependents; removes `foregroundDeletion` once none of those
    /// blocking the owner (`blockOwnerDeletion`) remain, in the cache and then in a live
    /// list (a dependent created a moment ago may not be cached yet).
    async fn foreground(&self, item: &Item, uid: &str) -> Result<Requeue> {
        let cached: Vec<(Kind, ObjectMeta)> = self
            .dependents_of(uid)
            .into_iter()
            .filter_map(|d| Some((d.kind, self.cached_meta(d.kind, &d.namespace, &d.name)?)))
            .collect();
        if self.delete_dependents(item, uid, cached).await? > 0 {
            return Ok(Requeue::After(FOREGROUND_RECHECK));
        }
        let live: Vec<(Kind, ObjectMeta)> = self
            .live_dependents(item, uid)
            .await?
            .into_iter()
            .map(|(k, o)| (k, o.metadata))
            .collect();
        if self.delete_dependents(item, uid, live).await? > 0 {
            return Ok(Requeue::After(FOREGROUND_RECHECK));
        }
        self.remove_finalizer(item, uid, FOREGROUND).await?;
        Ok(Requeue::No)
    }

    /// Deletes the dependents not being deleted yet; returns how many block the owner.
    async fn delete_dependents(
        &self,
        owner: &Item,
        uid: &str,
        dependents: Vec<(Kind, ObjectMeta)>,
    ) -> Result<usize> {
        let mut blocking = 0usize;
        for (kind, dep) in dependents {
            let Some(r) = references(&dep, uid) else {
                continue;
            };
            if r.block_owner_deletion == Some(true) {
                blocking += 1;
            }
            if dep.deletion_timestamp.is_none() {
                let name = dep.name.clone().unwrap_or_default();
                let ns = dep.namespace.clone().unwrap_or_default();
                tracing::info!(owner = %owner, dependent = %name, "deleting dependent in the foreground");
                // A conflict (it changed: it may no longer be this owner's) is left to the
                // next look, which the live list below or the recheck makes.
                delete_background(&self.api(kind, &ns), &name, dep.uid, dep.resource_version)
                    .await?;
            }
        }
        Ok(blocking)
    }

    /// Removes the owner's references from its dependents.
    async fn orphan(&self, item: &Item, uid: &str) -> Result<()> {
        for (kind, dep) in self.live_dependents(item, uid).await? {
            let name = dep.metadata.name.clone().unwrap_or_default();
            let ns = dep.metadata.namespace.clone().unwrap_or_default();
            let keep: Vec<&OwnerReference> = dep
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.uid != uid)
                .collect();
            let patch = owner_refs_patch(dep.metadata.resource_version.as_deref(), &keep);
            tracing::info!(owner = %item, dependent = %name, "orphaning dependent");
            match self
                .api(kind, &ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Removes `finalizer` from the owner (read live, written with its resourceVersion as a
    /// precondition); the API server completes the deletion when the last one goes.
    async fn remove_finalizer(&self, item: &Item, uid: &str, finalizer: &str) -> Result<()> {
        let api = self.api(item.kind, &item.namespace);
        let owner = match api.get(&item.name).await {
            Ok(o) => o,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if owner.metadata.uid.as_deref() != Some(uid) || !has_finalizer(&owner.metadata, finalizer)
        {
            return Ok(());
        }
        let rest: Vec<&String> = owner
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != finalizer)
            .collect();
        let rest = if rest.is_empty() {
            Value::Null
        } else {
            json!(rest)
        };
        let patch = json!({"metadata": {
            "resourceVersion": owner.metadata.resource_version,
            "finalizers": rest,
        }});
        tracing::info!(owner = %item, finalizer, "removing finalizer");
        match api
            .patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes `name` with propagation `Background`, only if it is still the object with `uid`
/// (and, when given, still at `resource_version`). True when it is deleted or gone; false
/// when a precondition failed: another object of that name, or this one changed.
async fn delete_background(
    api: &Api<DynamicObject>,
    name: &str,
    uid: Option<String>,
    resource_version: Option<String>,
) -> Result<bool> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: (uid.is_some() || resource_version.is_some()).then_some(Preconditions {
            uid,
            resource_version,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::core::v1::Pod;
    use keelson_client::Change;

    use super::*;
    use crate::replication::fake_api;

    fn owner_ref(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ReplicationController".into(),
            name: format!("rc-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    #[test]
    fn kinds_are_recognised_by_api_version_and_kind() {
        assert_eq!(Kind::of("v1", "Pod"), Some(Kind::Pod));
        assert_eq!(
            Kind::of("v1", "ReplicationController"),
            Some(Kind::ReplicationController)
        );
        assert_eq!(Kind::of("apps/v1", "ReplicaSet"), None);
        assert_eq!(Kind::of("v1", "Node"), Some(Kind::Node));
        assert!(!Kind::Node.namespaced() && Kind::ConfigMap.namespaced());
        assert_eq!(owner_namespace(Kind::Node, "default"), "");
        assert_eq!(owner_namespace(Kind::Secret, "default"), "default");
        assert_eq!(
            Kind::ReplicationController.resource().plural,
            "replicationcontrollers"
        );
    }

    #[test]
    fn the_index_follows_owner_references_through_changes() {
        let idx = OwnerIndex::default();
        let meta = |refs: &[&str]| ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            owner_references: Some(refs.iter().map(|u| owner_ref(u, true)).collect()),
            ..ObjectMeta::default()
        };
        let (a, ab, b) = (meta(&["a"]), meta(&["a", "b"]), meta(&["b"]));
        idx.update(Kind::Pod, None, Some(&a));
        assert_eq!(idx.dependents_of("a").len(), 1);
        idx.update(Kind::Pod, Some(&a), Some(&ab));
        assert_eq!(idx.dependents_of("b")[0].name, "p");
        idx.update(Kind::Pod, Some(&ab), Some(&b));
        assert!(idx.dependents_of("a").is_empty());
        // The same name in another kind is another object.
        idx.update(Kind::ConfigMap, None, Some(&b));
        assert_eq!(idx.dependents_of("b").len(), 2);
        idx.update(Kind::Pod, Some(&b), None);
        idx.update(Kind::ConfigMap, Some(&b), None);
        assert!(idx.dependents_of("b").is_empty());
        assert!(idx.by_owner.lock().unwrap().is_empty());
    }

    #[test]
    fn reference_patches_keep_the_others_or_remove_the_field() {
        let a = owner_ref("a", true);
        let p = owner_refs_patch(Some("7"), &[&a]);
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "a");
        let p = owner_refs_patch(Some("7"), &[]);
        assert!(p["metadata"]["ownerReferences"].is_null());
        assert!(
            p["metadata"]
                .as_object()
                .unwrap()
                .contains_key("ownerReferences")
        );
    }

    #[test]
    fn references_and_finalizers_are_found_by_uid_and_name() {
        let meta = ObjectMeta {
            owner_references: Some(vec![owner_ref("a", true), owner_ref("b", false)]),
            finalizers: Some(vec![ORPHAN.into()]),
            ..ObjectMeta::default()
        };
        assert_eq!(references(&meta, "b").unwrap().name, "rc-b");
        assert!(references(&meta, "c").is_none());
        assert!(has_finalizer(&meta, ORPHAN));
        assert!(!has_finalizer(&meta, FOREGROUND));
    }

    /// Pod `p` in `default` with resourceVersion `rv`, owned by the RCs with `owners` uids.
    fn dependent(rv: &str, owners: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                uid: Some("p-uid".into()),
                resource_version: Some(rv.into()),
                owner_references: Some(owners.iter().map(|u| owner_ref(u, true)).collect()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    const POD: &str = "/api/v1/namespaces/default/pods/p";

    /// A collector over a fake API server where the RC `rc-live` exists, every other RC is
    /// gone and pod `p` is `live`; its pod cache holds `cached`. `delete` answers the
    /// deletion of `p`.
    fn collector(cached: Pod, live: Pod, delete: (u16, Value)) -> (Gc, fake_api::Calls) {
        let (client, calls) = fake_api::client(move |call| {
            let rcs = "/api/v1/namespaces/default/replicationcontrollers/";
            match (call.method.as_str(), call.path.as_str()) {
                ("GET", POD) => (200, serde_json::to_value(&live).unwrap()),
                ("DELETE", POD) => delete.clone(),
                ("GET", path) if path == format!("{rcs}rc-live") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "ReplicationController",
                        "metadata": {"name": "rc-live", "namespace": "default", "uid": "live"}}),
                ),
                _ => fake_api::failure(404, "NotFound"),
            }
        });
        let ctx = fake_api::context(client);
        ctx.informers.pods.apply(Change::Applied(cached));
        let gc = Gc {
            ctx,
            dependents: Queue::new(),
            owners: Queue::new(),
            owned: OwnerIndex::default(),
            discovered: Mutex::new(HashMap::new()),
        };
        (gc, calls)
    }

    fn item() -> Item {
        Item {
            kind: Kind::Pod,
            namespace: "default".into(),
            name: "p".into(),
        }
    }

    #[tokio::test]
    async fn a_dependent_just_given_a_live_owner_is_not_collected() {
        // The cache still shows p owned by a gone RC only; it has just been re-pointed to a
        // live one.
        let (gc, calls) = collector(
            dependent("5", &["gone"]),
            dependent("6", &["live"]),
            (200, json!({})),
        );
        assert!(matches!(
            gc.check_dependent(&item()).await.unwrap(),
            Requeue::No
        ));
        let calls = calls.lock().unwrap().clone();
        assert!(calls.iter().any(|c| c.is("GET", POD)), "{calls:#?}");
        assert!(
            !calls.iter().any(|c| c.method == "DELETE"),
            "a dependent with a live owner was deleted: {calls:#?}"
        );
    }

    #[tokio::test]
    async fn an_orphaned_dependent_is_deleted_only_as_read() {
        // Gone owner in the cache and live: deleted, with the uid and resourceVersion read.
        let (gc, calls) = collector(
            dependent("5", &["gone"]),
            dependent("5", &["gone"]),
            (200, json!({})),
        );
        assert!(matches!(
            gc.check_dependent(&item()).await.unwrap(),
            Requeue::No
        ));
        let calls = calls.lock().unwrap().clone();
        let delete = calls.iter().find(|c| c.is("DELETE", POD)).unwrap();
        assert_eq!(delete.body["preconditions"]["uid"], "p-uid", "{delete:?}");
        assert_eq!(
            delete.body["preconditions"]["resourceVersion"], "5",
            "{delete:?}"
        );
        assert_eq!(delete.body["propagationPolicy"], "Background", "{delete:?}");

        // Changed between the read and the delete: checked again at once.
        let (gc, _) = collector(
            dependent("5", &["gone"]),
            dependent("5", &["gone"]),
            fake_api::failure(409, "Conflict"),
        );
        assert!(matches!(
            gc.check_dependent(&item()).await.unwrap(),
            Requeue::After(d) if d.is_zero()
        ));
    }
}
