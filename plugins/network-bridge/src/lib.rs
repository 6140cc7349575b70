//! Keelson's built-in `bridge` network backend: the flannel/docker0 shape of a pod network.
//!
//! Each node gets a Linux bridge holding the first address of the node's IPv4 pod CIDR
//! (`spec.podCIDRs`) as the pods' gateway; each pod gets a veth pair, one end in its namespace
//! with the lowest free address of the CIDR and a default route through the gateway, the other
//! end on the bridge, in hairpin mode so that a pod reaches itself through a service address.
//! Traffic from pods to destinations outside the cluster's pod network is masqueraded to the
//! node's address. Routes between nodes' pod CIDRs are not this backend's business: a single
//! node, or nodes on one L2 segment with routes set up by other means.
//!
//! Options (JSON, every key optional):
//!
//! ```json
//! {"bridge": "keelson0", "mtu": 1500, "clusterCIDR": "10.244.0.0/16",
//!  "masquerade": true, "hairpin": true}
//! ```
//!
//! The backend keeps no files: addresses are rebuilt from `restore-pod` after a restart, and
//! every step treats "already there" (or "already gone") as done, so any call can be repeated.
//!
//! The same [`Bridge`] runs linked into the kubelet ([`builtin`]), or built by the crate's
//! `component/` as a Wasm component or a native library.

mod cidr;
mod options;

use std::collections::BTreeMap;

use keelson_plugin_sdk::net::{self, LinkKind, LinkSpec, NetError, VethOptions};
use keelson_plugin_sdk::{
    AddressFamily, AttachRequest, AttachResult, AttachedPod, DetachRequest, ErrorKind, IpAddress,
    IpPrefix, Level, Netns, NetworkBackend, NodeNetworkInfo, PluginError, PodAddress, Route, log,
    plugin_error,
};

use crate::cidr::{Ipv4Cidr, ipv4, ipv4_bits};
use crate::options::Options;

/// The `bridge` network backend; see the crate docs for what it builds.
pub struct Bridge {
    options: Options,
    /// The local node's IPv4 pod CIDR, once the node has one.
    pod_cidr: Option<Ipv4Cidr>,
    /// The IPv4 address each pod sandbox holds, by sandbox id.
    allocated: BTreeMap<String, u32>,
}

/// The backend as a plugin linked into the daemon's binary, for
/// `PluginHost::load_network_builtin`.
///
/// ```
/// let plugin = keelson_network_bridge::builtin();
/// assert!(plugin.manifest.contains("\"name\":\"bridge\""));
/// ```
#[cfg(not(target_arch = "wasm32"))]
pub fn builtin() -> keelson_plugin_sdk::builtin::Builtin {
    keelson_plugin_sdk::builtin::network::<Bridge>()
}

/// The host end of a sandbox's veth pair: `veth` and 8 hex digits of a hash of the sandbox id,
/// so the name is stable across restarts, fits the kernel's 15 bytes, and does not depend on
/// how the runtime spells its ids.
pub fn host_veth_name(sandbox_id: &str) -> String {
    // FNV-1a: tiny, and the same on every target, which a std hasher does not promise.
    let hash = sandbox_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("veth{hash:08x}")
}

/// A host operation's failure as the call's error, naming the step.
fn step<T>(what: &str, r: Result<T, NetError>) -> Result<T, PluginError> {
    r.map_err(|e| {
        let mut pe = net::to_plugin_error(e);
        pe.message = format!("{what}: {}", pe.message);
        pe
    })
}

/// Treats "already there" as done.
fn exists_ok(r: Result<(), NetError>) -> Result<(), NetError> {
    match r {
        Err(NetError::Exists) => Ok(()),
        r => r,
    }
}

/// Treats "already gone" as done.
fn not_found_ok(r: Result<(), NetError>) -> Result<(), NetError> {
    match r {
        Err(NetError::NotFound) => Ok(()),
        r => r,
    }
}

fn default_route(gateway: u32, dev: &str) -> Route {
    Route {
        dst: IpPrefix {
            address: IpAddress::Ipv4((0, 0, 0, 0)),
            prefix_length: 0,
        },
        gateway: Some(ipv4(gateway)),
        dev: Some(dev.to_string()),
        onlink: false,
        table: None,
        src: None,
        metric: None,
    }
}

impl Bridge {
    fn pod_cidr(&self) -> Result<Ipv4Cidr, PluginError> {
        self.pod_cidr.ok_or_else(|| {
            plugin_error(
                ErrorKind::Unavailable,
                "the node has no IPv4 pod CIDR yet (spec.podCIDRs is empty); pods can be \
                 attached once one is assigned",
            )
        })
    }

    /// The gateway of `cidr`: its first usable address, held by the bridge.
    fn gateway(cidr: Ipv4Cidr) -> u32 {
        cidr.nth(1)
    }

    /// The address of `sandbox_id`: the one it already holds in `cidr`, or the lowest free one
    /// that is neither the network, the gateway nor the broadcast address.
    fn allocate(&mut self, sandbox_id: &str, cidr: Ipv4Cidr) -> Result<u32, PluginError> {
        if let Some(&ip) = self.allocated.get(sandbox_id) {
            if cidr.contains(ip) {
                return Ok(ip);
            }
            log(
                Level::Warn,
                &format!(
                    "sandbox {sandbox_id} held {} outside the pod CIDR {cidr}; giving it a new \
                     address",
                    std::net::Ipv4Addr::from(ip)
                ),
            );
        }
        let used: std::collections::BTreeSet<u32> = self.allocated.values().copied().collect();
        // Offsets 0 (network) and 1 (gateway) and the last (broadcast) are never given out.
        let last = cidr.size().saturating_sub(1);
        let free = (2..last)
            .filter_map(|offset| u32::try_from(offset).ok())
            .map(|offset| cidr.nth(offset))
            .find(|ip| !used.contains(ip));
        let Some(ip) = free else {
            return Err(plugin_error(
                ErrorKind::Unavailable,
                format!(
                    "no free address in the pod CIDR {cidr}: all {} pod addresses are in use",
                    last.saturating_sub(2)
                ),
            ));
        };
        self.allocated.insert(sandbox_id.to_string(), ip);
        Ok(ip)
    }

    /// Removes what an earlier pod CIDR left on the bridge: its gateway address and its
    /// masquerade rule. `previous` is the CIDR this instance configured, if any; addresses
    /// found on the bridge cover a CIDR configured before a restart.
    fn remove_stale(&self, cidr: Ipv4Cidr, previous: Option<Ipv4Cidr>) -> Result<(), PluginError> {
        let bridge = &self.options.bridge;
        let gateway = cidr.interface_address(Self::gateway(cidr));
        let on_bridge = match net::list_addresses(&Netns::Host, bridge) {
            Ok(addresses) => addresses,
            Err(NetError::NotFound) => Vec::new(),
            Err(e) => return step(&format!("list the addresses of {bridge}"), Err(e)),
        };
        let mut stale: Vec<Ipv4Cidr> = previous.into_iter().filter(|p| *p != cidr).collect();
        for address in on_bridge {
            if address == gateway || ipv4_bits(&address.address).is_none() {
                continue;
            }
            step(
                &format!("remove the stale address from {bridge}"),
                not_found_ok(net::del_address(&Netns::Host, bridge, address)),
            )?;
            if let Some(old) = Ipv4Cidr::from_prefix(&address)
                && old != cidr
                && !stale.contains(&old)
            {
                stale.push(old);
            }
        }
        for old in stale {
            log(
                Level::Info,
                &format!("the pod CIDR changed from {old} to {cidr}"),
            );
            step(
                &format!("clear the masquerade rule of {old}"),
                not_found_ok(net::clear_masquerade(old.to_prefix())),
            )?;
        }
        Ok(())
    }

    /// Builds the node side for `cidr`: bridge, gateway address, forwarding, masquerading.
    fn set_up_node(&mut self, cidr: Ipv4Cidr) -> Result<(), PluginError> {
        let bridge = self.options.bridge.clone();
        let spec = LinkSpec {
            name: bridge.clone(),
            kind: LinkKind::Bridge,
            netns: Netns::Host,
            mtu: Some(self.options.mtu),
            mac: None,
        };
        step(
            &format!("create bridge {bridge}"),
            exists_ok(net::create_link(&spec)),
        )?;
        self.remove_stale(cidr, self.pod_cidr)?;
        let gateway = cidr.interface_address(Self::gateway(cidr));
        step(
            &format!("add the gateway address to {bridge}"),
            exists_ok(net::add_address(&Netns::Host, &bridge, gateway)),
        )?;
        step(
            &format!("set {bridge} up"),
            net::set_link_up(&Netns::Host, &bridge, true),
        )?;
        step(
            "enable IPv4 forwarding",
            net::set_forwarding(&Netns::Host, AddressFamily::Ipv4, None, true),
        )?;
        if self.options.masquerade {
            let exempt = self.options.cluster_cidr.unwrap_or(cidr);
            step(
                &format!("masquerade traffic from {cidr}"),
                net::set_masquerade(cidr.to_prefix(), &[exempt.to_prefix()]),
            )?;
        } else {
            // A rule left by an earlier configuration with masquerading on.
            step(
                &format!("clear the masquerade rule of {cidr}"),
                not_found_ok(net::clear_masquerade(cidr.to_prefix())),
            )?;
        }
        if self.pod_cidr != Some(cidr) {
            log(
                Level::Info,
                &format!(
                    "bridge {bridge} ready for pod CIDR {cidr} (gateway {}, masquerade {}, \
                     hairpin {})",
                    std::net::Ipv4Addr::from(Self::gateway(cidr)),
                    self.options.masquerade,
                    self.options.hairpin
                ),
            );
        }
        self.pod_cidr = Some(cidr);
        Ok(())
    }
}

impl NetworkBackend for Bridge {
    const NAME: &'static str = "bridge";

    fn configure(options: &str) -> Result<Self, PluginError> {
        Ok(Bridge {
            options: Options::parse(options)?,
            pod_cidr: None,
            allocated: BTreeMap::new(),
        })
    }

    fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        if !node.is_local {
            // Other nodes' pod CIDRs are reached by routes this backend does not manage.
            return Ok(());
        }
        let Some(prefix) = node
            .pod_cidrs
            .iter()
            .find(|p| matches!(p.address, IpAddress::Ipv4(_)))
        else {
            log(
                Level::Info,
                &format!(
                    "node {} has no IPv4 pod CIDR yet; waiting for spec.podCIDRs",
                    node.name
                ),
            );
            return Ok(());
        };
        let Some(cidr) = Ipv4Cidr::from_prefix(prefix).filter(|c| c.prefix_length() <= 30) else {
            return Err(plugin_error(
                ErrorKind::InvalidInput,
                format!(
                    "the pod CIDR of node {} is too small: a /{} leaves no address for pods",
                    node.name, prefix.prefix_length
                ),
            ));
        };
        self.set_up_node(cidr)
    }

    fn restore_pod(&mut self, pod: &AttachedPod) -> Result<(), PluginError> {
        // Kept even when outside the current CIDR (or before one is known): the address is in
        // use until the pod is detached.
        if let Some(ip) = pod
            .addresses
            .iter()
            .find_map(|a| ipv4_bits(&a.address.address))
        {
            self.allocated.insert(pod.sandbox_id.clone(), ip);
        }
        Ok(())
    }

    fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError> {
        let cidr = self.pod_cidr()?;
        let ip = self.allocate(&request.sandbox_id, cidr)?;
        let bridge = self.options.bridge.clone();
        let mtu = self.options.mtu;
        let pod_ns = Netns::Pod(request.pod_uid.clone());
        let ifname = request.interface_name.as_str();
        let host_end = host_veth_name(&request.sandbox_id);
        let veth = LinkSpec {
            name: host_end.clone(),
            kind: LinkKind::Veth(VethOptions {
                peer_name: ifname.to_string(),
                peer_netns: pod_ns.clone(),
            }),
            netns: Netns::Host,
            mtu: Some(mtu),
            mac: None,
        };
        step(
            &format!("create veth {host_end}"),
            exists_ok(net::create_link(&veth)),
        )?;
        step(
            &format!("set the MTU of {ifname}"),
            net::set_link_mtu(&pod_ns, ifname, mtu),
        )?;
        step(
            &format!("attach {host_end} to {bridge}"),
            net::set_link_master(&Netns::Host, &host_end, Some(&bridge)),
        )?;
        if self.options.hairpin {
            // Lets the bridge send a frame back out of the port it came in on: the pod's own
            // packets to a service address that the host rewrites to the pod itself. A host
            // without the operation still gets a working pod, one that cannot reach itself
            // through a service.
            match net::set_link_hairpin(&Netns::Host, &host_end, true) {
                Err(NetError::Unsupported(why)) => log(
                    Level::Warn,
                    &format!("hairpin mode not set on {host_end}: unsupported: {why}"),
                ),
                r => step(&format!("set hairpin mode on {host_end}"), r)?,
            }
        }
        step(
            &format!("set {host_end} up"),
            net::set_link_up(&Netns::Host, &host_end, true),
        )?;
        let address = cidr.interface_address(ip);
        step(
            &format!("add the pod address to {ifname}"),
            exists_ok(net::add_address(&pod_ns, ifname, address)),
        )?;
        step(
            &format!("set {ifname} up"),
            net::set_link_up(&pod_ns, ifname, true),
        )?;
        step("set lo up", net::set_link_up(&pod_ns, "lo", true))?;
        let gateway = Self::gateway(cidr);
        let route = default_route(gateway, ifname);
        step("add the default route", net::replace_route(&pod_ns, &route))?;
        let mac = match net::get_link(&pod_ns, ifname) {
            Ok(link) => link.mac,
            Err(e) => {
                log(
                    Level::Warn,
                    &format!("could not read back {ifname} for its MAC: {e:?}"),
                );
                None
            }
        };
        log(
            Level::Debug,
            &format!(
                "attached {}/{} ({}) as {address:?} on {host_end}",
                request.pod_namespace, request.pod_name, request.sandbox_id
            ),
        );
        Ok(AttachResult {
            addresses: vec![PodAddress {
                address,
                gateway: Some(ipv4(gateway)),
            }],
            routes: vec![route],
            mac,
            mtu: Some(mtu),
        })
    }

    fn detach_pod(&mut self, request: &DetachRequest) -> Result<(), PluginError> {
        let host_end = host_veth_name(&request.sandbox_id);
        // Deleting the host end deletes the pair; a namespace already gone took it along.
        step(
            &format!("delete veth {host_end}"),
            not_found_ok(net::delete_link(&Netns::Host, &host_end)),
        )?;
        self.allocated.remove(&request.sandbox_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
