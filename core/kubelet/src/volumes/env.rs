//! A container's environment as the kubelet makes it: the service variables of the pod's
//! namespace (and `default`'s `kubernetes`), then `envFrom`, then `env` with `$(VAR)`
//! expansion and `valueFrom`; a later variable replaces an earlier one of the same name.

use std::collections::BTreeMap;

use keelson_api::k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use keelson_api::object::quantity::parse_quantity;

/// The objects a container's environment reads, fetched beforehand; `None`: not found.
#[derive(Clone, Debug, Default)]
pub struct EnvObjects {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// The services whose variables the container gets (see [`link_services`]).
    pub services: Vec<Service>,
}

/// What the pod's environment reads besides its spec.
#[derive(Clone, Debug, Default)]
pub struct EnvContext {
    pub host_ip: String,
    pub pod_ips: Vec<String>,
    /// The node's allocatable CPU (millicores) and memory (bytes): the limits of a container
    /// without limits, for `resourceFieldRef`.
    pub node_cpu_millis: i128,
    pub node_memory_bytes: i128,
}

/// The resolved variables, and the keys of `envFrom` sources skipped for being invalid
/// variable names (one message per source, for an event).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolvedEnv {
    pub vars: Vec<(String, String)>,
    pub invalid_keys: Vec<String>,
}

/// The names of the ConfigMaps and Secrets a container's environment reads.
pub fn references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.push(r.name.clone());
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Of `candidates` (the pod's namespace's services and `default`'s), those whose variables
/// a container gets: the `kubernetes` service of `default` always, the pod namespace's
/// (winning over it) unless `enableServiceLinks` is false; never one without a cluster IP.
pub fn link_services(pod: &Pod, candidates: &[Service]) -> Vec<Service> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut by_name: BTreeMap<String, Service> = BTreeMap::new();
    for svc in candidates {
        if !has_cluster_ip(svc) {
            continue;
        }
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        if ns == "default" && name == "kubernetes" {
            by_name.entry(name).or_insert_with(|| svc.clone());
        } else if ns == namespace && links {
            by_name.insert(name, svc.clone());
        }
    }
    by_name.into_values().collect()
}

fn has_cluster_ip(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

fn var_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// The variables of services, named as the kubelet names them.
pub fn service_vars(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        if !has_cluster_ip(svc) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = var_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", var_name(n)),
                    p.port.to_string(),
                ));
            }
        }
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p
                .protocol
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{host}:{}", p.port);
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), lower));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.clone()));
        }
    }
    out
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the variable's value when `lookup`
/// knows it and stays as written otherwise; `$$` is a literal `$`; any other `$` stays.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    // Unclosed: kept as written.
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A valid environment variable name (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || "-._".contains(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

fn set(vars: &mut Vec<(String, String)>, name: String, value: String) {
    match vars.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => vars.push((name, value)),
    }
}

/// A Secret's entries: `stringData` over `data`, as the API merges them on write.
fn secret_entries(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    out.extend(secret.string_data.clone().unwrap_or_default());
    out
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret_entries(secret).remove(key)
}

fn config_map_value(cm: &ConfigMap, key: &str) -> Option<String> {
    if let Some(v) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    cm.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

/// Resolves the container's environment; the error is the kubelet's message (the container
/// waits with `CreateContainerConfigError`).
pub fn resolve(
    pod: &Pod,
    container: &Container,
    objects: &EnvObjects,
    ctx: &EnvContext,
) -> Result<ResolvedEnv, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = ResolvedEnv {
        vars: service_vars(&objects.services),
        ..Default::default()
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, entries): (&str, String, Vec<(String, String)>) =
            if let Some(r) = &from.config_map_ref {
                match objects.config_maps.get(&r.name).cloned().flatten() {
                    Some(cm) => {
                        let mut entries: Vec<(String, String)> =
                            cm.data.clone().unwrap_or_default().into_iter().collect();
                        for (k, v) in cm.binary_data.clone().unwrap_or_default() {
                            entries.push((k, String::from_utf8_lossy(&v.0).into_owned()));
                        }
                        ("configMap", r.name.clone(), entries)
                    }
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else if let Some(r) = &from.secret_ref {
                match objects.secrets.get(&r.name).cloned().flatten() {
                    Some(s) => (
                        "secret",
                        r.name.clone(),
                        secret_entries(&s).into_iter().collect(),
                    ),
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (k, v) in entries {
            let key = format!("{prefix}{k}");
            if !is_env_var_name(&key) {
                invalid.push(key);
                continue;
            }
            set(&mut out.vars, key, v);
        }
        if !invalid.is_empty() {
            invalid.sort();
            out.invalid_keys.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) if !v.is_empty() => {
                let vars = &out.vars;
                expand(v, |name| {
                    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
                })
            }
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, ctx)?
                } else if let Some(r) = &from.resource_field_ref {
                    if let Some(c) = r.container_name.as_deref().filter(|c| !c.is_empty())
                        && c != container.name
                    {
                        return Err(format!(
                            "resourceFieldRef of env {} names container {c:?}, not its own",
                            var.name
                        ));
                    }
                    let divisor = r.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
                    resource_value(container, &r.resource, divisor, ctx)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match objects.config_maps.get(&r.name).cloned().flatten() {
                        None if optional => continue,
                        None => return Err(format!("configmap {:?} not found", r.name)),
                        Some(cm) => match config_map_value(&cm, &r.key) {
                            Some(v) => v,
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    r.key, r.name
                                ));
                            }
                        },
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match objects.secrets.get(&r.name).cloned().flatten() {
                        None if optional => continue,
                        None => return Err(format!("secret {:?} not found", r.name)),
                        Some(s) => match secret_value(&s, &r.key) {
                            Some(v) => v,
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    r.key, r.name
                                ));
                            }
                        },
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        set(&mut out.vars, var.name.clone(), value);
    }
    Ok(out)
}

/// A `fieldRef` value.
fn field_value(pod: &Pod, path: &str, ctx: &EnvContext) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(rest.to_string())
    };
    if let Some(k) = subscript("metadata.labels['") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations['") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.hostIP" => ctx.host_ip.clone(),
        "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" => ctx.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ctx.pod_ips.join(","),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// A `resourceFieldRef` value: the container's limit (the node's allocatable when it has
/// none) or request (the limit when it has none), divided by `divisor`, rounded up.
fn resource_value(
    container: &Container,
    resource: &str,
    divisor: &str,
    ctx: &EnvContext,
) -> Result<String, String> {
    let res = container.resources.clone().unwrap_or_default();
    let get = |map: &Option<BTreeMap<String, _>>, key: &str| -> Result<Option<i128>, String> {
        map.as_ref()
            .and_then(|m| m.get(key))
            .map(
                |q: &keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
                    parse_quantity(&q.0).map_err(|e| format!("resources {key} {:?}: {e}", q.0))
                },
            )
            .transpose()
    };
    let (kind, key) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let node = |key: &str| match key {
        "cpu" => Some(ctx.node_cpu_millis),
        "memory" => Some(ctx.node_memory_bytes * 1000),
        _ => None,
    };
    let limit = get(&res.limits, key)?.or_else(|| node(key));
    let millis = match kind {
        "limits" => limit,
        "requests" => get(&res.requests, key)?.or(get(&res.limits, key)?),
        _ => return Err(format!("unsupported container resource: {resource}")),
    }
    .unwrap_or(0);
    let div = parse_quantity(divisor).map_err(|e| format!("divisor {divisor:?}: {e}"))?;
    if div <= 0 {
        return Err(format!("divisor {divisor:?} must be positive"));
    }
    let value = match key {
        "cpu" => ceil_div(millis, div),
        "memory" | "ephemeral-storage" => {
            ceil_div(ceil_div(millis, 1000), ceil_div(div, 1000).max(1))
        }
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    Ok(value.to_string())
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if a <= 0 {
        return a / b;
    }
    (a + b - 1) / b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keelson_api::k8s_openapi::ByteString;
    use keelson_api::k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, ResourceFieldSelector, ResourceRequirements, SecretEnvSource,
        SecretKeySelector, ServicePort, ServiceSpec,
    };
    use keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = map(&[("A", "a"), ("EMPTY", "")]);
        let lookup = |n: &str| vars.get(n).cloned();
        assert_eq!(expand("x$(A)y", lookup), "xay");
        assert_eq!(expand("$(EMPTY)-", lookup), "-");
        assert_eq!(expand("$(MISSING)", lookup), "$(MISSING)");
        assert_eq!(expand("$$(A)", lookup), "$(A)");
        assert_eq!(expand("$$$(A)", lookup), "$a");
        assert_eq!(expand("a$b$", lookup), "a$b$");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("$()", lookup), "$()");
        assert_eq!(expand("100$", lookup), "100$");
    }

    fn service(
        ns: &str,
        name: &str,
        ip: &str,
        ports: &[(Option<&str>, i32, Option<&str>)],
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: proto.map(str::to_string),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_variables_are_named_as_the_kubelet_names_them() {
        let svc = service(
            "team",
            "redis-master",
            "10.0.0.11",
            &[
                (Some("db"), 6379, None),
                (Some("metrics-udp"), 9000, Some("UDP")),
            ],
        );
        let vars: BTreeMap<String, String> = service_vars(&[svc]).into_iter().collect();
        let want = map(&[
            ("REDIS_MASTER_SERVICE_HOST", "10.0.0.11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_DB", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_METRICS_UDP", "9000"),
            ("REDIS_MASTER_PORT", "tcp://10.0.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.0.0.11"),
            ("REDIS_MASTER_PORT_9000_UDP", "udp://10.0.0.11:9000"),
            ("REDIS_MASTER_PORT_9000_UDP_PROTO", "udp"),
            ("REDIS_MASTER_PORT_9000_UDP_PORT", "9000"),
            ("REDIS_MASTER_PORT_9000_UDP_ADDR", "10.0.0.11"),
        ]);
        assert_eq!(vars, want);

        let v6 = service("team", "v6", "fd00::1", &[(None, 80, None)]);
        let vars: BTreeMap<String, String> = service_vars(&[v6]).into_iter().collect();
        assert_eq!(vars["V6_PORT"], "tcp://[fd00::1]:80");

        // Headless services are skipped; default's kubernetes always, links per the pod.
        let mut pod = Pod {
            metadata: ObjectMeta {
                namespace: Some("team".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            ..Default::default()
        };
        let candidates = vec![
            service(
                "default",
                "kubernetes",
                "10.0.0.1",
                &[(Some("https"), 443, None)],
            ),
            service("default", "other", "10.0.0.2", &[(None, 80, None)]),
            service("team", "web", "10.0.0.3", &[(None, 80, None)]),
            service("team", "headless", "None", &[(None, 80, None)]),
        ];
        let names = |svcs: Vec<Service>| -> Vec<String> {
            svcs.into_iter().filter_map(|s| s.metadata.name).collect()
        };
        assert_eq!(
            names(link_services(&pod, &candidates)),
            ["kubernetes", "web"]
        );
        if let Some(s) = pod.spec.as_mut() {
            s.enable_service_links = Some(false);
        }
        assert_eq!(names(link_services(&pod, &candidates)), ["kubernetes"]);
    }

    #[test]
    fn env_from_sources_refs_and_order() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("team".into()),
                uid: Some("u-1".into()),
                labels: Some(map(&[("app", "web")])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                service_account_name: Some("builder".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let var = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        };
        let from = |name: &str, source: EnvVarSource| EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..Default::default()
        };
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "cfg".into(),
                        optional: None,
                    }),
                    prefix: Some("CFG_".into()),
                    ..Default::default()
                },
                EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "gone".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ]),
            env: Some(vec![
                var("WEB_SERVICE_HOST", "overridden"),
                var(
                    "GREETING",
                    "hi $(CFG_name) at $(WEB_SERVICE_PORT) $$(CFG_name)",
                ),
                from("POD", field("metadata.name")),
                from("APP", field("metadata.labels['app']")),
                from("NODE", field("spec.nodeName")),
                from("SA", field("spec.serviceAccountName")),
                from("HOST_IP", field("status.hostIP")),
                from("POD_IP", field("status.podIP")),
                from(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "OPTIONAL",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "absent".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "MEM",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.memory".into(),
                            divisor: Some(Quantity("1Mi".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "CPU",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "requests.cpu".into(),
                            divisor: Some(Quantity("1m".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "NODE_CPU",
                    EnvVarSource {
                        resource_field_ref: Some(ResourceFieldSelector {
                            resource: "limits.cpu".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
            ]),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("100M".into()))].into()),
                requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            references(&container),
            (
                vec!["cfg".to_string()],
                vec!["creds".to_string(), "gone".to_string()]
            )
        );
        let mut objects = EnvObjects {
            services: vec![service("team", "web", "10.0.0.3", &[(None, 80, None)])],
            ..Default::default()
        };
        objects.config_maps.insert(
            "cfg".into(),
            Some(ConfigMap {
                data: Some(map(&[("name", "keelson"), ("bad key", "x")])),
                ..Default::default()
            }),
        );
        objects.secrets.insert("gone".into(), None);
        let ctx = EnvContext {
            host_ip: "192.0.2.1".into(),
            pod_ips: vec!["10.1.0.7".into()],
            node_cpu_millis: 4000,
            node_memory_bytes: 8 << 30,
        };
        // A missing secret (not optional) is an error with the kubelet's message.
        assert_eq!(
            resolve(&pod, &container, &objects, &ctx).unwrap_err(),
            "secret \"creds\" not found"
        );
        objects.secrets.insert(
            "creds".into(),
            Some(Secret {
                data: Some([("password".to_string(), ByteString(b"s3cret".to_vec()))].into()),
                ..Default::default()
            }),
        );
        let env = resolve(&pod, &container, &objects, &ctx).unwrap();
        let names: Vec<&str> = env.vars.iter().map(|(k, _)| k.as_str()).collect();
        // Service variables first, then envFrom, then env.
        assert_eq!(names[0], "WEB_SERVICE_HOST");
        assert!(
            names.iter().position(|n| *n == "CFG_name")
                < names.iter().position(|n| *n == "GREETING")
        );
        let vars: BTreeMap<String, String> = env.vars.into_iter().collect();
        assert_eq!(vars["WEB_SERVICE_HOST"], "overridden");
        assert_eq!(vars["GREETING"], "hi keelson at 80 $(CFG_name)");
        assert_eq!(vars["POD"], "web");
        assert_eq!(vars["APP"], "web");
        assert_eq!(vars["NODE"], "n1");
        assert_eq!(vars["SA"], "builder");
        assert_eq!(vars["HOST_IP"], "192.0.2.1");
        assert_eq!(vars["POD_IP"], "10.1.0.7");
        assert_eq!(vars["PASSWORD"], "s3cret");
        assert!(!vars.contains_key("OPTIONAL"));
        // 100M / 1Mi rounded up; 250m in millicores; no CPU limit: the node's, in cores.
        assert_eq!(vars["MEM"], "96");
        assert_eq!(vars["CPU"], "250");
        assert_eq!(vars["NODE_CPU"], "4");
        assert_eq!(
            env.invalid_keys,
            [
                "Keys [CFG_bad key] from the EnvFrom configMap team/cfg were skipped since they are considered invalid environment variable names."
            ]
        );

        let mut bad_key = container.clone();
        bad_key.env = Some(vec![from(
            "X",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "nope".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        )]);
        assert_eq!(
            resolve(&pod, &bad_key, &objects, &ctx).unwrap_err(),
            "couldn't find key nope in Secret team/creds"
        );
    }
}
