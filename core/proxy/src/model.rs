//! What the proxy serves, distilled from Services and Endpoints: one [`ServicePort`] per
//! port of every Service with a cluster IP, with the ready endpoints of that port.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Kubernetes' default ClientIP affinity timeout: three hours.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables and `/etc/protocols` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Names one port of one Service: `namespace/name:port-name`, and its protocol.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for the single unnamed port of a Service.
    pub port: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// One ready endpoint of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One port of a Service with a cluster IP, as the proxy serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// The node port, for NodePort and LoadBalancer services.
    pub node_port: Option<u16>,
    /// `externalIPs`, served like the cluster IP.
    pub external_ips: Vec<Ipv4Addr>,
    /// The ClientIP affinity timeout in seconds; `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// The ready endpoints, sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

/// Every service port the proxy serves, by name.
pub type ServiceMap = BTreeMap<ServicePortName, ServicePort>;

/// Ready endpoints of one Endpoints object by (port name, protocol).
type ReadyByPort = BTreeMap<(String, Protocol), Vec<Endpoint>>;

/// Builds the service map from the cluster's Services and Endpoints. Services without a
/// cluster IP (headless, ExternalName) and ports with unknown protocols are left out;
/// endpoints come from `addresses` only (not `notReadyAddresses`), matched to the service
/// port by port name as the endpoints controller wrote them.
pub fn service_map<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    endpoints: impl IntoIterator<Item = &'a Endpoints>,
) -> ServiceMap {
    let mut ready: BTreeMap<(String, String), ReadyByPort> = BTreeMap::new();
    for ep in endpoints {
        let key = (
            ep.metadata.namespace.clone().unwrap_or_default(),
            ep.metadata.name.clone().unwrap_or_default(),
        );
        let by_port = ready.entry(key).or_default();
        for subset in ep.subsets.iter().flatten() {
            for port in subset.ports.iter().flatten() {
                let (Some(protocol), Ok(number)) = (
                    Protocol::parse(port.protocol.as_deref()),
                    u16::try_from(port.port),
                ) else {
                    continue;
                };
                let list = by_port
                    .entry((port.name.clone().unwrap_or_default(), protocol))
                    .or_default();
                for address in subset.addresses.iter().flatten() {
                    if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                        list.push(Endpoint { ip, port: number });
                    }
                }
            }
        }
    }
    let mut map = ServiceMap::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        let external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        for port in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(number)) = (
                Protocol::parse(port.protocol.as_deref()),
                u16::try_from(port.port),
            ) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let mut eps = ready
                .get(&(namespace.clone(), name.clone()))
                .and_then(|m| m.get(&(port_name.clone(), protocol)))
                .cloned()
                .unwrap_or_default();
            eps.sort();
            eps.dedup();
            let key = ServicePortName {
                namespace: namespace.clone(),
                name: name.clone(),
                port: port_name,
                protocol,
            };
            map.insert(
                key.clone(),
                ServicePort {
                    name: key,
                    cluster_ip,
                    port: number,
                    node_port: port
                        .node_port
                        .filter(|_| node_ports)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0),
                    external_ips: external_ips.clone(),
                    affinity_timeout,
                    endpoints: eps,
                },
            );
        }
    }
    map
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn endpoints(v: serde_json::Value) -> Endpoints {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn ports_get_their_ready_endpoints_by_name() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.0.0.10", "type": "NodePort", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }));
        let eps = endpoints(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "10.244.1.3"}, {"ip": "10.244.1.2"}],
                "notReadyAddresses": [{"ip": "10.244.1.9"}],
                "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]
            }]
        }));
        let map = service_map([&svc], [&eps]);
        assert_eq!(map.len(), 2);
        let http = map.values().find(|p| p.name.port == "http").unwrap();
        assert_eq!(http.name.to_string(), "default/web:http");
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        let ips: Vec<String> = http.endpoints.iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.244.1.2:8080", "10.244.1.3:8080"]);
        let dns = map.values().find(|p| p.name.port == "dns").unwrap();
        assert_eq!(dns.name.protocol, Protocol::Udp);
        assert_eq!(dns.endpoints[0].port, 5353);
    }

    #[test]
    fn headless_external_name_and_cluster_ip_only_services() {
        let headless = service(json!({
            "metadata": {"name": "h", "namespace": "a"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }));
        let external = service(json!({
            "metadata": {"name": "e", "namespace": "a"},
            "spec": {"type": "ExternalName", "externalName": "example.invalid"}
        }));
        let plain = service(json!({
            "metadata": {"name": "p", "namespace": "a"},
            "spec": {"clusterIP": "10.0.0.5", "ports": [{"port": 80, "nodePort": 30001}],
                     "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}
        }));
        let map = service_map([&headless, &external, &plain], []);
        assert_eq!(map.len(), 1);
        let p = map.values().next().unwrap();
        assert_eq!(p.name.to_string(), "a/p");
        assert_eq!(p.node_port, None, "a ClusterIP service has no node port");
        assert_eq!(p.affinity_timeout, Some(60));
        assert!(p.endpoints.is_empty());
    }
}
