use keelson_plugin_sdk::{NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy};
use serde::Deserialize;

use super::score_each;
use crate::util::{check_labels, label, parse_options};

/// The v1 Policy argument `labelPreference`, and [`NodeLabelPriority`]'s options.
///
/// ```
/// let a: keelson_scheduler_policies::LabelPreferenceArgs =
///     serde_json::from_str(r#"{"label":"ssd","presence":true}"#).unwrap();
/// assert_eq!(a.label, "ssd");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelPreferenceArgs {
    /// The label key looked for; its value is ignored.
    pub label: String,
    /// Whether nodes with the label (true) or without it (false) are preferred; false when
    /// omitted, as in a v1 Policy file.
    #[serde(default)]
    pub presence: bool,
}

/// `NodeLabelPriority` (v1 `CalculateNodeLabelPriority`, Policy argument `labelPreference`):
/// 100 for a node that has the label when `presence` is true, or lacks it when false; else 0.
///
/// Options: `{"label": "...", "presence": true|false}`.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::NodeLabelPriority;
/// let mut h = SchedulerHarness::<NodeLabelPriority>::new(r#"{"label":"ssd","presence":true}"#).unwrap();
/// let a = h.add_node(node("a").build());
/// let b = h.add_node(node("b").label("ssd", "").build());
/// assert_eq!(h.schedule(&pod("p").build()).unwrap().scores, vec![(a, 0), (b, 100)]);
/// ```
#[derive(Debug, Clone)]
pub struct NodeLabelPriority {
    args: LabelPreferenceArgs,
}

impl NodeLabelPriority {
    /// The priority for `args`; fails on an empty label name.
    ///
    /// ```
    /// use keelson_scheduler_policies::{LabelPreferenceArgs, NodeLabelPriority};
    /// let args = LabelPreferenceArgs { label: String::new(), presence: true };
    /// assert!(NodeLabelPriority::new(args).is_err());
    /// ```
    pub fn new(args: LabelPreferenceArgs) -> crate::Result<Self> {
        check_labels(Self::NAME, [&args.label])?;
        Ok(NodeLabelPriority { args })
    }
}

impl SchedulerPolicy for NodeLabelPriority {
    const NAME: &'static str = "NodeLabelPriority";

    fn configure(options: &str) -> Result<Self, PluginError> {
        Ok(Self::new(parse_options(Self::NAME, options)?)?)
    }

    super::skip_filter!();

    fn score(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        Ok(score_each(nodes, candidates, |node| {
            let has = label(&node.labels, &self.args.label).is_some();
            if has == self.args.presence { 100 } else { 0 }
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

    fn nodes() -> Vec<keelson_plugin_sdk::NodeInfo> {
        vec![
            node("with").label("ssd", "no").build(),
            node("without").build(),
        ]
    }

    #[test]
    fn presence_true_prefers_labelled_nodes_whatever_the_value() {
        let v = scores::<NodeLabelPriority>(
            r#"{"label":"ssd","presence":true}"#,
            nodes(),
            &pod("p").build(),
        );
        assert_eq!(v, vec![100, 0]);
    }

    #[test]
    fn presence_false_prefers_unlabelled_nodes_and_is_the_default() {
        for opts in [r#"{"label":"ssd","presence":false}"#, r#"{"label":"ssd"}"#] {
            assert_eq!(
                scores::<NodeLabelPriority>(opts, nodes(), &pod("p").build()),
                vec![0, 100]
            );
        }
    }

    #[test]
    fn bad_options_are_config_errors() {
        for bad in ["{}", r#"{"label":""}"#, r#"{"label":"a","weight":2}"#] {
            let Err(e) = SchedulerHarness::<NodeLabelPriority>::new(bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}");
        }
    }
}
