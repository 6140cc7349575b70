//! What a request asks for, worked out from its path and method the way Kubernetes'
//! request-info resolver does it.

use std::collections::HashMap;

/// The parts of a resource request path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The path used the legacy `/watch/` prefix.
    pub watch_prefix: bool,
}

/// Every path the API server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz(String),
    Version,
    ApiVersions,
    ApiGroups,
    ApiGroup(String),
    ResourceList { group: String, version: String },
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3(String),
    Resource(ResourcePath),
    Metrics,
    NotFound,
}

/// Paths of namespaces that are subresources of the namespace itself rather than resources in it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn route(path: &str) -> Route {
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    match parts.as_slice() {
        ["healthz", rest @ ..] | ["livez", rest @ ..] | ["readyz", rest @ ..] => {
            let _ = rest;
            Route::Healthz(parts[0].to_string())
        }
        ["version"] => Route::Version,
        ["metrics"] => Route::Metrics,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Root,
        ["openapi", "v3", rest @ ..] if !rest.is_empty() => Route::OpenApiV3(rest.join("/")),
        ["api"] => Route::ApiVersions,
        ["api", "v1"] => Route::ResourceList {
            group: String::new(),
            version: "v1".into(),
        },
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis"] => Route::ApiGroups,
        ["apis", group] => Route::ApiGroup(group.to_string()),
        ["apis", group, version] => Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut p = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut rest = rest;
    if rest.first() == Some(&"watch") {
        p.watch_prefix = true;
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Route::NotFound;
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            p.namespace = Some(rest[1].to_string());
            rest = &rest[2..];
        } else {
            // The namespace object itself: /namespaces/{name}[/status|/finalize].
            p.resource = "namespaces".into();
            p.name = Some(rest[1].to_string());
            p.subresource = rest.get(2).map(|s| s.to_string());
            return Route::Resource(p);
        }
    }
    match rest {
        [resource] => p.resource = resource.to_string(),
        [resource, name] => {
            p.resource = resource.to_string();
            p.name = Some(name.to_string());
        }
        [resource, name, sub] => {
            p.resource = resource.to_string();
            p.name = Some(name.to_string());
            p.subresource = Some(sub.to_string());
        }
        _ => return Route::NotFound,
    }
    if p.name.as_deref() == Some("") || p.resource.is_empty() {
        return Route::NotFound;
    }
    Route::Resource(p)
}

/// Decodes `application/x-www-form-urlencoded` query strings.
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// How the client wants the response: a plain object, a `Table`, or partial metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Object,
    Table,
    PartialMetadata,
}

/// Picks the representation from the `Accept` header, honouring kubectl's preference order
/// (`as=Table` first, then plain JSON). Returns None when nothing acceptable is offered.
pub fn negotiate(accept: Option<&str>) -> Option<Output> {
    let Some(accept) = accept else {
        return Some(Output::Object);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let json_like = matches!(
            media,
            "application/json" | "application/yaml" | "*/*" | "application/*" | ""
        );
        if !json_like {
            continue;
        }
        match params.get("as").copied() {
            None => return Some(Output::Object),
            Some("Table") if params.get("g").copied() == Some("meta.k8s.io") => {
                if matches!(params.get("v").copied(), Some("v1") | Some("v1beta1")) {
                    return Some(Output::Table);
                }
            }
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList")
                if params.get("g").copied() == Some("meta.k8s.io") =>
            {
                return Some(Output::PartialMetadata);
            }
            _ => {}
        }
    }
    None
}

/// True when the client prefers YAML responses.
pub fn wants_yaml(accept: Option<&str>) -> bool {
    accept
        .and_then(|a| a.split(',').next())
        .map(|first| first.trim().starts_with("application/yaml"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(p) => p,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths() {
        let p = res("/api/v1/namespaces/default/pods/nginx/status");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.resource, "pods");
        assert_eq!(p.name.as_deref(), Some("nginx"));
        assert_eq!(p.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn namespace_objects() {
        let p = res("/api/v1/namespaces/kube-system");
        assert_eq!(p.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("kube-system"));
        assert_eq!(p.namespace, None);
        let p = res("/api/v1/namespaces/x/finalize");
        assert_eq!(p.subresource.as_deref(), Some("finalize"));
        let p = res("/api/v1/namespaces");
        assert_eq!(p.resource, "namespaces");
        assert_eq!(p.name, None);
    }

    #[test]
    fn groups_and_watch() {
        let p = res("/apis/coordination.k8s.io/v1/watch/namespaces/kube-system/leases");
        assert!(p.watch_prefix);
        assert_eq!(p.group, "coordination.k8s.io");
        assert_eq!(p.resource, "leases");
        assert_eq!(
            route("/apis/coordination.k8s.io"),
            Route::ApiGroup("coordination.k8s.io".into())
        );
        assert_eq!(route("/api"), Route::ApiVersions);
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1"));
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "1");
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(kubectl)), Some(Output::Table));
        assert_eq!(negotiate(Some("application/json")), Some(Output::Object));
        assert_eq!(negotiate(None), Some(Output::Object));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(
            negotiate(Some(
                "application/vnd.kubernetes.protobuf, application/json"
            )),
            Some(Output::Object)
        );
    }
}
