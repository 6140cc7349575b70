//! Node lifecycle: notices nodes whose kubelet stopped heartbeating, marks them Unknown and
//! tainted, and evicts their pods once they have been gone too long.
//!
//! As Kubernetes' node lifecycle controller (`monitorNodeHealth`), every node-monitor-period
//! each node's heartbeats are looked at: the Ready condition's `lastHeartbeatTime` and the
//! renewal of its Lease in `kube-node-lease`. What counts is when *this process* saw a
//! heartbeat change, on its own clock, so a kubelet whose clock is off is judged fairly. A node
//! without a new heartbeat for node-monitor-grace-period (counted from when it was first seen
//! if it never sent one) gets its conditions set to Unknown, the `unreachable` taints, its pods
//! marked not ready, and after pod-eviction-timeout its pods are deleted, a rate-limited number
//! of nodes per second. A node whose kubelet reports Ready=False gets the `not-ready` taints and
//! is evicted the same way. Pods that tolerate the node's NoExecute taint stay for their
//! `tolerationSeconds`, or forever without it, as with Kubernetes' taint-based eviction.
//! Events are Kubernetes': `NodeNotReady`/`NodeReady` on the node, `NodeNotReady` on each pod
//! marked not ready, `DeletingAllPods` on the node (v1's node controller) once its eviction
//! starts and `TaintManagerEviction` on each pod deleted.
//!
//! Pods bound to a node wait for their kubelet to end them; a kubelet that is gone never will,
//! so once a deleted pod's grace period has passed on a node that is still down, the pod is
//! deleted for good (grace period 0), as Kubernetes' node controller did before the pod GC.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::events::{EventRecorder, EventType, reference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::manager::{Context, Task};
use crate::{Result, is_conflict, is_not_found};

/// The taint of a node that stopped heartbeating.
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose kubelet reports Ready=False.
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";
/// The conditions a kubelet owns; all become Unknown when it stops posting.
const CONDITION_TYPES: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    ctx.informers.nodes.use_cache();
    ctx.informers.node_leases.use_cache();
    ctx.informers.pods.use_cache();
    let mut monitor = Monitor {
        ctx: ctx.clone(),
        recorder: ctx.recorder("node-controller"),
        nodes: HashMap::new(),
        evictions: TokenBucket::new(ctx.config.node_eviction_rate, Instant::now()),
    };
    let period = ctx
        .config
        .node_monitor_period
        .max(Duration::from_millis(10));
    Ok(vec![Box::pin(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            monitor.pass(Instant::now()).await;
        }
    })])
}

/// How a node looks to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Heartbeating and not reporting Ready=False. A renewed Lease counts even while Ready is
    /// still the Unknown this controller wrote: the kubelet is back and will post its status.
    Healthy,
    /// Heartbeating, but the kubelet reports Ready=False.
    NotReady,
    /// No heartbeat for longer than the grace period.
    Unreachable,
}

/// What the controller remembers of one node.
#[derive(Debug)]
struct NodeState {
    /// The Ready condition's `lastHeartbeatTime` last seen.
    ready_heartbeat: Option<Timestamp>,
    /// The Lease's `renewTime` last seen.
    lease_renewal: Option<Timestamp>,
    /// When a heartbeat was last seen to change, or when the node was first seen.
    probe: Instant,
    /// Since when the node has been unreachable or not ready: the eviction timer.
    unhealthy_since: Option<Instant>,
    /// The eviction rate limit let this node's pods go (reset when the node recovers).
    eviction_admitted: bool,
}

impl NodeState {
    fn new(now: Instant) -> Self {
        Self {
            ready_heartbeat: None,
            lease_renewal: None,
            probe: now,
            unhealthy_since: None,
            eviction_admitted: false,
        }
    }

    /// Takes in the heartbeats `node` and `lease` carry; a new one resets the probe time. One
    /// that disappears is no heartbeat and is not forgotten: a cache still showing the node as
    /// it was before this controller's own write must not make that write look new.
    fn observe(&mut self, node: &Node, lease: Option<&Lease>, now: Instant) {
        if let Some(heartbeat) = ready_heartbeat(node)
            && self.ready_heartbeat != Some(heartbeat)
        {
            self.ready_heartbeat = Some(heartbeat);
            self.probe = now;
        }
        let renewal = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        if let Some(renewal) = renewal
            && self.lease_renewal != Some(renewal)
        {
            self.lease_renewal = Some(renewal);
            self.probe = now;
        }
    }

    /// Takes in the status this controller wrote: a Ready condition it added to a node that
    /// never posted one carries the node's creation time as its heartbeat, which is no sign
    /// of the kubelet. It becomes the heartbeat to compare with, the probe time unchanged, as
    /// Kubernetes keeps the probe timestamp when it saves the status it wrote.
    fn wrote(&mut self, node: &Node) {
        if let Some(heartbeat) = ready_heartbeat(node) {
            self.ready_heartbeat = Some(heartbeat);
        }
    }

    fn health(&self, node: &Node, now: Instant, grace: Duration) -> Health {
        if now.saturating_duration_since(self.probe) > grace {
            Health::Unreachable
        } else if ready_condition(node).is_some_and(|c| c.status == "False") {
            Health::NotReady
        } else {
            Health::Healthy
        }
    }
}

fn ready_heartbeat(node: &Node) -> Option<Timestamp> {
    ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0)
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The node's conditions after its kubelet stopped posting them: every one of
/// [`CONDITION_TYPES`] Unknown (added if missing), as Kubernetes' `tryUpdateNodeHealth` does.
/// `None` when they are all Unknown already.
fn conditions_unknown(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for kind in CONDITION_TYPES {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints with the unreachable/not-ready ones matching `health`; `None` when
/// nothing changes. A NoExecute taint already there keeps its `timeAdded`.
fn taints_for(current: &[Taint], health: Health, now: Timestamp) -> Option<Vec<Taint>> {
    let wanted: &[(&str, &str)] = match health {
        Health::Healthy => &[],
        Health::NotReady => &[(NOT_READY, NO_EXECUTE), (NOT_READY, NO_SCHEDULE)],
        Health::Unreachable => &[(UNREACHABLE, NO_EXECUTE), (UNREACHABLE, NO_SCHEDULE)],
    };
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            out.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                time_added: (*effect == NO_EXECUTE).then_some(Time(now)),
                value: None,
            });
        }
    }
    (out.as_slice() != current).then_some(out)
}

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`).
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// How long after the node went bad `pod` may stay on it: `pod_eviction_timeout` unless the
/// pod tolerates every NoExecute taint among `taints`, then the shortest `tolerationSeconds`
/// of the tolerations used (`None`: forever).
fn pod_may_stay(pod: &Pod, taints: &[Taint], pod_eviction_timeout: Duration) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut stay: Option<Duration> = None;
    let mut forever = true;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(pod_eviction_timeout);
        }
        // The most generous toleration of this taint counts.
        if matching.iter().all(|t| t.toleration_seconds.is_some()) {
            let secs = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .max()
                .unwrap_or(0)
                .max(0);
            let d = Duration::from_secs(secs.unsigned_abs());
            stay = Some(stay.map_or(d, |s| s.min(d)));
            forever = false;
        }
    }
    if forever && !taints.iter().any(|t| t.effect == NO_EXECUTE) {
        return Some(pod_eviction_timeout);
    }
    stay
}

/// A token bucket holding at most one token, refilled at `rate` per second: Kubernetes'
/// eviction rate limiter (burst 1).
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: 1.0,
            last: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The controller: one pass over every node per node-monitor-period.
struct Monitor {
    ctx: Arc<Context>,
    recorder: EventRecorder,
    nodes: HashMap<String, NodeState>,
    evictions: TokenBucket,
}

impl Monitor {
    async fn pass(&mut self, now: Instant) {
        let nodes = self.ctx.informers.nodes.list();
        self.nodes.retain(|name, _| {
            nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(name.as_str()))
        });
        for node in nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            if let Err(e) = self.check(&name, &node, now).await {
                tracing::warn!(controller = "nodelifecycle", node = %name, error = %e, "node health check failed; will retry");
            }
        }
    }

    async fn check(&mut self, name: &str, node: &Node, now: Instant) -> Result<()> {
        let config = self.ctx.config.clone();
        let lease = self.ctx.informers.node_leases.get("kube-node-lease", name);
        let state = self
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| NodeState::new(now));
        state.observe(node, lease.as_deref(), now);
        let health = state.health(node, now, config.node_monitor_grace_period);
        let wall = Timestamp::now();
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());

        let mut node = node.clone();
        if health == Health::Unreachable
            && let Some(conditions) = conditions_unknown(&node, wall)
        {
            node.status.get_or_insert_default().conditions = Some(conditions);
            node = match nodes
                .replace_status(name, &PostParams::default(), &node)
                .await
            {
                Ok(n) => n,
                // The kubelet (or someone) wrote meanwhile: the next pass looks again.
                Err(e) if is_conflict(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if let Some(state) = self.nodes.get_mut(name) {
                state.wrote(&node);
            }
            tracing::info!(node = %name, "node stopped posting status: conditions set to Unknown");
        }
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if let Some(taints) = taints_for(&current, health, wall) {
            node.spec.get_or_insert_default().taints = Some(taints);
            match nodes.replace(name, &PostParams::default(), &node).await {
                Ok(n) => node = n,
                // The cache was behind; the next pass sees the newer node.
                Err(e) if is_conflict(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }

        let Some(state) = self.nodes.get_mut(name) else {
            return Ok(());
        };
        match (health, state.unhealthy_since) {
            (Health::Healthy, Some(_)) => {
                state.unhealthy_since = None;
                state.eviction_admitted = false;
                self.recorder.record(
                    reference(&node),
                    EventType::Normal,
                    "NodeReady",
                    &format!("Node {name} status is now: NodeReady"),
                );
                return Ok(());
            }
            (Health::Healthy, None) => return Ok(()),
            (_, None) => {
                state.unhealthy_since = Some(now);
                self.recorder.record(
                    reference(&node),
                    EventType::Normal,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                );
            }
            (_, Some(_)) => {}
        }
        // On every pass, not only when the node went bad: pods already marked are skipped, so
        // this retries a write that failed and catches pods bound since, as Kubernetes retries
        // `MarkPodsNotReady` and marks the pods it sees updated on a node that is not ready.
        self.mark_pods_not_ready(name, wall).await;
        self.evict(name, &node, now, wall).await
    }

    /// Kubernetes' `MarkPodsNotReady`: the pods on a node that went away are not ready.
    /// Failures are logged; the next pass tries again.
    async fn mark_pods_not_ready(&self, node: &str, wall: Timestamp) {
        for pod in self.pods_on(node) {
            let mut pod = (*pod).clone();
            let Some(conditions) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) else {
                continue;
            };
            let Some(ready) = conditions
                .iter_mut()
                .find(|c| c.type_ == "Ready" && c.status != "False")
            else {
                continue;
            };
            ready.status = "False".into();
            ready.last_transition_time = Some(Time(wall));
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            match api
                .replace_status(&pod_name, &PostParams::default(), &pod)
                .await
            {
                Ok(p) => {
                    self.recorder.record(
                        reference(&p),
                        EventType::Warning,
                        "NodeNotReady",
                        "Node is not ready",
                    );
                }
                Err(e) if is_not_found(&e) => {}
                // The cache was behind (often our own write of the last pass): looked at again
                // on the next pass.
                Err(e) if is_conflict(&e) => {
                    tracing::debug!(pod = %format!("{ns}/{pod_name}"), "pod changed meanwhile; marking it not ready on the next pass");
                }
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{pod_name}"), error = %e, "could not mark pod not ready; will retry");
                }
            }
        }
    }

    /// Deletes the pods that have stayed long enough on a node that is still down, once the
    /// eviction rate limit lets this node go.
    async fn evict(
        &mut self,
        name: &str,
        node: &Node,
        now: Instant,
        wall: Timestamp,
    ) -> Result<()> {
        let Some(state) = self.nodes.get(name) else {
            return Ok(());
        };
        let Some(since) = state.unhealthy_since else {
            return Ok(());
        };
        let admitted = state.eviction_admitted;
        let timeout = self.ctx.config.pod_eviction_timeout;
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let due: Vec<Arc<Pod>> = self
            .pods_on(name)
            .into_iter()
            .filter(|p| {
                pod_may_stay(p, &taints, timeout)
                    .is_some_and(|stay| now.saturating_duration_since(since) >= stay)
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        if !admitted {
            if !self.evictions.try_take(now) {
                return Ok(());
            }
            if let Some(state) = self.nodes.get_mut(name) {
                state.eviction_admitted = true;
            }
            self.recorder.record(
                reference(node),
                EventType::Normal,
                "DeletingAllPods",
                &format!("Deleting all Pods from Node {name}."),
            );
        }
        for pod in due {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let first = pod.metadata.deletion_timestamp.is_none();
            let params = match &pod.metadata.deletion_timestamp {
                None => DeleteParams::default(),
                // The kubelet that would end it is gone: once its grace period is over,
                // nothing else will.
                Some(t) if t.0 <= wall => DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
                Some(_) => continue,
            };
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            match api.delete(&pod_name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{pod_name}"), node = %name, "deleting pod of an unavailable node");
                    if first {
                        self.recorder.record(
                            reference(&*pod),
                            EventType::Normal,
                            "TaintManagerEviction",
                            &format!("Marking for deletion Pod {ns}/{pod_name}"),
                        );
                    }
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.ctx
            .informers
            .pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(ts(1))),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: ready.map(|(status, hb)| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: status.into(),
                            last_heartbeat_time: Some(Time(ts(hb))),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(renewed))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn heartbeats_count_when_seen_to_change_on_our_clock() {
        let grace = Duration::from_secs(40);
        let t0 = Instant::now();
        let mut s = NodeState::new(t0);
        // The kubelet's clock is years behind: irrelevant, only changes count.
        let n = node(Some(("True", 100)));
        s.observe(&n, Some(&lease(5)), t0);
        assert_eq!(
            s.health(&n, t0 + Duration::from_secs(30), grace),
            Health::Healthy
        );
        // The lease keeps being renewed; the Ready heartbeat does not change.
        s.observe(&n, Some(&lease(6)), t0 + Duration::from_secs(30));
        assert_eq!(
            s.health(&n, t0 + Duration::from_secs(60), grace),
            Health::Healthy
        );
        s.observe(&n, Some(&lease(6)), t0 + Duration::from_secs(60));
        assert_eq!(
            s.health(&n, t0 + Duration::from_secs(71), grace),
            Health::Unreachable
        );
        // Ready=False with a fresh heartbeat: reachable but not ready.
        let nf = node(Some(("False", 101)));
        s.observe(&nf, Some(&lease(6)), t0 + Duration::from_secs(72));
        assert_eq!(
            s.health(&nf, t0 + Duration::from_secs(73), grace),
            Health::NotReady
        );
    }

    #[test]
    fn a_node_that_never_reported_is_judged_from_when_it_was_first_seen() {
        let grace = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut s = NodeState::new(t0);
        let n = node(None);
        s.observe(&n, None, t0);
        assert_eq!(
            s.health(&n, t0 + Duration::from_secs(3), grace),
            Health::Healthy
        );
        assert_eq!(
            s.health(&n, t0 + Duration::from_secs(4), grace),
            Health::Unreachable
        );
    }

    #[test]
    fn our_own_unknown_write_is_no_heartbeat() {
        let grace = Duration::from_secs(3);
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut s = NodeState::new(t0);
        let never = node(None);
        s.observe(&never, None, t0);
        s.observe(&never, None, at(4));
        assert_eq!(s.health(&never, at(4), grace), Health::Unreachable);
        // The controller writes Ready=Unknown, with the creation time as the heartbeat.
        let mut written = never.clone();
        written.status.as_mut().unwrap().conditions = conditions_unknown(&never, ts(500));
        s.wrote(&written);
        // The cache shows the write at once, or first the node as it was: neither is the
        // kubelet coming back.
        for (pass, seen) in [&written, &never, &written, &written]
            .into_iter()
            .enumerate()
        {
            let now = at(5 + pass as u64);
            s.observe(seen, None, now);
            assert_eq!(
                s.health(seen, now, grace),
                Health::Unreachable,
                "pass {pass}"
            );
        }
        // The kubelet's first status is.
        let back = node(Some(("True", 600)));
        s.observe(&back, None, at(10));
        assert_eq!(s.health(&back, at(10), grace), Health::Healthy);
    }

    #[test]
    fn conditions_become_unknown_like_kubernetes() {
        let n = node(Some(("True", 100)));
        let c = conditions_unknown(&n, ts(500)).unwrap();
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(100))));
        assert_eq!(ready.last_transition_time, Some(Time(ts(500))));
        let disk = c.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(c.len(), 4);
        // Already Unknown: nothing to write.
        let mut n2 = n.clone();
        n2.status.as_mut().unwrap().conditions = Some(c);
        assert!(conditions_unknown(&n2, ts(600)).is_none());
        // A node that never posted gets a Ready condition.
        let c = conditions_unknown(&node(None), ts(500)).unwrap();
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(1))));
    }

    #[test]
    fn taints_follow_health_and_keep_others() {
        let user = Taint {
            key: "dedicated".into(),
            effect: NO_SCHEDULE.into(),
            value: Some("infra".into()),
            time_added: None,
        };
        let t = taints_for(std::slice::from_ref(&user), Health::Unreachable, ts(10)).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.iter().any(|t| t.key == UNREACHABLE
            && t.effect == NO_EXECUTE
            && t.time_added == Some(Time(ts(10)))));
        assert!(taints_for(&t, Health::Unreachable, ts(20)).is_none());
        let t2 = taints_for(&t, Health::NotReady, ts(20)).unwrap();
        assert!(t2.iter().all(|t| t.key != UNREACHABLE));
        assert!(
            t2.iter()
                .any(|t| t.key == NOT_READY && t.effect == NO_SCHEDULE)
        );
        let t3 = taints_for(&t2, Health::Healthy, ts(30)).unwrap();
        assert_eq!(t3, vec![user.clone()]);
        assert!(taints_for(&t3, Health::Healthy, ts(30)).is_none());
    }

    fn pod_tolerating(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_decide_how_long_pods_stay() {
        let timeout = Duration::from_secs(300);
        let taints = taints_for(&[], Health::Unreachable, ts(0)).unwrap();
        assert_eq!(
            pod_may_stay(&Pod::default(), &taints, timeout),
            Some(timeout)
        );
        let limited = pod_tolerating(vec![Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: Some(20),
            ..Default::default()
        }]);
        assert_eq!(
            pod_may_stay(&limited, &taints, timeout),
            Some(Duration::from_secs(20))
        );
        let forever = pod_tolerating(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert_eq!(pod_may_stay(&forever, &taints, timeout), None);
        // Tolerating another taint does not help.
        let other = pod_tolerating(vec![Toleration {
            key: Some(NOT_READY.into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        assert_eq!(pod_may_stay(&other, &taints, timeout), Some(timeout));
        // Equal needs the value to match (our taints have none).
        let equal = Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Equal".into()),
            value: Some("x".into()),
            ..Default::default()
        };
        assert!(!tolerates(&equal, &taints[0]));
    }

    #[test]
    fn the_eviction_bucket_lets_one_node_go_per_interval() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.5, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_secs(1)));
        assert!(b.try_take(t0 + Duration::from_secs(2)));
        // Burst 1: a long quiet time does not save up tokens.
        assert!(b.try_take(t0 + Duration::from_secs(100)));
        assert!(!b.try_take(t0 + Duration::from_secs(100)));
    }
}
