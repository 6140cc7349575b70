//! `keelson proxy`: flags and the YAML config file, then the kernel-mode proxier.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use ipnet::Ipv4Net;
use keelson_proxy::Nft;
use keelson_proxy::nft::Config;
use keelson_proxy::proxier::{Mode, Options};
use keelson_proxy::userspace::DEFAULT_UDP_IDLE_TIMEOUT;
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::{base_dir, duration, kubeconfig, load_yaml, parse_duration};

/// `keelson proxy` flags, named as kube-proxy's. Each overrides the same key of `--config`.
#[derive(Args, Debug, Default, Clone)]
pub struct ProxyArgs {
    /// YAML config file (keys: kubeconfig, mode, clusterCIDR, masqueradeAll, syncPeriod,
    /// nftablesTable, udpIdleTimeout).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then
    /// /var/lib/keelson/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How services are proxied: `nftables` (kernel rules, the default) or `userspace` (the
    /// book's proxy: a listener per service port copies connections to the endpoints).
    #[arg(long)]
    pub proxy_mode: Option<String>,
    /// The cluster's pod network: traffic to a cluster IP from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Masquerade all traffic to cluster IPs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub masquerade_all: Option<bool>,
    /// How often the rules are checked and rebuilt if they have gone (30s).
    #[arg(long, value_parser = parse_duration)]
    pub sync_period: Option<Duration>,
    /// The nftables table (family ip) holding the proxy's rules (keelson-proxy); two proxies
    /// on one node need different tables.
    #[arg(long)]
    pub nftables_table: Option<String>,
    /// Userspace mode: how long an idle UDP session is kept (250ms).
    #[arg(long, value_parser = parse_duration)]
    pub udp_timeout: Option<Duration>,
    /// Remove the proxy's rules and exit.
    #[arg(long)]
    pub cleanup: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProxyFile {
    kubeconfig: Option<PathBuf>,
    mode: Option<String>,
    #[serde(rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    masquerade_all: Option<bool>,
    sync_period: Option<String>,
    nftables_table: Option<String>,
    udp_idle_timeout: Option<String>,
}

/// Everything the proxy needs, resolved and checked.
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub mode: Mode,
    pub rules: Config,
    pub sync_period: Duration,
    pub options: Options,
    pub cleanup: bool,
}

impl ProxyArgs {
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file: ProxyFile = load_yaml(self.config.as_deref())?;
        let base = base_dir(self.config.as_deref());
        let mode = self
            .proxy_mode
            .or(file.mode)
            .unwrap_or_else(|| "nftables".into());
        let mode = match mode.as_str() {
            "nftables" | "" => Mode::Kernel,
            "userspace" => Mode::Userspace,
            other => bail!("proxy mode {other:?}: use \"nftables\" or \"userspace\""),
        };
        let cluster_cidr = match (self.cluster_cidr, file.cluster_cidr) {
            (Some(c), _) => Some(c),
            (None, Some(s)) => Some(
                s.parse::<Ipv4Net>()
                    .with_context(|| format!("clusterCIDR {s:?}"))?,
            ),
            (None, None) => None,
        };
        let sync_period = duration(self.sync_period, "syncPeriod", file.sync_period)?
            .unwrap_or(Duration::from_secs(30));
        let table = self
            .nftables_table
            .or(file.nftables_table)
            .unwrap_or_else(|| Config::default().table);
        let valid = table
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid || table.len() > 64 {
            bail!(
                "nftablesTable {table:?}: use letters, digits, '-' and '_', starting with a letter"
            );
        }
        if sync_period.is_zero() {
            bail!("syncPeriod must be positive");
        }
        let udp_idle_timeout = duration(self.udp_timeout, "udpIdleTimeout", file.udp_idle_timeout)?
            .unwrap_or(DEFAULT_UDP_IDLE_TIMEOUT);
        if udp_idle_timeout.is_zero() {
            bail!("udpIdleTimeout must be positive");
        }
        Ok(Resolved {
            kubeconfig: kubeconfig(self.kubeconfig, file.kubeconfig, &base),
            mode,
            rules: Config {
                cluster_cidr: cluster_cidr.map(|c| (c.network(), c.prefix_len())),
                masquerade_all: self.masquerade_all.or(file.masquerade_all).unwrap_or(false),
                table,
            },
            sync_period,
            options: Options {
                udp_idle_timeout,
                ..Options::default()
            },
            cleanup: self.cleanup,
        })
    }
}

/// Runs the proxy until `shutdown` turns true (or, with `--cleanup`, removes its rules).
pub async fn run(resolved: Resolved, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let nft = Nft::default();
    if resolved.cleanup {
        nft.delete_table(&resolved.rules.table)
            .context("remove the proxy's nftables table")?;
        return Ok(());
    }
    // Fails early, with the reason, on a node where nft cannot run or lacks nat support.
    nft.apply(&format!(
        "add table ip {t}\nadd chain ip {t} probe {{ type nat hook output priority -100 ; }}\ndelete chain ip {t} probe\n",
        t = resolved.rules.table
    ))
    .context("the proxy needs nftables with NAT support (run as root)")?;
    preflight(resolved.mode);
    let client = keelson_client::connect(&resolved.kubeconfig, "keelson-proxy")
        .await
        .context("connect to the API server")?;
    keelson_proxy::proxier::run_with(
        client,
        resolved.mode,
        nft,
        resolved.rules,
        resolved.sync_period,
        false,
        resolved.options,
        shutdown,
    )
    .await;
    Ok(())
}

/// Warns about what the node lacks for parts of the proxy's job, which the proxy can run
/// without.
fn preflight(mode: Mode) {
    let bridge_nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if mode == Mode::Kernel && bridge_nf.is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "net.bridge.bridge-nf-call-iptables is 0: replies between pods on one bridge skip the \
             proxy's NAT, so a pod reaching a service whose endpoint is on its own bridge (or is \
             itself) gets no answer; set it to 1 (sysctl -w net.bridge.bridge-nf-call-iptables=1)"
        );
    }
    let conntrack = std::process::Command::new("conntrack")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !conntrack.is_ok_and(|s| s.success()) {
        tracing::warn!(
            "conntrack (Debian package conntrack) is missing: UDP flows to an endpoint that goes \
             away keep going to it until their conntrack entries expire"
        );
    }
}
