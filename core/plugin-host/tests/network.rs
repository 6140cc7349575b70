//! Network backends as Wasm components and native libraries, driven with a recording fake of
//! the host's network operations.

mod common;

use common::{Build, RecordingNet, attach_request, detach_request, host, ipv4, network_node, spec};
use keelson_plugin_host::{AttachResult, IpPrefix, NetworkPlugin, PluginHost};

fn logging_bridge(
    host: &PluginHost,
    build: Build,
    net: std::sync::Arc<RecordingNet>,
) -> NetworkPlugin {
    let mut plugin = host
        .load_network(&spec("bridge", "logging-bridge", build), net)
        .expect("plugin loads");
    plugin.configure("{}").expect("configure");
    plugin
}

/// Runs logging-bridge through node events and two pods; returns the attach results and
/// every host-net call with its arguments.
fn logging_bridge_run(build: Build) -> (Vec<AttachResult>, Vec<(&'static str, String)>) {
    let host = host();
    let net = RecordingNet::new();
    let mut plugin = logging_bridge(&host, build, net.clone());
    plugin
        .node_added(&network_node("local", true, Some((10, 244, 1))))
        .expect("local node");
    plugin
        .node_added(&network_node("peer", false, Some((10, 244, 2))))
        .expect("peer node");
    let a = plugin
        .attach_pod(&attach_request("a", "uid-a"))
        .expect("attach a");
    let b = plugin
        .attach_pod(&attach_request("b", "uid-b"))
        .expect("attach b");
    plugin
        .detach_pod(&detach_request("a", "uid-a"))
        .expect("detach a");
    plugin
        .node_removed(&network_node("peer", false, Some((10, 244, 2))))
        .expect("peer gone");
    assert_eq!(plugin.metrics().errors, 0);
    (vec![a, b], net.calls())
}

#[test]
fn logging_bridge_makes_the_same_host_net_calls_as_wasm_and_native() {
    let (wasm_results, wasm_calls) = logging_bridge_run(Build::Wasm);
    let (native_results, native_calls) = logging_bridge_run(Build::Native);
    assert_eq!(wasm_results, native_results);
    assert_eq!(wasm_calls, native_calls);

    let names: Vec<&str> = wasm_calls.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        &names[..4],
        [
            "create-link",
            "add-address",
            "set-link-up",
            "set-forwarding"
        ],
        "the local node's bridge"
    );
    assert!(names.contains(&"replace-route"));
    assert_eq!(
        names.last(),
        Some(&"delete-link"),
        "detach deletes the veth"
    );
    assert_eq!(
        wasm_results[0].addresses[0].address,
        IpPrefix {
            address: ipv4(10, 244, 1, 2),
            prefix_length: 24
        }
    );
    assert_eq!(
        wasm_results[1].addresses[0].address.address,
        ipv4(10, 244, 1, 3)
    );
}

#[test]
fn a_fresh_instance_gets_nodes_and_attached_pods_replayed() {
    // After reconfiguring, the backend knows the CIDR (node-added replayed) and the pods
    // attached so far (restore-pod replayed), so the next pod gets the next free address.
    let host = host();
    for build in common::BOTH {
        let net = RecordingNet::new();
        let mut plugin = logging_bridge(&host, build, net.clone());
        plugin
            .node_added(&network_node("local", true, Some((10, 244, 1))))
            .expect("local node");
        plugin
            .attach_pod(&attach_request("a", "uid-a"))
            .expect("attach a");
        plugin.configure("{}").expect("reconfigure");
        let b = plugin
            .attach_pod(&attach_request("b", "uid-b"))
            .expect("attach b");
        assert_eq!(
            b.addresses[0].address.address,
            ipv4(10, 244, 1, 3),
            "{build:?}"
        );
        assert_eq!(plugin.metrics().instances_created, 2, "{build:?}");
    }
}

#[test]
fn a_backend_without_a_cidr_reports_its_error_with_the_call() {
    let host = host();
    for build in common::BOTH {
        let mut plugin = logging_bridge(&host, build, RecordingNet::new());
        let err = plugin
            .attach_pod(&attach_request("a", "uid-a"))
            .expect_err("no cidr yet");
        assert_eq!(
            err.to_string(),
            "plugin \"bridge\": call \"attach-pod\" failed (unavailable): the local node has no \
             IPv4 pod CIDR yet",
            "{build:?}"
        );
    }
}
