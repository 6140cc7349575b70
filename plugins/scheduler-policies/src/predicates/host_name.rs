use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};

use crate::reasons::NODE_NAME;
use crate::util::filter_each;

/// `HostName`: a pod that names a node (`spec.nodeName`) fits only that node; one that names
/// none fits every node.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::HostName;
/// let mut h = SchedulerHarness::<HostName>::new("{}").unwrap();
/// h.add_node(node("a").build());
/// let b = h.add_node(node("b").build());
/// assert_eq!(h.schedule(&pod("p").node_name("b").build()).unwrap().chosen, Some(b));
/// ```
#[derive(Debug, Default)]
pub struct HostName;

impl SchedulerPolicy for HostName {
    const NAME: &'static str = "HostName";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        // An empty nodeName is "unset" in the v1 API, like a missing one.
        let wanted = pod.node_name.as_deref().filter(|n| !n.is_empty());
        Ok(filter_each(nodes, candidates, |node| match wanted {
            Some(name) if name != node.name => FilterResult::Unresolvable(NODE_NAME),
            _ => FilterResult::Pass,
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::FilterResult::{Pass, Unresolvable};
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::predicates::test_support::verdicts;

    #[test]
    fn only_the_named_node_fits() {
        let v = verdicts::<HostName>(
            "{}",
            vec![node("a").build(), node("b").build()],
            &pod("p").node_name("b").build(),
        );
        assert_eq!(v, vec![Unresolvable(NODE_NAME), Pass]);
    }

    #[test]
    fn no_name_or_an_empty_one_fits_every_node() {
        let nodes = || vec![node("a").build(), node("b").build()];
        assert_eq!(
            verdicts::<HostName>("{}", nodes(), &pod("p").build()),
            vec![Pass, Pass]
        );
        assert_eq!(
            verdicts::<HostName>("{}", nodes(), &pod("p").node_name("").build()),
            vec![Pass, Pass]
        );
    }

    #[test]
    fn a_name_no_node_has_fits_nothing() {
        let v = verdicts::<HostName>(
            "{}",
            vec![node("a").build()],
            &pod("p").node_name("z").build(),
        );
        assert_eq!(v, vec![Unresolvable(NODE_NAME)]);
    }
}
