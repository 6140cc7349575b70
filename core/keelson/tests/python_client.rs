//! Runs the Python suite (tests/python) with the official `kubernetes` client against the
//! `keelson` binary built by cargo, on both store backends.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use keelson_testsupport::repo_root;

#[test]
fn python_kubernetes_client_suite() {
    let venv = std::env::var("KEELSON_VENV").unwrap_or_else(|_| "/var/lib/keelson/venv".into());
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} not found: run scripts/setup.sh (it creates the venv with the kubernetes client)"
    );
    let root = repo_root();
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"])
        .arg(root.join("tests/python"))
        .env("KEELSON_BIN", env!("CARGO_BIN_EXE_keelson"))
        .env(
            "PATH",
            format!(
                "/usr/bin:/usr/local/bin:{}",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "python suite failed:\n{stdout}\n{stderr}"
    );
}
