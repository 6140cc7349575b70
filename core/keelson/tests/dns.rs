//! `keelson dns` against a real `keelson apiserver`: Services and Endpoints written with
//! kubectl become A and SRV records (headless Services: their ready addresses), unknown
//! cluster names are NXDOMAIN, changes are served within a second or two, other names go to
//! the upstream (a second, in-process server: nothing leaves the machine), and the `kube-dns`
//! Service and Endpoints are registered. Then from a real pod: a node with the bridge network,
//! `keelson proxy` and `keelson dns` behind the `kube-dns` cluster IP, where busybox's
//! `nslookup` resolves a Service by its short and its full name, and a headless Service to
//! its pods. Needs root, nftables and containerd (the second test).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keelson_dns::client::query;
use keelson_dns::forward::Forwarder;
use keelson_dns::server::{DnsServer, Handler};
use keelson_dns::zone::Zone;
use keelson_dns::{Name, RecordType};
use keelson_testsupport::{Cluster, DaemonProc, KubeletNode, script_pod, tail, wait_until};
use serde_json::{Value, json};
use tokio::sync::watch;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

/// A port free on 127.0.0.1 for both UDP and TCP (bound and released).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The fake upstream: a server authoritative for `upstream.test` with one name,
/// `www.ext.svc.upstream.test` -> 192.0.2.7, serving until the runtime is dropped.
fn upstream(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let domain = Name::from_ascii("upstream.test").unwrap();
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"namespace": "ext", "name": "www"},
            "spec": {"clusterIP": "192.0.2.7"},
        }))
        .unwrap();
        let zone = Zone::build(&domain, 30, [&svc], []);
        let (tx, rx) = watch::channel(Some(Arc::new(zone)));
        std::mem::forget(tx);
        let handler = Handler::new(&domain, rx, Forwarder::default());
        let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), handler)
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, shutdown) = watch::channel(false);
        std::mem::forget(stop);
        tokio::spawn(server.run(shutdown));
        addr
    })
}

/// A record's data as text, sorted, and the response code.
struct Reply {
    code: String,
    data: Vec<String>,
    authority: Vec<String>,
}

fn ask(
    rt: &tokio::runtime::Runtime,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
) -> Result<Reply, String> {
    let m = rt
        .block_on(query(server, name, rtype, tcp, Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut data: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    Ok(Reply {
        code: m.metadata.response_code.to_string(),
        data,
        authority: m
            .authorities
            .iter()
            .map(|r| format!("{} {}", r.record_type(), r.name))
            .collect(),
    })
}

fn service(name: &str, cluster_ip: Option<&str>, ports: Value) -> Value {
    let mut spec = json!({"ports": ports});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = ip.into();
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn endpoints(name: &str, ips: &[&str], not_ready: &[&str], port: (&str, u16)) -> Value {
    let addrs = |ips: &[&str]| ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>();
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": name, "namespace": "default"},
           "subsets": [{"addresses": addrs(ips), "notReadyAddresses": addrs(not_ready),
                        "ports": [{"name": port.0, "port": port.1}]}]})
}

#[test]
fn services_resolve_and_other_names_are_forwarded() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = upstream(&rt);
    let c = Cluster::start(&bin());
    let port = free_port();
    // The wildcard address: the Endpoints name the node's address (Kubernetes refuses
    // loopback endpoints); the test asks on 127.0.0.1.
    let listen = format!("0.0.0.0:{port}");
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut dns = DaemonProc::start(
        &bin(),
        &c.server,
        "dns",
        "dns",
        &[
            "--listen",
            &listen,
            "--upstream",
            &upstream.to_string(),
            "--service-ip",
            "10.0.0.55",
        ],
    );
    c.create(&[
        service(
            "redis-master",
            None,
            json!([{"name": "redis", "port": 6379, "targetPort": 6379}]),
        ),
        service("db", Some("None"), json!([{"name": "pg", "port": 5432}])),
        endpoints(
            "db",
            &["10.124.0.5", "10.124.0.6"],
            &["10.124.0.7"],
            ("pg", 15432),
        ),
    ]);
    let redis_ip = c.get(&["svc", "redis-master"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let a = |name: &str| ask(&rt, server, name, RecordType::A, false);
    let resolves = wait_until(Duration::from_secs(20), || {
        a("redis-master.default.svc.cluster.local.").is_ok_and(|r| r.data == [redis_ip.as_str()])
    });
    assert!(
        resolves,
        "redis-master does not resolve to {redis_ip}: {:?}\ndns log:\n{}",
        a("redis-master.default.svc.cluster.local.").map(|r| r.data),
        tail(&dns.log(), 30)
    );

    for tcp in [false, true] {
        let r = ask(
            &rt,
            server,
            "redis-master.default.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .unwrap();
        assert_eq!(r.data, [redis_ip.as_str()], "tcp={tcp}");
        // Headless: the ready addresses, one A record each.
        let r = ask(
            &rt,
            server,
            "db.default.svc.cluster.local.",
            RecordType::A,
            tcp,
        )
        .unwrap();
        assert_eq!(r.data, ["10.124.0.5", "10.124.0.6"], "tcp={tcp}");
    }
    let r = ask(
        &rt,
        server,
        "_redis._tcp.redis-master.default.svc.cluster.local.",
        RecordType::SRV,
        false,
    )
    .unwrap();
    assert_eq!(
        r.data,
        ["10 100 6379 redis-master.default.svc.cluster.local."]
    );
    let r = ask(
        &rt,
        server,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
        false,
    )
    .unwrap();
    assert_eq!(
        r.data,
        [
            "10 50 15432 10-124-0-5.db.default.svc.cluster.local.",
            "10 50 15432 10-124-0-6.db.default.svc.cluster.local."
        ]
    );
    let r = a("10-124-0-6.db.default.svc.cluster.local.").unwrap();
    assert_eq!(r.data, ["10.124.0.6"]);

    // Unknown names in the domain: NXDOMAIN, with the SOA.
    let r = a("nothing.default.svc.cluster.local.").unwrap();
    assert_eq!(r.code, "Non-Existent Domain");
    assert!(r.data.is_empty());
    assert_eq!(r.authority, ["SOA cluster.local."]);

    // Other names: the upstream's answer, over UDP and TCP.
    for tcp in [false, true] {
        let r = ask(
            &rt,
            server,
            "www.ext.svc.upstream.test.",
            RecordType::A,
            tcp,
        )
        .unwrap();
        assert_eq!(r.data, ["192.0.2.7"], "tcp={tcp}");
        let r = ask(
            &rt,
            server,
            "gone.ext.svc.upstream.test.",
            RecordType::A,
            tcp,
        )
        .unwrap();
        assert_eq!(r.code, "Non-Existent Domain", "tcp={tcp}");
    }

    // Changes are served within a couple of seconds.
    let started = Instant::now();
    c.kubectl(
        &["apply", "-f", "-"],
        Some(
            &endpoints(
                "db",
                &["10.124.0.5", "10.124.0.6", "10.124.0.7"],
                &[],
                ("pg", 15432),
            )
            .to_string(),
        ),
    );
    let seen = wait_until(Duration::from_secs(2), || {
        a("db.default.svc.cluster.local.").is_ok_and(|r| r.data.len() == 3)
    });
    assert!(
        seen,
        "a ready address is not served: {:?}",
        a("db.default.svc.cluster.local.").map(|r| r.data)
    );
    let took = started.elapsed();
    c.kubectl(&["delete", "svc", "redis-master"], None);
    let gone = wait_until(Duration::from_secs(2), || {
        a("redis-master.default.svc.cluster.local.").is_ok_and(|r| r.code == "Non-Existent Domain")
    });
    assert!(gone, "a deleted service still resolves");
    eprintln!("an Endpoints change was served {took:?} after kubectl apply started");

    // The kube-dns Service (no selector) and its Endpoints, naming the listen address.
    let svc = c.get(&["svc", "kube-dns", "-n", "kube-system"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.55", "{svc:#}");
    assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert!(svc["spec"]["selector"].is_null(), "{svc:#}");
    let ports: Vec<(String, String, i64, i64)> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["protocol"].as_str().unwrap().to_string(),
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns".into(), "UDP".into(), 53, i64::from(port)),
            ("dns-tcp".into(), "TCP".into(), 53, i64::from(port))
        ]
    );
    let registered = wait_until(Duration::from_secs(10), || {
        c.try_get(&["endpoints", "kube-dns", "-n", "kube-system"])
            .is_some()
    });
    assert!(
        registered,
        "no kube-dns Endpoints:\n{}",
        tail(&dns.log(), 30)
    );
    let ep = c.get(&["endpoints", "kube-dns", "-n", "kube-system"]);
    let ip: std::net::IpAddr = ep["subsets"][0]["addresses"][0]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ep:#}");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], i64::from(port));
    let r = a("kube-dns.kube-system.svc.cluster.local.").unwrap();
    assert_eq!(r.data, ["10.0.0.55"]);

    // SIGTERM: a clean, quick stop.
    let started = Instant::now();
    dns.terminate();
    let status = dns.proc.child.try_wait().unwrap();
    assert!(
        status.is_some_and(|s| s.success()) && started.elapsed() < Duration::from_secs(5),
        "{status:?} after {:?}\n{}",
        started.elapsed(),
        tail(&dns.log(), 20)
    );
}

/// Removes the bridge and the proxy's table after the node is gone.
struct NetGuard {
    bridge: String,
    cidr: ipnet::IpNet,
    table: String,
}

impl NetGuard {
    fn clean(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = keelson_kubelet::network::nft::clear_masquerade(self.cidr);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .output();
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        self.clean();
    }
}

const NODE: &str = "kdns-node";
const DNS_IP: &str = "10.0.0.53";
const REDIS_IP: &str = "10.0.0.54";

fn busybox(name: &str, script: &str) -> Value {
    let mut pod = script_pod(NODE, name, "busybox", "Never", script);
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    pod
}

#[test]
fn pods_resolve_services_through_the_kube_dns_cluster_ip() {
    let id = std::process::id() % 100_000;
    let r = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ id;
    // 10.[200..249].[1..250].0/24: apart from the other tests' pod CIDRs.
    let cidr_text = format!("10.{}.{}.0/24", 200 + r % 50, 1 + (r / 50) % 250);
    let cidr: ipnet::IpNet = cidr_text.parse().unwrap();
    let gateway = match cidr {
        ipnet::IpNet::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4.network()) + 1).to_string(),
        ipnet::IpNet::V6(_) => unreachable!(),
    };
    let net = NetGuard {
        bridge: format!("kd{id:05}"),
        cidr,
        table: format!("kdns-test-{id}"),
    };
    net.clean();
    let config = format!("{{\"bridge\":\"{}\"}}", net.bridge);
    let node = KubeletNode::start(
        &bin(),
        NODE,
        "10.11.12.16",
        &[
            "--network-plugin",
            "bridge",
            "--network-plugin-config",
            &config,
            "--pod-cidr",
            &cidr_text,
            "--cluster-dns",
            DNS_IP,
        ],
    );
    let c = &node.cluster;
    let proxy = DaemonProc::start(
        &bin(),
        &c.server,
        "proxy",
        "proxy",
        &["--nftables-table", &net.table, "--cluster-cidr", &cidr_text],
    );
    // A pod for the headless service; once it runs, the bridge holds the gateway address
    // the DNS server listens on.
    c.create(&[busybox("db-0", "sleep 3600")]);
    let db = node.wait_pod("db-0", "running with a podIP", 120, |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
    });
    let db_ip = db["status"]["podIP"].as_str().unwrap().to_string();
    let port = free_port();
    let listen = format!("{gateway}:{port}");
    let dns = DaemonProc::start(
        &bin(),
        &c.server,
        "dns",
        "dns",
        // No upstream outside the machine: names outside the domain fail, which is fine here.
        &[
            "--listen",
            &listen,
            "--service-ip",
            DNS_IP,
            "--upstream",
            "127.0.0.1:9",
        ],
    );
    let registered = wait_until(Duration::from_secs(20), || {
        c.try_get(&["endpoints", "kube-dns", "-n", "kube-system"])
            .is_some()
    });
    assert!(
        registered,
        "kube-dns not registered:\n{}",
        tail(&dns.log(), 30)
    );
    c.create(&[
        service(
            "redis-master",
            Some(REDIS_IP),
            json!([{"name": "redis", "port": 6379}]),
        ),
        service("db", Some("None"), json!([{"name": "pg", "port": 5432}])),
        endpoints("db", &[&db_ip], &[], ("pg", 5432)),
    ]);
    // The lookups from a pod: the short name through the search path, the full name, and
    // the headless service. Each printed between markers.
    let script = "for n in redis-master redis-master.default.svc.cluster.local db; do \
                  echo \"== $n\"; nslookup $n; done; echo '== resolv.conf'; cat /etc/resolv.conf; \
                  echo '== ping'; ping -c1 -W1 redis-master; echo '== end'";
    c.create(&[busybox("lookup", script)]);
    let done = node.wait_pod("lookup", "finished", 120, |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    // The container's log as the kubelet wrote it (the node's address is not reachable
    // for `kubectl logs`).
    let uid = done["metadata"]["uid"].as_str().unwrap();
    let log = node
        .root
        .path()
        .join("logs")
        .join(format!("default_lookup_{uid}"))
        .join("app.log");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    let context = format!(
        "pod output:\n{out}\npod: {:#}\ndns log:\n{}\nproxy log:\n{}\nproxy table:\n{}",
        done["status"],
        tail(&dns.log(), 30),
        tail(&proxy.log(), 20),
        String::from_utf8_lossy(
            &Command::new("nft")
                .args(["list", "table", "ip", &net.table])
                .output()
                .unwrap()
                .stdout
        )
    );
    let section = |name: &str| -> String {
        out.split(&format!("== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n== ").next())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        section("resolv.conf").contains(&format!("nameserver {DNS_IP}")),
        "{context}"
    );
    for name in ["redis-master", "redis-master.default.svc.cluster.local"] {
        assert!(
            section(name).contains(REDIS_IP),
            "nslookup {name} does not give {REDIS_IP}\n{context}"
        );
    }
    assert!(
        section("db").contains(&db_ip),
        "nslookup db does not give {db_ip}\n{context}"
    );
    // ping prints the address it resolved the name to.
    assert!(section("ping").contains(REDIS_IP), "{context}");
    eprintln!("{out}");
    drop(dns);
    drop(proxy);
    drop(node);
}
