//! `keelson server`, `keelson agent` and `keelson up`: the daemons' own code, composed.
//!
//! - the control plane ([`ControlPlane`]): the API server, the controller manager and the
//!   scheduler in one process (`keelson server`);
//! - a node ([`Node`]): containerd (the system's or a private one), the kubelet and the
//!   service proxy, joined to a control plane with a kubeconfig (`keelson agent` writes one
//!   from `--server`, `--token` and `--ca-file`);
//! - both in one process (`keelson up`), with the embedded store, a node token for agents and
//!   the images named with `--import` loaded before pods start.
//!
//! On SIGINT/SIGTERM each part stops as its own daemon does: the kubelet leaves pods'
//! containers running (and a private containerd's shims keep them), so the next start adopts
//! them with their data; `keelson down` removes them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Args;
use ipnet::Ipv4Net;
use tokio::sync::watch;

use crate::private_containerd::PrivateContainerd;
use crate::{config, controller_manager_cmd, kubelet_cmd, proxy_cmd, scheduler_cmd};

/// The system containerd's socket, used when it answers.
const SYSTEM_CONTAINERD: &str = "/run/containerd/containerd.sock";
/// The cluster's pod network unless `--cluster-cidr` says otherwise: each node gets a /24.
const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The user agents authenticate as with the node token `keelson server` writes.
const NODE_TOKEN_USER: &str = "keelson-node";
/// How long each part gets to stop before the process moves on.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `keelson server`: the API server's flags, plus the controller manager's and the
/// scheduler's config files.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    #[command(flatten)]
    pub apiserver: config::ApiserverArgs,
    /// The scheduler's YAML config file (see `keelson scheduler --help`); its kubeconfig
    /// defaults to the admin kubeconfig the API server writes.
    #[arg(long)]
    pub scheduler_config: Option<PathBuf>,
    /// A Kubernetes v1 Policy file for the scheduler.
    #[arg(long)]
    pub policy_config_file: Option<PathBuf>,
    /// The controller manager's YAML config file (see `keelson controller-manager --help`);
    /// its kubeconfig, service-account key and CA default to the API server's.
    #[arg(long)]
    pub controller_manager_config: Option<PathBuf>,
    /// The cluster's pod network: each node gets a /24 of it as its podCIDR (10.244.0.0/16).
    #[arg(long)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// The cluster DNS service's IP, which pods' resolv.conf names (default: the tenth address
    /// of the service range, 10.0.0.10).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// Where the cluster DNS serves, UDP and TCP (default: the node's address, port 53); the
    /// `kube-system/kube-dns` Service forwards port 53 of `--cluster-dns` to it.
    #[arg(long)]
    pub dns_listen: Option<std::net::SocketAddr>,
}

/// What a node runs besides the kubelet's defaults; shared by `keelson up` and `keelson agent`.
#[derive(Args, Debug, Default, Clone)]
pub struct NodeArgs {
    /// The node's name (default: the host name).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's InternalIP (default: the host's first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// containerd's socket (default: the system's, /run/containerd/containerd.sock, when it
    /// answers; else a private containerd under the data dir).
    #[arg(long)]
    pub containerd_address: Option<PathBuf>,
    /// Start a private containerd under the data dir even when the system's answers.
    #[arg(long)]
    pub private_containerd: bool,
    /// An OCI or `docker save` archive, or a directory of `*.tar` archives, imported into
    /// containerd before pods start (repeatable).
    #[arg(long = "import", value_name = "PATH")]
    pub import: Vec<PathBuf>,
    /// The pod network backend: `bridge` (built in, the default), `none`, or a plugin's path.
    #[arg(long)]
    pub network_plugin: Option<String>,
    /// The backend's options as JSON, such as `{"bridge":"kbr0"}`.
    #[arg(long)]
    pub network_plugin_config: Option<String>,
    /// The cluster's pod network (`keelson up`: the server's; `keelson agent`: its own flag).
    #[arg(skip)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// The cluster DNS service's IP (`keelson up`: the server's; `keelson agent`: its own flag).
    #[arg(skip)]
    pub cluster_dns: Option<IpAddr>,
    /// `nftables` (kernel rules, the default) or `userspace` (the book's proxy).
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// The kubelet server's port (10250; 0 picks a free one).
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// A registry pulled from over plain HTTP (`host:port`; repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// The proxy's nftables table (keelson-proxy).
    #[arg(long, hide = true)]
    pub proxy_nftables_table: Option<String>,
}

/// `keelson up`: the whole system in one process.
#[derive(Args, Debug, Default)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `keelson agent`: a node joining an existing control plane.
#[derive(Args, Debug, Default)]
pub struct AgentArgs {
    /// The API server's URL, such as https://10.0.0.5:6443.
    #[arg(long)]
    pub server: String,
    /// A bearer token the API server accepts: the node token `keelson server` writes to
    /// `<data-dir>/node-token`, or any other (static or service-account) token.
    #[arg(long, env = "KEELSON_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The cluster's CA certificate (the server's `<data-dir>/pki/ca.crt`), which the API
    /// server's certificate must chain to.
    #[arg(long)]
    pub ca_file: PathBuf,
    /// Where the agent keeps its kubeconfig, the kubelet's state and a private containerd
    /// (/var/lib/keelson-agent).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The cluster's pod network, as the server was given it (10.244.0.0/16): not
    /// masqueraded between nodes.
    #[arg(long)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// The cluster DNS service's IP that pods' resolv.conf names (10.0.0.10, the server's
    /// default).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// A running control plane: the API server serving, the controller manager and the
/// scheduler started against it.
pub struct ControlPlane {
    pub server: keelson_apiserver::RunningServer,
    pub data_dir: PathBuf,
    /// The node token agents join with, when this process made the token file.
    pub node_token: Option<String>,
    /// The cluster DNS service's IP.
    pub cluster_dns: IpAddr,
    stop: watch::Sender<bool>,
    dns: tokio::task::JoinHandle<anyhow::Result<()>>,
    scheduler: std::thread::JoinHandle<anyhow::Result<()>>,
    controller_manager: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ControlPlane {
    /// Starts the API server, then the controller manager (allocating each node a /24 of the
    /// cluster CIDR) and the scheduler.
    pub async fn start(args: ServerArgs) -> anyhow::Result<Self> {
        let cluster_cidr = cluster_cidr(args.cluster_cidr)?;
        // Check the controller manager's and the scheduler's config before a port is bound.
        let sched_args = scheduler_cmd::SchedulerArgs {
            config: args.scheduler_config,
            policy_config_file: args.policy_config_file,
            ..Default::default()
        };
        let mut cfg = args.apiserver.resolve()?;
        let data_dir = cfg.data_dir.clone();
        let cluster_dns = args
            .cluster_dns
            .unwrap_or_else(|| dns_ip(cfg.service_cluster_ip_range));
        let dns_resolved = crate::dns_cmd::DnsArgs {
            kubeconfig: Some(data_dir.join("kubeconfig.yaml")),
            listen: args.dns_listen,
            service_ip: Some(cluster_dns),
            ..Default::default()
        }
        .resolve()?;
        check_free(dns_resolved.listen)?;
        let kubeconfig = data_dir.join("kubeconfig.yaml");
        let mut resolved = sched_args.resolve()?;
        resolved.kubeconfig = kubeconfig.clone();
        let (host, scheduler) = scheduler_cmd::build(&resolved)?;
        let cm_args = controller_manager_cmd::ControllerManagerArgs {
            config: args.controller_manager_config,
            kubeconfig: Some(kubeconfig),
            allocate_node_cidrs: Some(true),
            cluster_cidr: Some(cluster_cidr),
            ..Default::default()
        };
        cm_args.clone().resolve()?;
        let node_token = if cfg.token_auth_file.is_none() {
            let (file, token) = node_token_file(&data_dir)?;
            cfg.token_auth_file = Some(file);
            Some(token)
        } else {
            None
        };
        let server = keelson_apiserver::start(cfg)
            .await
            .context("start the API server")?;
        resolved.kubeconfig = server.kubeconfig.clone();
        // Resolved again once the API server has written its kubeconfig and keys beside it.
        let cm_resolved = cm_args.resolve()?;
        // The scheduler runs Wasm and native policies synchronously; on its own thread and
        // runtime it never stalls the API server's request handling.
        let (stop, shutdown) = watch::channel(false);
        let scheduler = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || -> anyhow::Result<()> {
                let _host = host;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("start the scheduler's runtime")?;
                rt.block_on(scheduler_cmd::run(resolved, scheduler, shutdown))
            })
            .context("start the scheduler thread")?;
        let cm_shutdown = stop.subscribe();
        let controller_manager = tokio::spawn(async move {
            let r = controller_manager_cmd::run(cm_resolved, cm_shutdown).await;
            if let Err(e) = &r {
                // Said at once: the API server keeps serving, but nothing reconciles.
                eprintln!("keelson: controller manager stopped: {e:#}");
            }
            r
        });
        let dns_shutdown = stop.subscribe();
        let dns = tokio::spawn(async move {
            let r = crate::dns_cmd::run(dns_resolved, dns_shutdown).await;
            if let Err(e) = &r {
                eprintln!("keelson: cluster DNS stopped: {e:#}");
            }
            r
        });
        Ok(Self {
            server,
            data_dir,
            node_token,
            cluster_dns,
            stop,
            dns,
            scheduler,
            controller_manager,
        })
    }

    /// Stops the scheduler and the controller manager while the API server still serves
    /// (so that leases are released), then the API server.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let scheduler = self.scheduler;
        let joined = tokio::task::spawn_blocking(move || scheduler.join());
        match tokio::time::timeout(Duration::from_secs(5), joined).await {
            Ok(Ok(Ok(Err(e)))) => eprintln!("keelson: scheduler: {e:#}"),
            Ok(_) => {}
            Err(_) => eprintln!("keelson: the scheduler did not stop in time"),
        }
        if tokio::time::timeout(Duration::from_secs(5), self.controller_manager)
            .await
            .is_err()
        {
            eprintln!("keelson: the controller manager did not stop in time");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.dns)
            .await
            .is_err()
        {
            eprintln!("keelson: the cluster DNS did not stop in time");
        }
        self.server.shutdown().await;
    }
}

/// Fails, naming the flag, when the cluster DNS's address is taken (by a resolver already
/// on port 53, say), before anything starts.
fn check_free(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    if listen.port() == 0 {
        return Ok(());
    }
    let taken = |e: std::io::Error| {
        anyhow::anyhow!(
            "the cluster DNS cannot listen on {listen}: {e}; choose another address with --dns-listen"
        )
    };
    std::net::UdpSocket::bind(listen).map_err(taken)?;
    std::net::TcpListener::bind(listen).map_err(taken)?;
    Ok(())
}

/// The token file of a control plane started without `--token-auth-file`: `<data-dir>/
/// tokens.csv` with the node token of `<data-dir>/node-token`, both made on first start
/// (mode 0600) and kept afterwards.
fn node_token_file(data_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let token_path = data_dir.join("node-token");
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let bytes: [u8; 24] = rand::random();
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&token_path, &format!("{token}\n"))?;
            token
        }
    };
    let file = data_dir.join("tokens.csv");
    let line = format!("{token},{NODE_TOKEN_USER},{NODE_TOKEN_USER},\"system:nodes\"\n");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    if current != line {
        write_private(&file, &line)?;
    }
    Ok((file, token))
}

/// Writes `text` to `path` readable by root only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}

/// A running node: containerd, the kubelet and the service proxy.
pub struct Node {
    stop: watch::Sender<bool>,
    kubelet: tokio::task::JoinHandle<anyhow::Result<()>>,
    proxy: tokio::task::JoinHandle<anyhow::Result<()>>,
    containerd: Option<PrivateContainerd>,
}

/// Where a node's parts keep their state and how they reach the API server.
pub struct NodeSetup {
    pub kubeconfig: PathBuf,
    pub data_dir: PathBuf,
    /// The cluster DNS IP, when the node's args do not name one.
    pub default_cluster_dns: Option<IpAddr>,
}

impl Node {
    /// Connects to (or starts) containerd, imports the archives, then starts the kubelet and
    /// the proxy.
    pub async fn start(args: NodeArgs, setup: NodeSetup) -> anyhow::Result<Self> {
        let cluster_cidr = cluster_cidr(args.cluster_cidr)?;
        // The network options are checked before containerd is started for nothing.
        let network_plugin = args
            .network_plugin
            .clone()
            .unwrap_or_else(|| "bridge".into());
        let network_plugin_config = if network_plugin == "bridge" {
            Some(bridge_config(
                args.network_plugin_config.as_deref(),
                cluster_cidr,
            )?)
        } else {
            args.network_plugin_config.clone()
        };
        let (address, containerd) = containerd_for(&args, &setup.data_dir).await?;
        let address_str = address.display().to_string();
        let record = NodeRecord {
            containerd_address: address_str.clone(),
            private_containerd: containerd.is_some(),
            bridge: network_plugin_config
                .as_deref()
                .filter(|_| network_plugin == "bridge")
                .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                .map(|c| c["bridge"].as_str().unwrap_or(DEFAULT_BRIDGE).to_string()),
            proxy_table: args
                .proxy_nftables_table
                .clone()
                .unwrap_or_else(|| keelson_proxy::nft::Config::default().table),
        };
        record.save(&setup.data_dir)?;
        if !args.import.is_empty() {
            import_archives(&address_str, &args.import).await?;
        }
        let kubelet_args = kubelet_cmd::KubeletArgs {
            kubeconfig: Some(setup.kubeconfig.clone()),
            hostname_override: args.hostname_override.clone(),
            node_ip: args.node_ip,
            containerd_address: Some(address_str),
            root_dir: Some(setup.data_dir.join("kubelet")),
            network_plugin: Some(network_plugin),
            network_plugin_config,
            cluster_dns: args
                .cluster_dns
                .or(setup.default_cluster_dns)
                .map(|ip| vec![ip]),
            port: args.kubelet_port,
            insecure_registries: args.insecure_registries,
            ..Default::default()
        };
        let kubelet_resolved = kubelet_args.resolve()?;
        let proxy_resolved = proxy_cmd::ProxyArgs {
            kubeconfig: Some(setup.kubeconfig),
            proxy_mode: args.proxy_mode,
            cluster_cidr: Some(cluster_cidr),
            nftables_table: args.proxy_nftables_table,
            ..Default::default()
        }
        .resolve()?;
        let (stop, shutdown) = watch::channel(false);
        let kubelet = tokio::spawn(kubelet_cmd::run(kubelet_resolved, shutdown.clone()));
        let proxy = tokio::spawn(async move {
            let r = proxy_cmd::run(proxy_resolved, shutdown).await;
            if let Err(e) = &r {
                // Said at once: pods keep running, but Services do not reach them.
                eprintln!("keelson: service proxy stopped: {e:#}");
            }
            r
        });
        Ok(Self {
            stop,
            kubelet,
            proxy,
            containerd,
        })
    }

    /// Stops the proxy and the kubelet (pods keep running), then a private containerd (its
    /// shims keep the containers).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (what, task) in [("kubelet", self.kubelet), ("service proxy", self.proxy)] {
            match tokio::time::timeout(STOP_TIMEOUT, task).await {
                Ok(Ok(Err(e))) => eprintln!("keelson: {what}: {e:#}"),
                Ok(_) => {}
                Err(_) => eprintln!("keelson: the {what} did not stop in time"),
            }
        }
        if let Some(cd) = self.containerd {
            cd.stop().await;
        }
    }
}

/// containerd's socket: the flag's, else the system's when it answers (unless a private
/// one is asked for), else a private containerd's under `<data-dir>/containerd`.
async fn containerd_for(
    args: &NodeArgs,
    data_dir: &Path,
) -> anyhow::Result<(PathBuf, Option<PrivateContainerd>)> {
    if let Some(address) = &args.containerd_address {
        if args.private_containerd {
            bail!("--containerd-address and --private-containerd exclude each other");
        }
        return Ok((address.clone(), None));
    }
    if !args.private_containerd
        && tokio::net::UnixStream::connect(SYSTEM_CONTAINERD)
            .await
            .is_ok()
    {
        eprintln!("keelson: using the system's containerd at {SYSTEM_CONTAINERD}");
        return Ok((PathBuf::from(SYSTEM_CONTAINERD), None));
    }
    let dir = data_dir.join("containerd");
    let cd = PrivateContainerd::start(&dir)
        .await
        .context("start a private containerd")?;
    eprintln!(
        "keelson: started a private containerd at {}",
        cd.socket().display()
    );
    Ok((cd.socket().to_path_buf(), Some(cd)))
}

/// Imports each archive (a directory: each `*.tar` in it) into the kubelet's containerd
/// namespace.
async fn import_archives(address: &str, paths: &[PathBuf]) -> anyhow::Result<()> {
    let cd = keelson_kubelet::Containerd::connect(
        address,
        keelson_kubelet::containerd::DEFAULT_NAMESPACE,
    )
    .await
    .with_context(|| format!("connect to containerd at {address}"))?;
    let mut archives = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("read {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "tar"))
                .collect();
            found.sort();
            archives.extend(found);
        } else {
            archives.push(path.clone());
        }
    }
    for archive in archives {
        let imported = keelson_kubelet::images::import(&cd, &archive)
            .await
            .with_context(|| format!("import {}", archive.display()))?;
        for image in imported {
            for name in &image.names {
                eprintln!("keelson: imported {name} from {}", archive.display());
            }
        }
    }
    Ok(())
}

/// The cluster CIDR given, else the default.
fn cluster_cidr(given: Option<Ipv4Net>) -> anyhow::Result<Ipv4Net> {
    match given {
        Some(c) => Ok(c.trunc()),
        None => DEFAULT_CLUSTER_CIDR.parse().context("default cluster CIDR"),
    }
}

/// The bridge backend's name for its bridge when the config names none.
const DEFAULT_BRIDGE: &str = "keelson0";

/// The bridge backend's options: the given JSON object with `clusterCIDR` added when absent,
/// so that pod-to-pod traffic between nodes is not masqueraded.
fn bridge_config(given: Option<&str>, cluster_cidr: Ipv4Net) -> anyhow::Result<String> {
    let mut config: serde_json::Value = match given {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--network-plugin-config is not JSON: {e}"))?,
        _ => serde_json::json!({}),
    };
    let Some(object) = config.as_object_mut() else {
        bail!("--network-plugin-config must be a JSON object");
    };
    object
        .entry("clusterCIDR")
        .or_insert_with(|| cluster_cidr.to_string().into());
    Ok(config.to_string())
}

/// What `keelson down` needs to know about the node `keelson up` or `keelson agent` ran:
/// `<data-dir>/node.json`.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct NodeRecord {
    containerd_address: String,
    private_containerd: bool,
    /// The bridge backend's bridge, when pods are on it.
    bridge: Option<String>,
    proxy_table: String,
}

impl NodeRecord {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("node.json")
    }

    fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("create {}", data_dir.display()))?;
        let path = Self::path(data_dir);
        let text = serde_json::to_string_pretty(self).context("encode the node record")?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    }

    fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("read {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }
}

/// `keelson down`: removes what a node of `keelson up` or `keelson agent` left running.
#[derive(Args, Debug, Default)]
pub struct DownArgs {
    /// The data dir `keelson up` (/var/lib/keelson) or `keelson agent` ran with.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Removes the node's pods (their containers, their volumes' mounts; volume data stays under
/// the data dir), its
/// bridge and masquerade rule, the proxy's table, and stops a private containerd. The
/// cluster's state (the store) is kept: the next `keelson up` finds its objects and runs the
/// pods again.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/keelson"));
    let Some(record) = NodeRecord::load(&data_dir)? else {
        bail!(
            "{} has no node.json: no node of `keelson up` or `keelson agent` ran with this data dir",
            data_dir.display()
        );
    };
    let containerd = if record.private_containerd {
        Some(
            PrivateContainerd::start(&data_dir.join("containerd"))
                .await
                .context("start the private containerd to remove the pods")?,
        )
    } else {
        None
    };
    let address = containerd
        .as_ref()
        .map_or(record.containerd_address.clone(), |c| {
            c.socket().display().to_string()
        });
    let removed = remove_pods(&address, &data_dir).await;
    if let Some(cd) = containerd {
        cd.stop().await;
    }
    removed?;
    if let Some(bridge) = &record.bridge {
        remove_bridge(bridge)?;
    }
    keelson_proxy::Nft::default()
        .delete_table(&record.proxy_table)
        .context("remove the proxy's nftables table")?;
    // Volumes' tmpfs and bind mounts (secrets, memory emptyDirs); their directories stay.
    let pods = data_dir.join("kubelet").join("pods");
    keelson_kubelet::volumes::mounts::unmount_under(&pods)
        .with_context(|| format!("unmount the volumes under {}", pods.display()))?;
    let records = data_dir.join("kubelet").join("network");
    if records.exists() {
        std::fs::remove_dir_all(&records)
            .with_context(|| format!("remove {}", records.display()))?;
    }
    eprintln!(
        "keelson: down: pods, pod network and service rules removed; the cluster's state stays in {}",
        data_dir.display()
    );
    Ok(())
}

async fn remove_pods(address: &str, data_dir: &Path) -> anyhow::Result<()> {
    let cd = keelson_kubelet::Containerd::connect(
        address,
        keelson_kubelet::containerd::DEFAULT_NAMESPACE,
    )
    .await
    .with_context(|| format!("connect to containerd at {address}"))?;
    let runtime = keelson_kubelet::runtime::Runtime::new(cd, data_dir.join("kubelet").join("logs"))
        .await
        .context("container runtime")?;
    keelson_kubelet::pods::remove_all_pods(&runtime).await;
    let left = runtime
        .list_pod_containers()
        .await
        .context("list containers")?;
    if !left.is_empty() {
        bail!("{} pod containers could not be removed", left.len());
    }
    Ok(())
}

/// Deletes the bridge and the masquerade rule of the pod network on it.
fn remove_bridge(bridge: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", bridge])
        .output()
        .context("run ip")?;
    if !out.status.success() {
        // Gone already.
        return Ok(());
    }
    let addrs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let nets: Vec<ipnet::IpNet> = addrs
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)
                .parse()
                .ok()
        })
        .collect();
    for net in nets {
        keelson_kubelet::network::nft::clear_masquerade(net.trunc())
            .with_context(|| format!("remove the masquerade rule of {net}"))?;
    }
    let status = std::process::Command::new("ip")
        .args(["link", "del", bridge])
        .status()
        .context("run ip")?;
    if !status.success() {
        bail!("ip link del {bridge} failed");
    }
    Ok(())
}

/// The tenth address of the service range, which `keelson up` gives the cluster DNS.
fn dns_ip(range: Ipv4Net) -> IpAddr {
    let base = u32::from(range.network());
    IpAddr::V4((base + 10).into())
}

/// `keelson server`.
pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let cp = ControlPlane::start(args).await?;
    eprintln!(
        "keelson: API server ready at {}\nkeelson: controller manager, scheduler and cluster DNS started\nkeelson: kubeconfig written to {}\nkeelson: try: kubectl --kubeconfig {} get nodes",
        cp.server.url,
        cp.server.kubeconfig.display(),
        cp.server.kubeconfig.display()
    );
    print_join_hint(&cp);
    crate::wait_for_signal().await;
    eprintln!("keelson: shutting down");
    cp.stop().await;
    Ok(())
}

fn print_join_hint(cp: &ControlPlane) {
    if cp.node_token.is_some() {
        eprintln!(
            "keelson: nodes join with: keelson agent --server {} --token \"$(cat {})\" --ca-file {}",
            cp.server.url,
            cp.data_dir.join("node-token").display(),
            cp.data_dir.join("pki/ca.crt").display()
        );
    }
}

/// `keelson up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut node_args = args.node;
    node_args.cluster_cidr = args.server.cluster_cidr;
    let cp = ControlPlane::start(args.server).await?;
    let setup = NodeSetup {
        kubeconfig: cp.server.kubeconfig.clone(),
        data_dir: cp.data_dir.clone(),
        default_cluster_dns: Some(cp.cluster_dns),
    };
    let node = match Node::start(node_args, setup).await {
        Ok(node) => node,
        Err(e) => {
            cp.stop().await;
            return Err(e);
        }
    };
    eprintln!(
        "keelson: up: API server at {}, controller manager, scheduler, cluster DNS, kubelet and service proxy running\nkeelson: kubeconfig written to {kc}\nkeelson: try: export KUBECONFIG={kc}; kubectl get nodes",
        cp.server.url,
        kc = cp.server.kubeconfig.display(),
    );
    print_join_hint(&cp);
    crate::wait_for_signal().await;
    eprintln!("keelson: shutting down (pods keep running; `keelson down` removes them)");
    node.stop().await;
    cp.stop().await;
    Ok(())
}

/// `keelson agent`.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/keelson-agent"));
    let kubeconfig = write_agent_kubeconfig(&data_dir, &args.server, &args.token, &args.ca_file)?;
    let setup = NodeSetup {
        kubeconfig,
        data_dir,
        default_cluster_dns: Some(dns_ip(
            "10.0.0.0/24".parse().context("default service range")?,
        )),
    };
    let mut node_args = args.node;
    node_args.cluster_cidr = args.cluster_cidr;
    node_args.cluster_dns = args.cluster_dns;
    let node = Node::start(node_args, setup).await?;
    eprintln!(
        "keelson: agent: kubelet and service proxy running against {}",
        args.server
    );
    crate::wait_for_signal().await;
    eprintln!("keelson: shutting down (pods keep running)");
    node.stop().await;
    Ok(())
}

/// Writes `<data-dir>/kubeconfig.yaml` for the agent's kubelet and proxy: the server, the
/// CA's certificate inline and the bearer token.
fn write_agent_kubeconfig(
    data_dir: &Path,
    server: &str,
    token: &str,
    ca_file: &Path,
) -> anyhow::Result<PathBuf> {
    if !server.starts_with("https://") {
        bail!("--server {server:?}: use the API server's https:// URL");
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("--token must be one word (the server's <data-dir>/node-token)");
    }
    let ca = std::fs::read(ca_file).with_context(|| format!("read {}", ca_file.display()))?;
    if !String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE") {
        bail!("{} is not a PEM certificate", ca_file.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keelson\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: agent\n  user:\n    token: {token}\ncontexts:\n- name: keelson\n  context:\n    cluster: keelson\n    user: agent\ncurrent-context: keelson\n"
    );
    let path = data_dir.join("kubeconfig.yaml");
    write_private(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_node_token_is_made_once_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (file, token) = node_token_file(dir.path()).unwrap();
        assert_eq!(token.len(), 48);
        let (_, again) = node_token_file(dir.path()).unwrap();
        assert_eq!(token, again);
        let text = std::fs::read_to_string(&file).unwrap();
        let tokens = keelson_apiserver::auth::StaticTokens::parse("t", &text).unwrap();
        let user = tokens.authenticate(&token).unwrap();
        assert_eq!(user.name, NODE_TOKEN_USER);
        assert!(user.groups.iter().any(|g| g == "system:nodes"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("node-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_dns_address_is_the_tenth_of_the_range() {
        assert_eq!(
            dns_ip("10.0.0.0/24".parse().unwrap()).to_string(),
            "10.0.0.10"
        );
        assert_eq!(
            dns_ip("10.96.0.0/12".parse().unwrap()).to_string(),
            "10.96.0.10"
        );
    }

    #[test]
    fn agent_kubeconfig_checks_its_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let out = dir.path().join("agent");
        assert!(write_agent_kubeconfig(&out, "http://x:6443", "t", &ca).is_err());
        assert!(write_agent_kubeconfig(&out, "https://x:6443", "a b", &ca).is_err());
        let not_pem = dir.path().join("x");
        std::fs::write(&not_pem, "hello").unwrap();
        assert!(write_agent_kubeconfig(&out, "https://x:6443", "t", &not_pem).is_err());
        let kc = write_agent_kubeconfig(&out, "https://x:6443", "tok", &ca).unwrap();
        let text = std::fs::read_to_string(kc).unwrap();
        assert!(text.contains("server: https://x:6443"), "{text}");
        assert!(text.contains("token: tok"), "{text}");
    }
}
