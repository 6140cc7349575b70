//! `keelson bench pods`: pod-create-to-Running latency through the API server and a real
//! kubelet on containerd + runc, beside `ctr run` of the same image on the same containerd
//! (the baseline), both with the image present. It prints figures and ratios; it asserts
//! nothing.
//!
//! The API server runs in this process on the embedded store; the kubelet runs as a child
//! `keelson kubelet` (the same binary), on a private containerd unless `--containerd-address`
//! names one. Pods are bound to the kubelet's node directly (`spec.nodeName`), so the figures
//! hold the API server, the kubelet's sandbox, network attach, container start and status
//! post, and the bench's own watch seeing `phase: Running`. The baseline is `ctr run -d
//! --null-io`, timed from its start to its exit, which is when its task runs: one container,
//! no sandbox, no network, plus ctr's own start-up.
//!
//! Both are measured one at a time (`--single` samples) and `--pods` at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::process::Command;

use crate::bench::{Latencies, ms};
use crate::bench_scheduler_e2e::embedded_apiserver;
use crate::private_containerd::PrivateContainerd;

/// The node name the bench's kubelet registers.
const NODE: &str = "keelson-bench";
/// The image both sides run.
const IMAGE: &str = "docker.io/library/busybox:latest";
/// How long one phase may take before the bench gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Args, Debug)]
pub struct BenchPodsArgs {
    /// Pods (and baseline containers) started at once in the burst phase.
    #[arg(long, default_value_t = 50)]
    pub pods: usize,
    /// Samples of one pod (and one container) at a time.
    #[arg(long, default_value_t = 10)]
    pub single: usize,
    /// A running containerd's socket; without it the bench starts a private one.
    #[arg(long)]
    pub containerd_address: Option<PathBuf>,
    /// The busybox image archive to import (default: the one scripts/build-images.sh makes).
    #[arg(long)]
    pub image_archive: Option<PathBuf>,
    /// The pods' network backend: `bridge` (on a bridge and pod CIDR of the bench's own,
    /// removed afterwards) or `none` (loopback only, as `ctr run` containers have).
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// The pod CIDR of the bench's node, with `--network bridge`.
    #[arg(long, default_value = "10.250.0.0/24")]
    pub pod_cidr: ipnet::IpNet,
    /// Extra arguments for the kubelet (repeatable), such as `--kubelet-arg=--port=0`.
    #[arg(long = "kubelet-arg", allow_hyphen_values = true)]
    pub kubelet_args: Vec<String>,
}

/// The bridge the bench's pods use with `--network bridge`.
fn bench_bridge() -> String {
    format!("kbench{}", std::process::id() % 100_000)
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchPodsArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("keelson-bench-pods-")
        .tempdir()
        .context("temp dir")?;
    let namespace = format!("keelson-bench-{}", std::process::id());
    let private = match &args.containerd_address {
        Some(_) => None,
        None => Some(PrivateContainerd::start(&dir.path().join("containerd")).await?),
    };
    let socket = match (&args.containerd_address, &private) {
        (Some(s), _) => s.clone(),
        (None, Some(p)) => p.socket().to_path_buf(),
        (None, None) => bail!("no containerd"),
    };
    let outcome = measure(&args, dir.path(), &socket, &namespace).await;
    if let Some(p) = private {
        p.stop().await;
    }
    outcome
}

async fn measure(
    args: &BenchPodsArgs,
    dir: &Path,
    socket: &Path,
    namespace: &str,
) -> anyhow::Result<()> {
    let cd = keelson_kubelet::Containerd::connect(socket, namespace)
        .await
        .context("connect to containerd")?;
    let version = cd.version().await.context("containerd version")?;
    let archive = args.image_archive.clone().unwrap_or_else(|| {
        std::env::var_os("KEELSON_IMAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/keelson/images"))
            .join("busybox.tar")
    });
    keelson_kubelet::images::import(&cd, &archive)
        .await
        .with_context(|| format!("import {} (run scripts/setup.sh)", archive.display()))?;
    println!(
        "pod start, image present: containerd {version}, {} at once, {} one at a time, network {}",
        args.pods, args.single, args.network
    );

    let ctr = Ctr {
        socket: socket.to_path_buf(),
        namespace: namespace.to_string(),
    };
    let ctr_single = ctr.single(args.single).await;
    let ctr_burst = ctr.burst(args.pods).await;
    ctr.remove_all().await;
    let (ctr_single, ctr_burst) = (ctr_single?, ctr_burst?);

    let (_api_dir, server, client) = embedded_apiserver().await?;
    let kubelet = start_kubelet(args, dir, &server.kubeconfig, socket, namespace)?;
    let result = pods(args, &client, &kubelet.log).await;
    let cleanup = delete_all(&client).await;
    kubelet.stop().await;
    ctr.remove_all().await;
    if args.network == "bridge" {
        remove_network(args.pod_cidr).await;
    }
    let (single, burst) = result?;
    cleanup?;

    println!();
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>7}",
        "", "p50 ms", "p99 ms", "max ms", "p50 x"
    );
    let mut rows = [
        (
            "ctr run -d, one at a time (baseline)".to_string(),
            ctr_single,
            None,
        ),
        ("keelson pod, one at a time".to_string(), single, Some(0)),
        (
            format!("ctr run -d, {} at once (baseline)", args.pods),
            ctr_burst,
            None,
        ),
        (
            format!("keelson pods, {} at once", args.pods),
            burst,
            Some(2),
        ),
    ];
    let baselines: Vec<Duration> = rows.iter_mut().map(|r| r.1.pct(0.5)).collect();
    for (label, lat, base) in rows.iter_mut() {
        let p50 = lat.pct(0.5);
        let ratio = base
            .map(|b| format!("{:.2}", ms(p50) / ms(baselines[b]).max(f64::EPSILON)))
            .unwrap_or_else(|| "1.00".into());
        println!(
            "{label:<46} {:>9.1} {:>9.1} {:>9.1} {ratio:>7}",
            ms(p50),
            ms(lat.pct(0.99)),
            ms(lat.pct(1.0))
        );
    }
    Ok(())
}

/// `ctr` against the bench's containerd and namespace.
struct Ctr {
    socket: PathBuf,
    namespace: String,
}

impl Ctr {
    fn command(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["-n", &self.namespace])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `ctr run -d` of one container; the time until it returns.
    async fn run_one(&self, id: String) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = self
            .command()
            .args(["run", "-d", "--null-io", IMAGE, &id, "sleep", "3600"])
            .output()
            .await
            .context("run ctr (Debian package containerd)")?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "ctr run {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }

    async fn single(&self, samples: usize) -> anyhow::Result<Latencies> {
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples {
            lat.push(self.run_one(format!("bench-single-{i}")).await?);
        }
        Ok(Latencies(lat))
    }

    async fn burst(&self, n: usize) -> anyhow::Result<Latencies> {
        let runs = (0..n).map(|i| self.run_one(format!("bench-burst-{i}")));
        let lat = futures::future::join_all(runs)
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Latencies(lat))
    }

    /// Kills and deletes every container the bench made with ctr.
    async fn remove_all(&self) {
        let Ok(out) = self
            .command()
            .args(["containers", "ls", "-q"])
            .output()
            .await
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bench-"))
            .map(str::to_string)
            .collect();
        let removals = ids.iter().map(|id| async move {
            let _ = self.command().args(["task", "rm", "-f", id]).status().await;
            let _ = self.command().args(["containers", "rm", id]).status().await;
        });
        futures::future::join_all(removals).await;
    }
}

/// The bench's kubelet process.
struct Kubelet {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Kubelet {
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn start_kubelet(
    args: &BenchPodsArgs,
    dir: &Path,
    kubeconfig: &Path,
    socket: &Path,
    namespace: &str,
) -> anyhow::Result<Kubelet> {
    let log = dir.join("kubelet.log");
    let file = std::fs::File::create(&log).context("kubelet log")?;
    let exe = std::env::current_exe().context("find the keelson binary")?;
    let child = Command::new(exe)
        .arg("kubelet")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--hostname-override", NODE])
        .arg("--containerd-address")
        .arg(socket)
        .args(["--containerd-namespace", namespace])
        .arg("--root-dir")
        .arg(dir.join("kubelet"))
        .args(["--port", "0", "--network-plugin", &args.network])
        .args(network_args(args))
        .args(&args.kubelet_args)
        .env("KEELSON_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .context("start the kubelet")?;
    Ok(Kubelet { child, log })
}

/// The kubelet's network flags for `--network bridge`: the bench's bridge and pod CIDR.
fn network_args(args: &BenchPodsArgs) -> Vec<String> {
    if args.network != "bridge" {
        return Vec::new();
    }
    vec![
        "--pod-cidr".into(),
        args.pod_cidr.to_string(),
        "--network-plugin-config".into(),
        json!({"bridge": bench_bridge(), "clusterCIDR": args.pod_cidr.to_string()}).to_string(),
    ]
}

/// Removes the bench's bridge and its masquerade rule.
async fn remove_network(pod_cidr: ipnet::IpNet) {
    let _ = Command::new("ip")
        .args(["link", "del", &bench_bridge()])
        .stderr(Stdio::null())
        .status()
        .await;
    let cleared = tokio::task::spawn_blocking(move || {
        keelson_kubelet::network::nft::clear_masquerade(pod_cidr)
    })
    .await;
    if let Ok(Err(e)) = cleared {
        tracing::debug!("masquerade rule of {pod_cidr}: {e:?}");
    }
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench-pods"}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// When the bench's watch first saw each pod Running.
type RunningAt = Arc<Mutex<HashMap<String, Instant>>>;

async fn pods(
    args: &BenchPodsArgs,
    client: &kube::Client,
    kubelet_log: &Path,
) -> anyhow::Result<(Latencies, Latencies)> {
    let failed = |what: &str| {
        let log = std::fs::read_to_string(kubelet_log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::anyhow!("{what}; the kubelet's log ends with:\n{}", tail.join("\n"))
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = async {
        loop {
            if let Ok(n) = nodes.get(NODE).await {
                let ready = n
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready)
        .await
        .map_err(|_| failed("the kubelet's node was not Ready within 60s"))?;

    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let running: RunningAt = Arc::default();
    let watch = tokio::spawn(watch_running(api.clone(), running.clone()));
    let wait_running = |names: Vec<String>| {
        let running = running.clone();
        async move {
            let all = async {
                loop {
                    if names
                        .iter()
                        .all(|n| running.lock().is_ok_and(|r| r.contains_key(n)))
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(PHASE_TIMEOUT, all).await.is_ok()
        }
    };
    let seen = |name: &str| running.lock().ok().and_then(|r| r.get(name).copied());

    let mut single = Vec::with_capacity(args.single);
    for i in 0..args.single {
        let name = format!("single-{i}");
        let start = Instant::now();
        api.create(&PostParams::default(), &pod(&name)?)
            .await
            .context("create pod")?;
        if !wait_running(vec![name.clone()]).await {
            watch.abort();
            return Err(failed(&format!("pod {name} was not Running in time")));
        }
        single.push(seen(&name).map_or(Duration::ZERO, |t| t.duration_since(start)));
    }

    let names: Vec<String> = (0..args.pods).map(|i| format!("burst-{i}")).collect();
    let creates = names.iter().map(|name| {
        let api = api.clone();
        async move {
            let start = Instant::now();
            api.create(&PostParams::default(), &pod(name)?)
                .await
                .with_context(|| format!("create pod {name}"))?;
            Ok::<_, anyhow::Error>((name.clone(), start))
        }
    });
    let started = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !wait_running(names.clone()).await {
        watch.abort();
        return Err(failed("the burst's pods were not all Running in time"));
    }
    let burst = started
        .iter()
        .map(|(name, start)| seen(name).map_or(Duration::ZERO, |t| t.duration_since(*start)))
        .collect();
    watch.abort();
    Ok((Latencies(single), Latencies(burst)))
}

async fn watch_running(api: Api<Pod>, running: RunningAt) {
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            _ => continue,
        };
        let is_running = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running");
        if let (true, Some(name), Ok(mut r)) = (is_running, pod.metadata.name, running.lock()) {
            r.entry(name).or_insert(at);
        }
    }
}

/// Deletes the bench's pods and waits until the kubelet has removed them.
async fn delete_all(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().labels("app=bench-pods");
    api.delete_collection(&DeleteParams::default(), &lp)
        .await
        .context("delete the bench's pods")?;
    let gone = async {
        loop {
            match api.list(&lp).await {
                Ok(l) if l.items.is_empty() => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), gone)
        .await
        .map_err(|_| anyhow::anyhow!("the kubelet did not remove the bench's pods within 120s"))
}
