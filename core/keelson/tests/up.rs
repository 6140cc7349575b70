//! `keelson up` end to end: from an empty data dir, the whole system in one process with a
//! private containerd, the book's guestbook applied from `examples/guestbook/` with the real
//! kubectl, an entry written through the frontend's NodePort and read back through the
//! slaves, scaling, a deleted pod replaced, logs and exec, then a restart of `keelson up`
//! that keeps the cluster and the entry; `keelson down` removes the node's pods, bridge and
//! rules at the end (also when the test fails).
//!
//! Needs root, containerd, runc, nft and the guestbook images built by
//! `scripts/build-images.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keelson_testsupport::{
    ChildGuard, KubectlOutput, images_dir, kubectl, kubectl_binaries, repo_root, wait_until,
};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// One `keelson up` process over a data dir, and the kubectl to drive it.
struct Up {
    data_dir: PathBuf,
    kubectl: PathBuf,
    proc: Option<ChildGuard>,
    log: PathBuf,
    /// Names unique to this run: the bridge and the proxy's table.
    name: String,
    starts: usize,
    /// The cluster DNS's port (the node's address; the kube-dns Service maps 53 to it).
    dns_port: u16,
}

impl Up {
    fn new(data_dir: &Path) -> Up {
        let name = format!("kup{}", std::process::id() % 100_000);
        Up {
            data_dir: data_dir.to_path_buf(),
            kubectl: kubectl_binaries().pop().expect("a kubectl binary"),
            proc: None,
            log: data_dir.with_extension("log"),
            name,
            starts: 0,
            dns_port: keelson_testsupport::free_port(),
        }
    }

    /// Starts `keelson up` and waits for the node to be Ready.
    fn start(&mut self) {
        for image in [
            "busybox.tar",
            "redis-master.tar",
            "guestbook-redis-slave.tar",
            "guestbook-php-frontend.tar",
        ] {
            let path = images_dir().join(image);
            assert!(
                path.is_file(),
                "image {} is missing: run scripts/build-images.sh",
                path.display()
            );
        }
        self.starts += 1;
        self.log = self.data_dir.with_extension(format!("{}.log", self.starts));
        let log = std::fs::File::create(&self.log).expect("log file");
        let network = format!(r#"{{"bridge":"{}"}}"#, self.name);
        let images = images_dir();
        let mut cmd = Command::new(bin());
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--secure-port", "0", "--kubelet-port", "0"])
            .arg("--private-containerd")
            .arg("--import")
            .arg(&images)
            .args(["--cluster-cidr", "10.78.0.0/16"])
            // Service IPs of its own: other tests' proxies on this host hold 10.0.0.x rules.
            .args(["--service-cluster-ip-range", "10.0.8.0/24"])
            // The node's own address: a wildcard one would answer pods from the bridge's.
            .args(["--dns-listen", &format!("{}:{}", host_ip(), self.dns_port)])
            .args(["--network-plugin-config", &network])
            .args(["--proxy-nftables-table", &self.name])
            .env("KEELSON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.proc = Some(ChildGuard::spawn("keelson-up", &mut cmd).expect("start keelson up"));
        let ready = wait_until(Duration::from_secs(120), || {
            self.try_kubectl(&["get", "nodes", "-o", "json"])
                .ok_json()
                .is_some_and(|nodes| {
                    nodes["items"].as_array().is_some_and(|items| {
                        items.iter().any(|n| {
                            n["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                        })
                    })
                })
        });
        assert!(ready, "the node never became Ready\n{}", self.log_tail());
    }

    /// SIGINT (Ctrl-C) and wait for a clean exit.
    fn stop(&mut self) {
        let Some(mut proc) = self.proc.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &proc.pid().to_string()])
            .status();
        let exited = wait_until(Duration::from_secs(40), || {
            proc.child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            proc.kill();
        }
        assert!(
            exited,
            "keelson up did not stop on SIGINT\n{}",
            self.log_tail()
        );
        let status = proc.child.wait().expect("wait for keelson up");
        assert!(
            status.success(),
            "keelson up exited with {status}\n{}",
            self.log_tail()
        );
    }

    fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, ChildGuard::pid)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig.yaml")
    }

    fn try_kubectl(&self, args: &[&str]) -> KubectlOutput {
        if !self.kubeconfig().exists() {
            return KubectlOutput {
                ok: false,
                stdout: String::new(),
                stderr: "no kubeconfig yet".into(),
            };
        }
        kubectl(&self.kubectl, &self.kubeconfig(), args, None)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.try_kubectl(args);
        assert!(
            out.ok,
            "kubectl {} failed:\n{}\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr,
            self.log_tail()
        );
        out.stdout
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- keelson up log (tail) ---\n{}",
            lines[from..].join("\n")
        )
    }

    /// The Running pods whose `name` label is `app`.
    fn running(&self, app: &str) -> Vec<String> {
        let selector = format!("name={app}");
        let Some(list) = self
            .try_kubectl(&["get", "pods", "-l", &selector, "-o", "json"])
            .ok_json()
        else {
            return Vec::new();
        };
        list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    fn wait_running(&self, app: &str, count: usize, secs: u64) -> Vec<String> {
        let ok = wait_until(Duration::from_secs(secs), || {
            self.running(app).len() == count
        });
        let pods = self.try_kubectl(&["get", "pods", "-o", "wide"]);
        assert!(
            ok,
            "{count} {app} pods never ran\n{}\n{}",
            pods.stdout,
            self.log_tail()
        );
        self.running(app)
    }

    /// The node's InternalIP.
    fn node_ip(&self) -> String {
        let nodes: Value =
            serde_json::from_str(&self.kubectl(&["get", "nodes", "-o", "json"])).expect("json");
        nodes["items"][0]["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .and_then(|a| a["address"].as_str())
            .expect("the node has an InternalIP")
            .to_string()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let _ = Command::new("kill")
                .args(["-INT", &proc.pid().to_string()])
                .status();
            if !wait_until(Duration::from_secs(30), || {
                proc.child.try_wait().ok().flatten().is_some()
            }) {
                proc.kill();
            }
        }
        // Pods, the bridge, the masquerade rule and the proxy's table.
        let out = Command::new(bin())
            .arg("down")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output();
        if let Ok(out) = out
            && !out.status.success()
        {
            eprintln!(
                "keelson down failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.name])
            .status();
    }
}

trait OkJson {
    fn ok_json(self) -> Option<Value>;
}

impl OkJson for KubectlOutput {
    fn ok_json(self) -> Option<Value> {
        if !self.ok {
            return None;
        }
        serde_json::from_str(&self.stdout).ok()
    }
}

/// `GET http://addr/path` with a short timeout; the body on 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

/// The address of the default route's interface, which the node reports as its InternalIP.
fn host_ip() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    // A UDP "connect" only picks the route; nothing is sent.
    socket.connect("192.0.2.1:9").expect("a default route");
    socket.local_addr().expect("local address").ip()
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[test]
fn guestbook_end_to_end() {
    let dir = tempfile::Builder::new()
        .prefix("keelson-up-")
        .tempdir()
        .expect("temp dir");
    let mut up = Up::new(&dir.path().join("data"));
    up.start();

    // The book's manifests, as a reader applies them.
    let examples = repo_root().join("examples/guestbook");
    let examples = examples.to_string_lossy();
    up.kubectl(&["apply", "-f", &examples]);
    up.wait_running("redis-master", 1, 120);
    up.wait_running("redis-slave", 2, 120);
    up.wait_running("frontend", 3, 120);

    // An entry written through the NodePort (the master) and read back (the slaves).
    let node = format!("{}:30001", up.node_ip());
    let page = http_get(&node, "/");
    assert!(
        page.as_deref().is_some_and(|p| p.contains("<html")),
        "the frontend's page at http://{node}/: {page:?}\n{}",
        up.log_tail()
    );
    let entry = "hello,keelson";
    let set = format!("/guestbook.php?cmd=set&key=messages&value={entry}");
    let mut answer = None;
    let written = wait_until(Duration::from_secs(30), || {
        answer = http_get(&node, &set);
        answer.as_deref().is_some_and(|a| a.contains("Updated"))
    });
    assert!(
        written,
        "cmd=set through {node}: {answer:?}\n{}",
        up.log_tail()
    );
    let get = "/guestbook.php?cmd=get&key=messages";
    let read_back = |up: &Up| {
        let mut answer = None;
        let ok = wait_until(Duration::from_secs(60), || {
            answer = http_get(&node, get);
            answer.as_deref().is_some_and(|a| a.contains(entry))
        });
        assert!(ok, "cmd=get through {node}: {answer:?}\n{}", up.log_tail());
    };
    read_back(&up);

    // Scale, and a deleted pod comes back.
    up.kubectl(&["scale", "rc", "frontend", "--replicas=5"]);
    let frontends = up.wait_running("frontend", 5, 120);
    let victim = frontends[0].clone();
    up.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    let replaced = wait_until(Duration::from_secs(120), || {
        let now = up.running("frontend");
        now.len() == 5 && !now.contains(&victim)
    });
    assert!(
        replaced,
        "frontend {victim} was not replaced\n{}",
        up.log_tail()
    );

    // Logs and exec on a redis pod.
    let master = up.wait_running("redis-master", 1, 30).remove(0);
    let logs = up.kubectl(&["logs", &master]);
    assert!(
        logs.contains("Ready to accept connections"),
        "redis-master logs:\n{logs}"
    );
    let slave = up.wait_running("redis-slave", 2, 30).remove(0);
    let slave_logs = up.kubectl(&["logs", &slave]);
    assert!(
        slave_logs.contains("MASTER <-> REPLICA sync")
            || slave_logs.contains("Connecting to MASTER"),
        "redis-slave logs:\n{slave_logs}"
    );
    let exec = up.kubectl(&["exec", &master, "--", "cat", "/etc/hostname"]);
    assert_eq!(exec.trim(), master, "exec in {master}");

    // The cluster DNS, from a pod: the short name through the search path, and the full one.
    let master_ip = up.kubectl(&[
        "get",
        "svc",
        "redis-master",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(master_ip.starts_with("10.0.8."), "{master_ip}");
    up.kubectl(&[
        "run",
        "dns-check",
        "--image=docker.io/library/busybox:latest",
        "--image-pull-policy=IfNotPresent",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "nslookup redis-master; nslookup frontend.default.svc.cluster.local",
    ]);
    let mut out = String::new();
    let resolved = wait_until(Duration::from_secs(60), || {
        let phase = up.kubectl(&["get", "pod", "dns-check", "-o", "jsonpath={.status.phase}"]);
        if phase != "Succeeded" && phase != "Failed" {
            return false;
        }
        out = up.kubectl(&["logs", "dns-check"]);
        true
    });
    let frontend_ip = up.kubectl(&["get", "svc", "frontend", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(
        resolved && out.contains(&master_ip) && out.contains(&frontend_ip),
        "nslookup in a pod (redis-master {master_ip}, frontend {frontend_ip}):\n{out}\n{}",
        up.log_tail()
    );
    up.kubectl(&["delete", "pod", "dns-check", "--wait=false"]);

    // Memory of the all-in-one process with the guestbook running (DESIGN.md: <= 150 MB
    // RSS with 30 pods idle); printed, not asserted.
    let pods = up.kubectl(&["get", "pods", "--no-headers"]).lines().count();
    if let Some(kib) = rss_kib(up.pid()) {
        println!(
            "keelson up RSS with the guestbook running ({pods} pods): {:.1} MiB",
            kib as f64 / 1024.0
        );
    }

    // Ctrl-C, then a second `keelson up` on the same data dir: the same cluster, the entry
    // still there.
    up.stop();
    up.start();
    up.wait_running("frontend", 5, 120);
    up.wait_running("redis-slave", 2, 120);
    up.wait_running("redis-master", 1, 120);
    read_back(&up);
    let still = up.kubectl(&["get", "rc", "frontend", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(still.trim(), "5");
}
