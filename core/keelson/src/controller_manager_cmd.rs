//! `keelson controller-manager`: flags and the YAML config file, resolved into the
//! controllers' configuration, then the controllers run under leader election.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use ipnet::Ipv4Net;
use keelson_client::leader::{LeaderConfig, Leadership};
use keelson_controllers::Config;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::{base_dir, duration, kubeconfig, load_yaml, parse_duration};
use crate::leader_args::{LeaderElectionArgs, LeaderElectionFile};

/// `keelson controller-manager` flags, named as kube-controller-manager's. Each overrides the
/// same key of `--config`.
#[derive(Args, Debug, Default, Clone)]
pub struct ControllerManagerArgs {
    /// YAML config file (keys: kubeconfig, controllers, nodeMonitorGracePeriod,
    /// nodeMonitorPeriod, podEvictionTimeout, nodeEvictionRate, allocateNodeCIDRs,
    /// clusterCIDR, nodeCIDRMaskSize, serviceAccountPrivateKeyFile, rootCAFile,
    /// concurrentSyncs, terminatedPodGCThreshold, leaderElection).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then
    /// /var/lib/keelson/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Controllers to run: `*` for all, `name` to add, `-name` to leave one out
    /// (replicationcontroller, garbagecollector, endpoint, nodelifecycle, namespace,
    /// serviceaccount, serviceaccount-token, resourcequota, nodeipam, podgc).
    #[arg(long, value_delimiter = ',')]
    pub controllers: Option<Vec<String>>,
    /// How long a node may go without a heartbeat before it is marked Unknown (40s).
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_grace_period: Option<Duration>,
    /// How often node heartbeats are checked (5s).
    #[arg(long, value_parser = parse_duration)]
    pub node_monitor_period: Option<Duration>,
    /// How long a node stays unreachable before its pods are deleted (5m).
    #[arg(long, value_parser = parse_duration)]
    pub pod_eviction_timeout: Option<Duration>,
    /// Nodes per second whose pods may be evicted (0.1).
    #[arg(long)]
    pub node_eviction_rate: Option<f64>,
    /// Assign each node a podCIDR from --cluster-cidr (default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub allocate_node_cidrs: Option<bool>,
    /// The pod network, split into per-node podCIDRs (10.244.0.0/16).
    #[arg(long)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Prefix length of each node's podCIDR (24).
    #[arg(long)]
    pub node_cidr_mask_size: Option<u8>,
    /// PEM private key that signs service-account tokens (default: pki/sa.key beside the
    /// kubeconfig, as `keelson apiserver` writes it).
    #[arg(long)]
    pub service_account_private_key_file: Option<PathBuf>,
    /// CA bundle put in token Secrets as ca.crt (default: pki/ca.crt beside the kubeconfig).
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// Workers for the replication and endpoints controllers (5).
    #[arg(long)]
    pub concurrent_syncs: Option<usize>,
    /// Finished pods kept before the pod garbage collector deletes the oldest (12500; 0 keeps
    /// them all).
    #[arg(long)]
    pub terminated_pod_gc_threshold: Option<usize>,
    #[command(flatten)]
    pub leader: LeaderElectionArgs,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ControllerManagerFile {
    kubeconfig: Option<PathBuf>,
    controllers: Option<Vec<String>>,
    node_monitor_grace_period: Option<String>,
    node_monitor_period: Option<String>,
    pod_eviction_timeout: Option<String>,
    node_eviction_rate: Option<f64>,
    #[serde(rename = "allocateNodeCIDRs")]
    allocate_node_cidrs: Option<bool>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    #[serde(rename = "nodeCIDRMaskSize")]
    node_cidr_mask_size: Option<u8>,
    service_account_private_key_file: Option<PathBuf>,
    #[serde(rename = "rootCAFile")]
    root_ca_file: Option<PathBuf>,
    concurrent_syncs: Option<usize>,
    #[serde(rename = "terminatedPodGCThreshold")]
    terminated_pod_gc_threshold: Option<usize>,
    #[serde(default)]
    leader_election: LeaderElectionFile,
}

/// Everything the controller manager needs, resolved and checked.
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub config: Config,
    pub leader: Option<LeaderConfig>,
}

impl ControllerManagerArgs {
    /// Merges flags over the file and checks everything but the connection.
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file: ControllerManagerFile = load_yaml(self.config.as_deref())?;
        let base = base_dir(self.config.as_deref());
        let kubeconfig = kubeconfig(self.kubeconfig, file.kubeconfig, &base);
        let mut config = Config::default();
        if let Some(list) = self.controllers.or(file.controllers) {
            config.select_controllers(&list)?;
        }
        if let Some(d) = duration(
            self.node_monitor_grace_period,
            "nodeMonitorGracePeriod",
            file.node_monitor_grace_period,
        )? {
            config.node_monitor_grace_period = d;
        }
        if let Some(d) = duration(
            self.node_monitor_period,
            "nodeMonitorPeriod",
            file.node_monitor_period,
        )? {
            config.node_monitor_period = d;
        }
        if let Some(d) = duration(
            self.pod_eviction_timeout,
            "podEvictionTimeout",
            file.pod_eviction_timeout,
        )? {
            config.pod_eviction_timeout = d;
        }
        if let Some(r) = self.node_eviction_rate.or(file.node_eviction_rate) {
            config.node_eviction_rate = r;
        }
        let cidr = match (self.cluster_cidr, file.cluster_cidr) {
            (Some(c), _) => Some(c),
            (None, Some(s)) => Some(
                s.parse::<Ipv4Net>()
                    .map_err(|e| anyhow::anyhow!("clusterCIDR {s:?}: {e}"))?,
            ),
            (None, None) => None,
        };
        if let Some(c) = cidr {
            config.cluster_cidr = Some(c.trunc());
        }
        if !self
            .allocate_node_cidrs
            .or(file.allocate_node_cidrs)
            .unwrap_or(true)
        {
            config.controllers.remove("nodeipam");
        }
        if let Some(m) = self.node_cidr_mask_size.or(file.node_cidr_mask_size) {
            config.node_cidr_mask_size = m;
        }
        if let Some(n) = self.concurrent_syncs.or(file.concurrent_syncs) {
            if n == 0 {
                bail!("concurrentSyncs must be at least 1");
            }
            config.concurrent_syncs = n;
        }
        if let Some(n) = self
            .terminated_pod_gc_threshold
            .or(file.terminated_pod_gc_threshold)
        {
            config.terminated_pod_gc_threshold = n;
        }
        // Beside a kubeconfig that `keelson apiserver` wrote sits its PKI.
        let pki = kubeconfig.parent().unwrap_or(Path::new(".")).join("pki");
        let key_file = self
            .service_account_private_key_file
            .or(file.service_account_private_key_file.map(|p| base.join(p)));
        config.service_account_private_key =
            read_pem(key_file, &pki.join("sa.key")).context("service account private key")?;
        let ca_file = self
            .root_ca_file
            .or(file.root_ca_file.map(|p| base.join(p)));
        config.root_ca = read_pem(ca_file, &pki.join("ca.crt")).context("root CA file")?;
        if config.controllers.contains("serviceaccount-token")
            && config.service_account_private_key.is_none()
        {
            tracing::warn!(
                "no service account private key (--service-account-private-key-file): token Secrets will not be made"
            );
        }
        config.validate()?;
        let leader = self
            .leader
            .resolve(file.leader_election, "kube-controller-manager")?;
        if let Some(l) = &leader {
            config.instance = l.identity.clone();
        }
        Ok(Resolved {
            kubeconfig,
            config,
            leader,
        })
    }
}

/// The file named, which must exist; or the default, if it exists.
fn read_pem(named: Option<PathBuf>, default: &Path) -> anyhow::Result<Option<String>> {
    match named {
        Some(p) => std::fs::read_to_string(&p)
            .map(Some)
            .with_context(|| format!("read {}", p.display())),
        None if default.exists() => std::fs::read_to_string(default)
            .map(Some)
            .with_context(|| format!("read {}", default.display())),
        None => Ok(None),
    }
}

/// Connects and runs until `shutdown` turns true.
pub async fn run(resolved: Resolved, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let client = keelson_client::connect(&resolved.kubeconfig, "keelson-controller-manager")
        .await
        .context("connect to the API server")?;
    let leadership = match resolved.leader {
        Some(config) => Leadership::elect(client.clone(), config),
        None => Leadership::always(),
    };
    keelson_controllers::run(client, resolved.config, leadership, shutdown)
        .await
        .context("controller manager")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_and_flags_merge_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cm.yaml");
        std::fs::write(
            &p,
            "nodeMonitorGracePeriod: 4s\npodEvictionTimeout: 10s\nclusterCIDR: 10.9.0.0/16\nnodeCIDRMaskSize: 26\ncontrollers: ['*', '-resourcequota']\n",
        )
        .unwrap();
        let r = ControllerManagerArgs {
            config: Some(p.clone()),
            kubeconfig: Some(dir.path().join("kubeconfig.yaml")),
            pod_eviction_timeout: Some(Duration::from_secs(20)),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.config.node_monitor_grace_period, Duration::from_secs(4));
        assert_eq!(r.config.pod_eviction_timeout, Duration::from_secs(20));
        assert_eq!(r.config.cluster_cidr.unwrap().to_string(), "10.9.0.0/16");
        assert_eq!(r.config.node_cidr_mask_size, 26);
        assert!(!r.config.controllers.contains("resourcequota"));
        assert!(r.config.controllers.contains("endpoint"));
        assert_eq!(r.leader.unwrap().name, "kube-controller-manager");

        std::fs::write(&p, "nodeMonitorGracePeriods: 4s\n").unwrap();
        let err = format!(
            "{:#}",
            ControllerManagerArgs {
                config: Some(p),
                ..Default::default()
            }
            .resolve()
            .err()
            .unwrap()
        );
        assert!(err.contains("nodeMonitorGracePeriods"), "{err}");
    }

    #[test]
    fn a_missing_named_key_file_is_an_error() {
        let err = ControllerManagerArgs {
            service_account_private_key_file: Some("/nonexistent/sa.key".into()),
            ..Default::default()
        }
        .resolve()
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("/nonexistent/sa.key"),
            "{err:#}"
        );
    }
}
