//! `keelson scheduler` against a real `keelson apiserver`, driven with real kubectl. Nodes are
//! created directly (no kubelets): the scheduler only needs Node objects with capacity,
//! labels, taints and a Ready condition.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keelson_testsupport::{ApiServerProc, Cluster, DaemonProc, kubectl, wait_until};
use serde_json::{Value, json};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn start_cluster() -> Cluster {
    Cluster::start(&bin())
}

/// A `keelson scheduler` pointed at the cluster, killed on drop.
fn start_scheduler(server: &ApiServerProc, name: &str, args: &[&str]) -> DaemonProc {
    DaemonProc::start(&bin(), server, "scheduler", name, args)
}

/// What these tests ask of the cluster beyond [`Cluster`]'s calls.
trait SchedulingView {
    fn node_of(&self, pod: &str) -> Option<String>;
    fn wait_bound(&self, pod: &str, logs: &str) -> String;
}

impl SchedulingView for Cluster {
    fn node_of(&self, pod: &str) -> Option<String> {
        let out = kubectl(
            &self.kubectl,
            &self.server.kubeconfig,
            &["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"],
            None,
        );
        Some(out.stdout.trim().to_string()).filter(|s| out.ok && !s.is_empty())
    }

    /// Waits for `pod` to be bound and returns its node.
    fn wait_bound(&self, pod: &str, logs: &str) -> String {
        let mut node = None;
        let ok = wait_until(Duration::from_secs(30), || {
            node = self.node_of(pod);
            node.is_some()
        });
        assert!(ok, "pod {pod} was not scheduled; scheduler log:\n{logs}");
        node.unwrap()
    }
}

fn node(name: &str, cpu: &str, labels: Value, ready: bool) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

fn pod(name: &str, cpu: &str, extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "labels" {
                continue;
            }
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "labels": extra.get("labels").cloned().unwrap_or(json!({}))},
        "spec": spec})
}

fn host_port(port: u16) -> Value {
    json!({"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": "100m"}},
        "ports": [{"containerPort": 80, "hostPort": port}]}]})
}

#[test]
fn pods_land_where_resources_selectors_ports_and_taints_allow() {
    let c = start_cluster();
    let s = start_scheduler(&c.server, "scheduler", &["--leader-elect=false"]);
    c.create(&[
        node("n1", "2", json!({"disk": "ssd"}), true),
        node("n2", "4", json!({}), true),
        node("n3", "8", json!({}), true),
        node("n4", "8", json!({}), true),
        node("n5", "8", json!({}), false),
    ]);
    // What kubectl users do to keep pods away from nodes.
    c.kubectl(
        &["taint", "nodes", "n3", "dedicated=infra:NoSchedule"],
        None,
    );
    c.kubectl(&["cordon", "n4"], None);
    c.create(&[
        pod("big", "3", json!({})),
        pod("ssd", "100m", json!({"nodeSelector": {"disk": "ssd"}})),
        pod("hp-1", "100m", host_port(8080)),
        pod("hp-2", "100m", host_port(8080)),
        pod(
            "infra",
            "100m",
            json!({"nodeSelector": {"kubernetes.io/hostname": "n3"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]}),
        ),
        pod("huge", "6", json!({})),
    ]);
    assert_eq!(c.wait_bound("big", &s.log()), "n2");
    assert_eq!(c.wait_bound("ssd", &s.log()), "n1");
    assert_eq!(c.wait_bound("infra", &s.log()), "n3");
    let (p1, p2) = (
        c.wait_bound("hp-1", &s.log()),
        c.wait_bound("hp-2", &s.log()),
    );
    assert_ne!(p1, p2, "two pods asking for host port 8080 share a node");
    for p in [&p1, &p2] {
        assert!(p == "n1" || p == "n2", "host-port pod on {p}");
    }

    // Scheduled pods have the event and the condition.
    let events = c.events("default", "big");
    assert!(
        events.iter().any(|e| e.0 == "Normal"
            && e.1 == "Scheduled"
            && e.2 == "Successfully assigned default/big to n2"),
        "{events:?}"
    );
    let big = c.get(&["pod", "big"]);
    let cond = big["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(cond["status"], "True");

    // No node fits the 6-CPU pod: an event and a condition say why, as Kubernetes words it.
    let want = "0/5 nodes are available: 1 node(s) had untolerated taint, 1 node(s) were not ready, \
                1 node(s) were unschedulable, 2 Insufficient cpu.";
    let ok = wait_until(Duration::from_secs(20), || {
        c.events("default", "huge")
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "FailedScheduling" && e.2 == want)
    });
    assert!(
        ok,
        "events: {:?}\nlog:\n{}",
        c.events("default", "huge"),
        s.log()
    );
    let ok = wait_until(Duration::from_secs(10), || {
        let p = c.get(&["pod", "huge"]);
        p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
                    && c["message"] == want
            })
        })
    });
    assert!(ok, "{}", c.get(&["pod", "huge"]));
    assert_eq!(c.node_of("huge"), None);
    // kubectl describe shows it.
    let described = c.kubectl(&["describe", "pod", "huge"], None);
    assert!(described.contains("FailedScheduling"), "{described}");

    // A node with room appears: the pod is placed without waiting out its backoff.
    c.create(&[node("n6", "16", json!({}), true)]);
    assert_eq!(c.wait_bound("huge", &s.log()), "n6");
    // Uncordoning brings n4 back as a candidate.
    c.kubectl(&["uncordon", "n4"], None);
    c.create(&[pod(
        "pinned",
        "100m",
        json!({"nodeSelector": {"kubernetes.io/hostname": "n4"}}),
    )]);
    assert_eq!(c.wait_bound("pinned", &s.log()), "n4");
    // Pods for another scheduler are left alone.
    c.create(&[pod(
        "other",
        "100m",
        json!({"schedulerName": "someone-else"}),
    )]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.node_of("other"), None);
}

#[test]
fn a_replication_controllers_pods_spread_across_nodes() {
    let c = start_cluster();
    let s = start_scheduler(&c.server, "scheduler", &["--leader-elect=false"]);
    c.create(&[
        node("a", "4", json!({}), true),
        node("b", "4", json!({}), true),
        node("c", "4", json!({}), true),
    ]);
    c.create(&[json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 6, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })]);
    // No controller manager here: the RC's pods are created as it would create them.
    let pods: Vec<Value> = (0..6)
        .map(|i| {
            pod(
                &format!("web-{i}"),
                "100m",
                json!({"labels": {"app": "web"}}),
            )
        })
        .collect();
    c.create(&pods);
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..6 {
        *per_node
            .entry(c.wait_bound(&format!("web-{i}"), &s.log()))
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_node:?}"
    );
}

fn build_example(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/wasm-guests");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--lib",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join(format!("examples/plugins/{name}/Cargo.toml")))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building examples/plugins/{name} failed (scripts/setup.sh adds the wasm32-wasip2 target):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(format!(
        "wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    ))
}

/// Two zones, the larger one first: with the default policies an RC's first two pods go to
/// the large zone's two roomy nodes; with the zone-spread Wasm policy added at weight 10, the
/// second pod goes to the other zone.
fn zones_used(policy: Option<&Path>) -> std::collections::BTreeSet<String> {
    let c = start_cluster();
    let mut args = vec!["--leader-elect=false", "--seed", "3"];
    let policy_arg;
    if let Some(p) = policy {
        policy_arg = p.display().to_string();
        args.extend(["--policy-config-file", &policy_arg]);
    }
    let s = start_scheduler(&c.server, "scheduler", &args);
    let zone = |z: &str| json!({"topology.kubernetes.io/zone": z});
    c.create(&[
        node("a1", "8", zone("a"), true),
        node("a2", "8", zone("a"), true),
        node("b1", "1", zone("b"), true),
    ]);
    c.create(&[json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    })]);
    let mut zones = std::collections::BTreeSet::new();
    for i in 0..2 {
        c.create(&[pod(
            &format!("web-{i}"),
            "500m",
            json!({"labels": {"app": "web"}}),
        )]);
        let n = c.wait_bound(&format!("web-{i}"), &s.log());
        zones.insert(n[..1].to_string());
    }
    zones
}

#[test]
fn a_custom_wasm_policy_changes_placements_as_configured() {
    let wasm = build_example("zone-spread");
    assert_eq!(zones_used(None), ["a".to_string()].into());
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    // The v1 Policy file: the default predicates and priorities, plus the plugin.
    std::fs::write(
        &policy,
        json!({
            "kind": "Policy", "apiVersion": "v1",
            "predicates": [{"name": "PodFitsResources"}, {"name": "MatchNodeSelector"}],
            "priorities": [
                {"name": "LeastRequestedPriority", "weight": 1},
                {"name": "BalancedResourceAllocation", "weight": 1},
                {"name": "SelectorSpreadPriority", "weight": 1},
                {"path": wasm, "name": "zone-spread", "weight": 10,
                 "options": {"zoneLabel": "topology.kubernetes.io/zone"}}
            ]
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        zones_used(Some(&policy)),
        ["a".to_string(), "b".to_string()].into()
    );
}

#[test]
fn a_policy_that_names_an_unknown_policy_or_a_missing_plugin_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    for (body, named) in [
        (
            json!({"kind": "Policy", "apiVersion": "v1", "predicates": [{"name": "PodFitsEverything"}]}),
            "PodFitsEverything",
        ),
        (
            json!({"kind": "Policy", "apiVersion": "v1", "priorities": [{"path": "missing.wasm", "weight": 1}]}),
            "missing",
        ),
    ] {
        std::fs::write(&policy, body.to_string()).unwrap();
        let out = Command::new(bin())
            .args([
                "scheduler",
                "--kubeconfig",
                "/nonexistent",
                "--policy-config-file",
            ])
            .arg(&policy)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(named), "{err}");
        assert!(err.contains("polic"), "{err}");
    }
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let out = kubectl(
        &c.kubectl,
        &c.server.kubeconfig,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-scheduler",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    Some(out.stdout.trim().to_string()).filter(|s| out.ok && !s.is_empty())
}

fn bound_by(c: &Cluster, pod: &str) -> String {
    let events = c.events("default", pod);
    events
        .iter()
        .find(|e| e.1 == "Scheduled")
        .map(|e| e.4.clone())
        .unwrap_or_else(|| panic!("no Scheduled event for {pod}: {events:?}"))
}

#[test]
fn only_the_leader_binds_and_a_standby_takes_over() {
    let c = start_cluster();
    c.create(&[node("n", "64", json!({}), true)]);
    // Short enough for a quick test, long enough that a busy machine does not make the
    // leader miss its renewals.
    let fast = [
        "--leader-elect-lease-duration=5s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=500ms",
    ];
    let mut first = start_scheduler(&c.server, "first", &fast);
    let mut leader = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            leader = lease_holder(&c);
            leader.is_some()
        }),
        "no leader; log:\n{}",
        first.log()
    );
    let leader = leader.unwrap();
    let second = start_scheduler(&c.server, "second", &fast);
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..4 {
        c.create(&[pod(&format!("p{i}"), "100m", json!({}))]);
    }
    for i in 0..4 {
        c.wait_bound(&format!("p{i}"), &first.log());
        let ok = wait_until(Duration::from_secs(10), || {
            c.events("default", &format!("p{i}"))
                .iter()
                .any(|e| e.1 == "Scheduled")
        });
        assert!(ok);
        assert_eq!(
            bound_by(&c, &format!("p{i}")),
            leader,
            "only the leader binds"
        );
    }
    assert_eq!(lease_holder(&c).as_deref(), Some(leader.as_str()));

    // The leader stops cleanly and releases the lease: the standby takes over.
    first.terminate();
    let mut next = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            next = lease_holder(&c).filter(|h| *h != leader);
            next.is_some()
        }),
        "the standby did not take over; log:\n{}",
        second.log()
    );
    let next = next.unwrap();
    c.create(&[pod("after", "100m", json!({}))]);
    c.wait_bound("after", &second.log());
    assert!(wait_until(Duration::from_secs(10), || {
        c.events("default", "after")
            .iter()
            .any(|e| e.1 == "Scheduled")
    }));
    assert_eq!(bound_by(&c, "after"), next);

    // A leader that dies without releasing is replaced once its lease runs out.
    let third = start_scheduler(&c.server, "third", &fast);
    std::thread::sleep(Duration::from_secs(1));
    drop(second);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            last = lease_holder(&c).filter(|h| *h != next);
            last.is_some()
        }),
        "no takeover after the leader died; log:\n{}",
        third.log()
    );
    c.create(&[pod("last", "100m", json!({}))]);
    c.wait_bound("last", &third.log());
}
