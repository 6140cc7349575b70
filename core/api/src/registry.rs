//! The resources Keelson serves, described the way Kubernetes discovery describes them.
//!
//! Everything here is static data: the API server builds `/api`, `/apis`, the
//! `APIResourceList` documents and its routing table from [`resources`], and every other
//! module of this crate (decoding, defaulting, validation, selectors, tables) dispatches on a
//! [`ResourceInfo`]. The verbs, short names and categories are those a real cluster shows in
//! `kubectl api-resources -o wide`, because kubectl caches discovery and resolves `po`, `all`
//! and friends from it.

/// One top-level resource (a REST collection such as `pods`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` for the legacy core group served under `/api`.
    pub group: &'static str,
    /// API version inside the group, e.g. `"v1"`.
    pub version: &'static str,
    /// Kind of the objects in the collection, e.g. `"Pod"`.
    pub kind: &'static str,
    /// Lower-case plural used in URLs, e.g. `"pods"`.
    pub plural: &'static str,
    /// Lower-case singular name reported by discovery, e.g. `"pod"`.
    pub singular: &'static str,
    /// kubectl short names, e.g. `["po"]`.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Discovery verbs, in the order Kubernetes lists them (alphabetical).
    pub verbs: &'static [&'static str],
    /// Subresources served under `/{plural}/{name}/{subresource}`.
    pub subresources: &'static [Subresource],
    /// Discovery categories, e.g. `["all"]` so that `kubectl get all` includes the resource.
    pub categories: &'static [&'static str],
}

/// A subresource of a [`ResourceInfo`], e.g. `pods/status` or `replicationcontrollers/scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// Name after the object name in the path, e.g. `"status"`.
    pub name: &'static str,
    /// Kind of the body the subresource takes or returns, e.g. `"Scale"`.
    pub kind: &'static str,
    /// Group of that kind; `""` for core. Discovery reports it only when it differs from the
    /// parent's group/version.
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// Discovery verbs of the subresource.
    pub verbs: &'static [&'static str],
}

impl Subresource {
    /// `apiVersion` of the subresource's kind (`"v1"`, `"autoscaling/v1"`).
    pub fn api_version(&self) -> String {
        join_group_version(self.group, self.version)
    }
}

impl ResourceInfo {
    /// `apiVersion` of objects of this resource: `"v1"` or `"coordination.k8s.io/v1"`.
    pub fn api_version(&self) -> String {
        join_group_version(self.group, self.version)
    }

    /// Same as [`ResourceInfo::api_version`]; named for the places that talk about group
    /// versions (discovery, `APIResourceList.groupVersion`).
    pub fn group_version(&self) -> String {
        self.api_version()
    }

    /// Kind of the list object, e.g. `"PodList"`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The subresource called `name`, if this resource serves it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether discovery lists `verb` for this resource.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// URL prefix of the group version: `/api/v1` or `/apis/coordination.k8s.io/v1`.
    pub fn path_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

fn join_group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Verbs of an ordinary read-write collection.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaces cannot be deleted as a collection (deleting one is already a cascade).
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const fn status_of(kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        kind,
        group: "",
        version: "v1",
        verbs: GET_PATCH_UPDATE,
    }
}

const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "binding",
        kind: "Binding",
        group: "",
        version: "v1",
        verbs: &["create"],
    },
    Subresource {
        name: "eviction",
        kind: "Eviction",
        group: "policy",
        version: "v1",
        verbs: &["create"],
    },
    Subresource {
        name: "exec",
        kind: "PodExecOptions",
        group: "",
        version: "v1",
        verbs: &["create", "get"],
    },
    Subresource {
        name: "log",
        kind: "Pod",
        group: "",
        version: "v1",
        verbs: &["get"],
    },
    status_of("Pod"),
];

const RC_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "scale",
        kind: "Scale",
        group: "autoscaling",
        version: "v1",
        verbs: GET_PATCH_UPDATE,
    },
    status_of("ReplicationController"),
];

const SERVICE_SUBRESOURCES: &[Subresource] = &[status_of("Service")];

const NAMESPACE_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "finalize",
        kind: "Namespace",
        group: "",
        version: "v1",
        verbs: &["update"],
    },
    status_of("Namespace"),
];

// services/proxy and serviceaccounts/token are not served yet; discovery does not list them.
const SERVICE_ACCOUNT_SUBRESOURCES: &[Subresource] = &[];

/// Shorthand for the core/v1 entries of the table below (positional so that the table
/// stays one line per resource where it fits).
#[allow(clippy::too_many_arguments)]
const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    verbs: &'static [&'static str],
    subresources: &'static [Subresource],
    categories: &'static [&'static str],
) -> ResourceInfo {
    ResourceInfo {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        verbs,
        subresources,
        categories,
    }
}

/// Ordered as `kubectl api-resources` prints them: core first, alphabetical by plural.
static RESOURCES: &[ResourceInfo] = &[
    core(
        "Binding",
        "bindings",
        "binding",
        &[],
        true,
        &["create"],
        &[],
        &[],
    ),
    core(
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "Endpoints",
        "endpoints",
        "endpoints",
        &["ep"],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "Event",
        "events",
        "event",
        &["ev"],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "LimitRange",
        "limitranges",
        "limitrange",
        &["limits"],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        false,
        NAMESPACE_VERBS,
        NAMESPACE_SUBRESOURCES,
        &[],
    ),
    core(
        "Node",
        "nodes",
        "node",
        &["no"],
        false,
        ALL_VERBS,
        &[status_of("Node")],
        &[],
    ),
    core(
        "Pod",
        "pods",
        "pod",
        &["po"],
        true,
        ALL_VERBS,
        POD_SUBRESOURCES,
        &["all"],
    ),
    core(
        "PodTemplate",
        "podtemplates",
        "podtemplate",
        &[],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        &["rc"],
        true,
        ALL_VERBS,
        RC_SUBRESOURCES,
        &["all"],
    ),
    core(
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        &["quota"],
        true,
        ALL_VERBS,
        &[status_of("ResourceQuota")],
        &[],
    ),
    core(
        "Secret",
        "secrets",
        "secret",
        &[],
        true,
        ALL_VERBS,
        &[],
        &[],
    ),
    core(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        true,
        ALL_VERBS,
        SERVICE_ACCOUNT_SUBRESOURCES,
        &[],
    ),
    core(
        "Service",
        "services",
        "service",
        &["svc"],
        true,
        ALL_VERBS,
        SERVICE_SUBRESOURCES,
        &["all"],
    ),
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        short_names: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        categories: &[],
    },
];

/// Every resource Keelson serves.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource served at `group`/`version`/`plural` (`""` group for core).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind` (as written in a body).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Resolves what a user typed (`po`, `pod`, `pods`, `Pod`) the way kubectl does from discovery.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    RESOURCES.iter().find(|r| {
        r.plural == lower
            || r.singular == lower
            || r.short_names.contains(&lower.as_str())
            || r.kind.eq_ignore_ascii_case(name)
    })
}

/// Splits `"coordination.k8s.io/v1"` into group and version; `"v1"` is the core group.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// The named API groups (everything but core), each with its versions, preferred first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_match_kubernetes() {
        let expect = [
            ("pods", "po"),
            ("replicationcontrollers", "rc"),
            ("services", "svc"),
            ("endpoints", "ep"),
            ("nodes", "no"),
            ("namespaces", "ns"),
            ("serviceaccounts", "sa"),
            ("configmaps", "cm"),
            ("events", "ev"),
            ("limitranges", "limits"),
            ("resourcequotas", "quota"),
        ];
        for (plural, short) in expect {
            let r = lookup("", "v1", plural).expect(plural);
            assert_eq!(r.short_names, &[short], "{plural}");
            assert_eq!(resolve(short).map(|r| r.plural), Some(plural));
        }
    }

    #[test]
    fn categories_all() {
        let all: Vec<_> = resources()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        assert_eq!(all, ["pods", "replicationcontrollers", "services"]);
    }

    #[test]
    fn lookups() {
        let lease = lookup("coordination.k8s.io", "v1", "leases").expect("leases");
        assert_eq!(lease.api_version(), "coordination.k8s.io/v1");
        assert_eq!(lease.list_kind(), "LeaseList");
        assert_eq!(lease.path_prefix(), "/apis/coordination.k8s.io/v1");
        assert_eq!(
            by_kind("v1", "Pod").map(|r| r.plural),
            Some("pods"),
            "pods by kind"
        );
        assert!(by_kind("v1", "Lease").is_none());
        assert!(lookup("", "v1", "bogus").is_none());
        assert_eq!(groups(), vec![("coordination.k8s.io", vec!["v1"])]);
        let ns = lookup("", "v1", "namespaces").expect("namespaces");
        assert!(!ns.namespaced);
        assert!(!ns.supports("deletecollection"));
        assert_eq!(
            ns.subresource("finalize").map(|s| s.verbs),
            Some(&["update"][..])
        );
        let rc = lookup("", "v1", "replicationcontrollers").expect("rc");
        let scale = rc.subresource("scale").expect("scale");
        assert_eq!(scale.api_version(), "autoscaling/v1");
        let bindings = lookup("", "v1", "bindings").expect("bindings");
        assert_eq!(bindings.verbs, &["create"]);
    }

    #[test]
    fn every_resource_is_well_formed() {
        for r in resources() {
            let mut verbs = r.verbs.to_vec();
            verbs.sort_unstable();
            assert_eq!(verbs, r.verbs, "{} verbs sorted", r.plural);
            assert_eq!(r.singular, r.kind.to_ascii_lowercase(), "{}", r.plural);
        }
    }
}
