//! `keelson bench plugins`: what a scheduler policy costs as a Wasm component, as a native
//! library and compiled into the daemon, measured side by side in one run, plus the load time
//! of a component with a cold and a warm compiled-code cache. Prints figures and ratios; it
//! asserts nothing.
//!
//! The policy is `examples/plugins/least-requested` (resource-fit filter, least-requested
//! score), built both ways from the same source; the built-in baseline is the same arithmetic
//! written directly against the host's node records. One pass is what the scheduler does for
//! one pod: filter over every node, then score the nodes that passed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_plugin_host::records::{blank_node, blank_pod, resources};
use keelson_plugin_host::{
    CycleOutcome, FilterResult, HostConfig, NodeInfo, PluginHost, PluginLimits, PodInfo,
    SchedulerPlugin,
};

#[derive(Args, Debug)]
pub struct BenchPluginsArgs {
    /// Nodes in the table.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: u32,
    /// Filter + score passes measured per variant.
    #[arg(long, default_value_t = 300)]
    pub passes: usize,
    /// The policy as a Wasm component; built from examples/plugins/least-requested if absent.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The policy as a native library; built from examples/plugins/least-requested if absent.
    #[arg(long)]
    pub native: Option<PathBuf>,
}

/// Node `i`: 4 to 64 cores and 8 to 256 GiB, with a varying share already requested, so the
/// filter rejects some nodes for each reason and the scores spread.
fn node(i: u32) -> NodeInfo {
    let cores = 4 + u64::from(i % 16) * 4;
    let gib = 8 + u64::from(i % 32) * 8;
    let used = u64::from(i % 10);
    let requested = resources(cores * 100 * used, (gib << 30) / 10 * used);
    let name = format!("node-{i:05}");
    NodeInfo {
        labels: vec![
            ("kubernetes.io/hostname".into(), name.clone()),
            (
                "topology.kubernetes.io/zone".into(),
                format!("zone-{}", i % 3),
            ),
        ],
        allocatable: resources(cores * 1000, gib << 30),
        non_zero_requested: requested.clone(),
        requested,
        pod_count: (i % 7) * 15,
        ..blank_node(&name)
    }
}

fn pod() -> PodInfo {
    PodInfo {
        labels: vec![("app".into(), "bench".into())],
        requests: resources(1500, 3 << 30),
        non_zero_requests: resources(1500, 3 << 30),
        ..blank_pod("default", "bench")
    }
}

/// The built-in baseline: least-requested's filter and score over the host's own records.
fn builtin_pass(
    nodes: &[NodeInfo],
    pod: &PodInfo,
    candidates: &[u32],
) -> (Vec<FilterResult>, Vec<i64>) {
    let filtered: Vec<FilterResult> = candidates
        .iter()
        .map(|&i| match nodes.get(i as usize) {
            None => FilterResult::Unresolvable(3),
            Some(n) if n.pod_count >= n.allocatable_pods => FilterResult::Unschedulable(2),
            Some(n) if n.requested.cpu + pod.requests.cpu > n.allocatable.cpu => {
                FilterResult::Unschedulable(0)
            }
            Some(n) if n.requested.memory + pod.requests.memory > n.allocatable.memory => {
                FilterResult::Unschedulable(1)
            }
            Some(_) => FilterResult::Pass,
        })
        .collect();
    let feasible = feasible(candidates, &filtered);
    let free = |allocatable: u64, requested: u64| -> i64 {
        if allocatable == 0 || requested >= allocatable {
            0
        } else {
            ((allocatable - requested) as u128 * 100 / allocatable as u128) as i64
        }
    };
    let scores = feasible
        .iter()
        .map(|&i| {
            let n = &nodes[i as usize];
            let cpu = free(n.allocatable.cpu, n.requested.cpu + pod.requests.cpu);
            let memory = free(
                n.allocatable.memory,
                n.requested.memory + pod.requests.memory,
            );
            (cpu + memory) / 2
        })
        .collect();
    (filtered, scores)
}

fn feasible(candidates: &[u32], filtered: &[FilterResult]) -> Vec<u32> {
    candidates
        .iter()
        .zip(filtered)
        .filter(|(_, r)| **r == FilterResult::Pass)
        .map(|(i, _)| *i)
        .collect()
}

fn plugin_pass(
    plugin: &mut SchedulerPlugin,
    cycle: u64,
    pod: &PodInfo,
    candidates: &[u32],
) -> anyhow::Result<(Vec<FilterResult>, Vec<i64>)> {
    let filtered = plugin
        .filter(cycle, pod, candidates)?
        .context("the policy does not export filter")?;
    let feasible = feasible(candidates, &filtered);
    let scores = plugin
        .score(cycle, pod, &feasible)?
        .context("the policy does not export score")?;
    plugin.end_cycle(cycle, CycleOutcome::Unschedulable)?;
    Ok((filtered, scores))
}

struct Timings(Vec<Duration>);

impl Timings {
    fn pct(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Builds the plugin crate at `crate_dir` (relative to the repository root) as a native
/// library or a Wasm component into `target/bench-plugins`, for the benchmarks; `what` names it
/// in the progress line.
pub(crate) fn build_source_plugin(
    crate_dir: &str,
    what: &str,
    native: bool,
) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(crate_dir);
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "{} is missing: pass --wasm and --native with built policies",
            path.display()
        );
    }
    eprintln!(
        "building {what} as a {} ...",
        if native {
            "native library"
        } else {
            "Wasm component"
        }
    );
    crate::plugin::build(crate::plugin::BuildArgs {
        path,
        native,
        out: None,
        target_dir: Some(root.join("target/bench-plugins")),
    })
}

fn build_policy(native: bool) -> anyhow::Result<PathBuf> {
    build_source_plugin(
        "examples/plugins/least-requested",
        "least-requested",
        native,
    )
}

pub fn run(args: BenchPluginsArgs) -> anyhow::Result<()> {
    let wasm = match args.wasm {
        Some(p) => p,
        None => build_policy(false)?,
    };
    let native = match args.native {
        Some(p) => p,
        None => build_policy(true)?,
    };
    let nodes: Vec<NodeInfo> = (0..args.nodes).map(node).collect();
    let candidates: Vec<u32> = (0..args.nodes).collect();
    let pod = pod();

    // Load times: a cold cache compiles, a warm one only maps the compiled code.
    let cache = tempfile::tempdir().context("creating a cache directory")?;
    let host_config = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    };
    let load = |label: &str| -> anyhow::Result<(Duration, SchedulerPlugin)> {
        let host = PluginHost::new(host_config.clone())?;
        let start = Instant::now();
        let mut plugin = host.scheduler_plugin(label, &wasm, PluginLimits::default())?;
        plugin.configure("{}")?;
        Ok((start.elapsed(), plugin))
    };
    let (cold, _) = load("least-requested-cold")?;
    let (warm, mut wasm_plugin) = load("least-requested-wasm")?;

    let host = PluginHost::new(HostConfig::default())?;
    let mut native_plugin =
        host.scheduler_plugin("least-requested-native", &native, PluginLimits::default())?;
    native_plugin.configure("{}")?;

    for plugin in [&mut wasm_plugin, &mut native_plugin] {
        for (i, n) in nodes.iter().enumerate() {
            plugin.node_added(i as u32, n.clone())?;
        }
    }

    // The three variants must agree before their speed means anything.
    let expected = builtin_pass(&nodes, &pod, &candidates);
    if plugin_pass(&mut wasm_plugin, 1, &pod, &candidates)? != expected {
        bail!("the Wasm component's results differ from the built-in policy's");
    }
    if plugin_pass(&mut native_plugin, 1, &pod, &candidates)? != expected {
        bail!("the native library's results differ from the built-in policy's");
    }
    let feasible_count = expected.1.len();

    let measure = |f: &mut dyn FnMut(u64) -> anyhow::Result<()>| -> anyhow::Result<Timings> {
        for cycle in 2..12 {
            f(cycle)?;
        }
        let mut t = Vec::with_capacity(args.passes);
        for cycle in 0..args.passes as u64 {
            let start = Instant::now();
            f(100 + cycle)?;
            t.push(start.elapsed());
        }
        Ok(Timings(t))
    };
    let mut builtin = measure(&mut |_| {
        std::hint::black_box(builtin_pass(&nodes, &pod, &candidates));
        Ok(())
    })?;
    let mut native_t = measure(&mut |c| {
        std::hint::black_box(plugin_pass(&mut native_plugin, c, &pod, &candidates)?);
        Ok(())
    })?;
    let mut wasm_t = measure(&mut |c| {
        std::hint::black_box(plugin_pass(&mut wasm_plugin, c, &pod, &candidates)?);
        Ok(())
    })?;

    let (b50, n50, w50) = (builtin.pct(0.5), native_t.pct(0.5), wasm_t.pct(0.5));
    let (b90, n90, w90) = (builtin.pct(0.9), native_t.pct(0.9), wasm_t.pct(0.9));
    println!(
        "scheduler policy least-requested: one filter + score pass for one pod over {} nodes \
         ({} feasible), {} passes each",
        args.nodes, feasible_count, args.passes
    );
    println!(
        "  {:<28} {:>10} {:>10} {:>12}",
        "variant", "p50 us", "p90 us", "vs built-in"
    );
    for (label, p50, p90) in [
        ("built-in Rust", b50, b90),
        ("native library", n50, n90),
        ("Wasm component", w50, w90),
    ] {
        println!(
            "  {:<28} {:>10.1} {:>10.1} {:>11.2}x",
            label,
            us(p50),
            us(p90),
            us(p50) / us(b50).max(0.001)
        );
    }
    println!(
        "  Wasm / native library (p50): {:.2}x   (contract target: within 1.5x)",
        us(w50) / us(n50).max(0.001)
    );
    println!(
        "component load + instantiate + configure: cold cache {:.1} ms, warm cache {:.1} ms ({:.0}x faster)",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        cold.as_secs_f64() / warm.as_secs_f64().max(1e-9)
    );
    let m = wasm_plugin.metrics();
    println!(
        "Wasm plugin metrics: {} calls, {} errors, {} instances",
        m.calls, m.errors, m.instances_created
    );
    Ok(())
}
