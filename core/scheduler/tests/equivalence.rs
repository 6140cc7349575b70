//! The built-in policies make the same decisions in process, as a Wasm component and as a
//! native library: `plugins/scheduler-policies/component`, built by this test both ways, runs
//! every entry of a policy config through `Builtin`, and three frameworks with the same seed
//! schedule the same pods over the same evolving nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use keelson_plugin_host::{HostConfig, PluginHost};
use keelson_plugin_sdk::fixtures::{node, pod};
use keelson_plugin_sdk::{NodeInfo, PodInfo, TaintEffect, Toleration, TolerationOperator};
use keelson_scheduler::config::{PolicyConfig, PolicySource};
use keelson_scheduler::framework::{Framework, Outcome};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the component crate and returns the built file.
fn build(native: bool) -> PathBuf {
    let root = root();
    let target = root.join(if native {
        "target/native-guests"
    } else {
        "target/wasm-guests"
    });
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release", "--lib", "--manifest-path"])
        .arg(root.join("plugins/scheduler-policies/component/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    if !native {
        cmd.args(["--target", "wasm32-wasip2"]);
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "building the built-in policies component failed (is the wasm32-wasip2 target installed? \
         scripts/setup.sh adds it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if native {
        target.join("release/libkeelson_builtin_policies.so")
    } else {
        target.join("wasm32-wasip2/release/keelson_builtin_policies.wasm")
    }
}

/// The same config with every entry run by the plugin at `path`.
fn as_plugins(config: &PolicyConfig, path: &Path) -> PolicyConfig {
    let mut out = config.clone();
    for entry in out.predicates.iter_mut().chain(out.priorities.iter_mut()) {
        let PolicySource::Builtin(json) = &entry.source else {
            panic!("expected built-in entries");
        };
        entry.source = PolicySource::Plugin {
            path: path.to_path_buf(),
            options: json.clone(),
        };
    }
    out
}

fn nodes() -> Vec<NodeInfo> {
    (0..24u32)
        .map(|i| {
            let mut b = node(&format!("node-{i:02}"))
                .cpu(1000 + u64::from(i % 4) * 1000)
                .memory((2 + u64::from(i % 3) * 2) << 30)
                .max_pods(8 + i % 5)
                .label("zone", ["a", "b", "c"][i as usize % 3])
                .label("disk", if i % 2 == 0 { "ssd" } else { "hdd" });
            if i % 7 == 3 {
                b = b.taint("dedicated", "db", TaintEffect::NoSchedule);
            }
            if i % 5 == 1 {
                b = b.taint("noisy", "", TaintEffect::PreferNoSchedule);
            }
            if i % 6 == 5 {
                b = b.used_port(8080);
            }
            b.build()
        })
        .collect()
}

fn pods() -> Vec<PodInfo> {
    (0..160u32)
        .map(|i| {
            let mut b = pod(&format!("pod-{i:03}"))
                .cpu(u64::from(i % 5) * 300)
                .memory(u64::from(i % 4) * (256 << 20))
                .selected_by(i % 3, true);
            if i % 4 == 0 {
                b = b.node_selector("disk", "ssd");
            }
            if i % 9 == 0 {
                b = b.host_port(8080);
            }
            if i % 11 == 0 {
                b = b.toleration(Toleration {
                    key: Some("dedicated".into()),
                    operator: TolerationOperator::Equal,
                    value: "db".into(),
                    effect: Some(TaintEffect::NoSchedule),
                });
            }
            b.build()
        })
        .collect()
}

/// Counts `pod` on `node` as the scheduler's cache would after binding it.
fn place(node: &mut NodeInfo, pod: &PodInfo) {
    node.requested.cpu += pod.requests.cpu;
    node.requested.memory += pod.requests.memory;
    node.non_zero_requested.cpu += pod.non_zero_requests.cpu;
    node.non_zero_requested.memory += pod.non_zero_requests.memory;
    node.pod_count += 1;
    node.used_ports.extend(pod.host_ports.iter().cloned());
    node.used_ports.sort_by_key(|p| p.port);
    node.used_ports.dedup();
    for &g in &pod.spread_groups {
        match node.group_counts.iter_mut().find(|c| c.group == g) {
            Some(c) => c.count += 1,
            None => node
                .group_counts
                .push(keelson_plugin_sdk::GroupCount { group: g, count: 1 }),
        }
    }
    node.group_counts.sort_by_key(|c| c.group);
}

fn run(framework: &mut Framework) -> Vec<Outcome> {
    let mut nodes = nodes();
    for n in &nodes {
        framework.upsert_node(n.clone()).expect("node");
    }
    let mut outcomes = Vec::new();
    for p in pods() {
        let outcome = framework.schedule(&p).expect("cycle");
        if let Outcome::Scheduled { node, .. } = &outcome {
            let n = nodes
                .iter_mut()
                .find(|n| n.name == *node)
                .expect("a known node");
            place(n, &p);
            framework.upsert_node(n.clone()).expect("node update");
        }
        outcomes.push(outcome);
    }
    outcomes
}

#[test]
fn built_in_wasm_and_native_policies_make_the_same_decisions() {
    let config = PolicyConfig::from_json(
        r#"{"kind":"Policy","apiVersion":"v1",
            "predicates":[{"name":"PodFitsHostPorts"},{"name":"PodFitsResources"},
              {"name":"NoDiskConflict"},{"name":"MatchNodeSelector"},{"name":"HostName"},
              {"name":"PodToleratesNodeTaints"}],
            "priorities":[{"name":"LeastRequestedPriority","weight":1},
              {"name":"BalancedResourceAllocation","weight":1},
              {"name":"SelectorSpreadPriority","weight":2},
              {"name":"TaintTolerationPriority","weight":1},
              {"name":"ZonePreference","weight":1,"argument":{"labelPreference":{"label":"zone","presence":true}}}]}"#,
    )
    .expect("policy config");
    let wasm = build(false);
    let native = build(true);
    let cache = tempfile::tempdir().expect("tempdir");
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    })
    .expect("plugin host");

    let seed = 42;
    let builtin = run(&mut Framework::builtin(&config, seed).expect("built-in framework"));
    let scheduled = builtin
        .iter()
        .filter(|o| matches!(o, Outcome::Scheduled { .. }))
        .count();
    // The workload must exercise both outcomes, or agreement would mean little.
    assert!(scheduled > 40, "only {scheduled} pods scheduled");
    assert!(scheduled < builtin.len(), "no pod was unschedulable");

    for (label, path) in [("Wasm component", &wasm), ("native library", &native)] {
        let mut framework =
            Framework::new(&as_plugins(&config, path), &host, seed).expect("plugin framework");
        let outcomes = run(&mut framework);
        for (i, (a, b)) in builtin.iter().zip(&outcomes).enumerate() {
            assert_eq!(a, b, "pod {i}: built-in and {label} disagree");
        }
        assert_eq!(outcomes.len(), builtin.len());
    }
}
