//! Scheduler policies from `examples/plugins/`, built by this harness for `wasm32-wasip2` and
//! natively: results, equivalence of the two formats, limits, failures and the compiled-code
//! cache.

mod common;

use std::time::{Duration, Instant};

use common::{Build, GI, guest, host, node, pod, spec};
use keelson_plugin_host::{
    CycleOutcome, Error, FailureAction, FailurePolicy, FilterResult, HostConfig, PluginFormat,
    PluginHost, PluginLimits, PluginSpec, SchedulerPlugin,
};

/// Everything a host learns from least-requested in one scripted run.
#[derive(Debug, PartialEq)]
struct Transcript {
    reported_name: String,
    filtered: Vec<FilterResult>,
    reasons: Vec<String>,
    scores: Vec<i64>,
    normalized: Option<Vec<i64>>,
    after_update: Vec<FilterResult>,
    after_removal: Vec<i64>,
    calls: u64,
    errors: u64,
    instances_created: u64,
}

/// Runs least-requested through node events, two cycles, an update and a removal.
fn least_requested_run(build: Build) -> Transcript {
    let host = host();
    let mut plugin = host
        .load_scheduler(&spec("lr", "least-requested", build))
        .expect("plugin loads");
    let format = match build {
        Build::Wasm => PluginFormat::WasmComponent,
        Build::Native => PluginFormat::NativeLibrary,
    };
    assert_eq!(plugin.format(), format);
    let points = plugin.extension_points();
    assert!(points.filter && points.score && !points.pre_filter && !points.normalize_score);
    plugin.configure("{}").expect("configure");
    let reported_name = plugin.reported_name().expect("name");

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
    let reasons = plugin.reasons(0).expect("reasons");
    let scores = plugin
        .score(1, &pod, &[0, 2])
        .expect("score")
        .expect("exported");
    let normalized = plugin.normalize_score(1, &scores).expect("normalize");
    plugin
        .end_cycle(1, CycleOutcome::Scheduled(2))
        .expect("end-cycle");

    plugin
        .node_updated(2, node("empty", 4000, 0, 1))
        .expect("node-updated");
    let after_update = plugin
        .filter(2, &pod, &[2])
        .expect("filter")
        .expect("exported");
    plugin
        .end_cycle(2, CycleOutcome::Unschedulable)
        .expect("end-cycle");
    plugin.node_removed(1).expect("node-removed");
    let after_removal = plugin
        .score(3, &pod, &[0, 4])
        .expect("score")
        .expect("exported");
    plugin
        .end_cycle(3, CycleOutcome::Scheduled(0))
        .expect("end-cycle");

    let m = plugin.metrics();
    assert_eq!(m.latency.counts.iter().sum::<u64>(), m.calls);
    Transcript {
        reported_name,
        filtered,
        reasons,
        scores,
        normalized,
        after_update,
        after_removal,
        calls: m.calls,
        errors: m.errors,
        instances_created: m.instances_created,
    }
}

#[test]
fn least_requested_filters_and_scores_a_node_table() {
    let t = least_requested_run(Build::Wasm);
    assert_eq!(t.reported_name, "least-requested");
    assert_eq!(
        t.filtered,
        vec![
            FilterResult::Pass,
            FilterResult::Unschedulable(0),
            FilterResult::Pass,
            FilterResult::Unschedulable(2),
            FilterResult::Unschedulable(1),
        ]
    );
    assert_eq!(t.reasons[0], "insufficient cpu");
    assert_eq!(t.reasons[2], "too many pods");
    // half-used: cpu (4000-2000)/4000 = 50, memory (8-3)/8 = 62 -> 56
    // empty:     cpu (4000-1000)/4000 = 75, memory (8-1)/8 = 87 -> 81
    assert_eq!(t.scores, vec![56, 81]);
    // The policy exports filter and score only, so normalize-score is not called.
    assert_eq!(t.normalized, None);
    // An update reaches the guest's table: the empty node fills up.
    assert_eq!(t.after_update, vec![FilterResult::Unschedulable(0)]);
    assert_eq!(t.errors, 0);
    assert_eq!(t.instances_created, 1);
    // configure, name, 5 node-added, filter, reasons, score, end-cycle, node-updated, filter,
    // end-cycle, node-removed, score, end-cycle; not normalize-score, which is not exported.
    assert_eq!(t.calls, 17);
}

#[test]
fn least_requested_gives_the_same_results_as_wasm_and_native() {
    let wasm = least_requested_run(Build::Wasm);
    let native = least_requested_run(Build::Native);
    assert_eq!(wasm, native);
}

fn misbehaving(
    host: &PluginHost,
    mode: &str,
    limits: PluginLimits,
    build: Build,
) -> SchedulerPlugin {
    let mut plugin = host
        .scheduler_plugin(
            &format!("misbehaving-{mode}"),
            &guest("misbehaving", build),
            limits,
        )
        .expect("plugin loads");
    plugin.configure(&format!("\"{mode}\"")).expect("configure");
    plugin
        .node_added(0, node("n0", 0, 0, 0))
        .expect("node-added");
    plugin
}

/// After a failed call the plugin serves the next one on a fresh, configured instance (the
/// misbehaving guest's every extension point misbehaves, so node events and `name` are what
/// is left to call; `flaky-scheduler` checks the replayed node table).
fn assert_recovers(plugin: &mut SchedulerPlugin) {
    plugin
        .node_updated(0, node("n0", 100, 0, 1))
        .expect("next call works");
    assert_eq!(plugin.reported_name().expect("name"), "misbehaving");
    assert_eq!(plugin.metrics().instances_created, 2);
}

#[test]
fn a_guest_that_loops_forever_is_cut_off_at_its_deadline() {
    let host = host();
    let limits = PluginLimits {
        deadline: Duration::from_millis(50),
        ..PluginLimits::default()
    };
    let mut plugin = misbehaving(&host, "loop", limits, Build::Wasm);
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
    let mut plugin = misbehaving(&host, "allocate", limits, Build::Wasm);
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
    let mut plugin = misbehaving(&host, "panic", PluginLimits::default(), Build::Wasm);
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
        .load_scheduler(&spec("lr", "least-requested", Build::Wasm))
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
    let path = guest("least-requested", Build::Wasm);
    let host = PluginHost::new(config.clone()).expect("host starts");
    host.load_component(&path).expect("first load");
    assert_eq!(host.cache_stats().compiles, 1);
    assert_eq!(host.cache_stats().hits, 0);

    let mut plugin = host
        .load_scheduler(&PluginSpec::new("lr", &path))
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
        .load_scheduler(&spec("so", "score-only", Build::Wasm))
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

#[test]
fn a_native_panic_is_caught_reported_and_followed_by_a_replayed_instance() {
    let host = host();
    let mut plugin = misbehaving(&host, "panic", PluginLimits::default(), Build::Native);
    assert_eq!(plugin.format(), PluginFormat::NativeLibrary);
    let err = plugin.score(1, &pod(100, GI), &[0]).expect_err("panic");
    match &err {
        Error::Panic {
            plugin,
            call,
            message,
        } => {
            assert_eq!(plugin, "misbehaving-panic");
            assert_eq!(*call, "score");
            assert_eq!(message, "misbehaving plugin panics as configured");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "plugin \"misbehaving-panic\": call \"score\" panicked: misbehaving plugin panics as configured"
    );
    assert!(err.is_fatal_to_instance());
    assert_eq!(plugin.metrics().traps, 1);
    // The cycle's state went with the instance: end-cycle is skipped, not an error.
    plugin
        .end_cycle(1, CycleOutcome::Failed)
        .expect("end-cycle");
    // The fresh instance was configured and got node 0 again: filter passes it.
    assert_recovers(&mut plugin);
}

#[test]
fn native_calls_past_the_deadline_complete_and_are_counted() {
    let host = host();
    let limits = PluginLimits {
        deadline: Duration::ZERO,
        ..PluginLimits::default()
    };
    let mut plugin = host
        .load_scheduler(&spec("lr", "least-requested", Build::Native).with_limits(limits))
        .expect("plugin loads");
    plugin
        .configure("{}")
        .expect("configure runs to completion");
    plugin
        .node_added(0, node("a", 0, 0, 0))
        .expect("node-added runs to completion");
    let m = plugin.metrics();
    assert_eq!(
        m.deadlines_exceeded, 0,
        "native calls are never interrupted"
    );
    assert!(m.native_deadline_overruns >= 1, "{m:?}");
}

#[test]
fn fail_open_skips_a_failing_plugin_and_fail_closed_fails_the_cycle() {
    let host = host();
    for (policy, expected) in [
        (FailurePolicy::FailClosed, FailureAction::FailCycle),
        (FailurePolicy::FailOpen, FailureAction::SkipPlugin),
    ] {
        let mut plugin = host
            .load_scheduler(
                &spec("misbehaving", "misbehaving", Build::Wasm).with_failure_policy(policy),
            )
            .expect("plugin loads");
        plugin.configure("\"panic\"").expect("configure");
        plugin
            .node_added(0, node("n0", 0, 0, 0))
            .expect("node-added");
        let err = plugin.score(1, &pod(100, GI), &[0]).expect_err("trap");
        assert_eq!(plugin.on_error(&err), expected);
        let failed_open = u64::from(policy == FailurePolicy::FailOpen);
        assert_eq!(plugin.metrics().failed_open, failed_open);
    }
}

#[test]
fn after_a_failure_the_fresh_instance_has_the_node_table_replayed() {
    let host = host();
    for build in common::BOTH {
        let mut plugin = host
            .load_scheduler(&spec("flaky", "flaky-scheduler", build))
            .expect("plugin loads");
        plugin.configure("{}").expect("configure");
        plugin
            .node_added(0, node("a", 0, 0, 7))
            .expect("node-added");
        plugin
            .node_added(1, node("b", 0, 0, 3))
            .expect("node-added");
        plugin.node_removed(0).expect("node-removed");
        plugin
            .node_added(2, node("c", 0, 0, 5))
            .expect("node-added");

        let mut boom = pod(100, GI);
        boom.name = "boom".into();
        let err = plugin.score(1, &boom, &[1, 2]).expect_err("fails");
        assert!(err.is_fatal_to_instance(), "{build:?}: {err:?}");
        match build {
            Build::Wasm => assert!(matches!(err, Error::Trap { call: "score", .. }), "{err:?}"),
            Build::Native => assert!(
                matches!(&err, Error::Panic { call: "score", message, .. } if message == "boom"),
                "{err:?}"
            ),
        }
        plugin
            .end_cycle(1, CycleOutcome::Failed)
            .expect("end-cycle");

        // Scores are the nodes' pod counts, read from the guest's own table: the fresh
        // instance got nodes 1 and 2 again, and not the removed node 0.
        let scores = plugin.score(2, &pod(100, GI), &[1, 2]).expect("score");
        assert_eq!(scores, Some(vec![3, 5]), "{build:?}");
        let err = plugin
            .score(3, &pod(100, GI), &[0])
            .expect_err("node 0 is gone");
        assert!(
            matches!(err, Error::Plugin { call: "score", .. }),
            "{build:?}: {err:?}"
        );
        assert_eq!(plugin.metrics().instances_created, 2, "{build:?}");
    }
}
