//! `keelson`: one binary for every Keelson daemon.

mod bench;
mod bench_controllers;
mod bench_plugins;
mod bench_pods;
mod bench_proxy;
mod bench_scheduler;
mod bench_scheduler_e2e;
mod config;
mod controller_manager_cmd;
mod dns_cmd;
mod image_cmd;
mod kubelet_cmd;
mod leader_args;
mod plugin;
mod plugin_check;
mod private_containerd;
mod proxy_cmd;
mod scheduler_cmd;
mod up;

use anyhow::Context as _;

// The API server allocates and frees many small JSON values per request; mimalloc handles that
// pattern markedly better than the system allocator (see `keelson bench api`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "keelson",
    version,
    about = "A Kubernetes-compatible orchestrator with sandboxed plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Apiserver(config::ApiserverArgs),
    /// Run the controller manager.
    ControllerManager(controller_manager_cmd::ControllerManagerArgs),
    /// Run the scheduler.
    Scheduler(scheduler_cmd::SchedulerArgs),
    /// Run the node agent: registers the node and runs its pods on containerd.
    Kubelet(kubelet_cmd::KubeletArgs),
    /// Run the service proxy: cluster IPs and node ports through nftables rules.
    Proxy(proxy_cmd::ProxyArgs),
    /// Run the cluster DNS: names for Services under the cluster domain, other names
    /// forwarded to the node's resolvers.
    Dns(dns_cmd::DnsArgs),
    /// Run the control plane in one process: the API server, the controller manager and the
    /// scheduler.
    Server(up::ServerArgs),
    /// Run the whole system in one process: the control plane with the embedded store, and a
    /// node (kubelet, service proxy) on the system's containerd or a private one.
    Up(up::UpArgs),
    /// Run a node that joins an existing control plane: the kubelet and the service proxy.
    Agent(up::AgentArgs),
    /// Remove what `keelson up` or `keelson agent` left running on this node: pods' containers,
    /// the pod network and the service rules (the cluster's state is kept).
    Down(up::DownArgs),
    /// Scaffold, build, inspect and check plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Import and list images in containerd.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Benchmarks that print figures against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// API server creates, LIST and watch fan-out on SQLite and etcd, beside raw etcd.
    Api(bench::BenchApiArgs),
    /// Replication controller pods/s and Endpoints latency, in process, beside direct
    /// creates and the bench's own pod watch.
    Controllers(bench_controllers::BenchControllersArgs),
    /// One filter + score pass over 5,000 nodes: built-in Rust, native library, Wasm
    /// component; and a component's load time with a cold and a warm cache.
    Plugins(bench_plugins::BenchPluginsArgs),
    /// Pod-create-to-Running latency through the API server and a kubelet on containerd,
    /// one at a time and many at once, beside `ctr run` of the same image.
    Pods(bench_pods::BenchPodsArgs),
    /// TCP throughput and new connections per second to a pod directly, through a ClusterIP
    /// in kernel mode and in userspace mode, in network namespaces of the bench's own.
    Proxy(bench_proxy::BenchProxyArgs),
    /// Pods per second through the scheduler, SchedulingBasic-like: built-in policies,
    /// native library, Wasm component.
    Scheduler(bench_scheduler::BenchSchedulerArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEELSON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Benchmarks and plugin tooling print a report; daemon logs would only get in its way.
    init_tracing(
        if matches!(cli.command, Command::Bench(_) | Command::Plugin(_)) {
            "warn"
        } else {
            // hickory logs every DNS query at info.
            "info,hickory_server=warn"
        },
    );
    // Plugin tooling and the plugin benchmark are synchronous: no runtime needed.
    match cli.command {
        Command::Plugin(command) => return plugin::run(command),
        Command::Bench(BenchCommand::Plugins(args)) => return bench_plugins::run(args),
        Command::Bench(BenchCommand::Scheduler(args)) => return bench_scheduler::run(args),
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Apiserver(args) => run_apiserver(args).await,
            Command::ControllerManager(args) => run_controller_manager(args).await,
            Command::Scheduler(args) => run_scheduler(args).await,
            Command::Kubelet(args) => run_kubelet(args).await,
            Command::Proxy(args) => run_proxy(args).await,
            Command::Dns(args) => run_dns(args).await,
            Command::Server(args) => up::server(args).await,
            Command::Up(args) => up::up(args).await,
            Command::Agent(args) => up::agent(args).await,
            Command::Down(args) => up::down(args).await,
            Command::Image(command) => image_cmd::run(command).await,
            Command::Bench(BenchCommand::Api(args)) => bench::run(args).await,
            Command::Bench(BenchCommand::Controllers(args)) => bench_controllers::run(args).await,
            Command::Bench(BenchCommand::Pods(args)) => bench_pods::run(args).await,
            Command::Bench(BenchCommand::Proxy(args)) => bench_proxy::run(args).await,
            Command::Plugin(_)
            | Command::Bench(BenchCommand::Plugins(_) | BenchCommand::Scheduler(_)) => Ok(()),
        }
    })
}

async fn run_apiserver(args: config::ApiserverArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    let server = keelson_apiserver::start(cfg)
        .await
        .context("start the API server")?;
    eprintln!(
        "keelson: API server ready at {}\nkeelson: kubeconfig written to {}\nkeelson: try: kubectl --kubeconfig {} get namespaces",
        server.url,
        server.kubeconfig.display(),
        server.kubeconfig.display()
    );
    wait_for_signal().await;
    eprintln!("keelson: shutting down");
    server.shutdown().await;
    Ok(())
}

async fn run_scheduler(args: scheduler_cmd::SchedulerArgs) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let (_host, scheduler) = scheduler_cmd::build(&resolved)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(scheduler_cmd::run(resolved, scheduler, shutdown));
    tokio::select! {
        r = &mut task => r.context("scheduler task")?,
        _ = wait_for_signal() => {
            eprintln!("keelson: shutting down");
            let _ = stop.send(true);
            task.await.context("scheduler task")?
        }
    }
}

async fn run_controller_manager(
    args: controller_manager_cmd::ControllerManagerArgs,
) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(controller_manager_cmd::run(resolved, shutdown));
    tokio::select! {
        r = &mut task => r.context("controller manager task")?,
        _ = wait_for_signal() => {
            eprintln!("keelson: shutting down");
            let _ = stop.send(true);
            task.await.context("controller manager task")?
        }
    }
}

async fn run_kubelet(args: kubelet_cmd::KubeletArgs) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(kubelet_cmd::run(resolved, shutdown));
    tokio::select! {
        r = &mut task => r.context("kubelet task")?,
        _ = wait_for_signal() => {
            eprintln!("keelson: shutting down");
            let _ = stop.send(true);
            task.await.context("kubelet task")?
        }
    }
}

async fn run_proxy(args: proxy_cmd::ProxyArgs) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(proxy_cmd::run(resolved, shutdown));
    tokio::select! {
        r = &mut task => r.context("proxy task")?,
        _ = wait_for_signal() => {
            eprintln!("keelson: shutting down");
            let _ = stop.send(true);
            task.await.context("proxy task")?
        }
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_dns(args: dns_cmd::DnsArgs) -> anyhow::Result<()> {
    let resolved = args.resolve()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(dns_cmd::run(resolved, shutdown));
    tokio::select! {
        r = &mut task => r.context("dns task")?,
        _ = wait_for_signal() => {
            eprintln!("keelson: shutting down");
            let _ = stop.send(true);
            task.await.context("dns task")?
        }
    }
}
