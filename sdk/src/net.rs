//! Host network operations for network backends: the only way a backend touches the node.
//!
//! Each function is one typed operation (links, addresses, routes, neighbours, FDB entries,
//! forwarding, masquerading, bridge-port hairpin mode, Open vSwitch, the node's own CIDRs and
//! addresses). There are no files and no sockets. Operations outside what the operator granted
//! fail with [`NetError::PermissionDenied`].

pub use crate::bindings::keelson::plugin::host_net::{
    FdbEntry, LinkInfo, LinkKind, LinkSpec, Neighbour, NetError, OvsDatapath, OvsPortType,
    VethOptions, VxlanOptions,
};
use crate::{
    AddressFamily, ErrorKind, IpAddress, IpPrefix, Netns, NodeAddress, PluginError, Route,
};

/// Turns a [`NetError`] into a [`PluginError`] for returning from a backend call:
/// `NotFound` becomes `not-found`, `PermissionDenied` and `InvalidArgument` become
/// `invalid-input`, the rest `unavailable` (the host retries).
///
/// ```
/// use keelson_plugin_sdk::{net, ErrorKind};
/// assert_eq!(net::to_plugin_error(net::NetError::NotFound).kind, ErrorKind::NotFound);
/// ```
pub fn to_plugin_error(e: NetError) -> PluginError {
    let (kind, message) = match e {
        NetError::NotFound => (ErrorKind::NotFound, "not found".to_string()),
        NetError::Exists => (ErrorKind::Internal, "already exists".to_string()),
        NetError::PermissionDenied => (ErrorKind::InvalidInput, "permission denied".to_string()),
        NetError::InvalidArgument(m) => (ErrorKind::InvalidInput, m),
        NetError::Unsupported(m) => (ErrorKind::InvalidInput, format!("unsupported: {m}")),
        NetError::Other(m) => (ErrorKind::Unavailable, m),
    };
    PluginError { kind, message }
}

/// Creates a link (bridge, veth pair, vxlan, dummy) as `spec` describes.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let spec = LinkSpec { name: "kbr0".into(), kind: LinkKind::Bridge, netns: Netns::Host, mtu: Some(1500), mac: None };
/// match create_link(&spec) { Ok(()) | Err(NetError::Exists) => {}, Err(e) => return Err(e) }
/// # Ok(()) }
/// ```
pub fn create_link(spec: &LinkSpec) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::create_link(spec)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("create-link") },
            &(spec,),
        )
    }
}

/// Deletes link `name` in `netns`; `NotFound` if it is absent.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// match delete_link(&Netns::Host, "veth1234") { Ok(()) | Err(NetError::NotFound) => {}, Err(e) => return Err(e) }
/// # Ok(()) }
/// ```
pub fn delete_link(netns: &Netns, name: &str) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::delete_link(netns, name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("delete-link") },
            &(netns, name),
        )
    }
}

/// Reads link `name` in `netns`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let bridge = get_link(&Netns::Host, "kbr0")?;
/// let _ = (bridge.index, bridge.up);
/// # Ok(()) }
/// ```
pub fn get_link(netns: &Netns, name: &str) -> Result<LinkInfo, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::get_link(netns, name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("get-link") },
            &(netns, name),
        )
    }
}

/// Lists the links in `netns`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let names: Vec<String> = list_links(&Netns::Host)?.into_iter().map(|l| l.name).collect();
/// let _ = names;
/// # Ok(()) }
/// ```
pub fn list_links(netns: &Netns) -> Result<Vec<LinkInfo>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::list_links(netns)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("list-links") },
            &(netns,),
        )
    }
}

/// Moves link `name` from `source` to `target`, renaming it to `new_name` if given.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// move_link("tmp-eth0", &Netns::Host, &Netns::Pod("uid-1".into()), Some("eth0"))?;
/// # Ok(()) }
/// ```
pub fn move_link(
    name: &str,
    source: &Netns,
    target: &Netns,
    new_name: Option<&str>,
) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::move_link(name, source, target, new_name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("move-link") },
            &(name, source, target, new_name),
        )
    }
}

/// Sets link `name` up or down.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// set_link_up(&Netns::Pod("uid-1".into()), "lo", true)?;
/// # Ok(()) }
/// ```
pub fn set_link_up(netns: &Netns, name: &str, up: bool) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_link_up(netns, name, up)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-link-up") },
            &(netns, name, up),
        )
    }
}

/// Sets the MTU of link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// set_link_mtu(&Netns::Host, "kbr0", 1450)?;
/// # Ok(()) }
/// ```
pub fn set_link_mtu(netns: &Netns, name: &str, mtu: u32) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_link_mtu(netns, name, mtu)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-link-mtu") },
            &(netns, name, mtu),
        )
    }
}

/// Enslaves link `name` to bridge `master`, or frees it with `None`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// set_link_master(&Netns::Host, "veth1234", Some("kbr0"))?;
/// # Ok(()) }
/// ```
pub fn set_link_master(netns: &Netns, name: &str, master: Option<&str>) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_link_master(netns, name, master)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-link-master") },
            &(netns, name, master),
        )
    }
}

/// Adds `address` to link `name`; `Exists` if it is already there.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let gw = IpPrefix { address: IpAddress::Ipv4((10, 244, 1, 1)), prefix_length: 24 };
/// match add_address(&Netns::Host, "kbr0", gw) { Ok(()) | Err(NetError::Exists) => {}, Err(e) => return Err(e) }
/// # Ok(()) }
/// ```
pub fn add_address(netns: &Netns, name: &str, address: IpPrefix) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::add_address(netns, name, address)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("add-address") },
            &(netns, name, address),
        )
    }
}

/// Removes `address` from link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let old = IpPrefix { address: IpAddress::Ipv4((10, 244, 1, 1)), prefix_length: 24 };
/// del_address(&Netns::Host, "kbr0", old)?;
/// # Ok(()) }
/// ```
pub fn del_address(netns: &Netns, name: &str, address: IpPrefix) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::del_address(netns, name, address)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("del-address") },
            &(netns, name, address),
        )
    }
}

/// Lists the addresses of link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let on_bridge = list_addresses(&Netns::Host, "kbr0")?;
/// let _ = on_bridge.len();
/// # Ok(()) }
/// ```
pub fn list_addresses(netns: &Netns, name: &str) -> Result<Vec<IpPrefix>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::list_addresses(netns, name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("list-addresses") },
            &(netns, name),
        )
    }
}

/// Adds `route`; `Exists` if an equal one is there.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let to_node_b = Route { dst: IpPrefix { address: IpAddress::Ipv4((10, 244, 2, 0)), prefix_length: 24 },
///     gateway: Some(IpAddress::Ipv4((192, 168, 0, 12))), dev: None, onlink: false, table: None, src: None, metric: None };
/// add_route(&Netns::Host, &to_node_b)?;
/// # Ok(()) }
/// ```
pub fn add_route(netns: &Netns, route: &Route) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::add_route(netns, route)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("add-route") },
            &(netns, route),
        )
    }
}

/// Adds `route` or replaces the route to the same destination.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let default = Route { dst: IpPrefix { address: IpAddress::Ipv4((0, 0, 0, 0)), prefix_length: 0 },
///     gateway: Some(IpAddress::Ipv4((10, 244, 1, 1))), dev: Some("eth0".into()), onlink: false, table: None, src: None, metric: None };
/// replace_route(&Netns::Pod("uid-1".into()), &default)?;
/// # Ok(()) }
/// ```
pub fn replace_route(netns: &Netns, route: &Route) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::replace_route(netns, route)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("replace-route") },
            &(netns, route),
        )
    }
}

/// Deletes `route`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// for route in list_routes(&Netns::Host, None)? {
///     if route.dev.as_deref() == Some("flannel.1") { del_route(&Netns::Host, &route)?; }
/// }
/// # Ok(()) }
/// ```
pub fn del_route(netns: &Netns, route: &Route) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::del_route(netns, route)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("del-route") },
            &(netns, route),
        )
    }
}

/// Lists the routes of `table` (the main table when `None`).
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let main_table = list_routes(&Netns::Host, None)?;
/// let _ = main_table.len();
/// # Ok(()) }
/// ```
pub fn list_routes(netns: &Netns, table: Option<u32>) -> Result<Vec<Route>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::list_routes(netns, table)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("list-routes") },
            &(netns, table),
        )
    }
}

/// Adds or replaces a neighbour (ARP/NDP) entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let peer = Neighbour { dev: "flannel.1".into(), address: IpAddress::Ipv4((10, 244, 2, 0)), mac: (0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x00) };
/// set_neighbour(&Netns::Host, &peer)?;
/// # Ok(()) }
/// ```
pub fn set_neighbour(netns: &Netns, entry: &Neighbour) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_neighbour(netns, entry)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-neighbour") },
            &(netns, entry),
        )
    }
}

/// Deletes the neighbour entry for `address` on `dev`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// del_neighbour(&Netns::Host, "flannel.1", IpAddress::Ipv4((10, 244, 2, 0)))?;
/// # Ok(()) }
/// ```
pub fn del_neighbour(netns: &Netns, dev: &str, address: IpAddress) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::del_neighbour(netns, dev, address)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("del-neighbour") },
            &(netns, dev, address),
        )
    }
}

/// Adds a bridge or vxlan forwarding database entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let entry = FdbEntry { dev: "flannel.1".into(), mac: (0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x00), dst: Some(IpAddress::Ipv4((192, 168, 0, 12))), vni: None, port: None };
/// add_fdb(&Netns::Host, &entry)?;
/// # Ok(()) }
/// ```
pub fn add_fdb(netns: &Netns, entry: &FdbEntry) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::add_fdb(netns, entry)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("add-fdb") },
            &(netns, entry),
        )
    }
}

/// Deletes a forwarding database entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let entry = FdbEntry { dev: "flannel.1".into(), mac: (0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x00), dst: Some(IpAddress::Ipv4((192, 168, 0, 12))), vni: None, port: None };
/// del_fdb(&Netns::Host, &entry)?;
/// # Ok(()) }
/// ```
pub fn del_fdb(netns: &Netns, entry: &FdbEntry) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::del_fdb(netns, entry)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("del-fdb") },
            &(netns, entry),
        )
    }
}

/// Turns IP forwarding on or off, for one device or all.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// set_forwarding(&Netns::Host, AddressFamily::Ipv4, None, true)?;
/// # Ok(()) }
/// ```
pub fn set_forwarding(
    netns: &Netns,
    family: AddressFamily,
    dev: Option<&str>,
    enabled: bool,
) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_forwarding(netns, family, dev, enabled)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-forwarding") },
            &(netns, family, dev, enabled),
        )
    }
}

/// Creates an Open vSwitch bridge if it does not exist.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_add_bridge("obr0", OvsDatapath::Netdev)?;
/// # Ok(()) }
/// ```
pub fn ovs_add_bridge(name: &str, datapath: OvsDatapath) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_add_bridge(name, datapath)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-add-bridge") },
            &(name, datapath),
        )
    }
}

/// Deletes an Open vSwitch bridge.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_del_bridge("obr0")?;
/// # Ok(()) }
/// ```
pub fn ovs_del_bridge(name: &str) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_del_bridge(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-del-bridge") },
            &(name,),
        )
    }
}

/// Adds a port to an Open vSwitch bridge, with interface options such as `remote_ip`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_add_port("obr0", "vxlan0", OvsPortType::Vxlan, &[("remote_ip".into(), "flow".into())])?;
/// # Ok(()) }
/// ```
pub fn ovs_add_port(
    bridge: &str,
    port: &str,
    port_type: OvsPortType,
    options: &[(String, String)],
) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_add_port(bridge, port, port_type, options)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-add-port") },
            &(bridge, port, port_type, options),
        )
    }
}

/// Removes a port from an Open vSwitch bridge.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_del_port("obr0", "veth1234")?;
/// # Ok(()) }
/// ```
pub fn ovs_del_port(bridge: &str, port: &str) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_del_port(bridge, port)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-del-port") },
            &(bridge, port),
        )
    }
}

/// Adds OpenFlow flows, in `ovs-ofctl add-flow` syntax.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_add_flows("obr0", &["table=0,priority=100,ip,nw_dst=10.244.2.0/24,actions=output:1".into()])?;
/// # Ok(()) }
/// ```
pub fn ovs_add_flows(bridge: &str, flows: &[String]) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_add_flows(bridge, flows)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-add-flows") },
            &(bridge, flows),
        )
    }
}

/// Deletes the flows matching `flow_match`, or all flows.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// ovs_del_flows("obr0", Some("ip,nw_dst=10.244.2.0/24"))?;
/// # Ok(()) }
/// ```
pub fn ovs_del_flows(bridge: &str, flow_match: Option<&str>) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_del_flows(bridge, flow_match)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("ovs-del-flows") },
            &(bridge, flow_match),
        )
    }
}

/// The local node's pod CIDRs (`spec.podCIDRs`).
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let ipv4 = node_pod_cidrs()?.into_iter().find(|c| matches!(c.address, IpAddress::Ipv4(_)));
/// let _ = ipv4;
/// # Ok(()) }
/// ```
pub fn node_pod_cidrs() -> Result<Vec<IpPrefix>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::node_pod_cidrs()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("node-pod-cidrs") },
            &(),
        )
    }
}

/// The local node's addresses.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let internal = node_addresses()?.into_iter().filter(|a| a.kind == NodeAddressKind::InternalIp).count();
/// let _ = internal;
/// # Ok(()) }
/// ```
pub fn node_addresses() -> Result<Vec<NodeAddress>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::node_addresses()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("node-addresses") },
            &(),
        )
    }
}

/// The host link that holds the default route for `family`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let uplink = default_interface(AddressFamily::Ipv4)?;
/// let _ = uplink.mtu;
/// # Ok(()) }
/// ```
pub fn default_interface(family: AddressFamily) -> Result<LinkInfo, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::default_interface(family)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("default-interface") },
            &(family,),
        )
    }
}

/// Source-NATs to the node's address the traffic from `source` whose destination is in none of
/// `exempt`: pods reach the outside world from the node's address while pod-to-pod traffic
/// keeps pod addresses. The host keeps one rule per `source`, so calling it again replaces that
/// rule (and its exemptions): the call is idempotent.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let pods = IpPrefix { address: IpAddress::Ipv4((10, 244, 1, 0)), prefix_length: 24 };
/// let cluster = IpPrefix { address: IpAddress::Ipv4((10, 244, 0, 0)), prefix_length: 16 };
/// set_masquerade(pods, &[cluster])?;
/// # Ok(()) }
/// ```
pub fn set_masquerade(source: IpPrefix, exempt: &[IpPrefix]) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_masquerade(source, exempt)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-masquerade") },
            &(source, exempt),
        )
    }
}

/// Removes the masquerade rule of `source`; `NotFound` if there is none.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// let old_pods = IpPrefix { address: IpAddress::Ipv4((10, 244, 1, 0)), prefix_length: 24 };
/// match clear_masquerade(old_pods) { Ok(()) | Err(NetError::NotFound) => {}, Err(e) => return Err(e) }
/// # Ok(()) }
/// ```
pub fn clear_masquerade(source: IpPrefix) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::clear_masquerade(source)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("clear-masquerade") },
            &(source,),
        )
    }
}

/// Turns hairpin mode of bridge port `name` on or off: with it on, the bridge may send a frame
/// back out of the port it came in on, which a pod reaching itself through a service address
/// needs once the host has rewritten the destination to that pod. `name` must already be
/// attached to a bridge ([`set_link_master`]); `InvalidArgument` if it is not.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// set_link_master(&Netns::Host, "veth1234", Some("kbr0"))?;
/// set_link_hairpin(&Netns::Host, "veth1234", true)?;
/// # Ok(()) }
/// ```
pub fn set_link_hairpin(netns: &Netns, name: &str, on: bool) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::set_link_hairpin(netns, name, on)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            const { keelson_plugin_abi::imports::host_net("set-link-hairpin") },
            &(netns, name, on),
        )
    }
}
