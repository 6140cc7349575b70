//! `keelson kubelet`: flags and the YAML config file (KubeletConfiguration's key names),
//! resolved into the node agent's configuration; then the node registers and heartbeats
//! and, when containerd answers, the pod workers run the pods bound to the node, until
//! SIGTERM (which leaves containers running for the next kubelet to adopt).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_kubelet::network::PodNetwork;
use keelson_kubelet::node::{HostInfo, NodeAgent, NodeConfig};
use keelson_kubelet::pods::{PodConfig, PodManager};
use keelson_kubelet::runtime::Runtime;
use keelson_kubelet::server::{KubeletServer, ServerConfig};
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::{base_dir, duration, kubeconfig, load_yaml, parse_duration};

/// `keelson kubelet` flags, named as the kubelet's. Each overrides the same key of `--config`.
#[derive(Args, Debug, Default, Clone)]
pub struct KubeletArgs {
    /// YAML config file (keys: kubeconfig, hostnameOverride, nodeIP, nodeLabels, maxPods,
    /// systemReserved, kubeReserved, nodeLeaseDurationSeconds, nodeStatusUpdateFrequency,
    /// nodeStatusReportFrequency, containerRuntimeEndpoint, rootDir, containerdNamespace,
    /// clusterDNS, clusterDomain, resolvConf, insecureRegistries, serializeImagePulls,
    /// staticPodPath, fileCheckFrequency, networkPlugin, networkPluginConfig, podCIDR).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then
    /// /var/lib/keelson/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node's name instead of the host name.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP (default: the host's first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Labels to add to the node, `key=value,...`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Option<Vec<String>>,
    /// Pods the node may run (110).
    #[arg(long)]
    pub max_pods: Option<u32>,
    /// Seconds a node Lease lasts; it is renewed every quarter of that (40).
    #[arg(long)]
    pub node_lease_duration_seconds: Option<i32>,
    /// How often node status is computed and compared with the server's (10s).
    #[arg(long, value_parser = parse_duration)]
    pub node_status_update_frequency: Option<Duration>,
    /// How long node status may go unposted when nothing changes (1m).
    #[arg(long, value_parser = parse_duration)]
    pub node_status_report_frequency: Option<Duration>,
    /// containerd's socket (default /run/containerd/containerd.sock); its version is
    /// reported in the node's nodeInfo when it answers.
    #[arg(long, alias = "container-runtime-endpoint")]
    pub containerd_address: Option<String>,
    /// The containerd namespace pods run in (keelson, where `keelson image import` puts images).
    #[arg(long)]
    pub containerd_namespace: Option<String>,
    /// The kubelet's state directory; container logs go to `<root-dir>/logs`
    /// (/var/lib/keelson/kubelet).
    #[arg(long)]
    pub root_dir: Option<PathBuf>,
    /// A directory of static pod manifests (or one manifest file), run without the API
    /// server and mirrored into it (config key staticPodPath; none by default).
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often the static pod manifests are read again (fileCheckFrequency, 20s).
    #[arg(long, value_parser = parse_duration)]
    pub file_check_frequency: Option<Duration>,
    /// The nameservers of ClusterFirst pods, `ip,...` (none: such pods get the node's).
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Option<Vec<IpAddr>>,
    /// The cluster's DNS domain, searched by ClusterFirst pods (cluster.local).
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// The node's resolver configuration, which Default pods get (/etc/resolv.conf; empty
    /// for none).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// The pod network backend: `bridge` (built in), `none` (pods get loopback only), or the
    /// path of a network-backend plugin (.wasm component or native library). The last of
    /// repeated network flags wins.
    #[arg(long, overrides_with = "network_plugin")]
    pub network_plugin: Option<String>,
    /// The backend's options as JSON, such as `{"bridge":"kbr0"}`.
    #[arg(long, overrides_with = "network_plugin_config")]
    pub network_plugin_config: Option<String>,
    /// This node's pod CIDR, for a cluster without a controller manager assigning
    /// spec.podCIDR.
    #[arg(long, overrides_with = "pod_cidr")]
    pub pod_cidr: Option<ipnet::IpNet>,
    /// The kubelet server's port (10250; 0 picks a free one, which the node reports).
    #[arg(long)]
    pub port: Option<u16>,
    /// The address the kubelet server listens on (0.0.0.0).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// The kubelet server's certificate (default: self-signed, kept in `<root-dir>/pki`).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of `--tls-cert-file`.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Clients of the kubelet server must present a certificate this CA signed (default:
    /// anonymous clients are served).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// A registry (`host:port`, as image references name it) pulled from over plain HTTP
    /// instead of HTTPS; repeatable. Loopback registries too must be named.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Pull one image at a time (true); `false` lets pods' pulls run in parallel.
    #[arg(long)]
    pub serialize_image_pulls: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KubeletFile {
    kubeconfig: Option<PathBuf>,
    hostname_override: Option<String>,
    #[serde(rename = "nodeIP")]
    node_ip: Option<String>,
    node_labels: Option<BTreeMap<String, String>>,
    max_pods: Option<u32>,
    system_reserved: Option<BTreeMap<String, String>>,
    kube_reserved: Option<BTreeMap<String, String>>,
    node_lease_duration_seconds: Option<i32>,
    node_status_update_frequency: Option<String>,
    node_status_report_frequency: Option<String>,
    container_runtime_endpoint: Option<String>,
    root_dir: Option<PathBuf>,
    containerd_namespace: Option<String>,
    static_pod_path: Option<PathBuf>,
    file_check_frequency: Option<String>,
    #[serde(rename = "clusterDNS")]
    cluster_dns: Option<Vec<String>>,
    cluster_domain: Option<String>,
    resolv_conf: Option<PathBuf>,
    network_plugin: Option<String>,
    network_plugin_config: Option<serde_json::Value>,
    #[serde(rename = "podCIDR")]
    pod_cidr: Option<String>,
    insecure_registries: Option<Vec<String>>,
    serialize_image_pulls: Option<bool>,
}

/// Everything the kubelet needs, resolved and checked.
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub node: NodeConfig,
    pub containerd_address: String,
    pub containerd_namespace: String,
    pub root_dir: PathBuf,
    /// Where static pods come from, if anywhere.
    pub static_pods: Option<keelson_kubelet::static_pods::StaticPodConfig>,
    pub volumes: keelson_kubelet::volumes::VolumeConfig,
    /// The pod network (its node name is set at start); none for `--network-plugin none`.
    pub network: Option<keelson_kubelet::network::NetworkConfig>,
    /// The kubelet server (its node name and addresses are set at start).
    pub server: ServerConfig,
    pub image_pulls: keelson_kubelet::images::PullConfig,
}

impl KubeletArgs {
    /// Merges flags over the file and checks everything but the connections.
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file: KubeletFile = load_yaml(self.config.as_deref())?;
        let base = base_dir(self.config.as_deref());
        let kubeconfig = kubeconfig(self.kubeconfig, file.kubeconfig, &base);
        let node_ip = match (self.node_ip, file.node_ip) {
            (Some(ip), _) => Some(ip),
            (None, Some(s)) => Some(
                s.parse()
                    .map_err(|e| anyhow::anyhow!("nodeIP {s:?}: {e}"))?,
            ),
            (None, None) => None,
        };
        let mut node = NodeConfig {
            node_name: self
                .hostname_override
                .or(file.hostname_override)
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_lowercase()),
            node_ip,
            ..Default::default()
        };
        node.labels = file.node_labels.unwrap_or_default();
        for pair in self.node_labels.unwrap_or_default() {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let Some((k, v)) = pair.split_once('=') else {
                bail!("--node-labels: {pair:?} is not key=value");
            };
            node.labels.insert(k.trim().into(), v.trim().into());
        }
        if let Some(n) = self.max_pods.or(file.max_pods) {
            node.max_pods = n;
        }
        node.system_reserved = file.system_reserved.unwrap_or_default();
        node.kube_reserved = file.kube_reserved.unwrap_or_default();
        if let Some(s) = self
            .node_lease_duration_seconds
            .or(file.node_lease_duration_seconds)
        {
            if s <= 0 {
                bail!("nodeLeaseDurationSeconds must be positive, not {s}");
            }
            node.lease_duration_seconds = s;
        }
        if let Some(d) = duration(
            self.node_status_update_frequency,
            "nodeStatusUpdateFrequency",
            file.node_status_update_frequency,
        )? {
            if d.is_zero() {
                bail!("nodeStatusUpdateFrequency must be positive");
            }
            node.status_update_frequency = d;
        }
        if let Some(d) = duration(
            self.node_status_report_frequency,
            "nodeStatusReportFrequency",
            file.node_status_report_frequency,
        )? {
            node.status_report_frequency = d;
        }
        // Reserved amounts are checked here, before anything connects.
        keelson_kubelet::node::allocatable(
            &BTreeMap::new(),
            &[&node.system_reserved, &node.kube_reserved],
        )
        .context("systemReserved/kubeReserved")?;
        let containerd_address = self
            .containerd_address
            .or(file.container_runtime_endpoint)
            .unwrap_or_else(|| "/run/containerd/containerd.sock".into());
        let containerd_address = containerd_address
            .strip_prefix("unix://")
            .unwrap_or(&containerd_address)
            .to_string();
        let containerd_namespace = self
            .containerd_namespace
            .or(file.containerd_namespace)
            .unwrap_or_else(|| "keelson".into());
        if containerd_namespace.trim().is_empty() {
            bail!("containerdNamespace must not be empty");
        }
        let root_dir = self
            .root_dir
            .or(file.root_dir.map(|p| base.join(p)))
            .unwrap_or_else(|| PathBuf::from("/var/lib/keelson/kubelet"));
        let cluster_dns = match (self.cluster_dns, file.cluster_dns) {
            (Some(ips), _) => ips.iter().map(IpAddr::to_string).collect(),
            (None, Some(ips)) => ips
                .iter()
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map(|ip| ip.to_string())
                        .map_err(|e| anyhow::anyhow!("clusterDNS {s:?}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
            (None, None) => Vec::new(),
        };
        let volumes = keelson_kubelet::volumes::VolumeConfig {
            root_dir: root_dir.clone(),
            cluster_dns,
            cluster_domain: self
                .cluster_domain
                .or(file.cluster_domain)
                .map(|d| d.trim_end_matches('.').to_string())
                .unwrap_or_else(|| "cluster.local".into()),
            resolv_conf: self
                .resolv_conf
                .or(file.resolv_conf)
                .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf")),
        };
        let network = resolve_network(
            self.network_plugin
                .or(file.network_plugin.map(|p| relative_plugin(p, &base))),
            self.network_plugin_config,
            file.network_plugin_config,
            self.pod_cidr,
            file.pod_cidr,
            &root_dir,
        )?;
        let static_pods = match self
            .pod_manifest_path
            .or(file.static_pod_path.map(|p| base.join(p)))
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) => {
                let check_frequency = duration(
                    self.file_check_frequency,
                    "fileCheckFrequency",
                    file.file_check_frequency,
                )?
                .unwrap_or(keelson_kubelet::static_pods::DEFAULT_CHECK_FREQUENCY);
                if check_frequency.is_zero() {
                    bail!("fileCheckFrequency must be positive");
                }
                Some(keelson_kubelet::static_pods::StaticPodConfig {
                    path,
                    check_frequency,
                })
            }
            None => None,
        };
        let image_pulls = image_pulls(
            self.insecure_registries,
            file.insecure_registries,
            self.serialize_image_pulls.or(file.serialize_image_pulls),
        )?;
        let mut server = ServerConfig::new(String::new(), &root_dir);
        server.port = self.port.unwrap_or(server.port);
        server.address = self.address.unwrap_or(server.address);
        server.tls.cert_file = self.tls_cert_file;
        server.tls.key_file = self.tls_private_key_file;
        server.tls.client_ca_file = self.client_ca_file;
        Ok(Resolved {
            server,
            kubeconfig,
            static_pods,
            node,
            containerd_address,
            containerd_namespace,
            root_dir,
            volumes,
            network,
            image_pulls,
        })
    }
}

/// Image pulls: `--insecure-registry` flags added to the file's `insecureRegistries`, and
/// `serializeImagePulls` (true unless set false).
fn image_pulls(
    flags: Vec<String>,
    file: Option<Vec<String>>,
    serialize: Option<bool>,
) -> anyhow::Result<keelson_kubelet::images::PullConfig> {
    let mut insecure = file.unwrap_or_default();
    insecure.extend(flags);
    for host in &insecure {
        if host.is_empty() || host.contains('/') {
            bail!("insecure registry {host:?}: name it as image references do, host or host:port");
        }
    }
    Ok(keelson_kubelet::images::PullConfig::new(
        insecure,
        serialize.unwrap_or(true),
    ))
}

/// A plugin path from the config file, relative to the file's directory (names such as
/// `bridge` and `none` are kept).
fn relative_plugin(plugin: String, base: &std::path::Path) -> String {
    if plugin.contains('/') || plugin.ends_with(".wasm") || plugin.ends_with(".so") {
        base.join(&plugin).to_string_lossy().into_owned()
    } else {
        plugin
    }
}

/// The pod network's settings: flags over the file's `networkPlugin`, `networkPluginConfig`
/// (an object, or JSON text) and `podCIDR`.
fn resolve_network(
    plugin: Option<String>,
    flag_config: Option<String>,
    file_config: Option<serde_json::Value>,
    flag_cidr: Option<ipnet::IpNet>,
    file_cidr: Option<String>,
    root_dir: &std::path::Path,
) -> anyhow::Result<Option<keelson_kubelet::network::NetworkConfig>> {
    use keelson_kubelet::network::{DEFAULT_PLUGIN, NetworkConfig};
    let plugin = plugin
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PLUGIN.into());
    if plugin == "none" {
        return Ok(None);
    }
    let plugin_config = match (flag_config, file_config) {
        (Some(text), _) => {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| anyhow::anyhow!("--network-plugin-config is not JSON: {e}"))?;
            text
        }
        (None, Some(serde_json::Value::String(text))) => {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| anyhow::anyhow!("networkPluginConfig is not JSON: {e}"))?;
            text
        }
        (None, Some(v)) => v.to_string(),
        (None, None) => "{}".into(),
    };
    let pod_cidr = match (flag_cidr, file_cidr) {
        (Some(c), _) => Some(c),
        (None, Some(s)) => Some(
            s.parse::<ipnet::IpNet>()
                .map_err(|e| anyhow::anyhow!("podCIDR {s:?}: {e}"))?,
        ),
        (None, None) => None,
    };
    let mut config = NetworkConfig::new(String::new(), root_dir);
    config.plugin = plugin;
    config.plugin_config = plugin_config;
    config.pod_cidr = pod_cidr.map(|c| c.trunc());
    Ok(Some(config))
}

/// containerd and its version, or `None` (with a warning) when it does not answer.
async fn connect_runtime(
    address: &str,
    namespace: &str,
) -> Option<(keelson_kubelet::Containerd, String)> {
    let ask = async {
        let c = keelson_kubelet::Containerd::connect(address, namespace).await?;
        let v = c.version().await?;
        Ok::<_, keelson_kubelet::containerd::Error>((c, v))
    };
    match tokio::time::timeout(Duration::from_secs(3), ask).await {
        Ok(Ok((c, v))) => Some((c, format!("containerd://{v}"))),
        Ok(Err(e)) => {
            tracing::warn!(address, error = %e, "containerd is not reachable; the node is registered without a container runtime version and runs no pods");
            None
        }
        Err(_) => {
            tracing::warn!(
                address,
                "containerd did not answer in 3s; the node is registered without a container runtime version and runs no pods"
            );
            None
        }
    }
}

/// Connects and runs until `shutdown` turns true.
pub async fn run(mut resolved: Resolved, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let containerd =
        connect_runtime(&resolved.containerd_address, &resolved.containerd_namespace).await;
    resolved.node.container_runtime_version = containerd.as_ref().map(|(_, v)| v.clone());
    let client = keelson_client::connect(&resolved.kubeconfig, "keelson-kubelet")
        .await
        .context("connect to the API server")?;
    let host_ip = resolved
        .node
        .node_ip
        .or_else(|| HostInfo::gather().ip)
        .map(|ip| ip.to_string());
    // Bound before the node registers, so that the node reports the port it got.
    let server = KubeletServer::bind_for_node(
        resolved.server.clone(),
        &resolved.node,
        client.clone(),
        containerd.as_ref().map(|(cd, _)| cd.clone()),
        resolved.root_dir.join("logs"),
    )
    .await;
    if let Some(addr) = server.as_ref().and_then(KubeletServer::local_addr) {
        resolved.node.kubelet_port = addr.port();
    }
    let agent = NodeAgent::new(client.clone(), resolved.node).context("node agent")?;
    let pods = match containerd {
        Some((cd, _)) => {
            // Each pod's log directory is made when its first container starts.
            let runtime = Runtime::new(cd, resolved.root_dir.join("logs"))
                .await
                .context("container runtime")?;
            let mut config = PodConfig::new(agent.name());
            config.host_ip = host_ip;
            config.static_pods = resolved.static_pods.clone();
            config.volumes = resolved.volumes;
            config.image_pulls = resolved.image_pulls.clone();
            let mut pods = PodManager::new(client.clone(), runtime.clone(), config);
            if let Some(mut net) = resolved.network.take() {
                net.node_name = agent.name().to_string();
                let network = tokio::task::spawn_blocking(move || PodNetwork::load(net))
                    .await
                    .context("load the network plugin")?
                    .context("pod network")?;
                pods = pods.with_network(network.clone());
                tokio::spawn(network.run(client, runtime, shutdown.clone()));
            }
            Some(pods)
        }
        None => None,
    };
    let pods_shutdown = shutdown.clone();
    let run_pods = async move {
        if let Some(pods) = pods {
            pods.run(pods_shutdown).await;
        }
    };
    let server_shutdown = shutdown.clone();
    let run_server = async move {
        if let Some(server) = server {
            server.run(server_shutdown).await;
        }
    };
    tokio::join!(agent.run(shutdown), run_pods, run_server);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_and_flags_merge_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kubelet.yaml");
        std::fs::write(
            &p,
            "hostnameOverride: Worker-1\nnodeIP: 10.1.2.3\nnodeLabels: {zone: a}\nmaxPods: 20\nkubeReserved: {cpu: 100m}\nnodeLeaseDurationSeconds: 4\nnodeStatusReportFrequency: 1m\ncontainerRuntimeEndpoint: unix:///tmp/c.sock\nrootDir: state\ncontainerdNamespace: test\nclusterDNS: [10.96.0.10]\nclusterDomain: example.org.\n",
        )
        .unwrap();
        let r = KubeletArgs {
            config: Some(p.clone()),
            max_pods: Some(30),
            node_labels: Some(vec!["tier=web".into()]),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.node.node_name.as_deref(), Some("worker-1"));
        assert_eq!(r.node.node_ip.unwrap().to_string(), "10.1.2.3");
        assert_eq!(r.node.max_pods, 30);
        assert_eq!(r.node.labels["zone"], "a");
        assert_eq!(r.node.labels["tier"], "web");
        assert_eq!(r.node.renew_interval(), Duration::from_secs(1));
        assert_eq!(r.node.status_report_frequency, Duration::from_secs(60));
        assert_eq!(r.containerd_address, "/tmp/c.sock");
        assert_eq!(r.containerd_namespace, "test");
        assert_eq!(r.root_dir, dir.path().join("state"));
        assert_eq!(r.volumes.root_dir, r.root_dir);
        assert_eq!(r.volumes.cluster_dns, ["10.96.0.10"]);
        assert_eq!(r.volumes.cluster_domain, "example.org");
        assert_eq!(r.volumes.resolv_conf, PathBuf::from("/etc/resolv.conf"));

        std::fs::write(&p, "maxPod: 4\n").unwrap();
        let err = format!(
            "{:#}",
            KubeletArgs {
                config: Some(p.clone()),
                ..Default::default()
            }
            .resolve()
            .err()
            .unwrap()
        );
        assert!(err.contains("maxPod"), "{err}");

        std::fs::write(&p, "systemReserved: {memory: lots}\n").unwrap();
        let err = KubeletArgs {
            config: Some(p),
            ..Default::default()
        }
        .resolve()
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("memory"), "{err:#}");
    }

    #[test]
    fn static_pods_come_from_the_manifest_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kubelet.yaml");
        std::fs::write(&p, "staticPodPath: manifests\nfileCheckFrequency: 5s\n").unwrap();
        let args = || KubeletArgs {
            config: Some(p.clone()),
            ..Default::default()
        };
        let s = args().resolve().unwrap().static_pods.unwrap();
        assert_eq!(s.path, dir.path().join("manifests"));
        assert_eq!(s.check_frequency, Duration::from_secs(5));
        let s = KubeletArgs {
            pod_manifest_path: Some("/etc/m".into()),
            file_check_frequency: Some(Duration::from_secs(1)),
            ..args()
        }
        .resolve()
        .unwrap()
        .static_pods
        .unwrap();
        assert_eq!(s.path, std::path::Path::new("/etc/m"));
        assert_eq!(s.check_frequency, Duration::from_secs(1));
        let none = KubeletArgs::default().resolve().unwrap().static_pods;
        assert!(none.is_none());
        std::fs::write(&p, "staticPodPath: m\nfileCheckFrequency: 0s\n").unwrap();
        let err = args().resolve().err().unwrap();
        assert!(format!("{err:#}").contains("fileCheckFrequency"), "{err:#}");
    }

    #[test]
    fn network_settings_come_from_flags_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kubelet.yaml");
        let resolve = |yaml: &str, args: KubeletArgs| {
            std::fs::write(&p, yaml).unwrap();
            KubeletArgs {
                config: Some(p.clone()),
                ..args
            }
            .resolve()
        };
        let net = resolve("{}", KubeletArgs::default())
            .unwrap()
            .network
            .unwrap();
        assert_eq!(net.plugin, "bridge");
        assert_eq!(net.plugin_config, "{}");
        assert!(net.pod_cidr.is_none());

        let yaml = "networkPlugin: plugins/net.wasm\nnetworkPluginConfig: {bridge: kb0}\npodCIDR: 10.1.2.3/24\n";
        let net = resolve(yaml, KubeletArgs::default())
            .unwrap()
            .network
            .unwrap();
        assert_eq!(
            net.plugin,
            dir.path().join("plugins/net.wasm").to_string_lossy()
        );
        assert_eq!(net.plugin_config, r#"{"bridge":"kb0"}"#);
        assert_eq!(net.pod_cidr.unwrap().to_string(), "10.1.2.0/24");

        let flags = KubeletArgs {
            network_plugin: Some("bridge".into()),
            network_plugin_config: Some(r#"{"bridge":"kt1"}"#.into()),
            pod_cidr: Some("10.9.0.0/16".parse().unwrap()),
            ..Default::default()
        };
        let net = resolve(yaml, flags).unwrap().network.unwrap();
        assert_eq!(
            (net.plugin.as_str(), net.plugin_config.as_str()),
            ("bridge", r#"{"bridge":"kt1"}"#)
        );
        assert_eq!(net.pod_cidr.unwrap().to_string(), "10.9.0.0/16");

        let off = KubeletArgs {
            network_plugin: Some("none".into()),
            ..Default::default()
        };
        assert!(resolve(yaml, off).unwrap().network.is_none());
        let bad = KubeletArgs {
            network_plugin_config: Some("{".into()),
            ..Default::default()
        };
        let err = resolve("{}", bad).err().unwrap();
        assert!(
            format!("{err:#}").contains("--network-plugin-config"),
            "{err:#}"
        );
    }
}
