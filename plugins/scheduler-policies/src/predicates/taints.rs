use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};

use crate::reasons::TAINTS;
use crate::util::{filter_each, is_hard, tolerated};

/// `PodToleratesNodeTaints`: a node fits when the pod tolerates each of its `NoSchedule` and
/// `NoExecute` taints (`PreferNoSchedule` taints only lower the score; see
/// [`TaintTolerationPriority`](crate::TaintTolerationPriority)).
///
/// Tolerations match as in Kubernetes: the effect is unset or the same; the key is unset or
/// the same (an unset key with operator `Exists` tolerates every taint); `Exists` matches any
/// value, `Equal` the same value.
///
/// The reason is the fixed text "node(s) had untolerated taint", without the taint, because
/// the reason table is static.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness, TaintEffect};
/// use keelson_scheduler_policies::PodToleratesNodeTaints;
/// let mut h = SchedulerHarness::<PodToleratesNodeTaints>::new("{}").unwrap();
/// h.add_node(node("db").taint("dedicated", "db", TaintEffect::NoSchedule).build());
/// let plain = h.add_node(node("plain").build());
/// assert_eq!(h.schedule(&pod("web").build()).unwrap().chosen, Some(plain));
/// ```
#[derive(Debug, Default)]
pub struct PodToleratesNodeTaints;

impl SchedulerPolicy for PodToleratesNodeTaints {
    const NAME: &'static str = "PodToleratesNodeTaints";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(filter_each(nodes, candidates, |node| {
            let untolerated = node
                .taints
                .iter()
                .any(|t| is_hard(t.effect) && !tolerated(&pod.tolerations, t));
            if untolerated {
                FilterResult::Unresolvable(TAINTS)
            } else {
                FilterResult::Pass
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::FilterResult::{Pass, Unresolvable};
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::{TaintEffect, Toleration, TolerationOperator};

    use super::*;
    use crate::predicates::test_support::verdicts;

    fn tol(
        key: Option<&str>,
        op: TolerationOperator,
        value: &str,
        effect: Option<TaintEffect>,
    ) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: op,
            value: value.into(),
            effect,
        }
    }

    fn fits(taint_effect: TaintEffect, tolerations: Vec<Toleration>) -> bool {
        let mut p = pod("p").build();
        p.tolerations = tolerations;
        verdicts::<PodToleratesNodeTaints>(
            "{}",
            vec![node("a").taint("dedicated", "db", taint_effect).build()],
            &p,
        )[0] == Pass
    }

    #[test]
    fn no_schedule_and_no_execute_taints_must_be_tolerated() {
        assert!(!fits(TaintEffect::NoSchedule, vec![]));
        assert!(!fits(TaintEffect::NoExecute, vec![]));
    }

    #[test]
    fn prefer_no_schedule_taints_do_not_filter() {
        assert!(fits(TaintEffect::PreferNoSchedule, vec![]));
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        use TaintEffect::*;
        use TolerationOperator::*;
        assert!(fits(
            NoSchedule,
            vec![tol(Some("dedicated"), Equal, "db", Some(NoSchedule))]
        ));
        assert!(fits(
            NoSchedule,
            vec![tol(Some("dedicated"), Equal, "db", None)]
        ));
        assert!(!fits(
            NoSchedule,
            vec![tol(Some("dedicated"), Equal, "web", None)]
        ));
        assert!(fits(
            NoSchedule,
            vec![tol(Some("dedicated"), Exists, "", None)]
        ));
        assert!(!fits(
            NoSchedule,
            vec![tol(Some("other"), Exists, "", None)]
        ));
        assert!(!fits(
            NoSchedule,
            vec![tol(Some("dedicated"), Exists, "", Some(NoExecute))]
        ));
        assert!(fits(
            NoExecute,
            vec![tol(Some("dedicated"), Exists, "", Some(NoExecute))]
        ));
        assert!(
            fits(NoSchedule, vec![tol(None, Exists, "", None)]),
            "empty key + Exists"
        );
        assert!(
            fits(NoSchedule, vec![tol(Some(""), Exists, "", None)]),
            "empty key + Exists"
        );
        assert!(!fits(
            NoSchedule,
            vec![tol(None, Exists, "", Some(NoExecute))]
        ));
        // Invalid in the API, but Kubernetes' matcher then compares only the value.
        assert!(
            fits(NoSchedule, vec![tol(None, Equal, "db", None)]),
            "empty key + Equal, same value"
        );
        assert!(
            !fits(NoSchedule, vec![tol(None, Equal, "", None)]),
            "empty key + Equal, other value"
        );
    }

    #[test]
    fn every_hard_taint_needs_a_toleration() {
        let mut p = pod("p").build();
        p.tolerations = vec![tol(Some("a"), TolerationOperator::Exists, "", None)];
        let v = verdicts::<PodToleratesNodeTaints>(
            "{}",
            vec![
                node("one").taint("a", "", TaintEffect::NoSchedule).build(),
                node("two")
                    .taint("a", "", TaintEffect::NoSchedule)
                    .taint("b", "", TaintEffect::NoExecute)
                    .build(),
                node("soft")
                    .taint("a", "", TaintEffect::NoSchedule)
                    .taint("b", "", TaintEffect::PreferNoSchedule)
                    .build(),
            ],
            &p,
        );
        assert_eq!(v, vec![Pass, Unresolvable(TAINTS), Pass]);
    }
}
