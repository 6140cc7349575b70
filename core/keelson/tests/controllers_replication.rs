//! `keelson controller-manager`'s replication controller and garbage collector against a real
//! `keelson apiserver`, driven with real kubectl: the guestbook's ReplicationControllers,
//! scaling through the scale subresource, the order surplus pods go in, replacement,
//! readiness and availability, adoption and release, and cascading deletion (background,
//! orphan, foreground). There is no kubelet: the tests bind pods and post their status.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use keelson_testsupport::{Cluster, DaemonProc, repo_root, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// An API server and a controller manager running only the two controllers under test.
fn start() -> (Cluster, DaemonProc) {
    let c = Cluster::start(&bin());
    let cm = DaemonProc::start(
        &bin(),
        &c.server,
        "controller-manager",
        "cm",
        &[
            "--leader-elect=false",
            "--controllers=replicationcontroller,garbagecollector",
        ],
    );
    (c, cm)
}

/// A ReplicationController in `default` selecting `app=<name>`.
fn rc(name: &str, replicas: i64, min_ready: i64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"app": name},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    })
}

fn all_pods(c: &Cluster) -> Vec<Value> {
    c.get(&["pods", "-n", "default"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
        .map(str::to_string)
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The active pods (not being deleted) the RC controls.
fn pods_of(c: &Cluster, rc_name: &str) -> Vec<Value> {
    let Some(rc) = c.try_get(&["rc", rc_name, "-n", "default"]) else {
        return Vec::new();
    };
    let uid = rc["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    all_pods(c)
        .into_iter()
        .filter(|p| controller_uid(p).as_deref() == Some(uid.as_str()))
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(name).collect();
    n.sort();
    n
}

/// Waits until the RC controls exactly `n` active pods; returns them.
fn wait_for_pods(c: &Cluster, cm: &DaemonProc, rc_name: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(WAIT, || {
        last = pods_of(c, rc_name);
        last.len() == n
    });
    assert!(
        ok,
        "{rc_name} should have {n} pods, has {:?}\ncontroller-manager log:\n{}",
        names(&last),
        cm.log()
    );
    last
}

/// Waits until the RC's `status` satisfies `check`.
fn wait_for_status(
    c: &Cluster,
    cm: &DaemonProc,
    rc_name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = c.get(&["rc", rc_name, "-n", "default"]);
        check(&last)
    });
    assert!(
        ok,
        "{rc_name}: {what}; last seen:\n{last:#}\ncontroller-manager log:\n{}",
        cm.log()
    );
    last
}

/// Plays the scheduler: binds the pod to `node`.
fn bind(c: &Cluster, pod: &str, node: &str) {
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod, "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    c.kubectl(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/binding"),
            "-f",
            "-",
        ],
        Some(&binding.to_string()),
    );
}

/// Plays the kubelet: reports the pod in `phase`, Ready since `ready_since` or not ready.
fn set_status(c: &Cluster, pod: &str, phase: &str, ready_since: Option<&str>) {
    let ready = match ready_since {
        Some(t) => json!({"type": "Ready", "status": "True", "lastTransitionTime": t}),
        None => json!({"type": "Ready", "status": "False"}),
    };
    let status = json!({"status": {"phase": phase, "conditions": [ready]}});
    c.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "-n",
            "default",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
}

fn now_rfc3339() -> String {
    use k8s_openapi::jiff;
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

#[test]
fn guestbook_controllers_create_scale_order_and_replace_pods() {
    let (c, cm) = start();
    let guestbook = repo_root().join("examples/guestbook");
    for f in ["redis-master-controller.yaml", "frontend-controller.yaml"] {
        c.kubectl(&["create", "-f", guestbook.join(f).to_str().unwrap()], None);
    }

    let masters = wait_for_pods(&c, &cm, "redis-master", 1);
    let frontends = wait_for_pods(&c, &cm, "frontend", 3);
    let rc = c.get(&["rc", "frontend"]);
    let uid = rc["metadata"]["uid"].as_str().unwrap();
    for p in &frontends {
        let n = name(p);
        assert!(
            n.starts_with("frontend-") && n.len() == "frontend-".len() + 5,
            "pod name {n}"
        );
        assert_eq!(p["metadata"]["generateName"], "frontend-");
        assert_eq!(p["metadata"]["labels"]["name"], "frontend");
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!(r["kind"], "ReplicationController", "{p:#}");
        assert_eq!(r["name"], "frontend");
        assert_eq!(r["uid"], uid);
        assert_eq!(r["controller"], true);
        assert_eq!(r["blockOwnerDeletion"], true);
        assert_eq!(
            p["spec"]["containers"][0]["image"],
            "kubeguide/guestbook-php-frontend"
        );
    }
    assert!(name(&masters[0]).starts_with("redis-master-"));
    let rc = wait_for_status(&c, &cm, "frontend", "status.replicas 3", |rc| {
        rc["status"]["replicas"] == 3 && rc["status"]["fullyLabeledReplicas"] == 3
    });
    assert_eq!(
        rc["status"]["observedGeneration"],
        rc["metadata"]["generation"]
    );
    assert_eq!(rc["status"]["readyReplicas"].as_i64().unwrap_or(0), 0);

    // One SuccessfulCreate per pod and no more: nothing was created twice.
    let created = |c: &Cluster| {
        let mut v: Vec<String> = c
            .events("default", "frontend")
            .into_iter()
            .filter(|e| e.1 == "SuccessfulCreate")
            .map(|e| e.2)
            .collect();
        v.sort();
        v
    };
    let want: Vec<String> = names(&frontends)
        .iter()
        .map(|n| format!("Created pod: {n}"))
        .collect();
    let mut seen = Vec::new();
    let ok = wait_until(WAIT, || {
        seen = created(&c);
        seen.len() >= 3
    });
    assert!(
        ok && seen == want,
        "events {seen:?}, want {want:?}\n{}",
        cm.log()
    );

    // Scale up through the scale subresource.
    c.kubectl(&["scale", "rc", "frontend", "--replicas=5"], None);
    let five = wait_for_pods(&c, &cm, "frontend", 5);
    let rc = wait_for_status(
        &c,
        &cm,
        "frontend",
        "status follows the new generation",
        |rc| {
            rc["status"]["replicas"] == 5
                && rc["status"]["observedGeneration"] == rc["metadata"]["generation"]
        },
    );
    assert!(
        rc["metadata"]["generation"].as_i64().unwrap() >= 2,
        "{rc:#}"
    );

    // Pods in every state Kubernetes' order tells apart: scaling down to two keeps the
    // two Running and Ready ones, then to one keeps the one ready for longer.
    let p: Vec<String> = five.iter().map(name).collect();
    // p[0] stays unscheduled and Pending.
    bind(&c, &p[1], "node-1"); // scheduled, Pending
    bind(&c, &p[2], "node-1");
    set_status(&c, &p[2], "Running", None); // Running, not ready
    bind(&c, &p[3], "node-1");
    set_status(&c, &p[3], "Running", Some(&now_rfc3339())); // ready just now
    bind(&c, &p[4], "node-1");
    set_status(&c, &p[4], "Running", Some("2020-01-01T00:00:00Z")); // ready for years
    wait_for_status(&c, &cm, "frontend", "readyReplicas 2", |rc| {
        rc["status"]["readyReplicas"] == 2 && rc["status"]["availableReplicas"] == 2
    });
    c.kubectl(&["scale", "rc", "frontend", "--replicas=2"], None);
    let two = wait_for_pods(&c, &cm, "frontend", 2);
    assert_eq!(
        names(&two),
        names(&five[3..]),
        "the ready pods should survive\n{}",
        cm.log()
    );
    c.kubectl(&["scale", "rc", "frontend", "--replicas=1"], None);
    let one = wait_for_pods(&c, &cm, "frontend", 1);
    assert_eq!(
        name(&one[0]),
        p[4],
        "the pod ready for longer should survive\n{}",
        cm.log()
    );
    let deleted = wait_until(WAIT, || {
        c.events("default", "frontend")
            .iter()
            .filter(|e| e.1 == "SuccessfulDelete" && e.2.starts_with("Deleted pod: frontend-"))
            .count()
            == 4
    });
    assert!(
        deleted,
        "four SuccessfulDelete events\n{:?}\n{}",
        c.events("default", "frontend"),
        cm.log()
    );

    // A deleted pod is replaced by a new one.
    let old = name(&masters[0]);
    c.kubectl(&["delete", "pod", &old, "--wait=false"], None);
    let mut now = Vec::new();
    let ok = wait_until(WAIT, || {
        now = pods_of(&c, "redis-master");
        now.len() == 1 && name(&now[0]) != old
    });
    assert!(
        ok,
        "redis-master pod {old} not replaced: {:?}\n{}",
        names(&now),
        cm.log()
    );
}

#[test]
fn ready_and_available_replicas_follow_pod_conditions() {
    let (c, cm) = start();
    c.create(&[rc("web", 2, 3)]);
    let pods = wait_for_pods(&c, &cm, "web", 2);

    // Ready just now: ready at once, available only after minReadySeconds (3 s), with no
    // other event to wake the controller.
    set_status(&c, &name(&pods[0]), "Running", Some(&now_rfc3339()));
    let rc = wait_for_status(&c, &cm, "web", "readyReplicas 1", |rc| {
        rc["status"]["readyReplicas"] == 1
    });
    assert_eq!(
        rc["status"]["availableReplicas"].as_i64().unwrap_or(0),
        0,
        "not available before minReadySeconds\n{}",
        cm.log()
    );
    wait_for_status(
        &c,
        &cm,
        "web",
        "availableReplicas 1 after minReadySeconds",
        |rc| rc["status"]["availableReplicas"] == 1,
    );

    // Ready long ago: available at once.
    set_status(&c, &name(&pods[1]), "Running", Some("2020-01-01T00:00:00Z"));
    wait_for_status(
        &c,
        &cm,
        "web",
        "readyReplicas and availableReplicas 2",
        |rc| rc["status"]["readyReplicas"] == 2 && rc["status"]["availableReplicas"] == 2,
    );

    // Not ready any more.
    set_status(&c, &name(&pods[1]), "Running", None);
    wait_for_status(&c, &cm, "web", "readyReplicas back to 1", |rc| {
        rc["status"]["readyReplicas"] == 1 && rc["status"]["availableReplicas"] == 1
    });
}

#[test]
fn orphans_are_adopted_and_relabelled_pods_released() {
    let (c, cm) = start();
    let orphan = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    c.create(&[orphan]);
    c.create(&[rc("adopt", 2, 0)]);
    let pods = wait_for_pods(&c, &cm, "adopt", 2);
    assert!(
        names(&pods).contains(&"stray".to_string()),
        "the orphan should be adopted: {:?}\n{}",
        names(&pods),
        cm.log()
    );
    let stray = c.get(&["pod", "stray"]);
    let r = &stray["metadata"]["ownerReferences"][0];
    assert_eq!(r["kind"], "ReplicationController");
    assert_eq!(r["blockOwnerDeletion"], true);
    // Only one pod was created for the two replicas.
    let creates = c
        .events("default", "adopt")
        .into_iter()
        .filter(|e| e.1 == "SuccessfulCreate")
        .count();
    assert!(creates <= 1, "{:?}", c.events("default", "adopt"));

    // Relabelled away: released (no owner any more) and replaced.
    c.kubectl(
        &["label", "pod", "stray", "app=elsewhere", "--overwrite"],
        None,
    );
    let pods = wait_for_pods(&c, &cm, "adopt", 2);
    assert!(
        !names(&pods).contains(&"stray".to_string()),
        "{:?}",
        names(&pods)
    );
    let released = wait_until(WAIT, || {
        c.get(&["pod", "stray"])["metadata"]["ownerReferences"].is_null()
    });
    assert!(released, "{:#}\n{}", c.get(&["pod", "stray"]), cm.log());
}

#[test]
fn deleting_an_rc_cascades_in_the_background_and_foreground() {
    let (c, cm) = start();
    c.create(&[rc("bg", 3, 0), rc("fg", 2, 0)]);
    let bg = wait_for_pods(&c, &cm, "bg", 3);
    let fg = wait_for_pods(&c, &cm, "fg", 2);

    c.kubectl(&["delete", "rc", "bg", "--wait=false"], None);
    let gone = |c: &Cluster, pods: &[Value]| {
        let left = names(&all_pods(c));
        pods.iter().all(|p| !left.contains(&name(p)))
    };
    assert!(
        wait_until(WAIT, || gone(&c, &bg)),
        "bg's pods should be collected: {:?}\n{}",
        names(&all_pods(&c)),
        cm.log()
    );

    c.kubectl(
        &["delete", "rc", "fg", "--cascade=foreground", "--wait=false"],
        None,
    );
    let ok = wait_until(WAIT, || gone(&c, &fg) && c.try_get(&["rc", "fg"]).is_none());
    assert!(
        ok,
        "fg and its pods should be gone: pods {:?}, rc {:?}\n{}",
        names(&all_pods(&c)),
        c.try_get(&["rc", "fg"]),
        cm.log()
    );
}

#[test]
fn deleting_an_rc_with_orphan_cascade_keeps_its_pods() {
    let (c, cm) = start();
    c.create(&[rc("keep", 2, 0)]);
    let pods = wait_for_pods(&c, &cm, "keep", 2);
    c.kubectl(
        &["delete", "rc", "keep", "--cascade=orphan", "--wait=false"],
        None,
    );
    let ok = wait_until(WAIT, || c.try_get(&["rc", "keep"]).is_none());
    assert!(
        ok,
        "the RC should be deleted: {:?}\n{}",
        c.try_get(&["rc", "keep"]),
        cm.log()
    );
    let mut left = Vec::new();
    let ok = wait_until(WAIT, || {
        left = all_pods(&c);
        pods.iter().all(|p| {
            left.iter()
                .any(|l| name(l) == name(p) && l["metadata"]["ownerReferences"].is_null())
        })
    });
    assert!(
        ok,
        "the pods should remain without owner references: {:#}\n{}",
        json!(left),
        cm.log()
    );
}

fn owned_pod(name: &str, owners: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "ownerReferences": owners},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

#[test]
fn dependents_of_owners_that_are_gone_are_collected() {
    let (c, cm) = start();
    c.create(&[json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "owner", "namespace": "default"},
    })]);
    let cm_uid = c.get(&["configmap", "owner"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let r = |api: &str, kind: &str, name: &str, uid: &str| json!({"apiVersion": api, "kind": kind, "name": name, "uid": uid});
    c.create(&[
        // Owned by an RC that never existed: collected.
        owned_pod(
            "ghost-rc",
            json!([r("v1", "ReplicationController", "ghost", "0000")]),
        ),
        // Owned by a ConfigMap (outside the caches) that is gone: collected.
        owned_pod("ghost-cm", json!([r("v1", "ConfigMap", "gone", "1111")])),
        // Owned by a ConfigMap that exists: kept.
        owned_pod("live-cm", json!([r("v1", "ConfigMap", "owner", &cm_uid)])),
        // One owner alive, one gone: only the reference to the gone one goes.
        owned_pod(
            "half",
            json!([
                r("v1", "ConfigMap", "owner", &cm_uid),
                r("v1", "ReplicationController", "ghost", "2222"),
            ]),
        ),
        // Owned by a Lease (served, not cached: found through discovery) that is gone.
        owned_pod(
            "ghost-lease",
            json!([r("coordination.k8s.io/v1", "Lease", "gone", "4444")]),
        ),
        // A kind nobody serves: nothing can be concluded, the pod stays.
        owned_pod(
            "unknown",
            json!([r("example.com/v1", "Widget", "w", "3333")]),
        ),
    ]);
    let mut left = Vec::new();
    let ok = wait_until(WAIT, || {
        left = names(&all_pods(&c));
        let half = c.get(&["pod", "half"]);
        !left.contains(&"ghost-rc".to_string())
            && !left.contains(&"ghost-cm".to_string())
            && !left.contains(&"ghost-lease".to_string())
            && half["metadata"]["ownerReferences"].as_array().map(Vec::len) == Some(1)
    });
    assert!(
        ok,
        "pods left {left:?}, half: {:#}\n{}",
        c.get(&["pod", "half"])["metadata"],
        cm.log()
    );
    assert_eq!(
        c.get(&["pod", "half"])["metadata"]["ownerReferences"][0]["uid"],
        cm_uid.as_str()
    );
    assert_eq!(left, ["half", "live-cm", "unknown"], "{}", cm.log());

    // The ConfigMap goes (in the background): its dependents follow.
    c.kubectl(&["delete", "configmap", "owner"], None);
    let ok = wait_until(WAIT, || {
        left = names(&all_pods(&c));
        left == ["unknown"]
    });
    assert!(ok, "pods left {left:?}\n{}", cm.log());

    // Orphaning works for any cached kind, not only ReplicationControllers.
    c.create(&[json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "keeper", "namespace": "default"},
    })]);
    let uid = c.get(&["secret", "keeper"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    c.create(&[owned_pod(
        "orphaned",
        json!([{"apiVersion": "v1", "kind": "Secret", "name": "keeper", "uid": uid,
                "blockOwnerDeletion": true}]),
    )]);
    c.kubectl(&["delete", "secret", "keeper", "--cascade=orphan"], None);
    let ok = wait_until(WAIT, || {
        c.try_get(&["secret", "keeper"]).is_none()
            && c.try_get(&["pod", "orphaned"])
                .is_some_and(|p| p["metadata"]["ownerReferences"].is_null())
    });
    assert!(
        ok,
        "secret {:?}, pod {:?}\n{}",
        c.try_get(&["secret", "keeper"]),
        c.try_get(&["pod", "orphaned"]),
        cm.log()
    );
}
