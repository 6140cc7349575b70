//! [`Builtin`]: any policy of the crate, chosen by a v1 Policy-file entry.

use keelson_plugin_sdk::{
    CycleOutcome, FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, PreFilterResult,
    SchedulerPolicy,
};
use serde::Deserialize;

use crate::catalog::{ArgumentKind, PolicyInfo, known_policies, lookup};
use crate::util::parse_options;
use crate::{
    BalancedResourceAllocation, CheckNodeLabelPresence, CheckServiceAffinity, EqualPriority, Error,
    HostName, LabelPreferenceArgs, LabelsPresenceArgs, LeastRequestedPriority, MatchNodeSelector,
    NoDiskConflict, NodeLabelPriority, PodFitsHostPorts, PodFitsResources, PodToleratesNodeTaints,
    Result, SelectorSpreadPriority, ServiceAffinityArgs, ServiceAntiAffinity,
    ServiceAntiAffinityArgs, ServiceSpreadingPriority, TaintTolerationPriority,
};

/// A v1 Policy-file entry, predicate or priority.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    argument: Option<Argument>,
    /// A priority entry's weight: accepted so an entry passes through whole, but applied by
    /// the host, not here.
    #[serde(default)]
    #[allow(dead_code)]
    weight: Option<i64>,
}

/// v1's `PredicateArgument` and `PriorityArgument` in one: exactly one key may be set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Argument {
    service_affinity: Option<ServiceAffinityArgs>,
    labels_presence: Option<LabelsPresenceArgs>,
    service_anti_affinity: Option<ServiceAntiAffinityArgs>,
    label_preference: Option<LabelPreferenceArgs>,
}

/// An argument, once its single key is known.
enum Given {
    ServiceAffinity(ServiceAffinityArgs),
    LabelsPresence(LabelsPresenceArgs),
    ServiceAntiAffinity(ServiceAntiAffinityArgs),
    LabelPreference(LabelPreferenceArgs),
}

impl Given {
    fn kind(&self) -> ArgumentKind {
        match self {
            Given::ServiceAffinity(_) => ArgumentKind::ServiceAffinity,
            Given::LabelsPresence(_) => ArgumentKind::LabelsPresence,
            Given::ServiceAntiAffinity(_) => ArgumentKind::ServiceAntiAffinity,
            Given::LabelPreference(_) => ArgumentKind::LabelPreference,
        }
    }
}

impl Argument {
    /// The one argument given; `None` for an empty object, which v1 treated as no argument.
    fn into_given(self) -> Result<Option<Given>> {
        let mut given: Vec<Given> = Vec::new();
        given.extend(self.service_affinity.map(Given::ServiceAffinity));
        given.extend(self.labels_presence.map(Given::LabelsPresence));
        given.extend(self.service_anti_affinity.map(Given::ServiceAntiAffinity));
        given.extend(self.label_preference.map(Given::LabelPreference));
        if given.len() > 1 {
            return Err(Error::ArgumentShape { found: given.len() });
        }
        Ok(given.pop())
    }
}

enum Inner {
    PodFitsHostPorts(PodFitsHostPorts),
    PodFitsResources(PodFitsResources),
    NoDiskConflict(NoDiskConflict),
    MatchNodeSelector(MatchNodeSelector),
    HostName(HostName),
    CheckNodeLabelPresence(CheckNodeLabelPresence),
    CheckServiceAffinity(CheckServiceAffinity),
    PodToleratesNodeTaints(PodToleratesNodeTaints),
    LeastRequestedPriority(LeastRequestedPriority),
    BalancedResourceAllocation(BalancedResourceAllocation),
    SelectorSpreadPriority(SelectorSpreadPriority),
    ServiceSpreadingPriority(ServiceSpreadingPriority),
    NodeLabelPriority(NodeLabelPriority),
    ServiceAntiAffinity(ServiceAntiAffinity),
    EqualPriority(EqualPriority),
    TaintTolerationPriority(TaintTolerationPriority),
}

/// Runs `$body` with `$p` bound to the policy inside `$inner`, whatever its type.
macro_rules! dispatch {
    ($inner:expr, $p:ident => $body:expr) => {
        match $inner {
            Inner::PodFitsHostPorts($p) => $body,
            Inner::PodFitsResources($p) => $body,
            Inner::NoDiskConflict($p) => $body,
            Inner::MatchNodeSelector($p) => $body,
            Inner::HostName($p) => $body,
            Inner::CheckNodeLabelPresence($p) => $body,
            Inner::CheckServiceAffinity($p) => $body,
            Inner::PodToleratesNodeTaints($p) => $body,
            Inner::LeastRequestedPriority($p) => $body,
            Inner::BalancedResourceAllocation($p) => $body,
            Inner::SelectorSpreadPriority($p) => $body,
            Inner::ServiceSpreadingPriority($p) => $body,
            Inner::NodeLabelPriority($p) => $body,
            Inner::ServiceAntiAffinity($p) => $body,
            Inner::EqualPriority($p) => $body,
            Inner::TaintTolerationPriority($p) => $body,
        }
    };
}

/// Any policy of the crate, chosen by its options, which are one v1 Policy-file entry:
/// `{"name": "<v1 name or alias>", "argument": {...}, "weight": n}`.
///
/// - A known name or alias (see [`known_policies`]) picks that policy. If it needs an
///   argument, `argument` must hold that kind (`serviceAffinity`, `labelsPresence`,
///   `serviceAntiAffinity` or `labelPreference`), exactly as in the Policy file; if it takes
///   none, `argument` must be absent, `null` or `{}`.
/// - Any other name is, as in v1, a custom name for the policy its argument selects
///   (`{"name": "RegionAffinity", "argument": {"serviceAffinity": {"labels": ["region"]}}}`);
///   it must match `^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])$`.
/// - `weight` is accepted, so a priority entry passes through whole, and ignored: the host
///   applies weights.
///
/// An unknown name without an argument is an `invalid-config` error that names it and lists
/// the known names. `ServiceSpreadingPriority`, an alias of `SelectorSpreadPriority`, runs
/// [`ServiceSpreadingPriority`] (the first service only), as the V10 name did.
///
/// Every policy shares the reason table [`REASONS`](crate::reasons::REASONS), so reason ids
/// mean the same under `Builtin` as under the policy's own type.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::Builtin;
///
/// let entry = r#"{"name":"ZoneSpread","weight":2,
///                 "argument":{"serviceAntiAffinity":{"label":"zone"}}}"#;
/// let mut h = SchedulerHarness::<Builtin>::new(entry).unwrap();
/// h.add_node(node("a").label("zone", "z1").group_count(1, 1).build());
/// let b = h.add_node(node("b").label("zone", "z2").build());
/// assert_eq!(h.schedule(&pod("web").selected_by(1, true).build()).unwrap().chosen, Some(b));
///
/// let err = SchedulerHarness::<Builtin>::new(r#"{"name":"PodFitsEverything"}"#).err().unwrap();
/// assert!(err.message.contains("PodFitsEverything") && err.message.contains("HostName"));
/// ```
pub struct Builtin {
    name: String,
    info: &'static PolicyInfo,
    inner: Inner,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin")
            .field("name", &self.name)
            .field("policy", &self.info.name)
            .finish()
    }
}

/// Whether `name` is a valid v1 Policy entry name.
fn valid_custom_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner_ok = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-';
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(inner_ok)
}

fn known_names() -> String {
    known_policies()
        .iter()
        .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Builtin {
    /// Builds the policy for one v1 Policy entry, given as JSON text; see [`Builtin`].
    ///
    /// ```
    /// use keelson_scheduler_policies::Builtin;
    /// let b = Builtin::from_entry(r#"{"name":"PodFitsPorts"}"#).unwrap();
    /// assert_eq!((b.name(), b.info().name), ("PodFitsPorts", "PodFitsHostPorts"));
    /// ```
    pub fn from_entry(options: &str) -> Result<Builtin> {
        let entry: Entry = parse_options("Builtin", options)?;
        let given = match entry.argument {
            Some(a) => a.into_given()?,
            None => None,
        };
        let info = match (lookup(&entry.name), &given) {
            (Some(info), given) => {
                match (info.argument, given.as_ref().map(Given::kind)) {
                    (None, None) => {}
                    (Some(want), Some(got)) if want == got => {}
                    (Some(want), None) => {
                        return Err(Error::MissingArgument {
                            policy: info.name,
                            key: want.key(),
                        });
                    }
                    (_, Some(got)) => {
                        return Err(Error::UnexpectedArgument {
                            policy: info.name,
                            key: got.key(),
                        });
                    }
                }
                info
            }
            (None, Some(given)) => {
                if !valid_custom_name(&entry.name) {
                    return Err(Error::InvalidName { name: entry.name });
                }
                given.kind().policy()
            }
            (None, None) => {
                return Err(Error::UnknownPolicy {
                    name: entry.name,
                    known: known_names(),
                });
            }
        };
        let inner = match given {
            Some(Given::ServiceAffinity(a)) => {
                Inner::CheckServiceAffinity(CheckServiceAffinity::new(a)?)
            }
            Some(Given::LabelsPresence(a)) => {
                Inner::CheckNodeLabelPresence(CheckNodeLabelPresence::new(a)?)
            }
            Some(Given::ServiceAntiAffinity(a)) => {
                Inner::ServiceAntiAffinity(ServiceAntiAffinity::new(a)?)
            }
            Some(Given::LabelPreference(a)) => Inner::NodeLabelPriority(NodeLabelPriority::new(a)?),
            None => Self::without_argument(info, &entry.name),
        };
        Ok(Builtin {
            name: entry.name,
            info,
            inner,
        })
    }

    fn without_argument(info: &PolicyInfo, given_name: &str) -> Inner {
        match info.name {
            "PodFitsHostPorts" => Inner::PodFitsHostPorts(PodFitsHostPorts),
            "PodFitsResources" => Inner::PodFitsResources(PodFitsResources),
            "NoDiskConflict" => Inner::NoDiskConflict(NoDiskConflict),
            "MatchNodeSelector" => Inner::MatchNodeSelector(MatchNodeSelector),
            "HostName" => Inner::HostName(HostName),
            "PodToleratesNodeTaints" => Inner::PodToleratesNodeTaints(PodToleratesNodeTaints),
            "LeastRequestedPriority" => Inner::LeastRequestedPriority(LeastRequestedPriority),
            "BalancedResourceAllocation" => {
                Inner::BalancedResourceAllocation(BalancedResourceAllocation)
            }
            "SelectorSpreadPriority" if given_name == "ServiceSpreadingPriority" => {
                Inner::ServiceSpreadingPriority(ServiceSpreadingPriority)
            }
            "SelectorSpreadPriority" => Inner::SelectorSpreadPriority(SelectorSpreadPriority),
            "TaintTolerationPriority" => Inner::TaintTolerationPriority(TaintTolerationPriority),
            // EqualPriority, and nothing else: every policy taking an argument was built from
            // it, and a test checks that every name without one reaches its own arm.
            _ => Inner::EqualPriority(EqualPriority),
        }
    }

    /// The name the entry gave: the policy's name, an alias or a v1 custom name.
    ///
    /// ```
    /// let b = keelson_scheduler_policies::Builtin::from_entry(r#"{"name":"HostName"}"#).unwrap();
    /// assert_eq!(b.name(), "HostName");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy the entry selected.
    ///
    /// ```
    /// use keelson_scheduler_policies::{Builtin, PolicyKind};
    /// let b = Builtin::from_entry(r#"{"name":"EqualPriority","weight":1}"#).unwrap();
    /// assert_eq!(b.info().kind, PolicyKind::Priority);
    /// ```
    pub fn info(&self) -> &'static PolicyInfo {
        self.info
    }

    /// The `NAME` of the policy type running, for logs: the same as `info().name` except for
    /// the `ServiceSpreadingPriority` alias, which runs its own V10 type.
    ///
    /// ```
    /// use keelson_scheduler_policies::Builtin;
    /// let b = Builtin::from_entry(r#"{"name":"ServiceSpreadingPriority"}"#).unwrap();
    /// assert_eq!((b.info().name, b.running()), ("SelectorSpreadPriority", "ServiceSpreadingPriority"));
    /// ```
    pub fn running(&self) -> &'static str {
        dispatch!(&self.inner, p => policy_name(p))
    }
}

fn policy_name<P: SchedulerPolicy>(_: &P) -> &'static str {
    P::NAME
}

impl SchedulerPolicy for Builtin {
    const NAME: &'static str = "builtin";

    fn configure(options: &str) -> std::result::Result<Self, PluginError> {
        Ok(Builtin::from_entry(options)?)
    }

    fn reasons() -> &'static [&'static str] {
        crate::reasons::REASONS
    }

    fn node_changed(&mut self, index: NodeIndex, nodes: &NodeTable) {
        dispatch!(&mut self.inner, p => p.node_changed(index, nodes))
    }

    fn node_removed(&mut self, index: NodeIndex, nodes: &NodeTable) {
        dispatch!(&mut self.inner, p => p.node_removed(index, nodes))
    }

    fn pre_filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
    ) -> std::result::Result<PreFilterResult, PluginError> {
        dispatch!(&mut self.inner, p => p.pre_filter(cycle, pod, nodes))
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> std::result::Result<Vec<FilterResult>, PluginError> {
        dispatch!(&mut self.inner, p => p.filter(cycle, pod, nodes, candidates))
    }

    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> std::result::Result<Vec<i64>, PluginError> {
        dispatch!(&mut self.inner, p => p.score(cycle, pod, nodes, candidates))
    }

    fn normalize_score(
        &mut self,
        cycle: u64,
        scores: Vec<i64>,
    ) -> std::result::Result<Vec<i64>, PluginError> {
        dispatch!(&mut self.inner, p => p.normalize_score(cycle, scores))
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) {
        dispatch!(&mut self.inner, p => p.end_cycle(cycle, outcome))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::testing::SchedulerHarness;
    use keelson_plugin_sdk::{ErrorKind, FilterResult};

    use super::*;
    use crate::PolicyKind;
    use crate::reasons::{INSUFFICIENT_CPU, REASONS};

    fn entry(json: &str) -> Builtin {
        Builtin::from_entry(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn config_error(json: &str) -> String {
        let Err(e) = SchedulerHarness::<Builtin>::new(json) else {
            panic!("{json} was accepted");
        };
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{json}");
        e.message
    }

    fn argument_for(kind: ArgumentKind) -> &'static str {
        match kind {
            ArgumentKind::ServiceAffinity => r#"{"serviceAffinity":{"labels":["region"]}}"#,
            ArgumentKind::LabelsPresence => {
                r#"{"labelsPresence":{"labels":["ssd"],"presence":true}}"#
            }
            ArgumentKind::ServiceAntiAffinity => r#"{"serviceAntiAffinity":{"label":"zone"}}"#,
            ArgumentKind::LabelPreference => {
                r#"{"labelPreference":{"label":"ssd","presence":true}}"#
            }
        }
    }

    #[test]
    fn every_known_name_and_alias_runs_its_own_policy() {
        for info in known_policies() {
            for name in std::iter::once(info.name).chain(info.aliases.iter().copied()) {
                let json = match info.argument {
                    Some(kind) => {
                        format!(r#"{{"name":"{name}","argument":{}}}"#, argument_for(kind))
                    }
                    None => format!(r#"{{"name":"{name}"}}"#),
                };
                let b = entry(&json);
                assert_eq!(b.info().name, info.name, "{json}");
                assert_eq!(b.name(), name);
                let want = if name == "ServiceSpreadingPriority" {
                    name
                } else {
                    info.name
                };
                assert_eq!(b.running(), want, "{json}");
            }
        }
    }

    #[test]
    fn the_v1_example_policy_file_entries_all_load() {
        let policy: serde_json::Value = serde_json::from_str(
            r#"{"kind":"Policy","apiVersion":"v1",
             "predicates":[{"name":"PodFitsPorts"},{"name":"PodFitsResources"},{"name":"NoDiskConflict"},
               {"name":"MatchNodeSelector"},{"name":"HostName"}],
             "priorities":[{"name":"LeastRequestedPriority","weight":1},{"name":"BalancedResourceAllocation","weight":1},
               {"name":"ServiceSpreadingPriority","weight":1},{"name":"EqualPriority","weight":1}]}"#,
        )
        .expect("json");
        for (list, kind) in [
            ("predicates", PolicyKind::Predicate),
            ("priorities", PolicyKind::Priority),
        ] {
            for e in policy[list].as_array().expect("list") {
                let b = entry(&e.to_string());
                assert_eq!(b.info().kind, kind, "{e}");
            }
        }
    }

    #[test]
    fn custom_names_take_their_policy_from_the_argument() {
        let cases = [
            (
                r#"{"name":"RegionAffinity","argument":{"serviceAffinity":{"labels":["region"]}}}"#,
                "CheckServiceAffinity",
            ),
            (
                r#"{"name":"RequireSSD","argument":{"labelsPresence":{"labels":["ssd"],"presence":true}}}"#,
                "CheckNodeLabelPresence",
            ),
            (
                r#"{"name":"ZoneSpread","weight":2,"argument":{"serviceAntiAffinity":{"label":"zone"}}}"#,
                "ServiceAntiAffinity",
            ),
            (
                r#"{"name":"prefer-ssd","argument":{"labelPreference":{"label":"ssd","presence":true}}}"#,
                "NodeLabelPriority",
            ),
        ];
        for (json, policy) in cases {
            let b = entry(json);
            assert_eq!(b.running(), policy, "{json}");
            assert_ne!(b.name(), policy);
        }
    }

    #[test]
    fn an_unknown_name_names_itself_and_the_known_ones() {
        let msg = config_error(r#"{"name":"PodFitsEverything"}"#);
        assert!(msg.contains("\"PodFitsEverything\""), "{msg}");
        for info in known_policies() {
            assert!(msg.contains(info.name), "{msg} lacks {}", info.name);
        }
        assert!(msg.contains("PodFitsPorts"), "aliases are listed: {msg}");
    }

    #[test]
    fn names_are_case_sensitive_as_in_v1() {
        config_error(r#"{"name":"hostname"}"#);
    }

    #[test]
    fn argument_mismatches_are_config_errors() {
        let msg = config_error(r#"{"name":"CheckServiceAffinity"}"#);
        assert!(msg.contains("serviceAffinity"), "{msg}");
        let msg =
            config_error(r#"{"name":"HostName","argument":{"serviceAffinity":{"labels":["a"]}}}"#);
        assert!(
            msg.contains("HostName") && msg.contains("serviceAffinity"),
            "{msg}"
        );
        let msg = config_error(
            r#"{"name":"NodeLabelPriority","argument":{"serviceAntiAffinity":{"label":"a"}}}"#,
        );
        assert!(msg.contains("serviceAntiAffinity"), "{msg}");
        let msg = config_error(
            r#"{"name":"X1","argument":{"serviceAntiAffinity":{"label":"a"},"labelPreference":{"label":"b"}}}"#,
        );
        assert!(msg.contains("exactly one"), "{msg}");
    }

    #[test]
    fn an_empty_or_null_argument_is_no_argument() {
        assert_eq!(
            entry(r#"{"name":"HostName","argument":{}}"#).running(),
            "HostName"
        );
        assert_eq!(
            entry(r#"{"name":"HostName","argument":null}"#).running(),
            "HostName"
        );
        config_error(r#"{"name":"Custom","argument":{}}"#);
    }

    #[test]
    fn malformed_entries_are_config_errors() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"name":"HostName","extra":1}"#,
            r#"{"name":"X1","argument":{"nodeAffinity":{}}}"#,
            r#"{"name":"X1","argument":{"serviceAntiAffinity":{"label":""}}}"#,
            r#"{"name":"X1","argument":{"serviceAntiAffinity":{"label":"z","extra":1}}}"#,
            r#"{"name":"-bad","argument":{"serviceAntiAffinity":{"label":"z"}}}"#,
            r#"{"name":"x","argument":{"serviceAntiAffinity":{"label":"z"}}}"#,
            r#"{"name":"has space","argument":{"serviceAntiAffinity":{"label":"z"}}}"#,
            r#"{"name":"HostName","weight":"heavy"}"#,
        ] {
            config_error(bad);
        }
    }

    #[test]
    fn builtin_filters_exactly_as_the_policy_it_runs() {
        let mut h =
            SchedulerHarness::<Builtin>::new(r#"{"name":"PodFitsResources"}"#).expect("configure");
        let small = h.add_node(node("small").cpu(500).build());
        let big = h.add_node(node("big").cpu(4000).build());
        let d = h.schedule(&pod("p").cpu(1000).build()).expect("cycle");
        assert_eq!(
            d.filtered,
            vec![
                (small, FilterResult::Unschedulable(INSUFFICIENT_CPU)),
                (big, FilterResult::Pass)
            ]
        );
        assert_eq!(
            h.reasons(),
            REASONS.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn builtin_priorities_skip_filtering_and_score_as_the_policy() {
        let mut h =
            SchedulerHarness::<Builtin>::new(r#"{"name":"ServiceSpreadingPriority","weight":1}"#)
                .expect("configure");
        let a = h.add_node(node("a").group_count(1, 2).group_count(2, 9).build());
        let b = h.add_node(node("b").group_count(1, 1).build());
        let d = h
            .schedule(
                &pod("web")
                    .selected_by(1, true)
                    .selected_by(2, false)
                    .build(),
            )
            .expect("cycle");
        assert_eq!(d.pre_filter, PreFilterResult::Skip);
        assert_eq!(d.scores, vec![(a, 0), (b, 50)]);
    }

    #[test]
    fn custom_name_validation_follows_the_v1_pattern() {
        for ok in ["ab", "A-1", "zone-spread", "X9"] {
            assert!(valid_custom_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", "ab-", "a_b", "a.b", "äb"] {
            assert!(!valid_custom_name(bad), "{bad}");
        }
    }
}
