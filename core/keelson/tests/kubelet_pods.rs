//! `keelson kubelet`'s pod workers against a real `keelson apiserver` and a private
//! containerd, driven with real kubectl: pods bound to the node run, restart per policy with
//! CrashLoopBackOff, finish, wait for missing images, survive a kubelet restart without being
//! restarted, and are stopped and deleted. Needs root (a private containerd and runc).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson_kubelet::runtime::PodContainer;
use keelson_testsupport::{KubeletNode, condition, script_pod, tail, wait_until};
use serde_json::Value;

const NODE: &str = "kp-worker-1";
const NODE_IP: &str = "10.11.12.13";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

struct Fixture {
    node: KubeletNode,
}

impl std::ops::Deref for Fixture {
    type Target = KubeletNode;
    fn deref(&self) -> &KubeletNode {
        &self.node
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut KubeletNode {
        &mut self.node
    }
}

impl Fixture {
    fn start() -> Self {
        Fixture {
            node: KubeletNode::start(&bin(), NODE, NODE_IP, &[]),
        }
    }

    /// The pod containers containerd holds in the test's namespace.
    fn containers(&self) -> Vec<PodContainer> {
        common::pod_containers(&self.node)
    }
}

fn pod(name: &str, image: &str, policy: &str, script: &str) -> Value {
    script_pod(NODE, name, image, policy, script)
}

fn status0(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn waiting_reason(p: &Value) -> String {
    status0(p)["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn log_file(root: &Path, p: &Value) -> PathBuf {
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let name = p["metadata"]["name"].as_str().unwrap();
    root.join("logs")
        .join(format!("default_{name}_{uid}"))
        .join("app.log")
}

#[test]
fn the_kubelet_runs_restarts_adopts_and_deletes_pods() {
    let mut f = Fixture::start();
    f.cluster.create(&[
        pod("hello", "busybox", "Always", "echo hello; sleep 1000"),
        pod("crash", "busybox", "Always", "exit 1"),
        pod("done", "busybox:latest", "Never", "echo bye; exit 0"),
        pod("missing", "127.0.0.1:9/nothing:1", "Always", "true"),
    ]);

    // Running and Ready, with its log under the root dir.
    let hello = f.wait_pod("hello", "Running and Ready", 60, |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    let cs = status0(&hello);
    assert_eq!(cs["name"], "app");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{cs}"
    );
    assert!(
        cs["imageID"]
            .as_str()
            .unwrap()
            .starts_with("docker.io/library/busybox@sha256:"),
        "{cs}"
    );
    assert_eq!(hello["status"]["hostIP"], NODE_IP);
    assert!(hello["status"]["startTime"].is_string());
    for c in ["PodScheduled", "Initialized", "ContainersReady"] {
        assert_eq!(condition(&hello, c), "True", "{c}");
    }
    let log = log_file(f.root.path(), &hello);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("hello"))),
        "no hello in {}",
        log.display()
    );

    // Restarted with a backoff.
    let crash = f.wait_pod("crash", "CrashLoopBackOff", 60, |p| {
        status0(p)["restartCount"].as_i64().unwrap_or(0) >= 1
            && waiting_reason(p) == "CrashLoopBackOff"
    });
    let last = &status0(&crash)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 1, "{crash:#}");
    assert_eq!(last["reason"], "Error");
    assert_eq!(crash["status"]["phase"], "Running");
    assert_eq!(condition(&crash, "Ready"), "False");

    // Finished for good.
    let done = f.wait_pod("done", "Succeeded", 60, |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let term = &status0(&done)["state"]["terminated"];
    assert_eq!(term["reason"], "Completed", "{done:#}");
    assert_eq!(term["exitCode"], 0);

    // No image: said so, then backing off.
    let missing = f.wait_pod("missing", "ErrImagePull", 30, |p| {
        let r = waiting_reason(p);
        r == "ErrImagePull" || r == "ImagePullBackOff"
    });
    let message = status0(&missing)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The pull was tried (HTTPS: the registry is not named insecure) and refused: a registry
    // on loopback with nothing listening, so the test sends nothing off the machine.
    assert!(
        message.contains("failed to pull and unpack image \"127.0.0.1:9/nothing:1\"")
            && message.contains("https://127.0.0.1:9/v2/nothing/manifests/1")
            && message.contains("connection refused"),
        "{message}\n{}",
        tail(&f.log(), 30)
    );
    assert_eq!(missing["status"]["phase"], "Pending");
    f.wait_pod("missing", "ImagePullBackOff", 40, |p| {
        waiting_reason(p) == "ImagePullBackOff"
    });

    // A killed kubelet's successor adopts the running container instead of restarting it,
    // and removes the containers of a pod force-deleted meanwhile.
    let before = status0(&f.pod("hello").unwrap()).clone();
    f.kubelet.as_mut().unwrap().proc.kill();
    assert!(f.containers().iter().any(|c| c.pod_name == "crash"));
    f.cluster.kubectl(
        &["delete", "pod", "crash", "--grace-period=0", "--force"],
        None,
    );
    f.start_kubelet("kubelet-2");
    assert!(
        wait_until(Duration::from_secs(30), || f.log().contains("adopted")),
        "the new kubelet adopted nothing:\n{}",
        tail(&f.log(), 40)
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = status0(&f.pod("hello").unwrap()).clone();
    assert_eq!(after["containerID"], before["containerID"]);
    assert_eq!(
        after["state"]["running"]["startedAt"], before["state"]["running"]["startedAt"],
        "{after}"
    );
    assert_eq!(after["restartCount"], 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("hello").count(), 1, "restarted: {text:?}");
    assert!(
        wait_until(Duration::from_secs(20), || !f
            .containers()
            .iter()
            .any(|c| c.pod_name == "crash")),
        "the orphaned pod's containers stayed: {:?}",
        f.containers()
    );

    // Force-deleted while the kubelet runs: its sandbox goes too.
    assert!(f.containers().iter().any(|c| c.pod_name == "missing"));
    f.cluster.kubectl(
        &["delete", "pod", "missing", "--grace-period=0", "--force"],
        None,
    );
    assert!(
        wait_until(Duration::from_secs(20), || !f
            .containers()
            .iter()
            .any(|c| c.pod_name == "missing")),
        "the deleted pod's containers stayed: {:?}",
        f.containers()
    );

    // Graceful deletion: stopped, removed, gone from the API.
    f.cluster
        .kubectl(&["delete", "pod", "hello", "--timeout=60s"], None);
    assert!(f.pod("hello").is_none());
    assert!(
        !f.containers().iter().any(|c| c.pod_name == "hello"),
        "{:?}",
        f.containers()
    );
    f.cluster
        .kubectl(&["delete", "pod", "done", "--timeout=60s"], None);
    assert!(
        wait_until(Duration::from_secs(20), || f.containers().is_empty()),
        "containers left: {:?}\nkubelet log:\n{}",
        f.containers(),
        tail(&f.log(), 40)
    );
}
