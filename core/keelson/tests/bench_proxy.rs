//! `keelson bench proxy` at a tiny size: it runs to the end, prints a positive throughput,
//! connection rate and latency for every path from both clients, and leaves none of its
//! network namespaces behind, also when interrupted. The figures are not compared; a
//! benchmark is never an assertion in the test suite. Needs root, iproute2, nftables and
//! iperf3.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use keelson_testsupport::wait_until;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// The bench's namespaces that still exist for process `pid`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("kbp{pid}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// The six figures of `label`'s rows (one per client), in order.
fn rows(stdout: &str, label: &str) -> Vec<Vec<f64>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(label))
        .map(|rest| {
            rest.split_whitespace()
                .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

#[test]
fn the_proxy_benchmark_prints_every_path_and_cleans_up() {
    for tool in ["ip", "nft", "iperf3"] {
        assert!(
            Command::new("which")
                .arg(tool)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "the proxy benchmark test needs {tool} (scripts/setup.sh installs it)"
        );
    }
    let child = Command::new(bin())
        .args(["bench", "proxy", "--duration", "1", "--connections", "100"])
        .args(["--services", "3", "--from", "node,pod"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keelson bench proxy");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for label in [
        "pod IP, no proxy rules",
        "pod IP (direct)",
        "ClusterIP, kernel (nftables)",
        "ClusterIP, userspace proxy",
    ] {
        let rows = rows(&stdout, label);
        assert_eq!(rows.len(), 2, "{label}: a row per client in:\n{stdout}");
        for figures in rows {
            assert_eq!(figures.len(), 6, "{label}: {figures:?} in:\n{stdout}");
            for (i, name) in [(0, "Gbit/s"), (2, "conns/s"), (4, "p50"), (5, "p99")] {
                assert!(
                    figures[i] > 0.0,
                    "{label}: {name} is {} in:\n{stdout}",
                    figures[i]
                );
            }
        }
    }
    for from in ["from the node", "from the pod"] {
        assert!(
            stdout.lines().any(|l| l.starts_with("target (DESIGN.md)")
                && l.contains(from)
                && l.contains(">= 95%")),
            "no target line {from} in:\n{stdout}"
        );
    }
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "left behind");
    let bridge = Command::new("ip")
        .args(["link", "show", &format!("kbp{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!bridge.success(), "the bench's bridge is on the host");
}

#[test]
fn an_interrupted_proxy_benchmark_removes_its_namespaces() {
    let mut child = Command::new(bin())
        .args(["bench", "proxy", "--duration", "60", "--services", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keelson bench proxy");
    let pid = child.id();
    let built = wait_until(Duration::from_secs(30), || namespaces_of(pid).len() == 3);
    if !built {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the bench made no namespaces; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Into the measurements, then Ctrl-C.
    std::thread::sleep(Duration::from_secs(2));
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited, "still running 20 s after SIGINT; stderr:\n{stderr}");
    assert!(!out.status.success(), "stderr:\n{stderr}");
    assert!(stderr.contains("interrupted"), "stderr:\n{stderr}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new(), "left behind");
}
