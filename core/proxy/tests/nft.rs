//! The kernel-mode rules applied by the real `nft` in a network namespace of the test's own:
//! the first sync, an incremental one, and removal. Needs root and nftables.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::process::Command;

use keelson_proxy::Nft;
use keelson_proxy::model::{Endpoint, Protocol, ServiceMap, ServicePort, ServicePortName};
use keelson_proxy::nft::{Config, ruleset, transaction};

/// A network namespace deleted on drop (also after a failed assertion).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("kpx-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`ip netns add {name}` failed: these tests need root and iproute2"
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn port(
    name: &str,
    ip: [u8; 4],
    eps: &[[u8; 4]],
    node_port: Option<u16>,
    affinity: bool,
) -> ServicePort {
    let key = ServicePortName {
        namespace: "default".into(),
        name: name.into(),
        port: "http".into(),
        protocol: Protocol::Tcp,
    };
    ServicePort {
        name: key,
        cluster_ip: Ipv4Addr::from(ip),
        port: 80,
        node_port,
        external_ips: vec![],
        affinity_timeout: affinity.then_some(10_800),
        endpoints: eps
            .iter()
            .map(|ip| Endpoint {
                ip: Ipv4Addr::from(*ip),
                port: 8080,
            })
            .collect(),
    }
}

fn services(ports: Vec<ServicePort>) -> ServiceMap {
    ports.into_iter().map(|p| (p.name.clone(), p)).collect()
}

#[test]
fn rules_apply_update_and_go_in_a_real_kernel() {
    let ns = Netns::new("rules");
    let nft = Nft {
        netns: Some(ns.0.clone()),
    };
    let config = Config {
        cluster_cidr: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
        ..Config::default()
    };
    let first = ruleset(
        &services(vec![
            port(
                "web",
                [10, 96, 0, 10],
                &[[10, 244, 1, 2], [10, 244, 2, 3]],
                Some(30080),
                false,
            ),
            port("redis", [10, 96, 0, 20], &[[10, 244, 1, 7]], None, true),
            port("empty", [10, 96, 0, 30], &[], Some(30030), false),
        ]),
        &config,
    );
    let text = transaction(&config.table, None, &first);
    nft.apply(&text)
        .unwrap_or_else(|e| panic!("{e}\ntransaction:\n{text}"));
    let listed = nft.list_table(&config.table).unwrap().unwrap();
    for needle in [
        "10.96.0.10 . tcp . 80 : goto svc-",
        "tcp . 30080 : goto ext-",
        "numgen random mod 2 vmap",
        "dnat to 10.244.2.3:8080",
        "10.96.0.30 . tcp . 80",
        "flags dynamic,timeout",
        "timeout 3h",
        "masquerade fully-random",
    ] {
        assert!(
            listed.contains(needle),
            "{needle:?} missing from:\n{listed}"
        );
    }

    // A second sync: web loses an endpoint, empty gains one, redis goes.
    let second = ruleset(
        &services(vec![
            port(
                "web",
                [10, 96, 0, 10],
                &[[10, 244, 1, 2]],
                Some(30080),
                false,
            ),
            port(
                "empty",
                [10, 96, 0, 30],
                &[[10, 244, 3, 4]],
                Some(30030),
                false,
            ),
        ]),
        &config,
    );
    let text = transaction(&config.table, Some(&first), &second);
    nft.apply(&text)
        .unwrap_or_else(|e| panic!("{e}\ntransaction:\n{text}"));
    let listed = nft.list_table(&config.table).unwrap().unwrap();
    assert!(!listed.contains("10.244.2.3"), "{listed}");
    assert!(!listed.contains("10.96.0.20"), "{listed}");
    assert!(!listed.contains("aff-"), "{listed}");
    assert!(listed.contains("dnat to 10.244.3.4:8080"), "{listed}");
    assert!(listed.contains("numgen random mod 1 vmap"), "{listed}");

    // A fresh process starts over, whatever is there, and ends with the same rules as the
    // incremental sync (chains in another order).
    let text = transaction(&config.table, None, &second);
    nft.apply(&text)
        .unwrap_or_else(|e| panic!("{e}\ntransaction:\n{text}"));
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let fresh = nft.list_table(&config.table).unwrap().unwrap();
    assert_eq!(sorted(&fresh), sorted(&listed), "{fresh}\n---\n{listed}");

    nft.delete_table(&config.table).unwrap();
    assert!(nft.list_table(&config.table).unwrap().is_none());
}
