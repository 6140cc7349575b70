use std::collections::HashMap;

use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};
use serde::Deserialize;

use super::score_each;
use crate::util::{check_labels, group_count, label, parse_options, spread_score};

/// The v1 Policy argument `serviceAntiAffinity`, and [`ServiceAntiAffinity`]'s options.
///
/// ```
/// let a: keelson_scheduler_policies::ServiceAntiAffinityArgs =
///     serde_json::from_str(r#"{"label":"zone"}"#).unwrap();
/// assert_eq!(a.label, "zone");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAntiAffinityArgs {
    /// The node label whose values the service's pods are spread across.
    pub label: String,
}

/// `ServiceAntiAffinity` (v1 Policy argument `serviceAntiAffinity`): spreads the pods of the
/// pod's first service across the values of a node label (zones, racks).
///
/// With `n` the pods of the pod's first service (`service-groups[0]`) on every node of the
/// table, and `count` those on nodes with the same label value as the node scored, the v1
/// score is `int(10 * (n - count) / n)` (`float32`), or 10 when `n` is 0; times 10 here. Nodes
/// without the label score 0. A pod no service selects has `n` = 0.
///
/// Counts span the whole node table. v1.1 counted per value only the pods on nodes that had
/// passed the predicates, so a peer on a full node did not weigh on its zone; counting every
/// node is what spreading intends, and matches v1 whenever the peers' nodes all fit.
///
/// Options: `{"label": "..."}`.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::ServiceAntiAffinity;
/// let mut h = SchedulerHarness::<ServiceAntiAffinity>::new(r#"{"label":"zone"}"#).unwrap();
/// h.add_node(node("a").label("zone", "z1").group_count(1, 1).build());
/// let b = h.add_node(node("b").label("zone", "z2").build());
/// assert_eq!(h.schedule(&pod("web").selected_by(1, true).build()).unwrap().chosen, Some(b));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceAntiAffinity {
    args: ServiceAntiAffinityArgs,
}

impl ServiceAntiAffinity {
    /// The priority for `args`; fails on an empty label name.
    ///
    /// ```
    /// use keelson_scheduler_policies::{ServiceAntiAffinity, ServiceAntiAffinityArgs};
    /// assert!(ServiceAntiAffinity::new(ServiceAntiAffinityArgs { label: "zone".into() }).is_ok());
    /// ```
    pub fn new(args: ServiceAntiAffinityArgs) -> crate::Result<Self> {
        check_labels(Self::NAME, [&args.label])?;
        Ok(ServiceAntiAffinity { args })
    }
}

impl SchedulerPolicy for ServiceAntiAffinity {
    const NAME: &'static str = "ServiceAntiAffinity";

    fn configure(options: &str) -> Result<Self, PluginError> {
        Ok(Self::new(parse_options(Self::NAME, options)?)?)
    }

    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        let key = self.args.label.as_str();
        let mut total = 0;
        let mut per_value: HashMap<&str, u64> = HashMap::new();
        if let Some(&service) = pod.service_groups.first() {
            for (_, node) in nodes.iter() {
                let count = group_count(node, service);
                total += count;
                if let Some(value) = label(&node.labels, key) {
                    *per_value.entry(value).or_default() += count;
                }
            }
        }
        Ok(score_each(nodes, candidates, |node| {
            match label(&node.labels, key) {
                None => 0,
                Some(value) => spread_score(total, per_value.get(value).copied().unwrap_or(0)),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::ErrorKind;
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::testing::SchedulerHarness;

    use super::*;
    use crate::priorities::test_support::scores;

    const OPTS: &str = r#"{"label":"zone"}"#;

    #[test]
    fn pods_are_spread_across_label_values() {
        let v = scores::<ServiceAntiAffinity>(
            OPTS,
            vec![
                node("a1").label("zone", "a").group_count(1, 2).build(),
                node("a2").label("zone", "a").group_count(1, 1).build(),
                node("b1").label("zone", "b").group_count(1, 1).build(),
                node("c1").label("zone", "c").build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        // n = 4: zone a 3 -> int(2.5) = 2; zone b 1 -> 7 (float32 7.5); zone c 0 -> 10
        assert_eq!(v, vec![20, 20, 70, 100]);
    }

    #[test]
    fn nodes_without_the_label_score_zero_even_with_no_peers() {
        let v = scores::<ServiceAntiAffinity>(
            OPTS,
            vec![node("plain").build(), node("z").label("zone", "a").build()],
            &pod("web").selected_by(1, true).build(),
        );
        assert_eq!(v, vec![0, 100]);
    }

    #[test]
    fn peers_on_unlabelled_nodes_count_in_the_total_only() {
        let v = scores::<ServiceAntiAffinity>(
            OPTS,
            vec![
                node("plain").group_count(1, 2).build(),
                node("a").label("zone", "a").group_count(1, 2).build(),
                node("b").label("zone", "b").build(),
            ],
            &pod("web").selected_by(1, true).build(),
        );
        // n = 4: a (4-2)/4 -> 5; b 10; plain 0
        assert_eq!(v, vec![0, 50, 100]);
    }

    #[test]
    fn only_the_first_service_counts() {
        let v = scores::<ServiceAntiAffinity>(
            OPTS,
            vec![
                node("a").label("zone", "a").group_count(2, 5).build(),
                node("b").label("zone", "b").group_count(1, 1).build(),
            ],
            &pod("web").selected_by(1, true).selected_by(2, true).build(),
        );
        assert_eq!(v, vec![100, 0]);
        let v = scores::<ServiceAntiAffinity>(
            OPTS,
            vec![node("a").label("zone", "a").group_count(2, 5).build()],
            &pod("web").selected_by(2, false).build(),
        );
        assert_eq!(v, vec![100], "a controller is not a service");
    }

    #[test]
    fn the_label_is_required() {
        for bad in ["{}", r#"{"label":""}"#, r#"{"labels":["zone"]}"#] {
            let Err(e) = SchedulerHarness::<ServiceAntiAffinity>::new(bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}");
        }
    }
}
