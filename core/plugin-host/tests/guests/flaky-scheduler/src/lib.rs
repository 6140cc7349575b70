//! A scheduler policy that scores a node by its pod count, read from the SDK's node table, and
//! panics when the pod is named `boom`: the host's tests check that the instance it creates
//! after the failure has the node table replayed.

use keelson_plugin_sdk::{
    ErrorKind, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
    export_scheduler_policy, plugin_error,
};

struct Flaky;

impl SchedulerPolicy for Flaky {
    const NAME: &'static str = "flaky-scheduler";

    fn configure(_options: &str) -> Result<Self, PluginError> {
        Ok(Flaky)
    }

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        if pod.name == "boom" {
            panic!("boom");
        }
        candidates
            .iter()
            .map(|&i| {
                nodes
                    .get(i)
                    .map(|n| i64::from(n.pod_count.min(100)))
                    .ok_or_else(|| plugin_error(ErrorKind::NotFound, format!("no node {i}")))
            })
            .collect()
    }
}

export_scheduler_policy!(Flaky, exports: [score]);
