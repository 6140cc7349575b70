//! Kernel mode: the service map as nftables rules in a table of Keelson's own, applied as
//! one `nft -f` transaction per sync that carries only what changed.
//!
//! The table (family `ip`) holds:
//! - verdict maps `cluster-ips` (cluster or external IP . protocol . port -> service chain)
//!   and `node-ports` (protocol . port -> the service's external chain), looked up from the
//!   nat hooks prerouting and output (chain `services`; node ports only for local
//!   destinations other than loopback);
//! - a chain per service port (`svc-…`) choosing an endpoint at random with equal weight
//!   (`numgen random mod N`), after a ClientIP affinity check when the service asks for one,
//!   and a chain per endpoint (`sep-…`) that DNATs to it and, with affinity, records the client
//!   in the endpoint's `aff-…` set (an nftables set with the service's timeout);
//! - masquerading where the reply would not come back through this node: traffic to a cluster
//!   IP from outside the cluster CIDR, node-port traffic, and hairpin traffic (an endpoint
//!   reaching its own service), marked with bit 0x4000 and masqueraded in postrouting;
//! - sets `no-endpoint-services` and `no-endpoint-nodeports`, rejected in filter hooks so a
//!   connection to a service without endpoints is refused at once instead of hanging.
//!
//! Chains and sets are named after a hash of the service port plus its readable name, so a
//! change touches only that service's chains: changed chains are flushed and refilled,
//! vanished ones deleted after the map elements pointing at them, affinity sets kept (with
//! their entries) as long as their endpoint lasts. The first sync of a process deletes and
//! recreates the whole table, which also clears what a killed run left behind; nothing
//! outside the table is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServiceMap, ServicePort, ServicePortName};

/// The packet mark bit that asks postrouting to masquerade.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// How the rules are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The table's name (family `ip`).
    pub table: String,
    /// The cluster's pod CIDR (address, prefix length): traffic to a cluster IP from outside
    /// it is masqueraded. Without it, only node-port and hairpin traffic is.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    /// Masquerade all traffic to cluster IPs.
    pub masquerade_all: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table: "keelson-proxy".into(),
            cluster_cidr: None,
            masquerade_all: false,
        }
    }
}

/// The rules the table should hold, apart from its fixed skeleton.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Service and endpoint chains by name, with their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Affinity sets by name, with their timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
    /// `cluster-ips` elements: key -> verdict.
    pub cluster_ips: BTreeMap<String, String>,
    /// `node-ports` elements: key -> verdict.
    pub node_ports: BTreeMap<String, String>,
    /// `no-endpoint-services` elements.
    pub no_endpoint_services: BTreeSet<String>,
    /// `no-endpoint-nodeports` elements.
    pub no_endpoint_nodeports: BTreeSet<String>,
}

/// The first 8 hex digits of sha256 over the port's name and protocol, and its readable
/// form: `<namespace>/<name>/<protocol>/<port name or number>`.
fn chain_suffix(name: &ServicePortName, number: u16) -> String {
    let mut h = Sha256::new();
    h.update(name.to_string());
    h.update(name.protocol.as_str());
    let digest = h.finalize();
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let port = if name.port.is_empty() {
        number.to_string()
    } else {
        name.port.clone()
    };
    format!(
        "{hex}-{}/{}/{}/{port}",
        name.namespace,
        name.name,
        name.protocol.as_str()
    )
}

fn endpoint_suffix(service: &str, ep: &Endpoint) -> String {
    format!("{service}__{}/{}", ep.ip, ep.port)
}

/// Builds the rules for `services`.
pub fn ruleset(services: &ServiceMap, config: &Config) -> Ruleset {
    let mut r = Ruleset::default();
    for sp in services.values() {
        add_service(&mut r, sp, config);
    }
    r
}

fn add_service(r: &mut Ruleset, sp: &ServicePort, config: &Config) {
    let proto = sp.name.protocol.as_str();
    let suffix = chain_suffix(&sp.name, sp.port);
    let mut destinations = vec![sp.cluster_ip];
    destinations.extend(sp.external_ips.iter().copied());
    if sp.endpoints.is_empty() {
        for ip in destinations {
            r.no_endpoint_services
                .insert(format!("{ip} . {proto} . {}", sp.port));
        }
        if let Some(np) = sp.node_port {
            r.no_endpoint_nodeports.insert(format!("{proto} . {np}"));
        }
        return;
    }
    let svc_chain = format!("svc-{suffix}");
    let mut rules = Vec::new();
    if config.masquerade_all {
        rules.push("jump mark-for-masquerade".to_string());
    } else if let Some((net, len)) = config.cluster_cidr {
        rules.push(format!("ip saddr != {net}/{len} jump mark-for-masquerade"));
    }
    let mut targets = Vec::new();
    for ep in &sp.endpoints {
        let ep_suffix = endpoint_suffix(&suffix, ep);
        let sep_chain = format!("sep-{ep_suffix}");
        let mut sep = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
        if let Some(timeout) = sp.affinity_timeout {
            let set = format!("aff-{ep_suffix}");
            rules.push(format!("ip saddr @{set} goto {sep_chain}"));
            sep.push(format!("update @{set} {{ ip saddr }}"));
            r.affinity_sets.insert(set, timeout);
        }
        sep.push(format!(
            "meta l4proto {proto} dnat to {}:{}",
            ep.ip, ep.port
        ));
        r.chains.insert(sep_chain.clone(), sep);
        targets.push(sep_chain);
    }
    let mut choice = format!("numgen random mod {} vmap {{ ", targets.len());
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            choice.push_str(", ");
        }
        let _ = write!(choice, "{i} : goto {t}");
    }
    choice.push_str(" }");
    rules.push(choice);
    r.chains.insert(svc_chain.clone(), rules);
    for ip in destinations {
        r.cluster_ips.insert(
            format!("{ip} . {proto} . {}", sp.port),
            format!("goto {svc_chain}"),
        );
    }
    if let Some(np) = sp.node_port {
        let ext_chain = format!("ext-{suffix}");
        r.chains.insert(
            ext_chain.clone(),
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {svc_chain}"),
            ],
        );
        r.node_ports
            .insert(format!("{proto} . {np}"), format!("goto {ext_chain}"));
    }
}

/// The table's fixed skeleton: maps, sets, the marking and masquerading chains and the hooks.
fn skeleton(table: &str) -> String {
    format!(
        "add table ip {table}
add map ip {table} cluster-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}
add map ip {table} node-ports {{ type inet_proto . inet_service : verdict ; }}
add set ip {table} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service ; }}
add set ip {table} no-endpoint-nodeports {{ type inet_proto . inet_service ; }}
add chain ip {table} mark-for-masquerade
add rule ip {table} mark-for-masquerade meta mark set meta mark | {MASQUERADE_MARK:#x}
add chain ip {table} masquerading
add rule ip {table} masquerading meta mark & {MASQUERADE_MARK:#x} == 0 return
add rule ip {table} masquerading meta mark set meta mark ^ {MASQUERADE_MARK:#x}
add rule ip {table} masquerading masquerade fully-random
add chain ip {table} services
add rule ip {table} services ip daddr . meta l4proto . th dport vmap @cluster-ips
add rule ip {table} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @node-ports
add chain ip {table} nat-prerouting {{ type nat hook prerouting priority dstnat ; policy accept ; }}
add rule ip {table} nat-prerouting jump services
add chain ip {table} nat-output {{ type nat hook output priority -100 ; policy accept ; }}
add rule ip {table} nat-output jump services
add chain ip {table} nat-postrouting {{ type nat hook postrouting priority srcnat ; policy accept ; }}
add rule ip {table} nat-postrouting jump masquerading
add chain ip {table} filter-input {{ type filter hook input priority -110 ; policy accept ; }}
add rule ip {table} filter-input ct state new fib daddr type local meta l4proto . th dport @no-endpoint-nodeports reject
add chain ip {table} filter-forward {{ type filter hook forward priority -110 ; policy accept ; }}
add rule ip {table} filter-forward ct state new ip daddr . meta l4proto . th dport @no-endpoint-services reject
add chain ip {table} filter-output {{ type filter hook output priority -110 ; policy accept ; }}
add rule ip {table} filter-output ct state new ip daddr . meta l4proto . th dport @no-endpoint-services reject
"
    )
}

/// The transaction taking the table from `old` (what the last successful sync applied; `None`
/// for the first sync, or after a failure) to `new`.
pub fn transaction(table: &str, old: Option<&Ruleset>, new: &Ruleset) -> String {
    let mut out = String::new();
    let empty = Ruleset::default();
    let old = match old {
        Some(o) => o,
        None => {
            // Create-then-delete cannot fail whether or not the table exists.
            let _ = writeln!(out, "add table ip {table}\ndelete table ip {table}");
            out.push_str(&skeleton(table));
            &empty
        }
    };
    // 1. New affinity sets, then new and changed chains (which may name them).
    for (set, timeout) in &new.affinity_sets {
        if !old.affinity_sets.contains_key(set) {
            let _ = writeln!(
                out,
                "add set ip {table} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
            );
        }
    }
    // Every new chain exists before any rule names it.
    for chain in new.chains.keys() {
        if !old.chains.contains_key(chain) {
            let _ = writeln!(out, "add chain ip {table} {chain}");
        }
    }
    for (chain, rules) in &new.chains {
        match old.chains.get(chain) {
            Some(old_rules) if old_rules == rules => continue,
            Some(_) => {
                let _ = writeln!(out, "flush chain ip {table} {chain}");
            }
            None => {}
        }
        for rule in rules {
            let _ = writeln!(out, "add rule ip {table} {chain} {rule}");
        }
    }
    // 2. Map and set elements: removed or changed ones out, then the new ones in.
    for (map, old_elems, new_elems) in [
        ("cluster-ips", &old.cluster_ips, &new.cluster_ips),
        ("node-ports", &old.node_ports, &new.node_ports),
    ] {
        for (key, verdict) in old_elems {
            if new_elems.get(key) != Some(verdict) {
                let _ = writeln!(out, "delete element ip {table} {map} {{ {key} }}");
            }
        }
        for (key, verdict) in new_elems {
            if old_elems.get(key) != Some(verdict) {
                let _ = writeln!(out, "add element ip {table} {map} {{ {key} : {verdict} }}");
            }
        }
    }
    for (set, old_elems, new_elems) in [
        (
            "no-endpoint-services",
            &old.no_endpoint_services,
            &new.no_endpoint_services,
        ),
        (
            "no-endpoint-nodeports",
            &old.no_endpoint_nodeports,
            &new.no_endpoint_nodeports,
        ),
    ] {
        for key in old_elems.difference(new_elems) {
            let _ = writeln!(out, "delete element ip {table} {set} {{ {key} }}");
        }
        for key in new_elems.difference(old_elems) {
            let _ = writeln!(out, "add element ip {table} {set} {{ {key} }}");
        }
    }
    // 3. Chains nothing points at any more: emptied first (service chains jump to endpoint
    //    chains), then deleted; then their affinity sets.
    let gone: Vec<&String> = old
        .chains
        .keys()
        .filter(|c| !new.chains.contains_key(*c))
        .collect();
    for chain in &gone {
        let _ = writeln!(out, "flush chain ip {table} {chain}");
    }
    for chain in &gone {
        let _ = writeln!(out, "delete chain ip {table} {chain}");
    }
    for set in old.affinity_sets.keys() {
        if !new.affinity_sets.contains_key(set) {
            let _ = writeln!(out, "delete set ip {table} {set}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServicePort, ServicePortName};

    fn port(name: &str, ip: [u8; 4], eps: &[[u8; 4]], node_port: Option<u16>) -> ServicePort {
        let key = ServicePortName {
            namespace: "default".into(),
            name: name.into(),
            port: String::new(),
            protocol: Protocol::Tcp,
        };
        ServicePort {
            name: key,
            cluster_ip: Ipv4Addr::from(ip),
            port: 80,
            node_port,
            external_ips: vec![],
            affinity_timeout: None,
            endpoints: eps
                .iter()
                .map(|ip| Endpoint {
                    ip: Ipv4Addr::from(*ip),
                    port: 8080,
                })
                .collect(),
        }
    }

    fn map(ports: Vec<ServicePort>) -> ServiceMap {
        ports.into_iter().map(|p| (p.name.clone(), p)).collect()
    }

    fn config() -> Config {
        Config {
            cluster_cidr: Some((Ipv4Addr::new(10, 244, 0, 0), 16)),
            ..Config::default()
        }
    }

    #[test]
    fn a_service_spreads_over_its_endpoints_with_masquerade_from_outside() {
        let r = ruleset(
            &map(vec![port(
                "web",
                [10, 0, 0, 10],
                &[[10, 244, 1, 2], [10, 244, 2, 3]],
                Some(30080),
            )]),
            &config(),
        );
        let (svc, rules) = r
            .chains
            .iter()
            .find(|(c, _)| c.starts_with("svc-"))
            .unwrap();
        assert!(svc.ends_with("-default/web/tcp/80"), "{svc}");
        assert_eq!(
            rules[0],
            "ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
        );
        assert!(
            rules[1].starts_with("numgen random mod 2 vmap { 0 : goto sep-"),
            "{rules:?}"
        );
        let sep: Vec<_> = r.chains.keys().filter(|c| c.starts_with("sep-")).collect();
        assert_eq!(sep.len(), 2);
        assert!(sep[0].ends_with("__10.244.1.2/8080"), "{sep:?}");
        assert_eq!(
            r.chains[sep[0]],
            [
                "ip saddr 10.244.1.2 jump mark-for-masquerade",
                "meta l4proto tcp dnat to 10.244.1.2:8080"
            ]
        );
        assert_eq!(
            r.cluster_ips.get("10.0.0.10 . tcp . 80"),
            Some(&format!("goto {svc}"))
        );
        let ext = r.node_ports.get("tcp . 30080").unwrap();
        assert!(ext.starts_with("goto ext-"));
        assert!(r.no_endpoint_services.is_empty());
    }

    #[test]
    fn affinity_uses_a_set_per_endpoint_with_the_timeout() {
        let mut p = port("sticky", [10, 0, 0, 11], &[[10, 244, 1, 5]], None);
        p.affinity_timeout = Some(10_800);
        let r = ruleset(&map(vec![p]), &config());
        let (set, timeout) = r.affinity_sets.iter().next().unwrap();
        assert_eq!(*timeout, 10_800);
        let svc = r
            .chains
            .iter()
            .find(|(c, _)| c.starts_with("svc-"))
            .unwrap()
            .1;
        assert!(
            svc[1].starts_with(&format!("ip saddr @{set} goto sep-")),
            "{svc:?}"
        );
        let sep = r
            .chains
            .iter()
            .find(|(c, _)| c.starts_with("sep-"))
            .unwrap()
            .1;
        assert_eq!(sep[1], format!("update @{set} {{ ip saddr }}"));
        let text = transaction("t", None, &r);
        assert!(text.contains(&format!(
            "add set ip t {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }}"
        )));
    }

    #[test]
    fn services_without_endpoints_are_rejected() {
        let r = ruleset(
            &map(vec![port("empty", [10, 0, 0, 12], &[], Some(30002))]),
            &config(),
        );
        assert!(r.chains.is_empty());
        assert!(r.cluster_ips.is_empty());
        assert!(r.no_endpoint_services.contains("10.0.0.12 . tcp . 80"));
        assert!(r.no_endpoint_nodeports.contains("tcp . 30002"));
    }

    #[test]
    fn the_first_sync_recreates_the_table() {
        let r = ruleset(
            &map(vec![port("web", [10, 0, 0, 10], &[[10, 244, 1, 2]], None)]),
            &config(),
        );
        let text = transaction("keelson-proxy", None, &r);
        assert!(text.starts_with("add table ip keelson-proxy\ndelete table ip keelson-proxy\nadd table ip keelson-proxy\n"));
        assert!(text.contains("add chain ip keelson-proxy nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }"));
        assert!(text.contains(
            "add element ip keelson-proxy cluster-ips { 10.0.0.10 . tcp . 80 : goto svc-"
        ));
    }

    #[test]
    fn later_syncs_carry_only_the_change() {
        let one = map(vec![
            port("web", [10, 0, 0, 10], &[[10, 244, 1, 2]], None),
            port("db", [10, 0, 0, 20], &[[10, 244, 1, 7]], None),
        ]);
        let before = ruleset(&one, &config());
        // Unchanged: nothing to do.
        assert_eq!(transaction("t", Some(&before), &before), "");
        // web gains an endpoint, db loses its only one.
        let two = map(vec![
            port(
                "web",
                [10, 0, 0, 10],
                &[[10, 244, 1, 2], [10, 244, 1, 3]],
                None,
            ),
            port("db", [10, 0, 0, 20], &[], None),
        ]);
        let after = ruleset(&two, &config());
        let text = transaction("t", Some(&before), &after);
        let lines: Vec<&str> = text.lines().collect();
        assert!(!text.contains("add table"), "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("add chain ip t sep-") && l.ends_with("__10.244.1.3/8080")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("flush chain ip t svc-") && l.ends_with("/web/tcp/80")),
            "{text}"
        );
        assert!(
            lines.contains(&"add element ip t no-endpoint-services { 10.0.0.20 . tcp . 80 }"),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("delete element ip t cluster-ips { 10.0.0.20 . tcp . 80 }")),
            "{text}"
        );
        // db's chains go after the element pointing at them, emptied before deletion.
        let del_elem = lines
            .iter()
            .position(|l| l.starts_with("delete element ip t cluster-ips"))
            .unwrap();
        let del_chain = lines
            .iter()
            .position(|l| l.starts_with("delete chain ip t svc-"))
            .unwrap();
        let flush = lines
            .iter()
            .position(|l| l.starts_with("flush chain ip t svc-") && l.ends_with("/db/tcp/80"))
            .unwrap();
        assert!(del_elem < flush && flush < del_chain, "{text}");
        // web's untouched endpoint chain is not rewritten.
        assert!(!text.contains("__10.244.1.2/8080\nadd rule"), "{text}");
    }
}
