//! What the embedder provides to plugins: cluster lookups for admission checks and network
//! operations for network backends. Each is a trait with the WIT types, implemented by the
//! daemon that runs the plugin (the API server's watch cache, the kubelet's netlink code).

use crate::bindings::keelson::plugin::cluster::LookupError;
use crate::bindings::keelson::plugin::host_net::{
    FdbEntry, LinkInfo, LinkSpec, Neighbour, NetError, OvsDatapath, OvsPortType,
};
use crate::bindings::keelson::plugin::network_types::{
    AddressFamily, IpAddress, IpPrefix, Netns, NodeAddress, Route,
};
use crate::bindings::keelson::plugin::types::{GroupVersionResource, LabelSelector};

/// Read-only lookups of cluster objects for admission checks (`keelson:plugin/cluster`),
/// answered from the embedder's watch cache. Objects cross as JSON text.
///
/// Calls arrive on the thread running the plugin call, during the call: an implementation must
/// answer quickly (a Wasm plugin's deadline keeps running while it does) and must not call the
/// plugin back.
pub trait ClusterLookup: Send + Sync {
    /// `cluster.get-object`: the object as JSON, or `None` if it does not exist.
    fn get_object(
        &self,
        resource: &GroupVersionResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, LookupError>;

    /// `cluster.list-objects`: the objects of `resource` matching `selector`, as JSON.
    fn list_objects(
        &self,
        resource: &GroupVersionResource,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<String>, LookupError>;
}

/// A [`ClusterLookup`] for contexts without a cluster (`keelson plugin check`, tests): every
/// lookup fails with `unavailable`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCluster;

impl ClusterLookup for NoCluster {
    fn get_object(
        &self,
        _resource: &GroupVersionResource,
        _namespace: Option<&str>,
        _name: &str,
    ) -> Result<Option<String>, LookupError> {
        Err(LookupError::Unavailable(
            "no cluster lookups in this context".into(),
        ))
    }

    fn list_objects(
        &self,
        _resource: &GroupVersionResource,
        _namespace: Option<&str>,
        _selector: &LabelSelector,
    ) -> Result<Vec<String>, LookupError> {
        Err(LookupError::Unavailable(
            "no cluster lookups in this context".into(),
        ))
    }
}

/// Calls `$m!` with every `host-net` function, in WIT declaration order (the order of
/// `keelson_plugin_abi::imports::HOST_NET`): method name, WIT name, arguments, result.
macro_rules! host_net_functions {
    ($m:ident) => {
        $m! {
            create_link "create-link" (spec: LinkSpec) -> ();
            delete_link "delete-link" (netns: Netns, name: String) -> ();
            get_link "get-link" (netns: Netns, name: String) -> LinkInfo;
            list_links "list-links" (netns: Netns) -> Vec<LinkInfo>;
            move_link "move-link" (name: String, source: Netns, target: Netns, new_name: Option<String>) -> ();
            set_link_up "set-link-up" (netns: Netns, name: String, up: bool) -> ();
            set_link_mtu "set-link-mtu" (netns: Netns, name: String, mtu: u32) -> ();
            set_link_master "set-link-master" (netns: Netns, name: String, master: Option<String>) -> ();
            add_address "add-address" (netns: Netns, name: String, address: IpPrefix) -> ();
            del_address "del-address" (netns: Netns, name: String, address: IpPrefix) -> ();
            list_addresses "list-addresses" (netns: Netns, name: String) -> Vec<IpPrefix>;
            add_route "add-route" (netns: Netns, route: Route) -> ();
            replace_route "replace-route" (netns: Netns, route: Route) -> ();
            del_route "del-route" (netns: Netns, route: Route) -> ();
            list_routes "list-routes" (netns: Netns, table: Option<u32>) -> Vec<Route>;
            set_neighbour "set-neighbour" (netns: Netns, entry: Neighbour) -> ();
            del_neighbour "del-neighbour" (netns: Netns, dev: String, address: IpAddress) -> ();
            add_fdb "add-fdb" (netns: Netns, entry: FdbEntry) -> ();
            del_fdb "del-fdb" (netns: Netns, entry: FdbEntry) -> ();
            set_forwarding "set-forwarding" (netns: Netns, family: AddressFamily, dev: Option<String>, enabled: bool) -> ();
            ovs_add_bridge "ovs-add-bridge" (name: String, datapath: OvsDatapath) -> ();
            ovs_del_bridge "ovs-del-bridge" (name: String) -> ();
            ovs_add_port "ovs-add-port" (bridge: String, port: String, port_type: OvsPortType, options: Vec<(String, String)>) -> ();
            ovs_del_port "ovs-del-port" (bridge: String, port: String) -> ();
            ovs_add_flows "ovs-add-flows" (bridge: String, flows: Vec<String>) -> ();
            ovs_del_flows "ovs-del-flows" (bridge: String, flow_match: Option<String>) -> ();
            node_pod_cidrs "node-pod-cidrs" () -> Vec<IpPrefix>;
            node_addresses "node-addresses" () -> Vec<NodeAddress>;
            default_interface "default-interface" (family: AddressFamily) -> LinkInfo;
            set_masquerade "set-masquerade" (source: IpPrefix, exempt: Vec<IpPrefix>) -> ();
            clear_masquerade "clear-masquerade" (source: IpPrefix) -> ();
            set_link_hairpin "set-link-hairpin" (netns: Netns, name: String, on: bool) -> ();
        }
    };
}
pub(crate) use host_net_functions;

macro_rules! define_host_net {
    ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        /// Privileged network operations for network backends (`keelson:plugin/host-net`), one
        /// method per WIT function with the WIT types; the kubelet implements them over
        /// netlink, nftables (masquerading) and OVSDB.
        ///
        /// Every method has a default that fails with `unsupported`, so an implementation (or a
        /// test fake) provides what it supports. Calls arrive on the thread running the plugin
        /// call, during the call; they must not call the plugin back. Refuse operations outside
        /// the plugin's grant with `permission-denied`.
        pub trait HostNet: Send + Sync {
            $(
                #[doc = concat!("`host-net.", $wit, "`; see `wit/network.wit`.")]
                fn $method(&self, $($arg: $ty),*) -> Result<$ret, NetError> {
                    $(let _ = $arg;)*
                    Err(NetError::Unsupported(concat!($wit, " is not available on this host").into()))
                }
            )*
        }
    };
}
host_net_functions!(define_host_net);

/// A [`HostNet`] that supports nothing: every operation fails with `unsupported`. For contexts
/// without a node network (`keelson plugin check`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHostNet;

impl HostNet for NoHostNet {}

/// A [`HostNet`] that changes nothing: it records each operation a backend asks for (as
/// `create-link(LinkSpec { .. })`) and answers as a fresh node would: success for changes,
/// empty lists, `not-found` for a single link, and the pod CIDRs and addresses it was given
/// for the node. For `keelson plugin check` and tests.
#[derive(Debug, Default)]
pub struct DryRunHostNet {
    pod_cidrs: Vec<IpPrefix>,
    addresses: Vec<NodeAddress>,
    calls: std::sync::Mutex<Vec<String>>,
}

impl DryRunHostNet {
    /// A dry-run host whose node has `pod_cidrs` and `addresses`.
    pub fn new(pod_cidrs: Vec<IpPrefix>, addresses: Vec<NodeAddress>) -> Self {
        DryRunHostNet {
            pod_cidrs,
            addresses,
            calls: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The operations asked for so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn record(&self, call: String) {
        match self.calls.lock() {
            Ok(mut c) => c.push(call),
            Err(poisoned) => poisoned.into_inner().push(call),
        }
    }
}

/// What a dry run answers for each result type of `host-net`.
trait DryRunAnswer: Sized {
    fn answer(net: &DryRunHostNet, wit: &str) -> Result<Self, NetError>;
}

impl DryRunAnswer for () {
    fn answer(_: &DryRunHostNet, _: &str) -> Result<Self, NetError> {
        Ok(())
    }
}

impl DryRunAnswer for LinkInfo {
    fn answer(_: &DryRunHostNet, _: &str) -> Result<Self, NetError> {
        Err(NetError::NotFound)
    }
}

impl DryRunAnswer for Vec<LinkInfo> {
    fn answer(_: &DryRunHostNet, _: &str) -> Result<Self, NetError> {
        Ok(Vec::new())
    }
}

impl DryRunAnswer for Vec<Route> {
    fn answer(_: &DryRunHostNet, _: &str) -> Result<Self, NetError> {
        Ok(Vec::new())
    }
}

impl DryRunAnswer for Vec<IpPrefix> {
    fn answer(net: &DryRunHostNet, wit: &str) -> Result<Self, NetError> {
        Ok(if wit == "node-pod-cidrs" {
            net.pod_cidrs.clone()
        } else {
            Vec::new()
        })
    }
}

impl DryRunAnswer for Vec<NodeAddress> {
    fn answer(net: &DryRunHostNet, _: &str) -> Result<Self, NetError> {
        Ok(net.addresses.clone())
    }
}

macro_rules! impl_dry_run {
    ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl HostNet for DryRunHostNet {
            $(
                fn $method(&self, $($arg: $ty),*) -> Result<$ret, NetError> {
                    let args: Vec<String> = vec![$(format!("{:?}", $arg)),*];
                    self.record(format!("{}({})", $wit, args.join(", ")));
                    <$ret as DryRunAnswer>::answer(self, $wit)
                }
            )*
        }
    };
}
host_net_functions!(impl_dry_run);

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! wit_names {
        ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
            &[$($wit),*]
        };
    }

    #[test]
    fn host_net_functions_follow_the_abi_order() {
        let names: &[&str] = host_net_functions!(wit_names);
        assert_eq!(names, keelson_plugin_abi::imports::HOST_NET);
    }

    #[test]
    fn a_dry_run_records_and_answers_like_a_fresh_node() {
        let cidr = IpPrefix {
            address: IpAddress::Ipv4((10, 244, 3, 0)),
            prefix_length: 24,
        };
        let net = DryRunHostNet::new(vec![cidr], Vec::new());
        assert_eq!(net.node_pod_cidrs(), Ok(vec![cidr]));
        assert_eq!(
            net.list_addresses(Netns::Host, "kbr0".into()),
            Ok(Vec::new())
        );
        assert_eq!(
            net.get_link(Netns::Host, "kbr0".into()),
            Err(NetError::NotFound)
        );
        assert_eq!(
            net.set_link_up(Netns::Pod("u1".into()), "lo".into(), true),
            Ok(())
        );
        assert_eq!(net.set_masquerade(cidr, vec![cidr]), Ok(()));
        assert_eq!(net.clear_masquerade(cidr), Ok(()));
        assert_eq!(
            net.set_link_hairpin(Netns::Host, "veth1".into(), true),
            Ok(())
        );
        let cidr_text = format!("{cidr:?}");
        assert_eq!(
            net.calls(),
            vec![
                "node-pod-cidrs()".to_string(),
                "list-addresses(Netns::Host, \"kbr0\")".to_string(),
                "get-link(Netns::Host, \"kbr0\")".to_string(),
                "set-link-up(Netns::Pod(\"u1\"), \"lo\", true)".to_string(),
                format!("set-masquerade({cidr_text}, [{cidr_text}])"),
                format!("clear-masquerade({cidr_text})"),
                "set-link-hairpin(Netns::Host, \"veth1\", true)".to_string(),
            ]
        );
    }

    #[test]
    fn defaults_fail_with_unsupported_naming_the_function() {
        let e = NoHostNet.node_pod_cidrs().expect_err("unsupported");
        assert_eq!(
            e,
            NetError::Unsupported("node-pod-cidrs is not available on this host".into())
        );
    }
}
