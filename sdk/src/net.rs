//! Host network operations for network backends: the only way a backend touches the node.
//!
//! Each function is one typed operation (links, addresses, routes, neighbours, FDB entries,
//! forwarding, Open vSwitch, the node's own CIDRs and addresses). There are no files and no
//! sockets. Operations outside what the operator granted fail with
//! [`NetError::PermissionDenied`].

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
/// # let _ = create_link;
/// # Ok(()) }
/// ```
pub fn create_link(spec: &LinkSpec) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::create_link(spec)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(keelson_plugin_abi::imports::HOST_NET_BASE + 0, &(spec,))
    }
}

/// Deletes link `name` in `netns`; `NotFound` if it is absent.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = delete_link;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 1,
            &(netns, name),
        )
    }
}

/// Reads link `name` in `netns`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = get_link;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 2,
            &(netns, name),
        )
    }
}

/// Lists the links in `netns`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = list_links;
/// # Ok(()) }
/// ```
pub fn list_links(netns: &Netns) -> Result<Vec<LinkInfo>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::list_links(netns)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(keelson_plugin_abi::imports::HOST_NET_BASE + 3, &(netns,))
    }
}

/// Moves link `name` from `source` to `target`, renaming it to `new_name` if given.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = move_link;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 4,
            &(name, source, target, new_name),
        )
    }
}

/// Sets link `name` up or down.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = set_link_up;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 5,
            &(netns, name, up),
        )
    }
}

/// Sets the MTU of link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = set_link_mtu;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 6,
            &(netns, name, mtu),
        )
    }
}

/// Enslaves link `name` to bridge `master`, or frees it with `None`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = set_link_master;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 7,
            &(netns, name, master),
        )
    }
}

/// Adds `address` to link `name`; `Exists` if it is already there.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = add_address;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 8,
            &(netns, name, address),
        )
    }
}

/// Removes `address` from link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = del_address;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 9,
            &(netns, name, address),
        )
    }
}

/// Lists the addresses of link `name`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = list_addresses;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 10,
            &(netns, name),
        )
    }
}

/// Adds `route`; `Exists` if an equal one is there.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = add_route;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 11,
            &(netns, route),
        )
    }
}

/// Adds `route` or replaces the route to the same destination.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = replace_route;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 12,
            &(netns, route),
        )
    }
}

/// Deletes `route`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = del_route;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 13,
            &(netns, route),
        )
    }
}

/// Lists the routes of `table` (the main table when `None`).
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = list_routes;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 14,
            &(netns, table),
        )
    }
}

/// Adds or replaces a neighbour (ARP/NDP) entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = set_neighbour;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 15,
            &(netns, entry),
        )
    }
}

/// Deletes the neighbour entry for `address` on `dev`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = del_neighbour;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 16,
            &(netns, dev, address),
        )
    }
}

/// Adds a bridge or vxlan forwarding database entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = add_fdb;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 17,
            &(netns, entry),
        )
    }
}

/// Deletes a forwarding database entry.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = del_fdb;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 18,
            &(netns, entry),
        )
    }
}

/// Turns IP forwarding on or off, for one device or all.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = set_forwarding;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 19,
            &(netns, family, dev, enabled),
        )
    }
}

/// Creates an Open vSwitch bridge if it does not exist.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_add_bridge;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 20,
            &(name, datapath),
        )
    }
}

/// Deletes an Open vSwitch bridge.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_del_bridge;
/// # Ok(()) }
/// ```
pub fn ovs_del_bridge(name: &str) -> Result<(), NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::ovs_del_bridge(name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(keelson_plugin_abi::imports::HOST_NET_BASE + 21, &(name,))
    }
}

/// Adds a port to an Open vSwitch bridge, with interface options such as `remote_ip`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_add_port;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 22,
            &(bridge, port, port_type, options),
        )
    }
}

/// Removes a port from an Open vSwitch bridge.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_del_port;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 23,
            &(bridge, port),
        )
    }
}

/// Adds OpenFlow flows, in `ovs-ofctl add-flow` syntax.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_add_flows;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 24,
            &(bridge, flows),
        )
    }
}

/// Deletes the flows matching `flow_match`, or all flows.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = ovs_del_flows;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 25,
            &(bridge, flow_match),
        )
    }
}

/// The local node's pod CIDRs (`spec.podCIDRs`).
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = node_pod_cidrs;
/// # Ok(()) }
/// ```
pub fn node_pod_cidrs() -> Result<Vec<IpPrefix>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::node_pod_cidrs()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(keelson_plugin_abi::imports::HOST_NET_BASE + 26, &())
    }
}

/// The local node's addresses.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = node_addresses;
/// # Ok(()) }
/// ```
pub fn node_addresses() -> Result<Vec<NodeAddress>, NetError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::host_net::node_addresses()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(keelson_plugin_abi::imports::HOST_NET_BASE + 27, &())
    }
}

/// The host link that holds the default route for `family`.
///
/// ```no_run
/// # use keelson_plugin_sdk::{net::*, *};
/// # fn f() -> Result<(), NetError> {
/// # let _ = default_interface;
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
            keelson_plugin_abi::imports::HOST_NET_BASE + 28,
            &(family,),
        )
    }
}
