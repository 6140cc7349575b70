//! A containerd of Keelson's own: Debian's `containerd` binary with its root, state and
//! socket under one directory, for machines whose containerd is not running (and for
//! benchmarks that must not disturb it).
//!
//! Shims outlive containerd by design, so containers keep running across a restart of it;
//! whoever wants them gone removes them before [`PrivateContainerd::stop`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// Where Debian installs containerd.
const CONTAINERD_BIN: &str = "/usr/bin/containerd";
/// How long containerd may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running private containerd, killed on drop if not stopped.
pub struct PrivateContainerd {
    socket: PathBuf,
    child: Child,
}

impl PrivateContainerd {
    /// Starts containerd with everything under `dir` (created if missing) and waits until
    /// its socket answers.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        if !Path::new(CONTAINERD_BIN).exists() {
            bail!("{CONTAINERD_BIN} is missing: run scripts/setup.sh (Debian package containerd)");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolve {}", dir.display()))?;
        let socket = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = socket.display(),
            opt = dir.join("opt").display(),
        );
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("write {}", config_path.display()))?;
        let log_path = dir.join("containerd.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(CONTAINERD_BIN)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start containerd")?;
        let mut me = Self { socket, child };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!(
                    "containerd exited with {status} while starting; see {}",
                    log_path.display()
                );
            }
            if tokio::net::UnixStream::connect(&me.socket).await.is_ok() {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd did not answer on {} within {}s; see {}",
                    me.socket.display(),
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
