//! `NetlinkHostNet` on real kernel objects: a test network namespace standing for a pod, a
//! bridge and a veth pair into it, hairpin mode, addresses, routes, neighbours, FDB entries,
//! forwarding and masquerading. Needs root. Every object has a unique name and is removed on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use keelson_kubelet::network::{LocalNode, NetlinkHostNet, NetnsRegistry, nft};
use keelson_plugin_host::{
    AddressFamily, FdbEntry, HostNet, IpAddress, IpPrefix, LinkKind, LinkSpec, Neighbour, NetError,
    Netns, Route, VethOptions, VxlanOptions,
};

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn rand_u16() -> u16 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    ((n ^ std::process::id().wrapping_mul(2654435761)) % 60000) as u16 + 1000
}

/// What the test made: removed on drop, whatever happened.
struct Fixture {
    netns: String,
    bridge: String,
    veth: String,
    dummy: String,
    cidr: ipnet::IpNet,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let moved = [format!("{}p", self.dummy), format!("{}m", self.dummy)];
        for link in [&self.bridge, &self.veth, &self.dummy, &moved[0], &moved[1]] {
            let _ = sh("ip", &["link", "del", link]);
        }
        let _ = sh("ip", &["netns", "del", &self.netns]);
        let _ = nft::clear_masquerade(self.cidr);
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddress {
    IpAddress::Ipv4((a, b, c, d))
}

fn pfx(address: IpAddress, prefix_length: u8) -> IpPrefix {
    IpPrefix {
        address,
        prefix_length,
    }
}

#[test]
fn netlink_host_net_drives_real_links_routes_and_nat() {
    let r = rand_u16();
    let tag = format!("{r:05}");
    let (a, b) = (10u8, (r % 200) as u8 + 20);
    let c = (r / 200 % 250) as u8 + 1;
    let fx = Fixture {
        netns: format!("kt-hostnet-{tag}"),
        bridge: format!("ktb{tag}"),
        veth: format!("ktv{tag}"),
        dummy: format!("ktd{tag}"),
        cidr: format!("{a}.{b}.{c}.0/24").parse().unwrap(),
    };
    let (ok, out) = sh("ip", &["netns", "add", &fx.netns]);
    assert!(ok, "ip netns add (the test needs root and iproute2): {out}");

    let registry = NetnsRegistry::default();
    registry.register("pod-1", format!("/run/netns/{}", fx.netns));
    let net = NetlinkHostNet::new(registry, LocalNode::default()).unwrap();
    let pod = || Netns::Pod("pod-1".into());

    // Unknown namespaces and links.
    assert_eq!(
        net.list_links(Netns::Pod("nobody".into())).err(),
        Some(NetError::NotFound)
    );
    assert_eq!(
        net.get_link(Netns::Host, fx.bridge.clone()).err(),
        Some(NetError::NotFound)
    );

    // A bridge on the host with the gateway address.
    let bridge = LinkSpec {
        name: fx.bridge.clone(),
        kind: LinkKind::Bridge,
        netns: Netns::Host,
        mtu: Some(1400),
        mac: Some((0x02, 0, 0, 0, 0x12, 0x34)),
    };
    net.create_link(bridge.clone()).unwrap();
    assert_eq!(net.create_link(bridge).err(), Some(NetError::Exists));
    net.set_link_up(Netns::Host, fx.bridge.clone(), true)
        .unwrap();
    let gw = pfx(v4(a, b, c, 1), 24);
    net.add_address(Netns::Host, fx.bridge.clone(), gw).unwrap();
    assert_eq!(
        net.add_address(Netns::Host, fx.bridge.clone(), gw).err(),
        Some(NetError::Exists)
    );
    let info = net.get_link(Netns::Host, fx.bridge.clone()).unwrap();
    assert_eq!(info.kind, "bridge");
    assert_eq!(info.mtu, 1400);
    assert_eq!(info.mac, Some((0x02, 0, 0, 0, 0x12, 0x34)));
    assert!(info.up);
    assert_eq!(
        net.list_addresses(Netns::Host, fx.bridge.clone()).unwrap(),
        vec![gw]
    );

    // A veth pair whose peer is created inside the pod as eth0.
    net.create_link(LinkSpec {
        name: fx.veth.clone(),
        kind: LinkKind::Veth(VethOptions {
            peer_name: "eth0".into(),
            peer_netns: pod(),
        }),
        netns: Netns::Host,
        mtu: Some(1400),
        mac: None,
    })
    .unwrap();
    net.set_link_master(Netns::Host, fx.veth.clone(), Some(fx.bridge.clone()))
        .unwrap();
    net.set_link_up(Netns::Host, fx.veth.clone(), true).unwrap();
    let veth = net.get_link(Netns::Host, fx.veth.clone()).unwrap();
    assert_eq!(veth.kind, "veth");
    assert_eq!(veth.master.as_deref(), Some(fx.bridge.as_str()));

    // Hairpin mode on the bridge port, off again, and refused for a link outside any bridge.
    let hairpin = || {
        let path = format!("/sys/class/net/{}/brport/hairpin_mode", fx.veth);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(hairpin(), "0");
    net.set_link_hairpin(Netns::Host, fx.veth.clone(), true)
        .unwrap();
    assert_eq!(hairpin(), "1");
    net.set_link_hairpin(Netns::Host, fx.veth.clone(), false)
        .unwrap();
    assert_eq!(hairpin(), "0");
    assert!(
        matches!(
            net.set_link_hairpin(Netns::Host, fx.bridge.clone(), true),
            Err(NetError::InvalidArgument(_))
        ),
        "a bridge is no bridge port"
    );
    assert!(
        matches!(
            net.set_link_hairpin(pod(), "lo".into(), true),
            Err(NetError::InvalidArgument(_))
        ),
        "lo is no bridge port"
    );
    assert_eq!(
        net.set_link_hairpin(Netns::Host, format!("{}x", fx.dummy), true)
            .err(),
        Some(NetError::NotFound)
    );
    let in_pod = net.list_links(pod()).unwrap();
    let names: Vec<&str> = in_pod.iter().map(|l| l.name.as_str()).collect();
    assert!(
        names.contains(&"eth0") && names.contains(&"lo"),
        "{names:?}"
    );
    assert_eq!(in_pod.iter().find(|l| l.name == "eth0").unwrap().mtu, 1400);

    // The pod's address and default route.
    let pod_ip = pfx(v4(a, b, c, 2), 24);
    net.add_address(pod(), "eth0".into(), pod_ip).unwrap();
    net.set_link_up(pod(), "eth0".into(), true).unwrap();
    net.set_link_up(pod(), "lo".into(), true).unwrap();
    let default = Route {
        dst: pfx(v4(0, 0, 0, 0), 0),
        gateway: Some(v4(a, b, c, 1)),
        dev: Some("eth0".into()),
        onlink: false,
        table: None,
        src: None,
        metric: None,
    };
    net.add_route(pod(), default.clone()).unwrap();
    assert_eq!(
        net.add_route(pod(), default.clone()).err(),
        Some(NetError::Exists)
    );
    net.replace_route(pod(), default.clone()).unwrap();
    let routes = net.list_routes(pod(), None).unwrap();
    assert!(routes.contains(&default), "{routes:?}");
    // A route in another table, with a metric, source and onlink gateway.
    let extra = Route {
        dst: pfx(v4(198, 51, 100, 0), 24),
        gateway: Some(v4(203, 0, 113, 1)),
        dev: Some("eth0".into()),
        onlink: true,
        table: Some(100),
        src: Some(v4(a, b, c, 2)),
        metric: Some(50),
    };
    net.add_route(pod(), extra.clone()).unwrap();
    assert_eq!(
        net.list_routes(pod(), Some(100)).unwrap(),
        vec![extra.clone()]
    );
    net.del_route(pod(), extra.clone()).unwrap();
    assert_eq!(net.del_route(pod(), extra).err(), Some(NetError::NotFound));
    let (_, shown) = sh("ip", &["-n", &fx.netns, "route", "show", "default"]);
    assert!(
        shown.contains(&format!("via {a}.{b}.{c}.1 dev eth0")),
        "{shown}"
    );

    // The node reaches the pod over the bridge: a listener inside the pod's namespace.
    let addr: SocketAddr = format!("{a}.{b}.{c}.2:18080").parse().unwrap();
    let ns_path = format!("/run/netns/{}", fx.netns);
    let listener = std::thread::spawn(move || {
        let ns = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(false).unwrap();
        let _ = l.accept();
    });
    let mut connected = Err(std::io::Error::other("not tried"));
    for _ in 0..50 {
        connected = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
        if connected.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(connected.is_ok(), "connect to the pod: {connected:?}");
    listener.join().unwrap();

    // Forwarding in the pod's namespace, not the host's.
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    net.set_forwarding(pod(), AddressFamily::Ipv4, None, true)
        .unwrap();
    let (_, fwd) = sh(
        "ip",
        &[
            "netns",
            "exec",
            &fx.netns,
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ],
    );
    assert_eq!(fwd.trim(), "1");
    net.set_forwarding(pod(), AddressFamily::Ipv4, Some("eth0".into()), false)
        .unwrap();
    let (_, fwd) = sh(
        "ip",
        &[
            "netns",
            "exec",
            &fx.netns,
            "cat",
            "/proc/sys/net/ipv4/conf/eth0/forwarding",
        ],
    );
    assert_eq!(fwd.trim(), "0");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );

    // Neighbours.
    let mac = (0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee);
    net.set_neighbour(
        pod(),
        Neighbour {
            dev: "eth0".into(),
            address: v4(a, b, c, 50),
            mac,
        },
    )
    .unwrap();
    let (_, neigh) = sh("ip", &["-n", &fx.netns, "neigh", "show", "dev", "eth0"]);
    assert!(
        neigh.contains(&format!(
            "{a}.{b}.{c}.50 lladdr 02:aa:bb:cc:dd:ee PERMANENT"
        )),
        "{neigh}"
    );
    net.del_neighbour(pod(), "eth0".into(), v4(a, b, c, 50))
        .unwrap();

    // A vxlan device in the pod with a flood entry.
    net.create_link(LinkSpec {
        name: "vx0".into(),
        kind: LinkKind::Vxlan(VxlanOptions {
            vni: 42,
            port: Some(8472),
            local: Some(v4(a, b, c, 2)),
            dev: Some("eth0".into()),
            learning: false,
        }),
        netns: pod(),
        mtu: Some(1350),
        mac: None,
    })
    .unwrap();
    assert_eq!(net.get_link(pod(), "vx0".into()).unwrap().kind, "vxlan");
    let flood = FdbEntry {
        dev: "vx0".into(),
        mac: (0, 0, 0, 0, 0, 0),
        dst: Some(v4(192, 0, 2, 77)),
        vni: None,
        port: None,
    };
    net.add_fdb(pod(), flood.clone()).unwrap();
    assert_eq!(
        net.add_fdb(pod(), flood.clone()).err(),
        Some(NetError::Exists)
    );
    let second = FdbEntry {
        dst: Some(v4(192, 0, 2, 78)),
        ..flood.clone()
    };
    net.add_fdb(pod(), second.clone()).unwrap();
    let (_, fdb) = sh("bridge", &["-n", &fx.netns, "fdb", "show", "dev", "vx0"]);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.0.2.77"), "{fdb}");
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.0.2.78"), "{fdb}");
    net.del_fdb(pod(), flood).unwrap();
    net.del_fdb(pod(), second).unwrap();
    let (_, fdb) = sh("bridge", &["-n", &fx.netns, "fdb", "show", "dev", "vx0"]);
    assert!(!fdb.contains("192.0.2.77"), "{fdb}");

    // A link kind the kernel lacks (this kernel may have dummy links, or not).
    match net.create_link(LinkSpec {
        name: fx.dummy.clone(),
        kind: LinkKind::Dummy,
        netns: Netns::Host,
        mtu: None,
        mac: None,
    }) {
        Ok(()) => net.delete_link(Netns::Host, fx.dummy.clone()).unwrap(),
        Err(e) => assert!(matches!(e, NetError::Unsupported(_)), "{e:?}"),
    }

    // Moving a link into the pod, renamed on the way.
    net.create_link(LinkSpec {
        name: fx.dummy.clone(),
        kind: LinkKind::Veth(VethOptions {
            peer_name: format!("{}p", fx.dummy),
            peer_netns: Netns::Host,
        }),
        netns: Netns::Host,
        mtu: None,
        mac: None,
    })
    .unwrap();
    net.move_link(fx.dummy.clone(), Netns::Host, pod(), Some("net1".into()))
        .unwrap();
    assert_eq!(net.get_link(pod(), "net1".into()).unwrap().kind, "veth");
    assert_eq!(
        net.get_link(Netns::Host, fx.dummy.clone()).err(),
        Some(NetError::NotFound)
    );
    assert_eq!(
        net.move_link(
            "net1".into(),
            pod(),
            Netns::Host,
            Some(format!("{}p", fx.dummy))
        )
        .err(),
        Some(NetError::Exists),
        "moving back under a name that is taken"
    );
    net.move_link(
        "net1".into(),
        pod(),
        Netns::Host,
        Some(format!("{}m", fx.dummy)),
    )
    .unwrap();
    net.delete_link(Netns::Host, format!("{}m", fx.dummy))
        .unwrap();
    assert_eq!(
        net.get_link(Netns::Host, format!("{}p", fx.dummy)).err(),
        Some(NetError::NotFound)
    );

    // Masquerading in Keelson's own table, replaced idempotently and cleared.
    let cidr = pfx(v4(a, b, c, 0), 24);
    let exempt = vec![cidr, pfx(v4(10, 96, 0, 0), 12)];
    net.set_masquerade(cidr, exempt.clone()).unwrap();
    net.set_masquerade(cidr, exempt).unwrap();
    let (ok, table) = sh("nft", &["list", "table", "ip", nft::TABLE]);
    assert!(ok, "{table}");
    let comment = nft::comment(&fx.cidr);
    assert_eq!(table.matches(&comment).count(), 1, "{table}");
    assert!(
        table.contains(&format!("ip saddr {} ip daddr != {{ ", fx.cidr)),
        "{table}"
    );
    assert!(table.contains("masquerade"), "{table}");
    net.clear_masquerade(cidr).unwrap();
    let (_, table) = sh("nft", &["list", "table", "ip", nft::TABLE]);
    assert!(!table.contains(&comment), "{table}");
    net.clear_masquerade(cidr).unwrap();

    // The default interface is the one `ip route` names.
    let (_, shown) = sh("ip", &["route", "show", "default"]);
    match net.default_interface(AddressFamily::Ipv4) {
        Ok(link) => {
            assert!(shown.contains(&format!("dev {}", link.name)), "{shown}");
            // It may not be moved away (nor deleted); the target is unknown, so nothing
            // would move even if the refusal failed.
            assert_eq!(
                net.move_link(link.name, Netns::Host, Netns::Pod("nobody".into()), None)
                    .err(),
                Some(NetError::PermissionDenied)
            );
        }
        Err(e) => assert!(shown.trim().is_empty(), "{e:?} but: {shown}"),
    }

    // Open vSwitch is not there yet.
    assert!(matches!(
        net.ovs_del_bridge("br-int".into()),
        Err(NetError::Unsupported(_))
    ));

    // Deleting the host end removes the pair.
    net.delete_link(Netns::Host, fx.veth.clone()).unwrap();
    assert_eq!(
        net.get_link(pod(), "eth0".into()).err(),
        Some(NetError::NotFound)
    );
    assert_eq!(
        net.delete_link(Netns::Host, fx.veth.clone()).err(),
        Some(NetError::NotFound)
    );
}
