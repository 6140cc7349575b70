//! Bodies are built as client-go writes them: the message filled field by field from a
//! description by proto field names (with the zero values Go writes for non-pointer fields),
//! encoded by prost, wrapped in the `runtime.Unknown` envelope.

use base64::Engine;
use prost_reflect::prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};
use serde_json::{Value as JsonValue, json};

use super::*;

const TIME_2026: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z

fn body(api_version: &str, kind: &str, message: &str, description: JsonValue) -> Vec<u8> {
    let object = build(json::message(message), &description);
    let mut type_meta = DynamicMessage::new(json::message("apimachinery.pkg.runtime.TypeMeta"));
    type_meta.set_field_by_name("apiVersion", Value::String(api_version.to_owned()));
    type_meta.set_field_by_name("kind", Value::String(kind.to_owned()));
    let mut unknown = DynamicMessage::new(json::message(json::UNKNOWN));
    unknown.set_field_by_name("typeMeta", Value::Message(type_meta));
    unknown.set_field_by_name("raw", Value::Bytes(object.encode_to_vec().into()));
    unknown.set_field_by_name("contentEncoding", Value::String(String::new()));
    unknown.set_field_by_name("contentType", Value::String(String::new()));
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// `description` (proto field names; bytes in base64; `null` for unset) as a message.
fn build(descriptor: MessageDescriptor, description: &JsonValue) -> DynamicMessage {
    let mut message = DynamicMessage::new(descriptor.clone());
    for (name, value) in description.as_object().expect("a message is an object") {
        let field = descriptor
            .get_field_by_name(name)
            .unwrap_or_else(|| panic!("{} has no field {name}", descriptor.full_name()));
        if value.is_null() {
            continue;
        }
        let value = if field.is_map() {
            let entry = field.kind();
            let value_field = entry
                .as_message()
                .expect("map entry")
                .map_entry_value_field();
            let entries = value.as_object().expect("a map is an object").iter();
            Value::Map(
                entries
                    .map(|(k, v)| (MapKey::String(k.clone()), single(&value_field, v)))
                    .collect(),
            )
        } else if field.is_list() {
            Value::List(
                value
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|v| single(&field, v))
                    .collect(),
            )
        } else {
            single(&field, value)
        };
        message.set_field(&field, value);
    }
    message
}

fn single(field: &FieldDescriptor, value: &JsonValue) -> Value {
    let int = || {
        value
            .as_i64()
            .unwrap_or_else(|| panic!("{}: {value} is not an integer", field.full_name()))
    };
    match field.kind() {
        Kind::String => Value::String(value.as_str().expect("a string").to_owned()),
        Kind::Bytes => {
            let text = value.as_str().expect("base64");
            Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .expect("base64")
                    .into(),
            )
        }
        Kind::Bool => Value::Bool(value.as_bool().expect("a bool")),
        Kind::Int32 => Value::I32(i32::try_from(int()).expect("an int32")),
        Kind::Int64 => Value::I64(int()),
        Kind::Double => Value::F64(value.as_f64().expect("a number")),
        Kind::Message(descriptor) => Value::Message(build(descriptor, value)),
        kind => panic!("{}: {kind:?} is not used by Kubernetes", field.full_name()),
    }
}

/// `ObjectMeta` as Go writes it for a new object: every non-pointer field, zero.
fn new_meta(name: &str) -> JsonValue {
    json!({
        "name": name, "generateName": "", "namespace": "", "selfLink": "", "uid": "",
        "resourceVersion": "", "generation": 0, "creationTimestamp": {},
    })
}

fn decoded(api_version: &str, kind: &str, message: &str, description: JsonValue) -> JsonValue {
    decode(&body(api_version, kind, message, description)).expect("decodes")
}

#[test]
fn namespace_drops_go_zero_values_and_keeps_empty_messages() {
    let got = decoded(
        "v1",
        "Namespace",
        "api.core.v1.Namespace",
        json!({"metadata": new_meta("a"), "spec": {}, "status": {"phase": ""}}),
    );
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {}, "status": {}})
    );
    let keys: Vec<_> = got.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys[..2], ["apiVersion", "kind"]);
}

#[test]
fn configmap_data_is_an_object_with_empty_values_kept() {
    let mut meta = new_meta("c");
    meta["labels"] = json!({"app": "web", "tier": ""});
    meta["namespace"] = json!("default");
    let got = decoded(
        "v1",
        "ConfigMap",
        "api.core.v1.ConfigMap",
        json!({"metadata": meta, "data": {"k": "v", "empty": ""}, "binaryData": {"bin": "AAH/"}}),
    );
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "labels": {"app": "web", "tier": ""}},
            "data": {"empty": "", "k": "v"},
            "binaryData": {"bin": "AAH/"},
        })
    );
}

#[test]
fn secret_bytes_are_base64_and_pointer_false_is_kept() {
    let got = decoded(
        "v1",
        "Secret",
        "api.core.v1.Secret",
        json!({"metadata": new_meta("s"), "data": {"k": "dg==", "raw": "AAEC/w=="}, "type": "Opaque", "immutable": false}),
    );
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "immutable": false, "data": {"k": "dg==", "raw": "AAEC/w=="}, "type": "Opaque",
        })
    );
}

#[test]
fn service_ports_with_node_port_and_int_or_string_target_ports() {
    let port = |name: &str, port: i32, target: JsonValue, node_port: i32| {
        json!({
            "name": name, "protocol": "TCP", "appProtocol": null,
            "port": port, "targetPort": target, "nodePort": node_port,
        })
    };
    let got = decoded(
        "v1",
        "Service",
        "api.core.v1.Service",
        json!({
            "metadata": new_meta("n"),
            "spec": {
                "ports": [
                    port("80-8080", 80, json!({"type": 0, "intVal": 8080, "strVal": ""}), 30080),
                    port("https", 443, json!({"type": 1, "intVal": 0, "strVal": "https"}), 0),
                    port("", 53, json!({"type": 0, "intVal": 0, "strVal": ""}), 0),
                ],
                "selector": {"app": "n"}, "clusterIP": "", "type": "NodePort", "sessionAffinity": "",
                "publishNotReadyAddresses": false, "healthCheckNodePort": 0,
            },
            "status": {"loadBalancer": {}},
        }),
    );
    assert_eq!(
        got["spec"],
        json!({
            "ports": [
                {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"},
                {"protocol": "TCP", "port": 53},
            ],
            "selector": {"app": "n"}, "type": "NodePort",
        })
    );
    assert_eq!(got["status"], json!({"loadBalancer": {}}));
}

#[test]
fn pod_with_resources_env_probes_and_times() {
    let probe = json!({
        "handler": {"httpGet": {"path": "/healthz", "port": {"type": 0, "intVal": 8080}, "host": "", "scheme": "HTTP"}},
        "initialDelaySeconds": 0, "timeoutSeconds": 0, "periodSeconds": 10, "successThreshold": 0, "failureThreshold": 3,
    });
    let container = json!({
        "name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 1d"], "workingDir": "",
        "ports": [{"name": "", "hostPort": 0, "containerPort": 80, "protocol": "TCP", "hostIP": ""}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "EMPTY", "value": ""},
            {"name": "POD", "value": "", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"localObjectReference": {"name": "db"}, "key": "password", "optional": false}}},
        ],
        "resources": {
            "limits": {"cpu": {"string": "500m"}, "memory": {"string": "128Mi"}},
            "requests": {"cpu": {"string": "100m"}},
        },
        "livenessProbe": probe,
        "readinessProbe": {"handler": {"exec": {"command": ["true"]}}, "periodSeconds": 5},
        "terminationMessagePath": "", "imagePullPolicy": "", "securityContext": {"runAsUser": 0, "privileged": false},
        "stdin": false, "stdinOnce": false, "tty": false,
    });
    let mut meta = new_meta("p");
    meta["creationTimestamp"] = json!({"seconds": TIME_2026, "nanos": 0});
    meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ReplicationController", "name": "rc", "uid": "u1", "controller": true}]);
    let got = decoded(
        "v1",
        "Pod",
        "api.core.v1.Pod",
        json!({
            "metadata": meta,
            "spec": {
                "containers": [container], "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "dnsPolicy": "ClusterFirst", "serviceAccountName": "", "nodeName": "", "hostNetwork": false,
                "schedulerName": "", "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": {}, "lastTransitionTime": {"seconds": TIME_2026, "nanos": 5}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "", "started": false}],
            },
        }),
    );
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "creationTimestamp": "2026-01-02T03:04:05Z",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController", "name": "rc", "uid": "u1", "controller": true}],
            },
            "spec": {
                "containers": [{
                    "name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 1d"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "EMPTY"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password", "optional": false}}},
                    ],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                        "periodSeconds": 10, "failureThreshold": 3,
                    },
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                    "securityContext": {"privileged": false, "runAsUser": 0},
                }],
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "dnsPolicy": "ClusterFirst",
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "", "started": false}],
            },
        })
    );
}

#[test]
fn pod_volumes_inline_their_source() {
    let got = decoded(
        "v1",
        "Pod",
        "api.core.v1.Pod",
        json!({"metadata": new_meta("p"), "spec": {"containers": [{"name": "c"}], "volumes": [
            {"name": "cfg", "volumeSource": {"configMap": {"localObjectReference": {"name": "c"}, "defaultMode": 420}}},
            {"name": "tmp", "volumeSource": {"emptyDir": {"medium": "", "sizeLimit": {"string": "1Gi"}}}},
        ]}}),
    );
    assert_eq!(
        got["spec"]["volumes"],
        json!([
            {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ])
    );
}

#[test]
fn lease_micro_times_keep_microseconds() {
    let got = decoded(
        "coordination.k8s.io/v1",
        "Lease",
        "api.coordination.v1.Lease",
        json!({"metadata": new_meta("node-1"), "spec": {
            "holderIdentity": "node-1", "leaseDurationSeconds": 40,
            "renewTime": {"seconds": TIME_2026, "nanos": 123_456_789},
            "acquireTime": {"seconds": TIME_2026, "nanos": 0},
        }}),
    );
    assert_eq!(
        got["spec"],
        json!({
            "holderIdentity": "node-1", "leaseDurationSeconds": 40,
            "acquireTime": "2026-01-02T03:04:05.000000Z", "renewTime": "2026-01-02T03:04:05.123456Z",
        })
    );
}

#[test]
fn delete_options_come_from_meta_v1_in_any_group_version() {
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let got = decoded(
            api_version,
            "DeleteOptions",
            "apimachinery.pkg.apis.meta.v1.DeleteOptions",
            json!({"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]}),
        );
        assert_eq!(
            got,
            json!({
                "apiVersion": api_version, "kind": "DeleteOptions",
                "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"],
            })
        );
    }
}

#[test]
fn eviction_token_request_scale_and_binding() {
    let eviction = decoded(
        "policy/v1",
        "Eviction",
        "api.policy.v1.Eviction",
        json!({"metadata": new_meta("p"), "deleteOptions": {"gracePeriodSeconds": 30}}),
    );
    assert_eq!(eviction["deleteOptions"], json!({"gracePeriodSeconds": 30}));
    let token = decoded(
        "authentication.k8s.io/v1",
        "TokenRequest",
        "api.authentication.v1.TokenRequest",
        json!({"metadata": new_meta("sa"), "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uID": "u1"}}, "status": {"token": "", "expirationTimestamp": {}}}),
    );
    assert_eq!(
        token["spec"],
        json!({"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"}})
    );
    assert_eq!(token["status"], json!({"token": ""}));
    let scale = decoded(
        "autoscaling/v1",
        "Scale",
        "api.autoscaling.v1.Scale",
        json!({"metadata": new_meta("web"), "spec": {"replicas": 0}, "status": {"replicas": 0, "selector": ""}}),
    );
    assert_eq!(scale["spec"], json!({"replicas": 0}));
    let binding = decoded(
        "v1",
        "Binding",
        "api.core.v1.Binding",
        json!({"metadata": new_meta("p"), "target": {"kind": "Node", "name": "n1", "namespace": "", "apiVersion": ""}}),
    );
    assert_eq!(binding["target"], json!({"kind": "Node", "name": "n1"}));
}

#[test]
fn raw_extensions_carry_their_json() {
    let got = decoded(
        "apps/v1",
        "ControllerRevision",
        "api.apps.v1.ControllerRevision",
        json!({"metadata": new_meta("r"), "data": {"raw": "eyJzcGVjIjp7fX0="}, "revision": 2}),
    );
    assert_eq!(got["data"], json!({"spec": {}}));
    assert_eq!(got["revision"], json!(2));
}

#[test]
fn every_required_kind_has_a_message() {
    let kinds = [
        ("v1", "Pod"),
        ("v1", "ReplicationController"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "Node"),
        ("v1", "Namespace"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("v1", "Event"),
        ("v1", "LimitRange"),
        ("v1", "ResourceQuota"),
        ("v1", "PodTemplate"),
        ("v1", "Binding"),
        ("coordination.k8s.io/v1", "Lease"),
        ("policy/v1", "Eviction"),
        ("autoscaling/v1", "Scale"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("v1", "DeleteOptions"),
        ("apps/v1", "Deployment"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io/v1", "APIService"),
        ("events.k8s.io/v1", "Event"),
    ];
    for (api_version, kind) in kinds {
        let body = body(api_version, kind, "api.core.v1.Namespace", json!({}));
        let got = decode(&body).unwrap_or_else(|err| panic!("{api_version} {kind}: {err}"));
        assert_eq!(got, json!({"apiVersion": api_version, "kind": kind}));
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let cases = [
        (
            b"{\"kind\":\"Pod\"}".to_vec(),
            "protobuf: missing k8s magic prefix",
        ),
        (
            body("v1", "Foo", "api.core.v1.Namespace", json!({})),
            "protobuf: unknown kind v1/Foo",
        ),
        (
            body("v1", "Time", "api.core.v1.Namespace", json!({})),
            "protobuf: unknown kind v1/Time",
        ),
        (
            body("", "Pod", "api.core.v1.Namespace", json!({})),
            "protobuf: envelope has no apiVersion or kind",
        ),
        (
            b"k8s\0\xff".to_vec(),
            "protobuf: malformed runtime.Unknown envelope: ",
        ),
    ];
    for (body, want) in cases {
        let err = decode(&body).expect_err(want).to_string();
        assert!(err.starts_with(want), "{err:?} should start with {want:?}");
    }
    let mut truncated = body(
        "v1",
        "Pod",
        "api.core.v1.Pod",
        json!({"metadata": new_meta("p")}),
    );
    truncated.truncate(truncated.len() - 3);
    let err = decode(&truncated).expect_err("truncated").to_string();
    assert!(err.starts_with("protobuf: malformed"), "{err}");
}
