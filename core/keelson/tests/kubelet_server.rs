//! The kubelet's HTTPS server and the API server's `pods/log` and `pods/exec` proxies, with
//! real kubectl against `keelson apiserver`, `keelson kubelet` and a private containerd:
//! `kubectl logs` (tail, follow, previous), `kubectl exec` (exit codes, piped stdin, a tty
//! through `script`), and the kubelet's `/healthz`, `/pods` and `/stats/summary` read with
//! curl. Needs root (a private containerd and runc).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keelson_testsupport::{KubectlOutput, KubeletNode, script_pod, tail, wait_until};
use serde_json::Value;

const NODE: &str = "ks-worker-1";
/// The API server reaches the kubelet at the node's InternalIP.
const NODE_IP: &str = "127.0.0.1";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// A node whose kubelet serves on a free port (`--port 0`), reported in the node's status;
/// pods get loopback only (the network is not what is tested here).
fn start() -> KubeletNode {
    KubeletNode::start(
        &bin(),
        NODE,
        NODE_IP,
        &["--port", "0", "--network-plugin", "none"],
    )
}

/// The kubelet's port as the node reports it.
fn kubelet_port(node: &KubeletNode) -> u16 {
    let mut port = 0;
    let ok = wait_until(Duration::from_secs(30), || {
        port = node
            .cluster
            .try_get(&["node", NODE])
            .and_then(|n| n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64())
            .unwrap_or(0) as u16;
        port != 0 && port != 10250
    });
    assert!(
        ok,
        "the node does not report the kubelet's own port (got {port}): {:#}\nkubelet log:\n{}",
        node.cluster.try_get(&["node", NODE]).unwrap_or_default()["status"],
        tail(&node.log(), 40)
    );
    port
}

fn running(p: &Value) -> bool {
    p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

/// kubectl with a time limit, its output as far as it got; `--v=6` on failure helps.
fn kubectl_timed(
    node: &KubeletNode,
    args: &[&str],
    stdin: Option<&str>,
    secs: u64,
) -> KubectlOutput {
    let mut child = Command::new(&node.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&node.cluster.server.kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    });
    let out = child.wait_with_output().expect("wait for kubectl");
    let _ = killer.join();
    KubectlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn exit_code(
    node: &KubeletNode,
    args: &[&str],
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut child = Command::new(&node.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&node.cluster.server.kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().unwrap();
        s.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("wait for kubectl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl -k` of a kubelet path.
fn curl(port: u16, path: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "20", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.trim() == "200", body.to_string())
}

#[test]
fn kubectl_logs_tail_follow_and_previous() {
    let node = start();
    kubelet_port(&node);
    node.cluster.create(&[script_pod(
        NODE,
        "counter",
        "docker.io/library/busybox:latest",
        "Always",
        "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.3; done",
    )]);
    node.wait_pod("counter", "running", 60, running);
    let ok = wait_until(Duration::from_secs(20), || {
        node.cluster
            .try_kubectl(&["logs", "counter"], None)
            .stdout
            .contains("line 3\n")
    });
    let out = node
        .cluster
        .try_kubectl(&["logs", "counter", "--v=6"], None);
    assert!(
        ok,
        "kubectl logs shows the pod's output: {out:?}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );
    assert!(out.stdout.starts_with("line 1\n"), "{out:?}");

    let tailed = node
        .cluster
        .kubectl(&["logs", "counter", "--tail", "2"], None);
    assert_eq!(tailed.lines().count(), 2, "--tail 2: {tailed:?}");
    let stamped = node
        .cluster
        .kubectl(&["logs", "counter", "--tail", "1", "--timestamps"], None);
    let first = stamped.split_whitespace().next().unwrap_or_default();
    assert!(
        first.len() > 20 && first.contains('T') && first.ends_with('Z'),
        "--timestamps prefixes an RFC 3339 time: {stamped:?}"
    );
    let limited = node
        .cluster
        .kubectl(&["logs", "counter", "--limit-bytes", "4"], None);
    assert_eq!(limited, "line", "--limit-bytes 4");

    // -f: lines written after kubectl started arrive while it runs.
    let mut follow = Command::new(&node.cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&node.cluster.server.kubeconfig)
        .args(["logs", "-f", "counter", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 6 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let numbers: Vec<u64> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        numbers.len() >= 6 && numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "kubectl logs -f shows new lines as they come: {seen:?}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );

    // A restarted container: --previous shows the last run's log.
    node.cluster.create(&[script_pod(
        NODE,
        "restarts",
        "docker.io/library/busybox:latest",
        "Always",
        "echo run started at $(cut -d' ' -f1 /proc/uptime); sleep 1; exit 1",
    )]);
    let no_previous = node
        .cluster
        .try_kubectl(&["logs", "restarts", "--previous"], None);
    assert!(!no_previous.ok, "no previous run yet: {no_previous:?}");
    node.wait_pod("restarts", "a restart", 90, |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
            && running(p)
    });
    let previous = node
        .cluster
        .kubectl(&["logs", "restarts", "--previous"], None);
    let ok = wait_until(Duration::from_secs(10), || {
        node.cluster
            .try_kubectl(&["logs", "restarts"], None)
            .stdout
            .contains("run started")
    });
    let current = node.cluster.kubectl(&["logs", "restarts"], None);
    assert!(
        ok && previous.starts_with("run started at ")
            && previous.lines().count() == 1
            && current.lines().count() == 1
            && previous != current,
        "--previous shows the last run only: previous {previous:?}, current {current:?}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );

    // Kubernetes' messages for a pod of two containers and a container not started.
    node.cluster.create(&[serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "two", "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [
            {"name": "a", "image": "docker.io/library/busybox:latest",
             "imagePullPolicy": "IfNotPresent", "command": ["sleep", "600"]},
            {"name": "b", "image": "example.invalid/missing:1", "imagePullPolicy": "Never"}]},
    })]);
    // kubectl picks a container itself; the API server's own choice is seen raw.
    let raw = node.cluster.try_kubectl(
        &["get", "--raw", "/api/v1/namespaces/default/pods/two/log"],
        None,
    );
    assert!(
        !raw.ok
            && raw
                .stderr
                .contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{raw:?}"
    );
    let ok = wait_until(Duration::from_secs(30), || {
        let out = node.cluster.try_kubectl(&["logs", "two", "-c", "b"], None);
        !out.ok
            && out
                .stderr
                .contains("container \"b\" in pod \"two\" is waiting to start")
    });
    assert!(
        ok,
        "{:?}",
        node.cluster.try_kubectl(&["logs", "two", "-c", "b"], None)
    );
}

#[test]
fn kubectl_exec_exit_codes_stdin_and_tty() {
    let node = start();
    kubelet_port(&node);
    node.cluster.create(&[script_pod(
        NODE,
        "shell",
        "docker.io/library/busybox:latest",
        "Always",
        "sleep 3600",
    )]);
    node.wait_pod("shell", "running", 60, running);

    let (code, stdout, stderr) = exit_code(
        &node,
        &["exec", "shell", "--", "sh", "-c", "echo hi; exit 3"],
        None,
    );
    assert_eq!(
        (code, stdout.as_str()),
        (Some(3), "hi\n"),
        "kubectl exec prints hi and exits 3; stderr: {stderr}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );
    let ok = kubectl_timed(
        &node,
        &["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2"],
        None,
        30,
    );
    assert!(ok.ok, "{ok:?}");
    assert_eq!((ok.stdout.as_str(), ok.stderr.as_str()), ("out\n", "err\n"));

    let piped = kubectl_timed(
        &node,
        &[
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ],
        Some("piped text\n"),
        30,
    );
    assert!(
        piped.ok && piped.stdout == "PIPED TEXT\ndone\n",
        "kubectl exec -i passes stdin and its end: {piped:?}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );

    let missing = kubectl_timed(&node, &["exec", "shell", "--", "no-such-command"], None, 30);
    assert!(!missing.ok, "{missing:?}");

    // -it needs a terminal: script(1) gives kubectl one, 50 rows of 132 columns.
    let kubectl_cmd = format!(
        "stty rows 50 cols 132; {} --kubeconfig {} exec -it shell -- sh -c 'stty size; tty; exit 4'",
        node.cluster.kubectl.display(),
        node.cluster.server.kubeconfig.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &kubectl_cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .expect("run script (bsdutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("50 132") && text.contains("/dev/pts/") && out.status.code() == Some(4),
        "kubectl exec -it: a tty of the terminal's size, exit 4: {:?} {text:?} {}\nkubelet log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&node.log(), 40)
    );

    node.cluster.create(&[script_pod(
        NODE,
        "done",
        "docker.io/library/busybox:latest",
        "Never",
        "true",
    )]);
    node.wait_pod("done", "Succeeded", 60, |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let out = node
        .cluster
        .try_kubectl(&["exec", "done", "--", "true"], None);
    assert!(
        !out.ok
            && out
                .stderr
                .contains("cannot exec into a container in a completed pod"),
        "{out:?}"
    );
}

#[test]
fn kubelet_healthz_pods_and_stats_summary() {
    let node = start();
    let port = kubelet_port(&node);
    let (ok, body) = curl(port, "/healthz");
    assert!(
        ok && body == "ok",
        "/healthz: {body:?}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );

    node.cluster.create(&[script_pod(
        NODE,
        "hog",
        "docker.io/library/busybox:latest",
        "Always",
        "head -c 8000000 /dev/zero > /dev/shm/fill; sleep 3600",
    )]);
    node.wait_pod("hog", "running", 60, running);

    let (ok, body) = curl(port, "/pods");
    let list: Value = serde_json::from_str(&body).unwrap_or_default();
    assert!(
        ok && list["kind"] == "PodList"
            && list["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|p| p["metadata"]["name"] == "hog")),
        "/pods lists the node's pods: {body}"
    );

    let mut summary = Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        let (ok, body) = curl(port, "/stats/summary");
        summary = serde_json::from_str(&body).unwrap_or_default();
        ok && summary["pods"].as_array().is_some_and(|pods| {
            pods.iter().any(|p| {
                p["podRef"]["name"] == "hog"
                    && p["startTime"].is_string()
                    && p["memory"]["workingSetBytes"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
                    && p["containers"][0]["name"] == "app"
                    && p["containers"][0]["memory"]["usageBytes"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
            })
        })
    });
    assert!(
        ok,
        "/stats/summary shows the pod's memory: {summary:#}\nkubelet log:\n{}",
        tail(&node.log(), 40)
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .is_some_and(|n| n > 0)
            && summary["node"]["cpu"]["usageCoreNanoSeconds"]
                .as_u64()
                .is_some()
            && summary["node"]["nodeName"] == NODE,
        "{summary:#}"
    );
}

#[test]
fn client_ca_file_requires_client_certificates() {
    let mut node = KubeletNode::start_without_kubelet(
        &bin(),
        NODE,
        NODE_IP,
        &["--port", "0", "--network-plugin", "none"],
    );
    let ca = node.cluster.server.data_dir.path().join("pki/ca.crt");
    let client_cert = node
        .cluster
        .server
        .data_dir
        .path()
        .join("pki/apiserver-kubelet-client.crt");
    assert!(
        client_cert.exists(),
        "the API server made its kubelet client certificate"
    );
    node.extra_args
        .extend(["--client-ca-file".to_string(), ca.display().to_string()]);
    node.start_kubelet("kubelet");
    let port = kubelet_port(&node);
    let (ok, body) = curl(port, "/healthz");
    assert!(!ok, "a client without a certificate is refused: {body:?}");

    node.cluster.create(&[script_pod(
        NODE,
        "hello",
        "docker.io/library/busybox:latest",
        "Always",
        "echo hello from the pod; sleep 3600",
    )]);
    node.wait_pod("hello", "running", 60, running);
    let ok = wait_until(Duration::from_secs(20), || {
        node.cluster
            .try_kubectl(&["logs", "hello"], None)
            .stdout
            .contains("hello from the pod")
    });
    assert!(
        ok,
        "the API server's client certificate is accepted: {:?}\nkubelet log:\n{}",
        node.cluster.try_kubectl(&["logs", "hello", "--v=6"], None),
        tail(&node.log(), 40)
    );
    let exec = node
        .cluster
        .try_kubectl(&["exec", "hello", "--", "echo", "exec ok"], None);
    assert!(exec.ok && exec.stdout == "exec ok\n", "{exec:?}");
}

/// `Runtime::exec_sync` as the probes use it: exit code and output, and a timeout that
/// kills the command.
#[test]
fn runtime_exec_sync() {
    let node = start();
    node.cluster.create(&[script_pod(
        NODE,
        "probed",
        "docker.io/library/busybox:latest",
        "Always",
        "sleep 3600",
    )]);
    node.wait_pod("probed", "running", 60, running);
    let (rt, runtime) = common::node_runtime(&node);
    rt.block_on(async {
        let app = runtime
            .list_pod_containers()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.pod_name == "probed" && c.container_name == "app")
            .expect("the app container");
        let id = keelson_kubelet::runtime::ContainerId(app.id);
        let out = runtime
            .exec_sync(
                &id,
                vec![
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 7".into(),
                ],
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
            (7, &b"out\n"[..], &b"err\n"[..])
        );
        let started = Instant::now();
        let err = runtime
            .exec_sync(
                &id,
                vec!["sleep".into(), "60".into()],
                Duration::from_secs(1),
            )
            .await
            .expect_err("a command past its timeout fails");
        assert!(
            err.to_string().contains("timed out") && started.elapsed() < Duration::from_secs(10),
            "{err}"
        );
        let missing = runtime
            .exec_sync(&id, vec!["no-such-command".into()], Duration::from_secs(5))
            .await;
        assert!(missing.is_err(), "{missing:?}");
    });
}
