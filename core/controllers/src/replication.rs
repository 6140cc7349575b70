//! The replication controller: keeps `spec.replicas` pods of every ReplicationController,
//! as kube-controller-manager's `replicationcontroller` does.
//!
//! A reconcile claims the pods of the RC's namespace (adopting orphans its selector matches,
//! releasing pods of its own that no longer match), creates or deletes pods to reach
//! `spec.replicas`, and writes `status`. The watch cache lags behind the controller's own
//! writes, so [`Expectations`] remember the pods created that the cache has not shown yet and
//! the pods deleted that it still shows, and a reconcile right after another counts them
//! instead of acting twice. A reconcile takes its snapshot of the pods and settles the
//! expectations against that same snapshot, at once and under the lock the watch handler
//! takes, so a pod its snapshot lacks is still expected however soon its watch event comes.
//! An adoption or release that fails on a conflict (the pod changed since the cache showed
//! it) fails the reconcile before any pod is created or deleted, and it is retried, as in
//! Kubernetes' `ClaimPods`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use keelson_client::events::{EventRecorder, EventType, reference};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use rand::Rng as _;
use serde_json::json;

use crate::gc::owner_refs_patch;
use crate::informer::Informer;
use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Error, Result, is_conflict, is_not_found};

/// The kind in the pods' controller references.
const KIND: &str = "ReplicationController";
/// How long an expectation is trusted before the controller stops waiting for the cache.
const EXPECTATION_TTL: Duration = Duration::from_secs(60);
/// At most this many pods are created or deleted by one reconcile (Kubernetes' `burstReplicas`).
const BURST_REPLICAS: usize = 500;
/// The characters Kubernetes' name generator uses (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Starts the replication controller: handlers on RCs and pods, and its workers.
pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let queue: Queue<String> = Queue::new();
    let expectations = Arc::new(Expectations::default());

    let q = queue.clone();
    ctx.informers
        .replication_controllers
        .on_change(move |old, new| {
            if let Some(rc) = new.or(old) {
                q.add(key_of(&rc.metadata));
            }
        });

    let q = queue.clone();
    let rcs = ctx.informers.replication_controllers.clone();
    let exp = expectations.clone();
    ctx.informers.pods.on_change(move |old, new| {
        exp.observe_change(old, new);
        let mut keys = BTreeSet::new();
        for pod in [old, new].into_iter().flatten() {
            keys.extend(rcs_for_pod(&rcs, pod));
        }
        for k in keys {
            q.add(k);
        }
    });

    let rc = Arc::new(Replication {
        ctx: ctx.clone(),
        recorder: ctx.recorder("replication-controller"),
        expectations,
    });
    let workers = ctx.config.concurrent_syncs;
    let task: Task = Box::pin(run_workers(
        "replicationcontroller",
        queue,
        workers,
        move |key: String| {
            let rc = rc.clone();
            async move { rc.reconcile(&key).await }
        },
    ));
    Ok(vec![task])
}

/// `namespace/name`, the queue key of an RC.
fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The RCs a pod's change concerns: its controlling RC, or for an orphan every RC of its
/// namespace whose selector matches it (they may adopt it).
fn rcs_for_pod(rcs: &Informer<ReplicationController>, pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(r) = controller_ref(&pod.metadata) {
        if r.kind == KIND && r.api_version == "v1" {
            return vec![format!("{ns}/{}", r.name)];
        }
        return Vec::new();
    }
    rcs.list_namespace(ns)
        .iter()
        .filter(|rc| selector_matches(rc, &pod.metadata))
        .map(|rc| key_of(&rc.metadata))
        .collect()
}

/// The owner reference marked `controller: true`, if any.
pub(crate) fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether the RC's selector matches the object's labels. An empty selector matches nothing
/// (the API server defaults it to the template's labels, so it is never empty in practice).
fn selector_matches(rc: &ReplicationController, meta: &ObjectMeta) -> bool {
    let Some(selector) = rc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    !selector.is_empty() && labels_match(selector, meta.labels.as_ref())
}

/// Whether every `key=value` of `wanted` is among `labels`.
fn labels_match(
    wanted: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod still counts: not finished and not being deleted.
fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition when it is True.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
}

fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some()
}

/// How long until the pod has been ready for `min_ready` (zero: available now), or `None`
/// when it is not ready or cannot become available (ready with no transition time).
fn until_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> Option<Duration> {
    let c = ready_condition(pod)?;
    if min_ready.is_zero() {
        return Some(Duration::ZERO);
    }
    let since = c.last_transition_time.as_ref()?.0;
    let ready_for = now.duration_since(since);
    let ready_for = Duration::try_from(ready_for).unwrap_or(Duration::ZERO);
    // Kubernetes: available once lastTransitionTime + minReadySeconds is before now.
    if ready_for > min_ready {
        Some(Duration::ZERO)
    } else {
        Some(min_ready - ready_for + Duration::from_millis(1))
    }
}

// ---------------------------------------------------------------------------------------------
// Which pods go first.

/// Kubernetes' order of pods to delete (`controller.ActivePodsWithRanks` with
/// `LogarithmicScaleDown`, as the replication manager sorts them at `now`): the pod that
/// sorts first is the cheapest to lose.
///
/// Unscheduled before scheduled; Pending before Unknown before Running; not ready before
/// ready; among ready pods, ready more recently first; more container restarts first; newer
/// first. Times are compared on a log2 scale of their age (pods of similar age are ties,
/// broken by uid), so a scale-down does not always take the very newest pods. The rank
/// Kubernetes adds (related pods on the same node) is zero for ReplicationControllers, which
/// have no owner of their own, and is left out.
pub(crate) fn deletion_order(a: &Pod, b: &Pod, now: Timestamp) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let (na, nb) = (node(a), node(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let phase = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    };
    let o = phase(a).cmp(&phase(b));
    if o != Ordering::Equal {
        return o;
    }
    let (ra, rb) = (is_ready(a), is_ready(b));
    if ra != rb {
        return if ra {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    if ra && rb {
        let t = |p: &Pod| {
            ready_condition(p)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        };
        let o = newer_first(a, b, t(a), t(b), now);
        if o != Ordering::Equal {
            return o;
        }
    }
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
            .unwrap_or(0)
    };
    let o = restarts(b).cmp(&restarts(a));
    if o != Ordering::Equal {
        return o;
    }
    newer_first(
        a,
        b,
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
        now,
    )
}

/// Pods `a` and `b` by their times `ta` and `tb`: equal times tie; a missing time first
/// (Kubernetes' `afterOrZero`); then the younger on a log2 scale of age at `now`, and
/// within one power of two, the smaller uid.
fn newer_first(
    a: &Pod,
    b: &Pod,
    ta: Option<Timestamp>,
    tb: Option<Timestamp>,
    now: Timestamp,
) -> Ordering {
    match (ta, tb) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(ta), Some(tb)) if ta == tb => Ordering::Equal,
        (Some(ta), Some(tb)) => match log2_age(ta, now).cmp(&log2_age(tb, now)) {
            Ordering::Equal => a.metadata.uid.cmp(&b.metadata.uid),
            o => o,
        },
    }
}

/// `floor(log2(age in ns))` at `now`, -1 for a time not in the past (Kubernetes'
/// `logarithmicRankDiff`).
fn log2_age(t: Timestamp, now: Timestamp) -> i64 {
    let age = now.duration_since(t).as_nanos();
    if age <= 0 {
        return -1;
    }
    // The integer part of log2 of a positive integer: the index of its highest bit.
    i64::from(127 - age.leading_zeros())
}

/// What a reconcile does about the number of pods.
#[derive(Debug, PartialEq)]
enum Plan<'a> {
    Nothing,
    /// Create this many.
    Create(usize),
    /// Delete these.
    Delete(Vec<&'a Arc<Pod>>),
}

/// Compares `want` with the active pods plus the creations the cache has not shown yet,
/// minus the deletions it still shows, at most [`BURST_REPLICAS`] at a time; the pods to
/// delete are the first in [`deletion_order`] among those not being deleted already.
fn plan<'a>(
    want: usize,
    active: &'a [Arc<Pod>],
    pending_creates: usize,
    pending_deletes: &HashSet<String>,
    now: Timestamp,
) -> Plan<'a> {
    let mut candidates: Vec<&Arc<Pod>> = active
        .iter()
        .filter(|p| !pending_deletes.contains(p.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let have = candidates.len() + pending_creates;
    if have < want {
        Plan::Create((want - have).min(BURST_REPLICAS))
    } else if have > want && !candidates.is_empty() {
        let diff = (have - want).min(BURST_REPLICAS).min(candidates.len());
        candidates.sort_by(|a, b| deletion_order(a, b, now));
        candidates.truncate(diff);
        Plan::Delete(candidates)
    } else {
        Plan::Nothing
    }
}

// ---------------------------------------------------------------------------------------------
// Expectations.

/// What one RC is waiting for the cache to show.
#[derive(Debug, Default)]
struct Pending {
    /// Pods created (by name) that the cache has not shown yet.
    creates: HashMap<String, Instant>,
    /// Pods deleted (by name, with their uid) that the cache still shows as active.
    deletes: HashMap<String, (String, Instant)>,
}

/// The controller's own writes the watch cache has not caught up with, per RC key.
/// Entries are forgotten once observed or after [`EXPECTATION_TTL`] (a watch event lost
/// for good must not stop the RC forever).
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    by_rc: Mutex<HashMap<String, Pending>>,
}

/// The pods one reconcile works from, and the expectations settled against them.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The cached pods of the RC's namespace.
    pub pods: Vec<Arc<Pod>>,
    /// Creations the snapshot does not show yet.
    pub pending_creates: usize,
    /// Pods whose deletion the snapshot does not show yet (names).
    pub pending_deletes: HashSet<String>,
    /// When the oldest remaining expectation expires.
    pub expiry: Option<Duration>,
}

impl Snapshot {
    /// A snapshot with nothing pending.
    fn of(pods: Vec<Arc<Pod>>) -> Snapshot {
        Snapshot {
            pods,
            ..Snapshot::default()
        }
    }
}

impl Expectations {
    /// Remembers that `rc` is creating the pod `name`.
    pub(crate) fn expect_create(&self, rc: &str, name: &str, now: Instant) {
        if let Ok(mut m) = self.by_rc.lock() {
            m.entry(rc.to_string())
                .or_default()
                .creates
                .insert(name.to_string(), now);
        }
    }

    /// Forgets an expected creation (the create failed).
    pub(crate) fn creation_failed(&self, rc: &str, name: &str) {
        self.update(rc, |p| {
            p.creates.remove(name);
        });
    }

    /// Remembers that `rc` is deleting the pod `name` with `uid`.
    pub(crate) fn expect_delete(&self, rc: &str, name: &str, uid: &str, now: Instant) {
        if let Ok(mut m) = self.by_rc.lock() {
            m.entry(rc.to_string())
                .or_default()
                .deletes
                .insert(name.to_string(), (uid.to_string(), now));
        }
    }

    /// Forgets an expected deletion (the pod was gone already, or the delete failed).
    pub(crate) fn deletion_done(&self, rc: &str, name: &str) {
        self.update(rc, |p| {
            p.deletes.remove(name);
        });
    }

    /// Takes in what a watch event says about a pod: `gone` when it was deleted.
    fn observe(&self, meta: &ObjectMeta, gone: bool) {
        let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return;
        };
        let uid = meta.uid.as_deref().unwrap_or_default();
        let inactive = gone || meta.deletion_timestamp.is_some();
        let prefix = format!("{ns}/");
        let Ok(mut m) = self.by_rc.lock() else {
            return;
        };
        for (rc, p) in m.iter_mut() {
            if !rc.starts_with(&prefix) {
                continue;
            }
            p.creates.remove(name);
            if p.deletes
                .get(name)
                .is_some_and(|(u, _)| inactive || u != uid)
            {
                p.deletes.remove(name);
            }
        }
        m.retain(|_, p| !p.creates.is_empty() || !p.deletes.is_empty());
    }

    /// Takes in a watch event on a pod (the handler's old and new object).
    fn observe_change(&self, old: Option<&Arc<Pod>>, new: Option<&Arc<Pod>>) {
        if let Some(p) = new {
            self.observe(&p.metadata, false);
        } else if let Some(p) = old {
            self.observe(&p.metadata, true);
        }
    }

    /// Takes the snapshot of the pods a reconcile of `rc` works from (`list`: the cached pods
    /// of its namespace) and settles its expectations against that same snapshot, dropping
    /// expired ones.
    ///
    /// `list` runs under the lock [`Expectations::observe`] takes. The informer updates its
    /// cache before it calls the handlers, so the watch event of a pod the snapshot lacks is
    /// observed only after the settling: a creation it has not shown is still counted as
    /// pending, however soon the event comes (settled against a later look at the cache, an
    /// event between the two would leave the pod in neither and it would be created again).
    pub(crate) fn snapshot(
        &self,
        rc: &str,
        now: Instant,
        list: impl FnOnce() -> Vec<Arc<Pod>>,
    ) -> Snapshot {
        let Ok(mut m) = self.by_rc.lock() else {
            return Snapshot::of(list());
        };
        let pods = list();
        let Some(p) = m.get_mut(rc) else {
            return Snapshot::of(pods);
        };
        let seen: HashMap<&str, &Arc<Pod>> = pods
            .iter()
            .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), p))
            .collect();
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < EXPECTATION_TTL;
        p.creates
            .retain(|name, t| fresh(t) && !seen.contains_key(name.as_str()));
        p.deletes.retain(|name, (uid, t)| {
            fresh(t)
                && seen.get(name.as_str()).is_some_and(|s| {
                    is_active(s) && s.metadata.uid.as_deref().unwrap_or_default() == uid
                })
        });
        let expiry = p
            .creates
            .values()
            .chain(p.deletes.values().map(|(_, t)| t))
            .min()
            .map(|t| EXPECTATION_TTL.saturating_sub(now.saturating_duration_since(*t)));
        let pending_creates = p.creates.len();
        let pending_deletes = p.deletes.keys().cloned().collect();
        if p.creates.is_empty() && p.deletes.is_empty() {
            m.remove(rc);
        }
        Snapshot {
            pods,
            pending_creates,
            pending_deletes,
            expiry,
        }
    }

    /// Forgets everything about `rc` (it is gone).
    pub(crate) fn forget(&self, rc: &str) {
        if let Ok(mut m) = self.by_rc.lock() {
            m.remove(rc);
        }
    }

    fn update(&self, rc: &str, f: impl FnOnce(&mut Pending)) {
        if let Ok(mut m) = self.by_rc.lock()
            && let Some(p) = m.get_mut(rc)
        {
            f(p);
            if p.creates.is_empty() && p.deletes.is_empty() {
                m.remove(rc);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reconcile.

struct Replication {
    ctx: Arc<Context>,
    recorder: EventRecorder,
    expectations: Arc<Expectations>,
}

/// What managing replicas did wrong, kept for the status condition.
struct ManageError {
    /// `FailedCreate` or `FailedDelete`.
    reason: &'static str,
    error: Error,
}

impl Replication {
    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Requeue::No);
        };
        let Some(rc) = self.ctx.informers.replication_controllers.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(Requeue::No);
        };
        // The garbage collector takes care of the pods of an RC being deleted.
        if rc.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let Some(uid) = rc.metadata.uid.clone() else {
            return Ok(Requeue::No);
        };
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);

        // Everything below counts from this one snapshot (see `Expectations::snapshot`).
        let cache = &self.ctx.informers.pods;
        let Snapshot {
            pods,
            pending_creates,
            pending_deletes,
            expiry,
        } = self
            .expectations
            .snapshot(key, Instant::now(), || cache.list_namespace(ns));
        let active = self.claim(&rc, &uid, ns, pods, &pods_api).await?;

        let manage = self
            .manage(
                &rc,
                key,
                &active,
                pending_creates,
                &pending_deletes,
                &pods_api,
            )
            .await;

        let (status, available_in) = compute_status(&rc, &active, manage.as_ref().err());
        self.write_status(&rc, ns, name, status).await?;
        manage.map_err(|e| e.error)?;

        let next = [available_in, expiry].into_iter().flatten().min();
        Ok(next.map_or(Requeue::No, Requeue::After))
    }

    /// Adopts the active orphans among `pods` the selector matches and releases active owned
    /// pods it no longer matches (finished or deleting pods are left as they are, as in
    /// Kubernetes); returns the active pods this RC controls. A conflict on either (the pod
    /// changed since the snapshot) is an error: counting without that pod could create or
    /// delete one too many, so nothing is managed until a retry sees the pod as it is now.
    async fn claim(
        &self,
        rc: &ReplicationController,
        uid: &str,
        ns: &str,
        pods: Vec<Arc<Pod>>,
        pods_api: &Api<Pod>,
    ) -> Result<Vec<Arc<Pod>>> {
        let mut owned = Vec::new();
        // Checked once, before the first adoption: the RC must still be this one and not
        // being deleted (the cache may be behind).
        let mut may_adopt: Option<bool> = None;
        for pod in pods.into_iter().filter(|p| is_active(p)) {
            let matches = selector_matches(rc, &pod.metadata);
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else {
                        self.release(&pod, uid, pods_api).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || pod.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let allowed = match may_adopt {
                        Some(a) => a,
                        None => {
                            let a = self.can_adopt(rc, uid, ns).await?;
                            may_adopt = Some(a);
                            a
                        }
                    };
                    if !allowed {
                        continue;
                    }
                    if let Some(p) = self.adopt(rc, &pod, pods_api).await? {
                        owned.push(Arc::new(p));
                    }
                }
            }
        }
        Ok(owned)
    }

    /// A live look at the RC: adoption only while it exists with this uid and is not
    /// being deleted.
    async fn can_adopt(&self, rc: &ReplicationController, uid: &str, ns: &str) -> Result<bool> {
        let api: Api<ReplicationController> = Api::namespaced(self.ctx.client.clone(), ns);
        let name = rc.metadata.name.as_deref().unwrap_or_default();
        match api.get(name).await {
            Ok(fresh) => Ok(fresh.metadata.uid.as_deref() == Some(uid)
                && fresh.metadata.deletion_timestamp.is_none()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds this RC as the pod's controller (with the cached resourceVersion as a
    /// precondition); `None` when the pod is gone. A conflict is an error (see
    /// [`Replication::claim`]).
    async fn adopt(
        &self,
        rc: &ReplicationController,
        pod: &Pod,
        pods_api: &Api<Pod>,
    ) -> Result<Option<Pod>> {
        let ours = owner_ref(rc);
        let refs: Vec<&OwnerReference> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .chain(std::iter::once(&ours))
            .collect();
        let patch = owner_refs_patch(pod.metadata.resource_version.as_deref(), &refs);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(p) => {
                tracing::info!(rc = ?rc.metadata.name, pod = name, "adopted pod");
                Ok(Some(p))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes this RC's reference from a pod its selector no longer matches (with the cached
    /// resourceVersion as a precondition). A conflict is an error (see
    /// [`Replication::claim`]).
    async fn release(&self, pod: &Pod, uid: &str, pods_api: &Api<Pod>) -> Result<()> {
        let refs: Vec<&OwnerReference> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .collect();
        let patch = owner_refs_patch(pod.metadata.resource_version.as_deref(), &refs);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        match pods_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(pod = name, "released pod");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or deletes pods as [`plan`] says.
    async fn manage(
        &self,
        rc: &ReplicationController,
        key: &str,
        active: &[Arc<Pod>],
        pending_creates: usize,
        pending_deletes: &HashSet<String>,
        pods_api: &Api<Pod>,
    ) -> Result<(), ManageError> {
        let want = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let want = usize::try_from(want).unwrap_or(0);
        let now = Timestamp::now();
        match plan(want, active, pending_creates, pending_deletes, now) {
            Plan::Nothing => Ok(()),
            Plan::Create(n) => self.create_pods(rc, key, n, pods_api).await,
            Plan::Delete(pods) => self.delete_pods(rc, key, &pods, pods_api).await,
        }
    }

    /// Creates `count` pods in batches of 1, 2, 4, ... stopping at the first failing batch
    /// (Kubernetes' slow start: a quota or admission refusal costs one call, not hundreds).
    async fn create_pods(
        &self,
        rc: &ReplicationController,
        key: &str,
        count: usize,
        pods_api: &Api<Pod>,
    ) -> Result<(), ManageError> {
        let rc_ref = reference(rc);
        let mut remaining = count;
        let mut batch = 1usize;
        while remaining > 0 {
            let size = batch.min(remaining);
            let mut calls = Vec::with_capacity(size);
            for _ in 0..size {
                let pod = pod_from_template(rc).map_err(|error| ManageError {
                    reason: "FailedCreate",
                    error,
                })?;
                let name = pod.metadata.name.clone().unwrap_or_default();
                self.expectations.expect_create(key, &name, Instant::now());
                calls.push(async move {
                    let r = pods_api.create(&PostParams::default(), &pod).await;
                    (name, r)
                });
            }
            let mut first_error = None;
            let mut terminating = false;
            for (name, r) in futures::future::join_all(calls).await {
                match r {
                    Ok(_) => self.recorder.record(
                        rc_ref.clone(),
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {name}"),
                    ),
                    Err(e) => {
                        self.expectations.creation_failed(key, &name);
                        if namespace_terminating(&e) {
                            terminating = true;
                            continue;
                        }
                        self.recorder.record(
                            rc_ref.clone(),
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {}", api_message(&e)),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
            // Every creation fails in a namespace being deleted: nothing to report or retry
            // (the namespace controller deletes the RC).
            if terminating && first_error.is_none() {
                return Ok(());
            }
            if let Some(e) = first_error {
                return Err(ManageError {
                    reason: "FailedCreate",
                    error: e.into(),
                });
            }
            remaining -= size;
            batch = batch.saturating_mul(2);
        }
        Ok(())
    }

    /// Deletes `pods` at once (with their uid as a precondition).
    async fn delete_pods(
        &self,
        rc: &ReplicationController,
        key: &str,
        pods: &[&Arc<Pod>],
        pods_api: &Api<Pod>,
    ) -> Result<(), ManageError> {
        let rc_ref = reference(rc);
        let mut calls = Vec::with_capacity(pods.len());
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.expectations
                .expect_delete(key, &name, &uid, Instant::now());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            calls.push(async move {
                let r = pods_api.delete(&name, &dp).await;
                (name, r)
            });
        }
        let mut first_error = None;
        for (name, r) in futures::future::join_all(calls).await {
            match r {
                Ok(_) => self.recorder.record(
                    rc_ref.clone(),
                    EventType::Normal,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                ),
                // Gone already, or replaced by another pod of that name: nothing to delete.
                Err(e) if is_not_found(&e) || is_conflict(&e) => {
                    self.expectations.deletion_done(key, &name);
                }
                Err(e) => {
                    self.expectations.deletion_done(key, &name);
                    self.recorder.record(
                        rc_ref.clone(),
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {}", api_message(&e)),
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(ManageError {
                reason: "FailedDelete",
                error: e.into(),
            }),
            None => Ok(()),
        }
    }

    /// Patches `status` when it differs from what the cache shows.
    async fn write_status(
        &self,
        rc: &ReplicationController,
        ns: &str,
        name: &str,
        status: ReplicationControllerStatus,
    ) -> Result<()> {
        if rc
            .status
            .as_ref()
            .is_some_and(|s| normalized(s) == normalized(&status))
        {
            return Ok(());
        }
        let api: Api<ReplicationController> = Api::namespaced(self.ctx.client.clone(), ns);
        let mut body = serde_json::to_value(&status).map_err(|e| Error::Other(e.to_string()))?;
        if status.conditions.is_none() {
            body["conditions"] = serde_json::Value::Null;
        }
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": body})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The API server's message for `e` (what Kubernetes puts in its FailedCreate events).
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Whether `e` refuses a creation because the namespace is being deleted: Kubernetes marks
/// this with the cause `NamespaceTerminating`; Keelson's API server says it in the message.
fn namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else {
        return false;
    };
    let by_cause = s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    by_cause || (s.code == 403 && s.message.contains("because it is being terminated"))
}

/// The controller reference this RC puts on its pods.
fn owner_ref(rc: &ReplicationController) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: KIND.into(),
        name: rc.metadata.name.clone().unwrap_or_default(),
        uid: rc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod from the RC's template: labels, annotations and finalizers of the template,
/// `generateName` `<rc>-` with the name already generated (so the controller knows it before
/// the API server answers), and the RC as its controller.
fn pod_from_template(rc: &ReplicationController) -> Result<Pod> {
    let rc_name = rc.metadata.name.clone().unwrap_or_default();
    let template = rc
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .ok_or_else(|| {
            Error::Other(format!(
                "replication controller {rc_name} has no pod template"
            ))
        })?;
    let tm = template.metadata.clone().unwrap_or_default();
    let prefix = format!("{rc_name}-");
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(generate_name(&prefix)),
            generate_name: Some(prefix),
            namespace: rc.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref(rc)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// `base` plus five random characters, as the API server's `generateName` does (the base
/// is cut so the name stays within 63 characters).
fn generate_name(base: &str) -> String {
    let mut base: String = base.chars().take(58).collect();
    let mut rng = rand::rng();
    for _ in 0..5 {
        let i = rng.random_range(0..NAME_ALPHABET.len());
        base.push(char::from(NAME_ALPHABET[i]));
    }
    base
}

/// The status the pods call for, and when a ready pod becomes available (requeue then).
fn compute_status(
    rc: &ReplicationController,
    active: &[Arc<Pod>],
    manage_error: Option<&ManageError>,
) -> (ReplicationControllerStatus, Option<Duration>) {
    let spec = rc.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = Duration::from_secs(
        spec.and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
            .max(0)
            .unsigned_abs()
            .into(),
    );
    let now = Timestamp::now();
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    let mut next: Option<Duration> = None;
    for pod in active {
        if labels_match(&template_labels, pod.metadata.labels.as_ref()) {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
        }
        match until_available(pod, min_ready, now) {
            Some(d) if d.is_zero() => available += 1,
            Some(d) => next = Some(next.map_or(d, |n| n.min(d))),
            None => {}
        }
    }
    let old = rc.status.as_ref().and_then(|s| s.conditions.clone());
    let mut conditions: Vec<ReplicationControllerCondition> = old
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    if let Some(e) = manage_error {
        let existing = rc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure"));
        conditions.push(existing.cloned().unwrap_or(ReplicationControllerCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(e.reason.into()),
            message: Some(e.error.to_string()),
            last_transition_time: Some(Time(now)),
        }));
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = ReplicationControllerStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(ready)),
        available_replicas: Some(count(available)),
        observed_generation: rc.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    (status, next)
}

/// A status with zero counts spelled out, for comparing what the API server omits.
fn normalized(s: &ReplicationControllerStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: s.replicas,
        fully_labeled_replicas: Some(s.fully_labeled_replicas.unwrap_or(0)),
        ready_replicas: Some(s.ready_replicas.unwrap_or(0)),
        available_replicas: Some(s.available_replicas.unwrap_or(0)),
        observed_generation: s.observed_generation,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
    }
}

/// A kube client answered by a closure, and a context over it, for the tests of this crate's
/// controllers that go through a reconcile (kept here: the crate root is not this module's).
#[cfg(test)]
pub(crate) mod fake_api {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use kube::Api;
    use serde_json::{Value, json};

    use crate::informer::Informer;
    use crate::manager::{Config, Context, Informers};

    /// One request the client made.
    #[derive(Debug, Clone)]
    pub(crate) struct Call {
        pub method: String,
        /// The path, without the query.
        pub path: String,
        /// The JSON body (`null` when there is none).
        pub body: Value,
    }

    impl Call {
        /// Whether this is `method` on `path`.
        pub(crate) fn is(&self, method: &str, path: &str) -> bool {
            self.method == method && self.path == path
        }
    }

    /// Every request made so far, in order.
    pub(crate) type Calls = Arc<Mutex<Vec<Call>>>;

    /// A client whose every request `respond` answers with a status code and a JSON body.
    pub(crate) fn client(
        respond: impl Fn(&Call) -> (u16, Value) + Send + Sync + 'static,
    ) -> (kube::Client, Calls) {
        let calls: Calls = Arc::default();
        let log = calls.clone();
        let respond = Arc::new(respond);
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (log, respond) = (log.clone(), respond.clone());
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await?;
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                log.lock().unwrap().push(call.clone());
                let (code, out) = respond(&call);
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap();
                Ok::<_, kube::Error>(response)
            }
        });
        (kube::Client::new(service, "default"), calls)
    }

    /// The API server's failure `Status` with `code`.
    pub(crate) fn failure(code: u16, reason: &str) -> (u16, Value) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": format!("fake {reason}"), "reason": reason,
            "code": code});
        (code, status)
    }

    /// A context over `client` with empty caches (fill them with `Informer::apply`).
    pub(crate) fn context(client: kube::Client) -> Arc<Context> {
        let c = || client.clone();
        let informers = Informers {
            pods: Informer::new(Api::all(c()), "pods"),
            nodes: Informer::new(Api::all(c()), "nodes"),
            services: Informer::new(Api::all(c()), "services"),
            endpoints: Informer::new(Api::all(c()), "endpoints"),
            replication_controllers: Informer::new(Api::all(c()), "replicationcontrollers"),
            namespaces: Informer::new(Api::all(c()), "namespaces"),
            service_accounts: Informer::new(Api::all(c()), "serviceaccounts"),
            secrets: Informer::new(Api::all(c()), "secrets"),
            config_maps: Informer::new(Api::all(c()), "configmaps"),
            resource_quotas: Informer::new(Api::all(c()), "resourcequotas"),
            node_leases: Informer::new(Api::namespaced(c(), "kube-node-lease"), "leases"),
        };
        Arc::new(Context {
            client,
            informers,
            config: Arc::new(Config::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::core::v1::{
        ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
        ReplicationControllerSpec,
    };

    use keelson_client::Change;

    use super::*;

    fn ts(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(ts("2026-01-01T00:00:00Z")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus::default()),
        }
    }

    fn on_node(mut p: Pod) -> Pod {
        p.spec.as_mut().unwrap().node_name = Some("n1".into());
        p
    }

    fn phase(mut p: Pod, phase: &str) -> Pod {
        p.status.as_mut().unwrap().phase = Some(phase.into());
        p
    }

    fn ready(mut p: Pod, since: &str) -> Pod {
        p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(ts(since)),
            ..PodCondition::default()
        }]);
        p
    }

    fn restarts(mut p: Pod, n: i32) -> Pod {
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: n,
            ..ContainerStatus::default()
        }]);
        p
    }

    fn created(mut p: Pod, at: &str) -> Pod {
        p.metadata.creation_timestamp = Some(ts(at));
        p
    }

    fn sorted(mut pods: Vec<Pod>) -> Vec<String> {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        pods.sort_by(|a, b| deletion_order(a, b, now));
        pods.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    }

    #[test]
    fn surplus_pods_go_in_kubernetes_order() {
        let t0 = "2026-01-01T00:00:00Z";
        let pods = vec![
            ready(phase(on_node(pod("running-ready-old")), "Running"), t0),
            ready(
                phase(on_node(pod("running-ready-new")), "Running"),
                "2026-05-31T23:00:00Z",
            ),
            phase(on_node(pod("running")), "Running"),
            phase(on_node(pod("unknown")), "Unknown"),
            phase(on_node(pod("pending")), "Pending"),
            phase(pod("unscheduled"), "Pending"),
        ];
        assert_eq!(
            sorted(pods),
            [
                "unscheduled",
                "pending",
                "unknown",
                "running",
                "running-ready-new",
                "running-ready-old"
            ]
        );
    }

    #[test]
    fn ties_go_to_more_restarts_then_newer_pods() {
        let pods = vec![
            created(on_node(pod("old")), "2026-01-01T00:00:00Z"),
            created(on_node(pod("new")), "2026-05-31T00:00:00Z"),
            restarts(created(on_node(pod("crashy")), "2026-01-01T00:00:00Z"), 5),
        ];
        assert_eq!(sorted(pods), ["crashy", "new", "old"]);
        let mut no_time = on_node(pod("no-time"));
        no_time.metadata.creation_timestamp = None;
        let pods = vec![on_node(pod("dated")), no_time];
        assert_eq!(sorted(pods), ["no-time", "dated"]);
        // Times within one power of two of each other (at "now", 2026-06-01) are ties,
        // broken by uid, as with Kubernetes' LogarithmicScaleDown.
        let mut b = created(on_node(pod("b")), "2026-01-02T00:00:00Z");
        b.metadata.uid = Some("1".into());
        let mut a = created(on_node(pod("a")), "2026-01-01T00:00:00Z");
        a.metadata.uid = Some("2".into());
        assert_eq!(sorted(vec![a, b]), ["b", "a"]);
        let mut b = created(on_node(pod("b")), "2026-01-02T00:00:00Z");
        b.metadata.uid = Some("2".into());
        let mut a = created(on_node(pod("a")), "2026-01-01T00:00:00Z");
        a.metadata.uid = Some("1".into());
        assert_eq!(sorted(vec![b, a]), ["a", "b"]);
    }

    #[test]
    fn ages_are_bucketed_by_powers_of_two() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let ago = |ns: i64| now - jiff::SignedDuration::from_nanos(ns);
        assert_eq!(log2_age(now, now), -1);
        assert_eq!(log2_age(ago(1), now), 0);
        assert_eq!(log2_age(ago(1023), now), 9);
        assert_eq!(log2_age(ago(1024), now), 10);
        assert_eq!(log2_age(ago(-5), now), -1);
    }

    /// Settles `default/rc` against a snapshot of `pods`: (pending creations, pending
    /// deletions, expiry).
    fn settle(
        e: &Expectations,
        now: Instant,
        pods: &[Pod],
    ) -> (usize, HashSet<String>, Option<Duration>) {
        let s = e.snapshot("default/rc", now, || {
            pods.iter().cloned().map(Arc::new).collect()
        });
        (s.pending_creates, s.pending_deletes, s.expiry)
    }

    /// The pod `name` with `uid`, being deleted when `deleting`.
    fn cached(name: &str, uid: &str, deleting: bool) -> Pod {
        let mut p = pod(name);
        p.metadata.uid = Some(uid.into());
        if deleting {
            p.metadata.deletion_timestamp = Some(ts("2026-01-01T00:00:00Z"));
        }
        p
    }

    #[test]
    fn expected_creations_count_until_seen_or_expired() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_create("default/rc", "rc-aaaaa", t0);
        e.expect_create("default/rc", "rc-bbbbb", t0);
        // The cache shows neither yet: both are pending.
        let (creates, deletes, expiry) = settle(&e, t0, &[]);
        assert_eq!(creates, 2);
        assert!(deletes.is_empty());
        assert_eq!(expiry, Some(EXPECTATION_TTL));
        // A watch event shows one; the cache shows the other at the next reconcile.
        let mut meta = pod("rc-aaaaa").metadata;
        e.observe(&meta, false);
        assert_eq!(settle(&e, t0, &[cached("rc-bbbbb", "u", false)]).0, 0);
        // Another namespace's pod of the same name is not ours.
        e.expect_create("default/rc", "rc-ccccc", t0);
        meta.namespace = Some("other".into());
        meta.name = Some("rc-ccccc".into());
        e.observe(&meta, false);
        assert_eq!(settle(&e, t0, &[]).0, 1);
        // Never seen: forgotten after the TTL.
        let later = t0 + EXPECTATION_TTL + Duration::from_secs(1);
        assert_eq!(settle(&e, later, &[]).0, 0);
        // A failed create is forgotten at once.
        e.expect_create("default/rc", "rc-ddddd", t0);
        e.creation_failed("default/rc", "rc-ddddd");
        assert_eq!(settle(&e, t0, &[]).0, 0);
    }

    #[test]
    fn expected_deletions_hold_until_the_cache_shows_them() {
        let e = Expectations::default();
        let t0 = Instant::now();
        e.expect_delete("default/rc", "rc-aaaaa", "u1", t0);
        let alive = [cached("rc-aaaaa", "u1", false)];
        let (_, deletes, _) = settle(&e, t0, &alive);
        assert!(deletes.contains("rc-aaaaa"));
        // Still shown: still pending, so a second reconcile does not pick it again.
        let (_, deletes, _) = settle(&e, t0, &alive);
        assert_eq!(deletes.len(), 1);
        // Shown with a deletionTimestamp: observed.
        let (_, deletes, _) = settle(&e, t0, &[cached("rc-aaaaa", "u1", true)]);
        assert!(deletes.is_empty());
        // Deleted from the cache (watch event): observed.
        e.expect_delete("default/rc", "rc-aaaaa", "u1", t0);
        let mut meta = pod("rc-aaaaa").metadata;
        meta.uid = Some("u1".into());
        e.observe(&meta, true);
        assert!(settle(&e, t0, &alive).1.is_empty());
        // A new pod of the same name (another uid) is not the one deleted.
        e.expect_delete("default/rc", "rc-aaaaa", "u1", t0);
        let (_, deletes, _) = settle(&e, t0, &[cached("rc-aaaaa", "u2", false)]);
        assert!(deletes.is_empty());
    }

    #[test]
    fn a_reconcile_right_after_another_counts_what_the_cache_does_not_show() {
        let now: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let names = |p: &Plan| match p {
            Plan::Delete(pods) => pods
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        // Three wanted, none yet: create three; once created (not yet cached), nothing.
        assert_eq!(plan(3, &[], 0, &HashSet::new(), now), Plan::Create(3));
        assert_eq!(plan(3, &[], 3, &HashSet::new(), now), Plan::Nothing);
        let one = [Arc::new(pod("a"))];
        assert_eq!(plan(3, &one, 2, &HashSet::new(), now), Plan::Nothing);
        assert_eq!(plan(3, &one, 1, &HashSet::new(), now), Plan::Create(1));
        // Scaled to one: two go, unscheduled before the running one; a reconcile before the
        // cache shows the deletions deletes nothing more.
        let pods = [
            Arc::new(phase(on_node(pod("a")), "Running")),
            Arc::new(pod("b")),
            Arc::new(pod("c")),
        ];
        let first = plan(1, &pods, 0, &HashSet::new(), now);
        let mut gone = names(&first);
        gone.sort();
        assert_eq!(gone, ["b", "c"]);
        let pending: HashSet<String> = gone.into_iter().collect();
        assert_eq!(plan(1, &pods, 0, &pending, now), Plan::Nothing);
        // Scaled down while creations are pending: only cached pods can be deleted.
        assert_eq!(names(&plan(0, &one, 2, &HashSet::new(), now)), ["a"]);
        assert_eq!(plan(0, &[], 2, &HashSet::new(), now), Plan::Nothing);
        // Never more than the burst at once.
        assert_eq!(
            plan(10_000, &[], 0, &HashSet::new(), now),
            Plan::Create(BURST_REPLICAS)
        );
    }

    fn rc(replicas: i32) -> ReplicationController {
        let labels: BTreeMap<String, String> = [("name".to_string(), "web".to_string())].into();
        ReplicationController {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rc-uid".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(replicas),
                selector: Some(labels.clone()),
                min_ready_seconds: Some(10),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("name".to_string(), "web".to_string()),
                                ("tier".to_string(), "front".to_string()),
                            ]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
            }),
            status: None,
        }
    }

    #[test]
    fn pods_from_the_template_carry_the_controller_reference() {
        let p = pod_from_template(&rc(1)).unwrap();
        let name = p.metadata.name.clone().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let r = controller_ref(&p.metadata).unwrap();
        assert_eq!((r.kind.as_str(), r.uid.as_str()), (KIND, "rc-uid"));
        assert_eq!(r.block_owner_deletion, Some(true));
        assert_eq!(p.metadata.labels.unwrap().get("tier").unwrap(), "front");
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let rc = rc(3);
        let now = Timestamp::now();
        let mut labeled = pod("a");
        labeled.metadata.labels = rc
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone();
        let long_ready = ready(labeled, "2020-01-01T00:00:00Z");
        let just_ready = ready(pod("b"), &now.to_string());
        let pods = vec![
            Arc::new(long_ready),
            Arc::new(just_ready),
            Arc::new(pod("c")),
        ];
        let (s, next) = compute_status(&rc, &pods, None);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(1));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.observed_generation, Some(3));
        let next = next.unwrap();
        assert!(
            next > Duration::from_secs(8) && next <= Duration::from_secs(11),
            "{next:?}"
        );
    }

    /// A pod of the `web` RC of [`rc`] (labels matching, controlled by it), or an orphan.
    fn web_pod(name: &str, owned: bool) -> Pod {
        let mut p = pod(name);
        p.metadata.labels = Some([("name".to_string(), "web".to_string())].into());
        p.metadata.resource_version = Some("5".into());
        if owned {
            p.metadata.owner_references = Some(vec![owner_ref(&rc(1))]);
        }
        p
    }

    /// A replication controller over the fake API `respond` answers first (`None`: the
    /// usual answers: the RC for GETs and status, the body back for writes); its caches
    /// hold `web` (with `replicas`) and `pods`.
    fn replication(
        replicas: i32,
        pods: &[Pod],
        respond: impl Fn(&fake_api::Call) -> Option<(u16, serde_json::Value)> + Send + Sync + 'static,
    ) -> (Replication, fake_api::Calls) {
        let web = rc(replicas);
        let body = serde_json::to_value(&web).unwrap();
        let (client, calls) = fake_api::client(move |call| {
            if let Some(r) = respond(call) {
                return r;
            }
            match call.method.as_str() {
                "GET" => (200, body.clone()),
                _ if call.path.ends_with("/status") => (200, body.clone()),
                "POST" => (201, call.body.clone()),
                _ => (200, call.body.clone()),
            }
        });
        let ctx = fake_api::context(client);
        let expectations = Arc::new(Expectations::default());
        let exp = expectations.clone();
        ctx.informers
            .pods
            .on_change(move |old, new| exp.observe_change(old, new));
        ctx.informers
            .replication_controllers
            .apply(Change::Applied(web));
        for p in pods {
            ctx.informers.pods.apply(Change::Applied(p.clone()));
        }
        let recorder = ctx.recorder("replication-controller");
        let r = Replication {
            ctx,
            recorder,
            expectations,
        };
        (r, calls)
    }

    const PODS: &str = "/api/v1/namespaces/default/pods";

    #[tokio::test]
    async fn a_creation_shown_after_the_snapshot_is_not_made_again() {
        // Reconcile #1 of `web` (two replicas) created web-x; the cache has not shown it.
        // Reconcile #2 takes its snapshot (an orphan to adopt, no web-x), and while it adopts,
        // web-x's watch event arrives. It must still count web-x: one more pod, not two.
        let pods_cache: Arc<Mutex<Option<Informer<Pod>>>> = Arc::default();
        let cache = pods_cache.clone();
        let (r, calls_log) = replication(2, &[web_pod("orphan", false)], move |call| {
            if call.is("PATCH", &format!("{PODS}/orphan")) {
                let inf = cache.lock().unwrap().clone().unwrap();
                inf.apply(Change::Applied(web_pod("web-x", true)));
                let adopted = web_pod("orphan", true);
                return Some((200, serde_json::to_value(adopted).unwrap()));
            }
            None
        });
        *pods_cache.lock().unwrap() = Some(r.ctx.informers.pods.clone());
        r.expectations
            .expect_create("default/web", "web-x", Instant::now());

        r.reconcile("default/web").await.unwrap();
        let calls = calls_log.lock().unwrap().clone();
        assert!(
            calls
                .iter()
                .any(|c| c.is("PATCH", &format!("{PODS}/orphan"))),
            "the orphan was not adopted: {calls:#?}"
        );
        assert!(
            !calls.iter().any(|c| c.is("POST", PODS)),
            "a pod was created again: {calls:#?}"
        );
        // The next reconcile sees both in the cache: still nothing to create.
        let mut adopted = web_pod("orphan", true);
        adopted.metadata.resource_version = Some("6".into());
        r.ctx.informers.pods.apply(Change::Applied(adopted));
        r.reconcile("default/web").await.unwrap();
        let calls = calls_log.lock().unwrap().clone();
        assert!(
            !calls.iter().any(|c| c.is("POST", PODS)),
            "a pod was created: {calls:#?}"
        );
    }

    #[tokio::test]
    async fn a_deletion_shown_after_the_snapshot_is_not_made_again() {
        // The symmetric case: reconcile #1 of `web` (three replicas) deleted web-c of four;
        // reconcile #2's snapshot still shows it, and its deletion event arrives while #2
        // adopts an orphan. #2 must still count web-c as going: nothing more to delete.
        let pods_cache: Arc<Mutex<Option<Informer<Pod>>>> = Arc::default();
        let cache = pods_cache.clone();
        let pods = [
            web_pod("web-a", true),
            web_pod("web-b", true),
            web_pod("web-c", true),
            web_pod("orphan", false),
        ];
        let (r, calls) = replication(3, &pods, move |call| {
            if call.is("PATCH", &format!("{PODS}/orphan")) {
                let inf = cache.lock().unwrap().clone().unwrap();
                inf.apply(Change::Deleted(keelson_client::ObjectKey {
                    namespace: "default".into(),
                    name: "web-c".into(),
                }));
                return Some((200, serde_json::to_value(web_pod("orphan", true)).unwrap()));
            }
            None
        });
        *pods_cache.lock().unwrap() = Some(r.ctx.informers.pods.clone());
        r.expectations
            .expect_delete("default/web", "web-c", "uid-web-c", Instant::now());

        r.reconcile("default/web").await.unwrap();
        let calls = calls.lock().unwrap().clone();
        assert!(
            calls
                .iter()
                .any(|c| c.is("PATCH", &format!("{PODS}/orphan"))),
            "the orphan was not adopted: {calls:#?}"
        );
        assert!(
            !calls.iter().any(|c| c.method == "DELETE"),
            "a pod was deleted again: {calls:#?}"
        );
    }

    #[tokio::test]
    async fn a_conflict_on_adoption_or_release_fails_before_managing() {
        // An orphan whose adoption conflicts (it changed since the cache showed it) must not
        // be counted out: nothing is created, and the reconcile fails to be retried.
        let (r, calls) = replication(1, &[web_pod("orphan", false)], |call| {
            (call.method == "PATCH" && call.path.starts_with(PODS))
                .then(|| fake_api::failure(409, "Conflict"))
        });
        let e = r.reconcile("default/web").await;
        assert!(e.is_err(), "a conflicting adoption was ignored");
        let calls = calls.lock().unwrap().clone();
        assert!(
            !calls.iter().any(|c| c.is("POST", PODS)),
            "a replacement was created: {calls:#?}"
        );

        // Likewise an owned pod the selector no longer matches whose release conflicts.
        let mut strayed = web_pod("strayed", true);
        strayed.metadata.labels = Some([("name".to_string(), "db".to_string())].into());
        let (r, calls) = replication(2, &[web_pod("kept", true), strayed], |call| {
            (call.method == "PATCH" && call.path.starts_with(PODS))
                .then(|| fake_api::failure(409, "Conflict"))
        });
        assert!(r.reconcile("default/web").await.is_err());
        let calls = calls.lock().unwrap().clone();
        assert!(
            !calls.iter().any(|c| c.is("POST", PODS)),
            "a replacement was created: {calls:#?}"
        );

        // A pod gone meanwhile is simply not counted: its replacement is created.
        let (r, calls) = replication(1, &[web_pod("orphan", false)], |call| {
            (call.method == "PATCH" && call.path.starts_with(PODS))
                .then(|| fake_api::failure(404, "NotFound"))
        });
        r.reconcile("default/web").await.unwrap();
        let calls = calls.lock().unwrap().clone();
        assert_eq!(
            calls.iter().filter(|c| c.is("POST", PODS)).count(),
            1,
            "{calls:#?}"
        );
    }
}
