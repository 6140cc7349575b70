//! A network backend that wraps a simple bridge backend and logs what it does: the shape of
//! the book's single-node docker0 network, written with the SDK.
//!
//! - On the local node's `node-added`: a bridge (`kbr0` by default) holding the first address
//!   of the node's IPv4 pod CIDR, up, with forwarding on.
//! - `attach-pod`: the next free address of the CIDR, a veth pair with one end in the pod
//!   (named as the request says, usually `eth0`) and the other on the bridge, a default route
//!   through the bridge's address.
//! - `detach-pod`: the host end is deleted (which removes the pair) and the address released.
//! - `restore-pod`: addresses of pods attached before a restart are marked used again.
//!
//! Every host operation is logged at info level, prefixed by the wrapped step. Options (JSON):
//! `{"bridge": "kbr0", "mtu": 1500}`.

use std::collections::BTreeMap;

use keelson_plugin_sdk::net::{self, LinkKind, LinkSpec, NetError, VethOptions};
use keelson_plugin_sdk::{
    AddressFamily, AttachRequest, AttachResult, AttachedPod, DetachRequest, ErrorKind, IpAddress,
    IpPrefix, Level, Netns, NetworkBackend, NodeNetworkInfo, PluginError, PodAddress, Route,
    export_network_backend, log, plugin_error,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default = "default_mtu")]
    mtu: u32,
}

fn default_bridge() -> String {
    "kbr0".into()
}

fn default_mtu() -> u32 {
    1500
}

/// The local node's IPv4 pod CIDR as a base address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    fn from_prefix(p: &IpPrefix) -> Option<Cidr> {
        let IpAddress::Ipv4((a, b, c, d)) = p.address else {
            return None;
        };
        if p.prefix_length > 30 {
            return None;
        }
        let mask = u32::MAX << (32 - p.prefix_length);
        Some(Cidr {
            base: u32::from_be_bytes([a, b, c, d]) & mask,
            prefix: p.prefix_length,
        })
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn address(&self, offset: u32) -> IpAddress {
        let [a, b, c, d] = (self.base + offset).to_be_bytes();
        IpAddress::Ipv4((a, b, c, d))
    }

    fn offset_of(&self, address: &IpAddress) -> Option<u32> {
        let IpAddress::Ipv4((a, b, c, d)) = *address else {
            return None;
        };
        let ip = u32::from_be_bytes([a, b, c, d]);
        (ip >= self.base && ip < self.base + self.size()).then(|| ip - self.base)
    }

    fn with_prefix(&self, address: IpAddress) -> IpPrefix {
        IpPrefix {
            address,
            prefix_length: self.prefix,
        }
    }
}

/// The backend: options, the local CIDR once known, and which addresses pods hold.
pub struct LoggingBridge {
    bridge: String,
    mtu: u32,
    cidr: Option<Cidr>,
    /// Address offset within the CIDR by sandbox id.
    allocated: BTreeMap<String, u32>,
}

fn step<T>(what: &str, r: Result<T, NetError>) -> Result<T, PluginError> {
    match &r {
        Ok(_) => log(Level::Info, &format!("{what}: ok")),
        Err(e) => log(Level::Warn, &format!("{what}: {e:?}")),
    }
    r.map_err(|e| {
        let mut pe = net::to_plugin_error(e);
        pe.message = format!("{what}: {}", pe.message);
        pe
    })
}

/// Treats "already there" as done, so every call can be repeated.
fn idempotent(r: Result<(), NetError>) -> Result<(), NetError> {
    match r {
        Err(NetError::Exists) => Ok(()),
        r => r,
    }
}

impl LoggingBridge {
    fn cidr(&self) -> Result<Cidr, PluginError> {
        self.cidr.ok_or_else(|| {
            plugin_error(
                ErrorKind::Unavailable,
                "the local node has no IPv4 pod CIDR yet",
            )
        })
    }

    fn host_veth(sandbox_id: &str) -> String {
        let short: String = sandbox_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(11)
            .collect();
        format!("veth{short}")
    }

    /// The offset of the next free pod address: .1 is the bridge, the last is broadcast.
    fn allocate(&mut self, sandbox_id: &str, cidr: Cidr) -> Result<u32, PluginError> {
        if let Some(&offset) = self.allocated.get(sandbox_id) {
            return Ok(offset);
        }
        let used: std::collections::BTreeSet<u32> = self.allocated.values().copied().collect();
        let offset = (2..cidr.size() - 1)
            .find(|o| !used.contains(o))
            .ok_or_else(|| plugin_error(ErrorKind::Unavailable, "the pod CIDR is full"))?;
        self.allocated.insert(sandbox_id.to_string(), offset);
        Ok(offset)
    }
}

impl NetworkBackend for LoggingBridge {
    const NAME: &'static str = "logging-bridge";

    fn configure(options: &str) -> Result<Self, PluginError> {
        let o: Options = serde_json::from_str(options)
            .map_err(|e| plugin_error(ErrorKind::InvalidConfig, e.to_string()))?;
        if o.bridge.is_empty() || o.bridge.len() > 15 {
            return Err(plugin_error(
                ErrorKind::InvalidConfig,
                "option \"bridge\" must be 1 to 15 characters",
            ));
        }
        if !(576..=65535).contains(&o.mtu) {
            return Err(plugin_error(
                ErrorKind::InvalidConfig,
                "option \"mtu\" must be 576 to 65535",
            ));
        }
        Ok(LoggingBridge {
            bridge: o.bridge,
            mtu: o.mtu,
            cidr: None,
            allocated: BTreeMap::new(),
        })
    }

    fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        if !node.is_local {
            log(
                Level::Info,
                &format!(
                    "node {} joined; a bridge network is node-local, nothing to do",
                    node.name
                ),
            );
            return Ok(());
        }
        let Some(cidr) = node.pod_cidrs.iter().find_map(Cidr::from_prefix) else {
            log(
                Level::Info,
                &format!("local node {} has no IPv4 pod CIDR yet", node.name),
            );
            return Ok(());
        };
        self.cidr = Some(cidr);
        let bridge = LinkSpec {
            name: self.bridge.clone(),
            kind: LinkKind::Bridge,
            netns: Netns::Host,
            mtu: Some(self.mtu),
            mac: None,
        };
        step(
            &format!("create bridge {}", self.bridge),
            idempotent(net::create_link(&bridge)),
        )?;
        let gateway = cidr.with_prefix(cidr.address(1));
        step(
            &format!("address bridge {}", self.bridge),
            idempotent(net::add_address(&Netns::Host, &self.bridge, gateway)),
        )?;
        step(
            &format!("set {} up", self.bridge),
            net::set_link_up(&Netns::Host, &self.bridge, true),
        )?;
        step(
            "enable IPv4 forwarding",
            net::set_forwarding(&Netns::Host, AddressFamily::Ipv4, None, true),
        )
    }

    fn restore_pod(&mut self, pod: &AttachedPod) -> Result<(), PluginError> {
        let cidr = self.cidr()?;
        for a in &pod.addresses {
            if let Some(offset) = cidr.offset_of(&a.address.address) {
                log(
                    Level::Info,
                    &format!(
                        "restore {}/{}: offset {offset}",
                        pod.pod_namespace, pod.pod_name
                    ),
                );
                self.allocated.insert(pod.sandbox_id.clone(), offset);
            }
        }
        Ok(())
    }

    fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError> {
        let cidr = self.cidr()?;
        let offset = self.allocate(&request.sandbox_id, cidr)?;
        let pod_ns = Netns::Pod(request.pod_uid.clone());
        let host_end = Self::host_veth(&request.sandbox_id);
        let who = format!("{}/{}", request.pod_namespace, request.pod_name);
        let veth = LinkSpec {
            name: host_end.clone(),
            kind: LinkKind::Veth(VethOptions {
                peer_name: request.interface_name.clone(),
                peer_netns: pod_ns.clone(),
            }),
            netns: Netns::Host,
            mtu: Some(self.mtu),
            mac: None,
        };
        step(
            &format!("{who}: create veth {host_end}"),
            idempotent(net::create_link(&veth)),
        )?;
        step(
            &format!("{who}: attach {host_end} to {}", self.bridge),
            net::set_link_master(&Netns::Host, &host_end, Some(&self.bridge)),
        )?;
        step(
            &format!("{who}: set {host_end} up"),
            net::set_link_up(&Netns::Host, &host_end, true),
        )?;
        let address = cidr.with_prefix(cidr.address(offset));
        step(
            &format!("{who}: address {}", request.interface_name),
            idempotent(net::add_address(&pod_ns, &request.interface_name, address)),
        )?;
        step(
            &format!("{who}: set {} up", request.interface_name),
            net::set_link_up(&pod_ns, &request.interface_name, true),
        )?;
        step(
            &format!("{who}: set lo up"),
            net::set_link_up(&pod_ns, "lo", true),
        )?;
        let gateway = cidr.address(1);
        let default = Route {
            dst: IpPrefix {
                address: IpAddress::Ipv4((0, 0, 0, 0)),
                prefix_length: 0,
            },
            gateway: Some(gateway),
            dev: Some(request.interface_name.clone()),
            onlink: false,
            table: None,
            src: None,
            metric: None,
        };
        step(
            &format!("{who}: default route"),
            net::replace_route(&pod_ns, &default),
        )?;
        Ok(AttachResult {
            addresses: vec![PodAddress {
                address,
                gateway: Some(gateway),
            }],
            routes: vec![default],
            mac: None,
            mtu: Some(self.mtu),
        })
    }

    fn detach_pod(&mut self, request: &DetachRequest) -> Result<(), PluginError> {
        let host_end = Self::host_veth(&request.sandbox_id);
        let who = format!("{}/{}", request.pod_namespace, request.pod_name);
        match net::delete_link(&Netns::Host, &host_end) {
            Ok(()) => log(Level::Info, &format!("{who}: delete veth {host_end}: ok")),
            Err(NetError::NotFound) => {
                log(Level::Info, &format!("{who}: veth {host_end} already gone"))
            }
            Err(e) => return step(&format!("{who}: delete veth {host_end}"), Err(e)),
        }
        if let Some(offset) = self.allocated.remove(&request.sandbox_id) {
            log(Level::Info, &format!("{who}: released offset {offset}"));
        }
        Ok(())
    }
}

export_network_backend!(LoggingBridge);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{attach_request, detach_request, network_node};
    use keelson_plugin_sdk::testing::NetworkHarness;

    use super::*;

    fn cidr(a: u8, b: u8, c: u8, prefix: u8) -> IpPrefix {
        IpPrefix {
            address: IpAddress::Ipv4((a, b, c, 0)),
            prefix_length: prefix,
        }
    }

    fn ready() -> NetworkHarness<LoggingBridge> {
        let mut h = NetworkHarness::<LoggingBridge>::new("{}").expect("configure");
        let mut local = network_node("n1", true);
        local.pod_cidrs = vec![cidr(10, 244, 1, 24)];
        h.node_added(&local).expect("node-added");
        h
    }

    #[test]
    fn the_local_node_gets_a_bridge_with_the_gateway_address() {
        let h = ready();
        let calls = h.net_calls();
        let names: Vec<&str> = calls.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "create-link",
                "add-address",
                "set-link-up",
                "set-forwarding"
            ]
        );
        let (spec,): (LinkSpec,) = calls[0].args().expect("args");
        assert_eq!(
            (spec.name.as_str(), spec.kind.clone()),
            ("kbr0", LinkKind::Bridge)
        );
        let (_, _, address): (Netns, String, IpPrefix) = calls[1].args().expect("args");
        assert_eq!(
            address,
            IpPrefix {
                address: IpAddress::Ipv4((10, 244, 1, 1)),
                prefix_length: 24
            }
        );
        assert!(h.logs().iter().all(|(l, _)| *l == Level::Info));
    }

    #[test]
    fn pods_get_consecutive_addresses_and_release_them() {
        let mut h = ready();
        let a = h
            .attach_pod(&attach_request("a", "uid-a"))
            .expect("attach a");
        let b = h
            .attach_pod(&attach_request("b", "uid-b"))
            .expect("attach b");
        assert_eq!(
            a.addresses[0].address.address,
            IpAddress::Ipv4((10, 244, 1, 2))
        );
        assert_eq!(
            b.addresses[0].address.address,
            IpAddress::Ipv4((10, 244, 1, 3))
        );
        assert_eq!(
            a.addresses[0].gateway,
            Some(IpAddress::Ipv4((10, 244, 1, 1)))
        );
        // Attaching again gives the same answer.
        assert_eq!(
            h.attach_pod(&attach_request("a", "uid-a")).expect("again"),
            a
        );

        h.detach_pod(&detach_request("a", "uid-a")).expect("detach");
        let c = h
            .attach_pod(&attach_request("c", "uid-c"))
            .expect("attach c");
        assert_eq!(
            c.addresses[0].address.address,
            IpAddress::Ipv4((10, 244, 1, 2))
        );
    }

    #[test]
    fn a_veth_that_is_already_gone_is_not_an_error() {
        let mut h = ready();
        h.respond("delete-link", &Err::<(), _>(NetError::NotFound))
            .expect("respond");
        h.detach_pod(&detach_request("x", "uid-x")).expect("detach");
    }

    #[test]
    fn host_failures_name_the_step() {
        let mut h = ready();
        h.respond(
            "set-link-master",
            &Err::<(), _>(NetError::Other("no such bridge".into())),
        )
        .expect("respond");
        let e = h
            .attach_pod(&attach_request("a", "uid-a"))
            .expect_err("must fail");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message.contains("attach vethsandboxuida to kbr0"),
            "{}",
            e.message
        );
    }

    #[test]
    fn restored_pods_keep_their_addresses() {
        let mut h = ready();
        let pod = AttachedPod {
            pod_namespace: "default".into(),
            pod_name: "old".into(),
            pod_uid: "uid-old".into(),
            sandbox_id: "sandbox-old".into(),
            interface_name: "eth0".into(),
            addresses: vec![PodAddress {
                address: IpPrefix {
                    address: IpAddress::Ipv4((10, 244, 1, 2)),
                    prefix_length: 24,
                },
                gateway: None,
            }],
        };
        h.restore_pod(&pod).expect("restore");
        let n = h
            .attach_pod(&attach_request("new", "uid-new"))
            .expect("attach");
        assert_eq!(
            n.addresses[0].address.address,
            IpAddress::Ipv4((10, 244, 1, 3))
        );
    }

    #[test]
    fn attach_before_a_cidr_is_unavailable() {
        let mut h = NetworkHarness::<LoggingBridge>::new(r#"{"bridge":"cbr0","mtu":1450}"#)
            .expect("configure");
        let e = h
            .attach_pod(&attach_request("a", "1"))
            .expect_err("no cidr");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(NetworkHarness::<LoggingBridge>::new(r#"{"mtu":10}"#).is_err());
    }
}
