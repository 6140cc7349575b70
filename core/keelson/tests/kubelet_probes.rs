//! `keelson kubelet`'s container probes and restart events against a real `keelson apiserver`
//! and a private containerd: a failing exec or tcpSocket liveness probe restarts the container
//! (`Unhealthy`, `Killing`, restartCount rising), readiness probes (exec and httpGet, behind a
//! startup probe) flip the container's `ready` and the pod's Ready condition both ways, and a
//! crashing container is restarted after 10 s, then 20 s (`BackOff`). Needs root.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_testsupport::{KubeletNode, condition, script_pod, tail};
use serde_json::{Value, json};

const NODE: &str = "kprobe-worker-1";
const NODE_IP: &str = "10.11.12.14";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// A busybox pod running `script`, with `probes` merged into its container.
fn probed(name: &str, script: &str, probes: Value) -> Value {
    let mut pod = script_pod(NODE, name, "busybox", "Always", script);
    let c = &mut pod["spec"]["containers"][0];
    for (k, v) in probes.as_object().unwrap() {
        c[k] = v.clone();
    }
    pod
}

fn status0(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn restarts(p: &Value) -> i64 {
    status0(p)["restartCount"].as_i64().unwrap_or(0)
}

fn seconds(v: &Value) -> Option<i64> {
    serde_json::from_value::<Time>(v.clone())
        .ok()
        .map(|t| t.0.as_second())
}

/// The events about pod `name` as "Reason: message" lines.
fn events(node: &KubeletNode, name: &str) -> Vec<String> {
    node.cluster
        .events("default", name)
        .into_iter()
        .map(|(_, reason, message, _, _)| format!("{reason}: {message}"))
        .collect()
}

fn wait_event(node: &KubeletNode, name: &str, want: &str, secs: u64) {
    let ok = keelson_testsupport::wait_until(Duration::from_secs(secs), || {
        events(node, name).iter().any(|e| e.contains(want))
    });
    assert!(
        ok,
        "pod {name}: no event {want:?} within {secs}s; events: {:#?}\nkubelet log:\n{}",
        events(node, name),
        tail(&node.log(), 40)
    );
}

#[test]
fn probes_restart_unhealthy_containers_and_drive_readiness() {
    let node = KubeletNode::start(&bin(), NODE, NODE_IP, &["--network-plugin", "none"]);
    let every_second = |probe: Value| {
        let mut p = probe;
        p["periodSeconds"] = json!(1);
        p
    };
    node.cluster.create(&[
        // Healthy while /tmp/healthy exists.
        probed(
            "live-exec",
            "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 1000",
            json!({"livenessProbe": every_second(json!({
                "exec": {"command": ["test", "-f", "/tmp/healthy"]},
                "failureThreshold": 2,
            }))}),
        ),
        // Ready while /tmp/ready exists.
        probed(
            "ready-exec",
            "sleep 5; touch /tmp/ready; sleep 6; rm /tmp/ready; sleep 1000",
            json!({"readinessProbe": every_second(json!({
                "exec": {"command": ["test", "-f", "/tmp/ready"]},
            }))}),
        ),
        // Started once httpd listens, ready while /ready.html is served, alive while httpd
        // runs.
        probed(
            "web",
            "mkdir -p /www; sleep 2; httpd -f -p 8080 -h /www & pid=$!; sleep 3; echo ok > /www/ready.html; sleep 5; rm /www/ready.html; sleep 4; kill $pid; sleep 1000",
            json!({
                "ports": [{"name": "web", "containerPort": 8080}],
                "startupProbe": every_second(json!({
                    "tcpSocket": {"port": "web"},
                    "failureThreshold": 30,
                })),
                "readinessProbe": every_second(json!({
                    "httpGet": {"path": "/ready.html", "port": 8080,
                                "httpHeaders": [{"name": "X-Probe", "value": "yes"}]},
                })),
                "livenessProbe": every_second(json!({
                    "tcpSocket": {"port": "web"},
                    "failureThreshold": 2,
                })),
            }),
        ),
    ]);

    // Readiness: not ready until the first success, then ready, then not ready again.
    let p = node.wait_pod("ready-exec", "running but not ready", 60, |p| {
        status0(p)["state"]["running"].is_object()
    });
    assert_eq!(status0(&p)["ready"], false, "{p:#}");
    assert_eq!(condition(&p, "Ready"), "False", "{p:#}");
    let p = node.wait_pod("ready-exec", "Ready", 30, |p| {
        condition(p, "Ready") == "True"
    });
    assert_eq!(status0(&p)["ready"], true);
    assert_eq!(condition(&p, "ContainersReady"), "True");
    let p = node.wait_pod("ready-exec", "not Ready again", 30, |p| {
        condition(p, "Ready") == "False"
    });
    assert_eq!(status0(&p)["ready"], false);
    assert_eq!(restarts(&p), 0, "a readiness failure restarted it: {p:#}");
    wait_event(&node, "ready-exec", "Unhealthy: Readiness probe failed", 10);

    // Liveness (exec): killed and restarted.
    let p = node.wait_pod("live-exec", "restarted", 60, |p| restarts(p) >= 1);
    let last = &status0(&p)["lastState"]["terminated"];
    let code = last["exitCode"].as_i64().unwrap_or_default();
    assert!(code == 137 || code == 143, "exit code {code}: {p:#}");
    wait_event(&node, "live-exec", "Unhealthy: Liveness probe failed", 10);
    wait_event(
        &node,
        "live-exec",
        "Killing: Container app failed liveness probe, will be restarted",
        10,
    );
    // After the restart the file is there again: healthy, then failing again.
    node.wait_pod("live-exec", "restarted twice", 60, |p| restarts(p) >= 2);

    // httpGet readiness behind a startup probe, tcpSocket liveness on a named port (each
    // run of the script goes through ready, unready and killed).
    let p = node.wait_pod("web", "Ready", 60, |p| condition(p, "Ready") == "True");
    assert_eq!(status0(&p)["started"], true, "{p:#}");
    node.wait_pod("web", "not Ready while running", 30, |p| {
        condition(p, "Ready") == "False" && status0(p)["state"]["running"].is_object()
    });
    wait_event(
        &node,
        "web",
        "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404",
        10,
    );
    node.wait_pod("web", "restarted after httpd stopped", 40, |p| {
        restarts(p) >= 1
    });
    wait_event(
        &node,
        "web",
        "Unhealthy: Liveness probe failed: dial tcp",
        10,
    );
    wait_event(
        &node,
        "web",
        "Killing: Container app failed liveness probe",
        10,
    );

    // CrashLoopBackOff: the first restart at once, then 10 s, then 20 s.
    node.cluster.create(&[script_pod(
        NODE,
        "crash",
        "busybox",
        "Always",
        "sleep 3; exit 1",
    )]);
    let mut gaps: BTreeMap<i64, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && gaps.len() < 3 {
        if let Some(p) = node.pod("crash") {
            let s = status0(&p);
            let n = restarts(&p);
            if let (Some(started), Some(finished)) = (
                seconds(&s["state"]["running"]["startedAt"]),
                seconds(&s["lastState"]["terminated"]["finishedAt"]),
            ) && n >= 1
            {
                gaps.entry(n).or_insert(started - finished);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let p = node.pod("crash").unwrap_or_default();
    assert!(
        gaps.len() >= 3,
        "restarts seen: {gaps:?}\npod: {p:#}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );
    let gap = |n: i64| gaps.get(&n).copied().unwrap_or(-1);
    assert!((0..=3).contains(&gap(1)), "first restart: {gaps:?}");
    assert!((9..=14).contains(&gap(2)), "second restart: {gaps:?}");
    assert!((19..=25).contains(&gap(3)), "third restart: {gaps:?}");
    wait_event(
        &node,
        "crash",
        "BackOff: Back-off restarting failed container app in pod crash_default(",
        10,
    );

    // Deleting a pod records Killing for its running container.
    node.cluster.kubectl(&["delete", "pod", "ready-exec"], None);
    wait_event(&node, "ready-exec", "Killing: Stopping container app", 10);
}
