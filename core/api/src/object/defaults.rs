//! Kubernetes defaulting (`pkg/apis/core/v1/defaults.go` and friends) for the served kinds.
//!
//! Works on the JSON that [`super::decode`] produced, so every function here sees the
//! normalised shape (no nulls, known fields only). Go treats an empty string like an unset
//! string field, so "missing" below means absent or `""` for strings and absent for numbers,
//! booleans and objects.

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;

/// Fills in the fields Kubernetes defaults for this kind. Server-owned metadata (uid,
/// creationTimestamp, resourceVersion, generation) is left alone.
///
/// Namespaces get the `kubernetes` finalizer only when `spec.finalizers` is absent, so that
/// running defaults again on an update after `/finalize` emptied the list does not put it back.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    if info.group.is_empty() {
        match info.kind {
            "Pod" => pod(obj),
            "ReplicationController" => replication_controller(obj),
            "PodTemplate" => {
                if let Some(spec) = path_mut(obj, &["template", "spec"]) {
                    pod_spec(spec);
                }
            }
            "Service" => service(obj),
            "Endpoints" => endpoints(obj),
            "Namespace" => namespace(obj),
            "Secret" => secret(obj),
            "Node" => node(obj),
            "LimitRange" => limit_range(obj),
            _ => {}
        }
    }
}

/// `type` Opaque by default, and `stringData` merged into `data` (base64, winning over a key
/// of the same name) and dropped, as Kubernetes' conversion does: `stringData` is write-only.
fn secret(obj: &mut Value) {
    use base64::Engine as _;
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    default_str(o, "type", "Opaque");
    let Some(Value::Object(strings)) = o.remove("stringData") else {
        return;
    };
    let Some(data) = child(o, "data") else {
        return;
    };
    for (k, v) in strings {
        if let Value::String(text) = v {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            data.insert(k, Value::String(encoded));
        }
    }
}

fn path_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for key in path {
        cur = cur.get_mut(*key)?;
    }
    cur.as_object_mut()
}

/// The object under `key`, created empty when absent.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    m.entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

fn is_unset_str(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if is_unset_str(m, key) {
        m.insert(key.to_string(), Value::String(value.to_string()));
    }
}

fn default_value(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

fn each_mut<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    m.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn pod(obj: &mut Value) {
    let Some(spec) = path_mut(obj, &["spec"]) else {
        return;
    };
    pod_spec(spec);
    // SetDefaults_Pod: only real pods, not templates.
    for list in ["initContainers", "containers"] {
        for c in each_mut(spec, list) {
            requests_from_limits(c);
        }
    }
    default_value(spec, "enableServiceLinks", Value::Bool(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for list in ["initContainers", "containers"] {
            for c in each_mut(spec, list) {
                for p in each_mut(c, "ports") {
                    let unset = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0;
                    if unset && let Some(cp) = p.get("containerPort").cloned() {
                        p.insert("hostPort".into(), cp);
                    }
                }
            }
        }
    }
}

/// A limit without a request makes the request equal to the limit.
fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(resources) = container
        .get_mut("resources")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    if let Some(requests) = child(resources, "requests") {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// SetDefaults_PodSpec plus the defaults of everything inside a pod spec.
fn pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_value(spec, "securityContext", json!({}));
    default_value(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in each_mut(spec, list) {
            container(c);
        }
    }
    for v in each_mut(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    if is_unset_str(c, "imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if image_tag(image) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), policy.into());
    }
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    for p in each_mut(c, "ports") {
        default_str(p, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default_value(p, "timeoutSeconds", json!(1));
            default_value(p, "periodSeconds", json!(10));
            default_value(p, "successThreshold", json!(1));
            default_value(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).and_then(Value::as_object_mut) {
                handler(h);
            }
        }
    }
    for e in each_mut(c, "env") {
        if let Some(field_ref) = path_mut_map(e, &["valueFrom", "fieldRef"]) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

fn path_mut_map<'a>(
    m: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let (first, rest) = path.split_first()?;
    let mut cur = m.get_mut(*first)?;
    for key in rest {
        cur = cur.get_mut(*key)?;
    }
    cur.as_object_mut()
}

/// Probe and lifecycle handler defaults (HTTPGetAction, GRPCAction).
fn handler(h: &mut Map<String, Value>) {
    if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_str(get, "path", "/");
        default_str(get, "scheme", "HTTP");
    }
    if let Some(grpc) = h.get_mut("grpc").and_then(Value::as_object_mut) {
        default_value(grpc, "service", json!(""));
    }
}

/// The tag Kubernetes' image parser finds: `latest` when there is neither tag nor digest,
/// `None` when there is only a digest.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

/// Volume source keys (every field of VolumeSource).
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// The volume source fields a volume sets.
pub(crate) fn volume_sources(v: &Map<String, Value>) -> Vec<&'static str> {
    VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|k| v.get(*k).is_some_and(|s| !s.is_null()))
        .collect()
}

fn volume(v: &mut Map<String, Value>) {
    if volume_sources(v).is_empty() {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            default_value(s, "defaultMode", json!(420));
        }
    }
    if let Some(items) = v.get_mut("downwardAPI").and_then(Value::as_object_mut) {
        downward_items(items);
    }
    if let Some(projected) = v.get_mut("projected").and_then(Value::as_object_mut) {
        for source in each_mut(projected, "sources") {
            if let Some(d) = source.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                downward_items(d);
            }
        }
    }
    if let Some(host_path) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default_value(host_path, "type", json!(""));
    }
    if let Some(iscsi) = v.get_mut("iscsi").and_then(Value::as_object_mut) {
        default_str(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = v.get_mut("rbd").and_then(Value::as_object_mut) {
        default_str(rbd, "pool", "rbd");
        default_str(rbd, "user", "admin");
        default_str(rbd, "keyring", "/etc/ceph/keyring");
    }
}

fn downward_items(d: &mut Map<String, Value>) {
    for item in each_mut(d, "items") {
        if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

fn replication_controller(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = path_mut(obj, &["spec"]) {
            let empty = spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                spec.insert("selector".into(), Value::Object(labels.clone()));
            }
        }
        if let Some(meta) = obj.as_object_mut().and_then(|o| child(o, "metadata")) {
            let empty = meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
            if empty {
                meta.insert("labels".into(), Value::Object(labels));
            }
        }
    }
    if let Some(spec) = path_mut(obj, &["spec"]) {
        default_value(spec, "replicas", json!(1));
        if let Some(pod) = path_mut_map(spec, &["template", "spec"]) {
            pod_spec(pod);
        }
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = path_mut(obj, &["spec"]) else {
        return;
    };
    default_str(spec, "sessionAffinity", "None");
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some();
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    default_str(spec, "type", "ClusterIP");
    for p in each_mut(spec, "ports") {
        default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset && let Some(port) = p.get("port").cloned() {
            p.insert("targetPort".into(), port);
        }
    }
    let svc_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer") {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        default_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if svc_type == "LoadBalancer" {
        default_value(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

fn endpoints(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    for subset in each_mut(o, "subsets") {
        for p in each_mut(subset, "ports") {
            default_str(p, "protocol", "TCP");
        }
    }
}

fn namespace(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let name = o
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Since 1.22 every namespace carries its own name as a label, for namespace selectors.
    if !name.is_empty()
        && let Some(labels) = child(o, "metadata").and_then(|m| child(m, "labels"))
    {
        labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
    }
    if let Some(spec) = child(o, "spec") {
        default_value(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child(o, "status") {
        default_str(status, "phase", "Active");
    }
}

fn node(obj: &mut Value) {
    let Some(status) = path_mut(obj, &["status"]) else {
        return;
    };
    if status.get("allocatable").is_none()
        && let Some(capacity) = status.get("capacity").cloned()
    {
        status.insert("allocatable".into(), capacity);
    }
}

/// SetDefaults_LimitRangeItem: for Container items, default limit from max, then default
/// request from the default limit, then from min.
fn limit_range(obj: &mut Value) {
    let Some(spec) = path_mut(obj, &["spec"]) else {
        return;
    };
    for item in each_mut(spec, "limits") {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Map<String, Value>, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let max = get(item, "max");
        let min = get(item, "min");
        let mut default = get(item, "default");
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        for (k, v) in &default {
            default_request.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in min {
            default_request.entry(k).or_insert(v);
        }
        // Go omits empty maps, so an item with nothing to default stays as it was.
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !default_request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(default_request));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::object::decode;
    use crate::registry::lookup;

    fn defaulted(plural: &str, body: Value) -> Value {
        let info = lookup("", "v1", plural).unwrap();
        let mut v = decode(info, &body).unwrap().value;
        apply_defaults(info, &mut v);
        v
    }

    #[test]
    fn guestbook_redis_master_controller() {
        let rc = defaulted(
            "replicationcontrollers",
            json!({
                "apiVersion": "v1", "kind": "ReplicationController",
                "metadata": {"name": "redis-master", "labels": {"name": "redis-master"}},
                "spec": {"replicas": 1, "selector": {"name": "redis-master"},
                  "template": {"metadata": {"labels": {"name": "redis-master"}},
                    "spec": {"containers": [{"name": "master", "image": "redis",
                      "ports": [{"containerPort": 6379}]}]}}}
            }),
        );
        let spec = &rc["spec"]["template"]["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        // Templates do not get the pod-only defaults.
        assert!(spec.get("enableServiceLinks").is_none());
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(
            c["ports"][0],
            json!({"containerPort": 6379, "protocol": "TCP"})
        );
    }

    #[test]
    fn rc_selector_and_labels_from_template() {
        let rc = defaulted(
            "replicationcontrollers",
            json!({"metadata": {"name": "frontend"},
              "spec": {"template": {"metadata": {"labels": {"name": "frontend"}},
                "spec": {"containers": [{"name": "php-redis",
                  "image": "kubernetes/example-guestbook-php-redis:v2"}]}}}}),
        );
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"name": "frontend"}));
        assert_eq!(rc["metadata"]["labels"], json!({"name": "frontend"}));
        assert_eq!(
            rc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn guestbook_services() {
        let svc = defaulted(
            "services",
            json!({"metadata": {"name": "redis-slave", "labels": {"name": "redis-slave"}},
              "spec": {"ports": [{"port": 6379}], "selector": {"name": "redis-slave"}}}),
        );
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
        assert!(svc["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 6379, "protocol": "TCP", "targetPort": 6379})
        );
        let svc = defaulted(
            "services",
            json!({"metadata": {"name": "frontend"},
              "spec": {"type": "NodePort", "sessionAffinity": "ClientIP",
                "ports": [{"port": 80, "nodePort": 30001}], "selector": {"name": "frontend"}}}),
        );
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(
            svc["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    }

    #[test]
    fn pod_defaults() {
        let pod = defaulted(
            "pods",
            json!({"metadata": {"name": "p"},
              "spec": {"hostNetwork": true,
                "containers": [{"name": "c", "image": "busybox@sha256:abc",
                  "ports": [{"containerPort": 8080}],
                  "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "1Mi"}},
                  "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                  "livenessProbe": {"httpGet": {"port": 80}},
                  "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}}],
                "volumes": [{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}},
                  {"name": "c", "configMap": {"name": "cm"}}]}}),
        );
        let spec = &pod["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Mi"})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
              "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(spec["volumes"][0], json!({"name": "a", "emptyDir": {}}));
        assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(spec["volumes"][2]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("redis"), Some("latest"));
        assert_eq!(image_tag("redis:latest"), Some("latest"));
        assert_eq!(image_tag("localhost:5000/redis"), Some("latest"));
        assert_eq!(image_tag("localhost:5000/redis:7"), Some("7"));
        assert_eq!(image_tag("redis@sha256:00"), None);
        assert_eq!(image_tag("redis:7@sha256:00"), Some("7"));
    }

    #[test]
    fn namespace_secret_node_endpoints_limitrange() {
        let ns = defaulted("namespaces", json!({"metadata": {"name": "dev"}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );

        let secret = defaulted("secrets", json!({"metadata": {"name": "s"}}));
        assert_eq!(secret["type"], "Opaque");
        let secret = defaulted(
            "secrets",
            json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eQ=="},
                   "stringData": {"b": "two", "c": "three"}}),
        );
        assert_eq!(
            secret["data"],
            json!({"a": "eA==", "b": "dHdv", "c": "dGhyZWU="})
        );
        assert!(secret.get("stringData").is_none(), "{secret}");

        let node = defaulted(
            "nodes",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "110"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "2", "pods": "110"})
        );

        let ep = defaulted(
            "endpoints",
            json!({"metadata": {"name": "e"},
              "subsets": [{"addresses": [{"ip": "10.1.0.2"}], "ports": [{"port": 6379}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");

        let lr = defaulted(
            "limitranges",
            json!({"metadata": {"name": "l"}, "spec": {"limits": [
              {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m", "memory": "4Mi"},
               "default": {"cpu": "1"}},
              {"type": "Pod", "max": {"cpu": "4"}}]}}),
        );
        let item = &lr["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(item["defaultRequest"], json!({"cpu": "1", "memory": "1Gi"}));
        assert!(lr["spec"]["limits"][1].get("default").is_none());
    }
}
