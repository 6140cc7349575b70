//! `keelson bench controllers` at a tiny size: it runs to the end and prints its tables. The
//! figures are not checked; a benchmark is never an assertion in the test suite.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_controllers_benchmark_runs_and_prints_its_tables() {
    let out = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_keelson")))
        .args(["bench", "controllers", "--pods", "20", "--services", "2"])
        .args(["--concurrency", "4"])
        .output()
        .expect("run keelson bench controllers");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for row in [
        "replication (pods until watched)",
        "direct creates, 4 in flight",
        "direct creates, slow-start batches",
        "RC controller, 1 RC x 20",
        "RC controller, 2 RCs x 10",
        "bench pod watch (baseline)",
        "Endpoints address (endpoints controller)",
        "endpoints / watch",
        "Endpoints updates",
    ] {
        assert!(
            stdout.contains(row),
            "no {row:?} in:\n{stdout}\nstderr:\n{stderr}"
        );
    }
}

#[test]
fn more_services_than_pods_is_refused() {
    let out = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_keelson")))
        .args(["bench", "controllers", "--pods", "2", "--services", "3"])
        .output()
        .expect("run keelson bench controllers");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--services"), "{stderr}");
}
