//! Opening plugin files by content: what is refused and how clearly, what `inspect` reports,
//! and that a second load reuses compiled code.

mod common;

use common::{Build, guest, host};
use keelson_plugin_host::{
    Error, HostConfig, HostServices, LoadedPlugin, PluginFormat, PluginHost, PluginKind, PluginSpec,
};

fn load_err(file: &std::path::Path, name: &str) -> Error {
    match host().load(&PluginSpec::new(name, file), &HostServices::default()) {
        Ok(_) => panic!("{} should be refused", file.display()),
        Err(e) => e,
    }
}

#[test]
fn a_native_library_of_another_abi_version_is_refused_before_anything_else_is_read() {
    let file = guest("abi-999", Build::Native);
    let err = load_err(&file, "future");
    assert!(
        matches!(
            err,
            Error::AbiVersion {
                found: 999,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // The library has no manifest or vtable: had the loader read them first, it would have
    // said so instead.
    assert_eq!(
        err.to_string(),
        "plugin \"future\": native library speaks plugin ABI version 999, but this host speaks \
         version 1; rebuild it with a matching keelson-plugin-sdk"
    );
    let err = host().inspect(&file).expect_err("inspect refuses too");
    assert!(
        matches!(err, Error::AbiVersion { found: 999, .. }),
        "{err:?}"
    );
}

#[test]
fn a_component_built_for_another_contract_version_is_refused_naming_it() {
    let err = load_err(&guest("contract-v2", Build::Wasm), "v2");
    match &err {
        Error::ContractVersion {
            plugin,
            found,
            supported,
        } => {
            assert_eq!(plugin, "v2");
            assert_eq!(found, "0.2.0");
            assert_eq!(*supported, "0.1.0");
        }
        other => panic!("expected a contract error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "plugin \"v2\": built for contract keelson:plugin@0.2.0, but this host supports \
         keelson:plugin@0.1.0; rebuild it against the supported contract"
    );
}

#[test]
fn a_scheduler_policy_importing_host_net_is_refused_naming_the_import() {
    let err = load_err(&guest("imports-host-net", Build::Wasm), "grabby");
    match &err {
        Error::ImportNotGranted {
            plugin,
            imports,
            kind,
        } => {
            assert_eq!(plugin, "grabby");
            assert_eq!(*kind, PluginKind::SchedulerPolicy);
            assert!(
                imports.contains(&"keelson:plugin/host-net@0.1.0".to_string()),
                "{imports:?}"
            );
        }
        other => panic!("expected an import error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("keelson:plugin/host-net@0.1.0")
            && message.contains("which the scheduler-policy world does not grant"),
        "{message}"
    );
}

#[test]
fn a_component_importing_the_filesystem_is_refused_naming_the_import() {
    let err = load_err(&guest("imports-filesystem", Build::Wasm), "reader");
    let Error::ImportNotGranted { imports, .. } = &err else {
        panic!("expected an import error, got {err:?}");
    };
    assert!(
        imports.iter().all(|i| i.starts_with("wasi:filesystem/")),
        "{imports:?}"
    );
    assert!(
        err.to_string()
            .contains("imports wasi:filesystem/types@0.2.6, wasi:filesystem/preopens@0.2.6"),
        "{err}"
    );
}

#[test]
fn a_core_module_and_a_random_file_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let err = load_err(&core, "core");
    assert!(matches!(err, Error::CoreModule { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin file {} is a core Wasm module, not a component; build with --target wasm32-wasip2",
            core.display()
        )
    );

    let random = dir.path().join("plugin.bin");
    std::fs::write(&random, b"#!/bin/sh\necho not a plugin\n").expect("write");
    let err = load_err(&random, "random");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin file {} is neither a Wasm component nor a native library (ELF, Mach-O or PE)",
            random.display()
        )
    );
    let err = host().inspect(&random).expect_err("inspect refuses too");
    assert!(matches!(err, Error::UnknownFormat { .. }), "{err:?}");
}

#[test]
fn inspect_reports_format_kind_contract_exports_and_imports() {
    let cache = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    })
    .expect("host starts");

    let wasm = guest("least-requested", Build::Wasm);
    let info = host.inspect(&wasm).expect("inspect");
    assert_eq!(info.format, PluginFormat::WasmComponent);
    assert_eq!(info.kind, PluginKind::SchedulerPolicy);
    assert_eq!(info.contract, "keelson:plugin@0.1.0");
    assert_eq!(info.abi_version, None);
    let mut exports = info.exports.clone();
    exports.sort();
    assert_eq!(exports, ["filter", "lifecycle", "scheduler", "score"]);
    assert!(
        info.imports
            .iter()
            .any(|i| i.starts_with("keelson:plugin/scheduler-types@")),
        "{:?}",
        info.imports
    );
    assert_eq!(info.size, std::fs::metadata(&wasm).expect("stat").len());
    assert_eq!(info.sha256.len(), 64);
    assert_eq!(info.compiled_cached, Some(false));
    host.load_scheduler(&PluginSpec::new("lr", &wasm))
        .expect("load");
    assert_eq!(
        host.inspect(&wasm).expect("inspect").compiled_cached,
        Some(true)
    );

    let native = host
        .inspect(&guest("require-owner", Build::Native))
        .expect("inspect");
    assert_eq!(native.format, PluginFormat::NativeLibrary);
    assert_eq!(native.kind, PluginKind::AdmissionCheck);
    assert_eq!(native.contract, "keelson:plugin@0.1.0");
    assert_eq!(native.abi_version, Some(1));
    assert_eq!(native.name.as_deref(), Some("require-owner"));
    assert_eq!(native.exports, ["lifecycle", "validate", "mutate"]);
    assert!(native.imports.is_empty());
    assert_eq!(native.compiled_cached, None);

    let network = host
        .inspect(&guest("logging-bridge", Build::Wasm))
        .expect("inspect");
    assert_eq!(network.kind, PluginKind::NetworkBackend);
}

#[test]
fn load_returns_the_wrapper_of_the_files_kind_in_either_format() {
    let host = host();
    let services = HostServices::default();
    for build in common::BOTH {
        for (guest_name, kind, reported) in [
            (
                "least-requested",
                PluginKind::SchedulerPolicy,
                "least-requested",
            ),
            ("require-owner", PluginKind::AdmissionCheck, "require-owner"),
            (
                "logging-bridge",
                PluginKind::NetworkBackend,
                "logging-bridge",
            ),
        ] {
            let mut plugin = host
                .load(&PluginSpec::new("p", guest(guest_name, build)), &services)
                .expect("loads");
            assert_eq!(plugin.kind(), kind);
            assert_eq!(plugin.name(), "p");
            // The name is there before configure, as `keelson plugin check` needs it.
            assert_eq!(plugin.reported_name().expect("name"), reported);
            plugin.configure("{}").expect("configure");
            assert_eq!(plugin.reported_name().expect("name"), reported);
            let format_matches = matches!(
                (build, plugin.format()),
                (Build::Wasm, PluginFormat::WasmComponent)
                    | (Build::Native, PluginFormat::NativeLibrary)
            );
            assert!(format_matches);
            assert!(matches!(
                (&plugin, kind),
                (LoadedPlugin::Scheduler(_), PluginKind::SchedulerPolicy)
                    | (LoadedPlugin::Admission(_), PluginKind::AdmissionCheck)
                    | (LoadedPlugin::Network(_), PluginKind::NetworkBackend)
            ));
        }
    }
}

#[test]
fn asking_for_another_kind_is_refused_naming_both() {
    let err = host()
        .load_scheduler(&PluginSpec::new(
            "ro",
            guest("require-owner", Build::Native),
        ))
        .err()
        .expect("wrong kind");
    assert_eq!(
        err.to_string(),
        "plugin \"ro\": is of kind admission-check, not scheduler-policy"
    );
}

#[test]
fn the_same_native_library_loaded_twice_is_reused() {
    let host = host();
    let path = guest("least-requested", Build::Native);
    let mut a = host
        .load_scheduler(&PluginSpec::new("a", &path))
        .expect("first load");
    let mut b = host
        .load_scheduler(&PluginSpec::new("b", &path))
        .expect("second load");
    a.configure("{}").expect("configure");
    b.configure("{}").expect("configure");
    // Instances of one library are independent.
    a.node_added(0, common::node("x", 0, 0, 0)).expect("node");
    let pod = common::pod(1000, common::GI);
    assert_eq!(a.score(1, &pod, &[0]).expect("score"), Some(vec![81]));
    // least-requested scores a node it does not know 0.
    assert_eq!(b.score(1, &pod, &[0]).expect("score"), Some(vec![0]));
}

#[test]
fn a_second_load_of_the_same_component_does_not_compile_again() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    };
    let host = PluginHost::new(config).expect("host starts");
    let spec = PluginSpec::new("ro", guest("require-owner", Build::Wasm));
    host.load(&spec, &HostServices::default()).expect("first");
    assert_eq!(host.cache_stats().compiles, 1);
    host.load(&spec, &HostServices::default()).expect("second");
    assert_eq!(host.cache_stats().compiles, 1);
    assert_eq!(host.cache_stats().hits, 1);
}
