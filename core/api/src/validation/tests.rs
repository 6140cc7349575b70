#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;
use crate::object::{apply_defaults, decode};
use crate::registry::lookup;

/// Decode, default and validate like the server does; returns `field: message` lines.
fn check(plural: &str, body: Value) -> Vec<String> {
    check_update(plural, body, None)
}

fn prepared(plural: &str, body: Value) -> Value {
    let info = lookup("", "v1", plural)
        .or_else(|| lookup("coordination.k8s.io", "v1", plural))
        .unwrap();
    let mut v = decode(info, &body).unwrap().value;
    apply_defaults(info, &mut v);
    v
}

fn check_update(plural: &str, body: Value, old: Option<Value>) -> Vec<String> {
    let info = lookup("", "v1", plural)
        .or_else(|| lookup("coordination.k8s.io", "v1", plural))
        .unwrap();
    let v = prepared(plural, body);
    let old = old.map(|o| prepared(plural, o));
    validate(info, &v, old.as_ref())
        .iter()
        .map(FieldError::to_string_with_field)
        .collect()
}

fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[test]
fn valid_guestbook_objects_pass() {
    let rc = json!({
        "metadata": {"name": "redis-slave", "namespace": "default", "labels": {"name": "redis-slave"}},
        "spec": {"replicas": 2, "selector": {"name": "redis-slave"},
          "template": {"metadata": {"labels": {"name": "redis-slave"}},
            "spec": {"containers": [{"name": "worker", "image": "kubernetes/redis-slave:v2",
              "env": [{"name": "GET_HOSTS_FROM", "value": "env"}],
              "ports": [{"containerPort": 6379}]}]}}}
    });
    assert_eq!(check("replicationcontrollers", rc), Vec::<String>::new());
    let svc = json!({"metadata": {"name": "frontend", "namespace": "default"},
      "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}], "selector": {"name": "frontend"}}});
    assert_eq!(check("services", svc), Vec::<String>::new());
}

#[test]
fn metadata_rules() {
    let errs = check(
        "pods",
        json!({"metadata": {"namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    assert_eq!(
        errs,
        ["metadata.name: Required value: name or generateName is required"]
    );
    let errs = check(
        "pods",
        json!({"metadata": {"name": "Foo_Bar", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    assert_eq!(
        errs,
        [format!(
            "metadata.name: Invalid value: \"Foo_Bar\": {SUBDOMAIN_MSG}"
        )]
    );
    let errs = check(
        "pods",
        json!({"metadata": {"name": "a"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    );
    assert_eq!(errs, ["metadata.namespace: Required value"]);
    let errs = check("namespaces", json!({"metadata": {"name": "a.b"}}));
    assert_eq!(
        errs,
        [
            "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    let errs = check(
        "nodes",
        json!({"metadata": {"name": "n", "namespace": "x"}}),
    );
    assert_eq!(
        errs,
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
    let errs = check(
        "services",
        json!({"metadata": {"name": "1svc", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(
        errs,
        [
            "metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

#[test]
fn label_and_annotation_rules() {
    let errs = check(
        "configmaps",
        json!({"metadata": {"name": "c", "namespace": "default",
        "labels": {"bad key": "ok", "k": "-bad"}}}),
    );
    assert_eq!(
        errs,
        [
            "metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ]
    );
    let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
    let errs = check(
        "configmaps",
        json!({"metadata": {"name": "c", "namespace": "default",
        "annotations": {"a": big}}}),
    );
    assert_eq!(
        errs,
        ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn pod_spec_rules() {
    let errs = check("pods", pod(json!({"containers": []})));
    assert_eq!(errs, ["spec.containers: Required value"]);

    let errs = check(
        "pods",
        pod(json!({"restartPolicy": "Sometimes",
        "containers": [{"name": "c"}]})),
    );
    assert_eq!(
        errs,
        [
            "spec.containers[0].image: Required value",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ]
    );

    let errs = check(
        "pods",
        pod(json!({"dnsPolicy": "Bogus",
        "containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "i"}]})),
    );
    assert_eq!(
        errs,
        [
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.dnsPolicy: Unsupported value: \"Bogus\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ]
    );

    let errs = check(
        "pods",
        pod(json!({"containers": [{"name": "c", "image": "i",
        "ports": [{"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http", "protocol": "ICMP"}]}]})),
    );
    assert_eq!(
        errs,
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]
    );
}

#[test]
fn volumes_mounts_env_resources_probes() {
    let errs = check(
        "pods",
        pod(json!({
        "volumes": [{"name": "data"}, {"name": "data", "secret": {"secretName": "s"}, "hostPath": {"path": "/x"}}],
        "containers": [{"name": "c", "image": "i",
          "volumeMounts": [{"name": "missing", "mountPath": "/a"}, {"name": "data", "mountPath": "/a"}],
          "env": [{"name": "A=B", "value": "x"}, {"name": "X", "valueFrom": {}}],
          "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "1"}},
          "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}, "successThreshold": 2}}]})),
    );
    assert_eq!(
        errs,
        [
            "spec.volumes[1].name: Duplicate value: \"data\"",
            "spec.volumes[1].secret: Forbidden: may not specify more than 1 volume type",
            "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].env[1].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
            "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
        ]
    );
    let errs = check(
        "pods",
        pod(json!({"containers": [{"name": "c", "image": "i",
        "readinessProbe": {"periodSeconds": -1}}]})),
    );
    assert_eq!(
        errs,
        [
            "spec.containers[0].readinessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        ]
    );
}

#[test]
fn pod_update_rules() {
    let old = pod(json!({"containers": [{"name": "c", "image": "redis:6"}]}));
    let image_change = pod(json!({"activeDeadlineSeconds": 30,
        "containers": [{"name": "c", "image": "redis:7"}]}));
    assert_eq!(
        check_update("pods", image_change, Some(old.clone())),
        Vec::<String>::new()
    );
    let restart_change = pod(json!({"restartPolicy": "Never",
        "containers": [{"name": "c", "image": "redis:6"}]}));
    let errs = check_update("pods", restart_change, Some(old));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    ), "{}", errs[0]);
    assert!(errs[0].contains("restartPolicy"));
    let renamed = pod(json!({"containers": [{"name": "c", "image": "redis:6"}]}));
    let mut renamed_old = renamed.clone();
    renamed_old["metadata"]["name"] = json!("q");
    let errs = check_update("pods", renamed, Some(renamed_old));
    assert_eq!(
        errs,
        ["metadata.name: Invalid value: \"p\": field is immutable"]
    );
}

#[test]
fn replication_controller_rules() {
    let errs = check(
        "replicationcontrollers",
        json!({"metadata": {"name": "rc", "namespace": "default"},
        "spec": {"replicas": -1, "selector": {"app": "x"},
          "template": {"metadata": {"labels": {"app": "y"}},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}),
    );
    assert_eq!(
        errs,
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`",
            "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
        ]
    );
    let errs = check(
        "replicationcontrollers",
        json!({"metadata": {"name": "rc", "namespace": "default"},
        "spec": {"selector": {"app": "x"}}}),
    );
    assert_eq!(errs, ["spec.template: Required value"]);
}

#[test]
fn service_rules() {
    let errs = check(
        "services",
        json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"type": "Magic", "sessionAffinity": "Sticky",
          "ports": [{"port": 80, "nodePort": 30001}, {"port": 0, "name": "b"}]}}),
    );
    assert_eq!(
        errs,
        [
            "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
        ]
    );
    let errs = check(
        "services",
        json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"ports": [{"port": 80, "nodePort": 30001}], "clusterIP": "10.0.0.300"}}),
    );
    assert_eq!(
        errs,
        [
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ]
    );
    let errs = check(
        "services",
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {}}),
    );
    assert_eq!(errs, ["spec.ports: Required value"]);
    let headless =
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": {"clusterIP": "None"}});
    assert_eq!(check("services", headless), Vec::<String>::new());
    let old = json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]}});
    let new = json!({"metadata": {"name": "s", "namespace": "default"},
        "spec": {"clusterIP": "10.0.0.6", "clusterIPs": ["10.0.0.6"], "ports": [{"port": 80}]}});
    assert_eq!(
        check_update("services", new, Some(old)),
        ["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.6\"}: may not change once set"]
    );
}

#[test]
fn secret_configmap_endpoints_rules() {
    let errs = check(
        "secrets",
        json!({"metadata": {"name": "s", "namespace": "default"},
        "type": "kubernetes.io/tls", "data": {"bad/key": "eA=="}}),
    );
    assert_eq!(
        errs,
        [
            "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value",
        ]
    );
    let errs = check(
        "configmaps",
        json!({"metadata": {"name": "c", "namespace": "default"},
        "data": {"..x": "1"}}),
    );
    assert_eq!(
        errs,
        ["data[..x]: Invalid value: \"..x\": must not start with '..'"]
    );
    let errs = check(
        "endpoints",
        json!({"metadata": {"name": "e", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.1.0.999"}, {"ip": "127.0.0.1"}], "ports": [{"port": 6379}]}, {}]}),
    );
    assert_eq!(
        errs,
        [
            "subsets[0].addresses[0].ip: Invalid value: \"10.1.0.999\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].addresses[1].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
        ]
    );
}

#[test]
fn quota_limitrange_lease_binding_rules() {
    let errs = check(
        "resourcequotas",
        json!({"metadata": {"name": "q", "namespace": "default"},
        "spec": {"hard": {"pods": "-1", "cpu": "2", "services": "1500m"}}}),
    );
    assert_eq!(
        errs,
        [
            "spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.hard[services]: Invalid value: \"1500m\": must be an integer",
        ]
    );
    let errs = check(
        "limitranges",
        json!({"metadata": {"name": "l", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}),
    );
    assert_eq!(
        errs,
        [
            "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
            "spec.limits[0].defaultRequest[cpu]: Invalid value: \"1\": min value 2 is greater than default request value 1",
            "spec.limits[0].default[cpu]: Invalid value: \"2\": min value 2 is greater than default value 1",
        ]
    );
    let errs = check(
        "leases",
        json!({"metadata": {"name": "l", "namespace": "kube-system"},
        "spec": {"leaseDurationSeconds": 0}}),
    );
    assert_eq!(
        errs,
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let info = lookup("", "v1", "bindings").unwrap();
    let errs: Vec<String> = validate(info, &json!({"target": {"kind": "Pod"}}), None)
        .iter()
        .map(FieldError::to_string_with_field)
        .collect();
    assert_eq!(
        errs,
        [
            "target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\"",
            "target.name: Required value",
        ]
    );
}

#[test]
fn field_error_shape_and_status_message() {
    let e = required("spec.containers[0].image", "");
    assert_eq!(e.reason, "FieldValueRequired");
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        json!({"reason": "FieldValueRequired", "field": "spec.containers[0].image", "message": "Required value"})
    );
    assert_eq!(
        status_message("Pod", "p", std::slice::from_ref(&e)),
        "Pod \"p\" is invalid: spec.containers[0].image: Required value"
    );
    assert_eq!(
        status_message("Pod", "p", &[e.clone(), e]),
        "Pod \"p\" is invalid: [spec.containers[0].image: Required value, spec.containers[0].image: Required value]"
    );
    assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
}
