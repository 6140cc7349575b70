//! Deletion propagation with real kubectl: `--cascade=orphan` and `--cascade=foreground` keep
//! the object with the garbage collector's finalizer, the default (background) deletes it at
//! once, and bad DeleteOptions are refused as Kubernetes refuses them. Kinds the garbage
//! collector does not follow are deleted at once whatever the policy.
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::Value;

use common::{Admin, Server};

const NS: &str = "cascade";

fn rc(name: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "ReplicationController",
  "metadata": {{"name": "{name}", "namespace": "{NS}"}},
  "spec": {{"replicas": 0, "selector": {{"app": "{name}"}},
           "template": {{"metadata": {{"labels": {{"app": "{name}"}}}},
                        "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}}}}}"#
    )
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn exists(admin: &Admin<'_>, name: &str) -> bool {
    admin.run(&["get", "rc", name, "-n", NS]).ok
}

#[test]
fn cascade_policies_with_kubectl() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "namespace", NS]);
    for name in ["orphaned", "fore", "back", "legacy", "bad"] {
        admin.stdin(&["apply", "-f", "-"], &rc(name));
    }

    // --cascade=orphan: kept, being deleted, with the orphan finalizer for the collector.
    // (--wait=false: with no garbage collector running, the object stays.)
    admin.ok(&[
        "delete",
        "rc",
        "orphaned",
        "-n",
        NS,
        "--cascade=orphan",
        "--wait=false",
    ]);
    let obj = admin.json(&["get", "rc", "orphaned", "-n", NS]);
    assert!(
        obj.pointer("/metadata/deletionTimestamp").is_some(),
        "{obj}"
    );
    assert_eq!(
        obj.pointer("/metadata/deletionGracePeriodSeconds"),
        Some(&Value::from(0)),
        "{obj}"
    );
    assert_eq!(finalizers(&obj), ["orphan"], "{obj}");

    // Deleting again with the same policy changes nothing; the finalizer is not doubled.
    admin.ok(&[
        "delete",
        "rc",
        "orphaned",
        "-n",
        NS,
        "--cascade=orphan",
        "--wait=false",
    ]);
    let again = admin.json(&["get", "rc", "orphaned", "-n", NS]);
    assert_eq!(finalizers(&again), ["orphan"], "{again}");
    assert_eq!(
        again.pointer("/metadata/resourceVersion"),
        obj.pointer("/metadata/resourceVersion")
    );

    // The collector's part: removing the finalizer completes the deletion.
    admin.ok(&[
        "patch",
        "rc",
        "orphaned",
        "-n",
        NS,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ]);
    assert!(!exists(&admin, "orphaned"), "orphaned rc still there");

    // --cascade=foreground: kept with foregroundDeletion.
    admin.ok(&[
        "delete",
        "rc",
        "fore",
        "-n",
        NS,
        "--cascade=foreground",
        "--wait=false",
    ]);
    let obj = admin.json(&["get", "rc", "fore", "-n", NS]);
    assert!(
        obj.pointer("/metadata/deletionTimestamp").is_some(),
        "{obj}"
    );
    assert_eq!(finalizers(&obj), ["foregroundDeletion"], "{obj}");

    // Default (kubectl sends Background): gone at once.
    admin.ok(&["delete", "rc", "back", "-n", NS]);
    assert!(!exists(&admin, "back"), "background-deleted rc still there");

    // A v1 ReplicationController deleted without any policy orphans, Kubernetes' default
    // for v1 RCs.
    admin.ok(&[
        "delete",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/replicationcontrollers/legacy"),
    ]);
    let obj = admin.json(&["get", "rc", "legacy", "-n", NS]);
    assert_eq!(finalizers(&obj), ["orphan"], "{obj}");

    // Bad DeleteOptions: refused, the object untouched.
    let url = format!("/api/v1/namespaces/{NS}/replicationcontrollers/bad");
    let out = admin.run(&[
        "delete",
        "--raw",
        &format!("{url}?propagationPolicy=Sideways"),
    ]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("Unsupported value: \"Sideways\""),
        "{}",
        out.stderr
    );
    let out = admin.run(&[
        "delete",
        "--raw",
        &format!("{url}?propagationPolicy=Orphan&orphanDependents=true"),
    ]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(out.stderr.contains("cannot be both set"), "{}", out.stderr);
    // A collection delete is refused before it deletes anything.
    let out = admin.run(&[
        "delete",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/replicationcontrollers?propagationPolicy=Sideways"),
    ]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("Unsupported value: \"Sideways\""),
        "{}",
        out.stderr
    );
    let obj = admin.json(&["get", "rc", "bad", "-n", NS]);
    assert!(
        obj.pointer("/metadata/deletionTimestamp").is_none(),
        "{obj}"
    );
}

/// The collector follows only some kinds; a collector finalizer on any other would never be
/// removed and the object would stay Terminating for ever (kubectl waiting with it).
#[test]
fn kinds_the_collector_does_not_follow_are_not_left_stuck() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "namespace", NS]);
    admin.stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "PodTemplate",
  "metadata": {{"name": "x", "namespace": "{NS}"}},
  "template": {{"spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}}}"#
        ),
    );
    for name in ["held", "stuck"] {
        admin.stdin(
            &["apply", "-f", "-"],
            &format!(
                r#"{{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
  "metadata": {{"name": "{name}", "namespace": "{NS}"}},
  "spec": {{"holderIdentity": "me"}}}}"#
            ),
        );
    }

    // kubectl waits for the object to go (its default --wait=true); the timeout turns a stuck
    // object into a failure rather than a hang.
    for (kind, name, cascade) in [
        ("podtemplate", "x", "--cascade=foreground"),
        ("lease", "held", "--cascade=orphan"),
    ] {
        let out = admin.run(&["delete", kind, name, "-n", NS, cascade, "--timeout=20s"]);
        assert!(out.ok, "delete {kind} {name} {cascade}: {}", out.stderr);
        let left = admin.run(&["get", kind, name, "-n", NS, "-o", "json"]);
        assert!(
            !left.ok,
            "{kind} {name} still there after {cascade}: {}",
            left.stdout
        );
    }

    // A collector finalizer already there (as earlier versions left on such objects) is
    // dropped by a delete, which lets a stuck object go; someone else's still holds it.
    admin.ok(&[
        "patch",
        "lease",
        "stuck",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"metadata": {"finalizers": ["foregroundDeletion", "example.com/hold"]}}"#,
    ]);
    admin.ok(&["delete", "lease", "stuck", "-n", NS, "--wait=false"]);
    let obj = admin.json(&["get", "lease", "stuck", "-n", NS]);
    assert!(
        obj.pointer("/metadata/deletionTimestamp").is_some(),
        "{obj}"
    );
    assert_eq!(finalizers(&obj), ["example.com/hold"], "{obj}");
    admin.ok(&[
        "patch",
        "lease",
        "stuck",
        "-n",
        NS,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ]);
    assert!(
        !admin.run(&["get", "lease", "stuck", "-n", NS]).ok,
        "lease still there"
    );
}

#[test]
fn pods_keep_their_grace_period_with_a_policy() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "namespace", NS]);
    // A scheduled pod waits for its grace period; the orphan finalizer rides along.
    admin.stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "p", "namespace": "{NS}"}},
  "spec": {{"nodeName": "n1", "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#
        ),
    );
    admin.ok(&[
        "delete",
        "pod",
        "p",
        "-n",
        NS,
        "--cascade=orphan",
        "--wait=false",
    ]);
    let obj = admin.json(&["get", "pod", "p", "-n", NS]);
    assert_eq!(
        obj.pointer("/metadata/deletionGracePeriodSeconds"),
        Some(&Value::from(30)),
        "{obj}"
    );
    assert_eq!(finalizers(&obj), ["orphan"], "{obj}");

    // A second delete that does not shorten the grace period changes nothing, whatever its
    // policy.
    admin.ok(&[
        "delete",
        "pod",
        "p",
        "-n",
        NS,
        "--cascade=foreground",
        "--wait=false",
    ]);
    let obj = admin.json(&["get", "pod", "p", "-n", NS]);
    assert_eq!(finalizers(&obj), ["orphan"], "{obj}");

    // The kubelet's final delete (grace 0, no policy) ends the grace period; the finalizer
    // still holds the pod until the collector removes it.
    admin.ok(&[
        "delete",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/pods/p?gracePeriodSeconds=0"),
    ]);
    let obj = admin.json(&["get", "pod", "p", "-n", NS]);
    assert_eq!(finalizers(&obj), ["orphan"], "{obj}");
    admin.ok(&[
        "patch",
        "pod",
        "p",
        "-n",
        NS,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
    ]);
    assert!(
        !admin.run(&["get", "pod", "p", "-n", NS]).ok,
        "pod still there"
    );
}

/// Deleting a Service frees its cluster IP with a write outside the objects; a consistent
/// read right after must not wait for the watch cache to see a revision it never would.
#[test]
fn reads_after_a_service_deletion_answer_at_once() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "namespace", "svc"]);
    admin.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-n",
        "svc",
    ]);
    admin.ok(&["delete", "service", "web", "-n", "svc"]);
    // Before the fix the list waited 3 s for the cache and failed with 504 (retried by
    // clients); a 2 s request timeout turns that wait into a failure here.
    let out = admin.run(&[
        "get",
        "--raw",
        "/api/v1/namespaces/svc/pods",
        "--request-timeout=2s",
    ]);
    assert!(out.ok, "list after a service deletion: {}", out.stderr);
    admin.ok(&["delete", "configmaps", "--all", "-n", "svc"]);
}
