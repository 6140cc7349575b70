//! Pod networking of `keelson kubelet` with the built-in `bridge` backend, on a real API
//! server, a private containerd and the node's kernel: pods get distinct IPs of the node's pod
//! CIDR, are reachable from the node and from each other, keep their IPs across a kubelet
//! restart, lose their host veth when deleted, and the CIDR is masqueraded while the kubelet
//! runs. Needs root. The bridge, CIDR and node are unique to the run and removed on drop.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keelson_kubelet::network::nft;
use keelson_kubelet::runtime::{Kind, SandboxId};
use keelson_testsupport::{KubeletNode, tail, wait_until};
use serde_json::Value;

const NODE: &str = "kn-worker-1";
const NODE_IP: &str = "10.11.12.14";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A random-enough number for names that must not collide with other runs.
fn rand_u32() -> u32 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    n ^ std::process::id().wrapping_mul(2654435761)
}

/// Removes the bridge and the masquerade rule the kubelet made, after the node is gone.
struct NetGuard {
    bridge: String,
    cidr: ipnet::IpNet,
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = nft::clear_masquerade(self.cidr);
    }
}

struct Fixture {
    // Dropped first: the kubelet and containerd stop before the guard cleans up.
    node: KubeletNode,
    net: NetGuard,
}

impl std::ops::Deref for Fixture {
    type Target = KubeletNode;
    fn deref(&self) -> &KubeletNode {
        &self.node
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut KubeletNode {
        &mut self.node
    }
}

impl Fixture {
    fn start() -> Self {
        Self::start_on(NODE, NODE_IP, true)
    }

    /// A node with a fresh CIDR and bridge; the kubelet gets the CIDR with `--pod-cidr` when
    /// `flag`, else the test sets it on the Node.
    fn start_on(node: &str, node_ip: &str, flag: bool) -> Self {
        let r = rand_u32();
        // 10.[100..199].[1..250].0/24, away from the fixture's node IPs.
        let cidr: ipnet::IpNet = format!("10.{}.{}.0/24", 100 + r % 100, 1 + (r / 100) % 250)
            .parse()
            .unwrap();
        let bridge = format!("kt{:05}", r % 100_000);
        let config = format!("{{\"bridge\":\"{bridge}\"}}");
        let cidr_text = cidr.to_string();
        let net = NetGuard { bridge, cidr };
        let mut args = vec![
            "--network-plugin",
            "bridge",
            "--network-plugin-config",
            &config,
        ];
        if flag {
            args.extend(["--pod-cidr", &cidr_text]);
        }
        let node = KubeletNode::start(&bin(), node, node_ip, &args);
        Fixture { node, net }
    }

    /// The pod's IP once it runs.
    fn running_ip(&self, name: &str) -> IpAddr {
        let p = self.wait_pod(name, "running with a podIP", 120, |p| {
            p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
        });
        let ip: IpAddr = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            p["status"]["podIPs"][0]["ip"].as_str(),
            Some(ip.to_string().as_str()),
            "{p:#}"
        );
        assert!(
            self.net.cidr.contains(&ip),
            "pod {name}: {ip} is not in {}",
            self.net.cidr
        );
        ip
    }

    /// The host ends of veths on the test's bridge.
    fn bridge_ports(&self) -> Vec<String> {
        sh("ip", &["-o", "link", "show", "master", &self.net.bridge])
            .lines()
            // `N: name@peer: ...`; an error (no bridge yet) has no such lines.
            .filter(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// Removes pod `name`'s sandbox behind the kubelet's back; returns its id.
    fn remove_sandbox_of(&self, name: &str) -> String {
        let (rt, runtime) = common::node_runtime(&self.node);
        rt.block_on(async {
            let all = runtime.list_pod_containers().await.unwrap();
            let sandbox = all
                .iter()
                .find(|c| c.pod_name == name && c.kind == Kind::Sandbox)
                .unwrap_or_else(|| panic!("no sandbox of {name}: {all:?}"));
            let id = SandboxId(sandbox.id.clone());
            runtime.remove_sandbox(&id, Duration::ZERO).await.unwrap();
            sandbox.id.clone()
        })
    }

    fn nft_table(&self) -> String {
        sh("nft", &["list", "table", "ip", nft::TABLE])
    }

    fn context(&self) -> String {
        format!(
            "bridge ports: {:?}\nkubelet log:\n{}",
            self.bridge_ports(),
            tail(&self.log(), 60)
        )
    }
}

/// A busybox pod serving `text` over HTTP on port 8080, then running `then`.
fn web_pod(name: &str, text: &str, then: &str) -> Value {
    let script = format!(
        "mkdir -p /www && echo {text} > /www/index.html && httpd -p 8080 -h /www && {then}"
    );
    let mut pod = keelson_testsupport::script_pod(NODE, name, "busybox", "Always", &script);
    // The image is imported; `latest` would otherwise be pulled.
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    pod
}

/// GETs `/` from `ip:8080` from the node, retrying for a while; the body, or the last error.
fn http_get(ip: IpAddr) -> Result<String, String> {
    let addr = SocketAddr::new(ip, 8080);
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) => {
                last = body;
                true
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    if ok { Ok(last) } else { Err(last) }
}

fn log_file(root: &Path, p: &Value) -> PathBuf {
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let name = p["metadata"]["name"].as_str().unwrap();
    root.join("logs")
        .join(format!("default_{name}_{uid}"))
        .join("app.log")
}

#[test]
fn pods_get_reachable_ips_that_survive_a_kubelet_restart() {
    let mut f = Fixture::start();
    f.cluster
        .create(&[web_pod("web1", "hello-from-web1", "sleep 3600")]);
    let ip1 = f.running_ip("web1");

    // The node reaches the pod.
    let body = http_get(ip1).unwrap_or_else(|e| panic!("GET {ip1}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-web1"), "{body}");

    // A second pod gets another address and reaches the first.
    let fetch = format!(
        "until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip1} 8080 | grep hello-from-web1; \
         do sleep 1; done; echo fetched-web1; sleep 3600"
    );
    f.cluster
        .create(&[web_pod("web2", "hello-from-web2", &fetch)]);
    let ip2 = f.running_ip("web2");
    assert_ne!(ip1, ip2);
    let web2 = f.pod("web2").unwrap();
    let log = log_file(f.root.path(), &web2);
    let fetched = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("fetched-web1"))
    });
    assert!(
        fetched,
        "web2 did not fetch from web1: {:?}\n{}",
        std::fs::read_to_string(&log),
        f.context()
    );
    let l = std::fs::read_to_string(&log).unwrap();
    assert!(l.contains("hello-from-web1"), "{l}");
    let body = http_get(ip2).unwrap_or_else(|e| panic!("GET {ip2}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-web2"), "{body}");

    // The pod CIDR is masqueraded in Keelson's table while the kubelet runs.
    let table = f.nft_table();
    let saddr = format!("ip saddr {}", f.net.cidr);
    assert!(
        table.contains(&saddr) && table.contains("masquerade"),
        "{table}\n{}",
        f.context()
    );
    assert_eq!(f.bridge_ports().len(), 2, "{}", f.context());
    let records = f.root.path().join("network");
    let count = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(count(&records), 2, "{}", f.context());

    // A restarted kubelet keeps the pods and their addresses; a new pod gets a fresh one.
    f.start_kubelet("kubelet-2");
    let ready = wait_until(Duration::from_secs(30), || {
        f.log().contains("pod network ready")
    });
    assert!(ready, "{}", f.context());
    f.cluster
        .create(&[web_pod("web3", "hello-from-web3", "sleep 3600")]);
    let ip3 = f.running_ip("web3");
    assert!(ip3 != ip1 && ip3 != ip2, "{ip3} reused\n{}", f.context());
    for (name, ip) in [("web1", ip1), ("web2", ip2)] {
        let p = f.pod(name).unwrap();
        assert_eq!(p["status"]["podIP"].as_str(), Some(ip.to_string().as_str()));
        assert_eq!(
            p["status"]["containerStatuses"][0]["restartCount"], 0,
            "{p:#}"
        );
    }
    let body = http_get(ip1).unwrap_or_else(|e| panic!("GET {ip1}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-web1"), "{body}");
    let body = http_get(ip3).unwrap_or_else(|e| panic!("GET {ip3}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-web3"), "{body}");
    assert!(f.nft_table().contains(&saddr), "{}", f.context());

    // Deleting a pod removes its host veth and its record.
    assert_eq!(f.bridge_ports().len(), 3, "{}", f.context());
    f.cluster
        .kubectl(&["delete", "pod", "web1", "--wait=false"], None);
    let gone = wait_until(Duration::from_secs(30), || {
        f.pod("web1").is_none() && f.bridge_ports().len() == 2
    });
    assert!(gone, "web1's veth is still there\n{}", f.context());
    assert_eq!(count(&records), 2, "{}", f.context());
    assert!(http_get(ip2).is_ok(), "{}", f.context());

    // Sandboxes removed while the kubelet is down. web2 is gone for good: at start its
    // record is detached (its host veth goes) and forgotten. web3's sandbox is recreated
    // under the same id, in a new namespace, which is attached afresh.
    drop(f.kubelet.take());
    let web2_sandbox = f.remove_sandbox_of("web2");
    f.cluster.kubectl(
        &["delete", "pod", "web2", "--grace-period=0", "--force"],
        None,
    );
    f.remove_sandbox_of("web3");
    f.start_kubelet("kubelet-3");
    let detached = wait_until(Duration::from_secs(30), || {
        f.log().contains(&format!(
            "detached the network of a sandbox that is gone sandbox={web2_sandbox}"
        ))
    });
    assert!(detached, "{}", f.context());
    // The address web3's new sandbox got, as the kubelet logged it, becomes its podIP.
    let attached = |log: &str| -> Option<String> {
        let line = log
            .lines()
            .find(|l| l.contains("pod network attached") && l.contains("pod=default/web3"))?;
        let rest = line.split("addresses=[\"").nth(1)?;
        Some(rest.split('/').next()?.to_string())
    };
    let reattached = wait_until(Duration::from_secs(60), || attached(&f.log()).is_some());
    assert!(reattached, "{}", f.context());
    let ip3b = attached(&f.log()).unwrap();
    f.wait_pod("web3", "the new podIP", 30, |p| {
        p["status"]["podIP"] == ip3b.as_str()
    });
    let ip3b: IpAddr = ip3b.parse().unwrap();
    let settled = wait_until(Duration::from_secs(30), || {
        f.bridge_ports().len() == 1 && count(&records) == 1
    });
    assert!(settled, "records: {}\n{}", count(&records), f.context());
    let body = http_get(ip3b).unwrap_or_else(|e| panic!("GET {ip3b}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-web3"), "{body}");
}

#[test]
fn pods_wait_for_the_node_pod_cidr_and_host_network_pods_take_the_node_ip() {
    const NODE2: &str = "kn-worker-2";
    const NODE2_IP: &str = "10.11.12.15";
    let f = Fixture::start_on(NODE2, NODE2_IP, false);
    let mut waiter = web_pod("waiter", "hello-from-waiter", "sleep 3600");
    waiter["spec"]["nodeName"] = NODE2.into();
    let mut host =
        keelson_testsupport::script_pod(NODE2, "host", "busybox", "Always", "sleep 3600");
    host["spec"]["hostNetwork"] = true.into();
    host["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    f.cluster.create(&[waiter, host]);

    // A hostNetwork pod needs no pod network: it runs in the node's namespace with its IP.
    let p = f.wait_pod("host", "running", 60, |p| p["status"]["phase"] == "Running");
    assert_eq!(p["status"]["podIP"], NODE2_IP, "{p:#}");
    assert_eq!(p["status"]["podIPs"][0]["ip"], NODE2_IP, "{p:#}");

    // Without a pod CIDR the attach fails: the pod waits, with the reason and an event.
    let p = f.wait_pod("waiter", "waiting for its network", 60, |p| {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        w["reason"] == "ContainerCreating"
            && w["message"]
                .as_str()
                .is_some_and(|m| m.contains("failed to set up network for sandbox"))
    });
    assert!(p["status"]["podIP"].is_null(), "{p:#}");
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    let evented = wait_until(Duration::from_secs(20), || {
        f.cluster
            .events("default", "waiter")
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "FailedCreatePodSandBox")
    });
    assert!(
        evented,
        "{:?}\n{}",
        f.cluster.events("default", "waiter"),
        f.context()
    );
    assert!(f.bridge_ports().is_empty(), "{}", f.context());

    // Once the Node has a pod CIDR (as nodeipam sets it) the retried attach succeeds.
    let patch = serde_json::json!({"spec": {"podCIDR": f.net.cidr.to_string(),
        "podCIDRs": [f.net.cidr.to_string()]}})
    .to_string();
    f.cluster.kubectl(
        &["patch", "node", NODE2, "--type", "merge", "-p", &patch],
        None,
    );
    let ip = f.running_ip("waiter");
    let body = http_get(ip).unwrap_or_else(|e| panic!("GET {ip}: {e}\n{}", f.context()));
    assert!(body.contains("hello-from-waiter"), "{body}");
    assert_eq!(f.bridge_ports().len(), 1, "{}", f.context());
}
