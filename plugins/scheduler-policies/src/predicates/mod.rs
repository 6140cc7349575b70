//! The v1 fit predicates: each a policy that implements `filter`.
//!
//! Failures that preempting pods could cure (resources, ports, disks) are reported as
//! `Unschedulable`; the others (labels, names, taints) as `Unresolvable`, as the Kubernetes
//! scheduling framework classifies the same checks.

mod disk_conflict;
mod host_name;
mod host_ports;
mod label_presence;
mod node_selector;
mod resources;
mod service_affinity;
mod taints;

pub use disk_conflict::NoDiskConflict;
pub use host_name::HostName;
pub use host_ports::PodFitsHostPorts;
pub use label_presence::{CheckNodeLabelPresence, LabelsPresenceArgs};
pub use node_selector::MatchNodeSelector;
pub use resources::PodFitsResources;
pub use service_affinity::{CheckServiceAffinity, ServiceAffinityArgs};
pub use taints::PodToleratesNodeTaints;

/// Declares a predicate that takes no options: the unit struct's `configure`.
macro_rules! no_options {
    () => {
        fn configure(options: &str) -> Result<Self, keelson_plugin_sdk::PluginError> {
            let _: crate::util::NoOptions = crate::util::parse_options(Self::NAME, options)?;
            Ok(Self)
        }

        fn reasons() -> &'static [&'static str] {
            crate::reasons::REASONS
        }
    };
}
pub(crate) use no_options;

#[cfg(test)]
pub(crate) mod test_support {
    use keelson_plugin_sdk::testing::SchedulerHarness;
    use keelson_plugin_sdk::{FilterResult, NodeInfo, PodInfo, SchedulerPolicy};

    /// Runs `P` (configured with `options`) over `nodes` for `pod` and returns each node's
    /// verdict in node order.
    pub(crate) fn verdicts<P: SchedulerPolicy>(
        options: &str,
        nodes: Vec<NodeInfo>,
        pod: &PodInfo,
    ) -> Vec<FilterResult> {
        let mut h = SchedulerHarness::<P>::new(options).expect("configure");
        for n in nodes {
            h.add_node(n);
        }
        let d = h.schedule(pod).expect("cycle");
        d.filtered.into_iter().map(|(_, v)| v).collect()
    }
}
