//! `keelson proxy` in both modes (kernel rules and the userspace proxy) against a real `keelson apiserver`: Services and Endpoints
//! written with kubectl become nftables rules in the proxy's own table, and connections from
//! the node to a cluster IP reach the endpoints (listeners on addresses of a bridge the
//! test makes): spread over both, pinned to one with ClientIP affinity, refused at once with
//! no endpoints; removing the proxy's rules leaves the node's own tables as they were. Needs
//! root and nftables.
#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keelson_testsupport::{Cluster, DaemonProc, tail, wait_until};
use serde_json::json;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// A bridge (no ports) holding the endpoints' addresses, and the proxy's table; both removed on
/// drop, also after a failed assertion (and by the next run, from a killed one).
struct Node {
    link: String,
    table: String,
    endpoints: [String; 2],
    cluster_ip: String,
    sticky_ip: String,
}

impl Node {
    fn new(n: u8) -> Node {
        let id = std::process::id() % 100_000;
        let node = Node {
            link: format!("kpx{id}-{n}"),
            table: format!("kpx-test-{id}-{n}"),
            endpoints: [format!("10.123.{n}.1"), format!("10.123.{n}.2")],
            cluster_ip: format!("10.0.0.{}", 170 + 2 * n),
            sticky_ip: format!("10.0.0.{}", 171 + 2 * n),
        };
        node.clean();
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "ip {}: the proxy tests need root and iproute2",
                args.join(" ")
            );
        };
        ip(&["link", "add", &node.link, "type", "bridge"]);
        ip(&["link", "set", &node.link, "up"]);
        for a in &node.endpoints {
            ip(&["addr", "add", &format!("{a}/32"), "dev", &node.link]);
        }
        node
    }

    fn clean(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn table(&self) -> String {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.clean();
    }
}

/// A listener on `ip:port` answering each connection with `ip`.
fn serve(ip: &str, port: u16) {
    let listener = TcpListener::bind((ip.parse::<Ipv4Addr>().unwrap(), port)).unwrap();
    let me = ip.to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(me.as_bytes());
        }
    });
}

/// Connects to `ip:port` and reads who answered; the error otherwise.
fn ask(ip: &str, port: u16) -> Result<String, std::io::Error> {
    let addr = SocketAddr::new(ip.parse().unwrap(), port);
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut who = String::new();
    conn.read_to_string(&mut who)?;
    Ok(who)
}

fn endpoints(name: &str, ips: &[&str]) -> serde_json::Value {
    let subsets = if ips.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"port": 8080}],
        }])
    };
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": name, "namespace": "default"}, "subsets": subsets})
}

#[test]
fn cluster_ips_reach_endpoints_through_kernel_rules() {
    scenario("nftables", 0);
}

#[test]
fn cluster_ips_reach_endpoints_through_the_userspace_proxy() {
    scenario("userspace", 1);
}

/// Everything, with the proxy in `mode`; `n` keeps the two tests' addresses apart.
fn scenario(mode: &str, n: u8) {
    let node = Node::new(n);
    let [a, b] = [node.endpoints[0].as_str(), node.endpoints[1].as_str()];
    let (cluster_ip, sticky_ip) = (node.cluster_ip.as_str(), node.sticky_ip.as_str());
    for ip in [a, b] {
        serve(ip, 8080);
    }
    let before: Vec<String> = nft_tables();
    let c = Cluster::start(&bin());
    c.create(&[
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "sticky", "namespace": "default"},
               "spec": {"clusterIP": sticky_ip, "sessionAffinity": "ClientIP",
                        "ports": [{"port": 80, "targetPort": 8080}]}}),
        endpoints("web", &[a, b]),
        endpoints("sticky", &[a, b]),
    ]);
    let mut proxy = DaemonProc::start(
        &bin(),
        &c.server,
        "proxy",
        "proxy",
        &[
            "--proxy-mode",
            mode,
            "--nftables-table",
            &node.table,
            "--cluster-cidr",
            "10.123.0.0/16",
        ],
    );
    let serving = wait_until(Duration::from_secs(20), || {
        ask(sticky_ip, 80).is_ok() && ask(cluster_ip, 80).is_ok()
    });
    assert!(
        serving,
        "the services do not answer:\n{}\nproxy log:\n{}",
        node.table(),
        tail(&proxy.log(), 30)
    );

    // Spread over both endpoints.
    let answers: Vec<String> = (0..40).map(|_| ask(cluster_ip, 80).unwrap()).collect();
    for ep in [a, b] {
        assert!(
            answers.iter().any(|x| x == ep),
            "{ep} never answered: {answers:?}"
        );
    }
    // ClientIP affinity: one client, one endpoint.
    let sticky: Vec<String> = (0..20).map(|_| ask(sticky_ip, 80).unwrap()).collect();
    assert!(sticky.iter().all(|x| *x == sticky[0]), "{sticky:?}");

    // An endpoint that goes stops receiving traffic within a second.
    c.kubectl(
        &["apply", "-f", "-"],
        Some(&endpoints("web", &[a]).to_string()),
    );
    // Forty answers in a row: with both endpoints still in the rules, ten in a row come from
    // `a` by chance once in 1024 tries, which let the check pass early and `b` answer after.
    let only_a = || (0..40).all(|_| ask(cluster_ip, 80).is_ok_and(|x| x == a));
    assert!(
        wait_until(Duration::from_secs(1), only_a),
        "the gone endpoint still answers:\n{}",
        node.table()
    );
    let answers: Vec<String> = (0..20).map(|_| ask(cluster_ip, 80).unwrap()).collect();
    assert!(
        answers.iter().all(|x| x == a),
        "{answers:?}\n{}\nproxy log:\n{}",
        node.table(),
        tail(&proxy.log(), 20)
    );

    // No endpoints: refused at once rather than hanging.
    c.kubectl(
        &["apply", "-f", "-"],
        Some(&endpoints("web", &[]).to_string()),
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let started = std::time::Instant::now();
            matches!(ask(cluster_ip, 80), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
                && started.elapsed() < Duration::from_secs(1)
        }),
        "a service without endpoints is not refused quickly: {:?}\n{}",
        ask(cluster_ip, 80),
        node.table()
    );

    // The proxy's table goes with --cleanup; the node's other tables are as they were.
    proxy.terminate();
    let out = Command::new(bin())
        .args(["proxy", "--cleanup", "--nftables-table", &node.table])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node.table().is_empty(), "{}", node.table());
    assert_eq!(nft_tables(), before);
}

/// The node's nftables tables, one `family name` per line, but for those of Keelson's tests
/// (other tests running at the same time make and remove theirs).
fn nft_tables() -> Vec<String> {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    let mut tables: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("kpx-") && !l.contains("keelson"))
        .map(str::to_string)
        .collect();
    tables.sort();
    tables
}
