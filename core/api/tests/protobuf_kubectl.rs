//! Bodies captured from real kubectl 1.33 (a kubeconfig pointing at a plain-HTTP recorder) and
//! decoded: each must give the JSON kubectl would have sent, and fit the typed `k8s-openapi` struct.
//! kubectl sends the objects its generators build (`create namespace`, `create service`, ...) as
//! protobuf; `kubectl run` and `kubectl delete` send JSON, so they have no fixture here.

use keelson_api::k8s_openapi::api::{apps, authentication, core};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn decode(fixture: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/protobuf/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    keelson_api::protobuf::decode(&body).unwrap_or_else(|err| panic!("{fixture}: {err}"))
}

fn assert_decodes<T: DeserializeOwned>(fixture: &str, want: Value) {
    let got = decode(fixture);
    assert_eq!(got, want, "{fixture}");
    if let Err(err) = serde_json::from_value::<T>(got) {
        panic!(
            "{fixture} does not fit {}: {err}",
            std::any::type_name::<T>()
        );
    }
}

#[test]
fn protobuf_create_namespace() {
    // kubectl create namespace a
    assert_decodes::<core::v1::Namespace>(
        "namespace.pb",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {}, "status": {}}),
    );
}

#[test]
fn protobuf_create_configmap() {
    // kubectl create configmap c --from-literal=k=v
    assert_decodes::<core::v1::ConfigMap>(
        "configmap.pb",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
    );
}

#[test]
fn protobuf_create_secret_generic() {
    // kubectl create secret generic s --from-literal=k=v
    assert_decodes::<core::v1::Secret>(
        "secret.pb",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}),
    );
}

#[test]
fn protobuf_create_service_nodeport() {
    // kubectl create service nodeport n --tcp=80:8080 (nodePort 0 on the wire: left to the server)
    assert_decodes::<core::v1::Service>(
        "service-nodeport.pb",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "n", "labels": {"app": "n"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "n"}, "type": "NodePort",
            },
            "status": {"loadBalancer": {}},
        }),
    );
}

#[test]
fn protobuf_create_service_clusterip_with_named_target_port() {
    // kubectl create service clusterip web --tcp=443:https
    assert_decodes::<core::v1::Service>(
        "service-clusterip.pb",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "ports": [{"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"}],
                "selector": {"app": "web"}, "type": "ClusterIP",
            },
            "status": {"loadBalancer": {}},
        }),
    );
}

#[test]
fn protobuf_create_serviceaccount() {
    // kubectl create serviceaccount sa
    assert_decodes::<core::v1::ServiceAccount>(
        "serviceaccount.pb",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}),
    );
}

#[test]
fn protobuf_create_quota() {
    // kubectl create quota q --hard=pods=3
    assert_decodes::<core::v1::ResourceQuota>(
        "resourcequota.pb",
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hard": {"pods": "3"}}, "status": {}}),
    );
}

#[test]
fn protobuf_create_deployment_with_zero_replicas() {
    // kubectl create deployment d --image=nginx --replicas=0 --port=80
    assert_decodes::<apps::v1::Deployment>(
        "deployment.pb",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}]},
                },
                "strategy": {},
            },
            "status": {"replicas": 0},
        }),
    );
}

#[test]
fn protobuf_create_token() {
    // kubectl create token sa --duration=1h --audience=api. Go's JSON has the zero
    // `expirationTimestamp` as null, which the typed struct (a required `Time`) rejects as well.
    assert_eq!(
        decode("tokenrequest.pb"),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
            "spec": {"audiences": ["api"], "expirationSeconds": 3600}, "status": {"token": ""},
        }),
    );
    let mut request = decode("tokenrequest.pb");
    request["status"]["expirationTimestamp"] = json!("2026-01-02T03:04:05Z");
    serde_json::from_value::<authentication::v1::TokenRequest>(request).expect("fits TokenRequest");
}
