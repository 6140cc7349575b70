//! The built-in `bridge` backend run three ways (a Wasm component, a native library, and
//! linked into this binary as a built-in) must ask the host for the same operations and give
//! the same results; built-ins get the native path's panic handling and replay.

mod common;

use std::sync::Arc;

use common::{Build, RecordingNet, attach_request, detach_request, host, ipv4, network_node, spec};
use keelson_plugin_host::{
    AttachResult, Error, IpPrefix, NetworkPlugin, PluginFormat, PluginHost, PluginKind,
};
use keelson_plugin_sdk as sdk;

const OPTIONS: &str = r#"{"bridge": "kbr-test", "mtu": 1450, "clusterCIDR": "10.244.0.0/16"}"#;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    Wasm,
    Native,
    Builtin,
}

fn bridge(host: &PluginHost, way: Way, net: Arc<RecordingNet>) -> NetworkPlugin {
    let mut plugin = match way {
        Way::Wasm => host.load_network(&spec("bridge", "network-bridge", Build::Wasm), net),
        Way::Native => host.load_network(&spec("bridge", "network-bridge", Build::Native), net),
        Way::Builtin => {
            host.load_network_builtin("bridge", &keelson_network_bridge::builtin(), net)
        }
    }
    .expect("plugin loads");
    let format = match way {
        Way::Wasm => PluginFormat::WasmComponent,
        Way::Native => PluginFormat::NativeLibrary,
        Way::Builtin => PluginFormat::Builtin,
    };
    assert_eq!(plugin.format(), format);
    assert_eq!(plugin.reported_name().expect("name"), "bridge");
    plugin.configure(OPTIONS).expect("configure");
    plugin
}

/// Node events, three pods (one attached twice), a detach and a reconfigure; returns the
/// attach results and every host-net call with its arguments.
fn run(way: Way) -> (Vec<AttachResult>, Vec<(&'static str, String)>) {
    let host = host();
    let net = RecordingNet::new();
    let mut plugin = bridge(&host, way, net.clone());
    plugin
        .node_added(&network_node("local", true, Some((10, 244, 1))))
        .expect("local node");
    plugin
        .node_added(&network_node("peer", false, Some((10, 244, 2))))
        .expect("peer node");
    let mut results = Vec::new();
    for (name, uid) in [("a", "uid-a"), ("b", "uid-b"), ("a", "uid-a")] {
        results.push(
            plugin
                .attach_pod(&attach_request(name, uid))
                .expect("attach"),
        );
    }
    plugin
        .detach_pod(&detach_request("a", "uid-a"))
        .expect("detach a");
    // A fresh instance gets the nodes and b replayed: c takes a's released address.
    plugin.configure(OPTIONS).expect("reconfigure");
    results.push(
        plugin
            .attach_pod(&attach_request("c", "uid-c"))
            .expect("attach c"),
    );
    plugin
        .node_removed(&network_node("peer", false, Some((10, 244, 2))))
        .expect("peer gone");
    let m = plugin.metrics();
    // The name probe's throwaway instance, the first configure's and the reconfigure's.
    assert_eq!(
        (m.errors, m.traps, m.instances_created),
        (0, 0, 3),
        "{way:?}"
    );
    (results, net.calls())
}

#[test]
fn wasm_native_and_builtin_make_the_same_host_net_calls() {
    let (results, calls) = run(Way::Builtin);
    for way in [Way::Wasm, Way::Native] {
        let (r, c) = run(way);
        assert_eq!(r, results, "{way:?} results");
        assert_eq!(c, calls, "{way:?} host-net calls");
    }

    let names: Vec<&str> = calls.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        &names[..6],
        [
            "create-link",
            "list-addresses",
            "add-address",
            "set-link-up",
            "set-forwarding",
            "set-masquerade"
        ],
        "the local node's bridge"
    );
    assert!(calls[0].1.contains("\"kbr-test\"") && calls[0].1.contains("Some(1450)"));
    let cidr = |a, b, c, d, l| {
        format!(
            "{:?}",
            IpPrefix {
                address: ipv4(a, b, c, d),
                prefix_length: l,
            }
        )
    };
    assert_eq!(
        calls[5].1,
        format!(
            "({}, [{}])",
            cidr(10, 244, 1, 0, 24),
            cidr(10, 244, 0, 0, 16)
        )
    );
    assert!(names.contains(&"delete-link"), "detach deletes the veth");
    // Every attach puts the pod's host veth in hairpin mode right after bridging it.
    let hairpins: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].0 == "set-link-hairpin")
        .collect();
    assert_eq!(hairpins.len(), 4, "one per attach: {names:?}");
    for i in hairpins {
        let veth = calls[i - 1].1.split(", ").nth(1).expect("veth argument");
        assert_eq!(calls[i - 1].0, "set-link-master", "{names:?}");
        assert_eq!(
            calls[i].1,
            format!("(Netns::Host, {veth}, true)"),
            "{:?}",
            calls[i - 1]
        );
    }

    let ips: Vec<_> = results.iter().map(|r| r.addresses[0].address).collect();
    let pod = |d| IpPrefix {
        address: ipv4(10, 244, 1, d),
        prefix_length: 24,
    };
    assert_eq!(ips, [pod(2), pod(3), pod(2), pod(2)]);
    assert_eq!(results[0].addresses[0].gateway, Some(ipv4(10, 244, 1, 1)));
    assert_eq!(results[0].mtu, Some(1450));
}

#[test]
fn a_builtin_without_a_pod_cidr_reports_the_plugin_error_with_the_call() {
    let host = host();
    let mut plugin = bridge(&host, Way::Builtin, RecordingNet::new());
    let err = plugin
        .attach_pod(&attach_request("a", "uid-a"))
        .expect_err("no cidr yet");
    assert_eq!(
        err.to_string(),
        "plugin \"bridge\": call \"attach-pod\" failed (unavailable): the node has no IPv4 pod \
         CIDR yet (spec.podCIDRs is empty); pods can be attached once one is assigned"
    );
    let e = host
        .load_network_builtin(
            "bridge",
            &keelson_network_bridge::builtin(),
            RecordingNet::new(),
        )
        .expect("loads")
        .configure(r#"{"mtu": 1}"#)
        .expect_err("bad options");
    assert!(e.to_string().contains("option \"mtu\""), "{e}");
}

/// A backend that panics when attaching a pod named `boom`, otherwise hands out addresses in
/// order, remembering restored pods.
struct Fragile {
    next: u8,
}

impl sdk::NetworkBackend for Fragile {
    const NAME: &'static str = "fragile";

    fn configure(_options: &str) -> Result<Self, sdk::PluginError> {
        Ok(Fragile { next: 2 })
    }

    fn restore_pod(&mut self, _pod: &sdk::AttachedPod) -> Result<(), sdk::PluginError> {
        self.next += 1;
        Ok(())
    }

    fn attach_pod(
        &mut self,
        request: &sdk::AttachRequest,
    ) -> Result<sdk::AttachResult, sdk::PluginError> {
        if request.pod_name == "boom" {
            panic!("fragile backend: boom");
        }
        let address = sdk::IpPrefix {
            address: sdk::IpAddress::Ipv4((10, 0, 0, self.next)),
            prefix_length: 24,
        };
        self.next += 1;
        Ok(sdk::AttachResult {
            addresses: vec![sdk::PodAddress {
                address,
                gateway: None,
            }],
            routes: vec![],
            mac: None,
            mtu: None,
        })
    }

    fn detach_pod(&mut self, _request: &sdk::DetachRequest) -> Result<(), sdk::PluginError> {
        Ok(())
    }
}

#[test]
fn a_builtin_panic_is_caught_and_followed_by_a_replayed_instance() {
    let host = host();
    let mut plugin = host
        .load_network_builtin(
            "fragile",
            &sdk::builtin::network::<Fragile>(),
            RecordingNet::new(),
        )
        .expect("loads");
    plugin.configure("{}").expect("configure");
    let a = plugin
        .attach_pod(&attach_request("a", "uid-a"))
        .expect("attach a");
    assert_eq!(a.addresses[0].address.address, ipv4(10, 0, 0, 2));

    let err = plugin
        .attach_pod(&attach_request("boom", "uid-boom"))
        .expect_err("panics");
    match &err {
        Error::Panic {
            plugin,
            call,
            message,
        } => {
            assert_eq!(
                (plugin.as_str(), *call, message.as_str()),
                ("fragile", "attach-pod", "fragile backend: boom")
            );
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert!(err.is_fatal_to_instance());

    // The next call runs on a fresh instance that had pod a restored.
    let b = plugin
        .attach_pod(&attach_request("b", "uid-b"))
        .expect("attach b");
    assert_eq!(b.addresses[0].address.address, ipv4(10, 0, 0, 3));
    let m = plugin.metrics();
    assert_eq!((m.traps, m.errors, m.instances_created), (1, 1, 2));
}

#[test]
fn a_builtin_of_another_kind_or_abi_is_refused() {
    let host = host();
    let bridge = keelson_network_bridge::builtin();

    let scheduler = keelson_plugin_host::Builtin {
        manifest: r#"{"contract":"keelson:plugin@0.1.0","kind":"scheduler-policy","name":"s","exports":["lifecycle","scheduler"]}"#,
        ..bridge
    };
    match host.load_network_builtin("s", &scheduler, RecordingNet::new()) {
        Err(Error::WrongKind {
            expected, found, ..
        }) => assert_eq!(
            (expected, found),
            (PluginKind::NetworkBackend, PluginKind::SchedulerPolicy)
        ),
        Err(other) => panic!("expected a kind error, got {other}"),
        Ok(_) => panic!("a scheduler policy was loaded as a network backend"),
    }

    let v = bridge.vtable;
    let future: &'static keelson_plugin_abi::PluginVtable =
        Box::leak(Box::new(keelson_plugin_abi::PluginVtable {
            abi_version: 999,
            create: v.create,
            call: v.call,
            free_buf: v.free_buf,
            destroy: v.destroy,
        }));
    let future = keelson_plugin_host::Builtin {
        vtable: future,
        ..bridge
    };
    match host.load_network_builtin("bridge", &future, RecordingNet::new()) {
        Err(Error::AbiVersion { found, .. }) => assert_eq!(found, 999),
        Err(other) => panic!("expected an ABI version error, got {other}"),
        Ok(_) => panic!("a vtable of ABI version 999 was used"),
    }
}
