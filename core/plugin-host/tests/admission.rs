//! Admission checks as Wasm components and native libraries: identical responses, cluster
//! lookups through the embedder, and the failure policy.

mod common;

use std::sync::Arc;

use common::{Build, FakeCluster, core_resource, create_pod, host, spec};
use keelson_plugin_host::{
    AdmissionPlugin, AdmissionResponse, Error, FailurePolicy, LookupError, Operation, PluginHost,
    PluginSpec,
};

fn cluster() -> Arc<FakeCluster> {
    Arc::new(FakeCluster {
        objects: vec![(
            core_resource("namespaces"),
            None,
            "team-a".into(),
            r#"{"metadata":{"name":"team-a","labels":{"owner":"alice"}}}"#.into(),
        )],
        ..FakeCluster::default()
    })
}

fn require_owner(
    host: &PluginHost,
    spec: &PluginSpec,
    cluster: Arc<FakeCluster>,
) -> AdmissionPlugin {
    let mut plugin = host.load_admission(spec, cluster).expect("plugin loads");
    plugin.configure("{}").expect("configure");
    plugin
}

/// Every (request, validate response, mutate response) of a scripted run, and the lookups.
fn require_owner_run(build: Build) -> (Vec<(AdmissionResponse, AdmissionResponse)>, Vec<String>) {
    let host = host();
    let cluster = cluster();
    let mut plugin = require_owner(
        &host,
        &spec("require-owner", "require-owner", build),
        cluster.clone(),
    );
    let points = plugin.extension_points();
    assert!(points.validate && points.mutate);
    let labelled = r#"{"metadata":{"name":"web","labels":{"owner":"bob"}}}"#;
    let bare = r#"{"metadata":{"name":"web"}}"#;
    let mut delete = create_pod("4", "team-b", bare);
    delete.operation = Operation::Delete;
    let requests = [
        create_pod("1", "team-b", labelled),
        create_pod("2", "team-a", bare),
        create_pod("3", "team-b", bare),
        delete,
    ];
    let responses = requests
        .iter()
        .map(|r| {
            let v = plugin.validate(r).expect("validate").expect("exported");
            let m = plugin.mutate(r).expect("mutate").expect("exported");
            (v, m)
        })
        .collect();
    let lookups = cluster.lookups.lock().expect("lock").clone();
    assert_eq!(plugin.metrics().errors, 0);
    (responses, lookups)
}

#[test]
fn require_owner_answers_the_same_as_wasm_and_native() {
    let (wasm, wasm_lookups) = require_owner_run(Build::Wasm);
    let (native, native_lookups) = require_owner_run(Build::Native);
    assert_eq!(wasm, native);
    assert_eq!(wasm_lookups, native_lookups);

    // Labelled: allowed both ways, nothing to patch.
    assert!(wasm[0].0.allowed && wasm[0].1.allowed && wasm[0].1.patch.is_none());
    // Bare in a namespace with an owner: mutate patches in the namespace's owner.
    let patch = wasm[1].1.patch.as_deref().expect("patched");
    assert!(patch.contains("alice"), "{patch}");
    assert!(!wasm[1].0.allowed, "validate sees the unpatched object");
    // Bare in a namespace without one: denied, naming the label.
    assert!(!wasm[2].0.allowed);
    assert!(
        wasm[2]
            .0
            .message
            .as_deref()
            .unwrap_or("")
            .contains("\"owner\""),
        "{:?}",
        wasm[2].0
    );
    // Deletes are not checked.
    assert!(wasm[3].0.allowed && wasm[3].1.allowed);
    assert_eq!(
        wasm_lookups,
        ["get namespaces/None/team-a", "get namespaces/None/team-b"]
    );
}

#[test]
fn a_trapping_check_that_fails_closed_denies_naming_the_plugin_and_call() {
    let host = host();
    for build in common::BOTH {
        let mut plugin = host
            .load_admission(
                &spec("panics", "admission-panics", build),
                Arc::new(FakeCluster::default()),
            )
            .expect("plugin loads");
        assert_eq!(plugin.failure_policy(), FailurePolicy::FailClosed);
        plugin.configure("{}").expect("configure");
        let outcome = plugin.admit(&create_pod("1", "default", "{}"), false);
        assert!(!outcome.allowed(), "{build:?}");
        assert_eq!(outcome.response.status_code, Some(500));
        let message = outcome.response.message.as_deref().unwrap_or("");
        assert!(
            message.contains("plugin \"panics\": call \"validate\""),
            "{build:?}: {message}"
        );
        let failure = outcome.failure.expect("failure kept");
        assert!(failure.is_fatal_to_instance(), "{failure:?}");
        match build {
            Build::Wasm => assert!(matches!(failure, Error::Trap { .. }), "{failure:?}"),
            Build::Native => assert!(matches!(failure, Error::Panic { .. }), "{failure:?}"),
        }
        assert_eq!(plugin.metrics().failed_open, 0);
        assert_eq!(plugin.metrics().traps, 1);
    }
}

#[test]
fn a_trapping_check_that_fails_open_allows_and_counts_it() {
    let host = host();
    for build in common::BOTH {
        let mut plugin = host
            .load_admission(
                &spec("panics", "admission-panics", build)
                    .with_failure_policy(FailurePolicy::FailOpen),
                Arc::new(FakeCluster::default()),
            )
            .expect("plugin loads");
        plugin.configure("{}").expect("configure");
        for mutate in [false, true] {
            let outcome = plugin.admit(&create_pod("1", "default", "{}"), mutate);
            assert!(outcome.allowed(), "{build:?}");
            assert!(outcome.response.patch.is_none());
            assert!(outcome.failure.is_some());
        }
        let m = plugin.metrics();
        assert_eq!(m.failed_open, 2, "{build:?}");
        assert_eq!(m.traps, 2, "{build:?}");
        // The first failure discarded the configured instance; mutate ran on a fresh one.
        assert_eq!(m.instances_created, 2, "{build:?}");
    }
}

#[test]
fn a_lookup_failure_is_the_plugins_error_and_the_policy_decides() {
    let host = host();
    for build in common::BOTH {
        let cluster = Arc::new(FakeCluster {
            fail: Some(LookupError::Unavailable("cache not synced".into())),
            ..FakeCluster::default()
        });
        let mut plugin = require_owner(&host, &spec("ro", "require-owner", build), cluster);
        let outcome = plugin.admit(&create_pod("1", "team-a", r#"{"metadata":{}}"#), true);
        assert!(!outcome.allowed(), "{build:?}");
        let failure = outcome.failure.expect("failure");
        assert!(
            matches!(failure, Error::Plugin { call: "mutate", .. }),
            "{failure:?}"
        );
        assert!(!failure.is_fatal_to_instance());
        assert_eq!(plugin.metrics().instances_created, 1);
    }
}
