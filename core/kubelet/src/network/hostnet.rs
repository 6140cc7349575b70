//! [`NetlinkHostNet`]: the `host-net` operations a network backend imports, served over
//! rtnetlink in the node's namespace or in a pod's.
//!
//! Every operation runs on a short-lived thread of its own that joins the target network
//! namespace (`setns`) and opens its netlink socket there, so that no thread of the kubelet is
//! ever left in a foreign namespace. The methods are synchronous, as the plugin host calls
//! them: callers run plugin calls on blocking threads.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures::StreamExt as _;
use keelson_plugin_host::{
    AddressFamily, FdbEntry, HostNet, IpAddress, IpPrefix, LinkInfo, LinkKind, LinkSpec, Neighbour,
    NetError, Netns, NodeAddress, OvsDatapath, OvsPortType, Route,
};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use rtnetlink::packet_route::{AddressFamily as NlFamily, RouteNetlinkMessage};

use super::nft;

/// What `unsupported` says for every Open vSwitch operation.
const NO_OVS: &str = "Open vSwitch operations are not implemented by this kubelet yet";

/// The main routing table.
const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The network namespaces of the pods on this node, by pod UID: filled by the kubelet before a
/// pod's `attach-pod` and cleared after its `detach-pod`.
#[derive(Debug, Clone, Default)]
pub struct NetnsRegistry(Arc<RwLock<HashMap<String, PathBuf>>>);

impl NetnsRegistry {
    /// Makes `Netns::Pod(uid)` name the namespace at `path` (`/proc/<pid>/ns/net`).
    pub fn register(&self, uid: &str, path: impl Into<PathBuf>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.insert(uid.to_string(), path.into());
    }

    /// Forgets the namespace of pod `uid`.
    pub fn unregister(&self, uid: &str) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.remove(uid);
    }

    /// The namespace path of pod `uid`, if registered.
    pub fn path(&self, uid: &str) -> Option<PathBuf> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(uid).cloned()
    }
}

/// What the kubelet knows of its own Node for `node-pod-cidrs` and `node-addresses`.
#[derive(Debug, Clone, Default)]
pub struct LocalNode(Arc<RwLock<(Vec<IpPrefix>, Vec<NodeAddress>)>>);

impl LocalNode {
    /// Records the node's pod CIDRs and addresses.
    pub fn set(&self, pod_cidrs: Vec<IpPrefix>, addresses: Vec<NodeAddress>) {
        let mut v = self.0.write().unwrap_or_else(|p| p.into_inner());
        *v = (pod_cidrs, addresses);
    }

    /// The node's pod CIDRs and addresses.
    pub fn get(&self) -> (Vec<IpPrefix>, Vec<NodeAddress>) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The `host-net` operations over netlink (and nftables for masquerading).
pub struct NetlinkHostNet {
    /// The kubelet's own network namespace, opened when this was made.
    host: Arc<File>,
    pods: NetnsRegistry,
    node: LocalNode,
}

impl std::fmt::Debug for NetlinkHostNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkHostNet").finish_non_exhaustive()
    }
}

/// An errno as a `net-error`.
fn errno_error(e: Errno) -> NetError {
    match e {
        Errno::EEXIST => NetError::Exists,
        Errno::ENOENT | Errno::ENODEV | Errno::ESRCH => NetError::NotFound,
        Errno::EPERM => NetError::PermissionDenied,
        e => NetError::Other(e.desc().to_string()),
    }
}

fn io_error(e: std::io::Error) -> NetError {
    match e.raw_os_error() {
        Some(code) => errno_error(Errno::from_raw(code)),
        None => NetError::Other(e.to_string()),
    }
}

fn rt_error(e: rtnetlink::Error) -> NetError {
    match e {
        rtnetlink::Error::NetlinkError(m) => match m.code {
            Some(code) => errno_error(Errno::from_raw(-code.get())),
            None => NetError::Other("netlink error without a code".into()),
        },
        e => NetError::Other(e.to_string()),
    }
}

fn invalid(what: impl Into<String>) -> NetError {
    NetError::InvalidArgument(what.into())
}

/// Converts a WIT address.
pub fn ip(a: &IpAddress) -> IpAddr {
    match *a {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
        }
    }
}

/// Converts to a WIT address.
pub fn wit_ip(a: IpAddr) -> IpAddress {
    match a {
        IpAddr::V4(v) => {
            let [a, b, c, d] = v.octets();
            IpAddress::Ipv4((a, b, c, d))
        }
        IpAddr::V6(v) => {
            let [a, b, c, d, e, f, g, h] = v.segments();
            IpAddress::Ipv6((a, b, c, d, e, f, g, h))
        }
    }
}

/// Converts a WIT prefix, checking its length.
pub fn prefix(p: &IpPrefix) -> Result<ipnet::IpNet, NetError> {
    ipnet::IpNet::new(ip(&p.address), p.prefix_length)
        .map_err(|_| invalid(format!("prefix length {} is too long", p.prefix_length)))
}

/// Converts to a WIT prefix.
pub fn wit_prefix(n: ipnet::IpNet) -> IpPrefix {
    IpPrefix {
        address: wit_ip(n.addr()),
        prefix_length: n.prefix_len(),
    }
}

fn nl_family(a: IpAddr) -> NlFamily {
    match a {
        IpAddr::V4(_) => NlFamily::Inet,
        IpAddr::V6(_) => NlFamily::Inet6,
    }
}

fn mac_vec(m: &(u8, u8, u8, u8, u8, u8)) -> Vec<u8> {
    vec![m.0, m.1, m.2, m.3, m.4, m.5]
}

fn mac_tuple(v: &[u8]) -> Option<(u8, u8, u8, u8, u8, u8)> {
    match *v {
        [a, b, c, d, e, f] => Some((a, b, c, d, e, f)),
        _ => None,
    }
}

fn check_name(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) || name == "." {
        return Err(invalid(format!("{name:?} is not a valid link name")));
    }
    if name == ".." {
        return Err(invalid("\"..\" is not a valid link name"));
    }
    Ok(())
}

/// Sends one request and collects the messages of its answer.
async fn request(
    h: &mut Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, NetError> {
    let mut nl = NetlinkMessage::from(msg);
    nl.header.flags = flags;
    let mut answer = h.request(nl).map_err(rt_error)?;
    let mut out = Vec::new();
    while let Some(m) = answer.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(x) => out.push(x),
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    return Err(errno_error(Errno::from_raw(-code.get())));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Sends a change and waits for its acknowledgement.
async fn change(h: &mut Handle, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NetError> {
    request(h, msg, NLM_F_REQUEST | NLM_F_ACK | flags)
        .await
        .map(drop)
}

async fn dump(
    h: &mut Handle,
    msg: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, NetError> {
    request(h, msg, NLM_F_REQUEST | NLM_F_DUMP).await
}

async fn all_links(h: &mut Handle) -> Result<Vec<LinkMessage>, NetError> {
    let out = dump(h, RouteNetlinkMessage::GetLink(LinkMessage::default())).await?;
    Ok(out
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

async fn link_by_name(h: &mut Handle, name: &str) -> Result<LinkMessage, NetError> {
    check_name(name)?;
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    let out = request(
        h,
        RouteNetlinkMessage::GetLink(msg),
        NLM_F_REQUEST | NLM_F_ACK,
    )
    .await?;
    out.into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .ok_or(NetError::NotFound)
}

async fn index_of(h: &mut Handle, name: &str) -> Result<u32, NetError> {
    Ok(link_by_name(h, name).await?.header.index)
}

fn link_name(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The WIT view of a link; `names` resolves its bridge's index.
fn link_info(l: &LinkMessage, names: &HashMap<u32, String>) -> LinkInfo {
    let mut info = LinkInfo {
        name: link_name(l),
        index: l.header.index,
        kind: String::new(),
        mtu: 0,
        mac: None,
        up: l.header.flags.contains(LinkFlags::Up),
        master: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::Address(a) => info.mac = mac_tuple(a),
            LinkAttribute::Controller(i) => info.master = names.get(i).cloned(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn link_names(links: &[LinkMessage]) -> HashMap<u32, String> {
    links
        .iter()
        .map(|l| (l.header.index, link_name(l)))
        .collect()
}

/// A link message that changes link `index`.
fn set_msg(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

/// The route message for `route`; `for_delete` leaves out what a deletion does not match on.
async fn route_msg(
    h: &mut Handle,
    route: &Route,
    for_delete: bool,
) -> Result<RouteMessage, NetError> {
    let dst = prefix(&route.dst)?;
    let mut msg = RouteMessage::default();
    msg.header.address_family = nl_family(dst.addr());
    msg.header.destination_prefix_length = dst.prefix_len();
    let table = route.table.unwrap_or(MAIN_TABLE);
    msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    msg.attributes.push(RouteAttribute::Table(table));
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                dst.network(),
            )));
    }
    if let Some(metric) = route.metric {
        msg.attributes.push(RouteAttribute::Priority(metric));
    }
    if for_delete {
        msg.header.scope = RouteScope::NoWhere;
        return Ok(msg);
    }
    msg.header.protocol = RouteProtocol::Static;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if route.onlink {
        msg.header.flags |= RouteFlags::Onlink;
    }
    if let Some(gw) = &route.gateway {
        let gw = ip(gw);
        if nl_family(gw) != msg.header.address_family {
            return Err(invalid(
                "the gateway's family differs from the destination's",
            ));
        }
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    match &route.dev {
        Some(dev) => {
            let index = index_of(h, dev).await?;
            msg.attributes.push(RouteAttribute::Oif(index));
        }
        None if route.gateway.is_none() => {
            return Err(invalid("a route without a gateway needs a dev"));
        }
        None => {}
    }
    if let Some(src) = &route.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(ip(src))));
    }
    Ok(msg)
}

async fn all_routes(h: &mut Handle) -> Result<Vec<RouteMessage>, NetError> {
    let out = dump(h, RouteNetlinkMessage::GetRoute(RouteMessage::default())).await?;
    Ok(out
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => Some(r),
            _ => None,
        })
        .collect())
}

fn wit_route(r: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    let v6 = r.header.address_family == NlFamily::Inet6;
    let mut dst = None;
    let mut route = Route {
        dst: IpPrefix {
            address: IpAddress::Ipv4((0, 0, 0, 0)),
            prefix_length: 0,
        },
        gateway: None,
        dev: None,
        onlink: r.header.flags.contains(RouteFlags::Onlink),
        table: None,
        src: None,
        metric: None,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => route.gateway = route_ip(g).map(wit_ip),
            RouteAttribute::Oif(i) => route.dev = names.get(i).cloned(),
            RouteAttribute::PrefSource(s) => route.src = route_ip(s).map(wit_ip),
            RouteAttribute::Priority(p) => route.metric = Some(*p),
            _ => {}
        }
    }
    let dst = dst.unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    route.dst = IpPrefix {
        address: wit_ip(dst),
        prefix_length: r.header.destination_prefix_length,
    };
    let table = route_table(r);
    route.table = (table != MAIN_TABLE).then_some(table);
    Some(route)
}

fn address_msg(index: u32, address: &IpPrefix) -> Result<AddressMessage, NetError> {
    let net = prefix(address)?;
    let mut msg = AddressMessage::default();
    msg.header.family = nl_family(net.addr());
    msg.header.prefix_len = net.prefix_len();
    msg.header.index = index;
    if net.addr().is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(net.addr()));
    }
    msg.attributes.push(AddressAttribute::Address(net.addr()));
    Ok(msg)
}

fn fdb_msg(index: u32, entry: &FdbEntry) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = NlFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.state = NeighbourState::Permanent;
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac_vec(&entry.mac)));
    if let Some(dst) = &entry.dst {
        msg.attributes
            .push(NeighbourAttribute::Destination(match ip(dst) {
                IpAddr::V4(v) => NeighbourAddress::Inet(v),
                IpAddr::V6(v) => NeighbourAddress::Inet6(v),
            }));
    }
    if let Some(vni) = entry.vni {
        msg.attributes.push(NeighbourAttribute::Vni(vni));
    }
    if let Some(port) = entry.port {
        msg.attributes.push(NeighbourAttribute::Port(port));
    }
    msg
}

/// What tells FDB entries of one link apart: the MAC and the remote (as raw bytes, since a
/// bridge-family answer does not say which family its address is).
fn fdb_key(n: &NeighbourMessage) -> (Vec<u8>, Vec<u8>) {
    let mut key = (Vec::new(), Vec::new());
    for a in &n.attributes {
        match a {
            NeighbourAttribute::LinkLayerAddress(m) => key.0 = m.clone(),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                key.1 = v.octets().to_vec()
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                key.1 = v.octets().to_vec()
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => key.1 = b.clone(),
            _ => {}
        }
    }
    key
}

fn neighbour_address(a: &IpAddress) -> (NlFamily, NeighbourAddress) {
    match ip(a) {
        IpAddr::V4(v) => (NlFamily::Inet, NeighbourAddress::Inet(v)),
        IpAddr::V6(v) => (NlFamily::Inet6, NeighbourAddress::Inet6(v)),
    }
}

impl NetlinkHostNet {
    /// A host whose `Netns::Host` is the calling thread's namespace, whose pods' namespaces come
    /// from `pods` and whose node data from `node`.
    pub fn new(pods: NetnsRegistry, node: LocalNode) -> std::io::Result<Self> {
        let host = File::open("/proc/thread-self/ns/net")?;
        Ok(NetlinkHostNet {
            host: Arc::new(host),
            pods,
            node,
        })
    }

    /// The registry of pod namespaces this host resolves `Netns::Pod` with.
    pub fn registry(&self) -> &NetnsRegistry {
        &self.pods
    }

    /// What this host reports as the local node.
    pub fn local_node(&self) -> &LocalNode {
        &self.node
    }

    fn open_ns(&self, ns: &Netns) -> Result<Arc<File>, NetError> {
        match ns {
            Netns::Host => Ok(self.host.clone()),
            Netns::Pod(uid) => {
                let path = self.pods.path(uid).ok_or(NetError::NotFound)?;
                File::open(&path).map(Arc::new).map_err(io_error)
            }
        }
    }

    /// Refuses to delete or move away the links that carry the node's default routes.
    fn refuse_default_interface(&self, netns: &Netns, name: &str) -> Result<(), NetError> {
        if *netns != Netns::Host {
            return Ok(());
        }
        for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
            match self.default_interface(family) {
                Ok(link) if link.name == name => return Err(NetError::PermissionDenied),
                Ok(_) | Err(NetError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs `f` on a thread of its own inside namespace `ns`.
    fn in_ns<T: Send>(
        &self,
        ns: &Netns,
        f: impl FnOnce() -> Result<T, NetError> + Send,
    ) -> Result<T, NetError> {
        let target = self.open_ns(ns)?;
        std::thread::scope(|s| {
            let joined = std::thread::Builder::new()
                .name("keelson-netns".into())
                .spawn_scoped(s, move || {
                    setns(&*target, CloneFlags::CLONE_NEWNET).map_err(errno_error)?;
                    f()
                });
            match joined {
                Ok(t) => t
                    .join()
                    .unwrap_or_else(|_| Err(NetError::Other("the netlink thread panicked".into()))),
                Err(e) => Err(NetError::Other(format!(
                    "cannot start a netlink thread: {e}"
                ))),
            }
        })
    }

    /// Runs the netlink conversation `f` inside namespace `ns`.
    fn netlink<T: Send>(
        &self,
        ns: &Netns,
        f: impl AsyncFnOnce(Handle) -> Result<T, NetError> + Send,
    ) -> Result<T, NetError> {
        self.in_ns(ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetError::Other(format!("cannot start a netlink runtime: {e}")))?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection().map_err(io_error)?;
                let conn = tokio::spawn(conn);
                let r = f(handle).await;
                conn.abort();
                r
            })
        })
    }
}

/// Writes a sysctl under `/proc/sys/net` of the calling thread's namespace.
fn write_sysctl(path: &Path, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(io_error)
}

impl HostNet for NetlinkHostNet {
    fn create_link(&self, spec: LinkSpec) -> Result<(), NetError> {
        check_name(&spec.name)?;
        let peer_ns = match &spec.kind {
            LinkKind::Veth(v) => {
                check_name(&v.peer_name)?;
                Some(self.open_ns(&v.peer_netns)?)
            }
            _ => None,
        };
        self.netlink(&spec.netns, async move |mut h: Handle| {
            let mut msg = LinkMessage::default();
            msg.attributes
                .push(LinkAttribute::IfName(spec.name.clone()));
            if let Some(mtu) = spec.mtu {
                msg.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if let Some(mac) = &spec.mac {
                msg.attributes.push(LinkAttribute::Address(mac_vec(mac)));
            }
            let (kind, data) = match &spec.kind {
                LinkKind::Bridge => (InfoKind::Bridge, None),
                LinkKind::Dummy => (InfoKind::Dummy, None),
                LinkKind::Veth(v) => {
                    let mut peer = LinkMessage::default();
                    peer.attributes
                        .push(LinkAttribute::IfName(v.peer_name.clone()));
                    if let Some(mtu) = spec.mtu {
                        peer.attributes.push(LinkAttribute::Mtu(mtu));
                    }
                    if let Some(fd) = &peer_ns {
                        peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
                    }
                    (InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(peer))))
                }
                LinkKind::Vxlan(x) => {
                    if x.vni >= 1 << 24 {
                        return Err(invalid(format!("vni {} is not below 2^24", x.vni)));
                    }
                    let mut data = vec![
                        InfoVxlan::Id(x.vni),
                        InfoVxlan::Port(x.port.unwrap_or(4789)),
                        InfoVxlan::Learning(x.learning),
                    ];
                    match x.local.as_ref().map(ip) {
                        Some(IpAddr::V4(v)) => data.push(InfoVxlan::Local(v)),
                        Some(IpAddr::V6(v)) => data.push(InfoVxlan::Local6(v)),
                        None => {}
                    }
                    if let Some(dev) = &x.dev {
                        data.push(InfoVxlan::Link(index_of(&mut h, dev).await?));
                    }
                    (InfoKind::Vxlan, Some(InfoData::Vxlan(data)))
                }
            };
            let mut info = vec![NlLinkInfo::Kind(kind.clone())];
            if let Some(d) = data {
                info.push(NlLinkInfo::Data(d));
            }
            msg.attributes.push(LinkAttribute::LinkInfo(info));
            let created = change(
                &mut h,
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await;
            match created {
                Err(NetError::Other(e)) if e == Errno::EOPNOTSUPP.desc() => Err(
                    NetError::Unsupported(format!("this kernel cannot create {kind} links")),
                ),
                r => r,
            }
        })
    }

    fn delete_link(&self, netns: Netns, name: String) -> Result<(), NetError> {
        self.refuse_default_interface(&netns, &name)?;
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            change(&mut h, RouteNetlinkMessage::DelLink(set_msg(index)), 0).await
        })
    }

    fn get_link(&self, netns: Netns, name: String) -> Result<LinkInfo, NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let link = link_by_name(&mut h, &name).await?;
            let mut names = HashMap::new();
            let master = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Controller(i) => Some(*i),
                _ => None,
            });
            if let Some(m) = master {
                names = link_names(&all_links(&mut h).await?);
                names.retain(|i, _| *i == m);
            }
            Ok(link_info(&link, &names))
        })
    }

    fn list_links(&self, netns: Netns) -> Result<Vec<LinkInfo>, NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let links = all_links(&mut h).await?;
            let names = link_names(&links);
            Ok(links.iter().map(|l| link_info(l, &names)).collect())
        })
    }

    fn move_link(
        &self,
        name: String,
        source: Netns,
        target: Netns,
        new_name: Option<String>,
    ) -> Result<(), NetError> {
        if let Some(n) = &new_name {
            check_name(n)?;
        }
        self.refuse_default_interface(&source, &name)?;
        // The kernel moves the link first and renames it in the target after, so a taken
        // name would leave it moved under its old one: refuse before moving.
        let final_name = new_name.clone().unwrap_or_else(|| name.clone());
        match self.get_link(target.clone(), final_name) {
            Ok(_) => return Err(NetError::Exists),
            Err(NetError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let target = self.open_ns(&target)?;
        self.netlink(&source, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let mut msg = set_msg(index);
            msg.attributes
                .push(LinkAttribute::NetNsFd(target.as_raw_fd()));
            if let Some(n) = new_name {
                msg.attributes.push(LinkAttribute::IfName(n));
            }
            change(&mut h, RouteNetlinkMessage::SetLink(msg), 0).await
        })
    }

    fn set_link_up(&self, netns: Netns, name: String, up: bool) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let mut msg = set_msg(index);
            msg.header.change_mask = LinkFlags::Up;
            if up {
                msg.header.flags = LinkFlags::Up;
            }
            change(&mut h, RouteNetlinkMessage::SetLink(msg), 0).await
        })
    }

    fn set_link_mtu(&self, netns: Netns, name: String, mtu: u32) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let mut msg = set_msg(index);
            msg.attributes.push(LinkAttribute::Mtu(mtu));
            change(&mut h, RouteNetlinkMessage::SetLink(msg), 0).await
        })
    }

    fn set_link_master(
        &self,
        netns: Netns,
        name: String,
        master: Option<String>,
    ) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let controller = match &master {
                Some(m) => index_of(&mut h, m).await?,
                None => 0,
            };
            let mut msg = set_msg(index);
            msg.attributes.push(LinkAttribute::Controller(controller));
            change(&mut h, RouteNetlinkMessage::SetLink(msg), 0).await
        })
    }

    fn add_address(&self, netns: Netns, name: String, address: IpPrefix) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let msg = address_msg(index, &address)?;
            change(
                &mut h,
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        })
    }

    fn del_address(&self, netns: Netns, name: String, address: IpPrefix) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let msg = address_msg(index, &address)?;
            // The kernel says EADDRNOTAVAIL for an address the link does not have.
            match change(&mut h, RouteNetlinkMessage::DelAddress(msg), 0).await {
                Err(NetError::Other(e)) if e == Errno::EADDRNOTAVAIL.desc() => {
                    Err(NetError::NotFound)
                }
                r => r,
            }
        })
    }

    fn list_addresses(&self, netns: Netns, name: String) -> Result<Vec<IpPrefix>, NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &name).await?;
            let out = dump(
                &mut h,
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?;
            let mut list = Vec::new();
            for m in out {
                let RouteNetlinkMessage::NewAddress(a) = m else {
                    continue;
                };
                if a.header.index != index {
                    continue;
                }
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let address = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = local.or(address) {
                    list.push(IpPrefix {
                        address: wit_ip(ip),
                        prefix_length: a.header.prefix_len,
                    });
                }
            }
            Ok(list)
        })
    }

    fn add_route(&self, netns: Netns, route: Route) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let msg = route_msg(&mut h, &route, false).await?;
            change(
                &mut h,
                RouteNetlinkMessage::NewRoute(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await
        })
    }

    fn replace_route(&self, netns: Netns, route: Route) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let msg = route_msg(&mut h, &route, false).await?;
            change(
                &mut h,
                RouteNetlinkMessage::NewRoute(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
        })
    }

    fn del_route(&self, netns: Netns, route: Route) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let msg = route_msg(&mut h, &route, true).await?;
            change(&mut h, RouteNetlinkMessage::DelRoute(msg), 0).await
        })
    }

    fn list_routes(&self, netns: Netns, table: Option<u32>) -> Result<Vec<Route>, NetError> {
        let table = table.unwrap_or(MAIN_TABLE);
        self.netlink(&netns, async move |mut h: Handle| {
            let names = link_names(&all_links(&mut h).await?);
            let routes = all_routes(&mut h).await?;
            Ok(routes
                .iter()
                .filter(|r| route_table(r) == table && r.header.kind == RouteType::Unicast)
                .filter_map(|r| wit_route(r, &names))
                .collect())
        })
    }

    fn set_neighbour(&self, netns: Netns, entry: Neighbour) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &entry.dev).await?;
            let (family, address) = neighbour_address(&entry.address);
            let mut msg = NeighbourMessage::default();
            msg.header.family = family;
            msg.header.ifindex = index;
            msg.header.state = NeighbourState::Permanent;
            msg.attributes
                .push(NeighbourAttribute::Destination(address));
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac_vec(&entry.mac)));
            change(
                &mut h,
                RouteNetlinkMessage::NewNeighbour(msg),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .await
        })
    }

    fn del_neighbour(&self, netns: Netns, dev: String, address: IpAddress) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &dev).await?;
            let (family, address) = neighbour_address(&address);
            let mut msg = NeighbourMessage::default();
            msg.header.family = family;
            msg.header.ifindex = index;
            msg.attributes
                .push(NeighbourAttribute::Destination(address));
            change(&mut h, RouteNetlinkMessage::DelNeighbour(msg), 0).await
        })
    }

    fn add_fdb(&self, netns: Netns, entry: FdbEntry) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &entry.dev).await?;
            // Appending an entry that is there already succeeds in the kernel; the contract
            // says `exists`.
            let mut query = NeighbourMessage::default();
            query.header.family = NlFamily::Bridge;
            let wanted = fdb_msg(index, &entry);
            let present = dump(&mut h, RouteNetlinkMessage::GetNeighbour(query))
                .await?
                .into_iter()
                .any(|m| match m {
                    RouteNetlinkMessage::NewNeighbour(n) => {
                        n.header.ifindex == index && fdb_key(&n) == fdb_key(&wanted)
                    }
                    _ => false,
                });
            if present {
                return Err(NetError::Exists);
            }
            change(
                &mut h,
                RouteNetlinkMessage::NewNeighbour(fdb_msg(index, &entry)),
                NLM_F_CREATE | NLM_F_APPEND,
            )
            .await
        })
    }

    fn del_fdb(&self, netns: Netns, entry: FdbEntry) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let index = index_of(&mut h, &entry.dev).await?;
            change(
                &mut h,
                RouteNetlinkMessage::DelNeighbour(fdb_msg(index, &entry)),
                0,
            )
            .await
        })
    }

    fn set_forwarding(
        &self,
        netns: Netns,
        family: AddressFamily,
        dev: Option<String>,
        enabled: bool,
    ) -> Result<(), NetError> {
        if let Some(d) = &dev {
            check_name(d)?;
        }
        let value = if enabled { "1" } else { "0" };
        let path = match (family, &dev) {
            (AddressFamily::Ipv4, None) => PathBuf::from("/proc/sys/net/ipv4/ip_forward"),
            (AddressFamily::Ipv4, Some(d)) => {
                PathBuf::from(format!("/proc/sys/net/ipv4/conf/{d}/forwarding"))
            }
            (AddressFamily::Ipv6, None) => PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding"),
            (AddressFamily::Ipv6, Some(d)) => {
                PathBuf::from(format!("/proc/sys/net/ipv6/conf/{d}/forwarding"))
            }
        };
        // /proc/sys/net shows the namespace of the thread that opens it.
        self.in_ns(&netns, move || write_sysctl(&path, value))
    }

    fn ovs_add_bridge(&self, _name: String, _datapath: OvsDatapath) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn ovs_del_bridge(&self, _name: String) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn ovs_add_port(
        &self,
        _bridge: String,
        _port: String,
        _port_type: OvsPortType,
        _options: Vec<(String, String)>,
    ) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn ovs_del_port(&self, _bridge: String, _port: String) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn ovs_add_flows(&self, _bridge: String, _flows: Vec<String>) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn ovs_del_flows(&self, _bridge: String, _flow_match: Option<String>) -> Result<(), NetError> {
        Err(NetError::Unsupported(NO_OVS.into()))
    }

    fn node_pod_cidrs(&self) -> Result<Vec<IpPrefix>, NetError> {
        Ok(self.node.get().0)
    }

    fn node_addresses(&self) -> Result<Vec<NodeAddress>, NetError> {
        Ok(self.node.get().1)
    }

    fn default_interface(&self, family: AddressFamily) -> Result<LinkInfo, NetError> {
        let want = match family {
            AddressFamily::Ipv4 => NlFamily::Inet,
            AddressFamily::Ipv6 => NlFamily::Inet6,
        };
        self.netlink(&Netns::Host, async move |mut h: Handle| {
            let links = all_links(&mut h).await?;
            let names = link_names(&links);
            let routes = all_routes(&mut h).await?;
            let best = routes
                .iter()
                .filter(|r| {
                    r.header.address_family == want
                        && r.header.destination_prefix_length == 0
                        && route_table(r) == MAIN_TABLE
                        && r.header.kind == RouteType::Unicast
                })
                .filter_map(|r| {
                    let oif = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    })?;
                    let metric = r
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            RouteAttribute::Priority(p) => Some(*p),
                            _ => None,
                        })
                        .unwrap_or(0);
                    Some((metric, oif))
                })
                .min();
            let (_, oif) = best.ok_or(NetError::NotFound)?;
            links
                .iter()
                .find(|l| l.header.index == oif)
                .map(|l| link_info(l, &names))
                .ok_or(NetError::NotFound)
        })
    }

    /// Installs (or replaces) the masquerade rule for `source` in Keelson's own nftables table:
    /// traffic from it to anywhere but `exempt` leaves with the node's address.
    fn set_masquerade(&self, source: IpPrefix, exempt: Vec<IpPrefix>) -> Result<(), NetError> {
        let source = prefix(&source)?;
        let exempt = exempt.iter().map(prefix).collect::<Result<Vec<_>, _>>()?;
        nft::set_masquerade(source, &exempt)
    }

    /// Removes the masquerade rule for `source`, if any.
    fn clear_masquerade(&self, source: IpPrefix) -> Result<(), NetError> {
        nft::clear_masquerade(prefix(&source)?)
    }

    /// Sets the bridge port's hairpin mode (`IFLA_BRPORT_MODE`) through the port's link-info
    /// data, as `ip link set NAME type bridge_slave hairpin on` does.
    fn set_link_hairpin(&self, netns: Netns, name: String, on: bool) -> Result<(), NetError> {
        self.netlink(&netns, async move |mut h: Handle| {
            let link = link_by_name(&mut h, &name).await?;
            let not_a_port = || invalid(format!("{name} is not attached to a bridge"));
            let attached = link
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(i) if *i != 0));
            let port_kind = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    NlLinkInfo::PortKind(k) => Some(k.clone()),
                    _ => None,
                }),
                _ => None,
            });
            if !attached || port_kind.is_some_and(|k| k != InfoPortKind::Bridge) {
                return Err(not_a_port());
            }
            let mut msg = set_msg(link.header.index);
            msg.attributes.push(LinkAttribute::LinkInfo(vec![
                NlLinkInfo::PortKind(InfoPortKind::Bridge),
                NlLinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    on,
                )])),
            ]));
            // A new-link request for an existing link changes it; its port data goes to the
            // bridge it is attached to.
            change(&mut h, RouteNetlinkMessage::NewLink(msg), 0).await
        })
    }
}
