use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};

use crate::reasons::{INSUFFICIENT_CPU, INSUFFICIENT_MEMORY, TOO_MANY_PODS};
use crate::util::filter_each;

/// `PodFitsResources` (R11): the pod's requests must fit in what the node has left.
///
/// - A pod requesting 0 CPU and 0 memory fits while the node runs fewer pods than it may.
/// - Otherwise the node must have room for one more pod, then for the CPU, then the memory
///   (checked in that order, the first failure being the reason). A node whose allocatable
///   CPU or memory is 0 is unlimited in that resource, as in v1.
/// - `allocatable-pods` is never "unlimited": a node that may run 0 pods fits none, as v1's
///   `capacity.pods` check did.
///
/// Only CPU and memory are checked, like v1; ephemeral storage and extended resources are
/// not.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::PodFitsResources;
/// let mut h = SchedulerHarness::<PodFitsResources>::new("{}").unwrap();
/// let big = h.add_node(node("big").cpu(4000).build());
/// h.add_node(node("small").cpu(500).build());
/// assert_eq!(h.schedule(&pod("p").cpu(1000).build()).unwrap().chosen, Some(big));
/// ```
#[derive(Debug, Default)]
pub struct PodFitsResources;

impl SchedulerPolicy for PodFitsResources {
    const NAME: &'static str = "PodFitsResources";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        let want_cpu = pod.requests.cpu;
        let want_memory = pod.requests.memory;
        Ok(filter_each(nodes, candidates, |node| {
            let room_for_a_pod = node.pod_count < node.allocatable_pods;
            if !room_for_a_pod {
                return FilterResult::Unschedulable(TOO_MANY_PODS);
            }
            if want_cpu == 0 && want_memory == 0 {
                return FilterResult::Pass;
            }
            let fits = |allocatable: u64, requested: u64, want: u64| {
                allocatable == 0 || (requested <= allocatable && allocatable - requested >= want)
            };
            if !fits(node.allocatable.cpu, node.requested.cpu, want_cpu) {
                FilterResult::Unschedulable(INSUFFICIENT_CPU)
            } else if !fits(node.allocatable.memory, node.requested.memory, want_memory) {
                FilterResult::Unschedulable(INSUFFICIENT_MEMORY)
            } else {
                FilterResult::Pass
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::FilterResult::{Pass, Unschedulable};
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::predicates::test_support::verdicts;

    fn run(n: keelson_plugin_sdk::NodeInfo, p: &PodInfo) -> FilterResult {
        verdicts::<PodFitsResources>("{}", vec![n], p)[0]
    }

    #[test]
    fn requests_must_fit_in_what_is_left() {
        let n = || {
            node("a")
                .cpu(2000)
                .memory(4 << 30)
                .requested(1500, 3 << 30, 2)
                .build()
        };
        assert_eq!(run(n(), &pod("p").cpu(500).build()), Pass);
        assert_eq!(
            run(n(), &pod("p").cpu(501).build()),
            Unschedulable(INSUFFICIENT_CPU)
        );
        assert_eq!(run(n(), &pod("p").memory(1 << 30).build()), Pass);
        assert_eq!(
            run(n(), &pod("p").memory((1 << 30) + 1).build()),
            Unschedulable(INSUFFICIENT_MEMORY)
        );
    }

    #[test]
    fn cpu_is_reported_before_memory() {
        let n = node("a").cpu(1000).memory(1 << 30).build();
        let p = pod("p").cpu(2000).memory(2 << 30).build();
        assert_eq!(run(n, &p), Unschedulable(INSUFFICIENT_CPU));
    }

    #[test]
    fn a_zero_request_pod_fits_while_the_pod_count_is_below_allocatable() {
        let full_cpu = node("a")
            .cpu(1000)
            .requested(1000, 4 << 30, 9)
            .max_pods(10)
            .build();
        assert_eq!(run(full_cpu, &pod("p").build()), Pass);
        let full_pods = node("a").requested(0, 0, 10).max_pods(10).build();
        assert_eq!(
            run(full_pods, &pod("p").build()),
            Unschedulable(TOO_MANY_PODS)
        );
    }

    #[test]
    fn the_pod_count_is_checked_for_requesting_pods_too() {
        let n = node("a").requested(0, 0, 3).max_pods(3).build();
        assert_eq!(
            run(n, &pod("p").cpu(1).build()),
            Unschedulable(TOO_MANY_PODS)
        );
    }

    #[test]
    fn zero_allocatable_cpu_or_memory_is_unlimited() {
        let n = node("a")
            .cpu(0)
            .memory(0)
            .requested(5000, 8 << 30, 1)
            .build();
        assert_eq!(
            run(n, &pod("p").cpu(100_000).memory(64 << 30).build()),
            Pass
        );
    }

    #[test]
    fn zero_allocatable_pods_fits_nothing() {
        let n = node("a").max_pods(0).build();
        assert_eq!(run(n, &pod("p").build()), Unschedulable(TOO_MANY_PODS));
    }

    #[test]
    fn an_overcommitted_node_fits_nothing_that_requests() {
        let n = node("a").cpu(1000).requested(1500, 0, 1).build();
        assert_eq!(
            run(n, &pod("p").cpu(1).build()),
            Unschedulable(INSUFFICIENT_CPU)
        );
    }

    #[test]
    fn reasons_are_worded_as_kubernetes_words_them() {
        let h = keelson_plugin_sdk::testing::SchedulerHarness::<PodFitsResources>::new("{}")
            .expect("configure");
        let r = h.reasons();
        assert_eq!(r[INSUFFICIENT_CPU as usize], "Insufficient cpu");
        assert_eq!(r[INSUFFICIENT_MEMORY as usize], "Insufficient memory");
        assert_eq!(r[TOO_MANY_PODS as usize], "Too many pods");
    }
}
