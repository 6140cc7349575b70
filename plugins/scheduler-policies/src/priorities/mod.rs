//! The v1 priority functions: each a policy that implements `score`.
//!
//! v1 priorities score 0..=10; the contract's scores are 0..=100, so each policy returns the
//! v1 integer result times 10. Rankings and weighted sums therefore order nodes exactly as
//! v1 did. Every priority returns `Skip` from `pre_filter`, so the host never runs their
//! (empty) filter.
//!
//! Counts that span nodes (spreading, anti-affinity) are computed in `score` from the whole
//! node table, not only from the candidates, as v1 counted every pod wherever it ran.

mod balanced;
mod equal;
mod least_requested;
mod node_label;
mod selector_spread;
mod service_anti_affinity;
mod taint_toleration;

pub use balanced::BalancedResourceAllocation;
pub use equal::EqualPriority;
pub use least_requested::LeastRequestedPriority;
pub use node_label::{LabelPreferenceArgs, NodeLabelPriority};
pub use selector_spread::{SelectorSpreadPriority, ServiceSpreadingPriority};
pub use service_anti_affinity::{ServiceAntiAffinity, ServiceAntiAffinityArgs};
pub use taint_toleration::TaintTolerationPriority;

/// A priority's `pre_filter`: nothing to filter.
macro_rules! skip_filter {
    () => {
        fn pre_filter(
            &mut self,
            _cycle: u64,
            _pod: &keelson_plugin_sdk::PodInfo,
            _nodes: &keelson_plugin_sdk::NodeTable,
        ) -> Result<keelson_plugin_sdk::PreFilterResult, keelson_plugin_sdk::PluginError> {
            Ok(keelson_plugin_sdk::PreFilterResult::Skip)
        }
    };
}
pub(crate) use skip_filter;

/// A priority that takes no options: its `configure`.
macro_rules! no_options {
    () => {
        fn configure(options: &str) -> Result<Self, keelson_plugin_sdk::PluginError> {
            let _: crate::util::NoOptions = crate::util::parse_options(Self::NAME, options)?;
            Ok(Self)
        }
    };
}
pub(crate) use no_options;

/// Scores each candidate with `f`, 0 for a candidate missing from the table.
pub(crate) fn score_each(
    nodes: &keelson_plugin_sdk::NodeTable,
    candidates: &[keelson_plugin_sdk::NodeIndex],
    mut f: impl FnMut(&keelson_plugin_sdk::NodeInfo) -> i64,
) -> Vec<i64> {
    candidates
        .iter()
        .map(|&i| nodes.get(i).map_or(0, &mut f))
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use keelson_plugin_sdk::testing::SchedulerHarness;
    use keelson_plugin_sdk::{NodeInfo, PodInfo, PreFilterResult, SchedulerPolicy};

    /// Runs `P` (configured with `options`) over `nodes` for `pod` and returns each node's
    /// score in node order.
    pub(crate) fn scores<P: SchedulerPolicy>(
        options: &str,
        nodes: Vec<NodeInfo>,
        pod: &PodInfo,
    ) -> Vec<i64> {
        let mut h = SchedulerHarness::<P>::new(options).expect("configure");
        for n in nodes {
            h.add_node(n);
        }
        let d = h.schedule(pod).expect("cycle");
        assert_eq!(d.pre_filter, PreFilterResult::Skip);
        d.scores.into_iter().map(|(_, s)| s).collect()
    }
}
