//! The three parts wired together, without I/O: API events in, decisions out. The daemon
//! feeds it from watches and carries decisions out as bindings and events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController, Service};

use crate::Result;
use crate::cache::{Cache, pod_key};
use crate::framework::{Framework, Outcome};
use crate::queue::SchedulingQueue;

/// The scheduler name pods get when `spec.schedulerName` is unset.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What to do about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod `key` (`namespace/name`) to `node`; it is already assumed there, and
    /// [`Scheduler::pod`] still has it. If the binding fails, call
    /// [`Scheduler::binding_failed`]; when it succeeds, the watch brings the bound pod.
    Bind {
        /// The pod.
        key: String,
        /// The node.
        node: String,
    },
    /// No node fits: report `message` (Kubernetes' "0/3 nodes are available: ...") in a
    /// `FailedScheduling` event and the `PodScheduled` condition; the pod is retried after
    /// `retry_in` or when the cluster changes.
    Unschedulable {
        /// The pod.
        key: String,
        /// Why.
        message: String,
        /// The backoff.
        retry_in: Duration,
    },
    /// A policy failed; the pod is retried after `retry_in`.
    Failed {
        /// The pod.
        key: String,
        /// The error.
        message: String,
        /// The backoff.
        retry_in: Duration,
    },
}

/// Cache, framework and queue, kept consistent; see the [module docs](self).
#[derive(Debug)]
pub struct Scheduler {
    name: String,
    cache: Cache,
    framework: Framework,
    queue: SchedulingQueue<String>,
    /// Pods waiting for a node.
    pending: HashMap<String, Pod>,
    /// Pods assumed on a node whose binding has not come back through the watch yet.
    binding: HashMap<String, Pod>,
}

fn responsible(pod: &Pod, name: &str) -> bool {
    let wanted = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(DEFAULT_SCHEDULER_NAME);
    wanted == name
}

fn bound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Scheduler {
    /// A scheduler placing the pods whose `spec.schedulerName` is `name`.
    pub fn new(framework: Framework, name: impl Into<String>) -> Scheduler {
        Scheduler {
            name: name.into(),
            cache: Cache::new(),
            framework,
            queue: SchedulingQueue::new(),
            pending: HashMap::new(),
            binding: HashMap::new(),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// How many pods wait to be scheduled (active or backing off).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// How many pods are assumed on a node, their bindings not yet seen.
    pub fn binding(&self) -> usize {
        self.binding.len()
    }

    /// The pending or binding pod `key`.
    pub fn pod(&self, key: &str) -> Option<&Pod> {
        self.pending.get(key).or_else(|| self.binding.get(key))
    }

    /// When the earliest backoff expires, for the daemon to sleep until.
    pub fn next_retry(&self) -> Option<Instant> {
        self.queue.next_expiry()
    }

    /// A node was added or changed. Waiting pods are retried only when something a policy
    /// reads changed: a kubelet's heartbeat alone does not wake them.
    pub fn node_changed(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let before = self.cache.node_info(&name);
        self.cache.upsert_node(node);
        if self.cache.node_info(&name) != before {
            self.queue.cluster_changed();
        }
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, name: &str) {
        self.cache.remove_node(name);
    }

    /// A pod was added or changed: bound pods go to the cache, unbound ones of this
    /// scheduler to the queue.
    pub fn pod_changed(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        if bound(&pod) || terminal(&pod) {
            self.pending.remove(&key);
            self.binding.remove(&key);
            self.queue.remove(&key);
            self.cache.upsert_pod(&pod);
        } else if responsible(&pod, &self.name) && !self.cache.is_placed(&key) {
            self.queue.add(key.clone());
            self.pending.insert(key, pod);
        }
    }

    /// A pod was deleted: its node has room again.
    pub fn pod_deleted(&mut self, key: &str) {
        self.pending.remove(key);
        self.binding.remove(key);
        self.queue.remove(&key.to_string());
        self.cache.remove_pod(key);
        self.queue.cluster_changed();
    }

    /// A service was added or changed.
    pub fn service_changed(&mut self, svc: &Service) {
        self.cache.upsert_service(svc);
    }

    /// A service was deleted.
    pub fn service_deleted(&mut self, namespace: &str, name: &str) {
        self.cache.remove_service(namespace, name);
    }

    /// A replication controller was added or changed.
    pub fn rc_changed(&mut self, rc: &ReplicationController) {
        self.cache.upsert_rc(rc);
    }

    /// A replication controller was deleted.
    pub fn rc_deleted(&mut self, namespace: &str, name: &str) {
        self.cache.remove_rc(namespace, name);
    }

    /// The binding of `key` failed: undo the assumption and retry after the returned
    /// backoff. `None` when the pod is no longer waiting for its binding (deleted, or bound
    /// after all).
    pub fn binding_failed(&mut self, key: &str, now: Instant) -> Option<Duration> {
        let pod = self.binding.remove(key)?;
        self.cache.forget(key);
        self.pending.insert(key.to_string(), pod);
        Some(self.queue.backoff(key.to_string(), now))
    }

    /// The binding of `key` will not happen and must not be retried (the API server said
    /// the pod is gone or already bound): undo the assumption and wait for the watch.
    pub fn binding_abandoned(&mut self, key: &str) {
        if self.binding.remove(key).is_some() {
            self.cache.forget(key);
        }
    }

    /// Schedules the next pod that is due at `now`, if any.
    pub fn schedule_next(&mut self, now: Instant) -> Result<Option<Decision>> {
        self.framework.apply(self.cache.take_changes())?;
        let key = loop {
            let Some(key) = self.queue.pop(now) else {
                return Ok(None);
            };
            if self.pending.contains_key(&key) {
                break key;
            }
        };
        let Some(pod) = self.pending.get(&key) else {
            return Ok(None);
        };
        let info = self.cache.pod_info(pod);
        match self.framework.schedule(&info) {
            Ok(Outcome::Scheduled { node, .. }) => {
                if let Some(pod) = self.pending.remove(&key) {
                    self.cache.assume(&pod, &node);
                    self.binding.insert(key.clone(), pod);
                }
                self.queue.remove(&key);
                self.framework.apply(self.cache.take_changes())?;
                Ok(Some(Decision::Bind { key, node }))
            }
            Ok(Outcome::Unschedulable(e)) => {
                let retry_in = self.queue.backoff(key.clone(), now);
                Ok(Some(Decision::Unschedulable {
                    key,
                    message: e.to_string(),
                    retry_in,
                }))
            }
            Err(e) => {
                let retry_in = self.queue.backoff(key.clone(), now);
                Ok(Some(Decision::Failed {
                    key,
                    message: e.to_string(),
                    retry_in,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::config::PolicyConfig;

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, cpu: &str, labels: Value) -> Node {
        obj(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
    }

    fn pod(name: &str, cpu: &str, extra: Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu}}}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        obj(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
    }

    fn scheduler() -> Scheduler {
        let fw = Framework::builtin(&PolicyConfig::default_provider(), 9).unwrap();
        Scheduler::new(fw, DEFAULT_SCHEDULER_NAME)
    }

    #[test]
    fn pods_land_where_they_fit_and_assumed_pods_count() {
        let mut s = scheduler();
        let t = Instant::now();
        s.node_changed(node("small", "1", json!({})));
        s.node_changed(node("big", "4", json!({"disk": "ssd"})));
        s.pod_changed(pod("a", "1500m", json!({})));
        s.pod_changed(pod("b", "500m", json!({"nodeSelector": {"disk": "ssd"}})));
        s.pod_changed(pod("c", "2", json!({})));
        let mut got = Vec::new();
        while let Some(d) = s.schedule_next(t).unwrap() {
            got.push(d);
        }
        let bind = |k: &str, n: &str| Decision::Bind {
            key: k.into(),
            node: n.into(),
        };
        assert_eq!(got[0], bind("default/a", "big"));
        assert_eq!(got[1], bind("default/b", "big"));
        // 2 CPUs are left on big only because a and b were assumed there.
        assert_eq!(got[2], bind("default/c", "big"));
        assert_eq!(s.pending(), 0);
        // A fourth pod no longer fits anywhere.
        s.pod_changed(pod("d", "1500m", json!({})));
        match s.schedule_next(t).unwrap() {
            Some(Decision::Unschedulable {
                message, retry_in, ..
            }) => {
                assert_eq!(message, "0/2 nodes are available: 2 Insufficient cpu.");
                assert_eq!(retry_in, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_impossible_pod_is_scheduled_once_a_fitting_node_appears() {
        let mut s = scheduler();
        let t = Instant::now();
        s.node_changed(node("small", "1", json!({})));
        s.pod_changed(pod("big", "3", json!({})));
        assert!(matches!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Unschedulable { .. })
        ));
        assert_eq!(s.schedule_next(t).unwrap(), None, "backing off");
        assert_eq!(s.next_retry(), Some(t + Duration::from_secs(1)));
        s.node_changed(node("large", "8", json!({})));
        assert_eq!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Bind {
                key: "default/big".into(),
                node: "large".into()
            })
        );
    }

    #[test]
    fn other_schedulers_and_bound_pods_are_not_queued() {
        let mut s = scheduler();
        let t = Instant::now();
        s.node_changed(node("n", "4", json!({})));
        s.pod_changed(pod("mine", "1", json!({})));
        s.pod_changed(pod("theirs", "1", json!({"schedulerName": "other"})));
        s.pod_changed(pod("bound", "1", json!({"nodeName": "n"})));
        assert_eq!(s.pending(), 1);
        assert_eq!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Bind {
                key: "default/mine".into(),
                node: "n".into()
            })
        );
        assert_eq!(s.cache().node_info("n").unwrap().requested.cpu, 2000);
    }

    #[test]
    fn a_heartbeat_does_not_wake_waiting_pods_but_new_room_does() {
        let mut s = scheduler();
        let t = Instant::now();
        s.node_changed(node("n", "1", json!({})));
        s.pod_changed(pod("p", "2", json!({})));
        assert!(matches!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Unschedulable { .. })
        ));
        // The kubelet reports in: only timestamps change.
        let mut beat = node("n", "1", json!({}));
        if let Some(c) = beat
            .status
            .as_mut()
            .and_then(|st| st.conditions.as_mut())
            .and_then(|c| c.first_mut())
        {
            c.message = Some("kubelet is posting ready status".into());
        }
        s.node_changed(beat);
        assert_eq!(s.schedule_next(t).unwrap(), None, "still backing off");
        s.node_changed(node("n", "4", json!({})));
        assert!(matches!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Bind { .. })
        ));
    }

    #[test]
    fn deleting_a_pod_frees_room_and_retries() {
        let mut s = scheduler();
        let t = Instant::now();
        s.node_changed(node("n", "2", json!({})));
        s.pod_changed(pod("old", "2", json!({"nodeName": "n"})));
        s.pod_changed(pod("new", "1", json!({})));
        assert!(matches!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Unschedulable { .. })
        ));
        s.pod_deleted("default/old");
        assert_eq!(
            s.schedule_next(t).unwrap(),
            Some(Decision::Bind {
                key: "default/new".into(),
                node: "n".into()
            })
        );
        // A failed binding undoes the assumption and retries after the backoff.
        assert_eq!(s.binding(), 1);
        assert_eq!(
            s.binding_failed("default/new", t),
            Some(Duration::from_secs(1))
        );
        assert_eq!(s.binding(), 0);
        assert_eq!(s.cache().node_info("n").unwrap().pod_count, 0);
        assert_eq!(s.schedule_next(t).unwrap(), None);
        assert!(matches!(
            s.schedule_next(t + Duration::from_secs(1)).unwrap(),
            Some(Decision::Bind { .. })
        ));
    }
}
