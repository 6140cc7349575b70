//! `keelson kubelet`'s static pods against a real `keelson apiserver` and a private
//! containerd: a manifest in `--pod-manifest-path` runs as `<name>-<node>` with a mirror pod
//! in the API; a deleted mirror pod comes back without the container restarting; an edited
//! manifest replaces the pod; a removed one stops it and deletes the mirror pod. Needs root.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson_kubelet::runtime::PodContainer;
use keelson_testsupport::{KubeletNode, condition, tail, wait_until};
use serde_json::Value;

const NODE: &str = "kstatic-worker-1";
const NODE_IP: &str = "10.11.12.15";
const MIRROR: &str = "web-kstatic-worker-1";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn manifest(message: &str) -> String {
    named("web", message)
}

fn named(name: &str, message: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    tier: static\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: busybox\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo {message}; sleep 1000']\n"
    )
}

fn annotation(p: &Value, key: &str) -> String {
    p["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn status0(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

/// The pod containers containerd holds in the test's namespace.
fn containers(node: &KubeletNode) -> Vec<PodContainer> {
    common::pod_containers(node)
}

/// The id of static pod `db`'s app container, if containerd has one.
fn db_container(node: &KubeletNode) -> Option<String> {
    containers(node)
        .into_iter()
        .find(|c| c.pod_name == "db-kstatic-worker-1" && c.container_name == "app")
        .map(|c| c.id)
}

fn write(dir: &Path, name: &str, content: &str) {
    // Written aside and renamed, so the kubelet never reads half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn static_pods_run_from_files_with_mirror_pods() {
    let manifests = tempfile::tempdir().unwrap();
    write(manifests.path(), "web.yaml", &manifest("one"));
    let dir = manifests.path().to_string_lossy().into_owned();
    let mut node = KubeletNode::start(
        &bin(),
        NODE,
        NODE_IP,
        &[
            "--pod-manifest-path",
            &dir,
            "--file-check-frequency",
            "1s",
            "--network-plugin",
            "none",
        ],
    );

    // Runs, with a mirror pod carrying its hash, owned by the node.
    let mirror = node.wait_pod(MIRROR, "mirror pod Running and Ready", 90, |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    let hash = annotation(&mirror, "kubernetes.io/config.hash");
    assert_eq!(hash.len(), 32, "{mirror:#}");
    assert_eq!(annotation(&mirror, "kubernetes.io/config.mirror"), hash);
    assert_eq!(annotation(&mirror, "kubernetes.io/config.source"), "file");
    assert_eq!(mirror["spec"]["nodeName"], NODE);
    assert_eq!(mirror["metadata"]["labels"]["tier"], "static");
    let owner = &mirror["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node", "{mirror:#}");
    assert_eq!(owner["name"], NODE);
    assert_eq!(owner["controller"], true);
    let node_uid = node.cluster.get(&["node", NODE])["metadata"]["uid"].clone();
    assert_eq!(owner["uid"], node_uid);
    let container_id = status0(&mirror)["containerID"].clone();
    let started = status0(&mirror)["state"]["running"]["startedAt"].clone();
    assert!(container_id.is_string(), "{mirror:#}");
    let ours = |c: &PodContainer| c.pod_name == MIRROR && c.pod_uid == hash;
    assert!(
        containers(&node).iter().any(ours),
        "{:?}",
        containers(&node)
    );

    // A deleted mirror pod comes back; the container keeps running.
    let old_uid = mirror["metadata"]["uid"].clone();
    node.cluster.kubectl(&["delete", "pod", MIRROR], None);
    let again = node.wait_pod(MIRROR, "mirror pod recreated", 30, |p| {
        p["metadata"]["uid"] != old_uid && status0(p)["containerID"].is_string()
    });
    assert_eq!(annotation(&again, "kubernetes.io/config.mirror"), hash);
    assert_eq!(status0(&again)["containerID"], container_id, "{again:#}");
    assert_eq!(status0(&again)["state"]["running"]["startedAt"], started);
    assert_eq!(status0(&again)["restartCount"], 0);

    // An edited manifest replaces the pod.
    write(manifests.path(), "web.yaml", &manifest("two"));
    let replaced = node.wait_pod(MIRROR, "mirror pod of the new version", 60, |p| {
        let h = annotation(p, "kubernetes.io/config.mirror");
        !h.is_empty() && h != hash && status0(p)["state"]["running"].is_object()
    });
    let new_hash = annotation(&replaced, "kubernetes.io/config.hash");
    assert_eq!(
        annotation(&replaced, "kubernetes.io/config.mirror"),
        new_hash
    );
    assert_ne!(status0(&replaced)["containerID"], container_id);
    assert!(
        wait_until(Duration::from_secs(20), || !containers(&node)
            .iter()
            .any(ours)),
        "the old version's containers stayed: {:?}\nkubelet log:\n{}",
        containers(&node),
        tail(&node.log(), 40)
    );

    // A removed manifest stops the pod and deletes the mirror pod.
    std::fs::remove_file(manifests.path().join("web.yaml")).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || node.pod(MIRROR).is_none()),
        "the mirror pod stayed: {:#}\nkubelet log:\n{}",
        node.pod(MIRROR).unwrap_or_default(),
        tail(&node.log(), 40)
    );
    assert!(
        wait_until(Duration::from_secs(20), || !containers(&node)
            .iter()
            .any(|c| c.pod_name == MIRROR)),
        "the static pod's containers stayed: {:?}\nkubelet log:\n{}",
        containers(&node),
        tail(&node.log(), 40)
    );

    // Without the API server the kubelet keeps static pods running, also across its own
    // restart; the mirror pod follows once the API server is back. (A manifest added while
    // the API server is down waits for it: container environments are resolved from the
    // API, services included.)
    const DB: &str = "db-kstatic-worker-1";
    write(manifests.path(), "db.yaml", &named("db", "db"));
    node.wait_pod(DB, "static pod db running", 60, |p| {
        status0(p)["state"]["running"].is_object()
    });
    let id = db_container(&node);
    assert!(id.is_some(), "{:?}", containers(&node));
    node.cluster.server.kill();
    node.start_kubelet("kubelet-2");
    assert!(
        wait_until(Duration::from_secs(30), || node.log().contains("adopted")),
        "the restarted kubelet adopted nothing:\n{}",
        tail(&node.log(), 40)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(db_container(&node), id, "replaced without the API server");
    node.cluster.server.restart();
    let db = node.wait_pod(DB, "mirror pod once the API server is back", 90, |p| {
        status0(p)["state"]["running"].is_object()
    });
    assert_eq!(
        status0(&db)["containerID"].as_str().unwrap_or_default(),
        format!("containerd://{}", id.unwrap()),
        "{db:#}"
    );
}
