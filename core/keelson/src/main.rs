//! `keelson`: one binary for every Keelson daemon.

mod bench;
mod bench_plugins;
mod config;
mod plugin;
mod plugin_check;

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
    /// Run the control plane (for now: the API server; controllers and scheduler join later).
    Server(config::ApiserverArgs),
    /// Scaffold, build, inspect and check plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Benchmarks that print figures against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// API server creates, LIST and watch fan-out on SQLite and etcd, beside raw etcd.
    Api(bench::BenchApiArgs),
    /// One filter + score pass over 5,000 nodes: built-in Rust, native library, Wasm
    /// component; and a component's load time with a cold and a warm cache.
    Plugins(bench_plugins::BenchPluginsArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEELSON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
        _ => {}
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Apiserver(args) | Command::Server(args) => run_apiserver(args).await,
            Command::Bench(BenchCommand::Api(args)) => bench::run(args).await,
            Command::Plugin(_) | Command::Bench(BenchCommand::Plugins(_)) => Ok(()),
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
