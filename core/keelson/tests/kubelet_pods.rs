//! `keelson kubelet`'s pod workers against a real `keelson apiserver` and a private
//! containerd, driven with real kubectl: pods bound to the node run, restart per policy with
//! CrashLoopBackOff, finish, wait for missing images, survive a kubelet restart without being
//! restarted, and are stopped and deleted. Needs root (a private containerd and runc).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keelson_kubelet::runtime::{PodContainer, Runtime};
use keelson_testsupport::{Cluster, Containerd, DaemonProc, busybox_image, wait_until};
use serde_json::{Value, json};

const NODE: &str = "kp-worker-1";
const NODE_IP: &str = "10.11.12.13";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// An API server, a private containerd with busybox imported, and a kubelet on both. Drop
/// stops the kubelet, then containerd with its shims and containers, then removes the
/// cgroups runc made for them.
struct Fixture {
    kubelet: Option<DaemonProc>,
    cluster: Cluster,
    cd: Option<Containerd>,
    root: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.kubelet.take());
        let Some(cd) = self.cd.take() else {
            return;
        };
        let prefix = format!("{}-", cd.namespace);
        drop(cd);
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let roots = hierarchies
            .flatten()
            .map(|e| e.path())
            .chain([PathBuf::from("/sys/fs/cgroup")]);
        for root in roots {
            let parent = root.join("keelson");
            let Ok(children) = std::fs::read_dir(&parent) else {
                continue;
            };
            for child in children.flatten() {
                if child.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

impl Fixture {
    fn start() -> Self {
        if let Err(why) = Containerd::available() {
            panic!("kubelet pod tests need a private containerd: {why}");
        }
        let cd = Containerd::start();
        let out = Command::new(bin())
            .args(["image", "import"])
            .arg(busybox_image())
            .arg("--address")
            .arg(&cd.socket)
            .args(["-n", &cd.namespace])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import busybox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut me = Fixture {
            kubelet: None,
            cluster: Cluster::start(&bin()),
            cd: Some(cd),
            root: tempfile::tempdir().unwrap(),
        };
        me.start_kubelet("kubelet");
        me
    }

    fn start_kubelet(&mut self, name: &str) {
        let cd = self.cd.as_ref().unwrap();
        let socket = cd.socket.to_str().unwrap().to_string();
        let root = self.root.path().to_str().unwrap().to_string();
        self.kubelet = Some(DaemonProc::start(
            &bin(),
            &self.cluster.server,
            "kubelet",
            name,
            &[
                "--hostname-override",
                NODE,
                "--node-ip",
                NODE_IP,
                "--node-status-update-frequency",
                "1s",
                "--containerd-address",
                &socket,
                "--containerd-namespace",
                &cd.namespace,
                "--root-dir",
                &root,
            ],
        ));
    }

    fn log(&self) -> String {
        self.kubelet
            .as_ref()
            .map(DaemonProc::log)
            .unwrap_or_default()
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.cluster.try_get(&["pod", name])
    }

    /// Waits for `check` on the pod, with the pod and the kubelet's log on failure.
    fn wait_pod(&self, name: &str, what: &str, secs: u64, check: impl Fn(&Value) -> bool) -> Value {
        let ok = wait_until(Duration::from_secs(secs), || {
            self.pod(name).is_some_and(|p| check(&p))
        });
        assert!(
            ok,
            "pod {name}: {what} not within {secs}s\npod: {:#}\nkubelet log:\n{}",
            self.pod(name).unwrap_or_default(),
            tail(&self.log(), 40)
        );
        self.pod(name).unwrap()
    }

    /// The pod containers containerd holds in the test's namespace.
    fn containers(&self) -> Vec<PodContainer> {
        let cd = self.cd.as_ref().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = keelson_kubelet::Containerd::connect(&cd.socket, &cd.namespace)
                .await
                .unwrap();
            let runtime = Runtime::new(client, self.root.path().join("unused"))
                .await
                .unwrap();
            runtime.list_pod_containers().await.unwrap()
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn pod(name: &str, image: &str, policy: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", script]}],
        },
    })
}

fn status0(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn condition(p: &Value, type_: &str) -> String {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
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
        pod("missing", "example.invalid/nothing:1", "Always", "true"),
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
    assert!(message.contains("keelson image import"), "{message}");
    assert!(message.contains("not implemented"), "{message}");
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
