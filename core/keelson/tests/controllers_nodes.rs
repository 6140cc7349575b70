//! `keelson controller-manager`'s node lifecycle, namespace, service account and token
//! controllers, and its leader election, against a real `keelson apiserver` driven with real
//! kubectl. There is no kubelet: the tests play it, posting node status, renewing node Leases
//! and setting pod conditions.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use keelson_testsupport::{Cluster, DaemonProc, kubectl, wait_until};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn start_cm(c: &Cluster, name: &str, args: &[&str]) -> DaemonProc {
    DaemonProc::start(&bin(), &c.server, "controller-manager", name, args)
}

/// A heartbeat time `n` seconds into 2030: the controller judges heartbeats by when it sees
/// them change, so the kubelet's clock may be anything.
fn heartbeat(n: u64) -> String {
    format!(
        "2030-01-01T{:02}:{:02}:{:02}Z",
        n / 3600 % 24,
        n / 60 % 60,
        n % 60
    )
}

fn ready_status(n: u64) -> Value {
    json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "message": "kubelet is posting ready status", "lastHeartbeatTime": heartbeat(n)},
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat(n)},
    ]}})
}

fn node(name: &str) -> Value {
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    });
    n["status"]["conditions"] = ready_status(0)["status"]["conditions"].clone();
    n
}

fn lease(name: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": "2030-01-01T00:00:00.000000Z"}})
}

fn bound_pod(name: &str, node: &str, grace: i64, extra: Value) -> Value {
    let mut spec = json!({"nodeName": node, "terminationGracePeriodSeconds": grace,
        "containers": [{"name": "c", "image": "busybox"}]});
    if let Some(e) = extra.as_object() {
        for (k, v) in e {
            spec[k] = v.clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// The kubelet's part for pods: running and ready.
fn set_pod_ready(c: &Cluster, pod: &str) {
    let patch = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    c.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
}

fn condition(obj: &Value, kind: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// One node's kubelet, as far as its Lease goes.
#[derive(Default)]
struct Beat {
    /// Whether it renews the Lease.
    on: bool,
    /// When its last renewal returned.
    last: Option<Instant>,
}

/// Renews the Leases of the nodes that are on, every 300 ms, as kubelets do; the Lease's
/// renewTime only has to change. Renewals go over one HTTP client: a kubectl process per
/// renewal can take a second on a loaded machine, and the heartbeats must stay well inside the
/// grace period.
struct Kubelets {
    stop: Arc<AtomicBool>,
    nodes: Vec<(String, Arc<Mutex<Beat>>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelets {
    fn start(kubeconfig: &Path, names: &[&str]) -> Kubelets {
        let stop = Arc::new(AtomicBool::new(false));
        let nodes: Vec<(String, Arc<Mutex<Beat>>)> = names
            .iter()
            .map(|n| {
                let beat = Beat {
                    on: true,
                    last: None,
                };
                (n.to_string(), Arc::new(Mutex::new(beat)))
            })
            .collect();
        let (s, ns, kc) = (stop.clone(), nodes.clone(), kubeconfig.to_path_buf());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = rt
                .block_on(keelson_client::connect(&kc, "test-kubelets"))
                .unwrap();
            let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                for (name, beat) in &ns {
                    // Held through the renewal, so that `set` waits for one in flight.
                    let mut beat = beat.lock().unwrap();
                    if !beat.on {
                        continue;
                    }
                    n += 1;
                    let patch = json!({"spec": {"renewTime":
                        format!("2030-01-01T00:00:00.{:06}Z", n % 1_000_000)}});
                    let renewed = rt.block_on(leases.patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    ));
                    match renewed {
                        Ok(_) => beat.last = Some(Instant::now()),
                        Err(e) => eprintln!("renewing the Lease of {name}: {e}"),
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Kubelets {
            stop,
            nodes,
            thread: Some(thread),
        }
    }

    /// Starts or stops renewing `node`'s Lease. Returns once no renewal is in flight, with
    /// when the last one returned.
    fn set(&self, node: &str, on: bool) -> Option<Instant> {
        let (_, beat) = self.nodes.iter().find(|(n, _)| n == node).unwrap();
        let mut beat = beat.lock().unwrap();
        beat.on = on;
        beat.last
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The controller's node-monitor grace period in this test: many times a heartbeat round,
/// even on a loaded machine.
const GRACE: Duration = Duration::from_secs(6);
/// Its pod eviction timeout: long enough that a recovering node comes back well inside it.
const EVICTION: Duration = Duration::from_secs(8);

#[test]
fn silent_nodes_become_unknown_tainted_and_evicted_and_recover_when_heartbeats_resume() {
    let c = Cluster::start(&bin());
    let mut not_ready = node("n3");
    not_ready["status"]["conditions"][0]["status"] = json!("False");
    c.create(&[
        node("n1"),
        node("n2"),
        not_ready,
        lease("n1"),
        lease("n2"),
        lease("n3"),
    ]);
    c.create(&[
        // Grace 0: deleted at once.
        bound_pod("quick", "n1", 0, json!({})),
        // Grace 2: marked for deletion, then removed once its grace period is over (no
        // kubelet will).
        bound_pod("slow", "n1", 2, json!({})),
        // Tolerates unreachable nodes forever: stays.
        bound_pod(
            "tolerant",
            "n1",
            0,
            json!({"tolerations": [{"key": "node.kubernetes.io/unreachable",
                   "operator": "Exists", "effect": "NoExecute"}]}),
        ),
        bound_pod("other", "n2", 0, json!({})),
    ]);
    for p in ["quick", "slow", "tolerant", "other"] {
        set_pod_ready(&c, p);
    }
    let kubelets = Kubelets::start(&c.server.kubeconfig, &["n1", "n2", "n3"]);
    let grace = format!("--node-monitor-grace-period={}s", GRACE.as_secs());
    let eviction = format!("--pod-eviction-timeout={}s", EVICTION.as_secs());
    let cm = start_cm(
        &c,
        "cm",
        &[
            "--leader-elect=false",
            "--controllers=nodelifecycle",
            &grace,
            "--node-monitor-period=500ms",
            &eviction,
            "--node-eviction-rate=10",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || cm
            .log()
            .contains("caches synced")),
        "the controller manager did not start; log:\n{}",
        cm.log()
    );
    let synced = Instant::now();

    // Heartbeating through Leases only (the Ready heartbeat never changes): Ready stays, for
    // longer than the grace period.
    while synced.elapsed() < GRACE + Duration::from_secs(2) {
        let n = c.get(&["node", "n1"]);
        assert_eq!(
            condition(&n, "Ready").as_deref(),
            Some("True"),
            "a heartbeating node must stay Ready: {n}\nlog:\n{}",
            cm.log()
        );
        assert!(taint_keys(&n).is_empty(), "{n}\nlog:\n{}", cm.log());
        std::thread::sleep(Duration::from_millis(250));
    }

    // A kubelet that heartbeats but reports Ready=False: not-ready taints, its conditions
    // untouched.
    let not_ready_taints = |t: &[String]| {
        t.contains(&"node.kubernetes.io/not-ready:NoExecute".to_string())
            && t.contains(&"node.kubernetes.io/not-ready:NoSchedule".to_string())
    };
    assert!(
        wait_until(Duration::from_secs(10), || not_ready_taints(&taint_keys(
            &c.get(&["node", "n3"])
        ))),
        "a not-ready node is not tainted: {}\nlog:\n{}",
        c.get(&["node", "n3"]),
        cm.log()
    );
    let n3 = c.get(&["node", "n3"]);
    assert_eq!(condition(&n3, "Ready").as_deref(), Some("False"), "{n3}");

    // Two kubelets go silent. Durations are measured from their last renewal: the controller
    // cannot have seen a heartbeat after it.
    let last_n1 = kubelets.set("n1", false).unwrap();
    kubelets.set("n2", false);
    let unknown =
        |name: &str| condition(&c.get(&["node", name]), "Ready").as_deref() == Some("Unknown");
    assert!(
        wait_until(GRACE + Duration::from_secs(15), || unknown("n1")
            && unknown("n2")),
        "silent nodes were not marked Unknown: {}\nlog:\n{}",
        c.get(&["node", "n1"]),
        cm.log()
    );
    let took = last_n1.elapsed();
    eprintln!("n1 marked Unknown {took:?} after its last heartbeat (grace {GRACE:?})");
    // n2's kubelet comes back well before the eviction timeout: posts Ready and renews its
    // Lease.
    c.kubectl(
        &[
            "patch",
            "node",
            "n2",
            "--subresource=status",
            "--type=merge",
            "-p",
            &ready_status(100).to_string(),
        ],
        None,
    );
    kubelets.set("n2", true);
    assert!(
        took >= GRACE - Duration::from_secs(1),
        "marked Unknown {took:?} after the last heartbeat, before the {GRACE:?} grace period; log:\n{}",
        cm.log()
    );
    let n1 = c.get(&["node", "n1"]);
    let ready = n1["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "NodeStatusUnknown", "{n1}");
    assert_eq!(
        ready["message"], "Kubelet stopped posting node status.",
        "{n1}"
    );
    assert_eq!(ready["lastHeartbeatTime"], heartbeat(0), "kept: {n1}");
    assert_eq!(
        condition(&n1, "MemoryPressure").as_deref(),
        Some("Unknown"),
        "{n1}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let t = taint_keys(&c.get(&["node", "n1"]));
            t.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
                && t.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
        }),
        "no unreachable taints: {}\nlog:\n{}",
        c.get(&["node", "n1"]),
        cm.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.events("default", "n1")
                .iter()
                .any(|e| e.1 == "NodeNotReady" && e.2 == "Node n1 status is now: NodeNotReady")
        }),
        "no NodeNotReady event: {:?}\nlog:\n{}",
        c.events("default", "n1"),
        cm.log()
    );
    // The pods of the unreachable node are marked not ready (the evicted ones are checked
    // through their events below: they may be gone by now on a slow machine).
    assert!(
        wait_until(Duration::from_secs(10), || {
            condition(&c.get(&["pod", "tolerant"]), "Ready").as_deref() == Some("False")
        }),
        "a pod of the unreachable node is still Ready: {}\nlog:\n{}",
        c.get(&["pod", "tolerant"]),
        cm.log()
    );

    assert!(
        wait_until(Duration::from_secs(10), || taint_keys(
            &c.get(&["node", "n2"])
        )
        .is_empty()),
        "the taints of a node whose heartbeats resumed stay: {}\nlog:\n{}",
        c.get(&["node", "n2"]),
        cm.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            c.events("default", "n2").iter().any(|e| e.1 == "NodeReady")
        }),
        "no NodeReady event: {:?}\nlog:\n{}",
        c.events("default", "n2"),
        cm.log()
    );
    assert_eq!(
        condition(&c.get(&["node", "n2"]), "Ready").as_deref(),
        Some("True")
    );

    // n1 stays silent: its pods go after the eviction timeout, except the tolerant one.
    assert!(
        wait_until(GRACE + EVICTION + Duration::from_secs(20), || c
            .try_get(&["pod", "quick"])
            .is_none()),
        "the pods of an unreachable node were not evicted; log:\n{}",
        cm.log()
    );
    let evicted = last_n1.elapsed();
    eprintln!(
        "n1's pods evicted {evicted:?} after its last heartbeat (grace {GRACE:?} + eviction timeout {EVICTION:?})"
    );
    assert!(
        evicted >= GRACE + EVICTION - Duration::from_secs(1),
        "evicted {evicted:?} after the last heartbeat, before grace ({GRACE:?}) + eviction timeout ({EVICTION:?}); log:\n{}",
        cm.log()
    );
    // The pod with a grace period is marked first, then removed when no kubelet ends it.
    assert!(
        wait_until(Duration::from_secs(20), || c
            .try_get(&["pod", "slow"])
            .is_none()),
        "the terminating pod of an unreachable node was not removed: {:?}\nlog:\n{}",
        c.try_get(&["pod", "slow"]),
        cm.log()
    );
    assert!(
        c.events("default", "n1")
            .iter()
            .any(|e| e.1 == "DeletingAllPods" && e.2 == "Deleting all Pods from Node n1."),
        "no DeletingAllPods event: {:?}\nlog:\n{}",
        c.events("default", "n1"),
        cm.log()
    );
    assert!(
        c.events("default", "quick")
            .iter()
            .any(|e| e.1 == "TaintManagerEviction"
                && e.2 == "Marking for deletion Pod default/quick"),
        "no eviction event: {:?}\nlog:\n{}",
        c.events("default", "quick"),
        cm.log()
    );
    for pod in ["quick", "slow", "tolerant"] {
        assert!(
            c.events("default", pod)
                .iter()
                .any(|e| e.0 == "Warning" && e.1 == "NodeNotReady" && e.2 == "Node is not ready"),
            "{pod} was not marked not ready: {:?}\nlog:\n{}",
            c.events("default", pod),
            cm.log()
        );
    }
    let tolerant = c.get(&["pod", "tolerant"]);
    assert!(
        tolerant["metadata"]["deletionTimestamp"].is_null(),
        "a pod tolerating the taint forever was evicted: {tolerant}\nlog:\n{}",
        cm.log()
    );
    // The recovered node's pod: by now its eviction would have been due long ago had the
    // node not recovered.
    let other = c.try_get(&["pod", "other"]);
    assert!(
        other
            .as_ref()
            .is_some_and(|o| o["metadata"]["deletionTimestamp"].is_null()),
        "the pods of the recovered node must stay: {other:?}\nlog:\n{}",
        cm.log()
    );
    assert!(
        c.events("default", "n2")
            .iter()
            .all(|e| e.1 != "DeletingAllPods"),
        "{:?}",
        c.events("default", "n2")
    );

    // A deleted node is forgotten without trouble.
    c.kubectl(&["delete", "node", "n1"], None);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!cm.log().contains("panicked"), "{}", cm.log());
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it() {
    let c = Cluster::start(&bin());
    let cm = start_cm(
        &c,
        "cm",
        &["--leader-elect=false", "--controllers=namespace"],
    );
    c.create(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})]);
    let meta = |name: &str| json!({"name": name, "namespace": "doomed"});
    c.create(&[
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm"), "data": {"a": "b"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("s"), "stringData": {"a": "b"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("svc"),
               "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta("rc"),
               "spec": {"replicas": 1, "selector": {"app": "x"},
                        "template": {"metadata": {"labels": {"app": "x"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("pod"),
               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    ]);
    // A namespace not being deleted is left alone.
    c.create(&[
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kept"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "kept"}}),
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || cm
            .log()
            .contains("caches synced")),
        "{}",
        cm.log()
    );

    // Content with a finalizer holds the namespace until the finalizer goes.
    c.create(&[json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]}})]);
    let started = Instant::now();
    c.kubectl(&["delete", "ns", "doomed", "--wait=false"], None);
    let condition_of = |kind: &str| -> Option<Value> {
        c.try_get(&["ns", "doomed"])?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|x| x["type"] == kind)
            .cloned()
    };
    let mut held = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            held = condition_of("NamespaceFinalizersRemaining");
            held.as_ref().is_some_and(|x| x["status"] == "True")
        }),
        "no NamespaceFinalizersRemaining condition: {:?}\nlog:\n{}",
        c.try_get(&["ns", "doomed"]),
        cm.log()
    );
    assert_eq!(
        held.unwrap()["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    for kind in ["pods", "services", "secrets", "replicationcontrollers"] {
        assert!(
            wait_until(Duration::from_secs(10), || {
                c.get(&[kind, "-n", "doomed"])["items"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            }),
            "{kind} left while the namespace waits; log:\n{}",
            cm.log()
        );
    }
    assert!(
        c.try_get(&["ns", "doomed"]).is_some(),
        "went before its content"
    );
    c.kubectl(
        &[
            "patch",
            "cm",
            "held",
            "-n",
            "doomed",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    let gone = wait_until(Duration::from_secs(30), || {
        !c.try_kubectl(&["get", "ns", "doomed"], None).ok
    });
    assert!(
        gone,
        "the namespace was not deleted: {:?}\ncontroller-manager log:\n{}",
        c.try_get(&["ns", "doomed"]),
        cm.log()
    );
    eprintln!("namespace deleted in {:?}", started.elapsed());
    for kind in [
        "configmaps",
        "secrets",
        "services",
        "replicationcontrollers",
        "pods",
        "events",
    ] {
        let list = c.get(&[kind, "-n", "doomed"]);
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(0),
            "{kind} left in a deleted namespace: {list}"
        );
    }
    assert!(c.try_get(&["configmap", "cm", "-n", "kept"]).is_some());
    assert!(c.try_get(&["ns", "kept"]).is_some());
}

/// The token of `secret` in `ns`, decoded.
fn token_of(c: &Cluster, ns: &str, secret: &str) -> Option<(String, Value)> {
    let s = c.try_get(&["secret", secret, "-n", ns])?;
    let b64 = s["data"]["token"].clone();
    let token: k8s_openapi::ByteString = serde_json::from_value(b64).ok()?;
    let token = String::from_utf8(token.0).ok().filter(|t| !t.is_empty())?;
    Some((token, s))
}

/// The first Secret listed in `ns/sa`'s `secrets` that holds a token.
fn listed_token(c: &Cluster, ns: &str, sa: &str) -> Option<(String, String, Value)> {
    let sa = c.try_get(&["sa", sa, "-n", ns])?;
    sa["secrets"].as_array()?.iter().find_map(|r| {
        let name = r["name"].as_str()?;
        let (token, secret) = token_of(c, ns, name)?;
        Some((name.to_string(), token, secret))
    })
}

/// `kubectl auth whoami` with only a bearer token: no kubeconfig user.
fn whoami(c: &Cluster, token: &str) -> Result<String, String> {
    let empty = c.server.data_dir.path().join("empty-kubeconfig.yaml");
    std::fs::write(&empty, "").unwrap();
    let ca = c.server.data_dir.path().join("pki").join("ca.crt");
    let out = kubectl(
        &c.kubectl,
        &empty,
        &[
            "--server",
            &c.server.url,
            "--certificate-authority",
            ca.to_str().unwrap(),
            "--token",
            token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    if out.ok {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(out.stderr)
    }
}

#[test]
fn namespaces_get_a_default_account_whose_token_authenticates_until_its_secret_goes() {
    let c = Cluster::start(&bin());
    let cm = start_cm(
        &c,
        "cm",
        &[
            "--leader-elect=false",
            "--controllers=serviceaccount,serviceaccount-token",
        ],
    );
    c.create(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})]);
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            found = listed_token(&c, "team", "default");
            found.is_some()
        }),
        "no default service account with a token: {:?}\nlog:\n{}",
        c.try_get(&["sa", "-n", "team"]),
        cm.log()
    );
    let (secret_name, token, secret) = found.unwrap();
    let sa = c.get(&["sa", "default", "-n", "team"]);
    assert!(secret_name.starts_with("default-token-"), "{secret_name}");
    let suffix = &secret_name["default-token-".len()..];
    assert_eq!(suffix.len(), 5, "{secret_name}");
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    let ann = &secret["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/service-account.name"], "default");
    assert_eq!(
        ann["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    let data = |k: &str| -> Vec<u8> {
        serde_json::from_value::<k8s_openapi::ByteString>(secret["data"][k].clone())
            .map(|b| b.0)
            .unwrap_or_default()
    };
    assert_eq!(data("namespace"), b"team");
    let ca = std::fs::read(c.server.data_dir.path().join("pki").join("ca.crt")).unwrap();
    assert_eq!(data("ca.crt"), ca);

    let mut who = Err(String::new());
    assert!(
        wait_until(Duration::from_secs(10), || {
            who = whoami(&c, &token);
            who.is_ok()
        }),
        "the token does not authenticate: {who:?}"
    );
    assert_eq!(who.unwrap(), "system:serviceaccount:team:default");

    // The Secret goes: so does the token's validity, and a new Secret takes its place.
    c.kubectl(&["delete", "secret", &secret_name, "-n", "team"], None);
    assert!(
        wait_until(Duration::from_secs(10), || whoami(&c, &token).is_err()),
        "a token whose Secret is deleted still authenticates"
    );
    let mut next = None;
    assert!(
        wait_until(Duration::from_secs(15), || {
            next = listed_token(&c, "team", "default").filter(|(n, _, _)| *n != secret_name);
            next.is_some()
        }),
        "no new token Secret: {:?}\nlog:\n{}",
        c.try_get(&["sa", "default", "-n", "team"]),
        cm.log()
    );
    let (next_name, next_token, _) = next.unwrap();
    let refs = c.get(&["sa", "default", "-n", "team"])["secrets"].clone();
    assert_eq!(
        refs,
        json!([{"name": next_name}]),
        "the deleted Secret is no longer listed"
    );
    assert!(
        wait_until(Duration::from_secs(10), || whoami(&c, &next_token).is_ok()),
        "the new token does not authenticate: {:?}",
        whoami(&c, &next_token)
    );

    // A token Secret a user creates with just the annotation is filled in.
    c.create(&[
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "mine", "namespace": "team",
                     "annotations": {"kubernetes.io/service-account.name": "default"}}}),
    ]);
    let mut mine = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            mine = token_of(&c, "team", "mine");
            mine.is_some()
        }),
        "a user's token Secret was not filled in: {:?}\nlog:\n{}",
        c.try_get(&["secret", "mine", "-n", "team"]),
        cm.log()
    );
    let (mine_token, mine_secret) = mine.unwrap();
    assert_eq!(
        mine_secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    assert!(wait_until(Duration::from_secs(10), || whoami(
        &c,
        &mine_token
    )
    .is_ok()));

    // The account is deleted: it comes back (a new uid) and the old tokens go.
    c.kubectl(&["delete", "sa", "default", "-n", "team"], None);
    assert!(
        wait_until(Duration::from_secs(15), || {
            c.try_get(&["sa", "default", "-n", "team"])
                .is_some_and(|s| s["metadata"]["uid"] != sa["metadata"]["uid"])
        }),
        "the default service account was not re-created; log:\n{}",
        cm.log()
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            c.try_get(&["secret", &next_name, "-n", "team"]).is_none()
                && c.try_get(&["secret", "mine", "-n", "team"]).is_none()
        }),
        "tokens of the deleted account remain; log:\n{}",
        cm.log()
    );
    assert!(
        wait_until(Duration::from_secs(15), || listed_token(
            &c, "team", "default"
        )
        .is_some()),
        "the re-created account got no token; log:\n{}",
        cm.log()
    );
}

fn lease_holder(c: &Cluster) -> Option<String> {
    let out = c.try_kubectl(
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        None,
    );
    Some(out.stdout.trim().to_string()).filter(|s| out.ok && !s.is_empty())
}

/// Whether `d` runs its controllers now, by its log: the last start is after the last stop.
/// (Leadership changes are logged before a standby may take over: a leader stands down at the
/// renew deadline, a standby takes the Lease only once it has expired, later.)
fn leading(d: &DaemonProc) -> bool {
    let log = d.log();
    let started = log.rfind("leading: starting controllers");
    let stopped = log.rfind("lost the leader lease: stopping controllers");
    started.is_some_and(|s| stopped.is_none_or(|l| s > l))
}

#[test]
fn only_the_leader_acts_and_a_standby_takes_over() {
    let c = Cluster::start(&bin());
    // A renew deadline well over what one renewal takes on a loaded machine, and a Lease
    // that outlasts it: a leader that cannot renew stands down before anyone may take over.
    const LEASE: Duration = Duration::from_secs(6);
    let args = [
        "--controllers=serviceaccount",
        "--leader-elect-lease-duration=6s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=1s",
    ];
    let mut a = start_cm(&c, "cm-a", &args);
    let mut b = start_cm(&c, "cm-b", &args);
    let logs = |a: &DaemonProc, b: &DaemonProc| format!("cm-a:\n{}\ncm-b:\n{}", a.log(), b.log());
    let at_most_one = |a: &DaemonProc, b: &DaemonProc| {
        assert!(
            !(leading(a) && leading(b)),
            "both controller managers lead at once; {}",
            logs(a, b)
        );
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            at_most_one(&a, &b);
            lease_holder(&c).is_some() && (leading(&a) || leading(&b))
        }),
        "nobody leads; {}",
        logs(&a, &b)
    );
    // Give the standby time to (wrongly) start too, then make the leader act.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        at_most_one(&a, &b);
        std::thread::sleep(Duration::from_millis(100));
    }
    c.create(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "first"}})]);
    assert!(
        wait_until(Duration::from_secs(15), || {
            at_most_one(&a, &b);
            c.try_get(&["sa", "default", "-n", "first"]).is_some()
        }),
        "the leader did not create the default account; {}",
        logs(&a, &b)
    );
    at_most_one(&a, &b);
    let (leader, standby) = if leading(&a) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(leading(leader), "nobody leads; {}", logs(leader, standby));
    let holder = lease_holder(&c).unwrap();

    leader.terminate();
    let switched = Instant::now();
    assert!(
        wait_until(LEASE + Duration::from_secs(15), || leading(standby)),
        "the standby did not take over; standby log:\n{}",
        standby.log()
    );
    let took = switched.elapsed();
    eprintln!("the standby took over {took:?} after the leader was terminated");
    assert!(
        wait_until(Duration::from_secs(5), || lease_holder(&c)
            .is_some_and(|h| h != holder)),
        "the Lease still names {holder}; standby log:\n{}",
        standby.log()
    );
    c.create(&[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "second"}})]);
    assert!(
        wait_until(Duration::from_secs(15), || c
            .try_get(&["sa", "default", "-n", "second"])
            .is_some()),
        "the new leader did not create the default account; standby log:\n{}",
        standby.log()
    );
    // The leader released the Lease on its way out; at worst the standby waits it out.
    assert!(
        took < LEASE + Duration::from_secs(6),
        "takeover took {took:?}; standby log:\n{}",
        standby.log()
    );
}

/// A node that vanishes for good (its Node object deleted): the pods bound to it have no
/// kubelet left to end them; the pod GC deletes them after the quarantine and their
/// replication controller replaces them. Pods on other nodes are untouched.
#[test]
fn pods_bound_to_a_deleted_node_are_collected_and_replaced() {
    let c = Cluster::start(&bin());
    c.create(&[node("vm"), node("stay")]);
    c.create(&[
        bound_pod("kept", "stay", 30, json!({})),
        json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"app": "web"}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"nodeName": "vm", "containers": [{"name": "c", "image": "busybox"}]}}}}),
    ]);
    let cm = start_cm(
        &c,
        "cm",
        &[
            "--leader-elect=false",
            "--controllers=podgc,replicationcontroller",
            "--node-monitor-grace-period=2s",
        ],
    );
    let web_pods = || -> Vec<String> {
        c.get(&["pods", "-l", "app=web"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut first = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            first = web_pods();
            first.len() == 1
        }),
        "the RC made no pod; log:\n{}",
        cm.log()
    );
    let deleted_at = Instant::now();
    c.kubectl(&["delete", "node", "vm"], None);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            now = web_pods();
            now.len() == 1 && now != first
        }),
        "pod {first:?} on the deleted node was not replaced (now {now:?}); log:\n{}",
        cm.log()
    );
    // Not before the quarantine: a node that re-registers quickly keeps its pods.
    assert!(
        deleted_at.elapsed() >= Duration::from_secs(2),
        "collected after {:?}, inside the 2 s quarantine",
        deleted_at.elapsed()
    );
    assert!(
        c.try_get(&["pod", "kept"]).is_some(),
        "a pod on a live node was collected; log:\n{}",
        cm.log()
    );
    assert!(
        cm.log().contains("bound to a node that no longer exists"),
        "{}",
        cm.log()
    );
}
