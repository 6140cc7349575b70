//! The pod garbage collector: removes pods nothing else will ever finish, as Kubernetes'
//! `podgc` controller does.
//!
//! - A pod bound to a node that no longer exists (the node was deleted, say after its machine
//!   vanished) has no kubelet to stop it and would hold its replication controller's count
//!   forever: after a quarantine (the node-monitor grace period, so a node re-registering
//!   promptly is not punished) and a live check that the node is really gone, the pod is
//!   deleted for good (grace period 0) and its controller replaces it.
//! - A pod marked for deletion that was never scheduled is deleted for good at once.
//! - Finished pods (Succeeded or Failed) beyond `terminated_pod_gc_threshold` are deleted,
//!   oldest first.
//!
//! It sweeps the caches periodically (every 20 s, or half the grace period if shorter) rather
//! than reacting to each change: none of this is urgent, and a sweep sees the whole picture.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};

use crate::manager::{Context, Task};
use crate::{Result, is_not_found};

/// Kubernetes' sweep period.
const SWEEP_PERIOD: Duration = Duration::from_secs(20);

pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    ctx.informers.pods.use_cache();
    ctx.informers.nodes.use_cache();
    let period = SWEEP_PERIOD
        .min(ctx.config.node_monitor_grace_period / 2)
        .max(Duration::from_millis(100));
    let mut gc = PodGc {
        ctx: ctx.clone(),
        missing_since: HashMap::new(),
    };
    Ok(vec![Box::pin(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            gc.sweep(Instant::now()).await;
        }
    })])
}

struct PodGc {
    ctx: Arc<Context>,
    /// Nodes that pods are bound to but the cache lacks, and since when.
    missing_since: HashMap<String, Instant>,
}

/// What one sweep decided, before any request is made.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Nodes missing for longer than the quarantine: their pods go once a live read agrees.
    gone_nodes: Vec<String>,
    /// Pods (namespace, name, uid) to delete for good.
    unscheduled_terminating: Vec<(String, String, String)>,
    /// Finished pods over the threshold, oldest first.
    terminated: Vec<(String, String, String)>,
}

fn id(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Decides a sweep from the cached pods and node names. `missing_since` is updated: nodes
/// that reappeared (or have no pods left) are forgotten.
fn plan(
    pods: &[Arc<Pod>],
    nodes: &HashSet<String>,
    missing_since: &mut HashMap<String, Instant>,
    quarantine: Duration,
    threshold: usize,
    now: Instant,
) -> Plan {
    let mut out = Plan::default();
    let mut missing_now = HashSet::new();
    let mut terminated = Vec::new();
    for pod in pods {
        if let Some(node) = node_of(pod) {
            if !nodes.contains(node) {
                missing_now.insert(node.to_string());
            }
        } else if pod.metadata.deletion_timestamp.is_some() {
            out.unscheduled_terminating.push(id(pod));
        }
        if is_terminated(pod) {
            terminated.push(pod.clone());
        }
    }
    missing_since.retain(|n, _| missing_now.contains(n));
    for node in missing_now {
        let since = *missing_since.entry(node.clone()).or_insert(now);
        if now.duration_since(since) >= quarantine {
            out.gone_nodes.push(node);
        }
    }
    out.gone_nodes.sort();
    if threshold > 0 && terminated.len() > threshold {
        terminated.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let extra = terminated.len() - threshold;
        out.terminated = terminated.iter().take(extra).map(|p| id(p)).collect();
    }
    out
}

impl PodGc {
    async fn sweep(&mut self, now: Instant) {
        let inf = &self.ctx.informers;
        let pods = inf.pods.list();
        let nodes: HashSet<String> = inf
            .nodes
            .list()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let plan = plan(
            &pods,
            &nodes,
            &mut self.missing_since,
            self.ctx.config.node_monitor_grace_period,
            self.ctx.config.terminated_pod_gc_threshold,
            now,
        );
        let nodes_api: Api<Node> = Api::all(self.ctx.client.clone());
        for node in &plan.gone_nodes {
            // The cache may lag behind a node that re-registered: ask the API server.
            match nodes_api.get_opt(node).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::warn!(node, error = %e, "pod GC: could not check node");
                    continue;
                }
            }
            for pod in pods.iter().filter(|p| node_of(p) == Some(node.as_str())) {
                let (ns, name, uid) = id(pod);
                tracing::info!(pod = %format!("{ns}/{name}"), node, "pod GC: deleting pod bound to a node that no longer exists");
                self.force_delete(&ns, &name, &uid).await;
            }
            self.missing_since.remove(node);
        }
        for (ns, name, uid) in &plan.unscheduled_terminating {
            tracing::info!(pod = %format!("{ns}/{name}"), "pod GC: deleting unscheduled terminating pod");
            self.force_delete(ns, name, uid).await;
        }
        for (ns, name, uid) in &plan.terminated {
            tracing::info!(pod = %format!("{ns}/{name}"), "pod GC: deleting finished pod over the threshold");
            self.force_delete(ns, name, uid).await;
        }
    }

    /// Deletes the pod with grace period 0, only if it is still the same pod (uid).
    async fn force_delete(&self, ns: &str, name: &str, uid: &str) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()).filter(|u| !u.is_empty()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod GC: delete failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, created_s: i64) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::from_second(created_s).unwrap()));
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: node.map(str::to_string),
            ..Default::default()
        });
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn pods_on_missing_nodes_wait_out_the_quarantine() {
        let pods = vec![
            pod("a", Some("gone"), "Running", 1),
            pod("b", Some("here"), "Running", 2),
        ];
        let nodes: HashSet<String> = ["here".to_string()].into();
        let mut missing = HashMap::new();
        let t0 = Instant::now();
        let q = Duration::from_secs(40);
        let p = plan(&pods, &nodes, &mut missing, q, 0, t0);
        assert!(p.gone_nodes.is_empty());
        assert!(missing.contains_key("gone"));
        let p = plan(&pods, &nodes, &mut missing, q, 0, t0 + q);
        assert_eq!(p.gone_nodes, ["gone"]);
        // The node came back: forgotten, and the quarantine starts over if it goes again.
        let nodes: HashSet<String> = ["here".to_string(), "gone".to_string()].into();
        let p = plan(&pods, &nodes, &mut missing, q, 0, t0 + q * 2);
        assert!(p.gone_nodes.is_empty());
        assert!(missing.is_empty());
    }

    #[test]
    fn unscheduled_terminating_and_excess_finished_pods() {
        let mut deleting = (*pod("d", None, "Pending", 1)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::from_second(5).unwrap()));
        let pods = vec![
            Arc::new(deleting),
            pod("old", Some("n"), "Succeeded", 10),
            pod("mid", Some("n"), "Failed", 20),
            pod("new", Some("n"), "Succeeded", 30),
            pod("run", Some("n"), "Running", 0),
        ];
        let nodes: HashSet<String> = ["n".to_string()].into();
        let p = plan(
            &pods,
            &nodes,
            &mut HashMap::new(),
            Duration::from_secs(1),
            1,
            Instant::now(),
        );
        assert_eq!(p.unscheduled_terminating.len(), 1);
        assert_eq!(p.unscheduled_terminating[0].1, "d");
        let names: Vec<_> = p.terminated.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(names, ["old", "mid"]);
        // Threshold 0 turns that part off.
        let p = plan(
            &pods,
            &nodes,
            &mut HashMap::new(),
            Duration::from_secs(1),
            0,
            Instant::now(),
        );
        assert!(p.terminated.is_empty());
    }
}
