//! The backend driven through the SDK's harness, as the host drives it.

use keelson_plugin_sdk::fixtures::{attach_request, detach_request, network_node};
use keelson_plugin_sdk::net::LinkInfo;
use keelson_plugin_sdk::testing::{NetCall, NetworkHarness};

use super::*;

fn prefix(a: u8, b: u8, c: u8, d: u8, length: u8) -> IpPrefix {
    IpPrefix {
        address: IpAddress::Ipv4((a, b, c, d)),
        prefix_length: length,
    }
}

fn local_node(pod_cidr: Option<IpPrefix>) -> NodeNetworkInfo {
    let mut node = network_node("n1", true);
    node.pod_cidrs = pod_cidr.into_iter().collect();
    node
}

/// A harness whose local node has `pod_cidr`, with the setup calls cleared from view.
fn ready_with(options: &str, pod_cidr: IpPrefix) -> (NetworkHarness<Bridge>, usize) {
    let mut h = NetworkHarness::<Bridge>::new(options).expect("configure");
    h.node_added(&local_node(Some(pod_cidr)))
        .expect("node-added");
    let seen = h.net_calls().len();
    (h, seen)
}

fn ready() -> (NetworkHarness<Bridge>, usize) {
    ready_with(
        r#"{"clusterCIDR": "10.244.0.0/16"}"#,
        prefix(10, 244, 1, 0, 24),
    )
}

fn names(calls: &[NetCall]) -> Vec<&'static str> {
    calls.iter().map(|c| c.name).collect()
}

fn pod_ip(r: &AttachResult) -> IpAddress {
    r.addresses[0].address.address
}

fn attached(uid: &str, ip: (u8, u8, u8, u8)) -> AttachedPod {
    AttachedPod {
        pod_namespace: "default".into(),
        pod_name: format!("pod-{uid}"),
        pod_uid: uid.into(),
        sandbox_id: format!("sandbox-{uid}"),
        interface_name: "eth0".into(),
        addresses: vec![PodAddress {
            address: IpPrefix {
                address: IpAddress::Ipv4(ip),
                prefix_length: 24,
            },
            gateway: Some(IpAddress::Ipv4((10, 244, 1, 1))),
        }],
    }
}

#[test]
fn the_local_node_gets_a_bridge_gateway_forwarding_and_masquerading() {
    let (h, _) = ready();
    let calls = h.net_calls();
    assert_eq!(
        names(&calls),
        [
            "create-link",
            "list-addresses",
            "add-address",
            "set-link-up",
            "set-forwarding",
            "set-masquerade"
        ]
    );
    let (spec,): (LinkSpec,) = calls[0].args().expect("args");
    assert_eq!(
        (spec.name.as_str(), &spec.kind, spec.netns, spec.mtu),
        ("keelson0", &LinkKind::Bridge, Netns::Host, Some(1500))
    );
    let (_, bridge, gateway): (Netns, String, IpPrefix) = calls[2].args().expect("args");
    assert_eq!(
        (bridge.as_str(), gateway),
        ("keelson0", prefix(10, 244, 1, 1, 24))
    );
    let (_, _, up): (Netns, String, bool) = calls[3].args().expect("args");
    assert!(up);
    let (netns, family, dev, enabled): (Netns, AddressFamily, Option<String>, bool) =
        calls[4].args().expect("args");
    assert_eq!(
        (netns, family, dev, enabled),
        (Netns::Host, AddressFamily::Ipv4, None, true)
    );
    let (source, exempt): (IpPrefix, Vec<IpPrefix>) = calls[5].args().expect("args");
    assert_eq!(source, prefix(10, 244, 1, 0, 24));
    assert_eq!(exempt, [prefix(10, 244, 0, 0, 16)]);
}

#[test]
fn without_a_cluster_cidr_the_pod_cidr_is_exempt_from_masquerading() {
    let (h, _) = ready_with("{}", prefix(10, 88, 3, 0, 24));
    let last = h.net_calls().pop().expect("calls");
    let (source, exempt): (IpPrefix, Vec<IpPrefix>) = last.args().expect("args");
    assert_eq!(source, prefix(10, 88, 3, 0, 24));
    assert_eq!(exempt, [prefix(10, 88, 3, 0, 24)]);
}

#[test]
fn masquerading_off_clears_a_rule_left_behind() {
    let mut h = NetworkHarness::<Bridge>::new(r#"{"masquerade": false}"#).expect("configure");
    h.respond("clear-masquerade", &Err::<(), _>(NetError::NotFound))
        .expect("respond");
    h.node_added(&local_node(Some(prefix(10, 244, 1, 0, 24))))
        .expect("node-added");
    let calls = h.net_calls();
    assert_eq!(calls.last().map(|c| c.name), Some("clear-masquerade"));
    assert!(!names(&calls).contains(&"set-masquerade"));
}

#[test]
fn other_nodes_and_a_node_without_a_cidr_change_nothing() {
    let mut h = NetworkHarness::<Bridge>::new("{}").expect("configure");
    let mut peer = network_node("n2", false);
    peer.pod_cidrs = vec![prefix(10, 244, 2, 0, 24)];
    h.node_added(&peer).expect("peer added");
    h.node_updated(&peer).expect("peer updated");
    h.node_removed(&peer).expect("peer removed");
    h.node_added(&local_node(None)).expect("local without cidr");
    let mut v6 = local_node(None);
    v6.pod_cidrs = vec![IpPrefix {
        address: IpAddress::Ipv6((0xfd00, 0, 0, 1, 0, 0, 0, 0)),
        prefix_length: 64,
    }];
    h.node_added(&v6).expect("IPv6 only");
    assert_eq!(h.net_calls(), []);
}

#[test]
fn attach_before_a_pod_cidr_is_unavailable_with_a_clear_message() {
    let mut h = NetworkHarness::<Bridge>::new("{}").expect("configure");
    h.node_added(&local_node(None)).expect("node-added");
    let e = h
        .attach_pod(&attach_request("web", "u1"))
        .expect_err("no cidr");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(
        e.message,
        "the node has no IPv4 pod CIDR yet (spec.podCIDRs is empty); pods can be attached once \
         one is assigned"
    );
    assert_eq!(h.net_calls(), []);
}

#[test]
fn a_pod_cidr_too_small_for_pods_is_refused() {
    let mut h = NetworkHarness::<Bridge>::new("{}").expect("configure");
    let e = h
        .node_added(&local_node(Some(prefix(10, 244, 1, 0, 31))))
        .expect_err("/31");
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        "the pod CIDR of node n1 is too small: a /31 leaves no address for pods"
    );
}

#[test]
fn attach_builds_the_veth_address_and_default_route() {
    let (mut h, seen) = ready();
    let mac = (0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x02);
    h.respond(
        "get-link",
        &Ok::<_, NetError>(LinkInfo {
            name: "eth0".into(),
            index: 2,
            kind: "veth".into(),
            mtu: 1500,
            mac: Some(mac),
            up: true,
            master: None,
        }),
    )
    .expect("respond");
    let r = h.attach_pod(&attach_request("web", "u1")).expect("attach");
    let calls = h.net_calls().split_off(seen);
    assert_eq!(
        names(&calls),
        [
            "create-link",
            "set-link-mtu",
            "set-link-master",
            "set-link-hairpin",
            "set-link-up",
            "add-address",
            "set-link-up",
            "set-link-up",
            "replace-route",
            "get-link"
        ]
    );
    let host_end = host_veth_name("sandbox-u1");
    let (spec,): (LinkSpec,) = calls[0].args().expect("args");
    assert_eq!(spec.name, host_end);
    assert_eq!(spec.netns, Netns::Host);
    assert_eq!(
        spec.kind,
        LinkKind::Veth(VethOptions {
            peer_name: "eth0".into(),
            peer_netns: Netns::Pod("u1".into()),
        })
    );
    let (netns, name, master): (Netns, String, Option<String>) = calls[2].args().expect("args");
    assert_eq!(
        (netns, name, master.as_deref()),
        (Netns::Host, host_end.clone(), Some("keelson0"))
    );
    let (netns, name, on): (Netns, String, bool) = calls[3].args().expect("args");
    assert_eq!((netns, name, on), (Netns::Host, host_end.clone(), true));
    let (netns, name, address): (Netns, String, IpPrefix) = calls[5].args().expect("args");
    assert_eq!(
        (netns, name.as_str(), address),
        (Netns::Pod("u1".into()), "eth0", prefix(10, 244, 1, 2, 24))
    );
    let (netns, route): (Netns, Route) = calls[8].args().expect("args");
    assert_eq!(netns, Netns::Pod("u1".into()));
    assert_eq!(
        route,
        default_route(u32::from_be_bytes([10, 244, 1, 1]), "eth0")
    );

    assert_eq!(
        r,
        AttachResult {
            addresses: vec![PodAddress {
                address: prefix(10, 244, 1, 2, 24),
                gateway: Some(IpAddress::Ipv4((10, 244, 1, 1))),
            }],
            routes: vec![route],
            mac: Some(mac),
            mtu: Some(1500),
        }
    );
}

#[test]
fn hairpin_off_leaves_the_bridge_port_alone() {
    let (mut h, seen) = ready_with(r#"{"hairpin": false}"#, prefix(10, 244, 1, 0, 24));
    h.attach_pod(&attach_request("a", "a")).expect("attach");
    let calls = h.net_calls().split_off(seen);
    assert!(
        !names(&calls).contains(&"set-link-hairpin"),
        "{:?}",
        names(&calls)
    );
}

#[test]
fn a_failed_hairpin_step_fails_the_attach_with_its_name() {
    let (mut h, _) = ready();
    h.respond(
        "set-link-hairpin",
        &Err::<(), _>(NetError::InvalidArgument("not attached to a bridge".into())),
    )
    .expect("respond");
    let e = h
        .attach_pod(&attach_request("a", "a"))
        .expect_err("must fail");
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        format!(
            "set hairpin mode on {}: not attached to a bridge",
            host_veth_name("sandbox-a")
        )
    );
}

#[test]
fn a_host_without_hairpin_support_still_attaches_the_pod() {
    let (mut h, _) = ready();
    h.respond(
        "set-link-hairpin",
        &Err::<(), _>(NetError::Unsupported("set-link-hairpin".into())),
    )
    .expect("respond");
    let r = h.attach_pod(&attach_request("a", "a")).expect("attach");
    assert_eq!(pod_ip(&r), IpAddress::Ipv4((10, 244, 1, 2)));
}

#[test]
fn host_veth_names_are_short_stable_and_distinct() {
    let a = host_veth_name("5f0c8f0d5a3e4b2c9d1e7f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c");
    assert_eq!(a.len(), 12);
    assert!(a.starts_with("veth") && a[4..].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        a,
        host_veth_name("5f0c8f0d5a3e4b2c9d1e7f6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c")
    );
    assert_ne!(host_veth_name("sandbox-1"), host_veth_name("sandbox-2"));
    // Fixed, so a name computed before an upgrade is found after it.
    assert_eq!(host_veth_name(""), "veth811c9dc5");
}

#[test]
fn pods_get_the_lowest_free_address_in_order() {
    let (mut h, _) = ready();
    let ips: Vec<IpAddress> = ["a", "b", "c"]
        .iter()
        .map(|uid| pod_ip(&h.attach_pod(&attach_request(uid, uid)).expect("attach")))
        .collect();
    assert_eq!(
        ips,
        [
            IpAddress::Ipv4((10, 244, 1, 2)),
            IpAddress::Ipv4((10, 244, 1, 3)),
            IpAddress::Ipv4((10, 244, 1, 4)),
        ]
    );
    h.detach_pod(&detach_request("b", "b")).expect("detach b");
    let d = h.attach_pod(&attach_request("d", "d")).expect("attach d");
    assert_eq!(pod_ip(&d), IpAddress::Ipv4((10, 244, 1, 3)), "b's address");
    let e = h.attach_pod(&attach_request("e", "e")).expect("attach e");
    assert_eq!(pod_ip(&e), IpAddress::Ipv4((10, 244, 1, 5)));
}

#[test]
fn attaching_a_sandbox_again_gives_the_same_result() {
    let (mut h, _) = ready();
    h.respond("create-link", &Err::<(), _>(NetError::Exists))
        .expect("respond");
    h.respond("add-address", &Err::<(), _>(NetError::Exists))
        .expect("respond");
    let first = h.attach_pod(&attach_request("a", "a")).expect("attach");
    let again = h.attach_pod(&attach_request("a", "a")).expect("again");
    assert_eq!(first, again);
    let other = h.attach_pod(&attach_request("b", "b")).expect("b");
    assert_eq!(pod_ip(&other), IpAddress::Ipv4((10, 244, 1, 3)));
}

#[test]
fn a_failed_step_names_itself_and_keeps_the_address_for_the_retry() {
    let (mut h, _) = ready();
    h.respond(
        "set-link-master",
        &Err::<(), _>(NetError::Other("no such device".into())),
    )
    .expect("respond");
    let e = h
        .attach_pod(&attach_request("a", "a"))
        .expect_err("must fail");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(
        e.message,
        format!(
            "attach {} to keelson0: no such device",
            host_veth_name("sandbox-a")
        )
    );
    h.respond("set-link-master", &Ok::<(), NetError>(()))
        .expect("respond");
    let r = h.attach_pod(&attach_request("a", "a")).expect("retry");
    assert_eq!(pod_ip(&r), IpAddress::Ipv4((10, 244, 1, 2)));
}

#[test]
fn restored_pods_keep_their_addresses_after_a_restart() {
    let (mut h, _) = ready();
    h.restore_pod(&attached("old1", (10, 244, 1, 2)))
        .expect("restore");
    h.restore_pod(&attached("old2", (10, 244, 1, 4)))
        .expect("restore");
    let n = h.attach_pod(&attach_request("n", "n")).expect("attach");
    assert_eq!(pod_ip(&n), IpAddress::Ipv4((10, 244, 1, 3)));
    let m = h.attach_pod(&attach_request("m", "m")).expect("attach");
    assert_eq!(pod_ip(&m), IpAddress::Ipv4((10, 244, 1, 5)));
    // A restored pod attached again (the kubelet repeating a call) keeps its address.
    let old = h
        .attach_pod(&attach_request("pod-old2", "old2"))
        .expect("again");
    assert_eq!(pod_ip(&old), IpAddress::Ipv4((10, 244, 1, 4)));
    // Detaching a restored pod frees its address.
    h.detach_pod(&detach_request("pod-old1", "old1"))
        .expect("detach");
    let p = h.attach_pod(&attach_request("p", "p")).expect("attach");
    assert_eq!(pod_ip(&p), IpAddress::Ipv4((10, 244, 1, 2)));
}

#[test]
fn an_exhausted_pod_cidr_is_a_clear_error() {
    // A /29 spans 8 addresses: network, gateway, broadcast and 5 for pods.
    let (mut h, _) = ready_with("{}", prefix(10, 244, 1, 0, 29));
    for uid in ["a", "b", "c", "d", "e"] {
        h.attach_pod(&attach_request(uid, uid)).expect("attach");
    }
    let e = h
        .attach_pod(&attach_request("f", "f"))
        .expect_err("exhausted");
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert_eq!(
        e.message,
        "no free address in the pod CIDR 10.244.1.0/29: all 5 pod addresses are in use"
    );
    h.detach_pod(&detach_request("c", "c")).expect("detach");
    let f = h.attach_pod(&attach_request("f", "f")).expect("room again");
    assert_eq!(pod_ip(&f), IpAddress::Ipv4((10, 244, 1, 4)));
}

#[test]
fn detaching_an_unknown_sandbox_is_not_an_error() {
    let (mut h, seen) = ready();
    h.respond("delete-link", &Err::<(), _>(NetError::NotFound))
        .expect("respond");
    h.detach_pod(&detach_request("ghost", "ghost"))
        .expect("detach");
    let calls = h.net_calls().split_off(seen);
    assert_eq!(names(&calls), ["delete-link"]);
    let (netns, name): (Netns, String) = calls[0].args().expect("args");
    assert_eq!(
        (netns, name),
        (Netns::Host, host_veth_name("sandbox-ghost"))
    );
}

#[test]
fn a_failed_detach_keeps_the_address_until_it_succeeds() {
    let (mut h, _) = ready();
    h.attach_pod(&attach_request("a", "a")).expect("attach");
    h.respond(
        "delete-link",
        &Err::<(), _>(NetError::Other("device busy".into())),
    )
    .expect("respond");
    h.detach_pod(&detach_request("a", "a"))
        .expect_err("must fail");
    let b = h.attach_pod(&attach_request("b", "b")).expect("attach");
    assert_eq!(pod_ip(&b), IpAddress::Ipv4((10, 244, 1, 3)));
}

#[test]
fn a_pod_cidr_change_moves_the_gateway_and_the_masquerade_rule() {
    let (mut h, seen) = ready();
    // The bridge still holds the old gateway, as after a restart.
    h.respond(
        "list-addresses",
        &Ok::<_, NetError>(vec![
            prefix(10, 244, 1, 1, 24),
            IpPrefix {
                address: IpAddress::Ipv6((0xfe80, 0, 0, 0, 1, 2, 3, 4)),
                prefix_length: 64,
            },
        ]),
    )
    .expect("respond");
    h.node_updated(&local_node(Some(prefix(10, 244, 7, 0, 24))))
        .expect("node-updated");
    let calls = h.net_calls().split_off(seen);
    assert_eq!(
        names(&calls),
        [
            "create-link",
            "list-addresses",
            "del-address",
            "clear-masquerade",
            "add-address",
            "set-link-up",
            "set-forwarding",
            "set-masquerade"
        ]
    );
    let (_, _, removed): (Netns, String, IpPrefix) = calls[2].args().expect("args");
    assert_eq!(removed, prefix(10, 244, 1, 1, 24));
    let (cleared,): (IpPrefix,) = calls[3].args().expect("args");
    assert_eq!(cleared, prefix(10, 244, 1, 0, 24));
    let (_, _, added): (Netns, String, IpPrefix) = calls[4].args().expect("args");
    assert_eq!(added, prefix(10, 244, 7, 1, 24));
    let a = h.attach_pod(&attach_request("a", "a")).expect("attach");
    assert_eq!(pod_ip(&a), IpAddress::Ipv4((10, 244, 7, 2)));
}

#[test]
fn a_pod_cidr_change_without_leftovers_still_clears_the_old_rule() {
    let (mut h, seen) = ready();
    h.node_updated(&local_node(Some(prefix(10, 244, 7, 0, 24))))
        .expect("node-updated");
    let calls = h.net_calls().split_off(seen);
    let cleared: Vec<IpPrefix> = calls
        .iter()
        .filter(|c| c.name == "clear-masquerade")
        .map(|c| c.args::<(IpPrefix,)>().expect("args").0)
        .collect();
    assert_eq!(cleared, [prefix(10, 244, 1, 0, 24)]);
    // The same CIDR again changes nothing that needs undoing.
    let seen = h.net_calls().len();
    h.node_updated(&local_node(Some(prefix(10, 244, 7, 0, 24))))
        .expect("again");
    assert!(!names(&h.net_calls()[seen..]).contains(&"clear-masquerade"));
}

#[test]
fn options_are_checked_at_configure() {
    for (options, expected) in [
        (r#"{"bridge": ""}"#, "option \"bridge\""),
        (r#"{"mtu": 70000}"#, "option \"mtu\""),
        (r#"{"clusterCIDR": "10.244.0.0"}"#, "option \"clusterCIDR\""),
        (r#"{"masq": true}"#, "unknown field `masq`"),
    ] {
        let Err(e) = NetworkHarness::<Bridge>::new(options) else {
            panic!("{options} was accepted");
        };
        assert_eq!(e.kind, ErrorKind::InvalidConfig, "{options}");
        assert!(e.message.contains(expected), "{options}: {}", e.message);
    }
}

#[test]
fn the_mtu_and_bridge_options_reach_every_link() {
    let (mut h, seen) = ready_with(
        r#"{"bridge": "cbr0", "mtu": 1450}"#,
        prefix(10, 244, 1, 0, 24),
    );
    let r = h.attach_pod(&attach_request("a", "a")).expect("attach");
    assert_eq!(r.mtu, Some(1450));
    let calls = h.net_calls();
    let (bridge,): (LinkSpec,) = calls[0].args().expect("args");
    assert_eq!((bridge.name.as_str(), bridge.mtu), ("cbr0", Some(1450)));
    let (veth,): (LinkSpec,) = calls[seen].args().expect("args");
    assert_eq!(veth.mtu, Some(1450));
    let (_, _, mtu): (Netns, String, u32) = calls[seen + 1].args().expect("args");
    assert_eq!(mtu, 1450);
}
