use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};

/// `EqualPriority`: every node scores the same, v1's 1, so 10 here. v1 used it when a
/// Policy listed no priority.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::EqualPriority;
/// let mut h = SchedulerHarness::<EqualPriority>::new("{}").unwrap();
/// let a = h.add_node(node("a").build());
/// assert_eq!(h.schedule(&pod("p").build()).unwrap().scores, vec![(a, 10)]);
/// ```
#[derive(Debug, Default)]
pub struct EqualPriority;

impl SchedulerPolicy for EqualPriority {
    const NAME: &'static str = "EqualPriority";

    super::no_options!();
    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        _nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(vec![10; candidates.len()])
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::priorities::test_support::scores;

    #[test]
    fn every_node_scores_ten() {
        let v = scores::<EqualPriority>(
            "{}",
            vec![
                node("a").build(),
                node("b").requested(1000, 1 << 30, 5).build(),
            ],
            &pod("p").build(),
        );
        assert_eq!(v, vec![10, 10]);
    }
}
