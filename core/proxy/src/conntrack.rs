//! Flushing conntrack entries that would keep UDP flows on a path the rules no longer take.
//!
//! A UDP "connection" has no end the kernel can see: as long as a client keeps sending from
//! the same address and port, conntrack keeps its entry alive and every datagram follows the
//! NAT decided for the first one, even after the rules dropped that endpoint. Like
//! kube-proxy, the proxy deletes the entries of UDP endpoints that went away (kernel mode)
//! and of UDP service ports whose listener closed (userspace mode); TCP needs nothing, as a
//! new connection is a new entry and a gone endpoint resets the old ones. The deletions use
//! the `conntrack` tool (Debian package `conntrack`).

use std::net::Ipv4Addr;
use std::process::Command;

use crate::model::{Protocol, ServiceMap, ServicePort};

/// One `conntrack -D` filter: UDP entries originally sent to `dest` (an address, a port or
/// both), optionally only those NATed to `nat_to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stale {
    /// The original destination address; `None` for node ports (any local address).
    pub orig_dst: Option<Ipv4Addr>,
    /// The original destination port.
    pub orig_port: u16,
    /// The endpoint the entry was NATed to; `None` for every entry of the destination.
    pub nat_to: Option<Ipv4Addr>,
}

impl Stale {
    /// The `conntrack` arguments deleting these entries.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        if let Some(ip) = self.orig_dst {
            a.extend(["--orig-dst".into(), ip.to_string()]);
        }
        a.extend(["--orig-port-dst".into(), self.orig_port.to_string()]);
        if let Some(ip) = self.nat_to {
            a.extend(["--dst-nat".into(), ip.to_string()]);
        }
        a
    }
}

fn destinations(sp: &ServicePort) -> impl Iterator<Item = Ipv4Addr> + '_ {
    std::iter::once(sp.cluster_ip).chain(sp.external_ips.iter().copied())
}

/// Kernel mode: the entries of UDP endpoints that were in `old` and are not in `new`, for
/// the cluster and external IPs and the node port they were reached through.
pub fn stale_endpoints(old: &ServiceMap, new: &ServiceMap) -> Vec<Stale> {
    let mut out = Vec::new();
    for (name, was) in old {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let now = new.get(name);
        for ep in &was.endpoints {
            let kept = now.is_some_and(|n| {
                n.endpoints.iter().any(|e| e.ip == ep.ip)
                    && n.cluster_ip == was.cluster_ip
                    && n.port == was.port
            });
            if kept {
                continue;
            }
            for ip in destinations(was) {
                out.push(Stale {
                    orig_dst: Some(ip),
                    orig_port: was.port,
                    nat_to: Some(ep.ip),
                });
            }
            if let Some(np) = was.node_port {
                out.push(Stale {
                    orig_dst: None,
                    orig_port: np,
                    nat_to: Some(ep.ip),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Userspace mode: the entries redirected to the listeners of UDP service ports that were
/// served in `old` (they had endpoints) and are not in `new`; a listener opened again later
/// has another port, which those entries would miss.
pub fn stale_portals(old: &ServiceMap, new: &ServiceMap) -> Vec<Stale> {
    let served = |m: &ServiceMap, sp: &ServicePort| {
        m.get(&sp.name).is_some_and(|n| {
            !n.endpoints.is_empty() && n.cluster_ip == sp.cluster_ip && n.port == sp.port
        })
    };
    let mut out = Vec::new();
    for sp in old.values() {
        if sp.name.protocol != Protocol::Udp || !served(old, sp) || served(new, sp) {
            continue;
        }
        for ip in destinations(sp) {
            out.push(Stale {
                orig_dst: Some(ip),
                orig_port: sp.port,
                nat_to: None,
            });
        }
        if let Some(np) = sp.node_port {
            out.push(Stale {
                orig_dst: None,
                orig_port: np,
                nat_to: None,
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Deletes the entries `stale` names, in the node's network namespace or in `netns`.
/// `conntrack` exits with 1 when nothing matched, which is not an error.
pub fn flush(netns: Option<&str>, stale: &[Stale]) -> Result<(), crate::Error> {
    for s in stale {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "conntrack"]);
                c
            }
            None => Command::new("conntrack"),
        };
        let out = cmd
            .args(s.args())
            .output()
            .map_err(crate::Error::ConntrackMissing)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("0 flow entries") {
            return Err(crate::Error::Conntrack(format!(
                "conntrack {}: {}",
                s.args().join(" "),
                stderr.trim()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePortName};

    fn udp(eps: &[u8], node_port: Option<u16>) -> ServicePort {
        let name = ServicePortName {
            namespace: "kube-system".into(),
            name: "dns".into(),
            port: "dns".into(),
            protocol: Protocol::Udp,
        };
        ServicePort {
            name,
            cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
            port: 53,
            node_port,
            external_ips: vec![],
            affinity_timeout: None,
            endpoints: eps
                .iter()
                .map(|l| Endpoint {
                    ip: Ipv4Addr::new(10, 244, 0, *l),
                    port: 53,
                })
                .collect(),
        }
    }

    fn map(p: ServicePort) -> ServiceMap {
        [(p.name.clone(), p)].into_iter().collect()
    }

    #[test]
    fn removed_udp_endpoints_are_flushed_by_cluster_ip_and_node_port() {
        let stale = stale_endpoints(&map(udp(&[2, 3], Some(30053))), &map(udp(&[2], None)));
        assert_eq!(
            stale,
            [
                Stale {
                    orig_dst: None,
                    orig_port: 30053,
                    nat_to: Some(Ipv4Addr::new(10, 244, 0, 3)),
                },
                Stale {
                    orig_dst: Some(Ipv4Addr::new(10, 96, 0, 10)),
                    orig_port: 53,
                    nat_to: Some(Ipv4Addr::new(10, 244, 0, 3)),
                },
            ]
        );
        assert_eq!(
            stale[1].args().join(" "),
            "-D -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --dst-nat 10.244.0.3"
        );
        // A gone service counts as all its endpoints gone; TCP never needs a flush.
        assert_eq!(
            stale_endpoints(&map(udp(&[2], None)), &ServiceMap::new()).len(),
            1
        );
        let mut tcp = udp(&[2], None);
        tcp.name.protocol = Protocol::Tcp;
        assert!(stale_endpoints(&map(tcp), &ServiceMap::new()).is_empty());
    }

    #[test]
    fn closed_udp_listeners_are_flushed() {
        assert_eq!(
            stale_portals(&map(udp(&[2], None)), &map(udp(&[], None))),
            [Stale {
                orig_dst: Some(Ipv4Addr::new(10, 96, 0, 10)),
                orig_port: 53,
                nat_to: None,
            }]
        );
        assert!(stale_portals(&map(udp(&[2], None)), &map(udp(&[3], None))).is_empty());
    }
}
