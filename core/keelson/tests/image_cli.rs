//! `keelson image import` and `keelson image ls` against a private containerd, with the
//! busybox archive that scripts/build-images.sh builds.

use std::path::PathBuf;
use std::process::{Command, Output};

use keelson_testsupport::{Containerd, busybox_image};

fn keelson() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn run(args: &[&str]) -> Output {
    Command::new(keelson())
        .args(args)
        .env("KEELSON_LOG", "warn")
        .output()
        .expect("spawn keelson")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keelson {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The manifest digest the build script recorded in the archive's index.json.
fn busybox_manifest_digest() -> String {
    let file = std::fs::File::open(busybox_image()).expect("open busybox.tar");
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().expect("entries") {
        let entry = entry.expect("entry");
        if entry.path().expect("path").to_str() == Some("index.json") {
            let index: serde_json::Value = serde_json::from_reader(entry).expect("index.json");
            return index["manifests"][0]["digest"]
                .as_str()
                .expect("digest")
                .to_string();
        }
    }
    panic!("busybox.tar has no index.json");
}

#[test]
fn import_then_ls() {
    let cd = Containerd::start();
    let socket = cd.socket.to_str().expect("utf-8 socket path");
    let archive = busybox_image();
    let archive = archive.to_str().expect("utf-8 archive path");
    let digest = busybox_manifest_digest();

    let imported = ok(&[
        "image",
        "import",
        archive,
        "--address",
        socket,
        "-n",
        &cd.namespace,
    ]);
    assert!(
        imported.contains(&format!(
            "imported docker.io/library/busybox:latest {digest}"
        )),
        "{imported}"
    );

    let listed = ok(&[
        "image",
        "ls",
        "--address",
        socket,
        "--namespace",
        &cd.namespace,
    ]);
    let lines: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(|h| h[..3].to_vec()),
        Some(vec!["REF", "DIGEST", "SIZE"]),
        "{listed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.len() == 4 && l[0] == "docker.io/library/busybox:latest" && l[1] == digest),
        "{listed}"
    );

    // The default namespace is another namespace: nothing there.
    let other = ok(&["image", "ls", "--address", socket]);
    assert_eq!(other.lines().count(), 1, "{other}");
}

#[test]
fn no_containerd_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("containerd.sock");
    let out = run(&["image", "ls", "--address", socket.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot reach containerd at {}", socket.display()))
            && stderr.contains("is containerd running?"),
        "{stderr}"
    );
}
