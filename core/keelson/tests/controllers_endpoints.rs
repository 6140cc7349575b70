//! The endpoints, resource quota and node IPAM controllers of `keelson controller-manager`
//! against a real `keelson apiserver`, driven with real kubectl. There is no kubelet: pods are
//! bound to Node objects by `spec.nodeName` at creation and the tests play the kubelet by
//! patching pod status (IP, phase, Ready) through the status subresource.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use keelson_testsupport::{ChildGuard, Cluster, DaemonProc, wait_until};
use serde_json::{Value, json};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

const CONTROLLERS: &str = "--controllers=endpoint,resourcequota,nodeipam";

/// A controller manager running the three controllers under test, killed on drop.
fn start_cm(c: &Cluster, name: &str, extra: &[&str]) -> DaemonProc {
    let mut args = vec!["--leader-elect=false", CONTROLLERS];
    args.extend_from_slice(extra);
    DaemonProc::start(&bin(), &c.server, "controller-manager", name, &args)
}

fn node(name: &str, pod_cidr: Option<&str>) -> Value {
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    });
    if let Some(cidr) = pod_cidr {
        n["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    n
}

/// A pod bound to node `n1` whose container offers `port` as `http`.
fn pod(name: &str, app: &str, port: i64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}]}]}
    })
}

/// Plays the kubelet: the pod runs with `ip` and is ready or not.
fn set_pod_status(c: &Cluster, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    c.kubectl(
        &[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
}

/// An Endpoints as (ip, port, ready, pod name) facts, or `None` when it does not exist.
fn endpoint_facts(c: &Cluster, name: &str) -> Option<BTreeSet<(String, i64, bool, String)>> {
    Some(facts_of(&c.try_get(&["endpoints", name])?))
}

/// An Endpoints object as (ip, port, ready, pod name) facts.
fn facts_of(ep: &Value) -> BTreeSet<(String, i64, bool, String)> {
    let mut out = BTreeSet::new();
    for s in ep["subsets"].as_array().into_iter().flatten() {
        for (key, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in s[key].as_array().into_iter().flatten() {
                for p in s["ports"].as_array().into_iter().flatten() {
                    out.insert((
                        a["ip"].as_str().unwrap_or_default().to_string(),
                        p["port"].as_i64().unwrap_or_default(),
                        ready,
                        a["targetRef"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// `kubectl get endpoints NAME -w -o json` in the background: every object it prints, with
/// when it was read, arrives on the channel. The watch is killed on drop.
fn watch_endpoints(c: &Cluster, name: &str) -> (ChildGuard, mpsc::Receiver<(Instant, Value)>) {
    let mut cmd = Command::new(&c.kubectl);
    cmd.arg("--kubeconfig")
        .arg(&c.server.kubeconfig)
        .args(["get", "endpoints", name, "-w", "-o", "json"])
        .env(
            "KUBECACHEDIR",
            c.server.kubeconfig.with_file_name("kubectl-cache"),
        )
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn("kubectl watch", &mut cmd).unwrap();
    let stdout = child.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let objects = serde_json::Deserializer::from_reader(std::io::BufReader::new(stdout));
        for v in objects.into_iter::<Value>() {
            let Ok(v) = v else { break };
            if tx.send((Instant::now(), v)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn fact(ip: &str, port: i64, ready: bool, pod: &str) -> (String, i64, bool, String) {
    (ip.to_string(), port, ready, pod.to_string())
}

#[test]
fn endpoints_follow_pods_readiness_and_services() {
    let c = Cluster::start(&bin());
    let cm = start_cm(&c, "cm", &[]);
    c.create(&[
        node("n1", None),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        // Endpoints of a Service without a selector belong to whoever writes them.
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "manual", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "manual", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}]}),
        pod("p1", "web", 8080),
        pod("p2", "web", 8080),
        pod("p3", "web", 9090),
        pod("other", "db", 8080),
        // Never given an IP: not published.
        pod("pending", "web", 8080),
    ]);
    let manual_before = c.get(&["endpoints", "manual"]);
    set_pod_status(&c, "p1", "10.244.0.11", true);
    set_pod_status(&c, "p2", "10.244.0.12", false);
    set_pod_status(&c, "p3", "10.244.0.13", true);
    set_pod_status(&c, "other", "10.244.0.14", true);

    // Ready pods are addresses, the others notReadyAddresses; the named target port is each
    // pod's own container port.
    let want = BTreeSet::from([
        fact("10.244.0.11", 8080, true, "p1"),
        fact("10.244.0.12", 8080, false, "p2"),
        fact("10.244.0.13", 9090, true, "p3"),
    ]);
    let mut last = None;
    let ok = wait_until(Duration::from_secs(10), || {
        last = endpoint_facts(&c, "web");
        last.as_ref() == Some(&want)
    });
    assert!(
        ok,
        "endpoints web: {last:?}, want {want:?}\ncm log:\n{}",
        cm.log()
    );
    let ep = c.get(&["endpoints", "web"]);
    assert_eq!(ep["metadata"]["labels"]["tier"], "front", "{ep}");
    let addr = &ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .find(|a| a["ip"] == "10.244.0.11")
        .unwrap();
    assert_eq!(addr["nodeName"], "n1", "{ep}");
    assert_eq!(addr["targetRef"]["kind"], "Pod", "{ep}");
    assert_eq!(addr["targetRef"]["namespace"], "default", "{ep}");
    assert!(addr["targetRef"]["uid"].as_str().is_some(), "{ep}");
    let table = c.kubectl(&["get", "endpoints", "web"], None);
    assert!(
        table.contains("10.244.0.11:8080") && table.contains("10.244.0.13:9090"),
        "kubectl get endpoints:\n{table}"
    );

    // A pod turning ready is published within a second of its status write: measured from
    // the write returning to a watch (started before it) showing the change, so the time
    // kubectl takes to start is not counted.
    let (_watch, seen) = watch_endpoints(&c, "web");
    let first = seen.recv_timeout(Duration::from_secs(10));
    assert!(
        first.is_ok(),
        "the endpoints watch printed nothing\ncm log:\n{}",
        cm.log()
    );
    set_pod_status(&c, "p2", "10.244.0.12", true);
    let patched = Instant::now();
    let p2_ready = fact("10.244.0.12", 8080, true, "p2");
    let mut latency = None;
    let mut last_seen = None;
    // Generous for the watch to deliver at all; the bound asserted is the latency below.
    let deadline = patched + Duration::from_secs(10);
    while latency.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((at, ep)) = seen.recv_timeout(left) else {
            break;
        };
        let facts = facts_of(&ep);
        if facts.contains(&p2_ready) {
            // Seen before kubectl patch even returned counts as no delay.
            latency = Some(at.saturating_duration_since(patched));
        }
        last_seen = Some(facts);
    }
    eprintln!("p2 was listed as ready {latency:?} after its status write returned");
    assert!(
        latency.is_some_and(|t| t <= Duration::from_secs(1)),
        "p2 not ready in endpoints within 1s (seen after {latency:?}); last watched: \
         {last_seen:?}\ncm log:\n{}",
        cm.log()
    );

    // A deleted pod leaves.
    c.kubectl(&["delete", "pod", "p1", "--wait=false"], None);
    let want = BTreeSet::from([
        fact("10.244.0.12", 8080, true, "p2"),
        fact("10.244.0.13", 9090, true, "p3"),
    ]);
    let ok = wait_until(Duration::from_secs(10), || {
        last = endpoint_facts(&c, "web");
        last.as_ref() == Some(&want)
    });
    assert!(
        ok,
        "endpoints web: {last:?}, want {want:?}\ncm log:\n{}",
        cm.log()
    );

    // The hand-written Endpoints was never touched.
    let manual = c.get(&["endpoints", "manual"]);
    assert_eq!(
        manual["metadata"]["resourceVersion"],
        manual_before["metadata"]["resourceVersion"],
        "manual endpoints rewritten: {manual}\ncm log:\n{}",
        cm.log()
    );
    assert_eq!(manual["subsets"][0]["addresses"][0]["ip"], "192.0.2.7");

    // Deleting the Service deletes its Endpoints.
    c.kubectl(&["delete", "service", "web"], None);
    let ok = wait_until(Duration::from_secs(10), || {
        c.try_get(&["endpoints", "web"]).is_none()
    });
    assert!(
        ok,
        "endpoints web outlived its service\ncm log:\n{}",
        cm.log()
    );
}

/// `kubectl get <kind> -n default` item count.
fn count(c: &Cluster, kind: &str) -> usize {
    c.get(&[kind, "-n", "default"])["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

fn quota_used(c: &Cluster) -> BTreeMap<String, String> {
    let q = c.get(&["resourcequota", "q"]);
    q["status"]["used"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Expected usage: object counts as kubectl sees them now, plus the given compute figures.
fn expected(c: &Cluster, pods: &str, compute: [&str; 4]) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    want.insert("pods".to_string(), pods.to_string());
    for (name, kind) in [
        ("services", "services"),
        ("replicationcontrollers", "replicationcontrollers"),
        ("secrets", "secrets"),
        ("configmaps", "configmaps"),
        ("resourcequotas", "resourcequotas"),
    ] {
        want.insert(name.to_string(), count(c, kind).to_string());
    }
    for (name, v) in [
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ]
    .into_iter()
    .zip(compute)
    {
        want.insert(name.to_string(), v.to_string());
    }
    want
}

fn wait_quota(c: &Cluster, cm: &DaemonProc, pods: &str, compute: [&str; 4]) {
    let mut got = BTreeMap::new();
    let mut want = BTreeMap::new();
    let ok = wait_until(Duration::from_secs(10), || {
        want = expected(c, pods, compute);
        got = quota_used(c);
        got == want
    });
    assert!(
        ok,
        "quota used {got:?}, want {want:?}\nquota: {}\ncm log:\n{}",
        c.get(&["resourcequota", "q"]),
        cm.log()
    );
}

fn compute_pod(name: &str, requests: Value, limits: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": requests, "limits": limits}}]}})
}

#[test]
fn quota_usage_follows_what_the_namespace_holds() {
    let c = Cluster::start(&bin());
    let cm = start_cm(&c, "cm", &[]);
    c.create(&[
        node("n1", None),
        json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"hard": {"pods": "10", "services": "10", "replicationcontrollers": "5",
                "secrets": "20", "configmaps": "20", "resourcequotas": "2",
                "requests.cpu": "4", "requests.memory": "4Gi",
                "limits.cpu": "8", "limits.memory": "8Gi"}}}),
    ]);
    wait_quota(&c, &cm, "0", ["0", "0", "0", "0"]);
    let q = c.get(&["resourcequota", "q"]);
    assert_eq!(q["status"]["hard"], q["spec"]["hard"], "{q}");

    c.create(&[
        compute_pod(
            "a",
            json!({"cpu": "500m", "memory": "1Gi"}),
            json!({"cpu": "1", "memory": "1Gi"}),
        ),
        compute_pod(
            "b",
            json!({"cpu": "250m", "memory": "512Mi"}),
            json!({"cpu": "500m", "memory": "512Mi"}),
        ),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "rc", "namespace": "default"},
            "spec": {"replicas": 0, "selector": {"app": "x"},
                "template": {"metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sec", "namespace": "default"}, "data": {"k": "dg=="}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q2", "namespace": "default"},
            "spec": {"hard": {"pods": "100"}}}),
    ]);
    wait_quota(&c, &cm, "2", ["750m", "1536Mi", "1500m", "1536Mi"]);
    // The second quota has its own status.
    let ok = wait_until(Duration::from_secs(10), || {
        c.get(&["resourcequota", "q2"])["status"]["used"]["pods"] == "2"
    });
    assert!(
        ok,
        "q2: {}\ncm log:\n{}",
        c.get(&["resourcequota", "q2"]),
        cm.log()
    );

    // Deletions are given back; a finished pod uses nothing.
    c.kubectl(&["delete", "pod", "b", "--grace-period=0", "--force"], None);
    c.kubectl(&["delete", "secret", "sec"], None);
    c.kubectl(&["delete", "service", "s"], None);
    c.kubectl(&["delete", "resourcequota", "q2"], None);
    wait_quota(&c, &cm, "1", ["500m", "1Gi", "1", "1Gi"]);
    c.kubectl(
        &[
            "patch",
            "pod",
            "a",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Succeeded"}}"#,
        ],
        None,
    );
    wait_quota(&c, &cm, "0", ["0", "0", "0", "0"]);
}

/// Every node's podCIDR (empty when it has none).
fn pod_cidrs(c: &Cluster) -> BTreeMap<String, String> {
    c.get(&["nodes"])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let cidr = n["spec"]["podCIDR"].as_str().unwrap_or_default();
            if !cidr.is_empty() {
                assert_eq!(n["spec"]["podCIDRs"], json!([cidr]), "{n}");
            }
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                cidr.to_string(),
            )
        })
        .collect()
}

/// Waits until every node in `names` has a podCIDR and returns all nodes' podCIDRs.
fn wait_cidrs(c: &Cluster, cm: &DaemonProc, names: &[&str]) -> BTreeMap<String, String> {
    let mut got = BTreeMap::new();
    let ok = wait_until(Duration::from_secs(10), || {
        got = pod_cidrs(c);
        names
            .iter()
            .all(|n| got.get(*n).is_some_and(|c| !c.is_empty()))
    });
    assert!(
        ok,
        "podCIDRs {got:?}, want all of {names:?}\ncm log:\n{}",
        cm.log()
    );
    got
}

/// Asserts the podCIDRs of the cluster CIDR are /24s inside it, none given twice.
fn assert_distinct_inside(cidrs: &BTreeMap<String, String>, cluster: &str, log: &str) {
    let cluster: Ipv4Net = cluster.parse().unwrap();
    let mine: Vec<Ipv4Net> = cidrs
        .values()
        .filter(|c| !c.is_empty())
        .map(|c| c.parse::<Ipv4Net>().unwrap())
        .filter(|n| cluster.contains(n))
        .collect();
    let unique: BTreeSet<_> = mine.iter().collect();
    assert_eq!(
        unique.len(),
        mine.len(),
        "duplicate podCIDRs {cidrs:?}\ncm log:\n{log}"
    );
    assert!(
        mine.iter().all(|n| n.prefix_len() == 24),
        "not /24: {cidrs:?}"
    );
}

#[test]
fn nodes_get_distinct_pod_cidrs_that_survive_restarts() {
    let c = Cluster::start(&bin());
    let cluster = "10.244.0.0/16";
    // Set by an operator before any controller ran: taken, never handed out.
    c.create(&[
        node("preset", Some("10.244.0.0/24")),
        node("foreign", Some("192.168.5.0/24")),
    ]);
    let mut cm = start_cm(
        &c,
        "cm",
        &["--cluster-cidr", cluster, "--node-cidr-mask-size", "24"],
    );
    c.create(&[node("n1", None), node("n2", None), node("n3", None)]);
    let first = wait_cidrs(&c, &cm, &["n1", "n2", "n3"]);
    assert_distinct_inside(&first, cluster, &cm.log());
    assert_eq!(first["preset"], "10.244.0.0/24");
    assert_eq!(
        first["foreign"], "192.168.5.0/24",
        "a foreign podCIDR was touched"
    );
    assert_eq!(
        first.values().filter(|v| v.starts_with("10.244.")).count(),
        4
    );

    // A deleted node's CIDR may be reused; nothing is given twice.
    c.kubectl(&["delete", "node", "n2"], None);
    c.create(&[node("n4", None)]);
    let second = wait_cidrs(&c, &cm, &["n4"]);
    assert_distinct_inside(&second, cluster, &cm.log());
    for n in ["preset", "n1", "n3"] {
        assert_eq!(second[n], first[n], "{n} changed podCIDR");
    }

    // Restarted with nodes already assigned: nothing moves, and a node added meanwhile gets
    // a CIDR no other node has.
    cm.terminate();
    c.create(&[node("n5", None)]);
    let cm = start_cm(
        &c,
        "cm2",
        &["--cluster-cidr", cluster, "--node-cidr-mask-size", "24"],
    );
    let third = wait_cidrs(&c, &cm, &["n5"]);
    assert_distinct_inside(&third, cluster, &cm.log());
    for n in ["preset", "n1", "n3", "n4"] {
        assert_eq!(third[n], second[n], "{n} changed podCIDR after a restart");
    }
    c.create(&[node("n6", None)]);
    let fourth = wait_cidrs(&c, &cm, &["n6"]);
    assert_distinct_inside(&fourth, cluster, &cm.log());
}

#[test]
fn a_full_cluster_cidr_leaves_the_node_without_and_says_so() {
    let c = Cluster::start(&bin());
    let cm = start_cm(
        &c,
        "cm",
        &[
            "--cluster-cidr",
            "10.9.0.0/23",
            "--node-cidr-mask-size",
            "24",
        ],
    );
    c.create(&[node("n1", None), node("n2", None)]);
    let got = wait_cidrs(&c, &cm, &["n1", "n2"]);
    let both: BTreeSet<&str> = [got["n1"].as_str(), got["n2"].as_str()].into();
    assert_eq!(both, BTreeSet::from(["10.9.0.0/24", "10.9.1.0/24"]));

    c.create(&[node("n3", None)]);
    let mut events = Vec::new();
    let ok = wait_until(Duration::from_secs(10), || {
        events = c.events("default", "n3");
        events.iter().any(|e| e.1 == "CIDRNotAvailable")
    });
    assert!(
        ok,
        "no CIDRNotAvailable event: {events:?}\ncm log:\n{}",
        cm.log()
    );
    let e = events.iter().find(|e| e.1 == "CIDRNotAvailable").unwrap();
    assert_eq!(e.2, "Node n3 status is now: CIDRNotAvailable");
    assert_eq!(pod_cidrs(&c)["n3"], "", "n3 got a CIDR from a full range");

    // Freeing one lets the waiting node have it.
    c.kubectl(&["delete", "node", "n1"], None);
    let got = wait_cidrs(&c, &cm, &["n3"]);
    assert_eq!(
        got["n3"],
        got_first(&both, &got["n2"]),
        "cm log:\n{}",
        cm.log()
    );
}

/// The one of the two subnets that `taken` is not.
fn got_first(both: &BTreeSet<&str>, taken: &str) -> String {
    both.iter().find(|c| **c != taken).unwrap().to_string()
}
