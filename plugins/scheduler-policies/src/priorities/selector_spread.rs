use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};

use super::score_each;
use crate::util::{group_count, spread_score};

/// The pods of `groups` on each node of the table, and the largest such count.
fn max_count(nodes: &NodeTable, groups: &[u32]) -> u64 {
    nodes
        .iter()
        .map(|(_, n)| groups.iter().map(|&g| group_count(n, g)).sum::<u64>())
        .max()
        .unwrap_or(0)
}

fn spread(nodes: &NodeTable, candidates: &[NodeIndex], groups: &[u32]) -> Vec<i64> {
    let max = max_count(nodes, groups);
    score_each(nodes, candidates, |node| {
        let count = groups.iter().map(|&g| group_count(node, g)).sum();
        spread_score(max, count)
    })
}

/// `SelectorSpreadPriority` (R11): spreads the pods of the services and controllers that
/// select the pod across nodes.
///
/// Counts, per node, the pods of every group in the pod's `spread-groups`; the v1 score is
/// `int(10 * (max - count) / max)` (in `float32`, as v1), or 10 when `max` is 0; times 10
/// here. `max` is taken over every node of the table, not only the candidates, since v1
/// counted every pod wherever it ran.
///
/// v1 counted a pod selected by two groups once; the host gives per-group counts, so here it
/// counts once per group. The two agree whenever a pod has one service and one controller
/// that select the same pods, the usual layout.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::SelectorSpreadPriority;
/// let mut h = SchedulerHarness::<SelectorSpreadPriority>::new("{}").unwrap();
/// h.add_node(node("a").group_count(1, 2).build());
/// let b = h.add_node(node("b").build());
/// assert_eq!(h.schedule(&pod("web").selected_by(1, false).build()).unwrap().chosen, Some(b));
/// ```
#[derive(Debug, Default)]
pub struct SelectorSpreadPriority;

impl SchedulerPolicy for SelectorSpreadPriority {
    const NAME: &'static str = "SelectorSpreadPriority";

    super::no_options!();
    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(spread(nodes, candidates, &pod.spread_groups))
    }
}

/// `ServiceSpreadingPriority` (V10, kept as an alias in R11): like
/// [`SelectorSpreadPriority`] but counting only the pods of the pod's first service
/// (`service-groups[0]`), as v1.0 did. A pod no service selects scores 100 everywhere.
///
/// (R11's alias counted the pods of every service selecting the pod; with one service per
/// pod, the usual case, both agree.)
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::ServiceSpreadingPriority;
/// let mut h = SchedulerHarness::<ServiceSpreadingPriority>::new("{}").unwrap();
/// let a = h.add_node(node("a").group_count(2, 5).build());
/// let b = h.add_node(node("b").build());
/// // Group 2 is a controller, not a service: it does not count.
/// let d = h.schedule(&pod("web").selected_by(2, false).build()).unwrap();
/// assert_eq!(d.scores, vec![(a, 100), (b, 100)]);
/// ```
#[derive(Debug, Default)]
pub struct ServiceSpreadingPriority;

impl SchedulerPolicy for ServiceSpreadingPriority {
    const NAME: &'static str = "ServiceSpreadingPriority";

    super::no_options!();
    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        let first = pod
            .service_groups
            .first()
            .map(std::slice::from_ref)
            .unwrap_or(&[]);
        Ok(spread(nodes, candidates, first))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::NodeTable;
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::priorities::test_support::scores;

    #[test]
    fn fewer_peers_score_higher() {
        let v = scores::<SelectorSpreadPriority>(
            "{}",
            vec![
                node("a").group_count(1, 3).build(),
                node("b").group_count(1, 1).build(),
                node("c").build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        // max 3: a (3-3)/3 -> 0; b 2/3 -> 6; c -> 10
        assert_eq!(v, vec![0, 60, 100]);
    }

    #[test]
    fn max_zero_scores_the_maximum_everywhere() {
        let v = scores::<SelectorSpreadPriority>(
            "{}",
            vec![node("a").group_count(9, 4).build(), node("b").build()],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![100, 100]);
        let v =
            scores::<SelectorSpreadPriority>("{}", vec![node("a").build()], &pod("lonely").build());
        assert_eq!(v, vec![100]);
    }

    #[test]
    fn services_and_controllers_both_count() {
        let v = scores::<SelectorSpreadPriority>(
            "{}",
            vec![
                node("a").group_count(1, 1).build(),
                node("b").group_count(2, 1).build(),
                node("c").group_count(1, 1).group_count(2, 1).build(),
                node("d").build(),
            ],
            &pod("web")
                .selected_by(1, true)
                .selected_by(2, false)
                .build(),
        );
        // max 2: a, b 1/2 -> 5; c 0; d 10
        assert_eq!(v, vec![50, 50, 0, 100]);
    }

    #[test]
    fn float32_truncation_matches_v1() {
        // max 10, count 3: float32(7)/float32(10) is 0.69999999, and times 10 rounds to
        // exactly 7 in float32, so v1 gave 7, not 6.
        let v = scores::<SelectorSpreadPriority>(
            "{}",
            vec![
                node("a").group_count(1, 10).build(),
                node("b").group_count(1, 3).build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![0, 70]);
    }

    #[test]
    fn the_maximum_counts_nodes_that_are_not_candidates() {
        let mut table = NodeTable::default();
        table.insert(0, node("full").group_count(1, 4).build());
        table.insert(1, node("b").group_count(1, 2).build());
        table.insert(2, node("c").build());
        let mut p = SelectorSpreadPriority;
        let v = p
            .score(1, &pod("web").selected_by(1, true).build(), &table, &[1, 2])
            .expect("score");
        assert_eq!(v, vec![50, 100]);
    }

    #[test]
    fn the_alias_counts_only_the_first_service() {
        let nodes = || {
            vec![
                node("a").group_count(1, 2).build(),
                node("b").group_count(2, 2).group_count(3, 2).build(),
            ]
        };
        let p = pod("web")
            .selected_by(1, true)
            .selected_by(2, true)
            .selected_by(3, false)
            .build();
        assert_eq!(
            scores::<ServiceSpreadingPriority>("{}", nodes(), &p),
            vec![0, 100]
        );
        // max 4 on b: a (4-2)/4 -> 5, b 0
        assert_eq!(
            scores::<SelectorSpreadPriority>("{}", nodes(), &p),
            vec![50, 0]
        );
    }
}
