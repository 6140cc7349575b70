//! `keelson`: one binary for every Keelson daemon.

mod bench;
mod bench_controllers;
mod bench_plugins;
mod bench_pods;
mod bench_scheduler;
mod bench_scheduler_e2e;
mod config;
mod controller_manager_cmd;
mod image_cmd;
mod kubelet_cmd;
mod leader_args;
mod plugin;
mod plugin_check;
mod private_containerd;
mod proxy_cmd;
mod scheduler_cmd;

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
    /// Run the control plane in one process: the API server, the controller manager and the
    /// scheduler.
    Server(ServerArgs),
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

/// `keelson server`: the API server's flags, plus the controller manager's and the
/// scheduler's config files.
#[derive(clap::Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    apiserver: config::ApiserverArgs,
    /// The scheduler's YAML config file (see `keelson scheduler --help`); its kubeconfig
    /// defaults to the admin kubeconfig the API server writes.
    #[arg(long)]
    scheduler_config: Option<std::path::PathBuf>,
    /// A Kubernetes v1 Policy file for the scheduler.
    #[arg(long)]
    policy_config_file: Option<std::path::PathBuf>,
    /// The controller manager's YAML config file (see `keelson controller-manager --help`);
    /// its kubeconfig, service-account key and CA default to the API server's.
    #[arg(long)]
    controller_manager_config: Option<std::path::PathBuf>,
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
            "info"
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
            Command::Server(args) => run_server(args).await,
            Command::Image(command) => image_cmd::run(command).await,
            Command::Bench(BenchCommand::Api(args)) => bench::run(args).await,
            Command::Bench(BenchCommand::Controllers(args)) => bench_controllers::run(args).await,
            Command::Bench(BenchCommand::Pods(args)) => bench_pods::run(args).await,
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

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    // Check the controller manager's and the scheduler's config before a port is bound.
    let sched_args = scheduler_cmd::SchedulerArgs {
        config: args.scheduler_config,
        policy_config_file: args.policy_config_file,
        ..Default::default()
    };
    let cfg = args.apiserver.resolve()?;
    let kubeconfig = cfg.data_dir.join("kubeconfig.yaml");
    let mut resolved = sched_args.resolve()?;
    resolved.kubeconfig = kubeconfig;
    let (host, scheduler) = scheduler_cmd::build(&resolved)?;
    let cm_args = controller_manager_cmd::ControllerManagerArgs {
        config: args.controller_manager_config,
        kubeconfig: Some(cfg.data_dir.join("kubeconfig.yaml")),
        ..Default::default()
    };
    cm_args.clone().resolve()?;
    let server = keelson_apiserver::start(cfg)
        .await
        .context("start the API server")?;
    resolved.kubeconfig = server.kubeconfig.clone();
    // Resolved again once the API server has written its kubeconfig and keys beside it.
    let cm_resolved = cm_args.resolve()?;
    // The scheduler runs Wasm and native policies synchronously; on its own thread and
    // runtime it never stalls the API server's request handling.
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let sched_thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || -> anyhow::Result<()> {
            let _host = host;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the scheduler's runtime")?;
            rt.block_on(scheduler_cmd::run(resolved, scheduler, shutdown))
        })
        .context("start the scheduler thread")?;
    let cm_shutdown = stop.subscribe();
    let cm_task = tokio::spawn(async move {
        let r = controller_manager_cmd::run(cm_resolved, cm_shutdown).await;
        if let Err(e) = &r {
            // Said at once: the API server keeps serving, but nothing reconciles.
            eprintln!("keelson: controller manager stopped: {e:#}");
        }
        r
    });
    eprintln!(
        "keelson: API server ready at {}\nkeelson: controller manager and scheduler started\nkeelson: kubeconfig written to {}\nkeelson: try: kubectl --kubeconfig {} get nodes",
        server.url,
        server.kubeconfig.display(),
        server.kubeconfig.display()
    );
    wait_for_signal().await;
    eprintln!("keelson: shutting down");
    let _ = stop.send(true);
    // Give the scheduler a moment to release its lease while the API server still serves.
    let joined = tokio::task::spawn_blocking(move || sched_thread.join());
    match tokio::time::timeout(std::time::Duration::from_secs(5), joined).await {
        Ok(Ok(Ok(Err(e)))) => eprintln!("keelson: scheduler: {e:#}"),
        Ok(_) => {}
        Err(_) => eprintln!("keelson: the scheduler did not stop in time"),
    }
    if tokio::time::timeout(std::time::Duration::from_secs(5), cm_task)
        .await
        .is_err()
    {
        eprintln!("keelson: the controller manager did not stop in time");
    }
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
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
