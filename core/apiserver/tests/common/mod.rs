//! An in-process API server on a free loopback port with its own data dir, and real kubectl
//! against it.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use keelson_testsupport::{KubectlOutput, kubectl, kubectl_binaries};

/// A running API server; stopped when dropped.
pub struct Server {
    pub url: String,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    running: Option<keelson_apiserver::RunningServer>,
    rt: tokio::runtime::Runtime,
}

impl Server {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    /// Starts on an existing data dir (a restart).
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        let mut cfg = keelson_apiserver::Config::new(dir.path().to_path_buf());
        cfg.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        cfg.secure_port = 0;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt.block_on(keelson_apiserver::start(cfg)).unwrap();
        Self {
            url: running.url.clone(),
            kubeconfig: running.kubeconfig.clone(),
            dir,
            running: Some(running),
            rt,
        }
    }

    /// `<data-dir>/pki/<file>`.
    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.path().join("pki").join(file)
    }
}

impl Server {
    /// Stops the server and hands back its data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

/// The newest kubectl the machine has.
pub fn newest_kubectl() -> PathBuf {
    kubectl_binaries().pop().unwrap()
}

/// kubectl as the admin (client certificate).
pub struct Admin<'a> {
    pub bin: PathBuf,
    pub server: &'a Server,
}

impl<'a> Admin<'a> {
    pub fn new(server: &'a Server) -> Self {
        Self {
            bin: newest_kubectl(),
            server,
        }
    }

    pub fn run(&self, args: &[&str]) -> KubectlOutput {
        kubectl(&self.bin, &self.server.kubeconfig, args, None)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    pub fn stdin(&self, args: &[&str], input: &str) -> String {
        let out = kubectl(&self.bin, &self.server.kubeconfig, args, Some(input));
        assert!(
            out.ok,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

/// A kubeconfig that names no cluster and no user: tests pass `--server` and friends.
pub fn empty_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("empty-kubeconfig.yaml");
    std::fs::write(&path, "apiVersion: v1\nkind: Config\n").unwrap();
    path
}
