//! Builders for the inputs of plugin calls, for tests and benchmarks: nodes, pods, admission
//! requests and network requests with sensible defaults.
//!
//! ```
//! use keelson_plugin_sdk::fixtures::{node, pod};
//! let n = node("node-1").cpu(4000).memory(8 << 30).label("zone", "a").build();
//! let p = pod("web-0").cpu(500).build();
//! assert_eq!(n.allocatable.cpu, 4000);
//! assert_eq!(p.requests.cpu, 500);
//! ```

use crate::{
    AdmissionRequest, AttachRequest, DetachRequest, DiskVolume, GroupCount, GroupVersionKind,
    GroupVersionResource, HostPort, NodeAffinity, NodeInfo, NodeNetworkInfo, Operation,
    PodAffinity, PodInfo, Protocol, Resources, Taint, TaintEffect, Toleration, UserInfo,
};

/// The CPU (milli-cores) a container without a CPU request counts as in `non-zero-requests`.
pub const DEFAULT_NON_ZERO_CPU: u64 = 100;
/// The memory (bytes) a container without a memory request counts as in `non-zero-requests`.
pub const DEFAULT_NON_ZERO_MEMORY: u64 = 200 << 20;

fn no_resources() -> Resources {
    Resources {
        cpu: 0,
        memory: 0,
        ephemeral_storage: 0,
        extended: Vec::new(),
    }
}

/// Starts a node named `name`: Ready, schedulable, 2 CPUs, 4 GiB, 110 pods, nothing requested.
///
/// ```
/// let n = keelson_plugin_sdk::fixtures::node("a").build();
/// assert!(n.ready && !n.unschedulable && n.allocatable_pods == 110);
/// ```
pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder(NodeInfo {
        name: name.into(),
        labels: vec![("kubernetes.io/hostname".into(), name.into())],
        allocatable: Resources {
            cpu: 2000,
            memory: 4 << 30,
            ..no_resources()
        },
        allocatable_pods: 110,
        requested: no_resources(),
        non_zero_requested: no_resources(),
        pod_count: 0,
        used_ports: Vec::new(),
        disk_volumes: Vec::new(),
        taints: Vec::new(),
        unschedulable: false,
        ready: true,
        group_counts: Vec::new(),
    })
}

/// Builds a [`NodeInfo`]; see [`node`].
#[derive(Debug, Clone)]
pub struct NodeBuilder(NodeInfo);

impl NodeBuilder {
    /// Allocatable CPU in milli-cores.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::node("a").cpu(500).build().allocatable.cpu, 500);
    /// ```
    pub fn cpu(mut self, milli: u64) -> Self {
        self.0.allocatable.cpu = milli;
        self
    }

    /// Allocatable memory in bytes.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::node("a").memory(1 << 30).build().allocatable.memory, 1 << 30);
    /// ```
    pub fn memory(mut self, bytes: u64) -> Self {
        self.0.allocatable.memory = bytes;
        self
    }

    /// How many pods the node may run.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::node("a").max_pods(10).build().allocatable_pods, 10);
    /// ```
    pub fn max_pods(mut self, pods: u32) -> Self {
        self.0.allocatable_pods = pods;
        self
    }

    /// CPU and memory already requested by `pods` pods on the node (also taken as the node's
    /// `non-zero-requested`; set that field directly to tell them apart).
    ///
    /// ```
    /// let n = keelson_plugin_sdk::fixtures::node("a").requested(1000, 1 << 30, 3).build();
    /// assert_eq!((n.requested.cpu, n.pod_count), (1000, 3));
    /// ```
    pub fn requested(mut self, cpu_milli: u64, memory: u64, pods: u32) -> Self {
        self.0.requested.cpu = cpu_milli;
        self.0.requested.memory = memory;
        self.0.non_zero_requested.cpu = cpu_milli;
        self.0.non_zero_requested.memory = memory;
        self.0.pod_count = pods;
        self
    }

    /// Adds or replaces a label.
    ///
    /// ```
    /// let n = keelson_plugin_sdk::fixtures::node("a").label("zone", "z1").build();
    /// assert!(n.labels.contains(&("zone".into(), "z1".into())));
    /// ```
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.retain(|(k, _)| k != key);
        self.0.labels.push((key.into(), value.into()));
        self
    }

    /// Adds a taint.
    ///
    /// ```
    /// use keelson_plugin_sdk::TaintEffect;
    /// let n = keelson_plugin_sdk::fixtures::node("a").taint("dedicated", "db", TaintEffect::NoSchedule).build();
    /// assert_eq!(n.taints.len(), 1);
    /// ```
    pub fn taint(mut self, key: &str, value: &str, effect: TaintEffect) -> Self {
        self.0.taints.push(Taint {
            key: key.into(),
            value: value.into(),
            effect,
        });
        self
    }

    /// Marks a host port as used on the node.
    ///
    /// ```
    /// let n = keelson_plugin_sdk::fixtures::node("a").used_port(80).build();
    /// assert_eq!(n.used_ports[0].port, 80);
    /// ```
    pub fn used_port(mut self, port: u16) -> Self {
        self.0.used_ports.push(HostPort {
            port,
            protocol: Protocol::Tcp,
        });
        self.0.used_ports.sort_by_key(|p| p.port);
        self
    }

    /// Counts `count` pods of group `group` on the node.
    ///
    /// ```
    /// let n = keelson_plugin_sdk::fixtures::node("a").group_count(3, 2).build();
    /// assert_eq!((n.group_counts[0].group, n.group_counts[0].count), (3, 2));
    /// ```
    pub fn group_count(mut self, group: u32, count: u32) -> Self {
        self.0.group_counts.retain(|g| g.group != group);
        self.0.group_counts.push(GroupCount { group, count });
        self.0.group_counts.sort_by_key(|g| g.group);
        self
    }

    /// Marks a disk volume as used by a pod on the node.
    ///
    /// ```
    /// let n = keelson_plugin_sdk::fixtures::node("a").disk_volume("gce-pd:data", false).build();
    /// assert_eq!(n.disk_volumes[0].id, "gce-pd:data");
    /// ```
    pub fn disk_volume(mut self, id: &str, read_only: bool) -> Self {
        self.0.disk_volumes.push(DiskVolume {
            id: id.into(),
            read_only,
        });
        self
    }

    /// Cordons the node (`spec.unschedulable`).
    ///
    /// ```
    /// assert!(keelson_plugin_sdk::fixtures::node("a").cordoned().build().unschedulable);
    /// ```
    pub fn cordoned(mut self) -> Self {
        self.0.unschedulable = true;
        self
    }

    /// Marks the node not Ready.
    ///
    /// ```
    /// assert!(!keelson_plugin_sdk::fixtures::node("a").not_ready().build().ready);
    /// ```
    pub fn not_ready(mut self) -> Self {
        self.0.ready = false;
        self
    }

    /// The node.
    ///
    /// ```
    /// let n: keelson_plugin_sdk::NodeInfo = keelson_plugin_sdk::fixtures::node("a").build();
    /// assert_eq!(n.name, "a");
    /// ```
    pub fn build(self) -> NodeInfo {
        self.0
    }
}

/// Starts a pod named `name` in namespace `default`, requesting nothing.
///
/// ```
/// let p = keelson_plugin_sdk::fixtures::pod("web").build();
/// assert_eq!((p.namespace.as_str(), p.requests.cpu), ("default", 0));
/// ```
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder(PodInfo {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        labels: Vec::new(),
        annotations: Vec::new(),
        priority: 0,
        requests: no_resources(),
        non_zero_requests: Resources {
            cpu: DEFAULT_NON_ZERO_CPU,
            memory: DEFAULT_NON_ZERO_MEMORY,
            ..no_resources()
        },
        host_ports: Vec::new(),
        disk_volumes: Vec::new(),
        node_name: None,
        node_selector: Vec::new(),
        node_affinity: NodeAffinity {
            required: Vec::new(),
            preferred: Vec::new(),
        },
        tolerations: Vec::new(),
        pod_affinity: PodAffinity {
            required: Vec::new(),
            preferred: Vec::new(),
        },
        pod_anti_affinity: PodAffinity {
            required: Vec::new(),
            preferred: Vec::new(),
        },
        topology_spread: Vec::new(),
        spread_groups: Vec::new(),
        service_groups: Vec::new(),
    })
}

/// Builds a [`PodInfo`]; see [`pod`].
#[derive(Debug, Clone)]
pub struct PodBuilder(PodInfo);

impl PodBuilder {
    /// The pod's namespace.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::pod("p").namespace("prod").build().namespace, "prod");
    /// ```
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0.namespace = namespace.into();
        self
    }

    /// Requested CPU in milli-cores.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::pod("p").cpu(250).build().requests.cpu, 250);
    /// ```
    pub fn cpu(mut self, milli: u64) -> Self {
        self.0.requests.cpu = milli;
        self.0.non_zero_requests.cpu = if milli == 0 {
            DEFAULT_NON_ZERO_CPU
        } else {
            milli
        };
        self
    }

    /// Requested memory in bytes.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::pod("p").memory(64 << 20).build().requests.memory, 64 << 20);
    /// ```
    pub fn memory(mut self, bytes: u64) -> Self {
        self.0.requests.memory = bytes;
        self.0.non_zero_requests.memory = if bytes == 0 {
            DEFAULT_NON_ZERO_MEMORY
        } else {
            bytes
        };
        self
    }

    /// Adds a disk volume the pod mounts.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").disk_volume("aws-ebs:vol-1", false).build();
    /// assert_eq!(p.disk_volumes.len(), 1);
    /// ```
    pub fn disk_volume(mut self, id: &str, read_only: bool) -> Self {
        self.0.disk_volumes.push(DiskVolume {
            id: id.into(),
            read_only,
        });
        self
    }

    /// Adds a group that selects the pod: a service's when `service` is true (also added to
    /// `service-groups`), else a controller's.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").selected_by(1, true).selected_by(2, false).build();
    /// assert_eq!((p.spread_groups, p.service_groups), (vec![1, 2], vec![1]));
    /// ```
    pub fn selected_by(mut self, group: u32, service: bool) -> Self {
        self.0.spread_groups.push(group);
        if service {
            self.0.service_groups.push(group);
        }
        self
    }

    /// Sets `spec.nodeName`.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").node_name("n1").build();
    /// assert_eq!(p.node_name.as_deref(), Some("n1"));
    /// ```
    pub fn node_name(mut self, node: &str) -> Self {
        self.0.node_name = Some(node.into());
        self
    }

    /// Adds a label.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").label("app", "web").build();
    /// assert_eq!(p.labels, vec![("app".to_string(), "web".to_string())]);
    /// ```
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.retain(|(k, _)| k != key);
        self.0.labels.push((key.into(), value.into()));
        self
    }

    /// Adds an annotation.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").annotation("hint", "fast").build();
    /// assert_eq!(p.annotations.len(), 1);
    /// ```
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.0.annotations.retain(|(k, _)| k != key);
        self.0.annotations.push((key.into(), value.into()));
        self
    }

    /// Adds a `spec.nodeSelector` entry.
    ///
    /// ```
    /// let p = keelson_plugin_sdk::fixtures::pod("p").node_selector("disk", "ssd").build();
    /// assert_eq!(p.node_selector.len(), 1);
    /// ```
    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.0.node_selector.push((key.into(), value.into()));
        self
    }

    /// Adds a TCP host port.
    ///
    /// ```
    /// assert_eq!(keelson_plugin_sdk::fixtures::pod("p").host_port(8080).build().host_ports[0].port, 8080);
    /// ```
    pub fn host_port(mut self, port: u16) -> Self {
        self.0.host_ports.push(HostPort {
            port,
            protocol: Protocol::Tcp,
        });
        self.0.host_ports.sort_by_key(|p| p.port);
        self
    }

    /// Adds a toleration.
    ///
    /// ```
    /// use keelson_plugin_sdk::{Toleration, TolerationOperator};
    /// let t = Toleration { key: None, operator: TolerationOperator::Exists, value: String::new(), effect: None };
    /// assert_eq!(keelson_plugin_sdk::fixtures::pod("p").toleration(t).build().tolerations.len(), 1);
    /// ```
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.0.tolerations.push(toleration);
        self
    }

    /// The pod.
    ///
    /// ```
    /// let p: keelson_plugin_sdk::PodInfo = keelson_plugin_sdk::fixtures::pod("p").build();
    /// assert_eq!(p.name, "p");
    /// ```
    pub fn build(self) -> PodInfo {
        self.0
    }
}

/// An admission request to create the core/v1 object `object` (JSON text) of `kind` /
/// `resource` in `namespace`, by user `admin`; its name is read from nothing, so set
/// `request.name` when a check needs it.
///
/// ```
/// use keelson_plugin_sdk::{fixtures, Operation};
/// let r = fixtures::create_request("Pod", "pods", Some("default"), r#"{"metadata":{"name":"p"}}"#);
/// assert_eq!(r.operation, Operation::Create);
/// assert_eq!(r.resource.resource, "pods");
/// ```
pub fn create_request(
    kind: &str,
    resource: &str,
    namespace: Option<&str>,
    object: &str,
) -> AdmissionRequest {
    AdmissionRequest {
        uid: "00000000-0000-0000-0000-000000000001".into(),
        kind: GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
        },
        resource: GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: resource.into(),
        },
        sub_resource: None,
        namespace: namespace.map(str::to_string),
        name: None,
        operation: Operation::Create,
        user_info: UserInfo {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: Vec::new(),
        },
        object: Some(object.into()),
        old_object: None,
        dry_run: false,
        options: None,
    }
}

/// The network record of node `name`, with no CIDRs and no addresses.
///
/// ```
/// let n = keelson_plugin_sdk::fixtures::network_node("n1", true);
/// assert!(n.is_local && n.pod_cidrs.is_empty());
/// ```
pub fn network_node(name: &str, is_local: bool) -> NodeNetworkInfo {
    NodeNetworkInfo {
        name: name.into(),
        is_local,
        pod_cidrs: Vec::new(),
        addresses: Vec::new(),
        labels: Vec::new(),
        annotations: Vec::new(),
    }
}

/// A request to attach pod `name` (UID `uid`) in namespace `default` as `eth0`.
///
/// ```
/// let r = keelson_plugin_sdk::fixtures::attach_request("web", "1234");
/// assert_eq!(r.interface_name, "eth0");
/// ```
pub fn attach_request(name: &str, uid: &str) -> AttachRequest {
    AttachRequest {
        pod_namespace: "default".into(),
        pod_name: name.into(),
        pod_uid: uid.into(),
        sandbox_id: format!("sandbox-{uid}"),
        netns_path: format!("/var/run/netns/keelson-{uid}"),
        interface_name: "eth0".into(),
        labels: Vec::new(),
        annotations: Vec::new(),
    }
}

/// The request that detaches what [`attach_request`] attached.
///
/// ```
/// let r = keelson_plugin_sdk::fixtures::detach_request("web", "1234");
/// assert_eq!(r.sandbox_id, "sandbox-1234");
/// ```
pub fn detach_request(name: &str, uid: &str) -> DetachRequest {
    DetachRequest {
        pod_namespace: "default".into(),
        pod_name: name.into(),
        pod_uid: uid.into(),
        sandbox_id: format!("sandbox-{uid}"),
        netns_path: Some(format!("/var/run/netns/keelson-{uid}")),
        interface_name: "eth0".into(),
    }
}
