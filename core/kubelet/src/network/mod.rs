//! Pod networking: the kubelet's network backend plugin and the netlink host it runs on.
//!
//! The backend (`--network-plugin`: `bridge`, the built-in one, or a Wasm component or native
//! library by path) is configured with `--network-plugin-config` and told about every Node
//! (the local one first, with its pod CIDRs: `spec.podCIDRs`, or `--pod-cidr` on a node
//! without a controller manager), then about the pods attached before a restart. Pod workers
//! attach a pod's sandbox once it runs and detach it before the sandbox is removed.
//!
//! Each attached sandbox is recorded in `<root-dir>/network/<sandbox-id>.json` before the
//! attach is reported done, and the record is removed after its detach. At start, records
//! whose sandbox still exists are replayed with `restore-pod`, so that the backend keeps the
//! pods' addresses, and the others are detached and removed. A record names the network
//! namespace it was made for: a sandbox recreated under the same id is attached anew.

pub mod hostnet;
pub mod nft;

pub use hostnet::{LocalNode, NetlinkHostNet, NetnsRegistry};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use keelson_client::Change;
use keelson_plugin_host::{
    AttachRequest, AttachedPod, DetachRequest, HostConfig, HostNet, NetworkPlugin, NodeAddress,
    NodeAddressKind, NodeNetworkInfo, PluginHost, PluginLimits, PluginSpec, PodAddress,
};
use kube::Api;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::runtime::{Kind, Runtime};

/// The interface every pod gets.
pub const POD_INTERFACE: &str = "eth0";
/// The backend used when none is named.
pub const DEFAULT_PLUGIN: &str = "bridge";
/// How long an attach or detach waits for the backend to learn about the local node.
const READY_WAIT: Duration = Duration::from_secs(10);
/// How long one backend call may run (Wasm backends; native ones cannot be interrupted).
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// How often node calls that failed are retried.
const NODE_RETRY: Duration = Duration::from_secs(2);

/// Errors of pod networking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call of the backend failed; the source names the plugin and the call.
    #[error("{source}")]
    Plugin {
        plugin: String,
        #[source]
        source: keelson_plugin_host::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("network is not ready: {0}")]
    NotReady(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the network plugin call was cancelled: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How pod networking is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// `bridge` (the built-in backend) or the path of a Wasm component or native library.
    pub plugin: String,
    /// The backend's options, JSON text.
    pub plugin_config: String,
    /// This node's pod CIDR when no controller manager assigns `spec.podCIDR`.
    pub pod_cidr: Option<IpNet>,
    /// The kubelet's state directory; records go to `<root_dir>/network`.
    pub root_dir: PathBuf,
    /// The local node's name.
    pub node_name: String,
}

impl NetworkConfig {
    /// The default backend with no options.
    pub fn new(node_name: impl Into<String>, root_dir: impl Into<PathBuf>) -> Self {
        NetworkConfig {
            plugin: DEFAULT_PLUGIN.into(),
            plugin_config: "{}".into(),
            pod_cidr: None,
            root_dir: root_dir.into(),
            node_name: node_name.into(),
        }
    }
}

/// What is kept of an attached sandbox, in `<root-dir>/network/<sandbox-id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub sandbox_id: String,
    pub interface_name: String,
    /// The interface's addresses as CIDRs (`10.244.1.5/24`).
    pub addresses: Vec<String>,
    /// The gateway of each address, if any.
    pub gateways: Vec<Option<String>>,
    /// The inode of the sandbox's network namespace at attach: sandbox ids are reused when a
    /// pod's sandbox is recreated, and a record of an earlier namespace is stale.
    #[serde(default)]
    pub netns_inode: Option<u64>,
}

impl Record {
    fn from_attached(p: &AttachedPod) -> Self {
        Record {
            pod_namespace: p.pod_namespace.clone(),
            pod_name: p.pod_name.clone(),
            pod_uid: p.pod_uid.clone(),
            sandbox_id: p.sandbox_id.clone(),
            interface_name: p.interface_name.clone(),
            addresses: p
                .addresses
                .iter()
                .filter_map(|a| hostnet::prefix(&a.address).ok())
                .map(|n| n.to_string())
                .collect(),
            gateways: p
                .addresses
                .iter()
                .map(|a| a.gateway.as_ref().map(|g| hostnet::ip(g).to_string()))
                .collect(),
            netns_inode: None,
        }
    }

    fn to_attached(&self) -> AttachedPod {
        let addresses = self
            .addresses
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let net: IpNet = a.parse().ok()?;
                let gateway = self
                    .gateways
                    .get(i)
                    .cloned()
                    .flatten()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .map(hostnet::wit_ip);
                Some(PodAddress {
                    address: hostnet::wit_prefix(net),
                    gateway,
                })
            })
            .collect();
        AttachedPod {
            pod_namespace: self.pod_namespace.clone(),
            pod_name: self.pod_name.clone(),
            pod_uid: self.pod_uid.clone(),
            sandbox_id: self.sandbox_id.clone(),
            interface_name: self.interface_name.clone(),
            addresses,
        }
    }

    /// The pod's IPs, in the order the backend gave them.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .filter_map(|a| a.parse::<IpNet>().ok())
            .map(|n| n.addr())
            .collect()
    }
}

struct Inner {
    /// Kept for the epoch ticker that enforces Wasm deadlines.
    _host: PluginHost,
    plugin: Mutex<NetworkPlugin>,
    plugin_name: String,
    host_net: Arc<NetlinkHostNet>,
    dir: PathBuf,
    node_name: String,
    pod_cidr: Option<IpNet>,
    ready: watch::Sender<bool>,
    /// Attached sandboxes by id.
    records: Mutex<HashMap<String, Record>>,
}

/// The kubelet's pod network: a handle shared by the pod workers.
#[derive(Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork")
            .field("plugin", &self.inner.plugin_name)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loads backend `name`: the built-in `bridge`, or a plugin file.
fn load_backend(
    host: &PluginHost,
    name: &str,
    host_net: Arc<dyn HostNet>,
) -> Result<NetworkPlugin, keelson_plugin_host::Error> {
    if name == DEFAULT_PLUGIN {
        let builtin = keelson_network_bridge::builtin();
        return host.load_network_builtin(DEFAULT_PLUGIN, &builtin, host_net);
    }
    let path = Path::new(name);
    let plugin_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
        .to_string();
    let spec = PluginSpec::new(plugin_name, path).with_limits(PluginLimits {
        deadline: CALL_DEADLINE,
        ..PluginLimits::default()
    });
    host.load_network(&spec, host_net)
}

/// The WIT view of a Node; `pod_cidr` replaces its `spec.podCIDRs` when set.
pub fn node_info(node: &Node, local: &str, pod_cidr: Option<IpNet>) -> NodeNetworkInfo {
    let name = node.metadata.name.clone().unwrap_or_default();
    let is_local = name == local;
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]))
        .unwrap_or_default();
    if is_local && let Some(c) = pod_cidr {
        cidrs = vec![c.to_string()];
    }
    let pod_cidrs = cidrs
        .iter()
        .filter_map(|c| c.parse::<IpNet>().ok())
        .map(hostnet::wit_prefix)
        .collect();
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let kind = match a.type_.as_str() {
                "InternalIP" => NodeAddressKind::InternalIp,
                "ExternalIP" => NodeAddressKind::ExternalIp,
                _ => return None,
            };
            let ip: IpAddr = a.address.parse().ok()?;
            Some(NodeAddress {
                kind,
                address: hostnet::wit_ip(ip),
            })
        })
        .collect();
    let pairs = |m: Option<&BTreeMap<String, String>>| -> Vec<(String, String)> {
        m.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    NodeNetworkInfo {
        name,
        is_local,
        pod_cidrs,
        addresses,
        labels: pairs(node.metadata.labels.as_ref()),
        annotations: pairs(node.metadata.annotations.as_ref()),
    }
}

fn record_path(dir: &Path, sandbox_id: &str) -> PathBuf {
    dir.join(format!("{sandbox_id}.json"))
}

impl PodNetwork {
    /// Loads and configures the backend. Blocking (it may compile a Wasm component): call it
    /// at start or on a blocking thread.
    pub fn load(config: NetworkConfig) -> Result<Self> {
        let plugin_err = |source| Error::Plugin {
            plugin: config.plugin.clone(),
            source,
        };
        serde_json::from_str::<serde_json::Value>(&config.plugin_config)
            .map_err(|e| Error::Config(format!("networkPluginConfig is not JSON: {e}")))?;
        let dir = config.root_dir.join("network");
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let host_net = Arc::new(
            NetlinkHostNet::new(NetnsRegistry::default(), LocalNode::default()).map_err(
                |source| Error::Io {
                    what: "open the kubelet's network namespace".into(),
                    source,
                },
            )?,
        );
        let host = PluginHost::new(HostConfig {
            cache_dir: Some(config.root_dir.join("plugin-cache")),
            ..HostConfig::default()
        })
        .map_err(plugin_err)?;
        let mut plugin =
            load_backend(&host, &config.plugin, host_net.clone()).map_err(plugin_err)?;
        plugin
            .configure(&config.plugin_config)
            .map_err(plugin_err)?;
        let records = read_records(&dir);
        Ok(PodNetwork {
            inner: Arc::new(Inner {
                _host: host,
                plugin: Mutex::new(plugin),
                plugin_name: config.plugin,
                host_net,
                dir,
                node_name: config.node_name,
                pod_cidr: config.pod_cidr,
                ready: watch::channel(false).0,
                records: Mutex::new(records),
            }),
        })
    }

    /// The netlink host the backend runs on.
    pub fn host_net(&self) -> &Arc<NetlinkHostNet> {
        &self.inner.host_net
    }

    /// Whether the backend has been told about the local node and the restored pods.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Runs `f` with the backend on a blocking thread.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut NetworkPlugin) -> Result<T, keelson_plugin_host::Error> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || f(&mut lock(&inner.plugin))).await?;
        r.map_err(|source| Error::Plugin {
            plugin: self.inner.plugin_name.clone(),
            source,
        })
    }

    async fn wait_ready(&self) -> Result<()> {
        let mut rx = self.inner.ready.subscribe();
        match tokio::time::timeout(READY_WAIT, rx.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::NotReady(format!(
                "the network plugin has not been given node {} yet",
                self.inner.node_name
            ))),
        }
    }

    /// The record of sandbox `id`, if it is attached.
    pub fn attached(&self, sandbox_id: &str) -> Option<Record> {
        lock(&self.inner.records).get(sandbox_id).cloned()
    }

    /// Connects the running sandbox `sandbox_id` of `pod` (whose init is `pid`); returns its
    /// IPs. A sandbox already attached (also before a restart) keeps its addresses.
    pub async fn attach(&self, pod: &Pod, sandbox_id: &str, pid: u32) -> Result<Vec<IpAddr>> {
        let netns_path = format!("/proc/{pid}/ns/net");
        let inode = std::fs::metadata(&netns_path).ok().map(|m| m.ino());
        if let Some(r) = self.attached(sandbox_id) {
            if r.netns_inode.is_none() || r.netns_inode == inode {
                return Ok(r.ips());
            }
            // The sandbox was recreated under the same id: the old attachment goes first.
            tracing::info!(sandbox = %sandbox_id, "the sandbox's network namespace changed; attaching it anew");
            self.detach(&r.pod_namespace, &r.pod_name, &r.pod_uid, sandbox_id, None)
                .await?;
        }
        self.wait_ready().await?;
        let meta = &pod.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        self.inner.host_net.registry().register(&uid, &netns_path);
        let pairs = |m: Option<&BTreeMap<String, String>>| -> Vec<(String, String)> {
            m.into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let request = AttachRequest {
            pod_namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            pod_name: meta.name.clone().unwrap_or_default(),
            pod_uid: uid,
            sandbox_id: sandbox_id.to_string(),
            netns_path,
            interface_name: POD_INTERFACE.into(),
            labels: pairs(meta.labels.as_ref()),
            annotations: pairs(meta.annotations.as_ref()),
        };
        let req = request.clone();
        let result = self.call(move |p| p.attach_pod(&req)).await?;
        let mut record = Record::from_attached(&AttachedPod {
            pod_namespace: request.pod_namespace,
            pod_name: request.pod_name,
            pod_uid: request.pod_uid,
            sandbox_id: request.sandbox_id,
            interface_name: request.interface_name,
            addresses: result.addresses,
        });
        record.netns_inode = inode;
        self.save(&record)?;
        tracing::info!(sandbox = %sandbox_id, pod = %format!("{}/{}", record.pod_namespace, record.pod_name), addresses = ?record.addresses, "pod network attached");
        let ips = record.ips();
        lock(&self.inner.records).insert(sandbox_id.to_string(), record);
        Ok(ips)
    }

    /// Disconnects sandbox `sandbox_id` of pod `namespace/name` (`uid`); `pid` is its init
    /// when it still runs. Also for sandboxes whose attach failed or that are gone.
    pub async fn detach(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        sandbox_id: &str,
        pid: Option<u32>,
    ) -> Result<()> {
        // Before the backend has the node (the API server away since start) only a sandbox
        // known to be attached waits for it; one never attached goes without a call.
        if !self.is_ready() && self.attached(sandbox_id).is_none() {
            return Ok(());
        }
        self.wait_ready().await?;
        let registry = self.inner.host_net.registry();
        let netns_path = pid
            .map(|p| format!("/proc/{p}/ns/net"))
            .filter(|p| Path::new(p).exists());
        match &netns_path {
            Some(p) => registry.register(uid, p),
            None => registry.unregister(uid),
        }
        let interface_name = self
            .attached(sandbox_id)
            .map(|r| r.interface_name)
            .unwrap_or_else(|| POD_INTERFACE.into());
        let request = DetachRequest {
            pod_namespace: namespace.to_string(),
            pod_name: name.to_string(),
            pod_uid: uid.to_string(),
            sandbox_id: sandbox_id.to_string(),
            netns_path,
            interface_name,
        };
        self.call(move |p| p.detach_pod(&request)).await?;
        registry.unregister(uid);
        let was = lock(&self.inner.records).remove(sandbox_id);
        self.remove_record(sandbox_id)?;
        if was.is_some() {
            tracing::info!(sandbox = %sandbox_id, pod = %format!("{namespace}/{name}"), "pod network detached");
        }
        Ok(())
    }

    fn save(&self, record: &Record) -> Result<()> {
        let path = record_path(&self.inner.dir, &record.sandbox_id);
        let tmp = path.with_extension("json.tmp");
        let io = |what: &str, source| Error::Io {
            what: format!("{what} {}", path.display()),
            source,
        };
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| io("encode", std::io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("write", e))
    }

    fn remove_record(&self, sandbox_id: &str) -> Result<()> {
        let path = record_path(&self.inner.dir, sandbox_id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                what: format!("remove {}", path.display()),
                source,
            }),
        }
    }

    /// Replays the records of sandboxes that still exist (`restore-pod`), and detaches and
    /// forgets the others.
    async fn restore(&self, runtime: &Runtime) {
        let sandboxes: HashSet<String> = match runtime.list_pod_containers().await {
            Ok(all) => all
                .into_iter()
                .filter(|c| c.kind == Kind::Sandbox)
                .map(|c| c.id)
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "cannot list sandboxes to restore pod networks: {e}; restoring every record"
                );
                lock(&self.inner.records).keys().cloned().collect()
            }
        };
        let records: Vec<Record> = lock(&self.inner.records).values().cloned().collect();
        for r in records {
            if sandboxes.contains(&r.sandbox_id) {
                let pod = r.to_attached();
                match self.call(move |p| p.restore_pod(&pod)).await {
                    Ok(()) => {
                        tracing::info!(sandbox = %r.sandbox_id, addresses = ?r.addresses, "restored pod network")
                    }
                    Err(e) => tracing::warn!(sandbox = %r.sandbox_id, "restore-pod failed: {e}"),
                }
                continue;
            }
            let request = DetachRequest {
                pod_namespace: r.pod_namespace.clone(),
                pod_name: r.pod_name.clone(),
                pod_uid: r.pod_uid.clone(),
                sandbox_id: r.sandbox_id.clone(),
                netns_path: None,
                interface_name: r.interface_name.clone(),
            };
            match self.call(move |p| p.detach_pod(&request)).await {
                Ok(()) => {
                    tracing::info!(sandbox = %r.sandbox_id, "detached the network of a sandbox that is gone");
                    lock(&self.inner.records).remove(&r.sandbox_id);
                    if let Err(e) = self.remove_record(&r.sandbox_id) {
                        tracing::warn!("{e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(sandbox = %r.sandbox_id, "detach of a sandbox that is gone failed: {e}")
                }
            }
        }
    }

    /// Watches the Nodes and tells the backend about them (the local node first), restores
    /// the pods attached before a restart, then keeps the backend's view of the nodes current
    /// until `shutdown` turns true.
    pub async fn run(
        self,
        client: kube::Client,
        runtime: Runtime,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let api: Api<Node> = Api::all(client);
        let mut changes = pin!(keelson_client::changes(
            api,
            watcher::Config::default(),
            "nodes"
        ));
        let mut want: BTreeMap<String, NodeNetworkInfo> = BTreeMap::new();
        let mut sent: BTreeMap<String, NodeNetworkInfo> = BTreeMap::new();
        let mut restored = false;
        let mut dirty = false;
        let mut retry = tokio::time::interval(NODE_RETRY);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
                _ = retry.tick() => {
                    if !dirty {
                        continue;
                    }
                }
                change = changes.next() => match change {
                    None => return,
                    Some(Change::Applied(node)) => {
                        let info = node_info(&node, &self.inner.node_name, self.inner.pod_cidr);
                        if info.is_local {
                            let cidrs = info.pod_cidrs.clone();
                            self.inner.host_net.local_node().set(cidrs, info.addresses.clone());
                        }
                        want.insert(info.name.clone(), info);
                    }
                    Some(Change::Deleted(key)) => {
                        want.remove(&key.name);
                    }
                    Some(Change::Synced) => {}
                },
            }
            dirty = !self.reconcile_nodes(&want, &mut sent).await;
            if !restored && sent.contains_key(&self.inner.node_name) {
                self.restore(&runtime).await;
                restored = true;
                self.inner.ready.send_replace(true);
                tracing::info!(plugin = %self.inner.plugin_name, "pod network ready");
            }
        }
    }

    /// Brings the backend's nodes (`sent`) to `want`, the local node first; false if a call
    /// failed (to be retried).
    async fn reconcile_nodes(
        &self,
        want: &BTreeMap<String, NodeNetworkInfo>,
        sent: &mut BTreeMap<String, NodeNetworkInfo>,
    ) -> bool {
        let local = &self.inner.node_name;
        let Some(local_info) = want.get(local) else {
            return true;
        };
        let mut ok = true;
        let mut order: Vec<&NodeNetworkInfo> = vec![local_info];
        order.extend(want.values().filter(|n| &n.name != local));
        for info in order {
            let previous = sent.get(&info.name);
            if previous == Some(info) {
                continue;
            }
            let node = info.clone();
            let r = if previous.is_some() {
                self.call(move |p| p.node_updated(&node)).await
            } else {
                self.call(move |p| p.node_added(&node)).await
            };
            match r {
                Ok(()) => {
                    sent.insert(info.name.clone(), info.clone());
                }
                Err(e) => {
                    tracing::warn!(node = %info.name, "telling the network plugin about the node failed: {e}");
                    ok = false;
                    if &info.name == local && previous.is_none() {
                        return false;
                    }
                }
            }
        }
        let gone: Vec<String> = sent
            .keys()
            .filter(|n| !want.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let Some(node) = sent.get(&name).cloned() else {
                continue;
            };
            match self.call(move |p| p.node_removed(&node)).await {
                Ok(()) => {
                    sent.remove(&name);
                }
                Err(e) => {
                    tracing::warn!(node = %name, "telling the network plugin a node left failed: {e}");
                    ok = false;
                }
            }
        }
        ok
    }
}

/// Reads the records in `dir`; unreadable ones are logged and skipped.
fn read_records(dir: &Path) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
        {
            Ok(r) => {
                out.insert(r.sandbox_id.clone(), r);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable pod network record: {e}")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_through_attached_pods() {
        let r = Record {
            pod_namespace: "ns".into(),
            pod_name: "p".into(),
            pod_uid: "u".into(),
            sandbox_id: "s".into(),
            interface_name: "eth0".into(),
            addresses: vec!["10.244.1.5/24".into()],
            gateways: vec![Some("10.244.1.1".into())],
            netns_inode: None,
        };
        let back = Record::from_attached(&r.to_attached());
        assert_eq!(back, r);
        assert_eq!(r.ips(), vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn the_local_node_takes_the_pod_cidr_flag() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "labels": {"a": "b"}},
            "spec": {"podCIDR": "10.1.0.0/24"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "192.168.1.2"},
                {"type": "Hostname", "address": "n1"}
            ]}
        }))
        .unwrap();
        let info = node_info(&node, "n1", None);
        assert!(info.is_local);
        assert_eq!(
            info.pod_cidrs,
            vec![hostnet::wit_prefix("10.1.0.0/24".parse().unwrap())]
        );
        assert_eq!(info.addresses.len(), 1);
        assert_eq!(info.labels, vec![("a".to_string(), "b".to_string())]);
        let info = node_info(&node, "n1", Some("10.9.0.0/24".parse().unwrap()));
        assert_eq!(
            info.pod_cidrs,
            vec![hostnet::wit_prefix("10.9.0.0/24".parse().unwrap())]
        );
        let info = node_info(&node, "other", Some("10.9.0.0/24".parse().unwrap()));
        assert!(!info.is_local);
        assert_eq!(
            info.pod_cidrs,
            vec![hostnet::wit_prefix("10.1.0.0/24".parse().unwrap())]
        );
    }
}
