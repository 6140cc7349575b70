use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};
use serde::Deserialize;

use crate::reasons::LABEL_PRESENCE;
use crate::util::{check_labels, filter_each, label, parse_options};

/// The v1 Policy argument `labelsPresence`, and [`CheckNodeLabelPresence`]'s options.
///
/// ```
/// let a: keelson_scheduler_policies::LabelsPresenceArgs =
///     serde_json::from_str(r#"{"labels":["retiring"],"presence":false}"#).unwrap();
/// assert!(!a.presence);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsPresenceArgs {
    /// The label keys looked for; values are ignored.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Whether every label must be present (true) or none may be (false); false when
    /// omitted, as in a v1 Policy file.
    #[serde(default)]
    pub presence: bool,
}

/// `CheckNodeLabelPresence` (v1 Policy argument `labelsPresence`): with `presence` true a node
/// fits when it has every listed label; with `presence` false, when it has none of them.
/// Label values are ignored.
///
/// Options: `{"labels": ["..."], "presence": true|false}`.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::CheckNodeLabelPresence;
/// let mut h = SchedulerHarness::<CheckNodeLabelPresence>::new(
///     r#"{"labels":["retiring"],"presence":false}"#).unwrap();
/// h.add_node(node("old").label("retiring", "soon").build());
/// let new = h.add_node(node("new").build());
/// assert_eq!(h.schedule(&pod("p").build()).unwrap().chosen, Some(new));
/// ```
#[derive(Debug, Clone)]
pub struct CheckNodeLabelPresence {
    args: LabelsPresenceArgs,
}

impl CheckNodeLabelPresence {
    /// The predicate for `args`; fails on an empty label name.
    ///
    /// ```
    /// use keelson_scheduler_policies::{CheckNodeLabelPresence, LabelsPresenceArgs};
    /// let args = LabelsPresenceArgs { labels: vec!["ssd".into()], presence: true };
    /// assert!(CheckNodeLabelPresence::new(args).is_ok());
    /// ```
    pub fn new(args: LabelsPresenceArgs) -> crate::Result<Self> {
        check_labels(Self::NAME, &args.labels)?;
        Ok(CheckNodeLabelPresence { args })
    }
}

impl SchedulerPolicy for CheckNodeLabelPresence {
    const NAME: &'static str = "CheckNodeLabelPresence";

    fn configure(options: &str) -> Result<Self, PluginError> {
        Ok(Self::new(parse_options(Self::NAME, options)?)?)
    }

    fn reasons() -> &'static [&'static str] {
        crate::reasons::REASONS
    }

    fn filter(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        let args = &self.args;
        Ok(filter_each(nodes, candidates, |node| {
            let ok = args
                .labels
                .iter()
                .all(|l| label(&node.labels, l).is_some() == args.presence);
            if ok {
                FilterResult::Pass
            } else {
                FilterResult::Unresolvable(LABEL_PRESENCE)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::ErrorKind;
    use keelson_plugin_sdk::FilterResult::{Pass, Unresolvable};
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::testing::SchedulerHarness;

    use super::*;
    use crate::predicates::test_support::verdicts;

    fn nodes() -> Vec<keelson_plugin_sdk::NodeInfo> {
        vec![
            node("both").label("ssd", "").label("gpu", "1").build(),
            node("ssd-only").label("ssd", "yes").build(),
            node("none").build(),
        ]
    }

    #[test]
    fn presence_true_needs_every_label_whatever_its_value() {
        let v = verdicts::<CheckNodeLabelPresence>(
            r#"{"labels":["ssd","gpu"],"presence":true}"#,
            nodes(),
            &pod("p").build(),
        );
        assert_eq!(
            v,
            vec![
                Pass,
                Unresolvable(LABEL_PRESENCE),
                Unresolvable(LABEL_PRESENCE)
            ]
        );
    }

    #[test]
    fn presence_false_forbids_every_label() {
        let v = verdicts::<CheckNodeLabelPresence>(
            r#"{"labels":["ssd","gpu"],"presence":false}"#,
            nodes(),
            &pod("p").build(),
        );
        assert_eq!(
            v,
            vec![
                Unresolvable(LABEL_PRESENCE),
                Unresolvable(LABEL_PRESENCE),
                Pass
            ]
        );
    }

    #[test]
    fn presence_defaults_to_false_and_no_labels_fit_everything() {
        let v =
            verdicts::<CheckNodeLabelPresence>(r#"{"labels":["gpu"]}"#, nodes(), &pod("p").build());
        assert_eq!(v, vec![Unresolvable(LABEL_PRESENCE), Pass, Pass]);
        let v = verdicts::<CheckNodeLabelPresence>("{}", nodes(), &pod("p").build());
        assert_eq!(v, vec![Pass, Pass, Pass]);
    }

    #[test]
    fn bad_options_are_config_errors() {
        for bad in [
            r#"{"labels":[""]}"#,
            r#"{"label":"x"}"#,
            r#"{"labels":"x"}"#,
            "nope",
        ] {
            let Err(e) = SchedulerHarness::<CheckNodeLabelPresence>::new(bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{bad}");
        }
    }
}
