//! The guestbook's images (scripts/build-images.sh) on a real node: a redis master pod, a slave
//! pod replicating it and a frontend pod, on the kubelet's `bridge` backend, found through the
//! service variables as in the book (pointed at the pod IPs here, since no proxy runs). The
//! node writes through the frontend's `guestbook.php` and reads the value back through the
//! slave. Needs root and the images built. The bridge and CIDR are unique to the run and
//! removed on drop.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keelson_kubelet::network::nft;
use keelson_testsupport::{KubeletNode, tail, test_image, wait_until};
use serde_json::{Value, json};

const NODE: &str = "gb-worker-1";
const NODE_IP: &str = "10.11.12.61";

const IMAGES: [&str; 3] = [
    "redis-master.tar",
    "guestbook-redis-slave.tar",
    "guestbook-php-frontend.tar",
];

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
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

impl Fixture {
    fn start() -> Self {
        // Fail on a missing image before starting anything.
        let archives: Vec<PathBuf> = IMAGES.iter().map(|f| test_image(f)).collect();
        let r = rand_u32();
        // 10.61.[1..250].0/24: no other test file uses 10.61/16.
        let cidr: ipnet::IpNet = format!("10.61.{}.0/24", 1 + r % 250).parse().unwrap();
        let bridge = format!("gb{:05}", r % 100_000);
        let config = format!("{{\"bridge\":\"{bridge}\"}}");
        let cidr_text = cidr.to_string();
        let net = NetGuard { bridge, cidr };
        let args = [
            "--network-plugin",
            "bridge",
            "--network-plugin-config",
            &config,
            "--pod-cidr",
            &cidr_text,
        ];
        let node = KubeletNode::start(&bin(), NODE, NODE_IP, &args);
        for archive in &archives {
            node.import_image(archive);
        }
        Fixture { node, net }
    }

    /// The pod's IP once it runs.
    fn running_ip(&self, name: &str) -> IpAddr {
        let p = self.node.wait_pod(name, "running with a podIP", 120, |p| {
            p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
        });
        let ip: IpAddr = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
        assert!(
            self.net.cidr.contains(&ip),
            "{name}: {ip} not in the pod CIDR"
        );
        ip
    }

    /// The kubelet's log and every pod's container log, for assertion messages.
    fn context(&self) -> String {
        let mut out = String::new();
        for name in ["redis-master", "redis-slave", "frontend"] {
            if let Some(p) = self.node.pod(name) {
                let log = std::fs::read_to_string(log_file(self.node.root.path(), &p))
                    .unwrap_or_else(|e| format!("(no log: {e})"));
                out += &format!(
                    "--- {name} ({}):\n{}\n",
                    p["status"]["phase"],
                    tail(&log, 20)
                );
            }
        }
        out + &format!("--- kubelet log:\n{}", tail(&self.node.log(), 40))
    }
}

/// The container log of a pod's only container.
fn log_file(root: &Path, p: &Value) -> PathBuf {
    let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
    let name = p["metadata"]["name"].as_str().unwrap_or_default();
    let container = p["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or_default();
    root.join("logs")
        .join(format!("default_{name}_{uid}"))
        .join(format!("{container}.log"))
}

/// A pod running `image` (the image's own command) with `env`, as the book's controllers do.
fn pod(name: &str, container: &str, image: &str, port: u16, env: &[(&str, String)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"name": name}},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": container,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "env": env,
                "ports": [{"containerPort": port}],
            }],
        },
    })
}

/// One redis command over a fresh connection; the raw reply.
fn redis(ip: IpAddr, command: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, 6379), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut req = format!("*{}\r\n", command.len());
    for arg in command {
        req += &format!("${}\r\n{arg}\r\n", arg.len());
    }
    s.write_all(req.as_bytes())?;
    let mut buf = vec![0; 64 * 1024];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// GETs `path` from the frontend on `ip:80`: the status line and the body.
fn http_get(ip: IpAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::new(ip, 80), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: frontend\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

#[test]
fn guestbook_writes_through_the_master_and_reads_through_a_slave() {
    let f = Fixture::start();

    // The master serves redis on 6379 to other pods (bind 0.0.0.0, protected mode off).
    f.node.cluster.create(&[pod(
        "redis-master",
        "master",
        "kubeguide/redis-master",
        6379,
        &[],
    )]);
    let master = f.running_ip("redis-master");
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(30), || {
        last = redis(master, &["PING"]).unwrap_or_else(|e| e.to_string());
        last == "+PONG\r\n"
    });
    assert!(up, "master PING: {last:?}\n{}", f.context());

    // The slave finds the master through the service variable, as the book's run.sh does.
    f.node.cluster.create(&[pod(
        "redis-slave",
        "slave",
        "kubeguide/guestbook-redis-slave",
        6379,
        &[
            ("GET_HOSTS_FROM", "env".into()),
            ("REDIS_MASTER_SERVICE_HOST", master.to_string()),
            ("REDIS_MASTER_SERVICE_PORT", "6379".into()),
        ],
    )]);
    let slave = f.running_ip("redis-slave");
    let linked = wait_until(Duration::from_secs(60), || {
        last = redis(slave, &["INFO", "replication"]).unwrap_or_else(|e| e.to_string());
        last.contains("role:slave") && last.contains("master_link_status:up")
    });
    assert!(linked, "slave replication: {last}\n{}", f.context());
    assert!(last.contains(&format!("master_host:{master}")), "{last}");
    let write = redis(slave, &["SET", "x", "y"]).unwrap();
    assert!(
        write.starts_with("-READONLY"),
        "slave took a write: {write}"
    );

    f.node.cluster.create(&[pod(
        "frontend",
        "frontend",
        "kubeguide/guestbook-php-frontend",
        80,
        &[
            ("GET_HOSTS_FROM", "env".into()),
            ("REDIS_MASTER_SERVICE_HOST", master.to_string()),
            ("REDIS_MASTER_SERVICE_PORT", "6379".into()),
            ("REDIS_SLAVE_SERVICE_HOST", slave.to_string()),
            ("REDIS_SLAVE_SERVICE_PORT", "6379".into()),
        ],
    )]);
    let frontend = f.running_ip("frontend");
    let mut page = (String::new(), String::new());
    let serving = wait_until(Duration::from_secs(30), || match http_get(frontend, "/") {
        Ok(reply) => {
            page = reply;
            true
        }
        Err(e) => {
            page.0 = e.to_string();
            false
        }
    });
    assert!(serving, "frontend GET /: {}\n{}", page.0, f.context());
    assert!(page.0.contains(" 200 "), "{page:?}");
    assert!(page.1.contains("<form") && page.1.contains("guestbook.php"));

    // The book's API: set goes to the master...
    let (status, body) = http_get(
        frontend,
        "/guestbook.php?cmd=set&key=messages&value=hello%20keelson,second+entry",
    )
    .unwrap_or_else(|e| panic!("cmd=set: {e}\n{}", f.context()));
    assert!(
        status.contains(" 200 "),
        "{status}: {body}\n{}",
        f.context()
    );
    assert_eq!(body, r#"{"message": "Updated"}"#);
    let on_master = redis(master, &["GET", "messages"]).unwrap();
    assert_eq!(on_master, "$26\r\nhello keelson,second entry\r\n");

    // ...and get reads the slave, once replication has carried the value over.
    let want = r#"{"data": "hello keelson,second entry"}"#;
    let mut got = String::new();
    let replicated = wait_until(Duration::from_secs(30), || {
        got = match http_get(frontend, "/guestbook.php?cmd=get&key=messages") {
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e.to_string(),
        };
        got.ends_with(want)
    });
    assert!(replicated, "cmd=get: {got}\n{}", f.context());
    let on_slave = redis(slave, &["GET", "messages"]).unwrap();
    assert_eq!(on_slave, on_master);

    // An unset key reads as the empty string, as the book's PHP prints it.
    let (_, body) = http_get(frontend, "/guestbook.php?cmd=get&key=nothing").unwrap();
    assert_eq!(body, r#"{"data": ""}"#);
}
