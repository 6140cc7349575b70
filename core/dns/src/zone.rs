//! The cluster's records, built from Services and Endpoints, and the answers to a question.
//!
//! Kubernetes' DNS schema (the kube-dns of v1.2):
//! - `<svc>.<ns>.svc.<domain>`: an A record with the Service's cluster IP; for a headless
//!   Service (clusterIP `None`), one A record per ready address of its Endpoints;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` for each named port: an SRV record whose
//!   target is the Service's name (cluster IP), or for a headless Service, one per ready
//!   address, with target `<hostname>.<svc>.<ns>.svc.<domain>` (the address's hostname, else
//!   its IP with dashes) and the endpoint's port; those targets have A records of their own;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: an A record with the address the name spells;
//! - PTR records for cluster IPs and headless addresses.
//!
//! A name under the domain that is none of these is NXDOMAIN; a name that exists without
//! records of the asked type (such as `<ns>.svc.<domain>`) is an empty answer. Both carry the
//! domain's SOA, whose minimum is the negative-caching TTL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};

/// kube-dns's TTL of answers: 30 seconds.
pub const DEFAULT_TTL: u32 = 30;
/// How long a resolver may cache a negative answer (the SOA's minimum, and its own TTL).
pub const NEGATIVE_TTL: u32 = 5;

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The records of the asked type (never empty), and records for the additional section.
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists but has no records of the asked type.
    NoData,
    /// The name is inside the cluster domain and does not exist.
    NxDomain,
    /// The name is not the cluster's: it goes upstream.
    NotOurs,
}

/// The records of the cluster domain at one moment; rebuilt whole on every change.
#[derive(Debug, Clone)]
pub struct Zone {
    domain: Name,
    ttl: u32,
    soa: Record,
    /// Every existing name (lowercase, fully qualified) with its records; names that only
    /// lead to others (`svc.<domain>`) have none.
    names: HashMap<Name, Vec<Record>>,
    /// PTR records by their reverse name, outside the domain.
    reverse: HashMap<Name, Vec<Record>>,
}

/// One of a Service's names and what it resolves to.
fn push(names: &mut HashMap<Name, Vec<Record>>, name: &Name, rdata: RData, ttl: u32) {
    names
        .entry(name.clone())
        .or_default()
        .push(Record::from_rdata(name.clone(), ttl, rdata));
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// `<label>.<parent>`, or `None` when `label` is no valid DNS label.
fn child(parent: &Name, label: &str) -> Option<Name> {
    let name = parent.prepend_label(label.to_ascii_lowercase()).ok()?;
    // A label is at most 63 bytes; hickory checks that, and the whole name's 255.
    Some(name)
}

/// The reverse-lookup name of `ip` (`d.c.b.a.in-addr.arpa.`).
fn reverse_name(ip: IpAddr) -> Option<Name> {
    let text = match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    Name::from_ascii(text).ok()
}

/// A headless endpoint's name: its hostname when it has a valid one, else its IP with dashes.
fn endpoint_label(ip: IpAddr, hostname: Option<&str>) -> String {
    match hostname {
        Some(h) if is_label(h) => h.to_ascii_lowercase(),
        _ => ip.to_string().replace(['.', ':'], "-"),
    }
}

/// Whether `s` is an RFC 1123 label (as Kubernetes checks Service names and hostnames).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A port name and protocol as an SRV owner: `_<port>._<proto>.<svc>`.
fn srv_name(service: &Name, port: &str, protocol: Option<&str>) -> Option<Name> {
    let proto = protocol.unwrap_or("TCP").to_ascii_lowercase();
    let name = child(service, &format!("_{proto}"))?;
    child(&name, &format!("_{}", port))
}

/// Kubernetes' SRV weight: the targets share 100.
fn weight(count: usize) -> u16 {
    u16::try_from(100 / count.max(1)).unwrap_or(1).max(1)
}

impl Zone {
    /// An empty zone for `domain` (such as `cluster.local`), its answers living `ttl` seconds.
    pub fn empty(domain: &Name, ttl: u32) -> Zone {
        let mut domain = domain.to_lowercase();
        domain.set_fqdn(true);
        let label = |l: &str| domain.prepend_label(l).unwrap_or_else(|_| domain.clone());
        let soa = SOA::new(
            label("dns")
                .prepend_label("ns")
                .unwrap_or_else(|_| domain.clone()),
            label("hostmaster"),
            1,
            28_800,
            7_200,
            604_800,
            NEGATIVE_TTL,
        );
        let soa = Record::from_rdata(domain.clone(), NEGATIVE_TTL, RData::SOA(soa));
        let mut names = HashMap::new();
        names.insert(domain.clone(), vec![soa.clone()]);
        Zone {
            domain,
            ttl,
            soa,
            names,
            reverse: HashMap::new(),
        }
    }

    /// The zone of `services` and their `endpoints` under `domain`.
    pub fn build<'a>(
        domain: &Name,
        ttl: u32,
        services: impl IntoIterator<Item = &'a Service>,
        endpoints: impl IntoIterator<Item = &'a Endpoints>,
    ) -> Zone {
        let mut zone = Zone::empty(domain, ttl);
        let endpoints: BTreeMap<(&str, &str), &Endpoints> = endpoints
            .into_iter()
            .filter_map(|e| {
                Some((
                    (
                        e.metadata.namespace.as_deref()?,
                        e.metadata.name.as_deref()?,
                    ),
                    e,
                ))
            })
            .collect();
        let Some(svc_root) = child(&zone.domain, "svc") else {
            return zone;
        };
        if let Some(pod_root) = child(&zone.domain, "pod") {
            zone.names.insert(pod_root, Vec::new());
        }
        zone.names.insert(svc_root.clone(), Vec::new());
        let mut names = std::mem::take(&mut zone.names);
        let mut reverse = HashMap::new();
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let Some(spec) = &svc.spec else { continue };
            let (Some(ns_name), true) = (child(&svc_root, ns), is_label(name)) else {
                continue;
            };
            let Some(svc_name) = child(&ns_name, name) else {
                continue;
            };
            let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
            let ports = spec.ports.as_deref().unwrap_or_default();
            if cluster_ip == "None" {
                names.entry(ns_name).or_default();
                names.entry(svc_name.clone()).or_default();
                let Some(ep) = endpoints.get(&(ns, name)) else {
                    continue;
                };
                // Ready addresses, each once, with the ports of every subset holding it.
                let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
                let mut srv: BTreeMap<Name, Vec<(Name, u16)>> = BTreeMap::new();
                for subset in ep.subsets.iter().flatten() {
                    for addr in subset.addresses.iter().flatten() {
                        let Ok(ip) = addr.ip.parse::<IpAddr>() else {
                            continue;
                        };
                        let label = endpoint_label(ip, addr.hostname.as_deref());
                        let Some(host) = child(&svc_name, &label) else {
                            continue;
                        };
                        if seen.insert(ip) {
                            push(&mut names, &svc_name, address_rdata(ip), ttl);
                            push(&mut names, &host, address_rdata(ip), ttl);
                            if let Some(r) = reverse_name(ip) {
                                push(&mut reverse, &r, RData::PTR(PTR(host.clone())), ttl);
                            }
                        }
                        for port in subset.ports.iter().flatten() {
                            let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty())
                            else {
                                continue;
                            };
                            let (Some(owner), Ok(number)) = (
                                srv_name(&svc_name, port_name, port.protocol.as_deref()),
                                u16::try_from(port.port),
                            ) else {
                                continue;
                            };
                            srv.entry(owner).or_default().push((host.clone(), number));
                        }
                    }
                }
                for (owner, targets) in srv {
                    let w = weight(targets.len());
                    for (target, port) in targets {
                        push(
                            &mut names,
                            &owner,
                            RData::SRV(SRV::new(10, w, port, target)),
                            ttl,
                        );
                    }
                    add_parents(&mut names, &owner, &svc_name);
                }
                continue;
            }
            let Ok(ip) = cluster_ip.parse::<IpAddr>() else {
                // No cluster IP yet (or none at all): no records.
                continue;
            };
            names.entry(ns_name).or_default();
            push(&mut names, &svc_name, address_rdata(ip), ttl);
            if let Some(r) = reverse_name(ip) {
                push(&mut reverse, &r, RData::PTR(PTR(svc_name.clone())), ttl);
            }
            for port in ports {
                let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) else {
                    continue;
                };
                let (Some(owner), Ok(number)) = (
                    srv_name(&svc_name, port_name, port.protocol.as_deref()),
                    u16::try_from(port.port),
                ) else {
                    continue;
                };
                push(
                    &mut names,
                    &owner,
                    RData::SRV(SRV::new(10, 100, number, svc_name.clone())),
                    ttl,
                );
                add_parents(&mut names, &owner, &svc_name);
            }
        }
        zone.names = names;
        zone.reverse = reverse;
        zone
    }

    /// The cluster domain, fully qualified and lowercase.
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// The domain's SOA record, for the authority section of empty answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The answer to `name` `rtype` (the name in any case).
    pub fn answer(&self, name: &Name, rtype: RecordType) -> Answer {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        if rtype == RecordType::PTR
            && let Some(records) = self.reverse.get(&name)
        {
            return Answer::Records {
                answers: records.clone(),
                additionals: Vec::new(),
            };
        }
        if !self.domain.zone_of(&name) {
            return Answer::NotOurs;
        }
        if let Some(records) = self.names.get(&name) {
            return self.select(records, rtype);
        }
        if let Some(ip) = self.pod_address(&name) {
            let record = Record::from_rdata(name, self.ttl, address_rdata(IpAddr::V4(ip)));
            return self.select(&[record], rtype);
        }
        Answer::NxDomain
    }

    /// The records of `rtype` (all for ANY) among `records`, with the A records of SRV targets.
    fn select(&self, records: &[Record], rtype: RecordType) -> Answer {
        let answers: Vec<Record> = records
            .iter()
            .filter(|r| rtype == RecordType::ANY || r.record_type() == rtype)
            .cloned()
            .collect();
        if answers.is_empty() {
            return Answer::NoData;
        }
        let mut additionals = Vec::new();
        for r in &answers {
            if let RData::SRV(srv) = &r.data
                && let Some(target) = self.names.get(&srv.target.to_lowercase())
            {
                additionals.extend(
                    target
                        .iter()
                        .filter(|t| matches!(t.data, RData::A(_) | RData::AAAA(_)))
                        .cloned(),
                );
            }
        }
        additionals.dedup();
        Answer::Records {
            answers,
            additionals,
        }
    }

    /// The address a `<a-b-c-d>.<ns>.pod.<domain>` name spells.
    fn pod_address(&self, name: &Name) -> Option<Ipv4Addr> {
        let extra = name.num_labels().checked_sub(self.domain.num_labels())?;
        if extra != 3 {
            return None;
        }
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        if labels.get(2).map(String::as_str) != Some("pod") {
            return None;
        }
        labels.first()?.replace('-', ".").parse().ok()
    }

    /// How many names exist (for logs).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the zone holds only its apex.
    pub fn is_empty(&self) -> bool {
        self.names.len() <= 1
    }
}

/// Makes the names between `name` and `stop` exist (empty non-terminals such as
/// `_tcp.<svc>...`).
fn add_parents(names: &mut HashMap<Name, Vec<Record>>, name: &Name, stop: &Name) {
    let mut n = name.base_name();
    while n.num_labels() > stop.num_labels() {
        names.entry(n.clone()).or_default();
        n = n.base_name();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    fn endpoints(ns: &str, name: &str, subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "subsets": subsets,
        }))
        .unwrap()
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone() -> Zone {
        let svcs = [
            service(
                "default",
                "redis-master",
                "10.0.0.11",
                serde_json::json!([{"name": "redis", "port": 6379}, {"port": 80}]),
            ),
            service(
                "web",
                "db",
                "None",
                serde_json::json!([{"name": "pg", "port": 5432}]),
            ),
            service("default", "pending", "", serde_json::json!([])),
        ];
        let eps = [endpoints(
            "web",
            "db",
            serde_json::json!([
                {"addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6", "hostname": "db-1"}],
                 "notReadyAddresses": [{"ip": "10.1.0.7"}],
                 "ports": [{"name": "pg", "port": 15432}]},
            ]),
        )];
        Zone::build(&n("cluster.local"), DEFAULT_TTL, &svcs, &eps)
    }

    fn addresses(answer: Answer) -> Vec<String> {
        let Answer::Records { answers, .. } = answer else {
            panic!("no records: {answer:?}");
        };
        let mut out: Vec<String> = answers.iter().map(|r| r.data.to_string()).collect();
        out.sort();
        out
    }

    #[test]
    fn cluster_ip_services_get_an_a_record_and_srv_for_named_ports() {
        let z = zone();
        let a = z.answer(&n("Redis-Master.default.svc.cluster.local."), RecordType::A);
        assert_eq!(addresses(a), ["10.0.0.11"]);
        let srv = z.answer(
            &n("_redis._tcp.redis-master.default.svc.cluster.local."),
            RecordType::SRV,
        );
        let Answer::Records {
            answers,
            additionals,
        } = srv
        else {
            panic!("no SRV");
        };
        assert_eq!(
            answers[0].data.to_string(),
            "10 100 6379 redis-master.default.svc.cluster.local."
        );
        assert_eq!(additionals[0].data.to_string(), "10.0.0.11");
        // An unnamed port has no SRV record; the name leading to it exists.
        assert_eq!(
            z.answer(
                &n("_tcp.redis-master.default.svc.cluster.local."),
                RecordType::SRV
            ),
            Answer::NoData
        );
        assert_eq!(
            z.answer(
                &n("redis-master.default.svc.cluster.local."),
                RecordType::AAAA
            ),
            Answer::NoData
        );
        assert_eq!(
            z.answer(&n("default.svc.cluster.local."), RecordType::A),
            Answer::NoData
        );
        let ptr = z.answer(&n("11.0.0.10.in-addr.arpa."), RecordType::PTR);
        assert_eq!(addresses(ptr), ["redis-master.default.svc.cluster.local."]);
    }

    #[test]
    fn headless_services_get_their_ready_addresses() {
        let z = zone();
        let a = z.answer(&n("db.web.svc.cluster.local."), RecordType::A);
        assert_eq!(addresses(a), ["10.1.0.5", "10.1.0.6"]);
        let srv = z.answer(&n("_pg._tcp.db.web.svc.cluster.local."), RecordType::SRV);
        assert_eq!(
            addresses(srv),
            [
                "10 50 15432 10-1-0-5.db.web.svc.cluster.local.",
                "10 50 15432 db-1.db.web.svc.cluster.local."
            ]
        );
        let host = z.answer(&n("db-1.db.web.svc.cluster.local."), RecordType::A);
        assert_eq!(addresses(host), ["10.1.0.6"]);
        let host = z.answer(&n("10-1-0-5.db.web.svc.cluster.local."), RecordType::A);
        assert_eq!(addresses(host), ["10.1.0.5"]);
        assert_eq!(
            z.answer(&n("10-1-0-7.db.web.svc.cluster.local."), RecordType::A),
            Answer::NxDomain
        );
    }

    #[test]
    fn unknown_names_in_the_domain_are_nxdomain_and_others_not_ours() {
        let z = zone();
        for name in [
            "nope.default.svc.cluster.local.",
            "pending.default.svc.cluster.local.",
            "redis-master.other.svc.cluster.local.",
            "x.cluster.local.",
        ] {
            assert_eq!(
                z.answer(&n(name), RecordType::A),
                Answer::NxDomain,
                "{name}"
            );
        }
        assert_eq!(z.answer(&n("example.com."), RecordType::A), Answer::NotOurs);
        assert_eq!(
            z.answer(&n("1.2.3.4.in-addr.arpa."), RecordType::PTR),
            Answer::NotOurs
        );
        let soa = z.answer(&n("cluster.local."), RecordType::SOA);
        assert!(matches!(soa, Answer::Records { .. }));
    }

    #[test]
    fn pod_names_spell_their_address() {
        let z = zone();
        let a = z.answer(&n("10-1-2-3.default.pod.cluster.local."), RecordType::A);
        assert_eq!(addresses(a), ["10.1.2.3"]);
        assert_eq!(
            z.answer(&n("bogus.default.pod.cluster.local."), RecordType::A),
            Answer::NxDomain
        );
    }
}
