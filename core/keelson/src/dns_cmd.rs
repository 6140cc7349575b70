//! `keelson dns`: flags, then the cluster DNS server, its watch of Services and Endpoints,
//! and the `kube-dns` Service that gives it a cluster IP.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_dns::Name;
use keelson_dns::forward::{Forwarder, nameservers};
use keelson_dns::server::{DnsServer, Handler};
use keelson_dns::zone::{DEFAULT_TTL, Zone};
use keelson_kubelet::node::HostInfo;
use tokio::sync::watch;

use crate::config::kubeconfig;

/// `keelson dns` flags, named after kube-dns's where it has them.
#[derive(Args, Debug, Default, Clone)]
pub struct DnsArgs {
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then
    /// /var/lib/keelson/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where to serve, UDP and TCP (default: the node's address, port 53).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The cluster's DNS domain (cluster.local).
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// A resolver for names outside the cluster domain, `IP[:PORT]` (repeatable; default: the
    /// nameservers of --resolv-conf).
    #[arg(long = "upstream")]
    pub upstream: Vec<String>,
    /// The file whose nameservers are the default upstreams (/etc/resolv.conf).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// The DNS service's cluster IP, such as 10.0.0.10: registered as the `kube-dns` Service
    /// in `kube-system`, and the address the kubelet's --cluster-dns should name.
    #[arg(long)]
    pub service_ip: Option<IpAddr>,
    /// Create or update the `kube-dns` Service and Endpoints (default: true when --service-ip
    /// is given).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub register: Option<bool>,
    /// Seconds that answers may be cached (30, as kube-dns).
    #[arg(long)]
    pub ttl: Option<u32>,
}

/// Everything the DNS server needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub listen: SocketAddr,
    pub domain: Name,
    pub upstreams: Vec<SocketAddr>,
    /// The cluster IP to register, if registering.
    pub register: Option<IpAddr>,
    pub ttl: u32,
}

/// `IP` or `IP:PORT` (`[v6]:PORT`), port 53 when left out.
fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = s
        .parse()
        .with_context(|| format!("--upstream {s:?}: use IP or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

/// The node's address: where the DNS server listens by default.
fn node_ip() -> anyhow::Result<IpAddr> {
    HostInfo::gather()
        .ip
        .context("cannot find the node's address: pass --listen")
}

impl DnsArgs {
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let domain_text = self
            .cluster_domain
            .unwrap_or_else(|| "cluster.local".into());
        let domain_text = domain_text.trim_end_matches('.');
        let valid = !domain_text.is_empty()
            && domain_text.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            bail!("--cluster-domain {domain_text:?}: use a DNS name such as cluster.local");
        }
        let mut domain = Name::from_ascii(domain_text)
            .with_context(|| format!("--cluster-domain {domain_text:?}"))?
            .to_lowercase();
        domain.set_fqdn(true);
        let listen = match self.listen {
            Some(l) => l,
            None => SocketAddr::new(node_ip()?, 53),
        };
        let mut upstreams = self
            .upstream
            .iter()
            .map(|s| parse_upstream(s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if upstreams.is_empty() {
            let path = self
                .resolv_conf
                .unwrap_or_else(|| PathBuf::from("/etc/resolv.conf"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {} for the upstream resolvers", path.display()))?;
            upstreams = nameservers(&text);
        }
        // Never forward to ourselves: a node whose resolv.conf names the DNS service loops.
        upstreams.retain(|u| *u != listen && Some(u.ip()) != self.service_ip);
        let register = match (self.register, self.service_ip) {
            (Some(true), None) => bail!("--register needs --service-ip"),
            (Some(false), _) => None,
            (_, ip) => ip,
        };
        if register.is_some() && listen.port() == 0 {
            bail!("--register needs a fixed --listen port");
        }
        if register.is_some() && listen.ip().is_loopback() {
            bail!(
                "--register: the kube-dns Endpoints cannot name a loopback address (Kubernetes \
                 refuses them); listen on the node's address or 0.0.0.0, or pass --register=false"
            );
        }
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        Ok(Resolved {
            kubeconfig: kubeconfig(self.kubeconfig, None, std::path::Path::new(".")),
            listen,
            domain,
            upstreams,
            register,
            ttl,
        })
    }
}

/// How long a failed registration waits before the next try.
const REGISTER_RETRY: Duration = Duration::from_secs(2);

/// Serves until `shutdown` turns true.
pub async fn run(resolved: Resolved, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    if resolved.upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the cluster domain fail");
    }
    let (zone_tx, zone_rx) = watch::channel::<Option<Arc<Zone>>>(None);
    let handler = Handler::new(
        &resolved.domain,
        zone_rx,
        Forwarder::new(resolved.upstreams.clone()),
    );
    let server = DnsServer::bind(resolved.listen, handler)
        .await
        .context("start the DNS server")?;
    let listen = server.local_addr();
    let client = keelson_client::connect(&resolved.kubeconfig, "keelson-dns")
        .await
        .context("connect to the API server")?;
    tracing::info!(
        %listen,
        domain = %resolved.domain,
        upstreams = ?resolved.upstreams,
        "cluster DNS serving"
    );
    let source = tokio::spawn(keelson_dns::source::run(
        client.clone(),
        resolved.domain.clone(),
        resolved.ttl,
        zone_tx,
        shutdown.clone(),
    ));
    let registration = resolved.register.map(|service_ip| {
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            // The Endpoints need an address the proxy can reach: a wildcard listen address
            // stands for the node's.
            let target = if listen.ip().is_unspecified() {
                match node_ip() {
                    Ok(ip) => SocketAddr::new(ip, listen.port()),
                    Err(e) => {
                        tracing::error!("cannot register the kube-dns Service: {e:#}");
                        return;
                    }
                }
            } else {
                listen
            };
            loop {
                match keelson_dns::register::register(&client, &service_ip.to_string(), target)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(%service_ip, %target, "kube-dns Service registered");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot register the kube-dns Service; retrying: {e}")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(REGISTER_RETRY) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        })
    });
    server.run(shutdown).await;
    if let Some(r) = registration {
        r.abort();
    }
    let _ = source.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flags_resolve() {
        let r = DnsArgs {
            listen: Some("10.1.1.9:5353".parse().unwrap()),
            upstream: vec![
                "10.1.1.1".into(),
                "10.1.1.2:5300".into(),
                "10.0.0.10".into(),
            ],
            service_ip: Some("10.0.0.10".parse().unwrap()),
            cluster_domain: Some("Example.Test.".into()),
            ..DnsArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.domain.to_string(), "example.test.");
        // The service's own IP is never an upstream.
        assert_eq!(
            r.upstreams,
            [
                "10.1.1.1:53".parse::<SocketAddr>().unwrap(),
                "10.1.1.2:5300".parse().unwrap()
            ]
        );
        assert_eq!(r.register, Some("10.0.0.10".parse().unwrap()));
        assert_eq!(r.ttl, 30);
        let no = DnsArgs {
            listen: Some("127.0.0.1:5353".parse().unwrap()),
            upstream: vec!["10.1.1.1".into()],
            service_ip: Some("10.0.0.10".parse().unwrap()),
            register: Some(false),
            ..DnsArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(no.register, None);
        let bad = DnsArgs {
            listen: Some("127.0.0.1:5353".parse().unwrap()),
            upstream: vec!["nope".into()],
            ..DnsArgs::default()
        };
        assert!(bad.resolve().is_err());
        let bad = DnsArgs {
            listen: Some("127.0.0.1:5353".parse().unwrap()),
            upstream: vec!["10.1.1.1".into()],
            register: Some(true),
            ..DnsArgs::default()
        };
        assert!(bad.resolve().is_err());
        // Kubernetes refuses loopback endpoints: registering needs another address.
        let bad = DnsArgs {
            listen: Some("127.0.0.1:5353".parse().unwrap()),
            upstream: vec!["10.1.1.1".into()],
            service_ip: Some("10.0.0.10".parse().unwrap()),
            ..DnsArgs::default()
        };
        assert!(bad.resolve().is_err());
    }
}
