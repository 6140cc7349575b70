//! A node for kubelet tests: an API server, a private containerd with the busybox test image
//! imported, and `keelson kubelet` on both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{Cluster, Containerd, DaemonProc, busybox_image, wait_until};

/// An API server, a private containerd with busybox imported, and a kubelet on both. Drop
/// stops the kubelet, then containerd with its shims and containers, then removes the
/// cgroups runc made for them.
pub struct KubeletNode {
    pub kubelet: Option<DaemonProc>,
    pub cluster: Cluster,
    pub cd: Option<Containerd>,
    /// The kubelet's `--root-dir`.
    pub root: tempfile::TempDir,
    pub bin: PathBuf,
    /// The node's name (`--hostname-override`).
    pub node: String,
    /// The node's InternalIP (`--node-ip`).
    pub node_ip: String,
    /// Extra kubelet arguments, given at every (re)start.
    pub extra_args: Vec<String>,
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        drop(self.kubelet.take());
        let Some(cd) = self.cd.take() else {
            return;
        };
        cd.stop_and_remove_cgroups();
    }
}

impl KubeletNode {
    /// Starts everything; the kubelet gets `extra_args` after the fixture's own flags (and
    /// `--network-plugin none` unless they name a network plugin). Panics
    /// with the reason when a private containerd cannot run here (not root, no containerd).
    pub fn start(bin: &Path, node: &str, node_ip: &str, extra_args: &[&str]) -> Self {
        let me = Self::start_without_kubelet(bin, node, node_ip, extra_args);
        let mut me = me;
        me.start_kubelet("kubelet");
        me
    }

    /// Starts the API server and containerd only; [`KubeletNode::start_kubelet`] starts the
    /// kubelet.
    pub fn start_without_kubelet(
        bin: &Path,
        node: &str,
        node_ip: &str,
        extra_args: &[&str],
    ) -> Self {
        if let Err(why) = Containerd::available() {
            panic!("kubelet tests need a private containerd: {why}");
        }
        let cd = Containerd::start();
        import_archive(bin, &cd, &busybox_image());
        KubeletNode {
            kubelet: None,
            cluster: Cluster::start(bin),
            cd: Some(cd),
            root: tempfile::tempdir().expect("kubelet root dir"),
            bin: bin.to_path_buf(),
            node: node.to_string(),
            node_ip: node_ip.to_string(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Imports an OCI image-layout archive (see [`crate::test_image`]) into the node's
    /// containerd.
    pub fn import_image(&self, archive: &Path) {
        import_archive(&self.bin, self.containerd(), archive);
    }

    /// The private containerd.
    pub fn containerd(&self) -> &Containerd {
        self.cd.as_ref().expect("containerd runs until drop")
    }

    /// Starts (or replaces) the kubelet; its log is `<name>.log` in the API server's data dir.
    pub fn start_kubelet(&mut self, name: &str) {
        drop(self.kubelet.take());
        let cd = self.containerd();
        let socket = cd.socket.to_string_lossy().into_owned();
        let namespace = cd.namespace.clone();
        let root = self.root.path().to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec![
            "--hostname-override",
            &self.node,
            "--node-ip",
            &self.node_ip,
            "--node-status-update-frequency",
            "1s",
            "--containerd-address",
            &socket,
            "--containerd-namespace",
            &namespace,
            "--root-dir",
            &root,
        ];
        // Pods get loopback only unless the test picks a network backend: a backend makes
        // node-wide objects (a bridge, NAT rules) that tests running side by side would share.
        if !self
            .extra_args
            .iter()
            .any(|a| a.starts_with("--network-plugin"))
        {
            args.extend(["--network-plugin", "none"]);
        }
        // The kubelet server on a port of its own (reported in the Node), not 10250 for all.
        if !self
            .extra_args
            .iter()
            .any(|a| a == "--port" || a.starts_with("--port="))
        {
            args.extend(["--port", "0"]);
        }
        args.extend(self.extra_args.iter().map(String::as_str));
        let kubelet = DaemonProc::start(&self.bin, &self.cluster.server, "kubelet", name, &args);
        self.kubelet = Some(kubelet);
    }

    /// What the kubelet logged so far.
    pub fn log(&self) -> String {
        self.kubelet
            .as_ref()
            .map(DaemonProc::log)
            .unwrap_or_default()
    }

    /// The pod `name` in `default`, if it exists.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.cluster.try_get(&["pod", name])
    }

    /// Waits for `check` on pod `name` in `default`; panics with the pod and the kubelet's
    /// log when it does not hold within `secs`.
    pub fn wait_pod(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let ok = wait_until(Duration::from_secs(secs), || {
            self.pod(name).is_some_and(|p| check(&p))
        });
        assert!(
            ok,
            "pod {name}: {what} not within {secs}s\npod: {:#}\nkubelet log:\n{}",
            self.pod(name).unwrap_or_default(),
            tail(&self.log(), 40)
        );
        self.pod(name).unwrap_or_default()
    }
}

/// `keelson image import archive` into `cd`; panics with its stderr when it fails.
fn import_archive(bin: &Path, cd: &Containerd, archive: &Path) {
    let out = Command::new(bin)
        .args(["image", "import"])
        .arg(archive)
        .arg("--address")
        .arg(&cd.socket)
        .args(["-n", &cd.namespace])
        .output()
        .expect("run keelson image import");
    assert!(
        out.status.success(),
        "import {}: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A pod in `default` bound to `node` with one busybox-style container `app` running `script`
/// under `sh -c`, grace period 2 s. Its imagePullPolicy is IfNotPresent: the test node has
/// busybox imported and no way out to Docker Hub, which `Always` (the default for an
/// untagged image) would make the kubelet ask.
pub fn script_pod(node: &str, name: &str, image: &str, policy: &str, script: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", script]}],
        },
    })
}

/// The status of condition `type_` of a pod or node ("" when absent).
pub fn condition(object: &Value, type_: &str) -> String {
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}
