//! A plugin entry's `failurePolicy` decides what its failed calls mean: `examples/plugins/
//! misbehaving`, built by this test as a Wasm component, runs as a priority next to built-in
//! policies and fails every `score` call (a panic, or a loop cut off at the call's deadline).
//! Failing open, the built-ins schedule every pod as if the plugin were not there; failing
//! closed, every cycle fails naming the plugin.

use std::path::{Path, PathBuf};
use std::process::Command;

use keelson_plugin_host::{HostConfig, PluginHost, PluginMetrics};
use keelson_plugin_sdk::PodInfo;
use keelson_plugin_sdk::fixtures::{node, pod};
use keelson_scheduler::Error;
use keelson_scheduler::config::PolicyConfig;
use keelson_scheduler::framework::{Framework, Outcome};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the misbehaving plugin as a Wasm component and returns the built file.
fn misbehaving() -> PathBuf {
    let root = root();
    let target = root.join("target/wasm-guests");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--lib", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join("examples/plugins/misbehaving/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building the misbehaving plugin failed (is the wasm32-wasip2 target installed? \
         scripts/setup.sh adds it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("wasm32-wasip2/release/misbehaving.wasm")
}

const BUILTINS: &str = r#""predicates":[{"name":"PodFitsResources"}],
    "priorities":[{"name":"LeastRequestedPriority","weight":1}"#;

/// The built-in policies, plus the misbehaving plugin in `mode` as a priority with the given
/// extra fields (`failurePolicy`) when `plugin` is given.
fn config(plugin: Option<(&str, &str)>) -> PolicyConfig {
    let extra = match plugin {
        None => String::new(),
        Some((mode, fields)) => format!(
            r#",{{"path":{path:?},"options":"{mode}","weight":5{fields}}}"#,
            path = misbehaving().display().to_string()
        ),
    };
    PolicyConfig::from_json(&format!(
        r#"{{"kind":"Policy","apiVersion":"v1",{BUILTINS}{extra}]}}"#
    ))
    .expect("policy config")
}

fn host(cache: &Path) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..HostConfig::default()
    })
    .expect("plugin host")
}

fn add_nodes(framework: &mut Framework) {
    framework
        .upsert_node(node("small").cpu(1000).build())
        .expect("node");
    framework
        .upsert_node(node("big").cpu(4000).build())
        .expect("node");
    framework
        .upsert_node(node("busy").cpu(4000).requested(3500, 0, 4).build())
        .expect("node");
}

fn pods(n: u32) -> Vec<PodInfo> {
    (0..n)
        .map(|i| {
            pod(&format!("pod-{i}"))
                .cpu(200 + u64::from(i) * 300)
                .build()
        })
        .collect()
}

fn metrics(framework: &Framework) -> PluginMetrics {
    let all = framework.plugin_metrics();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].0, "misbehaving");
    all[0].1.clone()
}

/// Schedules every pod with `framework` and with the built-ins alone, which must agree.
fn assert_same_as_builtins(framework: &mut Framework, pods: &[PodInfo]) {
    let mut builtin = Framework::builtin(&config(None), 7).expect("built-in framework");
    add_nodes(&mut builtin);
    add_nodes(framework);
    for p in pods {
        let want = builtin.schedule(p).expect("built-in cycle");
        let got = framework
            .schedule(p)
            .expect("cycle with a plugin failing open");
        assert!(matches!(got, Outcome::Scheduled { .. }), "{got:?}");
        assert_eq!(got, want, "pod {}", p.name);
    }
}

#[test]
fn a_panicking_plugin_that_fails_open_is_left_out_of_each_cycle() {
    let cache = tempfile::tempdir().expect("tempdir");
    let host = host(cache.path());
    let config = config(Some(("panic", r#","failurePolicy":"Ignore""#)));
    let mut framework = Framework::new(&config, &host, 7).expect("framework");
    let pods = pods(4);
    assert_same_as_builtins(&mut framework, &pods);
    let m = metrics(&framework);
    assert_eq!(m.failed_open, pods.len() as u64, "{m:?}");
    assert_eq!(m.traps, pods.len() as u64, "{m:?}");
    // Each trap discards the instance; each cycle's score gets a fresh one.
    assert!(m.instances_created >= pods.len() as u64, "{m:?}");
}

#[test]
fn a_looping_plugin_that_fails_open_is_cut_off_and_left_out() {
    let cache = tempfile::tempdir().expect("tempdir");
    let host = host(cache.path());
    let config = config(Some(("loop", r#","failurePolicy":"Ignore""#)));
    let mut framework = Framework::new(&config, &host, 7).expect("framework");
    let pods = pods(2);
    assert_same_as_builtins(&mut framework, &pods);
    let m = metrics(&framework);
    assert_eq!(m.failed_open, 2, "{m:?}");
    assert_eq!(m.deadlines_exceeded, 2, "{m:?}");
}

#[test]
fn a_failing_plugin_that_fails_closed_fails_the_cycle() {
    let cache = tempfile::tempdir().expect("tempdir");
    let host = host(cache.path());
    for fields in ["", r#","failurePolicy":"Fail""#] {
        let config = config(Some(("panic", fields)));
        let mut framework = Framework::new(&config, &host, 7).expect("framework");
        add_nodes(&mut framework);
        for p in pods(2) {
            let err = framework.schedule(&p).expect_err("the cycle fails");
            assert!(
                matches!(&err, Error::Plugin { plugin, call: "score", .. } if plugin == "misbehaving"),
                "{fields:?}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("scheduler plugin misbehaving: score: "),
                "{err}"
            );
        }
        let m = metrics(&framework);
        assert_eq!((m.failed_open, m.traps), (0, 2), "{fields:?}: {m:?}");
    }
}
