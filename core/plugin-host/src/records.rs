//! Starting points for the scheduler records the host sends plugins, for embedders, tools and
//! tests: fill in what matters with struct update syntax.
//!
//! ```
//! use keelson_plugin_host::NodeInfo;
//! use keelson_plugin_host::records::{blank_node, resources};
//! let n = NodeInfo { allocatable: resources(4000, 8 << 30), ..blank_node("node-1") };
//! assert!(n.ready && n.allocatable.cpu == 4000);
//! ```

use crate::{NodeAffinity, NodeInfo, PodAffinity, PodInfo, Resources};

/// `cpu` milli-cores and `memory` bytes, nothing else.
///
/// ```
/// let r = keelson_plugin_host::records::resources(500, 1 << 20);
/// assert_eq!((r.cpu, r.memory, r.ephemeral_storage), (500, 1 << 20, 0));
/// ```
pub fn resources(cpu: u64, memory: u64) -> Resources {
    Resources {
        cpu,
        memory,
        ephemeral_storage: 0,
        extended: Vec::new(),
    }
}

/// A Ready, schedulable node named `name` with its hostname label, room for 110 pods and
/// nothing else: no allocatable CPU or memory, nothing requested, no taints.
///
/// ```
/// let n = keelson_plugin_host::records::blank_node("a");
/// assert_eq!((n.name.as_str(), n.allocatable_pods, n.pod_count), ("a", 110, 0));
/// ```
pub fn blank_node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: vec![("kubernetes.io/hostname".into(), name.into())],
        allocatable: resources(0, 0),
        allocatable_pods: 110,
        requested: resources(0, 0),
        non_zero_requested: resources(0, 0),
        pod_count: 0,
        used_ports: Vec::new(),
        disk_volumes: Vec::new(),
        taints: Vec::new(),
        unschedulable: false,
        ready: true,
        group_counts: Vec::new(),
    }
}

/// A pod `namespace/name` (UID `uid-<name>`) that requests nothing and has no constraints.
///
/// ```
/// let p = keelson_plugin_host::records::blank_pod("default", "web");
/// assert_eq!((p.uid.as_str(), p.requests.cpu), ("uid-web", 0));
/// ```
pub fn blank_pod(namespace: &str, name: &str) -> PodInfo {
    let no_affinity = PodAffinity {
        required: Vec::new(),
        preferred: Vec::new(),
    };
    PodInfo {
        uid: format!("uid-{name}"),
        namespace: namespace.into(),
        name: name.into(),
        labels: Vec::new(),
        annotations: Vec::new(),
        priority: 0,
        requests: resources(0, 0),
        non_zero_requests: resources(0, 0),
        host_ports: Vec::new(),
        disk_volumes: Vec::new(),
        node_name: None,
        node_selector: Vec::new(),
        node_affinity: NodeAffinity {
            required: Vec::new(),
            preferred: Vec::new(),
        },
        tolerations: Vec::new(),
        pod_affinity: no_affinity.clone(),
        pod_anti_affinity: no_affinity,
        topology_spread: Vec::new(),
        spread_groups: Vec::new(),
        service_groups: Vec::new(),
    }
}
