use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeInfo, NodeSelectorTerm, NodeTable, PluginError, PodInfo,
    SchedulerPolicy, SelectorOperator, SelectorRequirement,
};

use crate::reasons::NODE_SELECTOR;
use crate::util::{filter_each, label};

/// `MatchNodeSelector`: every `spec.nodeSelector` entry must be a label of the node, and,
/// when the pod has required node-affinity terms, at least one term must hold.
///
/// A term holds when all of its requirements do (`In`, `NotIn`, `Exists`, `DoesNotExist`,
/// `Gt`, `Lt` on labels; field requirements on `metadata.name`). A term with no requirement
/// matches no node, as in Kubernetes. Preferred terms are for scoring and ignored here.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::MatchNodeSelector;
/// let mut h = SchedulerHarness::<MatchNodeSelector>::new("{}").unwrap();
/// h.add_node(node("hdd").label("disk", "hdd").build());
/// let ssd = h.add_node(node("ssd").label("disk", "ssd").build());
/// assert_eq!(h.schedule(&pod("p").node_selector("disk", "ssd").build()).unwrap().chosen, Some(ssd));
/// ```
#[derive(Debug, Default)]
pub struct MatchNodeSelector;

/// Whether `value` (the label or field, if present) satisfies `req`.
fn requirement_holds(req: &SelectorRequirement, value: Option<&str>) -> bool {
    let listed = |v: &str| req.values.iter().any(|x| x == v);
    match req.operator {
        SelectorOperator::In => value.is_some_and(listed),
        SelectorOperator::NotIn => !value.is_some_and(listed),
        SelectorOperator::Exists => value.is_some(),
        SelectorOperator::DoesNotExist => value.is_none(),
        SelectorOperator::Gt | SelectorOperator::Lt => {
            // Kubernetes wants exactly one integer bound; anything else matches nothing.
            let [bound] = req.values.as_slice() else {
                return false;
            };
            let (Some(Ok(v)), Ok(b)) = (value.map(str::parse::<i64>), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == SelectorOperator::Gt {
                v > b
            } else {
                v < b
            }
        }
    }
}

fn term_holds(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    term.match_expressions
        .iter()
        .all(|r| requirement_holds(r, label(&node.labels, &r.key)))
        && term.match_fields.iter().all(|r| {
            let field = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_holds(r, field)
        })
}

/// Whether `node` satisfies the pod's node selector and required node affinity.
pub(crate) fn node_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let selector = pod
        .node_selector
        .iter()
        .all(|(k, v)| label(&node.labels, k) == Some(v.as_str()));
    let required = &pod.node_affinity.required;
    selector && (required.is_empty() || required.iter().any(|t| term_holds(t, node)))
}

impl SchedulerPolicy for MatchNodeSelector {
    const NAME: &'static str = "MatchNodeSelector";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(filter_each(nodes, candidates, |node| {
            if node_matches(pod, node) {
                FilterResult::Pass
            } else {
                FilterResult::Unresolvable(NODE_SELECTOR)
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

    fn req(key: &str, operator: SelectorOperator, values: &[&str]) -> SelectorRequirement {
        SelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn term(exprs: Vec<SelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: Vec::new(),
        }
    }

    fn with_terms(terms: Vec<NodeSelectorTerm>) -> PodInfo {
        let mut p = pod("p").build();
        p.node_affinity.required = terms;
        p
    }

    #[test]
    fn every_selector_label_must_match() {
        let nodes = || {
            vec![
                node("a").label("disk", "ssd").label("zone", "z1").build(),
                node("b").label("disk", "ssd").build(),
                node("c").label("disk", "hdd").label("zone", "z1").build(),
            ]
        };
        let p = pod("p")
            .node_selector("disk", "ssd")
            .node_selector("zone", "z1")
            .build();
        assert_eq!(
            verdicts::<MatchNodeSelector>("{}", nodes(), &p),
            vec![
                Pass,
                Unresolvable(NODE_SELECTOR),
                Unresolvable(NODE_SELECTOR)
            ]
        );
        assert_eq!(
            verdicts::<MatchNodeSelector>("{}", nodes(), &pod("p").build()),
            vec![Pass, Pass, Pass]
        );
    }

    #[test]
    fn each_operator_follows_kubernetes() {
        let n = || vec![node("a").label("gen", "3").label("disk", "ssd").build()];
        let check = |r: SelectorRequirement| {
            verdicts::<MatchNodeSelector>("{}", n(), &with_terms(vec![term(vec![r])]))[0] == Pass
        };
        use SelectorOperator::*;
        assert!(check(req("disk", In, &["ssd", "nvme"])));
        assert!(!check(req("disk", In, &["hdd"])));
        assert!(!check(req("missing", In, &["x"])));
        assert!(check(req("disk", NotIn, &["hdd"])));
        assert!(check(req("missing", NotIn, &["hdd"])));
        assert!(!check(req("disk", NotIn, &["ssd"])));
        assert!(check(req("disk", Exists, &[])));
        assert!(!check(req("missing", Exists, &[])));
        assert!(check(req("missing", DoesNotExist, &[])));
        assert!(!check(req("disk", DoesNotExist, &[])));
        assert!(check(req("gen", Gt, &["2"])));
        assert!(!check(req("gen", Gt, &["3"])));
        assert!(check(req("gen", Lt, &["4"])));
        assert!(!check(req("gen", Lt, &["3"])));
        assert!(!check(req("disk", Gt, &["1"])), "a non-integer label");
        assert!(!check(req("gen", Gt, &["1", "2"])), "two bounds");
        assert!(!check(req("missing", Lt, &["9"])));
    }

    #[test]
    fn one_term_of_several_is_enough_and_all_requirements_of_it_must_hold() {
        let p = with_terms(vec![
            term(vec![req("zone", SelectorOperator::In, &["z9"])]),
            term(vec![
                req("disk", SelectorOperator::In, &["ssd"]),
                req("zone", SelectorOperator::Exists, &[]),
            ]),
        ]);
        let v = verdicts::<MatchNodeSelector>(
            "{}",
            vec![
                node("a").label("disk", "ssd").label("zone", "z1").build(),
                node("b").label("disk", "ssd").build(),
                node("c").label("zone", "z9").build(),
            ],
            &p,
        );
        assert_eq!(v, vec![Pass, Unresolvable(NODE_SELECTOR), Pass]);
    }

    #[test]
    fn an_empty_term_matches_nothing_but_no_terms_match_everything() {
        let v = verdicts::<MatchNodeSelector>(
            "{}",
            vec![node("a").build()],
            &with_terms(vec![term(vec![])]),
        );
        assert_eq!(v, vec![Unresolvable(NODE_SELECTOR)]);
        let v = verdicts::<MatchNodeSelector>("{}", vec![node("a").build()], &with_terms(vec![]));
        assert_eq!(v, vec![Pass]);
    }

    #[test]
    fn match_fields_compare_the_node_name() {
        let mut t = term(vec![]);
        t.match_fields = vec![req("metadata.name", SelectorOperator::In, &["b"])];
        let v = verdicts::<MatchNodeSelector>(
            "{}",
            vec![node("a").build(), node("b").build()],
            &with_terms(vec![t]),
        );
        assert_eq!(v, vec![Unresolvable(NODE_SELECTOR), Pass]);
    }

    #[test]
    fn selector_and_affinity_must_both_hold() {
        let mut p = with_terms(vec![term(vec![req("disk", SelectorOperator::Exists, &[])])]);
        p.node_selector = vec![("zone".into(), "z1".into())];
        let v = verdicts::<MatchNodeSelector>(
            "{}",
            vec![
                node("a").label("disk", "ssd").build(),
                node("b").label("disk", "ssd").label("zone", "z1").build(),
            ],
            &p,
        );
        assert_eq!(v, vec![Unresolvable(NODE_SELECTOR), Pass]);
    }
}
