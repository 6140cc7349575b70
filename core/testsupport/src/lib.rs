//! Helpers shared by Keelson's integration tests.
//!
//! Every test gets its own temp dir and loopback ports; processes started here are killed
//! when their guard drops, even when the test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Waits until `check` returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> std::io::Result<Self> {
        let child = cmd.spawn()?;
        Ok(Self {
            child,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real etcd (Debian `etcd-server`) on loopback ports in a temp dir.
pub struct Etcd {
    pub endpoint: String,
    _proc: ChildGuard,
    _dir: tempfile::TempDir,
}

/// Path of the etcd binary, or None when it is not installed.
pub fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Etcd {
    /// Starts etcd and waits until it answers. Panics with a clear message when etcd is missing:
    /// `scripts/setup.sh` installs it.
    pub fn start() -> Self {
        let bin = etcd_binary()
            .expect("etcd is not installed: run scripts/setup.sh (Debian package etcd-server)");
        let dir = tempfile::tempdir().expect("temp dir for etcd");
        let client_port = free_port();
        let peer_port = free_port();
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file");
        let mut cmd = Command::new(bin);
        cmd.arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&endpoint)
            .arg("--advertise-client-urls")
            .arg(&endpoint)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("test={peer}"))
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let proc = ChildGuard::spawn("etcd", &mut cmd).expect("start etcd");
        let addr = format!("127.0.0.1:{client_port}");
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        assert!(
            up,
            "etcd did not start; see {}",
            dir.path().join("etcd.log").display()
        );
        Self {
            endpoint,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }
}

/// Which store a test API server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Etcd,
}

/// A `keelson apiserver` process on a free loopback port with its own data dir.
pub struct ApiServerProc {
    pub url: String,
    pub port: u16,
    pub kubeconfig: PathBuf,
    pub data_dir: tempfile::TempDir,
    pub etcd: Option<Etcd>,
    bin: PathBuf,
    extra: Vec<String>,
    proc: Option<ChildGuard>,
}

impl ApiServerProc {
    /// Starts the API server binary `bin` on `backend` and waits until it serves.
    pub fn start(bin: &Path, backend: Backend) -> Self {
        Self::start_with(bin, backend, &[])
    }

    pub fn start_with(bin: &Path, backend: Backend, extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let etcd = (backend == Backend::Etcd).then(Etcd::start);
        let mut s = Self {
            url: String::new(),
            port: free_port(),
            kubeconfig: data_dir.path().join("kubeconfig.yaml"),
            data_dir,
            etcd,
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
        };
        s.url = format!("https://127.0.0.1:{}", s.port);
        s.launch();
        s
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("apiserver.log"))
            .expect("apiserver log file");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("apiserver")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--secure-port")
            .arg(self.port.to_string())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(e) = &self.etcd {
            cmd.arg("--etcd-servers").arg(&e.endpoint);
        }
        self.proc = Some(ChildGuard::spawn("keelson apiserver", &mut cmd).expect("start keelson"));
        let addr = format!("127.0.0.1:{}", self.port);
        let kc = self.kubeconfig.clone();
        let up = wait_until(Duration::from_secs(30), || {
            kc.exists() && std::net::TcpStream::connect(&addr).is_ok()
        });
        if !up {
            panic!("keelson apiserver did not start; log:\n{}", self.log());
        }
    }

    /// Kills the server with SIGKILL (no chance to flush anything).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the server again on the same data dir, port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(ChildGuard::pid)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("apiserver.log")).unwrap_or_default()
    }
}

/// kubectl binaries to test with: the oldest and newest of the versioned ones the machine has
/// (1.27 ... 1.33), or the one on PATH.
pub fn kubectl_binaries() -> Vec<PathBuf> {
    let dir = Path::new("/usr/lib/google-cloud-sdk/bin");
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let minor = name.strip_prefix("kubectl.1.")?.parse::<u32>().ok()?;
            Some((minor, e.path()))
        })
        .collect();
    versioned.sort();
    let mut out = Vec::new();
    if let Some((_, p)) = versioned.first() {
        out.push(p.clone());
    }
    if versioned.len() > 1
        && let Some((_, p)) = versioned.last()
    {
        out.push(p.clone());
    }
    if out.is_empty() {
        for p in ["/usr/bin/kubectl", "/usr/local/bin/kubectl"] {
            if Path::new(p).exists() {
                out.push(PathBuf::from(p));
                break;
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no kubectl found: run scripts/setup.sh (it installs Debian's kubernetes-client)"
    );
    out
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `kubectl --kubeconfig KC ARGS...` with an optional stdin.
pub fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kubectl-cache"))
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(input) = stdin
        && let Some(mut s) = child.stdin.take()
    {
        s.write_all(input.as_bytes()).expect("write kubectl stdin");
    }
    let out = child.wait_with_output().expect("wait for kubectl");
    KubectlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The repository root (for examples and test data).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A `keelson <daemon>` process pointed at an API server's kubeconfig, killed on drop; its
/// log is in the API server's data dir as `<name>.log`.
pub struct DaemonProc {
    pub proc: ChildGuard,
    pub log: PathBuf,
}

impl DaemonProc {
    /// Starts `keelson <subcommand> --kubeconfig <server's> <args>`.
    pub fn start(
        bin: &Path,
        server: &ApiServerProc,
        subcommand: &str,
        name: &str,
        args: &[&str],
    ) -> DaemonProc {
        let log = server.data_dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("daemon log file");
        let mut cmd = Command::new(bin);
        cmd.arg(subcommand)
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .env("KEELSON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        DaemonProc {
            proc: ChildGuard::spawn(name, &mut cmd).expect("start keelson daemon"),
            log,
        }
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: a clean stop (leases released).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.proc.pid().to_string())
            .status();
        let _ = self.proc.child.wait();
    }
}

/// An API server and the newest kubectl, with the calls tests make most.
pub struct Cluster {
    pub server: ApiServerProc,
    pub kubectl: PathBuf,
}

impl Cluster {
    /// Starts `keelson apiserver` on the embedded store.
    pub fn start(bin: &Path) -> Cluster {
        Cluster {
            server: ApiServerProc::start(bin, Backend::Sqlite),
            kubectl: kubectl_binaries().pop().expect("a kubectl binary"),
        }
    }

    /// Runs kubectl; the output, whether it succeeded or not.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        kubectl(&self.kubectl, &self.server.kubeconfig, args, stdin)
    }

    /// Runs kubectl and panics with its output if it fails.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.try_kubectl(args, stdin);
        assert!(
            out.ok,
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `kubectl create -f -` of `objects`.
    pub fn create(&self, objects: &[serde_json::Value]) {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.kubectl(&["create", "-f", "-"], Some(&list.to_string()));
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a, None)).expect("kubectl printed JSON")
    }

    /// Like [`Cluster::get`], `None` when kubectl fails (such as NotFound).
    pub fn try_get(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        let out = self.try_kubectl(&a, None);
        if !out.ok {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// The events in `namespace` about the object named `name`, as
    /// (type, reason, message, count, reportingInstance).
    pub fn events(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<(String, String, String, i64, String)> {
        let list = self.get(&["events", "-n", namespace]);
        list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (
                    s("type"),
                    s("reason"),
                    s("message"),
                    e["count"].as_i64().unwrap_or(0),
                    s("reportingInstance"),
                )
            })
            .collect()
    }
}
