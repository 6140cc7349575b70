//! Discovery documents: `/api`, `/apis`, group and resource lists, `/version`, and the
//! aggregated form that kubectl 1.27+ asks for first.

use serde_json::{Value, json};

use keelson_api::registry::{self, ResourceInfo};

/// The Kubernetes version Keelson's API matches (k8s-openapi's `v1_33` types).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-keelson.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": option_env!("KEELSON_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `authentication.k8s.io/v1` `selfsubjectreviews` (`kubectl auth whoami`): answered by the
/// server from the request's user, never stored, so it lives beside the stored resources of
/// the registry rather than in it.
pub const SELF_SUBJECT_REVIEWS: ResourceInfo = ResourceInfo {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "SelfSubjectReview",
    plural: "selfsubjectreviews",
    singular: "selfsubjectreview",
    short_names: &[],
    namespaced: false,
    verbs: &["create"],
    subresources: &[],
    categories: &[],
};

/// Resources discovery lists that the server answers without storage.
const VIRTUAL_RESOURCES: &[ResourceInfo] = &[SELF_SUBJECT_REVIEWS];

/// Whether `p` is the self-subject review collection.
pub fn is_self_subject_review(p: &crate::request::ResourcePath) -> bool {
    p.group == SELF_SUBJECT_REVIEWS.group
        && p.version == SELF_SUBJECT_REVIEWS.version
        && p.resource == SELF_SUBJECT_REVIEWS.plural
        && p.namespace.is_none()
        && p.name.is_none()
        && p.subresource.is_none()
        && !p.watch_prefix
}

/// Every resource discovery lists: the registry's, then the virtual ones.
fn all_resources() -> impl Iterator<Item = &'static ResourceInfo> {
    registry::resources().iter().chain(VIRTUAL_RESOURCES)
}

/// Every named group and its versions: the registry's, then those only virtual resources have.
fn all_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = registry::groups();
    for r in VIRTUAL_RESOURCES {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_groups() -> Value {
    let groups: Vec<Value> = all_groups()
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    all_groups()
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(g, vs)| {
            let mut e = group_entry(g, vs);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

fn storage_version_hash(info: &ResourceInfo) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("{}/{}/{}", info.group, info.version, info.kind));
    base64::engine::general_purpose::STANDARD.encode(&h[..8])
}

fn resource_entries(info: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": info.verbs,
        "storageVersionHash": storage_version_hash(info),
    });
    if !info.short_names.is_empty() {
        main["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        main["categories"] = json!(info.categories);
    }
    let mut out = vec![main];
    for s in info.subresources {
        let mut e = json!({
            "name": format!("{}/{}", info.plural, s.name),
            "singularName": "",
            "namespaced": info.namespaced,
            "kind": s.kind,
            "verbs": s.verbs,
        });
        if !s.group.is_empty() {
            e["group"] = json!(s.group);
        }
        if !s.version.is_empty() {
            e["version"] = json!(s.version);
        }
        out.push(e);
    }
    out
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let infos: Vec<&ResourceInfo> = all_resources()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if infos.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = infos.iter().flat_map(|i| resource_entries(i)).collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2`): every group, version and resource in one
/// document. `legacy` selects the core group (`/api`) or the named groups (`/apis`).
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    if legacy {
        groups.push((String::new(), vec!["v1".to_string()]));
    } else {
        for (g, vs) in all_groups() {
            groups.push((g.to_string(), vs.iter().map(|v| v.to_string()).collect()));
        }
    }
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all_resources()
                        .filter(|r| r.group == g && r.version == v)
                        .map(|r| {
                            let subs: Vec<Value> = r
                                .subresources
                                .iter()
                                .map(|s| {
                                    let mut e = json!({
                                        "subresource": s.name,
                                        "responseKind": {"group": s.group, "version": if s.version.is_empty() { r.version } else { s.version }, "kind": s.kind},
                                        "verbs": s.verbs,
                                    });
                                    if s.group.is_empty() && s.version.is_empty() {
                                        e["responseKind"]["group"] = json!(r.group);
                                    }
                                    e
                                })
                                .collect();
                            let mut e = json!({
                                "resource": r.plural,
                                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": r.verbs,
                            });
                            if !r.short_names.is_empty() {
                                e["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                e["categories"] = json!(r.categories);
                            }
                            if !subs.is_empty() {
                                e["subresources"] = Value::Array(subs);
                            }
                            e
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}

/// The aggregated discovery version the client accepts, if any (`v2` preferred).
pub fn wants_aggregated(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for item in accept.split(',') {
        let params: Vec<&str> = item.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
        // Plain JSON listed before any aggregated type wins.
        if params.first() == Some(&"application/json") && params.len() == 1 {
            return None;
        }
    }
    None
}
