//! What policies the crate offers, for the scheduler's config validation.

/// Whether a policy is a v1 predicate (filters) or a priority (scores).
///
/// ```
/// use keelson_scheduler_policies::{lookup, PolicyKind};
/// assert_eq!(lookup("HostName").map(|p| p.kind), Some(PolicyKind::Predicate));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A fit predicate: implements `filter`.
    Predicate,
    /// A priority function: implements `score`.
    Priority,
}

/// The v1 Policy-file argument a policy takes.
///
/// ```
/// use keelson_scheduler_policies::ArgumentKind;
/// assert_eq!(ArgumentKind::LabelPreference.key(), "labelPreference");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgumentKind {
    /// `serviceAffinity`: `CheckServiceAffinity`.
    ServiceAffinity,
    /// `labelsPresence`: `CheckNodeLabelPresence`.
    LabelsPresence,
    /// `serviceAntiAffinity`: `ServiceAntiAffinity`.
    ServiceAntiAffinity,
    /// `labelPreference`: `NodeLabelPriority`.
    LabelPreference,
}

impl ArgumentKind {
    /// The argument's key in a v1 Policy file.
    ///
    /// ```
    /// assert_eq!(keelson_scheduler_policies::ArgumentKind::ServiceAffinity.key(), "serviceAffinity");
    /// ```
    pub fn key(self) -> &'static str {
        match self {
            ArgumentKind::ServiceAffinity => "serviceAffinity",
            ArgumentKind::LabelsPresence => "labelsPresence",
            ArgumentKind::ServiceAntiAffinity => "serviceAntiAffinity",
            ArgumentKind::LabelPreference => "labelPreference",
        }
    }

    /// The policy a v1 Policy entry with this argument (and a custom name) stands for.
    ///
    /// ```
    /// use keelson_scheduler_policies::ArgumentKind;
    /// assert_eq!(ArgumentKind::LabelsPresence.policy().name, "CheckNodeLabelPresence");
    /// ```
    pub fn policy(self) -> &'static PolicyInfo {
        let name = match self {
            ArgumentKind::ServiceAffinity => "CheckServiceAffinity",
            ArgumentKind::LabelsPresence => "CheckNodeLabelPresence",
            ArgumentKind::ServiceAntiAffinity => "ServiceAntiAffinity",
            ArgumentKind::LabelPreference => "NodeLabelPriority",
        };
        // Every argument kind's policy is in the table; a test checks it.
        POLICIES
            .iter()
            .find(|p| p.name == name)
            .unwrap_or(&POLICIES[0])
    }
}

/// One policy of the crate, as the scheduler's config validation needs it.
///
/// ```
/// let p = keelson_scheduler_policies::lookup("PodFitsPorts").unwrap();
/// assert_eq!(p.name, "PodFitsHostPorts");
/// assert_eq!(p.aliases, &["PodFitsPorts"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The name in a v1 Policy file (the R11 name where v1.1 renamed one).
    pub name: &'static str,
    /// Other names accepted for it, such as v1.0 names kept as aliases.
    pub aliases: &'static [&'static str],
    /// Predicate or priority.
    pub kind: PolicyKind,
    /// The weight v1 gives the priority when a Policy entry names none: 1. Predicates have
    /// no weight and carry 0.
    pub default_weight: u32,
    /// The v1 Policy argument the policy needs, if any.
    pub argument: Option<ArgumentKind>,
}

impl PolicyInfo {
    /// Whether `name` is this policy's name or one of its aliases (case-sensitive, as v1).
    ///
    /// ```
    /// let p = keelson_scheduler_policies::lookup("SelectorSpreadPriority").unwrap();
    /// assert!(p.answers_to("SelectorSpreadPriority") && !p.answers_to("selectorspreadpriority"));
    /// ```
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }
}

const fn predicate(
    name: &'static str,
    aliases: &'static [&'static str],
    argument: Option<ArgumentKind>,
) -> PolicyInfo {
    PolicyInfo {
        name,
        aliases,
        kind: PolicyKind::Predicate,
        default_weight: 0,
        argument,
    }
}

const fn priority(
    name: &'static str,
    aliases: &'static [&'static str],
    argument: Option<ArgumentKind>,
) -> PolicyInfo {
    PolicyInfo {
        name,
        aliases,
        kind: PolicyKind::Priority,
        default_weight: 1,
        argument,
    }
}

static POLICIES: &[PolicyInfo] = &[
    predicate("PodFitsHostPorts", &["PodFitsPorts"], None),
    predicate("PodFitsResources", &[], None),
    predicate("NoDiskConflict", &[], None),
    predicate("MatchNodeSelector", &[], None),
    predicate("HostName", &[], None),
    predicate(
        "CheckNodeLabelPresence",
        &[],
        Some(ArgumentKind::LabelsPresence),
    ),
    predicate(
        "CheckServiceAffinity",
        &[],
        Some(ArgumentKind::ServiceAffinity),
    ),
    predicate("PodToleratesNodeTaints", &[], None),
    priority("LeastRequestedPriority", &[], None),
    priority("BalancedResourceAllocation", &[], None),
    // The alias keeps its V10 behaviour (the first service only): `Builtin` runs
    // `ServiceSpreadingPriority` for it.
    priority(
        "SelectorSpreadPriority",
        &["ServiceSpreadingPriority"],
        None,
    ),
    priority(
        "NodeLabelPriority",
        &[],
        Some(ArgumentKind::LabelPreference),
    ),
    priority(
        "ServiceAntiAffinity",
        &[],
        Some(ArgumentKind::ServiceAntiAffinity),
    ),
    priority("EqualPriority", &[], None),
    priority("TaintTolerationPriority", &[], None),
];

/// Every policy of the crate, predicates first.
///
/// ```
/// use keelson_scheduler_policies::{known_policies, PolicyKind};
/// let priorities = known_policies().iter().filter(|p| p.kind == PolicyKind::Priority).count();
/// assert_eq!(priorities, 7);
/// ```
pub fn known_policies() -> &'static [PolicyInfo] {
    POLICIES
}

/// The policy answering to `name` (its name or an alias), if any.
///
/// ```
/// assert!(keelson_scheduler_policies::lookup("EqualPriority").is_some());
/// assert!(keelson_scheduler_policies::lookup("NoSuchPolicy").is_none());
/// ```
pub fn lookup(name: &str) -> Option<&'static PolicyInfo> {
    POLICIES.iter().find(|p| p.answers_to(name))
}

/// The predicates of v1's `DefaultProvider` (R11 names), in v1's order, then
/// `PodToleratesNodeTaints`, which Kubernetes added to the defaults with taints (1.4): a
/// cluster where `kubectl taint` had no effect would surprise its users. (v1.2 added volume
/// predicates this crate does not offer.)
///
/// ```
/// assert_eq!(keelson_scheduler_policies::DEFAULT_PREDICATES.len(), 6);
/// ```
pub const DEFAULT_PREDICATES: &[&str] = &[
    "PodFitsHostPorts",
    "PodFitsResources",
    "NoDiskConflict",
    "MatchNodeSelector",
    "HostName",
    "PodToleratesNodeTaints",
];

/// The priorities of v1's `DefaultProvider` (R11 names) with their weights, then
/// `TaintTolerationPriority` (preferring nodes with fewer `PreferNoSchedule` taints the pod
/// does not tolerate), for the same reason as [`DEFAULT_PREDICATES`].
///
/// ```
/// let names: Vec<&str> = keelson_scheduler_policies::DEFAULT_PRIORITIES.iter().map(|p| p.0).collect();
/// assert!(names.contains(&"SelectorSpreadPriority"));
/// ```
pub const DEFAULT_PRIORITIES: &[(&str, u32)] = &[
    ("LeastRequestedPriority", 1),
    ("BalancedResourceAllocation", 1),
    ("SelectorSpreadPriority", 1),
    ("TaintTolerationPriority", 1),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_kind_maps_to_a_policy_taking_it() {
        for kind in [
            ArgumentKind::ServiceAffinity,
            ArgumentKind::LabelsPresence,
            ArgumentKind::ServiceAntiAffinity,
            ArgumentKind::LabelPreference,
        ] {
            assert_eq!(kind.policy().argument, Some(kind), "{kind:?}");
        }
    }

    #[test]
    fn defaults_name_known_policies_of_the_right_kind() {
        for name in DEFAULT_PREDICATES {
            assert_eq!(
                lookup(name).map(|p| p.kind),
                Some(PolicyKind::Predicate),
                "{name}"
            );
        }
        for (name, weight) in DEFAULT_PRIORITIES {
            let p = lookup(name).expect(name);
            assert_eq!((p.kind, p.default_weight), (PolicyKind::Priority, *weight));
        }
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut all: Vec<&str> = POLICIES
            .iter()
            .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
