//! {{name}}: a Keelson scheduler policy.
//!
//! It prefers nodes running fewer pods. Change `filter` and `score` to your policy, list the
//! extension points you implement in `export_scheduler_policy!`, and run `cargo test`.

use keelson_plugin_sdk::{
    ErrorKind, FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
    export_scheduler_policy, plugin_error,
};

/// The policy. Per-pod state for a cycle would live here and be dropped in `end_cycle`.
pub struct Policy;

impl SchedulerPolicy for Policy {
    const NAME: &'static str = "{{name}}";

    fn configure(options: &str) -> Result<Self, PluginError> {
        if options.trim() != "{}" {
            return Err(plugin_error(ErrorKind::InvalidConfig, "{{name}} takes no options"));
        }
        Ok(Policy)
    }

    fn reasons() -> &'static [&'static str] {
        &["node(s) were cordoned"]
    }

    fn filter(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(candidates
            .iter()
            .map(|&i| match nodes.get(i) {
                Some(n) if !n.unschedulable => FilterResult::Pass,
                _ => FilterResult::Unresolvable(0),
            })
            .collect())
    }

    fn score(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(candidates
            .iter()
            .map(|&i| nodes.get(i).map_or(0, |n| 100 - i64::from(n.pod_count.min(100))))
            .collect())
    }
}

export_scheduler_policy!(Policy, exports: [filter, score]);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::testing::SchedulerHarness;

    use super::*;

    #[test]
    fn the_least_busy_schedulable_node_wins() {
        let mut h = SchedulerHarness::<Policy>::new("{}").expect("configure");
        let busy = h.add_node(node("busy").requested(0, 0, 40).build());
        let idle = h.add_node(node("idle").build());
        let cordoned = h.add_node(node("cordoned").cordoned().build());

        let decision = h.schedule(&pod("web").build()).expect("cycle");
        assert_eq!(decision.chosen, Some(idle));
        assert!(decision.filtered.contains(&(cordoned, FilterResult::Unresolvable(0))));
        assert_eq!(decision.scores, vec![(busy, 60), (idle, 100)]);
    }

    #[test]
    fn options_are_refused() {
        assert!(SchedulerHarness::<Policy>::new(r#"{"x":1}"#).is_err());
    }
}
