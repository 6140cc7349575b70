//! `keelson kubelet`'s node registration and heartbeats against a real `keelson apiserver`
//! and `keelson controller-manager` (node lifecycle), driven with real kubectl.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use keelson_testsupport::{Cluster, DaemonProc, wait_until};
use serde_json::Value;

const NODE: &str = "kn-worker-1";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn start_kubelet(c: &Cluster) -> DaemonProc {
    DaemonProc::start(
        &bin(),
        &c.server,
        "kubelet",
        "kubelet",
        &[
            "--hostname-override",
            NODE,
            "--node-labels",
            "tier=test,zone=a",
            "--max-pods",
            "42",
            "--node-lease-duration-seconds",
            "4",
            "--node-status-update-frequency",
            "500ms",
            "--containerd-address",
            "/nonexistent/containerd.sock",
        ],
    )
}

fn condition(node: &Value, type_: &str) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn taints(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn node(c: &Cluster) -> Option<Value> {
    c.try_get(&["node", NODE])
}

fn ready(c: &Cluster) -> bool {
    node(c).is_some_and(|n| condition(&n, "Ready") == "True")
}

fn meminfo_total_ki() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    keelson_kubelet::node::parse_meminfo_total_ki(&text).unwrap()
}

#[test]
fn the_kubelet_registers_heartbeats_and_recovers() {
    let c = Cluster::start(&bin());
    let mut kubelet = start_kubelet(&c);
    let _cm = DaemonProc::start(
        &bin(),
        &c.server,
        "controller-manager",
        "controller-manager",
        &[
            "--controllers=nodelifecycle",
            "--node-monitor-grace-period",
            "4s",
            "--node-monitor-period",
            "500ms",
            "--leader-elect=false",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(20), || ready(&c)),
        "the node did not become Ready\nlog:\n{}",
        kubelet.log()
    );

    // What `kubectl get nodes` shows.
    let table = c.kubectl(&["get", "nodes"], None);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(NODE) && l.contains(" Ready ")),
        "{table}"
    );
    let n = node(&c).unwrap();
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["tier"], "test");
    assert_eq!(labels["zone"], "a");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(n["status"]["capacity"]["cpu"], cpus.to_string());
    assert_eq!(
        n["status"]["capacity"]["memory"],
        format!("{}Ki", meminfo_total_ki())
    );
    assert_eq!(n["status"]["capacity"]["pods"], "42");
    assert_eq!(n["status"]["allocatable"]["pods"], "42");
    let addresses = n["status"]["addresses"].as_array().unwrap();
    assert!(
        addresses.iter().any(|a| a["type"] == "Hostname"),
        "{addresses:?}"
    );
    assert!(
        addresses.iter().any(|a| a["type"] == "InternalIP"),
        "{addresses:?}"
    );
    assert_eq!(
        n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    let info = &n["status"]["nodeInfo"];
    assert!(
        info["kubeletVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.0-keelson"),
        "{info}"
    );
    assert_eq!(info["operatingSystem"], "linux");
    let ready_cond = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready_cond["reason"], "KubeletReady");
    assert_eq!(condition(&n, "MemoryPressure"), "False");
    assert!(
        kubelet.log().contains("containerd"),
        "no warning about containerd:\n{}",
        kubelet.log()
    );

    // The Lease: held by the node, owned by it, renewed.
    let lease = c.get(&["lease", "-n", "kube-node-lease", NODE]);
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    let owner = &lease["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["uid"], n["metadata"]["uid"]);
    let first = lease["spec"]["renewTime"].clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            c.get(&["lease", "-n", "kube-node-lease", NODE])["spec"]["renewTime"] != first
        }),
        "the lease was not renewed"
    );

    // Events.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let ev = c.events("default", NODE);
            ev.iter().any(|e| e.1 == "Starting") && ev.iter().any(|e| e.1 == "NodeReady")
        }),
        "events: {:?}",
        c.events("default", NODE)
    );

    // Stays Ready past the grace period while the kubelet runs.
    std::thread::sleep(Duration::from_secs(6));
    assert!(ready(&c), "{}", node(&c).unwrap());

    // SIGKILL: the node goes Unknown with the unreachable taint.
    kubelet.proc.kill();
    assert!(
        wait_until(Duration::from_secs(20), || node(&c).is_some_and(|n| {
            condition(&n, "Ready") == "Unknown"
                && taints(&n).contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
        })),
        "the node was not marked unreachable: {}",
        node(&c).unwrap()
    );

    // Started again: Ready, untainted.
    let kubelet = start_kubelet(&c);
    assert!(
        wait_until(Duration::from_secs(20), || node(&c).is_some_and(|n| {
            condition(&n, "Ready") == "True"
                && !taints(&n)
                    .iter()
                    .any(|t| t.starts_with("node.kubernetes.io/unreachable"))
        })),
        "the node did not recover: {}\nlog:\n{}",
        node(&c).unwrap(),
        kubelet.log()
    );

    // Deleted while the kubelet runs: registered again, with a new uid and Lease owner.
    let old_uid = node(&c).unwrap()["metadata"]["uid"].clone();
    c.kubectl(&["delete", "node", NODE], None);
    assert!(
        wait_until(Duration::from_secs(20), || node(&c).is_some_and(
            |n| n["metadata"]["uid"] != old_uid && condition(&n, "Ready") == "True"
        )),
        "the node was not registered again\nlog:\n{}",
        kubelet.log()
    );
    let new_uid = node(&c).unwrap()["metadata"]["uid"].clone();
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.try_get(&["lease", "-n", "kube-node-lease", NODE])
                .is_some_and(|l| l["metadata"]["ownerReferences"][0]["uid"] == new_uid)
        }),
        "the lease is not owned by the new node"
    );
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(&config, "maxPods: 10\nnodeStatusFrequency: 1s\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["kubelet", "--config"])
        .arg(&config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nodeStatusFrequency"), "{err}");
}

#[test]
fn a_config_file_and_containerd_show_in_the_node() {
    let containerd = keelson_testsupport::Containerd::start();
    let c = Cluster::start(&bin());
    let config = c.server.data_dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        format!(
            "hostnameOverride: KN-Config\nnodeIP: 10.11.12.13\nnodeLabels: {{pool: blue}}\nmaxPods: 7\nkubeReserved: {{cpu: 100m, memory: 64Mi}}\nnodeLeaseDurationSeconds: 4\nnodeStatusUpdateFrequency: 500ms\ncontainerRuntimeEndpoint: unix://{}\n",
            containerd.socket.display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let kubelet = DaemonProc::start(
        &bin(),
        &c.server,
        "kubelet",
        "kubelet",
        &["--config", &config],
    );
    let get = || c.try_get(&["node", "kn-config"]);
    assert!(
        wait_until(Duration::from_secs(20), || get()
            .is_some_and(|n| condition(&n, "Ready") == "True")),
        "the node did not become Ready\nlog:\n{}",
        kubelet.log()
    );
    let n = get().unwrap();
    assert_eq!(n["metadata"]["labels"]["pool"], "blue");
    assert_eq!(n["status"]["capacity"]["pods"], "7");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        n["status"]["allocatable"]["cpu"],
        format!("{}m", cpus * 1000 - 100)
    );
    assert_ne!(
        n["status"]["allocatable"]["memory"],
        n["status"]["capacity"]["memory"]
    );
    assert!(
        n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "10.11.12.13"),
        "{}",
        n["status"]["addresses"]
    );
    let runtime = n["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or_default();
    assert!(runtime.starts_with("containerd://"), "{runtime:?}");
}
