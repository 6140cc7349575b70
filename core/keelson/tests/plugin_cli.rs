//! `keelson plugin new | build | inspect | check` on freshly scaffolded crates of every kind,
//! and the example plugins' own tests, with the real binary, cargo and the wasm32-wasip2
//! target.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn keelson() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Guest builds share these target directories with the plugin-host tests, so the SDK and its
/// dependencies compile once per run.
fn target_dir(native: bool) -> PathBuf {
    workspace().join(if native {
        "target/native-guests"
    } else {
        "target/wasm-guests"
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("spawn")
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shown} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(!out.status.success(), "{shown} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Scaffolds a plugin of `kind`, runs its own test, builds it both ways, inspects and checks
/// both files; returns the outputs of `inspect` and `check` for the Wasm component.
fn scaffold_build_check(kind: &str, name: &str, expect_exports: &[&str]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join(name);
    let created = ok(Command::new(keelson())
        .args(["plugin", "new", kind, name, "--dir"])
        .arg(&dir));
    assert!(
        created.contains(&format!("created {kind} plugin")),
        "{created}"
    );
    assert!(dir.join("Cargo.toml").is_file() && dir.join("src/lib.rs").is_file());

    let tested = ok(cargo()
        .args(["test", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir(true)));
    assert!(tested.contains("test result: ok"), "{tested}");

    for native in [false, true] {
        let mut build = Command::new(keelson());
        build
            .args(["plugin", "build"])
            .arg(&dir)
            .arg("--target-dir")
            .arg(target_dir(native));
        if native {
            build.arg("--native");
        }
        let built = PathBuf::from(ok(&mut build).trim());
        assert!(built.is_file(), "{} missing", built.display());
        let expected_ext = if native { "so" } else { "wasm" };
        assert_eq!(
            built.extension().and_then(|e| e.to_str()),
            Some(expected_ext)
        );

        let cache = tmp.path().join("cache");
        let inspected = ok(Command::new(keelson())
            .args(["plugin", "inspect"])
            .arg(&built)
            .arg("--cache-dir")
            .arg(&cache));
        assert!(inspected.contains(kind), "{inspected}");
        assert!(inspected.contains("keelson:plugin@0.1.0"), "{inspected}");
        assert!(
            inspected.contains(if native {
                "native library"
            } else {
                "Wasm component"
            }),
            "{inspected}"
        );
        for export in expect_exports {
            assert!(
                inspected.contains(export),
                "{export} missing from:\n{inspected}"
            );
        }

        let checked = ok(Command::new(keelson())
            .args(["plugin", "check"])
            .arg(&built)
            .arg("--cache-dir")
            .arg(&cache));
        assert!(checked.contains(&format!("plugin {name:?}")), "{checked}");
        assert!(checked.contains("ok"), "{checked}");

        if !native {
            // `check` compiled the component into the cache; `inspect` now says so.
            let again = ok(Command::new(keelson())
                .args(["plugin", "inspect"])
                .arg(&built)
                .arg("--cache-dir")
                .arg(&cache));
            assert!(again.contains("cached: yes"), "{again}");
            assert!(inspected.contains("cached: no"), "{inspected}");
        }

        // Options the plugin refuses make `check` fail with the plugin's message.
        let refused = fails(
            Command::new(keelson())
                .args(["plugin", "check", "--options", r#"{"unknown":1}"#])
                .arg(&built)
                .arg("--cache-dir")
                .arg(&cache),
        );
        assert!(refused.contains("takes no options"), "{refused}");
    }
}

#[test]
fn a_new_scheduler_policy_builds_tests_and_loads_both_ways() {
    scaffold_build_check("scheduler-policy", "fewest-pods", &["filter", "score"]);
}

#[test]
fn a_new_admission_check_builds_tests_and_loads_both_ways() {
    scaffold_build_check(
        "admission-check",
        "no-host-network",
        &["validate", "mutate"],
    );
}

#[test]
fn a_new_network_backend_builds_tests_and_loads_both_ways() {
    scaffold_build_check("network-backend", "loopback-only", &["backend"]);
}

#[test]
fn example_plugins_pass_their_own_tests() {
    for example in [
        "least-requested",
        "zone-spread",
        "require-owner",
        "logging-bridge",
    ] {
        let manifest = workspace()
            .join("examples/plugins")
            .join(example)
            .join("Cargo.toml");
        let out = ok(cargo()
            .args(["test", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir(true)));
        assert!(out.contains("test result: ok"), "{example}: {out}");
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let e = fails(Command::new(keelson()).args(["plugin", "new", "scheduler-policy", "Bad_Name"]));
    assert!(e.contains("not valid"), "{e}");

    let e = fails(
        Command::new(keelson())
            .args(["plugin", "build"])
            .arg(tmp.path()),
    );
    assert!(e.contains("has no Cargo.toml"), "{e}");

    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"not a plugin at all").expect("write");
    let e = fails(
        Command::new(keelson())
            .args(["plugin", "inspect"])
            .arg(&junk),
    );
    assert!(e.contains("junk.wasm"), "{e}");
    let e = fails(Command::new(keelson()).args(["plugin", "check"]).arg(&junk));
    assert!(e.contains("junk.wasm"), "{e}");

    let existing = tmp.path().join("taken");
    std::fs::create_dir_all(&existing).expect("mkdir");
    std::fs::write(existing.join("keep"), b"x").expect("write");
    let e = fails(
        Command::new(keelson())
            .args(["plugin", "new", "admission-check", "taken", "--dir"])
            .arg(&existing),
    );
    assert!(e.contains("not empty"), "{e}");
}
