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
use keelson_kubelet::node::{HostInfo, NodeAgent, NodeConfig};
use keelson_kubelet::pods::{PodConfig, PodManager};
use keelson_kubelet::runtime::Runtime;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::{base_dir, duration, kubeconfig, load_yaml, parse_duration};

/// `keelson kubelet` flags, named as the kubelet's. Each overrides the same key of `--config`.
#[derive(Args, Debug, Default, Clone)]
pub struct KubeletArgs {
    /// YAML config file (keys: kubeconfig, hostnameOverride, nodeIP, nodeLabels, maxPods,
    /// systemReserved, kubeReserved, nodeLeaseDurationSeconds, nodeStatusUpdateFrequency,
    /// nodeStatusReportFrequency, containerRuntimeEndpoint, rootDir, containerdNamespace).
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
    /// How long node status may go unposted when nothing changes (5m).
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
}

/// Everything the kubelet needs, resolved and checked.
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub node: NodeConfig,
    pub containerd_address: String,
    pub containerd_namespace: String,
    pub root_dir: PathBuf,
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
        Ok(Resolved {
            kubeconfig,
            node,
            containerd_address,
            containerd_namespace,
            root_dir,
        })
    }
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
    let agent = NodeAgent::new(client.clone(), resolved.node).context("node agent")?;
    let pods = match containerd {
        Some((cd, _)) => {
            // Each pod's log directory is made when its first container starts.
            let runtime = Runtime::new(cd, resolved.root_dir.join("logs"))
                .await
                .context("container runtime")?;
            let mut config = PodConfig::new(agent.name());
            config.host_ip = host_ip;
            Some(PodManager::new(client, runtime, config))
        }
        None => None,
    };
    let pods_shutdown = shutdown.clone();
    let run_pods = async move {
        if let Some(pods) = pods {
            pods.run(pods_shutdown).await;
        }
    };
    tokio::join!(agent.run(shutdown), run_pods);
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
            "hostnameOverride: Worker-1\nnodeIP: 10.1.2.3\nnodeLabels: {zone: a}\nmaxPods: 20\nkubeReserved: {cpu: 100m}\nnodeLeaseDurationSeconds: 4\nnodeStatusReportFrequency: 1m\ncontainerRuntimeEndpoint: unix:///tmp/c.sock\nrootDir: state\ncontainerdNamespace: test\n",
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
}
