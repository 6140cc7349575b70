use keelson_plugin_sdk::{
    NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy, TaintEffect, Toleration,
};

use crate::util::tolerated;

/// `TaintTolerationPriority` (Kubernetes 1.4+, offered beside the v1 set): prefers nodes
/// with fewer `PreferNoSchedule` taints the pod does not tolerate.
///
/// Only the pod's tolerations with effect `PreferNoSchedule` or no effect count, as in
/// Kubernetes. With `max` the largest such count among the candidates, a node scores
/// `100 * (max - count) / max`, or 100 when `max` is 0. The normalisation is over the
/// candidates, as Kubernetes normalises over the nodes it scores, and is done inside `score`
/// so that the policy needs no `normalize-score` export.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness, TaintEffect};
/// use keelson_scheduler_policies::TaintTolerationPriority;
/// let mut h = SchedulerHarness::<TaintTolerationPriority>::new("{}").unwrap();
/// let a = h.add_node(node("a").taint("spot", "", TaintEffect::PreferNoSchedule).build());
/// let b = h.add_node(node("b").build());
/// assert_eq!(h.schedule(&pod("p").build()).unwrap().scores, vec![(a, 0), (b, 100)]);
/// ```
#[derive(Debug, Default)]
pub struct TaintTolerationPriority;

impl SchedulerPolicy for TaintTolerationPriority {
    const NAME: &'static str = "TaintTolerationPriority";

    super::no_options!();
    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        let soft: Vec<Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| t.effect.is_none_or(|e| e == TaintEffect::PreferNoSchedule))
            .cloned()
            .collect();
        let counts: Vec<i64> = candidates
            .iter()
            .map(|&i| {
                nodes.get(i).map_or(0, |node| {
                    node.taints
                        .iter()
                        .filter(|t| t.effect == TaintEffect::PreferNoSchedule)
                        .filter(|t| !tolerated(&soft, t))
                        .count() as i64
                })
            })
            .collect();
        let max = counts.iter().copied().max().unwrap_or(0);
        Ok(counts
            .into_iter()
            .map(|c| if max == 0 { 100 } else { 100 * (max - c) / max })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::{TaintEffect::*, Toleration, TolerationOperator};

    use super::*;
    use crate::priorities::test_support::scores;

    #[test]
    fn fewer_intolerable_soft_taints_score_higher() {
        let v = scores::<TaintTolerationPriority>(
            "{}",
            vec![
                node("three")
                    .taint("a", "", PreferNoSchedule)
                    .taint("b", "", PreferNoSchedule)
                    .taint("c", "", PreferNoSchedule)
                    .build(),
                node("one").taint("a", "", PreferNoSchedule).build(),
                node("none").build(),
            ],
            &pod("p").build(),
        );
        // max 3: (3-1)*100/3 = 66
        assert_eq!(v, vec![0, 66, 100]);
    }

    #[test]
    fn max_zero_scores_the_maximum() {
        let v = scores::<TaintTolerationPriority>(
            "{}",
            vec![
                node("a").taint("a", "", NoSchedule).build(),
                node("b").build(),
            ],
            &pod("p").build(),
        );
        assert_eq!(
            v,
            vec![100, 100],
            "hard taints are not this priority's business"
        );
    }

    #[test]
    fn only_tolerations_for_prefer_no_schedule_or_any_effect_count() {
        let tol = |effect| Toleration {
            key: Some("a".into()),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect,
        };
        let nodes = || {
            vec![
                node("tainted").taint("a", "", PreferNoSchedule).build(),
                node("clean").build(),
            ]
        };
        let run =
            |t| scores::<TaintTolerationPriority>("{}", nodes(), &pod("p").toleration(t).build());
        assert_eq!(run(tol(Some(PreferNoSchedule))), vec![100, 100]);
        assert_eq!(run(tol(None)), vec![100, 100]);
        assert_eq!(run(tol(Some(NoSchedule))), vec![0, 100]);
    }
}
