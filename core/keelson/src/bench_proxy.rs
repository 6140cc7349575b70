//! `keelson bench proxy`: TCP throughput and new-connection rate to a pod directly at its IP
//! (the baseline), through a ClusterIP in kernel mode (the nftables rules `keelson proxy`
//! writes) and through the same ClusterIP in userspace mode (the book's proxy, the same
//! listeners and rules as `keelson proxy --proxy-mode userspace`), in one run, with the ratio
//! of each to the baseline. It prints figures; it asserts nothing.
//!
//! Everything runs in network namespaces of the bench's own, so the host's links, routes and
//! rules are untouched: a "node" namespace with a bridge, and "pod" namespaces on the bridge
//! through veth pairs (one serving, one as a client), addresses from `--subnet`. The proxy's
//! table goes into the node namespace's nftables; the userspace proxy runs on threads that
//! entered the node namespace, with a runtime of their own. The namespaces are removed at the
//! end, after an error and on Ctrl-C; leftovers of killed runs are removed by the next run.
//!
//! Throughput is iperf3's (the distro binary, `-J`), server in the serving pod, client in the
//! node namespace (a process on the node) or in the client pod. Connections are the bench's
//! own, in process: each is a connect, a 64-byte request, a 64-byte reply and the server's
//! close, timed from the connect to the end of the reply, `--concurrency` at a time, against
//! a server of the bench's own in the serving pod. The service map is built from Service and
//! Endpoints objects through `keelson_proxy::model::service_map`, with `--services` other
//! services beside the measured ones, so the bench measures the real rule generator.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_proxy::Nft;
use keelson_proxy::model::{ServiceMap, service_map};
use keelson_proxy::nft::{Config, ruleset, transaction};
use keelson_proxy::userspace::{self, Portals};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::oneshot;

use crate::bench::{Latencies, ms};

/// The port iperf3 serves on in the serving pod.
const IPERF_PORT: u16 = 5201;
/// The ports the bench's connection server listens on in the serving pod: one per path
/// (direct, kernel, userspace). Each path's connections end at addresses and ports of their
/// own, so none meets the server's TIME_WAIT sockets of another path's with the same client
/// port: through a cluster IP the client's TCP timestamps start from another offset than to
/// the pod IP (it is derived from the addresses the client sees), and the server would
/// refuse such a SYN until the client's retransmission a second later.
const ECHO_PORTS: [u16; 3] = [8080, 8081, 8082];
/// The measured services' ports.
const IPERF_SERVICE_PORT: u16 = 5201;
const ECHO_SERVICE_PORT: u16 = 80;
/// What a client sends and the server answers on each connection.
const REQUEST: &[u8] = b"GET /keelson-bench-proxy HTTP/1.0 .............................\n";
const REPLY: &[u8] = b"HTTP/1.0 200 OK ...............................................\n";
/// Untimed connections before each path's measurements.
const WARM_UP: usize = 20;
/// How long one connection may take before the bench gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The DESIGN.md target for ClusterIP throughput in kernel mode, as a share of direct.
const TARGET: f64 = 0.95;
/// The prefix of the bench's namespace names: `kbp<pid>-<role>`.
const PREFIX: &str = "kbp";

/// Where the client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientAt {
    /// In the node's network namespace, like a process on the node.
    Node,
    /// In another pod on the same bridge (pod to service, the common path).
    Pod,
}

#[derive(Args, Debug)]
pub struct BenchProxyArgs {
    /// Seconds of iperf3 per path.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub duration: u32,
    /// iperf3 parallel streams (`-P`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=128))]
    pub streams: u32,
    /// Rounds over all paths, one path after the other in each; the rates printed are the
    /// medians, the latency percentiles over every connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// New connections per path.
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Where the client runs: `node`, `pod`, or both (`node,pod`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "node,pod")]
    pub from: Vec<ClientAt>,
    /// Other services (with one endpoint each) in the rules beside the measured ones.
    #[arg(long, default_value_t = 100)]
    pub services: u16,
    /// Masquerade all traffic to cluster IPs (`--masquerade-all` of `keelson proxy`); by
    /// default only traffic from outside `--subnet` (the cluster CIDR here) is.
    #[arg(long)]
    pub masquerade_all: bool,
    /// The bench's pod network inside its node namespace: the bridge takes .1, the serving
    /// pod .2, the client pod .3. It never reaches the host.
    #[arg(long, default_value = "10.252.0.0/24")]
    pub subnet: Ipv4Net,
    /// The measured services' cluster IPs start here; the other services follow.
    #[arg(long, default_value = "10.96.252.10")]
    pub service_ip: Ipv4Addr,
}

/// One measured path from one client.
#[derive(Clone, Copy, Debug)]
struct Figures {
    gbits: f64,
    conns_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The pod IP on a node without the proxy's rules: no nat hooks, no conntrack.
    Bare,
    /// The pod IP with the kernel-mode rules loaded, as on a node running the proxy: the
    /// baseline.
    Direct,
    Kernel,
    Userspace,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Bare => "pod IP, no proxy rules",
            Path::Direct => "pod IP (direct)",
            Path::Kernel => "ClusterIP, kernel (nftables)",
            Path::Userspace => "ClusterIP, userspace proxy",
        }
    }
}

/// Runs the benchmark and prints its report; the namespaces go on return and on Ctrl-C.
pub async fn run(args: BenchProxyArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.concurrency == 0 {
        bail!("--connections and --concurrency must be positive");
    }
    if !(8..=29).contains(&args.subnet.prefix_len()) {
        bail!("--subnet {}: use a prefix from /8 to /29", args.subnet);
    }
    if args.from.is_empty() {
        bail!("--from: name node, pod or both");
    }
    for (tool, flag, package) in [
        ("ip", "-V", "iproute2"),
        ("nft", "--version", "nftables"),
        ("iperf3", "--version", "iperf3"),
    ] {
        let found = std::process::Command::new(tool)
            .arg(flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            bail!("the proxy benchmark needs {tool} (Debian package {package})");
        }
    }
    sweep_leftovers();
    let lab = Lab::new(args.subnet)?;
    let outcome = tokio::select! {
        r = bench(&args, &lab) => r,
        _ = crate::wait_for_signal() => Err(anyhow!("interrupted; the bench's namespaces are removed")),
    };
    drop(lab);
    outcome
}

async fn bench(args: &BenchProxyArgs, lab: &Lab) -> anyhow::Result<()> {
    lab.build()?;
    let (echo_stop, echo_stopped) = oneshot::channel::<()>();
    let (echo_ready, echo_listening) = oneshot::channel();
    let echo = spawn_in_netns(&lab.server, "bench-echo", move || async move {
        for port in ECHO_PORTS {
            let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                .await
                .with_context(|| format!("bind the connection server to port {port}"))?;
            tokio::spawn(echo_server(listener));
        }
        let _ = echo_ready.send(());
        let _ = echo_stopped.await;
        Ok(())
    })?;
    if echo_listening.await.is_err() {
        return Err(join(echo)
            .await
            .err()
            .unwrap_or_else(|| anyhow!("it stopped"))
            .context("the connection server did not start"));
    }
    let _iperf = start_iperf_server(&lab.server).await?;

    let pod_ip = lab.addr(2);
    let iperf_ip = args.service_ip;
    let echo_ip = Ipv4Addr::from(u32::from(args.service_ip).wrapping_add(1));
    // The kernel and userspace paths' service maps: the same but for the echo service's
    // target port.
    let kernel_map = services(args, pod_ip, iperf_ip, echo_ip, ECHO_PORTS[1]);
    let userspace_map = services(args, pod_ip, iperf_ip, echo_ip, ECHO_PORTS[2]);
    let nft = Nft {
        netns: Some(lab.node.clone()),
    };
    let config = Config {
        table: lab.table.clone(),
        cluster_cidr: Some((args.subnet.network(), args.subnet.prefix_len())),
        masquerade_all: args.masquerade_all,
    };

    let mut samples: BTreeMap<(usize, usize), Samples> = BTreeMap::new();
    let paths = [Path::Bare, Path::Direct, Path::Kernel, Path::Userspace];
    // Indexes into `paths`: the baseline and kernel mode.
    let (bare, direct, kernel) = (0, 1, 2);
    let mut proxy: Option<UserspaceProxy> = None;
    for _round in 0..args.rounds {
        for (pi, path) in paths.into_iter().enumerate() {
            let (iperf_target, echo_target) = match path {
                Path::Bare | Path::Direct => {
                    proxy = None;
                    if path == Path::Bare {
                        nft.delete_table(&config.table)
                            .context("clear the node's table")?;
                    } else {
                        let rules = ruleset(&kernel_map, &config);
                        nft.apply(&transaction(&config.table, None, &rules))
                            .context("apply the kernel-mode rules")?;
                    }
                    (
                        SocketAddr::from((pod_ip, IPERF_PORT)),
                        SocketAddr::from((pod_ip, ECHO_PORTS[0])),
                    )
                }
                Path::Kernel => {
                    let rules = ruleset(&kernel_map, &config);
                    nft.apply(&transaction(&config.table, None, &rules))
                        .context("apply the kernel-mode rules")?;
                    (
                        SocketAddr::from((iperf_ip, IPERF_SERVICE_PORT)),
                        SocketAddr::from((echo_ip, ECHO_SERVICE_PORT)),
                    )
                }
                Path::Userspace => {
                    let map = &userspace_map;
                    let p = UserspaceProxy::start(&lab.node, map.clone()).await?;
                    let rules = userspace::portal_rules(map, &p.ports);
                    let rejects = ruleset(map, &config);
                    nft.apply(&userspace::transaction(
                        &config.table,
                        true,
                        &rules,
                        &rejects,
                    ))
                    .context("apply the userspace-mode rules")?;
                    proxy = Some(p);
                    (
                        SocketAddr::from((iperf_ip, IPERF_SERVICE_PORT)),
                        SocketAddr::from((echo_ip, ECHO_SERVICE_PORT)),
                    )
                }
            };
            for (fi, from) in args.from.iter().enumerate() {
                let ns = match from {
                    ClientAt::Node => &lab.node,
                    ClientAt::Pod => &lab.client,
                };
                let what = || format!("{} from the {from:?}", path.label());
                // Untimed: neighbour entries, the proxy's first accepts.
                connections(ns, echo_target, WARM_UP.min(args.connections), 1)
                    .await
                    .with_context(|| format!("warm-up connections to {}", what()))?;
                let gbits = iperf(ns, iperf_target, args.duration, args.streams)
                    .await
                    .with_context(|| format!("iperf3 to {}", what()))?;
                let (conns_per_sec, lat) =
                    connections(ns, echo_target, args.connections, args.concurrency)
                        .await
                        .with_context(|| format!("connections to {}", what()))?;
                let s = samples.entry((fi, pi)).or_default();
                s.gbits.push(gbits);
                s.conns_per_sec.push(conns_per_sec);
                s.latencies.extend(lat.0);
            }
        }
    }
    let results: BTreeMap<(usize, usize), Figures> = samples
        .into_iter()
        .map(|(k, mut s)| {
            let mut lat = Latencies(s.latencies);
            let f = Figures {
                gbits: median(&mut s.gbits),
                conns_per_sec: median(&mut s.conns_per_sec),
                p50: lat.pct(0.5),
                p99: lat.pct(0.99),
            };
            (k, f)
        })
        .collect();
    drop(proxy);
    let _ = echo_stop.send(());

    println!(
        "keelson bench proxy: {} round(s){}; iperf3 {} s x {} stream(s) per path; {} connections per path, {} at once \
         (connect + {}-byte request + {}-byte reply + close); 1 serving pod; {} other services in the rules{}",
        args.rounds,
        if args.rounds > 1 {
            " (medians of the rates, percentiles over all connections)"
        } else {
            ""
        },
        args.duration,
        args.streams,
        args.connections,
        args.concurrency,
        REQUEST.len(),
        REPLY.len(),
        args.services,
        if args.masquerade_all {
            "; masquerade all"
        } else {
            ""
        }
    );
    for (fi, from) in args.from.iter().enumerate() {
        println!();
        println!(
            "client in {}",
            match from {
                ClientAt::Node => "the node's network namespace",
                ClientAt::Pod => "another pod on the bridge",
            }
        );
        println!(
            "{:<30} {:>10} {:>9} {:>10} {:>9} {:>8} {:>8}",
            "path", "Gbit/s", "x direct", "conns/s", "x direct", "p50 ms", "p99 ms"
        );
        let Some(base) = results.get(&(fi, direct)).copied() else {
            continue;
        };
        for (pi, path) in paths.into_iter().enumerate() {
            let Some(f) = results.get(&(fi, pi)) else {
                continue;
            };
            println!(
                "{:<30} {:>10.2} {:>9.2} {:>10.0} {:>9.2} {:>8.3} {:>8.3}",
                path.label(),
                f.gbits,
                ratio(f.gbits, base.gbits),
                f.conns_per_sec,
                ratio(f.conns_per_sec, base.conns_per_sec),
                ms(f.p50),
                ms(f.p99)
            );
        }
    }
    println!();
    for (fi, from) in args.from.iter().enumerate() {
        if let (Some(base), Some(k), Some(b)) = (
            results.get(&(fi, direct)),
            results.get(&(fi, kernel)),
            results.get(&(fi, bare)),
        ) {
            let r = ratio(k.gbits, base.gbits);
            println!(
                "target (DESIGN.md): ClusterIP throughput (kernel mode) >= {:.0}% of direct pod IP; from the {}: {:.1}% ({}); \
                 {:.1}% of the pod IP without proxy rules",
                TARGET * 100.0,
                match from {
                    ClientAt::Node => "node",
                    ClientAt::Pod => "pod",
                },
                // Truncated, so that a figure shown as 95.0% has met the target.
                (r * 1000.0).floor() / 10.0,
                if r >= TARGET { "met" } else { "missed" },
                (ratio(k.gbits, b.gbits) * 1000.0).floor() / 10.0,
            );
        }
    }
    Ok(())
}

/// One path's measurements over the rounds.
#[derive(Default)]
struct Samples {
    gbits: Vec<f64>,
    conns_per_sec: Vec<f64>,
    latencies: Vec<Duration>,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The measured services (iperf3 and the connection server, both on the serving pod) and
/// `--services` others, distilled by the proxy's own model code.
fn services(
    args: &BenchProxyArgs,
    pod_ip: Ipv4Addr,
    iperf_ip: Ipv4Addr,
    echo_ip: Ipv4Addr,
    echo_target: u16,
) -> ServiceMap {
    let mut objects = vec![
        service_objects("iperf3", iperf_ip, IPERF_SERVICE_PORT, pod_ip, IPERF_PORT),
        service_objects("echo", echo_ip, ECHO_SERVICE_PORT, pod_ip, echo_target),
    ];
    let first_other = u32::from(echo_ip).wrapping_add(1);
    let hosts = (1u32 << (32 - args.subnet.prefix_len()))
        .saturating_sub(2)
        .max(1);
    for i in 0..u32::from(args.services) {
        // Endpoints somewhere in the pod network: these services are in the rules only,
        // never dialled.
        let ep = Ipv4Addr::from(u32::from(args.subnet.network()) + 1 + (10 + i) % hosts);
        objects.push(service_objects(
            &format!("other-{i}"),
            Ipv4Addr::from(first_other.wrapping_add(i)),
            80,
            ep,
            ECHO_PORTS[0],
        ));
    }
    let (svcs, eps): (Vec<Service>, Vec<Endpoints>) = objects.into_iter().unzip();
    service_map(&svcs, &eps)
}

/// A ClusterIP Service with one TCP port and its Endpoints with one ready address.
fn service_objects(
    name: &str,
    cluster_ip: Ipv4Addr,
    port: u16,
    pod: Ipv4Addr,
    target: u16,
) -> (Service, Endpoints) {
    let meta = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("bench".into()),
        ..Default::default()
    };
    let svc = Service {
        metadata: meta.clone(),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.to_string()),
            ports: Some(vec![ServicePort {
                port: i32::from(port),
                target_port: Some(IntOrString::Int(i32::from(target))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let eps = Endpoints {
        metadata: meta,
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: pod.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                port: i32::from(target),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    (svc, eps)
}

/// The bench's namespaces; removed on drop.
struct Lab {
    node: String,
    server: String,
    client: String,
    bridge: String,
    table: String,
    subnet: Ipv4Net,
}

impl Lab {
    fn new(subnet: Ipv4Net) -> anyhow::Result<Lab> {
        let id = std::process::id();
        let lab = Lab {
            node: format!("{PREFIX}{id}-node"),
            server: format!("{PREFIX}{id}-srv"),
            client: format!("{PREFIX}{id}-cli"),
            bridge: format!("{PREFIX}{id}"),
            table: format!("{PREFIX}-{id}"),
            subnet,
        };
        // A killed run of a process with the same id.
        lab.remove();
        Ok(lab)
    }

    fn addr(&self, host: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + host)
    }

    fn build(&self) -> anyhow::Result<()> {
        let len = self.subnet.prefix_len();
        let gw = self.addr(1);
        for ns in [&self.node, &self.server, &self.client] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let n = self.node.as_str();
        ip(&["-n", n, "link", "add", &self.bridge, "type", "bridge"])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{gw}/{len}"),
            "dev",
            &self.bridge,
        ])?;
        ip(&["-n", n, "link", "set", &self.bridge, "up"])?;
        // Cluster IPs leave the node through the bridge until the rules rewrite them, as
        // through a node's default route.
        ip(&["-n", n, "route", "add", "default", "dev", &self.bridge])?;
        for (pod, veth, host) in [(&self.server, "vsrv", 2), (&self.client, "vcli", 3)] {
            ip(&[
                "-n", n, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
            ])?;
            ip(&["-n", n, "link", "set", veth, "master", &self.bridge, "up"])?;
            ip(&[
                "-n",
                pod,
                "addr",
                "add",
                &format!("{}/{len}", self.addr(host)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", pod, "link", "set", "eth0", "up"])?;
            ip(&["-n", pod, "route", "add", "default", "via", &gw.to_string()])?;
        }
        // Routing between pods and cluster IPs, and replies bridged between pods through the
        // nat hooks (br_netfilter), as on a Kubernetes node.
        for key in [
            "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1",
        ] {
            run_quiet("ip", &["netns", "exec", n, "sysctl", "-q", "-w", key])
                .with_context(|| format!("set {key} in the bench's node namespace"))?;
        }
        Ok(())
    }

    fn remove(&self) {
        for ns in [&self.client, &self.server, &self.node] {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                let _ = run_quiet("ip", &["netns", "del", ns]);
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes namespaces of earlier runs whose process is gone.
fn sweep_leftovers() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_quiet("ip", &["netns", "del", &name]);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run_quiet("ip", args).context("the proxy benchmark needs root and iproute2")
}

fn run_quiet(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `f`'s future on a thread that entered network namespace `ns`, on a runtime of its
/// own: every socket made there (and by the runtime's other threads, which the thread starts)
/// belongs to `ns`.
fn spawn_in_netns<F, Fut, T>(
    ns: &str,
    name: &str,
    f: F,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let path = std::path::Path::new("/run/netns").join(ns);
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .context("enter the bench's network namespace")?;
            drop(file);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("start a runtime")?;
            rt.block_on(f())
        })
        .context("start a thread")
}

/// Waits for a thread from [`spawn_in_netns`] without blocking the runtime.
async fn join<T: Send + 'static>(
    handle: std::thread::JoinHandle<anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .context("join")?
        .map_err(|_| anyhow!("a bench thread panicked"))?
}

/// Answers every connection's request with the reply, then closes it.
async fn echo_server(listener: TcpListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; REQUEST.len()];
            if conn.read_exact(&mut buf).await.is_ok() && buf == REQUEST {
                let _ = conn.write_all(REPLY).await;
            }
            let _ = conn.shutdown().await;
        });
    }
}

/// `iperf3 -s` in the serving pod, killed on drop; returns once it listens.
async fn start_iperf_server(ns: &str) -> anyhow::Result<tokio::process::Child> {
    let port = IPERF_PORT.to_string();
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "iperf3", "-s", "-p", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start iperf3 -s")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hltn"])
            .arg(format!("sport = :{port}"))
            .output()
            .await
            .context("run ss")?;
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait().context("iperf3 -s")? {
            bail!("iperf3 -s exited: {status}");
        }
        if Instant::now() > deadline {
            bail!("iperf3 -s is not listening after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `iperf3 -c` run from namespace `ns`; Gbit/s received.
async fn iperf(ns: &str, target: SocketAddr, seconds: u32, streams: u32) -> anyhow::Result<f64> {
    let out = tokio::time::timeout(
        Duration::from_secs(u64::from(seconds) + 60),
        Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-J", "-c"])
            .arg(target.ip().to_string())
            .args(["-p", &target.port().to_string()])
            .args(["-t", &seconds.to_string()])
            .args(["-P", &streams.to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("iperf3 did not finish")?
    .context("run iperf3")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON report (exit {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Some(e) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    let bits = report
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow!("iperf3's report has no end.sum_received.bits_per_second"))?;
    Ok(bits / 1e9)
}

/// `total` connections to `target` from namespace `ns`, `concurrency` at a time: the rate
/// and each connection's latency.
async fn connections(
    ns: &str,
    target: SocketAddr,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, Latencies)> {
    let handle = spawn_in_netns(ns, "bench-client", move || async move {
        let next = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.min(total) {
            let (next, samples) = (next.clone(), samples.clone());
            workers.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    tokio::time::timeout(CONNECT_TIMEOUT, one_connection(target))
                        .await
                        .map_err(|_| anyhow!("a connection took over {CONNECT_TIMEOUT:?}"))??;
                    if let Ok(mut s) = samples.lock() {
                        s.push(t.elapsed());
                    }
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = workers.join_next().await {
            r.context("a client task failed")??;
        }
        let elapsed = start.elapsed();
        let samples = samples
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        Ok((samples.len() as f64 / elapsed.as_secs_f64(), samples))
    })?;
    let (rate, samples) = join(handle).await?;
    Ok((rate, Latencies(samples)))
}

async fn one_connection(target: SocketAddr) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect(target)
        .await
        .with_context(|| format!("connect to {target}"))?;
    conn.set_nodelay(true)?;
    conn.write_all(REQUEST).await.context("send the request")?;
    let mut reply = Vec::with_capacity(REPLY.len());
    conn.read_to_end(&mut reply)
        .await
        .context("read the reply")?;
    if reply != REPLY {
        bail!("{target} answered {} bytes, not the reply", reply.len());
    }
    Ok(())
}

/// The userspace proxy's listeners, on threads in the node namespace, until dropped.
struct UserspaceProxy {
    ports: BTreeMap<keelson_proxy::model::ServicePortName, u16>,
    _stop: oneshot::Sender<()>,
}

impl UserspaceProxy {
    async fn start(node: &str, map: ServiceMap) -> anyhow::Result<UserspaceProxy> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, listening) = oneshot::channel();
        let handle = spawn_in_netns(node, "bench-userspace-proxy", move || async move {
            let mut portals = Portals::default();
            let ports = portals
                .sync(&map)
                .await
                .context("open the service listeners")?;
            let _ = ready.send(ports);
            let _ = stopped.await;
            drop(portals);
            Ok(())
        })?;
        match listening.await {
            Ok(ports) => Ok(UserspaceProxy { ports, _stop: stop }),
            Err(_) => Err(join(handle)
                .await
                .err()
                .unwrap_or_else(|| anyhow!("the userspace proxy stopped"))),
        }
    }
}
