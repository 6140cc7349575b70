//! The one table of list and map semantics Kubernetes attaches to fields of the kinds Keelson
//! serves: strategic-merge-patch strategy and merge key, and the server-side-apply list and map
//! types.
//!
//! `k8s-openapi` keeps the field types but drops these Go struct tags, so they are restated here
//! for Kubernetes 1.33. The OpenAPI builder writes them into the published schemas as
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`, and the strategic merge patch reads
//! them back from those schemas, so the two cannot disagree.

/// How the elements of a list are identified (server-side apply's `x-kubernetes-list-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListType {
    /// The list is replaced as a whole.
    Atomic,
    /// A list of unique scalars.
    Set,
    /// A list of objects identified by the given keys.
    Map(&'static [&'static str]),
}

/// Patch and list metadata of one list-valued field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListField {
    /// Definition (schema) name holding the field, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub(crate) definition: &'static str,
    /// JSON name of the field.
    pub(crate) field: &'static str,
    /// `x-kubernetes-patch-strategy`: `merge`, `merge,retainKeys`, ... (`None`: replace).
    pub(crate) strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key` for lists of objects merged by key.
    pub(crate) merge_key: Option<&'static str>,
    pub(crate) list_type: ListType,
}

const CORE: &str = "io.k8s.api.core.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

const fn field(
    definition: &'static str,
    field: &'static str,
    strategy: Option<&'static str>,
    merge_key: Option<&'static str>,
    list_type: ListType,
) -> ListField {
    ListField {
        definition,
        field,
        strategy,
        merge_key,
        list_type,
    }
}

const MERGE: Option<&str> = Some("merge");
const MERGE_RETAIN: Option<&str> = Some("merge,retainKeys");

/// Every list field of the served kinds whose semantics are not "atomic, replaced by a patch".
/// Lists not named here are published as `x-kubernetes-list-type: atomic`, which is what
/// Kubernetes 1.33 declares for all remaining lists of these types.
///
/// Definition names are given as suffixes of [`CORE`] or [`META`] through [`ListField::full`].
pub(crate) const LIST_FIELDS: &[ListField] = &[
    // Containers (regular, init and ephemeral share the field tags).
    field(
        "Container",
        "env",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "Container",
        "ports",
        MERGE,
        Some("containerPort"),
        ListType::Map(&["containerPort", "protocol"]),
    ),
    field(
        "Container",
        "volumeMounts",
        MERGE,
        Some("mountPath"),
        ListType::Map(&["mountPath"]),
    ),
    field(
        "Container",
        "volumeDevices",
        MERGE,
        Some("devicePath"),
        ListType::Map(&["devicePath"]),
    ),
    field(
        "EphemeralContainer",
        "env",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "EphemeralContainer",
        "ports",
        MERGE,
        Some("containerPort"),
        ListType::Map(&["containerPort", "protocol"]),
    ),
    field(
        "EphemeralContainer",
        "volumeMounts",
        MERGE,
        Some("mountPath"),
        ListType::Map(&["mountPath"]),
    ),
    field(
        "EphemeralContainer",
        "volumeDevices",
        MERGE,
        Some("devicePath"),
        ListType::Map(&["devicePath"]),
    ),
    field(
        "ResourceRequirements",
        "claims",
        None,
        None,
        ListType::Map(&["name"]),
    ),
    // Pod spec.
    field(
        "PodSpec",
        "containers",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "initContainers",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "ephemeralContainers",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "volumes",
        MERGE_RETAIN,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "imagePullSecrets",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "hostAliases",
        MERGE,
        Some("ip"),
        ListType::Map(&["ip"]),
    ),
    field(
        "PodSpec",
        "topologySpreadConstraints",
        MERGE,
        Some("topologyKey"),
        ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
    ),
    field(
        "PodSpec",
        "schedulingGates",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "PodSpec",
        "resourceClaims",
        MERGE_RETAIN,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    // Pod status.
    field(
        "PodStatus",
        "conditions",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    field(
        "PodStatus",
        "podIPs",
        MERGE,
        Some("ip"),
        ListType::Map(&["ip"]),
    ),
    // Mergeable for patches, but atomic for apply: the IPs are not unique enough.
    field("PodStatus", "hostIPs", MERGE, Some("ip"), ListType::Atomic),
    field(
        "PodStatus",
        "resourceClaimStatuses",
        MERGE_RETAIN,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "ContainerStatus",
        "allocatedResourcesStatus",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    field(
        "ContainerStatus",
        "volumeMounts",
        MERGE,
        Some("mountPath"),
        ListType::Map(&["mountPath"]),
    ),
    field(
        "ResourceStatus",
        "resources",
        None,
        None,
        ListType::Map(&["resourceID"]),
    ),
    // Nodes.
    field("NodeSpec", "podCIDRs", MERGE, None, ListType::Set),
    field(
        "NodeStatus",
        "addresses",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    field(
        "NodeStatus",
        "conditions",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    // Other core kinds.
    field(
        "NamespaceStatus",
        "conditions",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    field(
        "ReplicationControllerStatus",
        "conditions",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    field(
        "ServiceSpec",
        "ports",
        MERGE,
        Some("port"),
        ListType::Map(&["port", "protocol"]),
    ),
    field(
        "ServiceStatus",
        "conditions",
        MERGE,
        Some("type"),
        ListType::Map(&["type"]),
    ),
    field(
        "ServiceAccount",
        "secrets",
        MERGE,
        Some("name"),
        ListType::Map(&["name"]),
    ),
    // Object metadata (prefix META).
    field("~ObjectMeta", "finalizers", MERGE, None, ListType::Set),
    field(
        "~ObjectMeta",
        "ownerReferences",
        MERGE,
        Some("uid"),
        ListType::Map(&["uid"]),
    ),
];

/// Struct definitions that server-side apply treats as one value (`x-kubernetes-map-type:
/// atomic` on the definition).
pub(crate) const ATOMIC_STRUCTS: &[&str] = &[
    "LocalObjectReference",
    "ObjectReference",
    "TypedLocalObjectReference",
    "ConfigMapKeySelector",
    "SecretKeySelector",
    "ObjectFieldSelector",
    "ResourceFieldSelector",
    "NodeSelector",
    "NodeSelectorTerm",
    "~LabelSelector",
    "~OwnerReference",
];

/// String maps that are replaced as a whole by apply (`x-kubernetes-map-type: atomic` on the
/// field).
pub(crate) const ATOMIC_MAP_FIELDS: &[(&str, &str)] = &[
    ("PodSpec", "nodeSelector"),
    ("ServiceSpec", "selector"),
    ("ReplicationControllerSpec", "selector"),
];

/// Expands the short definition names used in the tables above: a leading `~` means
/// `io.k8s.apimachinery.pkg.apis.meta.v1.`, anything else `io.k8s.api.core.v1.`.
pub(crate) fn full_name(short: &str) -> String {
    match short.strip_prefix('~') {
        Some(meta) => format!("{META}{meta}"),
        None => format!("{CORE}{short}"),
    }
}

impl ListField {
    /// The full definition name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub(crate) fn full(&self) -> String {
        full_name(self.definition)
    }
}
