//! A scheduler policy that spreads the pods of a service or replication controller across
//! zones, as the book's `SelectorSpreadPriority` does when nodes carry a zone label.
//!
//! For the pod being scheduled, `pre-filter` adds up, per zone, the pods of the groups that
//! select it (`spread-groups`, counted by the host per node), once per cycle. `score` then
//! gives each node `100 * (max - zone_count) / max`: nodes in the least-loaded zone score 100.
//! Nodes without the zone label score 0 unless no node has one, when every node scores 100.
//!
//! Options (JSON): `{"zoneLabel": "topology.kubernetes.io/zone"}` (the default).

use std::collections::HashMap;

use keelson_plugin_sdk::{
    ErrorKind, Level, NodeIndex, NodeInfo, NodeTable, PluginError, PodInfo, PreFilterResult,
    SchedulerPolicy, export_scheduler_policy, log, log_enabled, plugin_error,
};
use serde::Deserialize;

/// The label that names a node's zone unless the options say otherwise.
pub const DEFAULT_ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    #[serde(default = "default_zone_label")]
    zone_label: String,
}

fn default_zone_label() -> String {
    DEFAULT_ZONE_LABEL.to_string()
}

/// The policy: its options and the zone counts of the current cycle.
pub struct ZoneSpread {
    zone_label: String,
    /// Pods of the current pod's groups per zone, computed in pre-filter.
    zone_counts: HashMap<String, u64>,
}

impl ZoneSpread {
    fn zone_of<'a>(&self, node: &'a NodeInfo) -> Option<&'a str> {
        node.labels
            .iter()
            .find(|(k, _)| *k == self.zone_label)
            .map(|(_, v)| v.as_str())
    }
}

impl SchedulerPolicy for ZoneSpread {
    const NAME: &'static str = "zone-spread";

    fn configure(options: &str) -> Result<Self, PluginError> {
        let options: Options = serde_json::from_str(options)
            .map_err(|e| plugin_error(ErrorKind::InvalidConfig, e.to_string()))?;
        if options.zone_label.is_empty() {
            return Err(plugin_error(
                ErrorKind::InvalidConfig,
                "option \"zoneLabel\" must not be empty",
            ));
        }
        Ok(ZoneSpread {
            zone_label: options.zone_label,
            zone_counts: HashMap::new(),
        })
    }

    fn pre_filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
    ) -> Result<PreFilterResult, PluginError> {
        self.zone_counts.clear();
        for (_, node) in nodes.iter() {
            let Some(zone) = self.zone_of(node) else {
                continue;
            };
            let on_node: u64 = node
                .group_counts
                .iter()
                .filter(|g| pod.spread_groups.contains(&g.group))
                .map(|g| u64::from(g.count))
                .sum();
            *self.zone_counts.entry(zone.to_string()).or_default() += on_node;
        }
        if log_enabled(Level::Debug) {
            log(
                Level::Debug,
                &format!(
                    "zone counts for {}/{}: {:?}",
                    pod.namespace, pod.name, self.zone_counts
                ),
            );
        }
        // Spreading only scores; every node stays a candidate.
        Ok(PreFilterResult::Skip)
    }

    fn score(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        if self.zone_counts.is_empty() {
            return Ok(vec![100; candidates.len()]);
        }
        let max = self.zone_counts.values().copied().max().unwrap_or(0);
        Ok(candidates
            .iter()
            .map(|&i| {
                let zone = nodes.get(i).and_then(|n| self.zone_of(n));
                match zone.and_then(|z| self.zone_counts.get(z)) {
                    None => 0,
                    Some(_) if max == 0 => 100,
                    Some(&count) => (100 * (max - count) / max) as i64,
                }
            })
            .collect())
    }

    fn end_cycle(&mut self, _cycle: u64, _outcome: keelson_plugin_sdk::CycleOutcome) {
        self.zone_counts.clear();
    }
}

export_scheduler_policy!(ZoneSpread, exports: [pre_filter, score]);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::testing::SchedulerHarness;
    use keelson_plugin_sdk::{GroupCount, NodeInfo};

    use super::*;

    fn in_zone(name: &str, zone: &str, web_pods: u32) -> NodeInfo {
        let mut n = node(name).label(DEFAULT_ZONE_LABEL, zone).build();
        if web_pods > 0 {
            n.group_counts = vec![GroupCount {
                group: 7,
                count: web_pods,
            }];
        }
        n
    }

    #[test]
    fn the_least_loaded_zone_wins() {
        let mut h = SchedulerHarness::<ZoneSpread>::new("{}").expect("configure");
        let a1 = h.add_node(in_zone("a1", "a", 2));
        let a2 = h.add_node(in_zone("a2", "a", 1));
        let b1 = h.add_node(in_zone("b1", "b", 1));
        let c1 = h.add_node(in_zone("c1", "c", 0));
        let mut web = pod("web-4").build();
        web.spread_groups = vec![7];

        let d = h.schedule(&web).expect("cycle");
        // Zone a holds 3 pods, b 1, c 0: max 3.
        assert_eq!(d.scores, vec![(a1, 0), (a2, 0), (b1, 66), (c1, 100)]);
        assert_eq!(d.chosen, Some(c1));
    }

    #[test]
    fn pods_of_other_groups_do_not_count() {
        let mut h = SchedulerHarness::<ZoneSpread>::new("{}").expect("configure");
        let a = h.add_node(in_zone("a1", "a", 5));
        let b = h.add_node(in_zone("b1", "b", 0));
        let mut other = pod("db-0").build();
        other.spread_groups = vec![9];
        let d = h.schedule(&other).expect("cycle");
        assert_eq!(d.scores, vec![(a, 100), (b, 100)]);
    }

    #[test]
    fn nodes_without_a_zone_score_zero_unless_none_has_one() {
        let mut h =
            SchedulerHarness::<ZoneSpread>::new(r#"{"zoneLabel":"rack"}"#).expect("configure");
        let plain = h.add_node(node("plain").build());
        let d = h.schedule(&pod("p").build()).expect("cycle");
        assert_eq!(d.scores, vec![(plain, 100)]);

        let racked = h.add_node(node("racked").label("rack", "r1").build());
        let d = h.schedule(&pod("p").build()).expect("cycle");
        assert_eq!(d.scores, vec![(plain, 0), (racked, 100)]);
    }

    #[test]
    fn bad_options_are_config_errors() {
        for bad in [r#"{"zoneLabel":""}"#, r#"{"zone":"x"}"#, "not json"] {
            let Err(e) = SchedulerHarness::<ZoneSpread>::new(bad) else {
                panic!("{bad} was accepted");
            };
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}");
        }
    }
}
