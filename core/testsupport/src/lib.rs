//! Helpers shared by Keelson's integration tests.
//!
//! Every test gets its own temp dir and loopback ports; processes started here are killed
//! when their guard drops, even when the test fails.

mod node;
mod registry;

pub use node::{KubeletNode, condition, script_pod, tail};
pub use registry::{Pushed, Registry};

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

/// Where `scripts/build-images.sh` writes the test images: `$KEELSON_IMAGES`, or
/// `/var/lib/keelson/images`.
pub fn images_dir() -> PathBuf {
    std::env::var_os("KEELSON_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/keelson/images"))
}

/// The busybox OCI image-layout archive (`docker.io/library/busybox:latest`) built by
/// `scripts/build-images.sh`. Panics when it has not been built.
pub fn busybox_image() -> PathBuf {
    let path = images_dir().join("busybox.tar");
    assert!(
        path.is_file(),
        "test image {} is missing: run scripts/setup.sh (or scripts/build-images.sh)",
        path.display()
    );
    path
}

/// The OCI image-layout archive `file` (`redis-master.tar`, ...) in [`images_dir`], built by
/// `scripts/build-images.sh`. Panics, naming the script, when it has not been built.
pub fn test_image(file: &str) -> PathBuf {
    let path = images_dir().join(file);
    assert!(
        path.is_file(),
        "test image {} is missing: run scripts/build-images.sh (scripts/setup.sh runs it)",
        path.display()
    );
    path
}

const CONTAINERD_BIN: &str = "/usr/bin/containerd";

/// A private containerd (Debian's `containerd`) with its own root, state dir and socket in a
/// temp dir, and a namespace of its own. Killed on drop, with its shims; whatever it left
/// mounted under its dirs is unmounted and the dir removed.
pub struct Containerd {
    /// The gRPC socket (`--address` for `ctr` and `keelson image`).
    pub socket: PathBuf,
    /// The containerd namespace this test should use (unique per instance, so that runc's
    /// state under /run/containerd/runc/<namespace> never clashes between instances).
    pub namespace: String,
    proc: Option<ChildGuard>,
    dir: Option<tempfile::TempDir>,
}

impl Containerd {
    /// Ok when this machine can run a private containerd, or why not.
    pub fn available() -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
        let euid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        if euid != "0" {
            return Err(format!(
                "containerd tests must run as root (effective uid is {euid})"
            ));
        }
        for bin in [CONTAINERD_BIN, "/usr/bin/containerd-shim-runc-v2"] {
            if !Path::new(bin).exists() {
                return Err(format!(
                    "{bin} is missing: run scripts/setup.sh (Debian package containerd)"
                ));
            }
        }
        if !["/usr/sbin/runc", "/usr/bin/runc"]
            .iter()
            .any(|p| Path::new(p).exists())
        {
            return Err("runc is missing: run scripts/setup.sh (Debian package runc)".into());
        }
        Ok(())
    }

    /// Starts containerd and waits until its socket answers. Panics with the reason when
    /// containerd cannot run here or does not come up (with the tail of its log).
    pub fn start() -> Self {
        Self::start_disabling(&[])
    }

    /// Like [`Containerd::start`], with more of containerd's plugins disabled (by full id,
    /// e.g. `io.containerd.snapshotter.v1.overlayfs`).
    pub fn start_disabling(plugins: &[&str]) -> Self {
        if let Err(why) = Self::available() {
            panic!("cannot start a private containerd: {why}");
        }
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sweep_stale_containerds();
        let dir = tempfile::Builder::new()
            .prefix(CONTAINERD_DIR_PREFIX)
            .tempdir()
            .expect("temp dir for containerd");
        let d = dir.path();
        // Lets a later run clean up after this one if this process is killed before its drop.
        std::fs::write(d.join("owner"), std::process::id().to_string())
            .expect("write containerd owner file");
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",{extra}
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
            opt = d.join("opt").display(),
            extra = plugins
                .iter()
                .map(|p| format!("\n  {p:?},"))
                .collect::<String>(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write containerd config.toml");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd log file");
        let mut cmd = Command::new(CONTAINERD_BIN);
        cmd.arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let proc = ChildGuard::spawn("containerd", &mut cmd).expect("spawn containerd");
        let mut me = Self {
            socket,
            namespace: format!("keelson-test-{}-{n}", std::process::id()),
            proc: Some(proc),
            dir: Some(dir),
        };
        let up = wait_until(Duration::from_secs(30), || {
            let exited = me
                .proc
                .as_mut()
                .is_none_or(|p| matches!(p.child.try_wait(), Ok(Some(_))));
            exited || std::os::unix::net::UnixStream::connect(&me.socket).is_ok()
        });
        let running = me
            .proc
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)));
        if !(up && running) {
            panic!(
                "private containerd did not come up at {}; its log:\n{}",
                me.socket.display(),
                tail(&me.log(), 40)
            );
        }
        me
    }

    /// Stops containerd and its shims, then removes the (then empty) cgroups runc made for
    /// this instance's containers (`keelson/<namespace>-*` in every hierarchy), which a
    /// failed test would otherwise leave; the `keelson` parent goes too once no other test
    /// has containers there.
    pub fn stop_and_remove_cgroups(self) {
        let prefix = format!("{}-", self.namespace);
        drop(self);
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

    /// The temp dir holding its config, root, state, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// containerd's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }
}

const CONTAINERD_DIR_PREFIX: &str = "keelson-ctrd-";

/// containerd and shim processes started for a private containerd's dir: their command
/// lines name its config file or its socket.
fn containerd_pids(dir: &Path) -> Vec<u32> {
    let prefix = format!("{}/", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
                let args: Vec<String> = raw
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                args.first().is_some_and(|a| a.contains("containerd"))
                    && args.iter().any(|a| a.starts_with(&prefix))
            })
        })
        .collect()
}

/// Snapshot and task mounts outlive a killed containerd: unmounts everything under `dir`,
/// deepest first, lazily so that a busy mount cannot keep the dir alive.
fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&m)
            .stderr(Stdio::null())
            .status();
    }
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// Cleans up private containerds whose test process died without dropping them (killed by a
/// timeout or a signal): their containerd and shims, mounts and dirs.
fn sweep_stale_containerds() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(CONTAINERD_DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No owner file yet: another process is creating it right now.
        let Some(owner) = std::fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|o| o.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        kill_all(&containerd_pids(&dir));
        unmount_under(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Containers of dead test processes' namespaces (`keelson-test-<pid>-<n>`).
    let Ok(entries) = std::fs::read_dir(RUNC_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("keelson-test-")
            .and_then(|rest| rest.split('-').next());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            delete_runc_containers(&name);
        }
    }
}

/// Where containerd's runc shim keeps runc's state, one dir per namespace.
const RUNC_ROOT: &str = "/run/containerd/runc";

/// Kills and deletes the runc containers of a namespace and removes its state dir. A killed
/// shim leaves its container running: runc is the one that knows it.
fn delete_runc_containers(namespace: &str) {
    let root = Path::new(RUNC_ROOT).join(namespace);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = std::fs::remove_dir(&root);
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            // SIGTERM first so containerd closes its database cleanly; SIGKILL if it lingers.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(proc.pid().to_string())
                .status();
            wait_until(Duration::from_secs(5), || {
                !matches!(proc.child.try_wait(), Ok(None))
            });
            proc.kill();
        }
        // Shims outlive containerd.
        kill_all(&containerd_pids(self.dir()));
        delete_runc_containers(&self.namespace);
        let Some(dir) = self.dir.take() else {
            return;
        };
        unmount_under(dir.path());
        drop(dir);
    }
}
