//! The scheduler's view of the cluster: API objects reduced to the
//! [`NodeInfo`] and [`PodInfo`] records policies read.
//!
//! The cache keeps nodes, the pods bound (or assumed) to them, services and replication
//! controllers. Pods that are not yet bound are not kept: they are the queue's business.
//! Every change marks the nodes whose record changed; [`Cache::take_changes`] hands them to
//! the framework. After a decision, [`Cache::assume`] counts the pod on its node at once, so
//! the next cycle sees it before the binding comes back through the watch.
//!
//! Services and RCs are interned to group ids (never reused) for the spreading policies:
//! a node's `group-counts` counts, per group, the pods on it the group's selector matches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorTerm as K8sTerm, Pod, ReplicationController, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_api::object::quantity::parse;
use keelson_plugin_sdk::{
    DiskVolume, HostPort, NamedQuantity, NodeAffinity, NodeInfo, NodeSelectorTerm, PodAffinity,
    PodInfo, PreferredNodeTerm, Protocol, Resources, SelectorOperator, SelectorRequirement, Taint,
    TaintEffect, Toleration, TolerationOperator,
};

/// The CPU (milli-cores) a container without a CPU request counts as in non-zero requests.
pub const DEFAULT_NON_ZERO_CPU: u64 = 100;
/// The memory (bytes) a container without a memory request counts as in non-zero requests.
pub const DEFAULT_NON_ZERO_MEMORY: u64 = 200 << 20;

/// A node record to give the framework.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeChange {
    /// The node was added or its record changed.
    Upsert(Box<NodeInfo>),
    /// The node is gone.
    Remove(String),
}

/// `namespace/name`, the key the cache and the queue use for pods.
///
/// ```
/// use k8s_openapi::api::core::v1::Pod;
/// let mut p = Pod::default();
/// p.metadata.namespace = Some("web".into());
/// p.metadata.name = Some("a".into());
/// assert_eq!(keelson_scheduler::cache::pod_key(&p), "web/a");
/// ```
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[derive(Debug, Clone)]
struct PodEntry {
    namespace: String,
    labels: BTreeMap<String, String>,
    node: String,
    assumed: bool,
    requests: Resources,
    non_zero: Resources,
    ports: Vec<HostPort>,
    disks: Vec<DiskVolume>,
}

#[derive(Debug, Clone)]
struct Group {
    id: u32,
    namespace: String,
    selector: BTreeMap<String, String>,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Cache {
    nodes: BTreeMap<String, Node>,
    pods: HashMap<String, PodEntry>,
    /// The keys of each node's pods, so a node's record costs its own pods, not the cluster's.
    by_node: HashMap<String, BTreeSet<String>>,
    services: BTreeMap<(String, String), Group>,
    rcs: BTreeMap<(String, String), Group>,
    group_ids: HashMap<String, u32>,
    dirty: BTreeSet<String>,
    removed: BTreeSet<String>,
}

fn empty() -> Resources {
    Resources {
        cpu: 0,
        memory: 0,
        ephemeral_storage: 0,
        extended: Vec::new(),
    }
}

fn millis(q: &Quantity) -> i128 {
    parse(&q.0).map(|q| q.millis).unwrap_or(0).max(0)
}

fn units(q: &Quantity) -> u64 {
    parse(&q.0)
        .map(|q| q.value())
        .unwrap_or(0)
        .clamp(0, i128::from(u64::MAX)) as u64
}

/// Resources from a `requests`/`allocatable` map; `pods` is left out.
fn resources(map: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut r = empty();
    for (name, q) in map.into_iter().flatten() {
        match name.as_str() {
            "cpu" => r.cpu = millis(q).min(i128::from(u64::MAX)) as u64,
            "memory" => r.memory = units(q),
            "ephemeral-storage" => r.ephemeral_storage = units(q),
            "pods" => {}
            _ => {
                let value = millis(q).min(i128::from(u64::MAX)) as u64;
                if value > 0 {
                    r.extended.push(NamedQuantity {
                        name: name.clone(),
                        value,
                    });
                }
            }
        }
    }
    r
}

fn combine(a: &mut Resources, b: &Resources, f: impl Fn(u64, u64) -> u64) {
    a.cpu = f(a.cpu, b.cpu);
    a.memory = f(a.memory, b.memory);
    a.ephemeral_storage = f(a.ephemeral_storage, b.ephemeral_storage);
    let mut ext: BTreeMap<String, u64> = a.extended.drain(..).map(|q| (q.name, q.value)).collect();
    for q in &b.extended {
        let v = ext.entry(q.name.clone()).or_insert(0);
        *v = f(*v, q.value);
    }
    a.extended = ext
        .into_iter()
        .map(|(name, value)| NamedQuantity { name, value })
        .collect();
}

fn add(a: &mut Resources, b: &Resources) {
    combine(a, b, u64::saturating_add);
}

fn max(a: &mut Resources, b: &Resources) {
    combine(a, b, u64::max);
}

fn container_requests(c: &Container) -> (Resources, Resources) {
    let requests = resources(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    let mut non_zero = requests.clone();
    let has = |k: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|m| m.contains_key(k))
    };
    if !has("cpu") {
        non_zero.cpu = DEFAULT_NON_ZERO_CPU;
    }
    if !has("memory") {
        non_zero.memory = DEFAULT_NON_ZERO_MEMORY;
    }
    (requests, non_zero)
}

/// The pod's effective requests and non-zero requests: the larger of the containers' sum and
/// the largest init container, plus the pod overhead.
fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let (mut req, mut nz) = (empty(), empty());
    let Some(spec) = &pod.spec else {
        return (req, nz);
    };
    for c in &spec.containers {
        let (r, n) = container_requests(c);
        add(&mut req, &r);
        add(&mut nz, &n);
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, n) = container_requests(c);
        max(&mut req, &r);
        max(&mut nz, &n);
    }
    let overhead = resources(spec.overhead.as_ref());
    add(&mut req, &overhead);
    add(&mut nz, &overhead);
    (req, nz)
}

fn protocol_rank(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

fn sort_ports(ports: &mut Vec<HostPort>) {
    ports.sort_by_key(|p| (p.port, protocol_rank(p.protocol)));
    ports.dedup_by_key(|p| (p.port, protocol_rank(p.protocol)));
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut ports: Vec<HostPort> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = u16::try_from(p.host_port?).ok().filter(|p| *p != 0)?;
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            Some(HostPort { port, protocol })
        })
        .collect();
    sort_ports(&mut ports);
    ports
}

fn disk_volumes(pod: &Pod) -> Vec<DiskVolume> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|v| {
            if let Some(d) = &v.gce_persistent_disk {
                Some(DiskVolume {
                    id: format!("gce-pd:{}", d.pd_name),
                    read_only: d.read_only.unwrap_or(false),
                })
            } else {
                v.aws_elastic_block_store.as_ref().map(|d| DiskVolume {
                    id: format!("aws-ebs:{}", d.volume_id),
                    read_only: d.read_only.unwrap_or(false),
                })
            }
        })
        .collect()
}

fn labels(map: Option<&BTreeMap<String, String>>) -> Vec<(String, String)> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn effect(e: &str) -> Option<TaintEffect> {
    match e {
        "NoSchedule" => Some(TaintEffect::NoSchedule),
        "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
        "NoExecute" => Some(TaintEffect::NoExecute),
        _ => None,
    }
}

fn selector_term(t: &K8sTerm) -> NodeSelectorTerm {
    let reqs = |list: &Option<Vec<k8s_openapi::api::core::v1::NodeSelectorRequirement>>| {
        list.iter()
            .flatten()
            .map(|r| SelectorRequirement {
                key: r.key.clone(),
                operator: match r.operator.as_str() {
                    "NotIn" => SelectorOperator::NotIn,
                    "Exists" => SelectorOperator::Exists,
                    "DoesNotExist" => SelectorOperator::DoesNotExist,
                    "Gt" => SelectorOperator::Gt,
                    "Lt" => SelectorOperator::Lt,
                    _ => SelectorOperator::In,
                },
                values: r.values.clone().unwrap_or_default(),
            })
            .collect()
    };
    NodeSelectorTerm {
        match_expressions: reqs(&t.match_expressions),
        match_fields: reqs(&t.match_fields),
    }
}

fn node_affinity(pod: &Pod) -> NodeAffinity {
    let na = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref());
    NodeAffinity {
        required: na
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|s| s.node_selector_terms.iter().map(selector_term).collect())
            .unwrap_or_default(),
        preferred: na
            .and_then(|n| {
                n.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|p| {
                p.iter()
                    .map(|t| PreferredNodeTerm {
                        weight: t.weight,
                        term: selector_term(&t.preference),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn tolerations(pod: &Pod) -> Vec<Toleration> {
    let list = pod.spec.iter().flat_map(|s| s.tolerations.iter().flatten());
    list.map(|t| Toleration {
        key: t.key.clone().filter(|k| !k.is_empty()),
        operator: match t.operator.as_deref() {
            Some("Exists") => TolerationOperator::Exists,
            _ => TolerationOperator::Equal,
        },
        value: t.value.clone().unwrap_or_default(),
        effect: t.effect.as_deref().and_then(effect),
    })
    .collect()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    fn group_id(&mut self, kind: &str, namespace: &str, name: &str) -> u32 {
        let key = format!("{kind}/{namespace}/{name}");
        let next = self.group_ids.len() as u32;
        *self.group_ids.entry(key).or_insert(next)
    }

    fn put_pod(&mut self, key: String, entry: PodEntry) -> Option<PodEntry> {
        self.by_node
            .entry(entry.node.clone())
            .or_default()
            .insert(key.clone());
        let old = self.pods.insert(key.clone(), entry)?;
        if self.pods.get(&key).is_none_or(|new| new.node != old.node) {
            self.unindex(&key, &old.node);
        }
        Some(old)
    }

    fn take_pod(&mut self, key: &str) -> Option<PodEntry> {
        let old = self.pods.remove(key)?;
        self.unindex(key, &old.node);
        Some(old)
    }

    fn unindex(&mut self, key: &str, node: &str) {
        if let Some(keys) = self.by_node.get_mut(node) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    fn touch_all(&mut self) {
        self.dirty.extend(self.nodes.keys().cloned());
    }

    fn touch(&mut self, node: &str) {
        if self.nodes.contains_key(node) {
            self.dirty.insert(node.to_string());
        }
    }

    /// Adds or replaces a node.
    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.removed.remove(&name);
        self.dirty.insert(name.clone());
        self.nodes.insert(name, node);
    }

    /// Removes a node. Its pods stay known, so they count again if it comes back.
    pub fn remove_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.dirty.remove(name);
            self.removed.insert(name.to_string());
        }
    }

    /// Adds, updates or (for a terminal or unbound pod) drops a pod. An unbound update of a
    /// pod assumed on a node keeps the assumption: the binding has not come back yet.
    pub fn upsert_pod(&mut self, pod: &Pod) {
        let key = pod_key(pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let Some(node) = node.filter(|_| !is_terminal(pod)) else {
            if is_terminal(pod) || !self.pods.get(&key).is_some_and(|p| p.assumed) {
                self.remove_pod(&key);
            }
            return;
        };
        let entry = self.entry(pod, node, false);
        if let Some(old) = self.put_pod(key, entry) {
            self.touch(&old.node);
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        self.touch(&node);
    }

    fn entry(&self, pod: &Pod, node: String, assumed: bool) -> PodEntry {
        let (requests, non_zero) = pod_requests(pod);
        PodEntry {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node,
            assumed,
            requests,
            non_zero,
            ports: host_ports(pod),
            disks: disk_volumes(pod),
        }
    }

    /// Forgets the pod `namespace/name` (deleted, finished, or an assumption undone with
    /// [`forget`](Self::forget)).
    pub fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.take_pod(key) {
            self.touch(&old.node);
        }
    }

    /// Counts `pod` on `node` now, before the binding round-trips.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let entry = self.entry(pod, node.to_string(), true);
        if let Some(old) = self.put_pod(pod_key(pod), entry) {
            self.touch(&old.node);
        }
        self.touch(node);
    }

    /// Undoes [`assume`](Self::assume) after a failed binding (a bound pod is left alone).
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether the pod `namespace/name` is bound or assumed on a node.
    pub fn is_placed(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Adds or replaces a service; every node's group counts may change.
    pub fn upsert_service(&mut self, svc: &Service) {
        let (ns, name) = meta_key(&svc.metadata);
        let id = self.group_id("service", &ns, &name);
        let selector = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        self.services.insert(
            (ns.clone(), name.clone()),
            Group {
                id,
                namespace: ns,
                selector,
            },
        );
        self.touch_all();
    }

    /// Removes a service.
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if self
            .services
            .remove(&(namespace.into(), name.into()))
            .is_some()
        {
            self.touch_all();
        }
    }

    /// Adds or replaces a replication controller (its selector defaults to its template's
    /// labels, as the API server defaults it).
    pub fn upsert_rc(&mut self, rc: &ReplicationController) {
        let (ns, name) = meta_key(&rc.metadata);
        let id = self.group_id("rc", &ns, &name);
        let spec = rc.spec.as_ref();
        let selector = spec
            .and_then(|s| s.selector.clone())
            .or_else(|| {
                spec.and_then(|s| s.template.as_ref())
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
            })
            .unwrap_or_default();
        self.rcs.insert(
            (ns.clone(), name.clone()),
            Group {
                id,
                namespace: ns,
                selector,
            },
        );
        self.touch_all();
    }

    /// Removes a replication controller.
    pub fn remove_rc(&mut self, namespace: &str, name: &str) {
        if self.rcs.remove(&(namespace.into(), name.into())).is_some() {
            self.touch_all();
        }
    }

    /// The record of the node named `name`.
    pub fn node_info(&self, name: &str) -> Option<NodeInfo> {
        let node = self.nodes.get(name)?;
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let alloc_map = status
            .and_then(|s| s.allocatable.as_ref())
            .or_else(|| status.and_then(|s| s.capacity.as_ref()));
        let allocatable_pods = alloc_map
            .and_then(|m| m.get("pods"))
            .map(|q| units(q).min(u64::from(u32::MAX)) as u32)
            .unwrap_or(0);
        let mut info = NodeInfo {
            name: name.to_string(),
            labels: labels(node.metadata.labels.as_ref()),
            allocatable: resources(alloc_map),
            allocatable_pods,
            requested: empty(),
            non_zero_requested: empty(),
            pod_count: 0,
            used_ports: Vec::new(),
            disk_volumes: Vec::new(),
            taints: spec
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(Taint {
                        key: t.key.clone(),
                        value: t.value.clone().unwrap_or_default(),
                        effect: effect(&t.effect)?,
                    })
                })
                .collect(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready: node_ready(node),
            group_counts: Vec::new(),
        };
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        let pods = self
            .by_node
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k));
        for p in pods {
            info.pod_count += 1;
            add(&mut info.requested, &p.requests);
            add(&mut info.non_zero_requested, &p.non_zero);
            info.used_ports.extend(p.ports.iter().cloned());
            info.disk_volumes.extend(p.disks.iter().cloned());
            for g in self.groups() {
                if g.namespace == p.namespace && selects(&g.selector, &p.labels) {
                    *counts.entry(g.id).or_default() += 1;
                }
            }
        }
        sort_ports(&mut info.used_ports);
        info.group_counts = counts
            .into_iter()
            .map(|(group, count)| keelson_plugin_sdk::GroupCount { group, count })
            .collect();
        Some(info)
    }

    fn groups(&self) -> impl Iterator<Item = &Group> {
        self.services.values().chain(self.rcs.values())
    }

    /// The record of `pod` for a scheduling cycle.
    pub fn pod_info(&self, pod: &Pod) -> PodInfo {
        let (requests, non_zero_requests) = pod_requests(pod);
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
        let matching = |g: &&Group| g.namespace == namespace && selects(&g.selector, &pod_labels);
        // `services` is ordered by (namespace, name), so these are sorted by name.
        let service_groups: Vec<u32> = self
            .services
            .values()
            .filter(matching)
            .map(|g| g.id)
            .collect();
        let mut spread_groups = service_groups.clone();
        spread_groups.extend(self.rcs.values().filter(matching).map(|g| g.id));
        let spec = pod.spec.as_ref();
        let no_pod_affinity = || PodAffinity {
            required: Vec::new(),
            preferred: Vec::new(),
        };
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: namespace.clone(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: labels(Some(&pod_labels)),
            annotations: labels(pod.metadata.annotations.as_ref()),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests,
            non_zero_requests,
            host_ports: host_ports(pod),
            disk_volumes: disk_volumes(pod),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            node_selector: labels(spec.and_then(|s| s.node_selector.as_ref())),
            node_affinity: node_affinity(pod),
            tolerations: tolerations(pod),
            pod_affinity: no_pod_affinity(),
            pod_anti_affinity: no_pod_affinity(),
            topology_spread: Vec::new(),
            spread_groups,
            service_groups,
        }
    }

    /// The node records that changed since the last call, removals first.
    pub fn take_changes(&mut self) -> Vec<NodeChange> {
        let mut out: Vec<NodeChange> = std::mem::take(&mut self.removed)
            .into_iter()
            .map(NodeChange::Remove)
            .collect();
        for name in std::mem::take(&mut self.dirty) {
            if let Some(info) = self.node_info(&name) {
                out.push(NodeChange::Upsert(Box::new(info)));
            }
        }
        out
    }
}

fn meta_key(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str) -> Node {
        obj(json!({
            "metadata": {"name": name, "labels": {"zone": "z1"}},
            "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "3500m", "memory": "4Gi", "pods": "40", "example.com/gpu": "2"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
    }

    fn pod(name: &str, node: Option<&str>, spec: Value) -> Pod {
        let mut spec = spec;
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "i"}]);
        }
        obj(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": spec
        }))
    }

    #[test]
    fn node_conversion() {
        let mut c = Cache::new();
        c.upsert_node(node("n1"));
        let n = c.node_info("n1").unwrap();
        assert_eq!(n.allocatable.cpu, 3500);
        assert_eq!(n.allocatable.memory, 4 << 30);
        assert_eq!(n.allocatable_pods, 40);
        assert_eq!(n.allocatable.extended.len(), 1);
        assert_eq!(
            (
                n.allocatable.extended[0].name.as_str(),
                n.allocatable.extended[0].value
            ),
            ("example.com/gpu", 2000)
        );
        assert!(n.ready && !n.unschedulable);
        assert_eq!(n.labels, vec![("zone".to_string(), "z1".to_string())]);
        assert_eq!(
            n.taints,
            vec![Taint {
                key: "gpu".into(),
                value: "yes".into(),
                effect: TaintEffect::NoSchedule
            }]
        );

        // No allocatable: capacity; no Ready condition: not ready; cordoned.
        c.upsert_node(obj(json!({
            "metadata": {"name": "n2"},
            "spec": {"unschedulable": true},
            "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "False"}]}
        })));
        let n = c.node_info("n2").unwrap();
        assert_eq!((n.allocatable.cpu, n.allocatable_pods), (2000, 10));
        assert!(!n.ready && n.unschedulable);
    }

    #[test]
    fn pod_requests_non_zero_and_init_containers() {
        let c = Cache::new();
        let p = pod(
            "p",
            None,
            json!({
                "containers": [
                    {"name": "a", "image": "i", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"name": "b", "image": "i", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "c", "image": "i"}
                ],
                "initContainers": [
                    {"name": "i", "image": "i", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}
                ],
                "overhead": {"cpu": "10m"}
            }),
        );
        let info = c.pod_info(&p);
        // cpu: max(750m, 2000m) + 10m; memory: max(64Mi, 1Mi).
        assert_eq!(info.requests.cpu, 2010);
        assert_eq!(info.requests.memory, 64 << 20);
        // non-zero: a 250m/64Mi, b 500m/200Mi, c 100m/200Mi = 850m / 464Mi; init 2000m/1Mi.
        assert_eq!(info.non_zero_requests.cpu, 2010);
        assert_eq!(info.non_zero_requests.memory, (464 << 20));
        assert_eq!(
            (
                info.namespace.as_str(),
                info.name.as_str(),
                info.uid.as_str()
            ),
            ("default", "p", "u-p")
        );
        let empty = c.pod_info(&pod("e", None, json!({})));
        assert_eq!((empty.requests.cpu, empty.requests.memory), (0, 0));
        assert_eq!(
            (empty.non_zero_requests.cpu, empty.non_zero_requests.memory),
            (DEFAULT_NON_ZERO_CPU, DEFAULT_NON_ZERO_MEMORY)
        );
    }

    #[test]
    fn pod_ports_volumes_selector_affinity_tolerations() {
        let c = Cache::new();
        let p = pod(
            "p",
            None,
            json!({
                "containers": [{"name": "a", "image": "i", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
                    {"containerPort": 81},
                    {"containerPort": 80, "hostPort": 8080}
                ]}],
                "volumes": [
                    {"name": "g", "gcePersistentDisk": {"pdName": "disk1", "readOnly": true}},
                    {"name": "e", "awsElasticBlockStore": {"volumeID": "vol-1"}},
                    {"name": "t", "emptyDir": {}}
                ],
                "nodeSelector": {"disk": "ssd"},
                "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}
                    ]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 5, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}
                    ]
                }},
                "tolerations": [
                    {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"},
                    {"operator": "Exists"}
                ],
                "priority": 7
            }),
        );
        let info = c.pod_info(&p);
        assert_eq!(
            info.host_ports,
            vec![
                HostPort {
                    port: 53,
                    protocol: Protocol::Udp
                },
                HostPort {
                    port: 8080,
                    protocol: Protocol::Tcp
                }
            ]
        );
        assert_eq!(
            info.disk_volumes,
            vec![
                DiskVolume {
                    id: "gce-pd:disk1".into(),
                    read_only: true
                },
                DiskVolume {
                    id: "aws-ebs:vol-1".into(),
                    read_only: false
                }
            ]
        );
        assert_eq!(
            info.node_selector,
            vec![("disk".to_string(), "ssd".to_string())]
        );
        let req = &info.node_affinity.required[0].match_expressions[0];
        assert_eq!(
            (req.key.as_str(), req.operator, req.values.len()),
            ("zone", SelectorOperator::In, 2)
        );
        assert_eq!(info.node_affinity.preferred[0].weight, 5);
        assert_eq!(
            info.node_affinity.preferred[0].term.match_expressions[0].operator,
            SelectorOperator::Exists
        );
        assert_eq!(
            info.tolerations,
            vec![
                Toleration {
                    key: Some("gpu".into()),
                    operator: TolerationOperator::Equal,
                    value: "yes".into(),
                    effect: Some(TaintEffect::NoSchedule)
                },
                Toleration {
                    key: None,
                    operator: TolerationOperator::Exists,
                    value: String::new(),
                    effect: None
                }
            ]
        );
        assert_eq!(info.priority, 7);
    }

    #[test]
    fn node_sums_bound_non_terminal_pods() {
        let mut c = Cache::new();
        c.upsert_node(node("n1"));
        let busy = |name: &str, port: i32| {
            pod(
                name,
                Some("n1"),
                json!({"containers": [{"name": "a", "image": "i",
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                    "ports": [{"containerPort": 1, "hostPort": port}]}],
                    "volumes": [{"name": "g", "gcePersistentDisk": {"pdName": name}}]}),
            )
        };
        c.upsert_pod(&busy("a", 90));
        c.upsert_pod(&busy("b", 80));
        c.upsert_pod(&pod("idle", Some("n1"), json!({})));
        let mut done = pod("done", Some("n1"), json!({}));
        done.status = Some(obj(json!({"phase": "Succeeded"})));
        c.upsert_pod(&done);
        c.upsert_pod(&pod("elsewhere", Some("n2"), json!({})));
        c.upsert_pod(&pod("pending", None, json!({})));
        let n = c.node_info("n1").unwrap();
        assert_eq!(n.pod_count, 3);
        assert_eq!((n.requested.cpu, n.requested.memory), (2000, 2 << 30));
        assert_eq!(
            (n.non_zero_requested.cpu, n.non_zero_requested.memory),
            (2100, (2 << 30) + DEFAULT_NON_ZERO_MEMORY)
        );
        assert_eq!(
            n.used_ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            [80, 90]
        );
        assert_eq!(
            n.disk_volumes
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["gce-pd:a", "gce-pd:b"]
        );
        // A pod that finishes leaves the node.
        let mut a = busy("a", 90);
        a.status = Some(obj(json!({"phase": "Failed"})));
        c.upsert_pod(&a);
        assert_eq!(c.node_info("n1").unwrap().pod_count, 2);
        c.remove_pod("default/b");
        assert_eq!(c.node_info("n1").unwrap().pod_count, 1);
    }

    #[test]
    fn groups_from_services_and_rcs() {
        let mut c = Cache::new();
        c.upsert_node(node("n1"));
        c.upsert_service(&obj(json!({"metadata": {"name": "zz-web", "namespace": "default"}, "spec": {"selector": {"app": "web"}}})));
        c.upsert_service(&obj(json!({"metadata": {"name": "aa-web", "namespace": "default"}, "spec": {"selector": {"app": "web"}}})));
        c.upsert_service(&obj(json!({"metadata": {"name": "other-ns", "namespace": "prod"}, "spec": {"selector": {"app": "web"}}})));
        c.upsert_service(&obj(
            json!({"metadata": {"name": "headless", "namespace": "default"}, "spec": {}}),
        ));
        c.upsert_service(&obj(json!({"metadata": {"name": "db", "namespace": "default"}, "spec": {"selector": {"app": "db"}}})));
        // The RC has no selector: its template's labels are used.
        c.upsert_rc(&obj(
            json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}}}}),
        ));
        let (zz, aa, rc) = (0, 1, 5);
        let p = c.pod_info(&pod("p", None, json!({})));
        assert_eq!(p.service_groups, vec![aa, zz], "services sorted by name");
        assert_eq!(p.spread_groups, vec![aa, zz, rc]);
        c.upsert_pod(&pod("a", Some("n1"), json!({})));
        c.upsert_pod(&pod("b", Some("n1"), json!({})));
        let counts: Vec<(u32, u32)> = c
            .node_info("n1")
            .unwrap()
            .group_counts
            .iter()
            .map(|g| (g.group, g.count))
            .collect();
        assert_eq!(counts, [(zz, 2), (aa, 2), (rc, 2)]);
        c.remove_service("default", "zz-web");
        c.remove_rc("default", "web");
        let p = c.pod_info(&pod("p", None, json!({})));
        assert_eq!(p.spread_groups, vec![aa]);
        // Ids are never reused.
        c.upsert_service(&obj(json!({"metadata": {"name": "new", "namespace": "default"}, "spec": {"selector": {"app": "web"}}})));
        assert_eq!(
            c.pod_info(&pod("p", None, json!({}))).service_groups,
            vec![aa, 6]
        );
    }

    #[test]
    fn changes_track_dirty_nodes() {
        let mut c = Cache::new();
        c.upsert_node(node("n1"));
        c.upsert_node(node("n2"));
        let names = |ch: Vec<NodeChange>| -> Vec<String> {
            ch.into_iter()
                .map(|c| match c {
                    NodeChange::Upsert(n) => format!("+{}", n.name),
                    NodeChange::Remove(n) => format!("-{n}"),
                })
                .collect()
        };
        assert_eq!(names(c.take_changes()), ["+n1", "+n2"]);
        assert!(c.take_changes().is_empty());
        c.upsert_pod(&pod("a", Some("n2"), json!({})));
        assert_eq!(names(c.take_changes()), ["+n2"]);
        // Moving a pod (rebinding after a delete and re-create) touches both nodes.
        c.upsert_pod(&pod("a", Some("n1"), json!({})));
        assert_eq!(names(c.take_changes()), ["+n1", "+n2"]);
        c.remove_node("n2");
        assert_eq!(names(c.take_changes()), ["-n2"]);
        c.upsert_service(&obj(
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "web"}}}),
        ));
        assert_eq!(names(c.take_changes()), ["+n1"]);
    }

    #[test]
    fn assume_counts_the_pod_until_the_binding_arrives() {
        let mut c = Cache::new();
        c.upsert_node(node("n1"));
        let p = pod(
            "p",
            None,
            json!({"containers": [{"name": "a", "image": "i",
            "resources": {"requests": {"cpu": "1"}}}]}),
        );
        c.assume(&p, "n1");
        assert!(c.is_placed("default/p"));
        assert_eq!(c.node_info("n1").unwrap().requested.cpu, 1000);
        // A stale unbound update does not undo the assumption.
        c.upsert_pod(&p);
        assert_eq!(c.node_info("n1").unwrap().pod_count, 1);
        // The bound pod replaces it; forget no longer applies.
        let mut bound = p.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        c.upsert_pod(&bound);
        c.forget("default/p");
        assert_eq!(c.node_info("n1").unwrap().pod_count, 1);
        // A failed binding forgets the assumption.
        let q = pod("q", None, json!({}));
        c.assume(&q, "n1");
        assert_eq!(c.node_info("n1").unwrap().pod_count, 2);
        c.forget("default/q");
        assert_eq!(c.node_info("n1").unwrap().pod_count, 1);
        assert!(!c.is_placed("default/q"));
    }
}
