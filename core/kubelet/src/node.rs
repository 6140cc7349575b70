//! The node's registration and heartbeats, as Kubernetes' kubelet does them: the Node is
//! created (or, if it exists, kept), its Lease in `kube-node-lease` is renewed every quarter
//! of the lease duration, and its status is posted when it changes and at least every
//! report interval. A Node deleted while the agent runs is registered again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo, ObjectReference,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use keelson_api::object::quantity::{self, Format};
use keelson_client::events::{EventRecorder, EventType};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// The version the kubelet reports, matching the API server's `gitVersion`.
pub const KUBELET_VERSION: &str = concat!("v1.33.0-keelson.", env!("CARGO_PKG_VERSION"));

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Errors of node registration and heartbeats.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// How the node registers and heartbeats.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name; the host name (lowercased) when `None`.
    pub node_name: Option<String>,
    /// The InternalIP; the host's first non-loopback IPv4 when `None`.
    pub node_ip: Option<IpAddr>,
    /// Labels added to the well-known ones.
    pub labels: BTreeMap<String, String>,
    pub max_pods: u32,
    /// Resources held back from pods (`systemReserved` and `kubeReserved`).
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    pub lease_duration_seconds: i32,
    /// How often the Lease is renewed; a quarter of the lease duration when `None`.
    pub lease_renew_interval: Option<Duration>,
    /// How often status is computed and compared with the server's.
    pub status_update_frequency: Duration,
    /// How long status may go unposted when nothing changes.
    pub status_report_frequency: Duration,
    /// The container runtime's version (`containerd://2.0.0`), when known.
    pub container_runtime_version: Option<String>,
    /// The kubelet server's port (status.daemonEndpoints.kubeletEndpoint.port).
    pub kubelet_port: u16,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_name: None,
            node_ip: None,
            labels: BTreeMap::new(),
            max_pods: 110,
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            lease_duration_seconds: 40,
            lease_renew_interval: None,
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(60),
            container_runtime_version: None,
            kubelet_port: 10250,
        }
    }
}

impl NodeConfig {
    /// The Lease renewal interval in effect.
    pub fn renew_interval(&self) -> Duration {
        self.lease_renew_interval.unwrap_or_else(|| {
            Duration::from_millis(u64::try_from(self.lease_duration_seconds).unwrap_or(40) * 250)
        })
    }
}

/// What the host says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostInfo {
    pub hostname: String,
    pub cpus: usize,
    pub memory_ki: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub ip: Option<IpAddr>,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(Path::new(path))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl HostInfo {
    /// Reads `/proc`, `/etc` and the network configuration; what cannot be read is left empty.
    pub fn gather() -> HostInfo {
        HostInfo {
            hostname: read_trimmed("/proc/sys/kernel/hostname").to_lowercase(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_ki: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|s| parse_meminfo_total_ki(&s))
                .unwrap_or(0),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|s| parse_os_release_pretty_name(&s))
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            ip: host_ipv4().map(IpAddr::V4),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in KiB.
pub fn parse_meminfo_total_ki(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let mut parts = rest.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// `PRETTY_NAME` of `/etc/os-release`, unquoted.
pub fn parse_os_release_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let v = line.trim().strip_prefix("PRETTY_NAME=")?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.replace("\\\"", "\"")).filter(|s| !s.is_empty())
    })
}

/// The address the host would reach the outside from (no packet is sent), else the first
/// non-loopback IPv4 its name resolves to.
fn host_ipv4() -> Option<Ipv4Addr> {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .ok()
        .and_then(|a| match a.ip() {
            IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
            _ => None,
        });
    routed.or_else(|| {
        let name = read_trimmed("/proc/sys/kernel/hostname");
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0))
            .ok()?
            .find_map(|a| match a.ip() {
                IpAddr::V4(v4) if !v4.is_loopback() => Some(v4),
                _ => None,
            })
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Capacity minus the reserved amounts (never below zero), per resource.
pub fn allocatable(
    capacity: &BTreeMap<String, Quantity>,
    reserved: &[&BTreeMap<String, String>],
) -> Result<BTreeMap<String, Quantity>> {
    let mut out = capacity.clone();
    for map in reserved {
        for (name, amount) in *map {
            let r = quantity::parse_quantity(amount)
                .map_err(|e| Error::Config(format!("reserved {name} {amount:?}: {e}")))?;
            let Some(cap) = out.get(name) else {
                continue;
            };
            let c = quantity::parse(&cap.0)
                .map_err(|e| Error::Config(format!("capacity {name}: {e}")))?;
            let left = (c.millis - r).max(0);
            let format = if name == "memory" {
                Format::BinarySi
            } else {
                Format::DecimalSi
            };
            out.insert(
                name.clone(),
                Quantity(quantity::format_millis(left, format)),
            );
        }
    }
    Ok(out)
}

/// The status the node would post now, keeping transition times of conditions that did not
/// change from `previous`.
pub fn desired_status(
    config: &NodeConfig,
    host: &HostInfo,
    name: &str,
    previous: Option<&NodeStatus>,
    now: jiff::Timestamp,
) -> Result<NodeStatus> {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(host.cpus.to_string()));
    capacity.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", host.memory_ki)),
    );
    capacity.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    let allocatable = allocatable(&capacity, &[&config.system_reserved, &config.kube_reserved])?;
    let mut addresses = Vec::new();
    if let Some(ip) = config.node_ip.or(host.ip) {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: if host.hostname.is_empty() {
            name.to_string()
        } else {
            host.hostname.clone()
        },
    });
    let wanted = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ];
    let old = previous.and_then(|s| s.conditions.as_ref());
    let conditions = wanted
        .iter()
        .map(|(type_, status, reason, message)| {
            let prior = old.and_then(|c| c.iter().find(|c| c.type_ == *type_));
            let transition = match prior {
                Some(p) if p.status == *status => {
                    p.last_transition_time.clone().unwrap_or(Time(now))
                }
                _ => Time(now),
            };
            NodeCondition {
                type_: (*type_).into(),
                status: (*status).into(),
                reason: Some((*reason).into()),
                message: Some((*message).into()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect::<Vec<_>>();
    // Conditions others own (such as NetworkUnavailable) are kept as they are.
    let mut conditions = conditions;
    conditions.extend(
        old.into_iter()
            .flatten()
            .filter(|c| !wanted.iter().any(|w| w.0 == c.type_))
            .cloned(),
    );
    Ok(NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: config.container_runtime_version.clone().unwrap_or_default(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: host.machine_id.clone(),
            operating_system: std::env::consts::OS.into(),
            os_image: host.os_image.clone(),
            system_uuid: String::new(),
            swap: None,
        }),
        ..previous.cloned().unwrap_or_default()
    })
}

/// Whether `desired` differs from `current` in anything but heartbeat times: what makes the
/// kubelet post status before the report interval is up.
pub fn status_changed(current: Option<&NodeStatus>, desired: &NodeStatus) -> bool {
    fn strip(s: &NodeStatus) -> NodeStatus {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs.iter_mut() {
                c.last_heartbeat_time = None;
            }
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        s
    }
    match current {
        None => true,
        Some(c) => strip(c) != strip(desired),
    }
}

fn ready(status: Option<&NodeStatus>) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Registers the node and keeps its Lease and status fresh.
pub struct NodeAgent {
    client: kube::Client,
    config: NodeConfig,
    host: HostInfo,
    name: String,
    events: EventRecorder,
    /// The registered Node's uid, `None` until registered.
    uid: Option<String>,
    last_posted: Option<Instant>,
}

impl NodeAgent {
    /// An agent for this host. Must be called inside a tokio runtime (events are written
    /// by a background task).
    pub fn new(client: kube::Client, config: NodeConfig) -> Result<NodeAgent> {
        let host = HostInfo::gather();
        let name = config
            .node_name
            .clone()
            .map(|n| n.to_lowercase())
            .unwrap_or_else(|| host.hostname.clone());
        if name.is_empty() {
            return Err(Error::Config(
                "no node name: the host name is empty; set hostnameOverride".into(),
            ));
        }
        if config.lease_duration_seconds <= 0 {
            return Err(Error::Config(
                "nodeLeaseDurationSeconds must be positive".into(),
            ));
        }
        // Checked now, not at the first status update.
        desired_status(&config, &host, &name, None, jiff::Timestamp::now())?;
        let events = EventRecorder::new(client.clone(), "kubelet", &name);
        Ok(NodeAgent {
            client,
            config,
            host,
            name,
            events,
            uid: None,
            last_posted: None,
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn node_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.name.clone()),
            uid: Some(self.name.clone()),
            ..Default::default()
        }
    }

    /// Runs until `shutdown` turns true; failures are logged and retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(node = %self.name, "starting the kubelet's node agent");
        self.events.record(
            self.node_ref(),
            EventType::Normal,
            "Starting",
            "Starting kubelet.",
        );
        let mut lease_tick = tokio::time::interval(self.config.renew_interval());
        let mut status_tick = tokio::time::interval(self.config.status_update_frequency);
        for t in [&mut lease_tick, &mut status_tick] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                _ = status_tick.tick() => {
                    if let Err(e) = self.sync_status().await {
                        tracing::warn!(node = %self.name, error = %error_chain(&e), "node status update failed; retrying");
                    }
                }
                _ = lease_tick.tick() => {
                    if self.uid.is_none() {
                        continue;
                    }
                    if let Err(e) = self.renew_lease().await {
                        tracing::warn!(node = %self.name, error = %error_chain(&e), "node lease renewal failed; retrying");
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!(node = %self.name, "node agent stopped");
    }

    /// Registers the node if needed, then posts its status if it changed or is due.
    pub async fn sync_status(&mut self) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let current = nodes
            .get_opt(&self.name)
            .await
            .map_err(api_err(format!("get node {}", self.name)))?;
        let Some(current) = current else {
            if self.uid.is_some() {
                tracing::warn!(node = %self.name, "node was deleted; registering it again");
            }
            self.uid = None;
            self.register(&nodes).await?;
            // The new Node gets a fresh Lease owner on the next renewal.
            return self.renew_lease().await;
        };
        let first = self.uid.is_none();
        let uid = current.metadata.uid.clone();
        if first {
            tracing::info!(node = %self.name, "node already registered; keeping it");
            self.uid = uid.clone();
            self.renew_lease().await?;
        }
        self.uid = uid;
        let was_ready = ready(current.status.as_ref());
        let desired = desired_status(
            &self.config,
            &self.host,
            &self.name,
            current.status.as_ref(),
            jiff::Timestamp::now(),
        )?;
        let due = self
            .last_posted
            .is_none_or(|t| t.elapsed() >= self.config.status_report_frequency);
        if !due && !status_changed(current.status.as_ref(), &desired) {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": desired });
        nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("update status of node {}", self.name)))?;
        self.last_posted = Some(Instant::now());
        if !was_ready {
            self.events.record(
                self.node_ref(),
                EventType::Normal,
                "NodeReady",
                &format!("Node {} status is now: NodeReady", self.name),
            );
        }
        Ok(())
    }

    async fn register(&mut self, nodes: &Api<Node>) -> Result<()> {
        let mut labels = self.config.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
        labels.insert("kubernetes.io/arch".into(), arch().into());
        labels.insert("beta.kubernetes.io/os".into(), std::env::consts::OS.into());
        labels.insert("beta.kubernetes.io/arch".into(), arch().into());
        let status = desired_status(
            &self.config,
            &self.host,
            &self.name,
            None,
            jiff::Timestamp::now(),
        )?;
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            status: Some(status.clone()),
            ..Default::default()
        };
        let created = match nodes.create(&PostParams::default(), &node).await {
            Ok(n) => {
                tracing::info!(node = %self.name, "registered the node");
                n
            }
            Err(kube::Error::Api(s)) if s.code == 409 => nodes
                .get(&self.name)
                .await
                .map_err(api_err(format!("get node {}", self.name)))?,
            Err(e) => return Err(api_err(format!("register node {}", self.name))(e)),
        };
        self.uid = created.metadata.uid.clone();
        // Some servers drop status on create; post it through the subresource as well.
        let patch = serde_json::json!({ "status": status });
        nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("update status of node {}", self.name)))?;
        self.last_posted = Some(Instant::now());
        self.events.record(
            self.node_ref(),
            EventType::Normal,
            "NodeReady",
            &format!("Node {} status is now: NodeReady", self.name),
        );
        Ok(())
    }

    /// Creates or renews `kube-node-lease/<node>`, owned by the Node.
    pub async fn renew_lease(&mut self) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let now = MicroTime(jiff::Timestamp::now());
        let owner = self.uid.clone().map(|uid| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: self.name.clone(),
                uid,
                ..Default::default()
            }]
        });
        let spec = LeaseSpec {
            holder_identity: Some(self.name.clone()),
            lease_duration_seconds: Some(self.config.lease_duration_seconds),
            renew_time: Some(now),
            ..Default::default()
        };
        let current = leases
            .get_opt(&self.name)
            .await
            .map_err(api_err(format!("get lease {}", self.name)))?;
        match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.into()),
                        owner_references: owner,
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(api_err(format!("create lease {}", self.name)))?;
            }
            Some(mut lease) => {
                let keep = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec {
                    acquire_time: keep.acquire_time,
                    ..spec
                });
                if owner.is_some() {
                    lease.metadata.owner_references = owner;
                }
                leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map_err(api_err(format!("renew lease {}", self.name)))?;
            }
        }
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MEMINFO: &str =
        "MemTotal:       16318412 kB\nMemFree:         1234567 kB\nMemAvailable:   9000000 kB\n";
    const OS_RELEASE: &str = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";

    fn host() -> HostInfo {
        HostInfo {
            hostname: "worker-1".into(),
            cpus: 4,
            memory_ki: 8 * 1024 * 1024,
            kernel_version: "6.1.0".into(),
            os_image: "Debian".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            ip: Some("10.0.0.5".parse().unwrap()),
        }
    }

    #[test]
    fn proc_and_etc_files_parse() {
        assert_eq!(parse_meminfo_total_ki(MEMINFO), Some(16318412));
        assert_eq!(parse_meminfo_total_ki("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_total_ki("MemTotal: lots kB\n"), None);
        assert_eq!(
            parse_os_release_pretty_name(OS_RELEASE).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME=Alpine\n").as_deref(),
            Some("Alpine")
        );
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
    }

    #[test]
    fn reserved_resources_come_off_capacity() {
        let config = NodeConfig {
            system_reserved: [("cpu".into(), "500m".into())].into(),
            kube_reserved: [("memory".into(), "1Gi".into())].into(),
            max_pods: 20,
            ..Default::default()
        };
        let s = desired_status(&config, &host(), "worker-1", None, jiff::Timestamp::now()).unwrap();
        let cap = s.capacity.unwrap();
        let alloc = s.allocatable.unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "8388608Ki");
        assert_eq!(cap["pods"].0, "20");
        assert_eq!(alloc["cpu"].0, "3500m");
        assert_eq!(alloc["memory"].0, "7Gi");
        let bad = NodeConfig {
            kube_reserved: [("memory".into(), "lots".into())].into(),
            ..Default::default()
        };
        assert!(desired_status(&bad, &host(), "w", None, jiff::Timestamp::now()).is_err());
    }

    #[test]
    fn only_real_changes_count_and_transition_times_stay() {
        let config = NodeConfig::default();
        let t0 = jiff::Timestamp::from_second(1_000_000).unwrap();
        let t1 = jiff::Timestamp::from_second(1_000_100).unwrap();
        let first = desired_status(&config, &host(), "worker-1", None, t0).unwrap();
        assert!(status_changed(None, &first));
        let second = desired_status(&config, &host(), "worker-1", Some(&first), t1).unwrap();
        assert!(
            !status_changed(Some(&first), &second),
            "only heartbeats moved"
        );
        let ready = |s: &NodeStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&second).last_transition_time, Some(Time(t0)));
        assert_eq!(ready(&second).last_heartbeat_time, Some(Time(t1)));

        // The node lifecycle controller marked it Unknown: a flip, with a new transition time.
        let mut unknown = second.clone();
        for c in unknown.conditions.as_mut().unwrap() {
            c.status = "Unknown".into();
        }
        let back = desired_status(&config, &host(), "worker-1", Some(&unknown), t1).unwrap();
        assert!(status_changed(Some(&unknown), &back));
        assert_eq!(ready(&back).status, "True");
        assert_eq!(ready(&back).last_transition_time, Some(Time(t1)));

        // A condition another component owns is kept, and is no change.
        let mut with_network = second.clone();
        with_network
            .conditions
            .as_mut()
            .unwrap()
            .push(NodeCondition {
                type_: "NetworkUnavailable".into(),
                status: "False".into(),
                ..Default::default()
            });
        let kept = desired_status(&config, &host(), "worker-1", Some(&with_network), t1).unwrap();
        assert!(!status_changed(Some(&with_network), &kept));

        let other_ip = NodeConfig {
            node_ip: Some("10.9.9.9".parse().unwrap()),
            ..Default::default()
        };
        let moved = desired_status(&other_ip, &host(), "worker-1", Some(&first), t1).unwrap();
        assert!(status_changed(Some(&first), &moved));
    }

    #[test]
    fn the_renew_interval_defaults_to_a_quarter_of_the_lease() {
        assert_eq!(
            NodeConfig::default().renew_interval(),
            Duration::from_secs(10)
        );
        let c = NodeConfig {
            lease_duration_seconds: 4,
            ..Default::default()
        };
        assert_eq!(c.renew_interval(), Duration::from_secs(1));
    }
}
