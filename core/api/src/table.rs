//! Server-side printing: the `Table` columns and cells `kubectl get` shows for each kind.
//!
//! Column names, types and priorities (`priority: 1` columns appear with `-o wide`) follow
//! Kubernetes' `pkg/printers/internalversion`; kinds without a printer there (LimitRange,
//! Binding) get the default convertor's `Name`/`Created At`. Cells are JSON values as the
//! Table carries them: strings, or integers where Kubernetes puts an `int64`.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::object::quantity;
use crate::registry::ResourceInfo;

/// A `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    /// Header as Kubernetes names it (kubectl upper-cases it).
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// `name` for the object name column, empty otherwise.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 for the default view, 1 for columns only `-o wide` shows.
    pub priority: i32,
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);

/// The columns of `info`'s table.
pub fn columns(info: &ResourceInfo) -> Vec<Column> {
    match (info.group, info.kind) {
        ("", "Pod") => vec![
            NAME,
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            wide(
                "IP",
                "string",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            wide(
                "Node",
                "string",
                "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
            ),
            wide(
                "Nominated Node",
                "string",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
            ),
            wide(
                "Readiness Gates",
                "string",
                "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
            ),
        ],
        ("", "ReplicationController") => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            col(
                "Current",
                "integer",
                "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller",
            ),
            col(
                "Ready",
                "integer",
                "The number of ready replicas for this replication controller.",
            ),
            AGE,
            wide("Containers", "string", CONTAINERS_DESC),
            wide("Images", "string", IMAGES_DESC),
            wide(
                "Selector",
                "string",
                "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            ),
        ],
        ("", "PodTemplate") => vec![
            NAME,
            col("Containers", "string", CONTAINERS_DESC),
            col("Images", "string", IMAGES_DESC),
            col("Pod Labels", "string", "The labels for the pod template."),
        ],
        ("", "Service") => vec![
            NAME,
            col(
                "Type",
                "string",
                "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
            ),
            col(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            col(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.",
            ),
            col(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/",
            ),
        ],
        ("", "Endpoints") => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
            ),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "External-IP",
                "string",
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            wide(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "Namespace") => vec![
            NAME,
            col("Status", "string", "The status of the namespace"),
            AGE,
        ],
        ("", "Secret") => vec![
            NAME,
            col(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
            ),
            col(
                "Data",
                "string",
                "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
            ),
            AGE,
        ],
        ("", "ServiceAccount") => vec![
            NAME,
            col(
                "Secrets",
                "string",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            col(
                "Data",
                "string",
                "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
            ),
            AGE,
        ],
        ("", "Event") => vec![
            col(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            col(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            col(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            col("Object", "string", "The object that this event is about."),
            wide(
                "Subobject",
                "string",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
            ),
            wide(
                "Source",
                "string",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "string",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            wide(
                "Count",
                "string",
                "The number of times this event has occurred.",
            ),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            AGE,
            col(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            col(
                "Holder",
                "string",
                "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
            ),
            AGE,
        ],
        // The default table convertor (LimitRange, Binding, anything without a printer).
        _ => vec![NAME, col("Created At", "date", AGE_DESC)],
    }
}

/// The cells of one object's row, one per column of [`columns`].
pub fn cells(info: &ResourceInfo, obj: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(text(obj, "/metadata/name"));
    let age = json!(since(obj.pointer("/metadata/creationTimestamp"), now));
    match (info.group, info.kind) {
        ("", "Pod") => pod_cells(obj, now),
        ("", "ReplicationController") => {
            let (names, images) = container_cells(obj.pointer("/spec/template/spec/containers"));
            vec![
                name,
                json!(int(obj, "/spec/replicas")),
                json!(int(obj, "/status/replicas")),
                json!(int(obj, "/status/readyReplicas")),
                age,
                json!(names),
                json!(images),
                json!(format_labels(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "PodTemplate") => {
            let (names, images) = container_cells(obj.pointer("/template/spec/containers"));
            vec![
                name,
                json!(names),
                json!(images),
                json!(format_labels(obj.pointer("/template/metadata/labels"))),
            ]
        }
        ("", "Service") => service_cells(obj, name, age),
        ("", "Endpoints") => vec![name, json!(format_endpoints(obj)), age],
        ("", "Node") => node_cells(obj, name, age),
        ("", "Namespace") => vec![name, json!(text(obj, "/status/phase")), age],
        ("", "Secret") => vec![
            name,
            json!(text(obj, "/type")),
            json!(len(obj, "/data")),
            age,
        ],
        ("", "ServiceAccount") => vec![name, json!(len(obj, "/secrets")), age],
        ("", "ConfigMap") => vec![
            name,
            json!(len(obj, "/data") + len(obj, "/binaryData")),
            age,
        ],
        ("", "Event") => event_cells(obj, now),
        ("", "ResourceQuota") => {
            let (request, limit) = quota_columns(obj);
            vec![name, age, json!(request), json!(limit)]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name, json!(text(obj, "/spec/holderIdentity")), age]
        }
        _ => {
            let created = obj
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
                .map_or_else(
                    || "0001-01-01T00:00:00Z".to_string(),
                    |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
            vec![name, json!(created)]
        }
    }
}

/// `TableRow.conditions` for the row, where Kubernetes sets any: a pod that has finished is
/// marked `Completed` (kubectl hides such rows unless `--show-all`/`-a` in old versions).
pub fn row_conditions(info: &ResourceInfo, obj: &Value) -> Option<Value> {
    if info.group.is_empty() && info.kind == "Pod" {
        let (reason, message) = match text(obj, "/status/phase") {
            "Succeeded" => ("Succeeded", "The pod has completed successfully."),
            "Failed" => ("Failed", "The pod failed."),
            _ => return None,
        };
        return Some(json!([{
            "type": "Completed", "status": "True", "reason": reason, "message": message
        }]));
    }
    None
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn len(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn list<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn parse_time(v: Option<&Value>) -> Option<Timestamp> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Timestamp>().ok())
}

/// translateTimestampSince: `<unknown>` for an unset time, else the human duration.
fn since(v: Option<&Value>, now: Timestamp) -> String {
    match parse_time(v) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// Kubernetes' `duration.HumanDuration`: about two significant figures.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// labels.FormatLabels: `k=v,...` sorted by key, `<none>` when empty.
fn format_labels(v: Option<&Value>) -> String {
    let Some(map) = v.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, &str)> = map
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// layoutContainerCells: names and images, comma separated.
fn container_cells(containers: Option<&Value>) -> (String, String) {
    let items = containers
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&str> = items.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = items.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn condition_true(obj: &Value, pointer: &str, kind: &str) -> bool {
    list(obj, pointer)
        .iter()
        .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// printPod: READY, STATUS, RESTARTS as kubectl shows them.
fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec_init = list(pod, "/spec/initContainers");
    let restartable_init = |name: &str| {
        spec_init
            .iter()
            .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
    };
    let total = list(pod, "/spec/containers").len()
        + spec_init
            .iter()
            .filter(|c| text(c, "/restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if list(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let later = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let finished = |c: &Value| parse_time(c.pointer("/lastState/terminated/finishedAt"));

    let init_statuses = list(pod, "/status/initContainerStatuses");
    let mut initializing = false;
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += int(c, "/restartCount");
        last_restart = later(last_restart, finished(c));
        let sidecar = restartable_init(text(c, "/name"));
        if sidecar {
            sidecar_restarts += int(c, "/restartCount");
            last_sidecar_restart = later(last_sidecar_restart, finished(c));
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = text(c, "/state/waiting/reason");
        if terminated.is_some() && int(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some() {
            let r = text(c, "/state/terminated/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if int(c, "/state/terminated/signal") != 0 {
                format!("Init:Signal:{}", int(c, "/state/terminated/signal"))
            } else {
                format!("Init:ExitCode:{}", int(c, "/state/terminated/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "/status/conditions", "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            last_restart = later(last_restart, finished(c));
            let waiting = text(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            let terminated_reason = text(c, "/state/terminated/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_some() && !terminated_reason.is_empty() {
                reason = terminated_reason.to_string();
            } else if terminated.is_some() {
                let signal = int(c, "/state/terminated/signal");
                reason = if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", int(c, "/state/terminated/exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "/status/conditions", "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let pod_ip = match text(pod, "/status/podIPs/0/ip") {
        "" => text(pod, "/status/podIP"),
        ip => ip,
    };
    let gates = list(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(pod, "/status/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = text(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| text(c, "/type") == t)
                    .is_some_and(|c| text(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(text(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(since(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let svc_type = text(svc, "/spec/type");
    let cluster_ip = match text(svc, "/spec/clusterIPs/0") {
        "" => match text(svc, "/spec/clusterIP") {
            "" => "<none>",
            ip => ip,
        },
        ip => ip,
    };
    let external_ips: Vec<&str> = list(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_string()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut seen = BTreeSet::new();
            let lb: Vec<&str> = list(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| match text(i, "/ip") {
                    "" => text(i, "/hostname"),
                    ip => ip,
                })
                .filter(|s| !s.is_empty() && seen.insert(*s))
                .collect();
            let mut all: Vec<&str> = lb.clone();
            all.extend(&external_ips);
            if !external_ips.is_empty() {
                all.join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let port = int(p, "/port");
            let protocol = text(p, "/protocol");
            match int(p, "/nodePort") {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        name,
        json!(svc_type),
        json!(cluster_ip),
        json!(external),
        json!(ports),
        age,
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

/// formatEndpoints: up to three `ip:port`, then ` + N more...`.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut shown: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = list(ss, "/addresses");
        let ports = list(ss, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                let ip = text(a, "/ip");
                let port = int(p, "/port");
                shown.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| text(c, "/type") == "Ready")
    {
        status.push(if text(ready, "/status") == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        status.push("SchedulingDisabled".to_string());
    }
    let mut roles = BTreeSet::new();
    for (k, v) in node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role"
            && let Some(v) = v.as_str().filter(|v| !v.is_empty())
        {
            roles.insert(v.to_string());
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |kind: &str| {
        list(node, "/status/addresses")
            .iter()
            .find(|a| text(a, "/type") == kind)
            .map_or("<none>", |a| text(a, "/address"))
            .to_string()
    };
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        name,
        json!(status.join(",")),
        json!(roles),
        age,
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn event_cells(ev: &Value, now: Timestamp) -> Vec<Value> {
    let first = if parse_time(ev.get("firstTimestamp")).is_some() {
        since(ev.get("firstTimestamp"), now)
    } else {
        since(ev.get("eventTime"), now)
    };
    let mut last = if parse_time(ev.get("lastTimestamp")).is_some() {
        since(ev.get("lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = int(ev, "/count");
    if let Some(series) = ev.get("series") {
        last = since(series.get("lastObservedTime"), now);
        count = int(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = text(ev, "/involvedObject/kind").to_ascii_lowercase();
    let involved_name = text(ev, "/involvedObject/name");
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        text(ev, "/source/component"),
        text(ev, "/reportingComponent"),
    );
    let instance = first_non_empty(text(ev, "/source/host"), text(ev, "/reportingInstance"));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(text(ev, "/type")),
        json!(text(ev, "/reason")),
        json!(target),
        json!(text(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(ev, "/message").trim()),
        json!(first),
        json!(count),
        json!(text(ev, "/metadata/name")),
    ]
}

/// printResourceQuota: `resource: used/hard` from status, limits.* in the LIMIT column.
fn quota_columns(rq: &Value) -> (String, String) {
    let hard = rq.pointer("/status/hard").and_then(Value::as_object);
    let mut names: Vec<&String> = hard.into_iter().flatten().map(|(k, _)| k).collect();
    names.sort();
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for name in names {
        let canonical = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map_or_else(|| "0".to_string(), quantity::canonical)
        };
        let used = canonical(
            rq.pointer("/status/used")
                .and_then(|u| u.get(name.as_str())),
        );
        let hard_q = canonical(hard.and_then(|h| h.get(name.as_str())));
        let entry = format!("{name}: {used}/{hard_q}");
        let is_limit = name.split('.').count() > 1 && name.split('.').next() == Some("limits");
        if is_limit {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    (request.join(", "), limit.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::{lookup, resources};

    fn now() -> Timestamp {
        "2024-01-01T12:00:00Z".parse().unwrap()
    }

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 3 * 60, "5h3m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 5 * 3600, "3d5h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(secs(s)), want, "{s}");
        }
    }

    #[test]
    fn every_kind_has_matching_columns_and_cells() {
        for r in resources() {
            let cols = columns(r);
            let row = cells(r, &json!({"metadata": {"name": "x"}}), now());
            assert_eq!(cols.len(), row.len(), "{}", r.plural);
            assert!(cols.iter().any(|c| c.format == "name"), "{}", r.plural);
        }
    }

    #[test]
    fn pod_rows() {
        let pods = lookup("", "v1", "pods").unwrap();
        let cols: Vec<(&str, i32)> = columns(pods).iter().map(|c| (c.name, c.priority)).collect();
        assert_eq!(
            cols,
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
        );
        let pending = json!({"metadata": {"name": "redis-master-x", "creationTimestamp": "2024-01-01T11:59:55Z"},
            "spec": {"containers": [{"name": "master", "image": "redis"}]},
            "status": {"phase": "Pending"}});
        assert_eq!(
            cells(pods, &pending, now()),
            [
                json!("redis-master-x"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("5s"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let running = json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T11:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
              "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 3, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T11:55:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let row = cells(pods, &running, now());
        assert_eq!(row[1], "1/2");
        assert_eq!(row[2], "CrashLoopBackOff");
        assert_eq!(row[3], "3 (5m ago)");
        assert_eq!(row[4], "60m");
        assert_eq!(row[5], "10.1.0.5");
        assert_eq!(row[6], "n1");
        let completed = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "a", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(cells(pods, &completed, now())[2], "Completed");
        assert_eq!(
            row_conditions(pods, &completed).unwrap()[0]["type"],
            "Completed"
        );
        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running"}});
        assert_eq!(cells(pods, &deleting, now())[2], "Terminating");
        let init = json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "restartCount": 0, "state": {"running": {}}}]}});
        assert_eq!(cells(pods, &init, now())[2], "Init:1/2");
    }

    #[test]
    fn rc_service_endpoints_rows() {
        let rcs = lookup("", "v1", "replicationcontrollers").unwrap();
        let rc = json!({"metadata": {"name": "frontend", "creationTimestamp": "2024-01-01T11:57:00Z"},
            "spec": {"replicas": 3, "selector": {"name": "frontend"},
              "template": {"spec": {"containers": [{"name": "php-redis", "image": "kubernetes/example-guestbook-php-redis:v2"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            cells(rcs, &rc, now()),
            [
                json!("frontend"),
                json!(3),
                json!(3),
                json!(2),
                json!("3m"),
                json!("php-redis"),
                json!("kubernetes/example-guestbook-php-redis:v2"),
                json!("name=frontend")
            ]
        );
        let svcs = lookup("", "v1", "services").unwrap();
        let svc = json!({"metadata": {"name": "frontend"},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"],
              "ports": [{"port": 80, "nodePort": 30001, "protocol": "TCP"}], "selector": {"name": "frontend"}}});
        let row = cells(svcs, &svc, now());
        assert_eq!(
            row,
            [
                json!("frontend"),
                json!("NodePort"),
                json!("10.0.0.12"),
                json!("<none>"),
                json!("80:30001/TCP"),
                json!("<unknown>"),
                json!("name=frontend")
            ]
        );
        let lb = json!({"metadata": {"name": "x"}, "spec": {"type": "LoadBalancer", "ports": []}});
        let row = cells(svcs, &lb, now());
        assert_eq!(row[2], "<none>");
        assert_eq!(row[3], "<pending>");
        assert_eq!(row[4], "<none>");
        let eps = lookup("", "v1", "endpoints").unwrap();
        let ep = json!({"metadata": {"name": "redis-slave"}, "subsets": [
            {"addresses": [{"ip": "10.1.0.2"}, {"ip": "10.1.0.3"}, {"ip": "10.1.0.4"}, {"ip": "10.1.0.5"}],
             "ports": [{"port": 6379}]}]});
        assert_eq!(
            cells(eps, &ep, now())[1],
            "10.1.0.2:6379,10.1.0.3:6379,10.1.0.4:6379 + 1 more..."
        );
        assert_eq!(cells(eps, &json!({}), now())[1], "<none>");
    }

    #[test]
    fn node_namespace_secret_event_quota_rows() {
        let nodes = lookup("", "v1", "nodes").unwrap();
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
              "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
              "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian"}}});
        assert_eq!(
            cells(nodes, &node, now()),
            [
                json!("n1"),
                json!("NotReady,SchedulingDisabled"),
                json!("control-plane"),
                json!("<unknown>"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let bare = cells(nodes, &json!({"metadata": {"name": "n2"}}), now());
        assert_eq!(bare[1], "Unknown");

        let ns = lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            cells(
                ns,
                &json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
                now()
            )[1],
            "Active"
        );
        let secrets = lookup("", "v1", "secrets").unwrap();
        let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}});
        assert_eq!(cells(secrets, &s, now())[1..3], [json!("Opaque"), json!(2)]);

        let events = lookup("", "v1", "events").unwrap();
        let ev = json!({"metadata": {"name": "p.1"}, "type": "Normal", "reason": "Scheduled",
            "message": "Successfully assigned default/p to n1 ",
            "involvedObject": {"kind": "Pod", "name": "p"},
            "source": {"component": "default-scheduler"},
            "firstTimestamp": "2024-01-01T11:58:00Z", "lastTimestamp": "2024-01-01T11:59:00Z"});
        assert_eq!(
            cells(events, &ev, now()),
            [
                json!("60s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/p"),
                json!(""),
                json!("default-scheduler"),
                json!("Successfully assigned default/p to n1"),
                json!("2m"),
                json!(1),
                json!("p.1")
            ]
        );

        let quotas = lookup("", "v1", "resourcequotas").unwrap();
        let rq = json!({"metadata": {"name": "q"},
            "status": {"hard": {"pods": "10", "limits.cpu": "2", "cpu": "1000m"},
                       "used": {"pods": "3", "cpu": "500m"}}});
        let row = cells(quotas, &rq, now());
        assert_eq!(row[2], "cpu: 500m/1, pods: 3/10");
        assert_eq!(row[3], "limits.cpu: 0/2");

        let limits = lookup("", "v1", "limitranges").unwrap();
        let names: Vec<&str> = columns(limits).iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Created At"]);
        let lr = json!({"metadata": {"name": "l", "creationTimestamp": "2024-01-01T10:00:00Z"}});
        assert_eq!(cells(limits, &lr, now())[1], "2024-01-01T10:00:00Z");

        let templates = lookup("", "v1", "podtemplates").unwrap();
        let pt = json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}});
        assert_eq!(
            cells(templates, &pt, now()),
            [json!("t"), json!("c1,c2"), json!("i1,i2"), json!("a=1,b=2")]
        );
        let leases = lookup("coordination.k8s.io", "v1", "leases").unwrap();
        let lease =
            json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "host_1"}});
        assert_eq!(cells(leases, &lease, now())[1], "host_1");
    }
}
