//! A scheduler policy after Kubernetes `NodeResourcesFit` (filter) and `LeastAllocated` (score):
//! nodes without room for the pod's CPU, memory or pod count are filtered out, and nodes with
//! the most free CPU and memory after placing the pod score highest.

use keelson_plugin_sdk::{
    ErrorKind, FilterResult, NodeIndex, NodeInfo, NodeTable, PluginError, PodInfo, SchedulerPolicy,
    export_scheduler_policy, plugin_error,
};

const INSUFFICIENT_CPU: u32 = 0;
const INSUFFICIENT_MEMORY: u32 = 1;
const TOO_MANY_PODS: u32 = 2;
const UNKNOWN_NODE: u32 = 3;

struct LeastRequested;

impl SchedulerPolicy for LeastRequested {
    const NAME: &'static str = "least-requested";

    fn configure(options: &str) -> Result<Self, PluginError> {
        if options.trim() != "{}" {
            return Err(plugin_error(
                ErrorKind::InvalidConfig,
                "least-requested takes no options",
            ));
        }
        Ok(LeastRequested)
    }

    fn reasons() -> &'static [&'static str] {
        &[
            "insufficient cpu",
            "insufficient memory",
            "too many pods",
            "unknown node",
        ]
    }

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(candidates
            .iter()
            .map(|&i| match nodes.get(i) {
                None => FilterResult::Unresolvable(UNKNOWN_NODE),
                Some(n) if n.pod_count >= n.allocatable_pods => {
                    FilterResult::Unschedulable(TOO_MANY_PODS)
                }
                Some(n) if n.requested.cpu + pod.requests.cpu > n.allocatable.cpu => {
                    FilterResult::Unschedulable(INSUFFICIENT_CPU)
                }
                Some(n) if n.requested.memory + pod.requests.memory > n.allocatable.memory => {
                    FilterResult::Unschedulable(INSUFFICIENT_MEMORY)
                }
                Some(_) => FilterResult::Pass,
            })
            .collect())
    }

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(candidates
            .iter()
            .map(|&i| nodes.get(i).map_or(0, |n| least_requested(n, pod)))
            .collect())
    }
}

/// The mean over CPU and memory of the free share left after placing the pod, 0 to 100.
fn least_requested(node: &NodeInfo, pod: &PodInfo) -> i64 {
    fn free(allocatable: u64, requested: u64) -> i64 {
        if allocatable == 0 || requested >= allocatable {
            return 0;
        }
        ((allocatable - requested) as u128 * 100 / allocatable as u128) as i64
    }
    let cpu = free(node.allocatable.cpu, node.requested.cpu + pod.requests.cpu);
    let memory = free(
        node.allocatable.memory,
        node.requested.memory + pod.requests.memory,
    );
    (cpu + memory) / 2
}

export_scheduler_policy!(LeastRequested, exports: [filter, score]);
