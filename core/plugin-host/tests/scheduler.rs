//! Loads guest plugins from `examples/plugins/`, built by this harness for `wasm32-wasip2`, and
//! checks results, limits and the compiled-code cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keelson_plugin_host::{
    CycleOutcome, Error, FilterResult, HostConfig, NodeAffinity, NodeInfo, PluginHost,
    PluginLimits, PodAffinity, PodInfo, Resources,
};

const GUESTS: &[&str] = &["least-requested", "misbehaving", "score-only"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds every guest once per test run into `target/wasm-guests` and returns the directory
/// holding the `.wasm` files.
fn guests_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(build_guests) {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn build_guests() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target/wasm-guests");
    if let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        let installed = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && !installed.lines().any(|l| l.trim() == "wasm32-wasip2") {
            return Err(
                "the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` \
                 (scripts/setup.sh installs it)"
                    .into(),
            );
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for guest in GUESTS {
        let manifest = root.join("examples/plugins").join(guest).join("Cargo.toml");
        let out = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .map_err(|e| format!("could not run {cargo}: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target") {
                "\nhint: run `rustup target add wasm32-wasip2` (scripts/setup.sh installs it)"
            } else {
                ""
            };
            return Err(format!("building guest {guest} failed:\n{stderr}{hint}"));
        }
    }
    Ok(target_dir.join("wasm32-wasip2/release"))
}

fn guest(name: &str) -> PathBuf {
    guests_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

fn resources(cpu: u64, memory: u64) -> Resources {
    Resources {
        cpu,
        memory,
        ephemeral_storage: 0,
        extended: vec![],
    }
}

const GI: u64 = 1 << 30;

fn node(name: &str, requested_cpu: u64, requested_memory: u64, pod_count: u32) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        labels: vec![],
        allocatable: resources(4000, 8 * GI),
        allocatable_pods: 110,
        requested: resources(requested_cpu, requested_memory),
        pod_count,
        used_ports: vec![],
        taints: vec![],
        unschedulable: false,
        ready: true,
        group_counts: vec![],
    }
}

fn pod(cpu: u64, memory: u64) -> PodInfo {
    let no_affinity = PodAffinity {
        required: vec![],
        preferred: vec![],
    };
    PodInfo {
        uid: "uid-1".into(),
        namespace: "default".into(),
        name: "web-0".into(),
        labels: vec![],
        annotations: vec![],
        priority: 0,
        requests: resources(cpu, memory),
        host_ports: vec![],
        node_selector: vec![],
        node_affinity: NodeAffinity {
            required: vec![],
            preferred: vec![],
        },
        tolerations: vec![],
        pod_affinity: no_affinity.clone(),
        pod_anti_affinity: no_affinity,
        topology_spread: vec![],
        spread_groups: vec![],
    }
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig::default()).expect("host starts")
}

#[test]
fn least_requested_filters_and_scores_a_node_table() {
    let host = host();
    let mut plugin = host
        .scheduler_plugin("lr", &guest("least-requested"), PluginLimits::default())
        .expect("plugin loads");
    let points = plugin.extension_points();
    assert!(points.filter && points.score);
    plugin.configure("{}").expect("configure");
    assert_eq!(plugin.reported_name().expect("name"), "least-requested");

    let nodes = [
        node("half-used", 1000, 2 * GI, 3),
        node("cpu-full", 3500, GI, 3),
        node("empty", 0, 0, 0),
        node("pods-full", 0, 0, 110),
        node("memory-full", 0, 7 * GI + GI / 2, 3),
    ];
    for (i, n) in nodes.into_iter().enumerate() {
        plugin.node_added(i as u32, n).expect("node-added");
    }
    let pod = pod(1000, GI);
    let all: Vec<u32> = (0..5).collect();

    let filtered = plugin
        .filter(1, &pod, &all)
        .expect("filter")
        .expect("exported");
    assert_eq!(
        filtered,
        vec![
            FilterResult::Pass,
            FilterResult::Unschedulable(0),
            FilterResult::Pass,
            FilterResult::Unschedulable(2),
            FilterResult::Unschedulable(1),
        ]
    );
    let reasons = plugin.reasons(0).expect("reasons");
    assert_eq!(reasons[0], "insufficient cpu");
    assert_eq!(reasons[2], "too many pods");

    // half-used: cpu (4000-2000)/4000 = 50, memory (8-3)/8 = 62 -> 56
    // empty:     cpu (4000-1000)/4000 = 75, memory (8-1)/8 = 87 -> 81
    let scores = plugin
        .score(1, &pod, &[0, 2])
        .expect("score")
        .expect("exported");
    assert_eq!(scores, vec![56, 81]);
    // The policy exports filter and score only, so normalize-score is not called.
    let normalized = plugin.normalize_score(1, &scores).expect("normalize");
    assert_eq!(normalized, None);
    plugin
        .end_cycle(1, CycleOutcome::Scheduled(2))
        .expect("end-cycle");

    // An update reaches the guest's table: the empty node fills up.
    plugin
        .node_updated(2, node("empty", 4000, 0, 1))
        .expect("node-updated");
    let filtered = plugin
        .filter(2, &pod, &[2])
        .expect("filter")
        .expect("exported");
    assert_eq!(filtered, vec![FilterResult::Unschedulable(0)]);

    let m = plugin.metrics();
    assert_eq!(m.errors, 0);
    assert_eq!(m.instances_created, 1);
    assert_eq!(m.calls, 13, "normalize-score is not exported, so not called");
    assert_eq!(m.latency.counts.iter().sum::<u64>(), m.calls);
}

fn misbehaving(
    host: &PluginHost,
    mode: &str,
    limits: PluginLimits,
) -> keelson_plugin_host::SchedulerPlugin {
    let mut plugin = host
        .scheduler_plugin(
            &format!("misbehaving-{mode}"),
            &guest("misbehaving"),
            limits,
        )
        .expect("plugin loads");
    plugin.configure(&format!("\"{mode}\"")).expect("configure");
    plugin
        .node_added(0, node("n0", 0, 0, 0))
        .expect("node-added");
    plugin
}

/// After a failed call the plugin serves the next one on a fresh, replayed instance.
fn assert_recovers(plugin: &mut keelson_plugin_host::SchedulerPlugin) {
    let filtered = plugin
        .filter(2, &pod(100, GI), &[0])
        .expect("next call works")
        .expect("exported");
    assert_eq!(filtered, vec![FilterResult::Pass]);
    assert_eq!(plugin.metrics().instances_created, 2);
}

#[test]
fn a_guest_that_loops_forever_is_cut_off_at_its_deadline() {
    let host = host();
    let limits = PluginLimits {
        deadline: Duration::from_millis(50),
        ..PluginLimits::default()
    };
    let mut plugin = misbehaving(&host, "loop", limits);
    // Deadlines keep working after the host is dropped: plugins keep its epoch ticker alive.
    drop(host);
    let start = Instant::now();
    let err = plugin.score(1, &pod(100, GI), &[0]).expect_err("deadline");
    let elapsed = start.elapsed();
    assert!(
        matches!(err, Error::Deadline { call: "score", .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin \"misbehaving-loop\": call \"score\" exceeded its 50ms deadline"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "cut off after {elapsed:?}"
    );
    assert_eq!(plugin.metrics().deadlines_exceeded, 1);
    // The cycle's state went with the instance: end-cycle is skipped, not an error.
    plugin
        .end_cycle(1, CycleOutcome::Failed)
        .expect("end-cycle");
    assert_recovers(&mut plugin);
}

#[test]
fn a_guest_that_allocates_without_bound_hits_its_memory_cap() {
    let host = host();
    let limits = PluginLimits {
        memory: 16 << 20,
        ..PluginLimits::default()
    };
    let mut plugin = misbehaving(&host, "allocate", limits);
    let err = plugin
        .score(1, &pod(100, GI), &[0])
        .expect_err("memory cap");
    assert!(
        matches!(err, Error::MemoryCap { call: "score", .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "plugin \"misbehaving-allocate\": call \"score\" exceeded its memory cap of {} bytes",
            16 << 20
        )
    );
    assert_eq!(plugin.metrics().memory_cap_hits, 1);
    assert_recovers(&mut plugin);
}

#[test]
fn a_guest_that_panics_traps_with_an_error_naming_the_call() {
    let host = host();
    let mut plugin = misbehaving(&host, "panic", PluginLimits::default());
    let err = plugin.score(1, &pod(100, GI), &[0]).expect_err("trap");
    assert!(matches!(err, Error::Trap { call: "score", .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin \"misbehaving-panic\": call \"score\" trapped"
    );
    assert!(err.is_fatal_to_instance());
    assert_eq!(plugin.metrics().traps, 1);
    assert_recovers(&mut plugin);
}

#[test]
fn bad_options_are_a_plugin_error_naming_configure() {
    let host = host();
    let mut plugin = host
        .scheduler_plugin("lr", &guest("least-requested"), PluginLimits::default())
        .expect("plugin loads");
    let err = plugin.configure("{\"x\": 1}").expect_err("invalid config");
    assert_eq!(
        err.to_string(),
        "plugin \"lr\": call \"configure\" failed (invalid-config): least-requested takes no options"
    );
}

#[test]
fn a_second_load_of_the_same_file_hits_the_compiled_code_cache() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    };
    let path = guest("least-requested");
    let host = PluginHost::new(config.clone()).expect("host starts");
    host.load_component(&path).expect("first load");
    assert_eq!(host.cache_stats().compiles, 1);
    assert_eq!(host.cache_stats().hits, 0);

    let mut plugin = host
        .scheduler_plugin("lr", &path, PluginLimits::default())
        .expect("second load");
    assert_eq!(host.cache_stats().compiles, 1);
    assert_eq!(host.cache_stats().hits, 1);
    plugin.configure("{}").expect("cached code runs");
    plugin
        .node_added(0, node("empty", 0, 0, 0))
        .expect("node-added");
    assert_eq!(
        plugin.score(1, &pod(1000, GI), &[0]).expect("score"),
        Some(vec![81])
    );
    drop(plugin);
    drop(host);

    // A restarted daemon (a new host) finds the cache on disk.
    let host = PluginHost::new(config).expect("host starts");
    host.load_component(&path).expect("load after restart");
    assert_eq!(host.cache_stats().compiles, 0);
    assert_eq!(host.cache_stats().hits, 1);
}

#[test]
fn only_the_extension_points_a_component_exports_are_called() {
    let host = host();
    let mut plugin = host
        .scheduler_plugin("so", &guest("score-only"), PluginLimits::default())
        .expect("plugin loads");
    let points = plugin.extension_points();
    assert!(!points.pre_filter && !points.filter && points.score && !points.normalize_score);
    plugin.configure("{}").expect("configure");
    plugin
        .node_added(0, node("a", 0, 0, 0))
        .expect("node-added");
    plugin
        .node_added(7, node("b", 0, 0, 0))
        .expect("node-added");
    let pod = pod(100, GI);
    assert!(plugin.pre_filter(1, &pod).expect("pre-filter").is_none());
    assert!(plugin.filter(1, &pod, &[0, 7]).expect("filter").is_none());
    assert!(plugin.reasons(0).expect("reasons").is_empty());
    assert_eq!(
        plugin.score(1, &pod, &[0, 7]).expect("score"),
        Some(vec![0, 7])
    );
    assert!(
        plugin
            .normalize_score(1, &[0, 7])
            .expect("normalize")
            .is_none()
    );
    plugin
        .end_cycle(1, CycleOutcome::Unschedulable)
        .expect("end-cycle");
    // configure, 2 node events, score, end-cycle: nothing for the missing extension points.
    assert_eq!(plugin.metrics().calls, 5);
}
