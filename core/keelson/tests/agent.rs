//! `keelson server` and `keelson agent` on one machine: the agent joins with the node token
//! the server wrote (a static bearer token) and the server's CA, registers its node, gets a
//! podCIDR from the server's controller manager and runs a pod on its own containerd with
//! the bridge backend; a wrong token is refused.
//!
//! Needs root, containerd, runc, nft and the busybox image from `scripts/build-images.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keelson_testsupport::{
    ChildGuard, busybox_image, condition, kubectl, kubectl_binaries, script_pod, wait_until,
};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn spawn(name: &str, log: &Path, args: &[&str]) -> ChildGuard {
    let file = std::fs::File::create(log).expect("log file");
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("KEELSON_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file);
    ChildGuard::spawn(name, &mut cmd).expect("start keelson")
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    keelson_testsupport::tail(&text, 40)
}

/// Removes the agent's pods, bridge and rules when the test ends, passed or not.
struct Down {
    data_dir: PathBuf,
    bridge: String,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(bin())
            .arg("down")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn agent_joins_with_the_node_token_and_runs_pods() {
    let dir = tempfile::Builder::new()
        .prefix("keelson-agent-")
        .tempdir()
        .expect("temp dir");
    let server_dir = dir.path().join("server");
    let agent_dir = dir.path().join("agent");
    let server_log = dir.path().join("server.log");
    let agent_log = dir.path().join("agent.log");
    let server_dir_s = server_dir.to_string_lossy().to_string();
    let dns_listen = format!("0.0.0.0:{}", keelson_testsupport::free_port());
    let mut server = spawn(
        "keelson-server",
        &server_log,
        &[
            "server",
            "--data-dir",
            &server_dir_s,
            "--secure-port",
            "0",
            "--cluster-cidr",
            "10.79.0.0/16",
            // Service IPs of its own: other tests' proxies on this host hold 10.0.0.x rules.
            "--service-cluster-ip-range",
            "10.0.9.0/24",
            "--dns-listen",
            &dns_listen,
        ],
    );
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    let kubectl_bin = kubectl_binaries().pop().expect("a kubectl binary");
    let k = |args: &[&str]| kubectl(&kubectl_bin, &kubeconfig, args, None);
    assert!(
        wait_until(Duration::from_secs(30), || k(&["get", "ns", "default"]).ok),
        "the server never answered\n{}",
        tail(&server_log)
    );
    let token = std::fs::read_to_string(server_dir.join("node-token"))
        .expect("the server wrote its node token")
        .trim()
        .to_string();
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("the kubeconfig names the server")
        .to_string();
    let ca = server_dir.join("pki/ca.crt");
    let ca_s = ca.to_string_lossy().to_string();

    // The node token authenticates on its own; a wrong one does not.
    let as_token = |token: &str| {
        Command::new(&kubectl_bin)
            .args(["--server", &url, "--certificate-authority", &ca_s])
            .args(["--token", token, "auth", "whoami", "-o", "json"])
            .env("KUBECONFIG", "/dev/null")
            .output()
            .expect("run kubectl")
    };
    let me = as_token(&token);
    let who: Value = serde_json::from_slice(&me.stdout).unwrap_or_default();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "keelson-node",
        "{}",
        String::from_utf8_lossy(&me.stderr)
    );
    let bad = as_token("not-the-token");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let id = std::process::id() % 100_000;
    let node = format!("agent-{id}");
    let bridge = format!("kag{id}");
    let _down = Down {
        data_dir: agent_dir.clone(),
        bridge: bridge.clone(),
    };
    let network = format!(r#"{{"bridge":"{bridge}"}}"#);
    let busybox = busybox_image().to_string_lossy().to_string();
    let agent_dir_s = agent_dir.to_string_lossy().to_string();
    let mut agent = spawn(
        "keelson-agent",
        &agent_log,
        &[
            "agent",
            "--server",
            &url,
            "--token",
            &token,
            "--ca-file",
            &ca_s,
            "--data-dir",
            &agent_dir_s,
            "--hostname-override",
            &node,
            "--private-containerd",
            "--import",
            &busybox,
            "--cluster-cidr",
            "10.79.0.0/16",
            "--cluster-dns",
            "10.0.9.10",
            "--network-plugin-config",
            &network,
            "--kubelet-port",
            "0",
            "--proxy-nftables-table",
            &bridge,
        ],
    );
    let ready = wait_until(Duration::from_secs(90), || {
        let out = k(&["get", "node", &node, "-o", "json"]);
        out.ok
            && serde_json::from_str::<Value>(&out.stdout)
                .is_ok_and(|n| condition(&n, "Ready") == "True" && n["spec"]["podCIDR"].is_string())
    });
    assert!(
        ready,
        "node {node} never became Ready with a podCIDR\nagent:\n{}\nserver:\n{}",
        tail(&agent_log),
        tail(&server_log)
    );

    let pod = script_pod(
        &node,
        "hello",
        "docker.io/library/busybox:latest",
        "Never",
        "echo hello from $(hostname); sleep 300",
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [pod]});
    let created = kubectl(
        &kubectl_bin,
        &kubeconfig,
        &["create", "-f", "-"],
        Some(&list.to_string()),
    );
    assert!(created.ok, "{}", created.stderr);
    let mut ip = String::new();
    let running = wait_until(Duration::from_secs(90), || {
        let out = k(&["get", "pod", "hello", "-o", "json"]);
        let Ok(p) = serde_json::from_str::<Value>(&out.stdout) else {
            return false;
        };
        ip = p["status"]["podIP"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        p["status"]["phase"] == "Running" && ip.starts_with("10.79.")
    });
    assert!(
        running,
        "pod hello never ran on {node} with a pod IP ({ip:?})\nagent:\n{}",
        tail(&agent_log)
    );
    // Logs come through the API server from the agent's kubelet.
    let logs = wait_until(Duration::from_secs(20), || {
        k(&["logs", "hello"]).stdout.contains("hello from hello")
    });
    assert!(logs, "kubectl logs hello\nagent:\n{}", tail(&agent_log));

    // A clean stop of both.
    for (proc, log) in [(&mut agent, &agent_log), (&mut server, &server_log)] {
        let _ = Command::new("kill")
            .args(["-TERM", &proc.pid().to_string()])
            .status();
        let stopped = wait_until(Duration::from_secs(30), || {
            proc.child.try_wait().ok().flatten().is_some()
        });
        assert!(stopped, "did not stop on SIGTERM\n{}", tail(log));
    }
}
