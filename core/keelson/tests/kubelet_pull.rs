//! `keelson kubelet` pulling pods' images from a registry (Debian's docker-registry on a
//! loopback port, named with `--insecure-registry`): a pod whose image is only in the
//! registry runs, with Pulling and Pulled events; imagePullPolicy Always pulls again,
//! IfNotPresent does not; a missing tag goes ErrImagePull then ImagePullBackOff with a
//! Failed event; Never with a missing image is ErrImageNeverPull. And `keelson image pull`.
//! Needs root (a private containerd and runc).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use keelson_testsupport::{KubeletNode, Registry, script_pod, tail};
use serde_json::Value;

const NODE: &str = "kpull-worker-1";
const NODE_IP: &str = "10.11.12.14";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn pod(name: &str, image: &str, pull_policy: &str, script: &str) -> Value {
    let mut p = script_pod(NODE, name, image, "Always", script);
    p["spec"]["containers"][0]["imagePullPolicy"] = pull_policy.into();
    p
}

fn status0(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn waiting(p: &Value) -> (String, String) {
    let w = &status0(p)["state"]["waiting"];
    let s = |k: &str| w[k].as_str().unwrap_or_default().to_string();
    (s("reason"), s("message"))
}

/// The pod's events as (type, reason, message).
fn events(node: &KubeletNode, name: &str) -> Vec<(String, String, String)> {
    node.cluster
        .events("default", name)
        .into_iter()
        .map(|(t, r, m, _, _)| (t, r, m))
        .collect()
}

/// Waits for an event of `reason` whose message passes `check`; returns its message.
fn wait_event(node: &KubeletNode, pod: &str, reason: &str, check: impl Fn(&str) -> bool) -> String {
    let mut found = None;
    keelson_testsupport::wait_until(std::time::Duration::from_secs(30), || {
        found = events(node, pod)
            .into_iter()
            .find(|(_, r, m)| r == reason && check(m))
            .map(|(_, _, m)| m);
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "pod {pod}: no {reason} event as expected; events: {:#?}\nkubelet log:\n{}",
            events(node, pod),
            tail(&node.log(), 40)
        )
    })
}

#[test]
fn the_kubelet_pulls_per_image_pull_policy() {
    let registry = Registry::start();
    let pushed = registry.push_busybox("team/app", "v1");
    let host = registry.host.clone();
    // Pulls are the kubelet's, from the host: the pods need no network of their own.
    let args = ["--insecure-registry", &host, "--network-plugin", "none"];
    let node = KubeletNode::start(&bin(), NODE, NODE_IP, &args);
    let image = pushed.reference.clone();
    let missing = format!("{host}/team/app:nope");
    let never = format!("{host}/team/app:never");
    node.cluster.create(&[
        pod("pulled", &image, "IfNotPresent", "echo pulled; sleep 1000"),
        pod("missing", &missing, "IfNotPresent", "true"),
        pod("never", &never, "Never", "true"),
        pod("present", "busybox", "IfNotPresent", "sleep 1000"),
    ]);

    // Only in the registry: pulled, then run.
    let running = node.wait_pod("pulled", "Running", 60, |p| {
        status0(p)["state"]["running"].is_object()
    });
    assert_eq!(
        status0(&running)["imageID"],
        format!("{host}/team/app@{}", pushed.digest),
        "{running:#}"
    );
    // The start of the pull (busybox's one layer is in containerd already, from the node's
    // import, so no layer progress follows).
    let start = format!("Pulling image \"{image}\"");
    wait_event(&node, "pulled", "Pulling", |m| m == start);
    let pulled = wait_event(&node, "pulled", "Pulled", |_| true);
    let prefix = format!("Successfully pulled image \"{image}\" in ");
    assert!(
        pulled.starts_with(&prefix)
            && pulled.contains(" including waiting). Image size: ")
            && pulled.ends_with(" bytes."),
        "{pulled}"
    );
    let size: u64 = pulled
        .rsplit("Image size: ")
        .next()
        .and_then(|s| s.strip_suffix(" bytes."))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no size in {pulled:?}"));
    assert!(size > 1_000_000, "{pulled}");

    // Present: no pull.
    node.wait_pod("present", "Running", 60, |p| {
        status0(p)["state"]["running"].is_object()
    });
    let present = wait_event(&node, "present", "Pulled", |_| true);
    assert_eq!(
        present,
        "Container image \"busybox\" already present on machine"
    );
    assert!(
        !events(&node, "present")
            .iter()
            .any(|(_, r, _)| r == "Pulling"),
        "{:#?}",
        events(&node, "present")
    );

    // A tag the registry does not have: ErrImagePull, then backing off.
    let failed = node.wait_pod("missing", "ErrImagePull", 60, |p| {
        let (reason, _) = waiting(p);
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let (_, message) = waiting(&failed);
    assert!(message.contains("not found"), "{message}");
    let backoff = node.wait_pod("missing", "ImagePullBackOff", 60, |p| {
        waiting(p).0 == "ImagePullBackOff"
    });
    let (_, message) = waiting(&backoff);
    assert!(
        message.starts_with(&format!(
            "Back-off pulling image \"{missing}\": ErrImagePull: "
        )),
        "{message}"
    );
    assert_eq!(backoff["status"]["phase"], "Pending");
    let failure = wait_event(&node, "missing", "Failed", |m| {
        m.starts_with("Failed to pull")
    });
    assert!(
        failure.starts_with(&format!("Failed to pull image \"{missing}\": "))
            && failure.contains(&format!("failed to resolve reference \"{missing}\"")),
        "{failure}"
    );
    wait_event(&node, "missing", "Failed", |m| m == "Error: ErrImagePull");
    wait_event(&node, "missing", "BackOff", |m| {
        m == format!("Back-off pulling image \"{missing}\"")
    });

    // Never, and not there.
    let never_pod = node.wait_pod("never", "ErrImageNeverPull", 60, |p| {
        waiting(p).0 == "ErrImageNeverPull"
    });
    let expected = format!("Container image \"{never}\" is not present with pull policy of Never");
    assert_eq!(waiting(&never_pod).1, expected);
    wait_event(&node, "never", "ErrImageNeverPull", |m| m == expected);

    // Always: pulled again, though present (nothing but the manifest fetched).
    node.cluster
        .create(&[pod("again", &image, "Always", "sleep 1000")]);
    node.wait_pod("again", "Running", 60, |p| {
        status0(p)["state"]["running"].is_object()
    });
    wait_event(&node, "again", "Pulling", |_| true);
    wait_event(&node, "again", "Pulled", |m| {
        m.starts_with("Successfully pulled")
    });

    // `keelson image pull` into the same containerd, by digest.
    let cd = node.containerd();
    let by_digest = format!("{host}/team/app@{}", pushed.digest);
    let out = Command::new(bin())
        .args(["image", "pull", &by_digest, "--insecure-registry", &host])
        .arg("--address")
        .arg(&cd.socket)
        .args(["-n", &cd.namespace])
        .output()
        .expect("run keelson image pull");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("pulled {by_digest} {} (", pushed.digest))
            && stdout.contains("0 layers fetched, 1 already present"),
        "{stdout}"
    );
    assert!(stderr.contains("layer sha256:"), "{stderr}");

    // Without --insecure-registry, HTTPS is tried and the error says what to do.
    let out = Command::new(bin())
        .args(["image", "pull", &image])
        .arg("--address")
        .arg(&cd.socket)
        .args(["-n", &cd.namespace])
        .output()
        .expect("run keelson image pull");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("--insecure-registry {host}")),
        "{stderr}"
    );
}
