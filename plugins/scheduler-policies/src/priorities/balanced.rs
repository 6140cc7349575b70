use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};

use super::score_each;
use crate::util::non_zero_with_pod;

/// `BalancedResourceAllocation`: favours nodes whose CPU and memory would be used in the same
/// proportion once the pod is placed.
///
/// With each fraction `requested / capacity` (1 when capacity is 0), where requested is the
/// node's `non-zero-requested` plus the pod's `non-zero-requests`, the v1 score is
/// `int(10 - |cpuFraction - memoryFraction| * 10)`, or 0 when either fraction is at least 1;
/// times 10 here. Fractions are `float64`, as in v1.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::BalancedResourceAllocation;
/// let mut h = SchedulerHarness::<BalancedResourceAllocation>::new("{}").unwrap();
/// let n = h.add_node(node("a").cpu(1000).memory(1000).build());
/// let d = h.schedule(&pod("p").cpu(500).memory(500).build()).unwrap();
/// assert_eq!(d.scores, vec![(n, 100)]);
/// ```
#[derive(Debug, Default)]
pub struct BalancedResourceAllocation;

fn fraction(requested: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        return 1.0;
    }
    requested as f64 / capacity as f64
}

impl SchedulerPolicy for BalancedResourceAllocation {
    const NAME: &'static str = "BalancedResourceAllocation";

    super::no_options!();
    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(score_each(nodes, candidates, |node| {
            let (cpu, memory) = non_zero_with_pod(node, pod);
            let cpu = fraction(cpu, node.allocatable.cpu);
            let memory = fraction(memory, node.allocatable.memory);
            if cpu >= 1.0 || memory >= 1.0 {
                return 0;
            }
            let v1 = (10.0 - (cpu - memory).abs() * 10.0) as i64;
            v1 * 10
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::priorities::test_support::scores;

    #[test]
    fn v1_examples() {
        // v1 priorities_test.go, "nothing scheduled, resources requested, differently sized
        // machines": a: cpu 3000/4000 = 0.75, mem 5000/10000 = 0.5 -> 10 - 2.5 = 7
        // b: cpu 3000/6000 = 0.5, mem 0.5 -> 10
        let a = node("a").cpu(4000).memory(10000).build();
        let b = node("b").cpu(6000).memory(10000).build();
        let p = pod("p").cpu(3000).memory(5000).build();
        assert_eq!(
            scores::<BalancedResourceAllocation>("{}", vec![a, b], &p),
            vec![70, 100]
        );
    }

    #[test]
    fn a_full_resource_scores_zero() {
        let full = node("a")
            .cpu(4000)
            .memory(10000)
            .requested(1000, 0, 1)
            .build();
        let p = pod("p").cpu(3000).memory(5000).build();
        assert_eq!(
            scores::<BalancedResourceAllocation>("{}", vec![full], &p),
            vec![0]
        );
    }

    #[test]
    fn zero_capacity_scores_zero() {
        let n = node("a").cpu(0).memory(10000).build();
        assert_eq!(
            scores::<BalancedResourceAllocation>("{}", vec![n], &pod("p").build()),
            vec![0]
        );
    }

    #[test]
    fn truncation_matches_v1() {
        // cpu 0.2, mem 0.55 -> 10 - 3.5 = 6.5 -> 6
        let n = node("a").cpu(1000).memory(2000).build();
        let p = pod("p").cpu(200).memory(1100).build();
        assert_eq!(
            scores::<BalancedResourceAllocation>("{}", vec![n], &p),
            vec![60]
        );
    }
}
