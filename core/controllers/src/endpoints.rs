//! The endpoints controller (kube-controller-manager's `endpoint`): keeps the Endpoints of
//! every Service with a selector listing the pods behind it.
//!
//! A Service's key is queued when it changes and when a pod its selector matches (before or
//! after the change) gains or loses anything an Endpoints shows: its IP, readiness, labels,
//! ports, node, hostname or termination. Reconciling reads the Service and its pods from the
//! caches, builds the subsets as Kubernetes does (`RepackSubsets`: addresses offering the same
//! ports share a subset; a pod that is not ready goes under `notReadyAddresses`) and writes the
//! Endpoints only when its subsets or labels differ. Services without a selector are left
//! alone: their Endpoints belong to whoever wrote them. A deleted Service's Endpoints is
//! deleted, whoever wrote it, as Kubernetes does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_client::ObjectKey;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Result, is_conflict, is_not_found};

/// The annotation that, set to a true value, publishes pods whether ready or not (the
/// predecessor of `spec.publishNotReadyAddresses`).
pub(crate) const TOLERATE_UNREADY_ANNOTATION: &str =
    "service.alpha.kubernetes.io/tolerate-unready-endpoints";
/// Endpoints used as leader-election locks carry this; they are never cleaned up.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// The label Kubernetes puts on the Endpoints of a headless Service.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// How often a write that lost a race is retried with fresh state within one reconcile.
const CONFLICT_RETRIES: usize = 3;

/// Registers the handlers and returns the workers.
pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let queue: Queue<ObjectKey> = Queue::new();

    let q = queue.clone();
    ctx.informers.services.on_change(move |old, new| {
        if let Some(svc) = new.or(old) {
            q.add(ObjectKey::of(svc.as_ref()));
        }
    });

    let q = queue.clone();
    let services = ctx.informers.services.clone();
    ctx.informers.pods.on_change(move |old, new| {
        if let (Some(o), Some(n)) = (old, new)
            && !endpoint_relevant_change(o, n)
        {
            return;
        }
        let ns = new.or(old).and_then(|p| p.metadata.namespace.clone());
        let Some(ns) = ns else { return };
        for svc in services.list_namespace(&ns) {
            let Some(selector) = selector(&svc) else {
                continue;
            };
            let matched = [old, new]
                .into_iter()
                .flatten()
                .any(|p| selects(selector, p));
            if matched {
                q.add(ObjectKey::of(svc.as_ref()));
            }
        }
    });

    // A deleted Endpoints of a Service that still has a selector is made again.
    let q = queue.clone();
    ctx.informers.endpoints.on_change(move |old, new| {
        if let (Some(ep), None) = (old, new) {
            q.add(ObjectKey::of(ep.as_ref()));
        }
    });

    let ctx2 = ctx.clone();
    let q = queue.clone();
    let workers = ctx.config.concurrent_syncs;
    let task: Task = Box::pin(async move {
        // Endpoints whose Service went away while no controller ran (checkLeftoverEndpoints).
        for ep in ctx2.informers.endpoints.list() {
            let leader = ep
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
            if !leader {
                q.add(ObjectKey::of(ep.as_ref()));
            }
        }
        run_workers("endpoint", q, workers, move |key: ObjectKey| {
            let ctx = ctx2.clone();
            async move { sync(&ctx, &key).await }
        })
        .await;
    });
    Ok(vec![task])
}

/// Brings the Endpoints named `key` in line with its Service.
async fn sync(ctx: &Context, key: &ObjectKey) -> Result<Requeue> {
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let Some(service) = ctx.informers.services.get(&key.namespace, &key.name) else {
        // The Service is gone: so is its Endpoints, whoever made it.
        if ctx
            .informers
            .endpoints
            .get(&key.namespace, &key.name)
            .is_some()
        {
            match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::debug!(endpoints = %key, "deleted the endpoints of a deleted service")
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Requeue::No);
    };
    if selector(&service).is_none() {
        return Ok(Requeue::No);
    }
    let pods = ctx.informers.pods.list_namespace(&key.namespace);
    let subsets = desired_subsets(&service, pods.iter().map(|p| p.as_ref()));
    let labels = desired_labels(&service);

    let mut current = ctx
        .informers
        .endpoints
        .get(&key.namespace, &key.name)
        .map(|e| e.as_ref().clone());
    for attempt in 0..CONFLICT_RETRIES {
        let result = match &current {
            Some(ep) if same(ep, &subsets, &labels) => return Ok(Requeue::No),
            Some(ep) => {
                let mut ep = ep.clone();
                ep.subsets = Some(subsets.clone());
                ep.metadata.labels = (!labels.is_empty()).then(|| labels.clone());
                api.replace(&key.name, &PostParams::default(), &ep)
                    .await
                    .map(|_| ())
            }
            None => {
                let ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(key.name.clone()),
                        namespace: Some(key.namespace.clone()),
                        labels: (!labels.is_empty()).then(|| labels.clone()),
                        ..ObjectMeta::default()
                    },
                    subsets: Some(subsets.clone()),
                };
                api.create(&PostParams::default(), &ep).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::debug!(endpoints = %key, "endpoints written");
                return Ok(Requeue::No);
            }
            // The cache was behind (or someone else wrote): read the truth and try again.
            Err(e) if (is_conflict(&e) || is_not_found(&e)) && attempt + 1 < CONFLICT_RETRIES => {
                current = match api.get(&key.name).await {
                    Ok(ep) => Some(ep),
                    Err(e) if is_not_found(&e) => None,
                    Err(e) => return Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Requeue::No)
}

/// The Service's selector, `None` when it has none (its Endpoints are managed by hand).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether a Service selector map matches the pod's labels.
fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether an update changed anything an Endpoints shows or that decides membership.
fn endpoint_relevant_change(old: &Pod, new: &Pod) -> bool {
    fn view(p: &Pod) -> impl PartialEq + '_ {
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        (
            &p.metadata.labels,
            &p.metadata.deletion_timestamp,
            &p.metadata.uid,
            spec.map(|s| (&s.node_name, &s.hostname, &s.subdomain)),
            spec.map(|s| s.containers.iter().map(|c| &c.ports).collect::<Vec<_>>()),
            status.map(|s| (&s.pod_ip, &s.pod_ips, &s.phase)),
            is_ready(p),
        )
    }
    view(old) != view(new)
}

/// Whether the pod's Ready condition is True.
fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's IP, from `podIP` or the first of `podIPs`.
fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            status
                .pod_ips
                .as_ref()?
                .first()
                .map(|p| p.ip.as_str())
                .filter(|ip| !ip.is_empty())
        })
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not terminal, has an IP, and not terminating unless
/// the Service publishes unready addresses.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the Service publishes pods that are not ready: `spec.publishNotReadyAddresses`,
/// overridden by the older annotation when it parses as a boolean.
fn tolerate_unready(svc: &Service) -> bool {
    let mut tolerate = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    if let Some(v) = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TOLERATE_UNREADY_ANNOTATION))
        && let Some(b) = parse_go_bool(v)
    {
        tolerate = b;
    }
    tolerate
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Kubernetes' `FindPort`: the container port a Service port reaches on `pod`. A number is
/// itself; a name is looked up among the containers' ports with the same protocol.
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port),
    }
}

/// The Endpoints address of `pod` for `svc`.
fn address(svc: &Service, pod: &Pod, ip: &str) -> EndpointAddress {
    let spec = pod.spec.as_ref();
    let hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .filter(|_| {
            spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
                && pod.metadata.namespace == svc.metadata.namespace
        });
    EndpointAddress {
        ip: ip.to_string(),
        hostname,
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    }
}

/// One (address, port, ready) fact before repacking; `port` is `None` for a headless Service
/// without ports.
struct Entry {
    address: EndpointAddress,
    port: Option<EndpointPort>,
    ready: bool,
}

/// The subsets the Endpoints of `svc` should have, given the pods of its namespace.
pub(crate) fn desired_subsets<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<EndpointSubset> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let tolerate = tolerate_unready(svc);
    let spec = svc.spec.as_ref();
    let ports: &[ServicePort] = spec.and_then(|s| s.ports.as_deref()).unwrap_or(&[]);
    let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut entries = Vec::new();
    for pod in pods {
        if !selects(sel, pod) || !should_be_in_endpoints(pod, tolerate) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let addr = address(svc, pod, ip);
        let ready = tolerate || is_ready(pod);
        if ports.is_empty() {
            // A headless Service may have no ports: its addresses are still published.
            if headless {
                entries.push(Entry {
                    address: addr,
                    port: None,
                    ready,
                });
            }
            continue;
        }
        for sp in ports {
            let Some(number) = find_port(pod, sp) else {
                continue;
            };
            entries.push(Entry {
                address: addr.clone(),
                port: Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                }),
                ready,
            });
        }
    }
    repack(entries)
}

/// Identifies an address: its IP and the pod it belongs to.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// A port as a sortable key (name, port, protocol, appProtocol); `None` is the sentinel for
/// "no ports".
type PortKey = Option<(String, i32, String, String)>;

fn port_key(p: &Option<EndpointPort>) -> PortKey {
    p.as_ref().map(|p| {
        (
            p.name.clone().unwrap_or_default(),
            p.port,
            p.protocol.clone().unwrap_or_default(),
            p.app_protocol.clone().unwrap_or_default(),
        )
    })
}

/// Kubernetes' `RepackSubsets`: every address offering the same set of ports (with the same
/// readiness for each) goes into one subset. Not ready wins over ready for one address and
/// port. The result is sorted so the same pods always give the same Endpoints.
fn repack(entries: Vec<Entry>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddrKey, EndpointAddress> = BTreeMap::new();
    let mut ports: BTreeMap<PortKey, Option<EndpointPort>> = BTreeMap::new();
    // port -> address -> ready
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    for e in entries {
        let ak = addr_key(&e.address);
        addresses.entry(ak.clone()).or_insert(e.address);
        let pk = port_key(&e.port);
        ports.entry(pk.clone()).or_insert(e.port);
        let readiness = by_port.entry(pk).or_default();
        let r = readiness.entry(ak).or_insert(e.ready);
        *r = *r && e.ready;
    }
    // address set (with readiness) -> the ports it offers
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (pk, addrs) in by_port {
        let set: Vec<(AddrKey, bool)> = addrs.into_iter().collect();
        groups.entry(set).or_default().push(pk);
    }
    let mut out = Vec::new();
    for (set, pks) in groups {
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for (ak, r) in set {
            if let Some(a) = addresses.get(&ak) {
                if r {
                    ready.push(a.clone());
                } else {
                    not_ready.push(a.clone());
                }
            }
        }
        let ports: Vec<EndpointPort> = pks
            .iter()
            .filter_map(|pk| ports.get(pk).cloned().flatten())
            .collect();
        out.push(EndpointSubset {
            addresses: Some(ready).filter(|v| !v.is_empty()),
            not_ready_addresses: Some(not_ready).filter(|v| !v.is_empty()),
            ports: Some(ports).filter(|v| !v.is_empty()),
        });
    }
    out
}

/// The Endpoints' labels: the Service's, plus `service.kubernetes.io/headless` for a
/// headless Service (as Kubernetes does).
fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    let cluster_ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    if cluster_ip == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Whether `ep` already has these subsets and labels (empty and absent lists are the same).
fn same(ep: &Endpoints, subsets: &[EndpointSubset], labels: &BTreeMap<String, String>) -> bool {
    fn norm(s: &EndpointSubset) -> EndpointSubset {
        let nonempty = |v: &Option<Vec<EndpointAddress>>| v.clone().filter(|v| !v.is_empty());
        EndpointSubset {
            addresses: nonempty(&s.addresses),
            not_ready_addresses: nonempty(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|v| !v.is_empty()),
        }
    }
    let current: Vec<EndpointSubset> = ep.subsets.iter().flatten().map(norm).collect();
    let wanted: Vec<EndpointSubset> = subsets.iter().map(norm).collect();
    let current_labels = ep.metadata.labels.clone().unwrap_or_default();
    current == wanted && &current_labels == labels
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;

    fn service(extra: Value) -> Service {
        let mut svc = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
            "spec": {
                "selector": {"app": "web"},
                "clusterIP": "10.0.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
            }
        });
        merge(&mut svc, extra);
        serde_json::from_value(svc).unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        });
        merge(&mut p, extra);
        serde_json::from_value(p).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn ips(v: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        v.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_with_resolved_named_ports() {
        let svc = service(json!({}));
        let pods = [
            pod("b", "10.1.0.2", true, json!({})),
            pod("a", "10.1.0.1", true, json!({})),
            pod("c", "10.1.0.3", false, json!({})),
            pod(
                "other",
                "10.1.0.4",
                true,
                json!({"metadata": {"labels": {"app": "db"}}}),
            ),
            pod("noip", "", true, json!({})),
            pod(
                "done",
                "10.1.0.5",
                true,
                json!({"status": {"phase": "Succeeded"}}),
            ),
            pod(
                "going",
                "10.1.0.6",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
        ];
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let s = &subsets[0];
        assert_eq!(ips(&s.addresses), ["10.1.0.1", "10.1.0.2"]);
        assert_eq!(ips(&s.not_ready_addresses), ["10.1.0.3"]);
        let ports = s.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 8080);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        let a = &s.addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        let r = a.target_ref.as_ref().unwrap();
        assert_eq!(r.kind.as_deref(), Some("Pod"));
        assert_eq!(r.name.as_deref(), Some("a"));
        assert_eq!(r.uid.as_deref(), Some("uid-a"));
        assert_eq!(r.resource_version, None);
    }

    #[test]
    fn pods_with_different_ports_go_to_different_subsets() {
        let svc = service(json!({}));
        let pods = [
            pod("a", "10.1.0.1", true, json!({})),
            pod(
                "b",
                "10.1.0.2",
                true,
                json!({"spec": {"containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}}),
            ),
            // No port named http: not published for that port.
            pod(
                "c",
                "10.1.0.3",
                true,
                json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
            ),
        ];
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let mut seen: Vec<(Vec<&str>, i32)> = subsets
            .iter()
            .map(|s| (ips(&s.addresses), s.ports.as_ref().unwrap()[0].port))
            .collect();
        seen.sort();
        assert_eq!(seen, [(vec!["10.1.0.1"], 8080), (vec!["10.1.0.2"], 9090)]);
    }

    #[test]
    fn numeric_target_ports_and_several_service_ports_group_together() {
        let svc = service(json!({"spec": {"ports": [
            {"name": "a", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "b", "port": 81, "targetPort": 8081, "protocol": "UDP"}
        ]}}));
        let pods = [
            pod("a", "10.1.0.1", true, json!({})),
            pod("b", "10.1.0.2", false, json!({})),
        ];
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let ports: Vec<_> = subsets[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.port, p.protocol.clone().unwrap()))
            .collect();
        assert_eq!(
            ports,
            [(8080, "TCP".to_string()), (8081, "UDP".to_string())]
        );
        assert_eq!(ips(&subsets[0].addresses), ["10.1.0.1"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.1.0.2"]);
    }

    #[test]
    fn unready_pods_are_published_when_the_service_tolerates_them() {
        let pods = [
            pod("a", "10.1.0.1", false, json!({})),
            pod(
                "t",
                "10.1.0.2",
                true,
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
            ),
        ];
        let svc = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(ips(&subsets[0].addresses), ["10.1.0.1", "10.1.0.2"]);
        assert!(subsets[0].not_ready_addresses.is_none());
        let svc =
            service(json!({"metadata": {"annotations": {TOLERATE_UNREADY_ANNOTATION: "true"}}}));
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(ips(&subsets[0].addresses), ["10.1.0.1", "10.1.0.2"]);
        // The annotation overrides the field.
        let svc = service(json!({"spec": {"publishNotReadyAddresses": true},
            "metadata": {"annotations": {TOLERATE_UNREADY_ANNOTATION: "false"}}}));
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.1.0.1"]);
        assert!(subsets[0].addresses.is_none());
    }

    #[test]
    fn hostnames_only_for_pods_in_the_service_subdomain_and_headless_without_ports() {
        let svc = service(json!({"spec": {"clusterIP": "None", "ports": null}}));
        let pods = [
            pod(
                "a",
                "10.1.0.1",
                true,
                json!({"spec": {"hostname": "a", "subdomain": "web"}}),
            ),
            pod(
                "b",
                "10.1.0.2",
                true,
                json!({"spec": {"hostname": "b", "subdomain": "other"}}),
            ),
        ];
        let subsets = desired_subsets(&svc, pods.iter());
        assert_eq!(subsets.len(), 1);
        let addrs = subsets[0].addresses.as_ref().unwrap();
        assert_eq!(addrs[0].hostname.as_deref(), Some("a"));
        assert_eq!(addrs[1].hostname, None);
        assert!(subsets[0].ports.is_none());
        assert_eq!(
            desired_labels(&svc).get(HEADLESS_LABEL).map(String::as_str),
            Some("")
        );
        // A Service with a cluster IP and no ports publishes nothing.
        let svc = service(json!({"spec": {"ports": null}}));
        assert!(desired_subsets(&svc, pods.iter()).is_empty());
    }

    #[test]
    fn no_selector_means_no_subsets_and_unchanged_endpoints_are_not_rewritten() {
        let svc = service(json!({"spec": {"selector": null}}));
        assert!(selector(&svc).is_none());
        let svc = service(json!({}));
        let pods = [
            pod("a", "10.1.0.1", true, json!({})),
            pod("b", "10.1.0.2", true, json!({})),
        ];
        let subsets = desired_subsets(&svc, pods.iter());
        let labels = desired_labels(&svc);
        let ep = Endpoints {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            subsets: Some(subsets.clone()),
        };
        // The same pods in another order give the same Endpoints.
        let reversed = desired_subsets(&svc, pods.iter().rev());
        assert!(same(&ep, &reversed, &labels));
        let fewer = desired_subsets(&svc, pods[..1].iter());
        assert!(!same(&ep, &fewer, &labels));
        let mut other_labels = labels.clone();
        other_labels.insert("x".into(), "y".into());
        assert!(!same(&ep, &subsets, &other_labels));
    }

    #[test]
    fn only_relevant_pod_changes_count() {
        let a = pod("a", "10.1.0.1", false, json!({}));
        let mut b = a.clone();
        b.status.as_mut().unwrap().start_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(!endpoint_relevant_change(&a, &b));
        let c = pod("a", "10.1.0.1", true, json!({}));
        assert!(endpoint_relevant_change(&a, &c));
        let d = pod("a", "10.1.0.9", false, json!({}));
        assert!(endpoint_relevant_change(&a, &d));
    }
}
