use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};

use super::score_each;
use crate::util::non_zero_with_pod;

/// `LeastRequestedPriority`: favours nodes with the most CPU and memory left once the pod is
/// placed.
///
/// Per resource, `(capacity - requested) * 10 / capacity`, 0 when capacity is 0 or
/// requested exceeds it, where requested is the node's `non-zero-requested` plus the pod's
/// `non-zero-requests` (a container without a request counts as 100m CPU / 200 MiB). The v1
/// score is the integer mean of the two, times 10 here.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::LeastRequestedPriority;
/// let mut h = SchedulerHarness::<LeastRequestedPriority>::new("{}").unwrap();
/// h.add_node(node("busy").cpu(1000).memory(1 << 30).requested(900, 900 << 20, 3).build());
/// let idle = h.add_node(node("idle").cpu(1000).memory(1 << 30).build());
/// assert_eq!(h.schedule(&pod("p").build()).unwrap().chosen, Some(idle));
/// ```
#[derive(Debug, Default)]
pub struct LeastRequestedPriority;

/// v1's `calculateScore`: 0..=10.
pub(crate) fn unused_score(requested: u64, capacity: u64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    // u128: memory in bytes times 10 stays exact whatever the node's size.
    (u128::from(capacity - requested) * 10 / u128::from(capacity)) as i64
}

impl SchedulerPolicy for LeastRequestedPriority {
    const NAME: &'static str = "LeastRequestedPriority";

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
            let cpu = unused_score(cpu, node.allocatable.cpu);
            let memory = unused_score(memory, node.allocatable.memory);
            (cpu + memory) / 2 * 10
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
        // machines".
        let a = node("a").cpu(4000).memory(10000).build();
        let b = node("b").cpu(6000).memory(10000).build();
        let p = pod("p").cpu(3000).memory(5000).build();
        // a: cpu (4000-3000)*10/4000 = 2, mem (10000-5000)*10/10000 = 5 -> (2+5)/2 = 3
        // b: cpu (6000-3000)*10/6000 = 5, mem 5 -> 5
        assert_eq!(
            scores::<LeastRequestedPriority>("{}", vec![a, b], &p),
            vec![30, 50]
        );
    }

    #[test]
    fn existing_non_zero_requests_count() {
        let mut n = node("a").cpu(10000).memory(20000).build();
        n.non_zero_requested.cpu = 3000;
        n.non_zero_requested.memory = 5000;
        let p = pod("p").cpu(3000).memory(5000).build();
        // cpu (10000-6000)*10/10000 = 4, mem (20000-10000)*10/20000 = 5 -> 4
        assert_eq!(
            scores::<LeastRequestedPriority>("{}", vec![n], &p),
            vec![40]
        );
    }

    #[test]
    fn a_pod_without_requests_counts_the_non_zero_defaults() {
        let n = node("a").cpu(1000).memory(2000 << 20).build();
        // cpu (1000-100)*10/1000 = 9, mem (2000-200)*10/2000 = 9 -> 9
        assert_eq!(
            scores::<LeastRequestedPriority>("{}", vec![n], &pod("p").build()),
            vec![90]
        );
    }

    #[test]
    fn zero_capacity_or_overcommit_scores_zero_for_that_resource() {
        let zero_cpu = node("a").cpu(0).memory(10000).build();
        let over = node("b")
            .cpu(1000)
            .memory(10000)
            .requested(2000, 0, 1)
            .build();
        let p = pod("p").cpu(500).memory(5000).build();
        // a: cpu 0, mem 5 -> 2; b: cpu 0 (2500 > 1000), mem 5 -> 2
        assert_eq!(
            scores::<LeastRequestedPriority>("{}", vec![zero_cpu, over], &p),
            vec![20, 20]
        );
    }

    #[test]
    fn an_empty_huge_node_scores_the_maximum() {
        let n = node("a").cpu(1 << 40).memory(u64::MAX / 2).build();
        assert_eq!(
            scores::<LeastRequestedPriority>("{}", vec![n], &pod("p").build()),
            vec![90]
        );
    }
}
