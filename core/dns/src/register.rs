//! The `kube-dns` Service in `kube-system`: a cluster IP of the DNS server's own, with no
//! selector, and an Endpoints object naming the address the server listens on, so that the
//! service proxy carries `<cluster IP>:53` (UDP and TCP) to the server.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::Error;

/// The Service's namespace.
pub const NAMESPACE: &str = "kube-system";
/// The Service's (and Endpoints') name.
pub const NAME: &str = "kube-dns";

fn meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(
            [
                ("k8s-app".to_string(), "kube-dns".to_string()),
                ("kubernetes.io/name".to_string(), "KubeDNS".to_string()),
            ]
            .into(),
        ),
        ..ObjectMeta::default()
    }
}

/// The Service: ports `dns` (UDP 53) and `dns-tcp` (TCP 53) on `cluster_ip`, targeting
/// `target_port`.
pub fn service(cluster_ip: &str, target_port: u16) -> Result<Service, Error> {
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": target_port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": target_port},
            ],
        },
    });
    let mut svc: Service = serde_json::from_value(value).map_err(Error::Object)?;
    svc.metadata = meta();
    Ok(svc)
}

/// The Endpoints: `listen` for both ports.
pub fn endpoints(listen: SocketAddr) -> Result<Endpoints, Error> {
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "subsets": [{
            "addresses": [{"ip": listen.ip().to_string()}],
            "ports": [
                {"name": "dns", "port": listen.port(), "protocol": "UDP"},
                {"name": "dns-tcp", "port": listen.port(), "protocol": "TCP"},
            ],
        }],
    });
    let mut ep: Endpoints = serde_json::from_value(value).map_err(Error::Object)?;
    ep.metadata = meta();
    Ok(ep)
}

/// Creates or updates the `kube-dns` Service (cluster IP `cluster_ip`) and its Endpoints
/// (`listen`). A Service holding another cluster IP is replaced, since a cluster IP cannot
/// change in place.
pub async fn register(
    client: &kube::Client,
    cluster_ip: &str,
    listen: SocketAddr,
) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let wanted = service(cluster_ip, listen.port())?;
    let pp = PostParams::default();
    match services.get_opt(NAME).await? {
        None => {
            services.create(&pp, &wanted).await?;
        }
        Some(current) => {
            let current_ip = current.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
            if current_ip != Some(cluster_ip) {
                tracing::info!(
                    old = current_ip.unwrap_or(""),
                    new = cluster_ip,
                    "replacing the kube-dns Service: its cluster IP changes"
                );
                services.delete(NAME, &Default::default()).await?;
                services.create(&pp, &wanted).await?;
            } else if current.spec.as_ref().map(|s| &s.ports)
                != wanted.spec.as_ref().map(|s| &s.ports)
                || current
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some()
            {
                let mut updated = wanted.clone();
                updated.metadata.resource_version = current.metadata.resource_version.clone();
                services.replace(NAME, &pp, &updated).await?;
            }
        }
    }
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let wanted = endpoints(listen)?;
    match eps.get_opt(NAME).await? {
        None => {
            eps.create(&pp, &wanted).await?;
        }
        Some(current) if current.subsets == wanted.subsets => {}
        Some(current) => {
            let mut updated = wanted.clone();
            updated.metadata.resource_version = current.metadata.resource_version.clone();
            eps.replace(NAME, &pp, &updated).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_service_has_both_dns_ports_and_no_selector() {
        let svc = serde_json::to_value(service("10.0.0.10", 5353).unwrap()).unwrap();
        assert_eq!(svc["metadata"]["namespace"], "kube-system");
        assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
        assert_eq!(svc["spec"]["clusterIP"], "10.0.0.10");
        assert!(svc["spec"]["selector"].is_null());
        assert_eq!(
            svc["spec"]["ports"],
            serde_json::json!([
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
            ])
        );
        let ep =
            serde_json::to_value(endpoints("10.1.2.3:5353".parse().unwrap()).unwrap()).unwrap();
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "10.1.2.3");
        assert_eq!(ep["subsets"][0]["ports"][1]["name"], "dns-tcp");
        assert_eq!(ep["subsets"][0]["ports"][1]["port"], 5353);
    }
}
