use std::collections::BTreeMap;

use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};
use serde::Deserialize;

use crate::reasons::SERVICE_AFFINITY;
use crate::util::{check_labels, filter_each, group_count, label, parse_options};

/// The v1 Policy argument `serviceAffinity`, and [`CheckServiceAffinity`]'s options.
///
/// ```
/// let a: keelson_scheduler_policies::ServiceAffinityArgs =
///     serde_json::from_str(r#"{"labels":["region"]}"#).unwrap();
/// assert_eq!(a.labels, vec!["region".to_string()]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAffinityArgs {
    /// The node labels on which a service's pods must agree.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// `CheckServiceAffinity` (v1 Policy argument `serviceAffinity`): keeps a service's pods on
/// nodes that agree on the configured labels.
///
/// For each configured label the wanted value comes from the pod's `nodeSelector` when it
/// names the label; otherwise from the node running a peer, a pod of the pod's first service.
/// A label neither source gives is not constrained; with no wanted value at all (no peers and
/// no selector entries) every node fits, as in v1.
///
/// **Which peer.** v1 took "the first pod" the pod lister returned. The host gives per-node
/// pod counts, not pods, so here the peers' node is the node with the lowest index in the
/// whole node table (not only the candidates) whose count for the pod's first service group
/// is non-zero. When a service's peers all sit on nodes agreeing on the labels, which is what
/// this predicate maintains, every choice gives the same answer.
///
/// Options: `{"labels": ["..."]}`.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::CheckServiceAffinity;
/// let mut h = SchedulerHarness::<CheckServiceAffinity>::new(r#"{"labels":["region"]}"#).unwrap();
/// let east = h.add_node(node("e1").label("region", "east").group_count(1, 2).build());
/// h.add_node(node("w1").label("region", "west").build());
/// let d = h.schedule(&pod("web").selected_by(1, true).build()).unwrap();
/// assert_eq!(d.chosen, Some(east));
/// ```
#[derive(Debug, Clone)]
pub struct CheckServiceAffinity {
    args: ServiceAffinityArgs,
}

impl CheckServiceAffinity {
    /// The predicate for `args`; fails on an empty label name.
    ///
    /// ```
    /// use keelson_scheduler_policies::{CheckServiceAffinity, ServiceAffinityArgs};
    /// assert!(CheckServiceAffinity::new(ServiceAffinityArgs { labels: vec![String::new()] }).is_err());
    /// ```
    pub fn new(args: ServiceAffinityArgs) -> crate::Result<Self> {
        check_labels(Self::NAME, &args.labels)?;
        Ok(CheckServiceAffinity { args })
    }

    /// The label values a node must have for `pod`.
    fn wanted<'a>(&'a self, pod: &'a PodInfo, nodes: &'a NodeTable) -> BTreeMap<&'a str, &'a str> {
        let mut wanted = BTreeMap::new();
        for l in &self.args.labels {
            if let Some(v) = label(&pod.node_selector, l) {
                wanted.insert(l.as_str(), v);
            }
        }
        // v1 looks at peers only when the selector leaves some label open.
        if wanted.len() == self.args.labels.len() {
            return wanted;
        }
        let Some(&service) = pod.service_groups.first() else {
            return wanted;
        };
        let peer_node = nodes
            .iter()
            .find(|(_, n)| group_count(n, service) > 0)
            .map(|(_, n)| n);
        if let Some(peer_node) = peer_node {
            for l in &self.args.labels {
                if wanted.contains_key(l.as_str()) {
                    continue;
                }
                if let Some(v) = label(&peer_node.labels, l) {
                    wanted.insert(l.as_str(), v);
                }
            }
        }
        wanted
    }
}

impl SchedulerPolicy for CheckServiceAffinity {
    const NAME: &'static str = "CheckServiceAffinity";

    fn configure(options: &str) -> Result<Self, PluginError> {
        Ok(Self::new(parse_options(Self::NAME, options)?)?)
    }

    fn reasons() -> &'static [&'static str] {
        crate::reasons::REASONS
    }

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        let wanted = self.wanted(pod, nodes);
        Ok(filter_each(nodes, candidates, |node| {
            let ok = wanted
                .iter()
                .all(|(k, v)| label(&node.labels, k) == Some(*v));
            if ok {
                FilterResult::Pass
            } else {
                FilterResult::Unresolvable(SERVICE_AFFINITY)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::FilterResult::{Pass, Unresolvable};
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::predicates::test_support::verdicts;

    const OPTS: &str = r#"{"labels":["region","zone"]}"#;
    const NO: FilterResult = Unresolvable(SERVICE_AFFINITY);

    #[test]
    fn without_peers_every_node_fits() {
        let v = verdicts::<CheckServiceAffinity>(
            OPTS,
            vec![node("a").label("region", "r1").build(), node("b").build()],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![Pass, Pass]);
    }

    #[test]
    fn without_a_service_every_node_fits() {
        let v = verdicts::<CheckServiceAffinity>(
            OPTS,
            vec![
                node("a").label("region", "r1").group_count(1, 3).build(),
                node("b").build(),
            ],
            &pod("web").selected_by(1, false).build(),
        );
        assert_eq!(v, vec![Pass, Pass]);
    }

    #[test]
    fn nodes_must_agree_with_the_peers_node() {
        let v = verdicts::<CheckServiceAffinity>(
            OPTS,
            vec![
                node("other")
                    .label("region", "r2")
                    .label("zone", "z9")
                    .build(),
                node("peer")
                    .label("region", "r1")
                    .label("zone", "z1")
                    .group_count(1, 1)
                    .build(),
                node("same")
                    .label("region", "r1")
                    .label("zone", "z1")
                    .build(),
                node("half")
                    .label("region", "r1")
                    .label("zone", "z2")
                    .build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![NO, Pass, Pass, NO]);
    }

    #[test]
    fn the_lowest_index_peer_node_decides() {
        let v = verdicts::<CheckServiceAffinity>(
            r#"{"labels":["region"]}"#,
            vec![
                node("first")
                    .label("region", "r1")
                    .group_count(1, 1)
                    .build(),
                node("second")
                    .label("region", "r2")
                    .group_count(1, 5)
                    .build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![Pass, NO]);
    }

    #[test]
    fn only_the_first_service_counts() {
        let v = verdicts::<CheckServiceAffinity>(
            r#"{"labels":["region"]}"#,
            vec![
                node("a").label("region", "r1").group_count(2, 1).build(),
                node("b").label("region", "r2").build(),
            ],
            &pod("web").selected_by(1, true).selected_by(2, true).build(),
        );
        assert_eq!(v, vec![Pass, Pass]);
    }

    #[test]
    fn the_node_selector_wins_over_the_peers() {
        let v = verdicts::<CheckServiceAffinity>(
            OPTS,
            vec![
                node("peer")
                    .label("region", "r1")
                    .label("zone", "z1")
                    .group_count(1, 1)
                    .build(),
                node("r2z1")
                    .label("region", "r2")
                    .label("zone", "z1")
                    .build(),
                node("r2z2")
                    .label("region", "r2")
                    .label("zone", "z2")
                    .build(),
            ],
            &pod("web")
                .selected_by(1, true)
                .node_selector("region", "r2")
                .build(),
        );
        assert_eq!(v, vec![NO, Pass, NO]);
    }

    #[test]
    fn a_selector_naming_every_label_ignores_peers() {
        let v = verdicts::<CheckServiceAffinity>(
            r#"{"labels":["region"]}"#,
            vec![
                node("peer").label("region", "r1").group_count(1, 1).build(),
                node("b").label("region", "r2").build(),
            ],
            &pod("web")
                .selected_by(1, true)
                .node_selector("region", "r2")
                .build(),
        );
        assert_eq!(v, vec![NO, Pass]);
    }

    #[test]
    fn a_label_the_peers_node_lacks_is_not_constrained() {
        let v = verdicts::<CheckServiceAffinity>(
            OPTS,
            vec![
                node("peer").label("region", "r1").group_count(1, 1).build(),
                node("b").label("region", "r1").label("zone", "z5").build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![Pass, Pass]);
    }

    #[test]
    fn a_peer_on_a_node_that_is_not_a_candidate_still_counts() {
        // Filter runs over node b only, as the host does when another filter rejected the
        // peer's node.
        let mut p = CheckServiceAffinity::configure(r#"{"labels":["region"]}"#).expect("configure");
        let mut table = NodeTable::default();
        table.insert(
            0,
            node("peer").label("region", "r1").group_count(1, 1).build(),
        );
        table.insert(1, node("b").label("region", "r2").build());
        let v = p
            .filter(1, &pod("web").selected_by(1, true).build(), &table, &[1])
            .expect("filter");
        assert_eq!(v, vec![NO]);
    }
}
