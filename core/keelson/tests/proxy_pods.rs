//! `keelson proxy` in both modes, seen from pods on the kubelet's `bridge` backend: three
//! busybox web servers behind a cluster IP, and a client pod that asks it again and again
//! (`kubectl exec … wget`). Connections from a pod spread over all endpoints; ClientIP
//! affinity pins the pod to one; the node port answers on the node's address from the node
//! and from a pod; a pod reaching its own service lands on itself (hairpin); a removed
//! endpoint gets no traffic a second later; a service without endpoints refuses at once.
//! UDP: a DNS service whose endpoints are tiny DNS responders of the test (busybox has no
//! UDP server) answers `nslookup` from a pod, spread over both; a flow from one fixed source
//! port moves to the remaining endpoint when its own goes (the proxy deletes the flow's
//! conntrack entry in kernel mode, ends the session in userspace mode).
//!
//! Needs root, a private containerd, nftables, conntrack, and
//! net.bridge.bridge-nf-call-iptables=1. Names, CIDRs, node ports and cluster IPs are the
//! test's own; links, the proxy's table and the pod CIDR's masquerade rule go on drop.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use keelson_kubelet::network::nft;
use keelson_testsupport::{DaemonProc, KubeletNode, script_pod, tail, wait_until};
use serde_json::{Value, json};

const NODE: &str = "kpp-worker-1";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

#[test]
fn pods_reach_services_through_kernel_rules() {
    scenario("nftables", 1);
}

#[test]
fn pods_reach_services_through_the_userspace_proxy() {
    scenario("userspace", 2);
}

/// The addresses of one test run; `n` keeps the two tests apart.
struct Plan {
    n: u8,
    /// The pod CIDR, 10.77.n.0/24.
    cidr: String,
    /// The node's address, on a bridge of the test's own (with the DNS responders').
    node_ip: Ipv4Addr,
    /// The DNS responders' addresses (UDP endpoints), on the same bridge.
    dns_eps: [Ipv4Addr; 2],
    node_port: u16,
}

impl Plan {
    fn new(n: u8) -> Plan {
        Plan {
            n,
            cidr: format!("10.77.{n}.0/24"),
            node_ip: Ipv4Addr::new(10, 78, n, 1),
            dns_eps: [Ipv4Addr::new(10, 78, n, 2), Ipv4Addr::new(10, 78, n, 3)],
            node_port: 31770 + u16::from(n),
        }
    }

    /// Cluster IPs: web, sticky, self (hairpin), empty, dns.
    fn ip(&self, which: u8) -> String {
        format!("10.0.0.{}", 190 + 10 * self.n + which)
    }
}

/// Links, the proxy's table and the kubelet's masquerade rule, removed on drop (and before
/// use, after a killed run).
struct Net {
    /// The test's bridge holding the node's and the DNS responders' addresses.
    link: String,
    /// The kubelet's pod bridge.
    pod_bridge: String,
    table: String,
    cidr: ipnet::IpNet,
}

impl Net {
    fn new(plan: &Plan) -> Net {
        let id = std::process::id() % 10_000;
        let net = Net {
            link: format!("kpn{id}-{}", plan.n),
            pod_bridge: format!("kpb{id}-{}", plan.n),
            table: format!("kpx-pods-{id}-{}", plan.n),
            cidr: plan.cidr.parse().unwrap(),
        };
        net.clean();
        let ip = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "ip {}: these tests need root and iproute2",
                args.join(" ")
            );
        };
        ip(&["link", "add", &net.link, "type", "bridge"]);
        ip(&["link", "set", &net.link, "up"]);
        for a in std::iter::once(plan.node_ip).chain(plan.dns_eps) {
            ip(&["addr", "add", &format!("{a}/32"), "dev", &net.link]);
        }
        net
    }

    fn clean(&self) {
        for link in [&self.link, &self.pod_bridge] {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = nft::clear_masquerade(self.cidr);
    }

    fn table(&self) -> String {
        sh("nft", &["list", "table", "ip", &self.table])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.clean();
    }
}

/// The node and the proxy, dropped before the network they use.
struct Fixture {
    proxy: Option<DaemonProc>,
    node: KubeletNode,
    net: Net,
}

impl Fixture {
    fn context(&self) -> String {
        format!(
            "proxy table:\n{}\nproxy log:\n{}\nkubelet log:\n{}",
            self.net.table(),
            tail(
                &self.proxy.as_ref().map(DaemonProc::log).unwrap_or_default(),
                30
            ),
            tail(&self.node.log(), 20)
        )
    }

    /// Runs `script` in `pod`; stdout and stderr together, and how long it took.
    fn exec(&self, pod: &str, script: &str) -> (String, Duration) {
        let started = Instant::now();
        let out = self
            .node
            .cluster
            .try_kubectl(&["exec", pod, "--", "sh", "-c", script], None);
        (format!("{}{}", out.stdout, out.stderr), started.elapsed())
    }

    /// `count` GETs of `/` from `addr` (`ip:port`) from `pod`, one line each: the answering
    /// pod's name, or FAIL. With nc: the static busybox's wget crashes in a container
    /// without the C library's name-service modules.
    fn ask(&self, pod: &str, addr: &str, count: u32) -> Vec<String> {
        let (host, port) = addr.split_once(':').unwrap_or((addr, "80"));
        let script = format!(
            "for i in $(seq {count}); do \
               r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>/dev/null | tail -n 1); \
               echo \"${{r:-FAIL}}\"; done"
        );
        let (out, _) = self.exec(pod, &script);
        out.lines().map(str::to_string).collect()
    }

    fn apply(&self, object: &Value) {
        self.node
            .cluster
            .kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
    }
}

/// GET `/` from `addr` (`ip:port`) from the node: the response, or the error.
fn http_get(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let attempt = || -> std::io::Result<String> {
        let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    };
    attempt().unwrap_or_else(|e| format!("error: {e}"))
}

/// `port=hairpin_mode` for every port of `bridge`.
fn hairpin_modes(bridge: &str) -> Vec<String> {
    let Ok(ports) = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif")) else {
        return vec![];
    };
    ports
        .flatten()
        .map(|p| {
            let mode = std::fs::read_to_string(p.path().join("hairpin_mode")).unwrap_or_default();
            format!("{}={}", p.file_name().to_string_lossy(), mode.trim())
        })
        .collect()
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output();
    let Ok(out) = out else {
        return format!("cannot run {cmd}");
    };
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A busybox web server answering `/` with its own pod name.
fn web_pod(name: &str) -> Value {
    let script =
        format!("mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 8080 -h /www");
    let mut pod = script_pod(NODE, name, "busybox", "Always", &script);
    pod["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    pod["metadata"]["labels"] = json!({"app": "web"});
    pod
}

fn service(name: &str, ip: &str, extra: Value) -> Value {
    let mut spec = json!({"clusterIP": ip, "ports": [{"port": 80, "targetPort": 8080}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// Endpoints `name` with `ips` on `port` (`protocol`), written by the test: no endpoints
/// controller runs here.
fn endpoints(name: &str, ips: &[String], port: u16, protocol: &str) -> Value {
    let subsets = if ips.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"port": port, "protocol": protocol}],
        }])
    };
    json!({"apiVersion": "v1", "kind": "Endpoints",
           "metadata": {"name": name, "namespace": "default"}, "subsets": subsets})
}

/// A DNS responder on `ip:10053` answering every A query with `ip` itself (other types with
/// no answers), so the asker sees which endpoint answered.
fn dns_responder(ip: Ipv4Addr) {
    let socket = UdpSocket::bind((ip, 10053)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n], ip) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
}

/// The answer to a one-question query: an A record with `ip` for type A.
fn dns_reply(query: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question = query.get(12..end + 5)?;
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let answers: u16 = u16::from(qtype == 1);
    let mut r = Vec::new();
    r.extend_from_slice(&query[..2]);
    r.extend_from_slice(&[0x81, 0x80, 0, 1]);
    r.extend_from_slice(&answers.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answers == 1 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

/// A minimal A query for `probe.` with id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(&[5, b'p', b'r', b'o', b'b', b'e', 0, 0, 1, 0, 1]);
    q
}

/// Which responder answered the query of `socket` (connected to the DNS cluster IP), or
/// `None` without an answer within a second.
fn dns_ask(socket: &UdpSocket, id: u16) -> Option<Ipv4Addr> {
    socket.send(&dns_query(id)).ok()?;
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).ok()?;
    let a = buf.get(n.checked_sub(4)?..n)?;
    Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
}

fn scenario(mode: &str, n: u8) {
    let bridge_nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables");
    assert_eq!(
        bridge_nf.as_deref().map(str::trim).ok(),
        Some("1"),
        "net.bridge.bridge-nf-call-iptables must be 1 (br_netfilter loaded and enabled): \
         replies between pods on one bridge otherwise skip the proxy's NAT"
    );
    let conntrack = Command::new("conntrack").arg("--version").output();
    assert!(
        conntrack.is_ok_and(|o| o.status.success()),
        "these tests need the conntrack tool (Debian package conntrack; scripts/setup.sh installs it)"
    );
    let plan = Plan::new(n);
    let net = Net::new(&plan);
    for ip in plan.dns_eps {
        dns_responder(ip);
    }
    let config = format!("{{\"bridge\":\"{}\"}}", net.pod_bridge);
    let node_ip = plan.node_ip.to_string();
    let node = KubeletNode::start(
        &bin(),
        NODE,
        &node_ip,
        &[
            "--network-plugin",
            "bridge",
            "--network-plugin-config",
            &config,
            "--pod-cidr",
            &plan.cidr,
        ],
    );
    let mut f = Fixture {
        proxy: None,
        node,
        net,
    };
    let pods = ["srv-1", "srv-2", "srv-3"];
    let mut objects: Vec<Value> = pods.iter().map(|p| web_pod(p)).collect();
    let mut client = script_pod(NODE, "client", "busybox", "Always", "exec sleep 3600");
    client["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    objects.push(client);
    f.node.cluster.create(&objects);
    let mut ip_of = std::collections::BTreeMap::new();
    for p in pods.iter().chain(&["client"]) {
        let pod = f.node.wait_pod(p, "running with an IP", 120, |p| {
            p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
        });
        ip_of.insert(*p, pod["status"]["podIP"].as_str().unwrap().to_string());
    }
    let srv_ips: Vec<String> = pods.iter().map(|p| ip_of[p].clone()).collect();

    let (web, sticky, me, empty, dns) =
        (plan.ip(0), plan.ip(1), plan.ip(2), plan.ip(3), plan.ip(4));
    let dns_eps: Vec<String> = plan.dns_eps.iter().map(ToString::to_string).collect();
    f.node.cluster.create(&[
        service(
            "web",
            &web,
            json!({"type": "NodePort",
                   "ports": [{"port": 80, "targetPort": 8080, "nodePort": plan.node_port}]}),
        ),
        service("sticky", &sticky, json!({"sessionAffinity": "ClientIP"})),
        service("self", &me, json!({})),
        service("empty", &empty, json!({})),
        service(
            "dns",
            &dns,
            json!({"ports": [{"port": 53, "targetPort": 10053, "protocol": "UDP"}]}),
        ),
        endpoints("web", &srv_ips, 8080, "TCP"),
        endpoints("sticky", &srv_ips, 8080, "TCP"),
        endpoints("self", &srv_ips[..1], 8080, "TCP"),
        endpoints("empty", &[], 8080, "TCP"),
        endpoints("dns", &dns_eps, 10053, "UDP"),
    ]);
    f.proxy = Some(DaemonProc::start(
        &bin(),
        &f.node.cluster.server,
        "proxy",
        "proxy",
        &[
            "--proxy-mode",
            mode,
            "--nftables-table",
            &f.net.table,
            "--cluster-cidr",
            &plan.cidr,
            // Userspace mode: a UDP session outlives a slow moment of the test's flow from one
            // source port (sessions ending on time are the unit tests' business).
            "--udp-timeout",
            "3s",
        ],
    ));
    let web_url = format!("{web}:80");
    let mut last = Vec::new();
    let serving = wait_until(Duration::from_secs(30), || {
        last = f.ask("client", &web_url, 1);
        last.first().is_some_and(|x| x.starts_with("srv-"))
    });
    assert!(
        serving,
        "the web service does not answer the client pod: {last:?}\n{}",
        f.context()
    );

    // Spread over all endpoints, from one pod.
    let answers = f.ask("client", &web_url, 30);
    for p in pods {
        assert!(
            answers.iter().any(|x| x == p),
            "{p} never answered the client: {answers:?}\n{}",
            f.context()
        );
    }
    assert!(
        !answers.iter().any(|x| x == "FAIL"),
        "{answers:?}\n{}",
        f.context()
    );

    // ClientIP affinity: one pod, one endpoint.
    let answers = f.ask("client", &format!("{sticky}:80"), 15);
    assert!(
        answers.len() == 15
            && answers
                .iter()
                .all(|x| *x == answers[0] && x.starts_with("srv-")),
        "affinity does not pin the client: {answers:?}\n{}",
        f.context()
    );

    // The node port, on the node's address, from the node and from a pod.
    let np_url = format!("{}:{}", plan.node_ip, plan.node_port);
    let from_node = http_get(&np_url);
    assert!(
        from_node
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("srv-")),
        "the node port does not answer on the node: {from_node}\n{}",
        f.context()
    );
    let from_pod = f.ask("client", &np_url, 6);
    assert!(
        from_pod.iter().all(|x| x.starts_with("srv-")),
        "the node port does not answer a pod: {from_pod:?}\n{}",
        f.context()
    );

    // No endpoints: refused at once, not a hang until nc's 10 s timeout.
    let (out, took) = f.exec("client", &format!("nc -w 10 {empty} 80 </dev/null"));
    assert!(
        out.contains("refused") && took < Duration::from_secs(4),
        "a service without endpoints is not refused quickly ({took:?}): {out}\n{}",
        f.context()
    );

    // UDP from a pod: nslookup through the DNS service, answered by both responders.
    let (out, _) = f.exec(
        "client",
        &format!("for i in $(seq 20); do nslookup -type=a probe {dns} 2>&1; done"),
    );
    for ep in &dns_eps {
        assert!(
            out.lines()
                .any(|l| l.contains("Address") && l.trim_end().ends_with(ep.as_str())),
            "responder {ep} never answered a pod's query:\n{out}\n{}",
            f.context()
        );
    }

    // A UDP flow from one fixed source port (from the node) sticks to its endpoint...
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket
        .connect(SocketAddrV4::new(dns.parse().unwrap(), 53))
        .unwrap();
    let mut id = 0u16;
    let mut first = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            id += 1;
            first = dns_ask(&socket, id);
            first.is_some()
        }),
        "the DNS service does not answer the node\n{}",
        f.context()
    );
    let first = first.unwrap();
    for _ in 0..5 {
        id += 1;
        assert_eq!(dns_ask(&socket, id), Some(first), "{}", f.context());
    }
    // ...and moves to the other one when its endpoint goes.
    let other: Vec<String> = dns_eps
        .iter()
        .filter(|e| **e != first.to_string())
        .cloned()
        .collect();
    f.apply(&endpoints("dns", &other, 10053, "UDP"));
    let moved = wait_until(Duration::from_secs(3), || {
        id += 1;
        dns_ask(&socket, id).is_some_and(|a| a.to_string() == other[0])
    });
    assert!(
        moved,
        "a UDP flow stays on its removed endpoint {first}\nconntrack:\n{}\n{}",
        sh("conntrack", &["-L", "-p", "udp", "--orig-dst", &dns]),
        f.context()
    );

    // An endpoint that goes gets no traffic a second later.
    let removed_at = Instant::now();
    f.apply(&endpoints("web", &srv_ips[..2], 8080, "TCP"));
    // The bound under test: one second after the change.
    std::thread::sleep(Duration::from_secs(1).saturating_sub(removed_at.elapsed()));
    let answers = f.ask("client", &web_url, 30);
    assert!(
        answers.iter().all(|x| x == "srv-1" || x == "srv-2"),
        "srv-3 still gets traffic a second after leaving the endpoints: {answers:?}\n{}",
        f.context()
    );

    // Hairpin: srv-1 reaches its own service, whose one endpoint is itself. In kernel mode
    // the DNATed packet is bridged back out of the port it came in on, which the bridge
    // does only for ports in hairpin mode (the kubelet's job, as Kubernetes' kubelet does
    // with --hairpin-mode).
    let hairpin = f.ask("srv-1", &format!("{me}:80"), 3);
    assert_eq!(
        hairpin,
        ["srv-1", "srv-1", "srv-1"],
        "a pod cannot reach itself through its service (hairpin); hairpin_mode of the pod \
         bridge's ports: {:?}\n{}",
        hairpin_modes(&f.net.pod_bridge),
        f.context()
    );
}
