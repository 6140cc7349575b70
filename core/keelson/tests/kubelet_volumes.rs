//! `keelson kubelet`'s volumes, environments and pod files against a real `keelson apiserver`,
//! controller manager (for the ServiceAccount token Secret) and a private containerd: secret,
//! configMap, emptyDir (disk and Memory) and hostPath volumes, env from fields, Secrets,
//! ConfigMaps and services, the ServiceAccount token (accepted by the API server), /etc/hosts
//! and /etc/resolv.conf (also of a hostNetwork pod), a ConfigMap update reaching a running pod,
//! a pod waiting for a missing Secret, and teardown (also of a pod deleted while the kubelet
//! is down). Needs root.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson_testsupport::{DaemonProc, KubeletNode, kubectl, tail, wait_until};
use serde_json::{Value, json};

const NODE: &str = "kv-worker-1";
const NODE_IP: &str = "10.11.12.14";
const CLUSTER_DNS: &str = "10.96.0.10";
const NODE_RESOLV: &str = "nameserver 192.0.2.53\nsearch example.test\noptions timeout:2\n";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// The node, then (dropped after it) whatever the kubelet left mounted under its root dir, so
/// that a failed run leaks no tmpfs.
struct Fixture {
    node: KubeletNode,
    _mounts: MountGuard,
}

struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut left: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.0))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = std::process::Command::new("umount")
                .args(["-l", m])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Fixture {
    type Target = KubeletNode;
    fn deref(&self) -> &KubeletNode {
        &self.node
    }
}

fn log_file(root: &Path, pod: &Value, container: &str) -> PathBuf {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    root.join("logs")
        .join(format!("default_{name}_{uid}"))
        .join(format!("{container}.log"))
}

/// Waits for `marker` in the container's log; returns the log.
fn wait_log(node: &KubeletNode, pod: &str, container: &str, marker: &str) -> String {
    let mut text = String::new();
    let ok = wait_until(Duration::from_secs(60), || {
        let Some(p) = node.pod(pod) else { return false };
        text =
            std::fs::read_to_string(log_file(node.root.path(), &p, container)).unwrap_or_default();
        text.contains(marker)
    });
    assert!(
        ok,
        "no {marker:?} in the log of {pod}/{container}:\n{text}\npod: {:#}\nkubelet log:\n{}",
        node.pod(pod).unwrap_or_default(),
        tail(&node.log(), 60)
    );
    text
}

/// The value of `KEY=...` in a log.
fn field<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    log.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in the log:\n{log}"))
}

/// The lines between `<<NAME` and `>>NAME` markers.
fn block(log: &str, name: &str) -> String {
    let start = format!("{name}<<\n");
    let end = format!(">>{name}");
    let from = log
        .find(&start)
        .unwrap_or_else(|| panic!("no {name} block:\n{log}"))
        + start.len();
    let to = log[from..].find(&end).unwrap() + from;
    log[from..to].to_string()
}

/// `kubectl auth whoami` with only the bearer token.
fn whoami(node: &KubeletNode, token: &str) -> Result<String, String> {
    let c = &node.cluster;
    let empty = c.server.data_dir.path().join("empty-kubeconfig.yaml");
    std::fs::write(&empty, "").unwrap();
    let ca = c.server.data_dir.path().join("pki").join("ca.crt");
    let out = kubectl(
        &c.kubectl,
        &empty,
        &[
            "--server",
            &c.server.url,
            "--certificate-authority",
            ca.to_str().unwrap(),
            "--token",
            token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    if out.ok {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(out.stderr)
    }
}

const APP_SCRIPT: &str = r#"
while [ ! -f /shared/msg ]; do sleep 0.1; done
echo "SECRET=$(cat /etc/secret/password)"
echo "SECRET_MODE=$(stat -L -c %a /etc/secret/password)"
echo "CFG_FILE=$(cat /etc/cfg/conf/app.conf)"
echo "CFG_MODE=$(stat -L -c %a /etc/cfg/conf/app.conf)"
echo "CFG_LIST=$(ls /etc/cfg | tr '\n' ' ')"
echo "CFG_RO=$(touch /etc/cfg/x 2>/dev/null && echo writable || echo readonly)"
echo "SHARED=$(cat /shared/msg)"
echo "TMPFS=$(grep ' /cache ' /proc/mounts)"
echo "HOST=$(cat /host/host.txt)"
echo from-pod > /host/out.txt
echo "ENV_POD=$POD_NAME/$POD_NS/$POD_UID/$NODE/$HOST_IP/$APP_LABEL"
echo "ENV_PASSWORD=$PASSWORD"
echo "ENV_GREETING=$GREETING"
echo "ENV_EXPANDED=$EXPANDED"
echo "ENV_FROM=$CFG_greeting/$ODD"
echo "ENV_SVC=$BACKEND_SERVICE_HOST:$BACKEND_SERVICE_PORT_HTTP:$BACKEND_PORT"
echo "ENV_MEM=$MEM_MI"
echo "SA_NS=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
echo "SA_CA=$(head -n 1 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt)"
echo "TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)"
echo "SA_RO=$(touch /var/run/secrets/kubernetes.io/serviceaccount/x 2>/dev/null && echo writable || echo readonly)"
echo "HOSTS<<"; cat /etc/hosts; echo ">>HOSTS"
echo "RESOLV<<"; cat /etc/resolv.conf; echo ">>RESOLV"
echo "HOSTNAME=$(cat /etc/hostname)"
echo DONE
sleep 1000
"#;

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

#[test]
fn pods_get_volumes_env_service_account_tokens_and_dns_files() {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, NODE_RESOLV).unwrap();
    let host_dir = dir.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("host.txt"), "from-host").unwrap();
    let created_dir = dir.path().join("made/by/kubelet");

    let node = KubeletNode::start(
        &bin(),
        NODE,
        NODE_IP,
        &[
            // Loopback only: no pod IP in /etc/hosts (kubelet_network.rs covers pod IPs).
            "--network-plugin",
            "none",
            "--cluster-dns",
            CLUSTER_DNS,
            "--resolv-conf",
            resolv.to_str().unwrap(),
        ],
    );
    let mut node = Fixture {
        _mounts: MountGuard(node.root.path().to_path_buf()),
        node,
    };
    let c = &node.cluster;
    let cm = DaemonProc::start(
        &bin(),
        &c.server,
        "controller-manager",
        "controller-manager",
        &[
            "--leader-elect=false",
            "--controllers=serviceaccount,serviceaccount-token",
        ],
    );
    // The default account's token Secret, made by the controller manager.
    let has_token = || {
        c.try_get(&["secrets", "-n", "default"])
            .and_then(|l| l["items"].as_array().cloned())
            .is_some_and(|items| {
                items.iter().any(|s| {
                    s["type"] == "kubernetes.io/service-account-token"
                        && s["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                            == "default"
                        && s["data"]["token"].is_string()
                })
            })
    };
    assert!(
        wait_until(Duration::from_secs(30), has_token),
        "no token Secret for default/default; controller manager log:\n{}",
        tail(&cm.log(), 40)
    );

    c.create(&[
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "stringData": {"password": "s3cret", "user": "admin"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"greeting": "hello", "app.conf": "x=1"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "odd"},
               "data": {"1st": "skipped", "ODD": "yes"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
               "spec": {"ports": [{"name": "http", "port": 8080}], "selector": {"app": "none"}}}),
    ]);
    let svc_ip = c.get(&["service", "backend"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    c.create(&[json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vols", "namespace": "default", "labels": {"app": "vols"}},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "subdomain": "sub",
            "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["alias.test", "alias2.test"]}],
            "volumes": [
                {"name": "secret", "secret": {"secretName": "creds", "defaultMode": 256}},
                {"name": "cfg", "configMap": {"name": "settings",
                    "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 384}]}},
                {"name": "shared", "emptyDir": {}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "host", "hostPath": {"path": host_dir, "type": "Directory"}},
                {"name": "made", "hostPath": {"path": created_dir, "type": "DirectoryOrCreate"}},
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", APP_SCRIPT],
                    "resources": {"limits": {"memory": "64Mi"}},
                    "volumeMounts": [
                        {"name": "secret", "mountPath": "/etc/secret"},
                        {"name": "cfg", "mountPath": "/etc/cfg"},
                        {"name": "shared", "mountPath": "/shared"},
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "host", "mountPath": "/host"},
                        {"name": "made", "mountPath": "/made", "readOnly": true},
                    ],
                    "envFrom": [
                        {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                        {"configMapRef": {"name": "odd"}},
                    ],
                    "env": [
                        field_env("POD_NAME", "metadata.name"),
                        field_env("POD_NS", "metadata.namespace"),
                        field_env("POD_UID", "metadata.uid"),
                        field_env("NODE", "spec.nodeName"),
                        field_env("HOST_IP", "status.hostIP"),
                        field_env("APP_LABEL", "metadata.labels['app']"),
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                        {"name": "EXPANDED", "value": "$(GREETING)-world $$(GREETING)"},
                        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    ],
                },
                {
                    "name": "writer",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "echo shared-hello > /shared/msg; sleep 1000"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                },
            ],
        },
    })]);
    let log = wait_log(&node, "vols", "app", "DONE");
    let pod = node.pod("vols").unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    // Volumes.
    assert_eq!(field(&log, "SECRET"), "s3cret");
    assert_eq!(field(&log, "SECRET_MODE"), "400");
    assert_eq!(field(&log, "CFG_FILE"), "x=1");
    assert_eq!(field(&log, "CFG_MODE"), "600");
    assert_eq!(field(&log, "CFG_LIST").trim(), "conf");
    assert_eq!(field(&log, "CFG_RO"), "readonly");
    assert_eq!(field(&log, "SHARED"), "shared-hello");
    let tmpfs = field(&log, "TMPFS");
    assert!(
        tmpfs.starts_with("tmpfs /cache tmpfs") && tmpfs.contains("size=16384k"),
        "{tmpfs}"
    );
    assert_eq!(field(&log, "HOST"), "from-host");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out.txt")).unwrap(),
        "from-pod\n"
    );
    assert!(created_dir.is_dir(), "DirectoryOrCreate made no directory");
    let pod_dir = node.root.path().join("pods").join(&uid);
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~empty-dir/shared/msg")
            .is_file()
    );
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~configmap/cfg/..data")
            .is_symlink()
    );

    // Environment.
    assert_eq!(
        field(&log, "ENV_POD"),
        format!("vols/default/{uid}/{NODE}/{NODE_IP}/vols")
    );
    assert_eq!(field(&log, "ENV_PASSWORD"), "s3cret");
    assert_eq!(field(&log, "ENV_GREETING"), "hello");
    assert_eq!(field(&log, "ENV_EXPANDED"), "hello-world $(GREETING)");
    assert_eq!(field(&log, "ENV_FROM"), "hello/yes");
    assert_eq!(
        field(&log, "ENV_SVC"),
        format!("{svc_ip}:8080:tcp://{svc_ip}:8080")
    );
    assert_eq!(field(&log, "ENV_MEM"), "64");
    let events = c.events("default", "vols");
    assert!(
        events.iter().any(|e| e.0 == "Warning"
            && e.1 == "InvalidEnvironmentVariableNames"
            && e.2 == "Keys [1st] from the EnvFrom configMap default/odd were skipped since they are considered invalid environment variable names."),
        "{events:?}"
    );

    // The ServiceAccount token: read-only, and the API server takes it.
    assert_eq!(field(&log, "SA_NS"), "default");
    assert_eq!(field(&log, "SA_CA"), "-----BEGIN CERTIFICATE-----");
    assert_eq!(field(&log, "SA_RO"), "readonly");
    let token = field(&log, "TOKEN");
    assert_eq!(
        whoami(&node, token),
        Ok("system:serviceaccount:default:default".to_string())
    );

    // /etc/hosts, /etc/resolv.conf, /etc/hostname.
    let hosts = block(&log, "HOSTS");
    assert!(
        hosts.starts_with(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
        "{hosts}"
    );
    assert!(
        hosts.ends_with("\n# Entries added by HostAliases.\n10.9.9.9\talias.test\talias2.test\n"),
        "{hosts}"
    );
    if let Some(ip) = pod["status"]["podIP"].as_str() {
        assert!(
            hosts.contains(&format!("{ip}\tvols.sub.default.svc.cluster.local\tvols\n")),
            "{hosts}"
        );
    }
    assert_eq!(
        block(&log, "RESOLV"),
        format!(
            "search default.svc.cluster.local svc.cluster.local cluster.local example.test\nnameserver {CLUSTER_DNS}\noptions ndots:5\n"
        )
    );
    assert_eq!(field(&log, "HOSTNAME"), "vols");

    // A changed ConfigMap reaches the running pod's volume (the kubelet looks every 30 s),
    // through a new `..data`.
    let cfg_dir = pod_dir.join("volumes/kubernetes.io~configmap/cfg");
    let data_before = std::fs::read_link(cfg_dir.join("..data")).unwrap();
    c.kubectl(
        &[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"app.conf":"x=2"}}"#,
        ],
        None,
    );
    let updated = wait_until(Duration::from_secs(45), || {
        std::fs::read_to_string(cfg_dir.join("conf/app.conf")).is_ok_and(|t| t == "x=2")
    });
    assert!(
        updated,
        "the configMap volume was not updated\nkubelet log:\n{}",
        tail(&node.log(), 30)
    );
    assert_ne!(
        std::fs::read_link(cfg_dir.join("..data")).unwrap(),
        data_before
    );

    // A hostNetwork pod: the node's hosts file and resolver, the node's IP as its podIP.
    c.create(&[json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostnet", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "hostAliases": [{"ip": "10.9.9.9", "hostnames": ["alias.test"]}],
            "containers": [{
                "name": "app",
                "image": "busybox",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo POD_IP=$POD_IP; echo HOSTS'<<'; cat /etc/hosts; echo '>>'HOSTS; echo RESOLV'<<'; cat /etc/resolv.conf; echo '>>'RESOLV; echo DONE; sleep 1000"],
                "env": [field_env("POD_IP", "status.podIP")],
            }],
        },
    })]);
    let hostnet = wait_log(&node, "hostnet", "app", "DONE");
    assert_eq!(field(&hostnet, "POD_IP"), NODE_IP);
    assert_eq!(
        block(&hostnet, "HOSTS"),
        format!(
            "# Kubernetes-managed hosts file (host network).\n{}\n# Entries added by HostAliases.\n10.9.9.9\talias.test\n",
            std::fs::read_to_string("/etc/hosts").unwrap()
        )
    );
    assert_eq!(
        block(&hostnet, "RESOLV"),
        "search example.test\nnameserver 192.0.2.53\noptions timeout:2\n"
    );
    c.kubectl(&["delete", "pod", "hostnet", "--wait=false"], None);

    // A pod whose Secret is missing waits in ContainerCreating, then starts once it exists.
    c.create(&[json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "waits", "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "dnsPolicy": "Default",
            "automountServiceAccountToken": false,
            "volumes": [{"name": "later", "secret": {"secretName": "later"}}],
            "containers": [{
                "name": "app",
                "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo LATE=$(cat /later/v); echo RESOLV'<<'; cat /etc/resolv.conf; echo '>>'RESOLV; echo SA=$([ -e /var/run/secrets/kubernetes.io/serviceaccount/token ] && echo yes || echo no); sleep 1000"],
                "volumeMounts": [{"name": "later", "mountPath": "/later"}],
            }],
        },
    })]);
    let failed_mount = wait_until(Duration::from_secs(30), || {
        c.events("default", "waits").iter().any(|e| {
            e.0 == "Warning"
                && e.1 == "FailedMount"
                && e.2
                    == "MountVolume.SetUp failed for volume \"later\" : secret \"later\" not found"
        })
    });
    assert!(
        failed_mount,
        "no FailedMount event: {:?}\nkubelet log:\n{}",
        c.events("default", "waits"),
        tail(&node.log(), 40)
    );
    let waiting = node.pod("waits").unwrap();
    assert_eq!(
        waiting["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ContainerCreating",
        "{waiting:#}"
    );
    assert_eq!(waiting["status"]["phase"], "Pending", "{waiting:#}");
    c.create(&[
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"},
                      "stringData": {"v": "late"}}),
    ]);
    let late = wait_log(&node, "waits", "app", "SA=");
    assert_eq!(field(&late, "LATE"), "late");
    assert_eq!(
        block(&late, "RESOLV"),
        "search example.test\nnameserver 192.0.2.53\noptions timeout:2\n"
    );
    assert_eq!(
        field(&late, "SA"),
        "no",
        "automountServiceAccountToken: false mounts no token"
    );

    // Deleting the pod stops its containers, unmounts its tmpfs and removes its directory.
    c.kubectl(&["delete", "pod", "vols", "--wait=false"], None);
    let gone = wait_until(Duration::from_secs(40), || {
        node.pod("vols").is_none() && !pod_dir.exists()
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        gone,
        "pod dir {} still there or pod not deleted\nkubelet log:\n{}",
        pod_dir.display(),
        tail(&node.log(), 40)
    );
    assert!(
        !mounts.contains(pod_dir.to_str().unwrap()),
        "mounts left under {}:\n{mounts}",
        pod_dir.display()
    );

    // A pod deleted while the kubelet is down has its directory and mounts removed when the
    // kubelet comes back.
    let waits_uid = node.pod("waits").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let waits_dir = node.root.path().join("pods").join(&waits_uid);
    assert!(
        waits_dir
            .join("volumes/kubernetes.io~secret/later/v")
            .is_file()
    );
    drop(node.node.kubelet.take());
    node.cluster.kubectl(
        &["delete", "pod", "waits", "--grace-period=0", "--force"],
        None,
    );
    node.node.start_kubelet("kubelet-2");
    let gone = wait_until(Duration::from_secs(30), || !waits_dir.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        gone && !mounts.contains(waits_dir.to_str().unwrap()),
        "pod dir {} or its mounts still there
kubelet log:
{}",
        waits_dir.display(),
        tail(&node.log(), 40)
    );
    drop(cm);
}
