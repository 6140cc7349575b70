//! Userspace mode, the book's proxy: a listener on the node per service port, which the
//! kernel's rules send the service's traffic to (`redirect`). A TCP listener copies every
//! connection to an endpoint chosen round robin, with ClientIP affinity when the service
//! asks for it; a dial that fails or times out (1, 2, 4, then 8 s) moves on to the next
//! endpoint. A UDP socket relays datagrams per client session through the same balancer
//! (see [`udp`]).
//!
//! The rules live in the same table as kernel mode's and reuse its skeleton: services
//! without endpoints are rejected the same way; the others are redirected to their
//! listener's port from the nat hooks (chain `portals`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::model::{Endpoint, Protocol, ServiceMap, ServicePort, ServicePortName};

pub mod udp;

pub use udp::DEFAULT_UDP_IDLE_TIMEOUT;

/// How long each dial may take, one per attempt, as the book's proxy tries them.
pub const DIAL_TIMEOUTS: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Round robin over a service port's endpoints, with optional ClientIP affinity.
#[derive(Debug, Default)]
pub struct Balancer {
    endpoints: Vec<Endpoint>,
    next: usize,
    /// The affinity timeout; `None` without affinity.
    affinity: Option<Duration>,
    /// Client IP -> (endpoint, last used).
    sticky: HashMap<IpAddr, (Endpoint, Instant)>,
}

impl Balancer {
    /// Replaces the endpoints and the affinity setting; clients pinned to endpoints that are
    /// gone are forgotten.
    pub fn update(&mut self, endpoints: Vec<Endpoint>, affinity: Option<Duration>) {
        self.sticky.retain(|_, (ep, _)| endpoints.contains(ep));
        if affinity.is_none() {
            self.sticky.clear();
        }
        if self.next >= endpoints.len() {
            self.next = 0;
        }
        self.endpoints = endpoints;
        self.affinity = affinity;
    }

    /// The endpoint for a new connection from `client`, `None` without endpoints. `skip`
    /// holds endpoints that already failed for this connection.
    pub fn pick(&mut self, client: IpAddr, skip: &[Endpoint], now: Instant) -> Option<Endpoint> {
        if let Some(ttl) = self.affinity
            && let Some((ep, used)) = self.sticky.get_mut(&client)
            && now.duration_since(*used) < ttl
            && !skip.contains(ep)
        {
            *used = now;
            return Some(*ep);
        }
        let n = self.endpoints.len();
        for _ in 0..n {
            let ep = self.endpoints[self.next % n];
            self.next = (self.next + 1) % n;
            if !skip.contains(&ep) {
                if self.affinity.is_some() {
                    self.sticky.insert(client, (ep, now));
                }
                return Some(ep);
            }
        }
        None
    }
}

/// One service port's listener.
struct Portal {
    port: u16,
    balancer: Arc<Mutex<Balancer>>,
    /// A UDP port's client sessions.
    sessions: Option<Arc<udp::Sessions>>,
    task: JoinHandle<()>,
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listeners of every TCP and UDP service port with endpoints.
pub struct Portals {
    portals: BTreeMap<ServicePortName, Portal>,
    udp_idle_timeout: Duration,
}

impl Default for Portals {
    fn default() -> Self {
        Portals::new(DEFAULT_UDP_IDLE_TIMEOUT)
    }
}

impl Portals {
    /// No listeners yet; UDP sessions end after `udp_idle_timeout` without a datagram.
    pub fn new(udp_idle_timeout: Duration) -> Portals {
        Portals {
            portals: BTreeMap::new(),
            udp_idle_timeout,
        }
    }

    /// The open sessions of a UDP service port (0 for other ports).
    pub fn udp_sessions(&self, name: &ServicePortName) -> usize {
        self.portals
            .get(name)
            .and_then(|p| p.sessions.as_ref())
            .map_or(0, |s| s.len())
    }

    /// Opens, updates and closes listeners to match `services`; returns the local port of
    /// each TCP and UDP service port served (SCTP is not proxied in this mode).
    pub async fn sync(
        &mut self,
        services: &ServiceMap,
    ) -> std::io::Result<BTreeMap<ServicePortName, u16>> {
        self.portals.retain(|name, _| {
            services
                .get(name)
                .is_some_and(|sp| !sp.endpoints.is_empty())
        });
        for sp in services.values() {
            if sp.name.protocol == Protocol::Sctp || sp.endpoints.is_empty() {
                continue;
            }
            let affinity = sp
                .affinity_timeout
                .map(|s| Duration::from_secs(u64::from(s)));
            if let Some(p) = self.portals.get(&sp.name) {
                if let Ok(mut b) = p.balancer.lock() {
                    b.update(sp.endpoints.clone(), affinity);
                }
                if let Some(sessions) = &p.sessions {
                    sessions.keep_endpoints(&sp.endpoints);
                }
                continue;
            }
            let balancer = Arc::new(Mutex::new(Balancer::default()));
            if let Ok(mut b) = balancer.lock() {
                b.update(sp.endpoints.clone(), affinity);
            }
            let name = sp.name.to_string();
            let (port, sessions, task) = if sp.name.protocol == Protocol::Udp {
                let socket = udp::bind().await?;
                let port = socket.local_addr()?.port();
                let sessions = Arc::new(udp::Sessions::default());
                let task = tokio::spawn(udp::serve(
                    socket,
                    balancer.clone(),
                    sessions.clone(),
                    self.udp_idle_timeout,
                    name,
                ));
                (port, Some(sessions), task)
            } else {
                let listener = TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).await?;
                let port = listener.local_addr()?.port();
                (
                    port,
                    None,
                    tokio::spawn(serve(listener, balancer.clone(), name)),
                )
            };
            self.portals.insert(
                sp.name.clone(),
                Portal {
                    port,
                    balancer,
                    sessions,
                    task,
                },
            );
        }
        Ok(self
            .portals
            .iter()
            .map(|(name, p)| (name.clone(), p.port))
            .collect())
    }
}

async fn serve(listener: TcpListener, balancer: Arc<Mutex<Balancer>>, service: String) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%service, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let balancer = balancer.clone();
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, peer, &balancer).await {
                tracing::debug!(%service, client = %peer, "connection ended: {e}");
            }
        });
    }
}

/// Dials endpoints in turn (with growing timeouts), then copies both ways.
async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    balancer: &Mutex<Balancer>,
) -> std::io::Result<()> {
    let mut failed: Vec<Endpoint> = Vec::new();
    for timeout in DIAL_TIMEOUTS {
        let pick = balancer
            .lock()
            .ok()
            .and_then(|mut b| b.pick(peer.ip(), &failed, Instant::now()));
        let Some(ep) = pick else { break };
        match tokio::time::timeout(timeout, TcpStream::connect((ep.ip, ep.port))).await {
            Ok(Ok(mut upstream)) => {
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
                return Ok(());
            }
            Ok(Err(e)) => tracing::debug!(endpoint = %ep, "dial failed: {e}"),
            Err(_) => tracing::debug!(endpoint = %ep, "dial timed out after {timeout:?}"),
        }
        failed.push(ep);
        if failed.len() >= 4 {
            break;
        }
    }
    Err(std::io::Error::other("no endpoint answered"))
}

/// The `portals` chain's rules: each served service port's cluster and external IPs
/// redirected to its listener.
pub fn portal_rules(services: &ServiceMap, ports: &BTreeMap<ServicePortName, u16>) -> Vec<String> {
    let mut rules = Vec::new();
    for (name, local) in ports {
        let Some(sp) = services.get(name) else {
            continue;
        };
        let proto = sp.name.protocol.as_str();
        for ip in destinations(sp) {
            rules.push(format!(
                "ip daddr {ip} {proto} dport {} redirect to :{local}",
                sp.port
            ));
        }
        if let Some(np) = sp.node_port {
            rules.push(format!(
                "fib daddr type local ip daddr != 127.0.0.0/8 {proto} dport {np} redirect to :{local}"
            ));
        }
    }
    rules
}

fn destinations(sp: &ServicePort) -> Vec<std::net::Ipv4Addr> {
    let mut d = vec![sp.cluster_ip];
    d.extend(sp.external_ips.iter().copied());
    d
}

/// The transaction replacing the `portals` chain (made, and hooked into `services`, when
/// `first`) and the no-endpoint sets.
pub fn transaction(
    table: &str,
    first: bool,
    rules: &[String],
    no_endpoints: &crate::nft::Ruleset,
) -> String {
    let mut out = String::new();
    if first {
        let empty = crate::nft::Ruleset::default();
        out.push_str(&crate::nft::transaction(table, None, &empty));
        let _ = writeln!(out, "add chain ip {table} portals");
        let _ = writeln!(out, "insert rule ip {table} services jump portals");
    }
    let _ = writeln!(out, "flush chain ip {table} portals");
    for rule in rules {
        let _ = writeln!(out, "add rule ip {table} portals {rule}");
    }
    for set in ["no-endpoint-services", "no-endpoint-nodeports"] {
        let _ = writeln!(out, "flush set ip {table} {set}");
    }
    for key in &no_endpoints.no_endpoint_services {
        let _ = writeln!(
            out,
            "add element ip {table} no-endpoint-services {{ {key} }}"
        );
    }
    for key in &no_endpoints.no_endpoint_nodeports {
        let _ = writeln!(
            out,
            "add element ip {table} no-endpoint-nodeports {{ {key} }}"
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ep(last: u8) -> Endpoint {
        Endpoint {
            ip: std::net::Ipv4Addr::new(10, 244, 0, last),
            port: 80,
        }
    }

    #[test]
    fn udp_ports_are_redirected_as_udp() {
        let name = ServicePortName {
            namespace: "kube-system".into(),
            name: "dns".into(),
            port: "dns".into(),
            protocol: Protocol::Udp,
        };
        let sp = ServicePort {
            name: name.clone(),
            cluster_ip: std::net::Ipv4Addr::new(10, 0, 0, 10),
            port: 53,
            node_port: Some(30053),
            external_ips: vec![],
            affinity_timeout: None,
            endpoints: vec![ep(1)],
        };
        let services: ServiceMap = [(name.clone(), sp)].into_iter().collect();
        let ports = [(name, 40000)].into_iter().collect();
        assert_eq!(
            portal_rules(&services, &ports),
            [
                "ip daddr 10.0.0.10 udp dport 53 redirect to :40000",
                "fib daddr type local ip daddr != 127.0.0.0/8 udp dport 30053 redirect to :40000",
            ]
        );
    }

    #[test]
    fn round_robin_takes_turns_and_skips_failures() {
        let mut b = Balancer::default();
        b.update(vec![ep(1), ep(2), ep(3)], None);
        let client: IpAddr = "10.0.0.9".parse().unwrap();
        let now = Instant::now();
        let picks: Vec<u8> = (0..6)
            .map(|_| b.pick(client, &[], now).unwrap().ip.octets()[3])
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        assert_eq!(b.pick(client, &[ep(1)], now), Some(ep(2)));
        assert_eq!(b.pick(client, &[ep(1), ep(2), ep(3)], now), None);
    }

    #[test]
    fn affinity_pins_a_client_until_it_expires_or_its_endpoint_goes() {
        let mut b = Balancer::default();
        b.update(vec![ep(1), ep(2)], Some(Duration::from_secs(10)));
        let (a, c): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        let first = b.pick(a, &[], now).unwrap();
        assert_eq!(
            b.pick(c, &[], now),
            Some(ep(2)),
            "another client takes the next turn"
        );
        for _ in 0..5 {
            assert_eq!(b.pick(a, &[], now), Some(first));
        }
        // Expired: a new turn.
        let later = now + Duration::from_secs(11);
        assert_eq!(b.pick(a, &[], later), Some(ep(1)));
        // Its endpoint gone: moved.
        b.update(vec![ep(2)], Some(Duration::from_secs(10)));
        assert_eq!(b.pick(a, &[], later), Some(ep(2)));
    }
}
