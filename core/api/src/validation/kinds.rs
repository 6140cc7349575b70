//! Validation of the kinds other than Pod.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::names::{
    NEGATIVE, is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_cidr, is_valid_ip, is_valid_port_num, non_special_ip,
};
use super::pod::{pod_template_spec, port_num_or_name, quantity_value};
use super::{
    Bad, FieldError, arr, duplicate, finalizer_name, forbidden, go_string_map, go_string_slice,
    int, invalid, labels, not_supported, obj, required, s, too_long,
};
use crate::object::quantity;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Kubernetes' cap on a Secret's or ConfigMap's data.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// ValidateReplicationController(Spec).
pub(crate) fn replication_controller(rc: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = rc.get("spec").unwrap_or(&empty);
    if let Some(v) = int(spec, "minReadySeconds")
        && v < 0
    {
        errs.push(invalid("spec.minReadySeconds", v, NEGATIVE));
    }
    let selector = obj(spec, "selector");
    if selector.is_none_or(Map::is_empty) {
        errs.push(required("spec.selector", ""));
    }
    if let Some(r) = int(spec, "replicas")
        && r < 0
    {
        errs.push(invalid("spec.replicas", r, NEGATIVE));
    }
    let Some(template) = spec.get("template") else {
        errs.push(required("spec.template", ""));
        return;
    };
    let template_labels = template.get("metadata").and_then(|m| obj(m, "labels"));
    if let Some(selector) = selector
        && !selector.is_empty()
    {
        let matches = selector.iter().all(|(k, v)| {
            template_labels
                .and_then(|l| l.get(k))
                .is_some_and(|tv| tv == v)
        });
        if !matches {
            errs.push(invalid(
                "spec.template.metadata.labels",
                go_string_map(template_labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    pod_template_spec(template, "spec.template", errs);
    let empty_spec = Value::Object(Map::new());
    let pod_spec = template.get("spec").unwrap_or(&empty_spec);
    let restart = s(pod_spec, "restartPolicy");
    if restart != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
    if pod_spec.get("activeDeadlineSeconds").is_some() {
        errs.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicationController is not Supported",
        ));
    }
}

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// ValidateService (+ the clusterIP part of ValidateServiceUpdate).
pub(crate) fn service(svc: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = svc.get("spec").unwrap_or(&empty);
    let svc_type = s(spec, "type");
    let cluster_ip = s(spec, "clusterIP");
    let headless = cluster_ip == "None";
    let ports = arr(spec, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    match svc_type {
        "" => errs.push(required("spec.type", "")),
        t if !SERVICE_TYPES.contains(&t) => {
            errs.push(not_supported("spec.type", t, SERVICE_TYPES));
        }
        _ => {}
    }
    if svc_type == "ExternalName" {
        if !cluster_ip.is_empty() {
            errs.push(forbidden(
                "spec.clusterIP",
                "may not be set for ExternalName services",
            ));
        }
        let external_name = s(spec, "externalName");
        if external_name.is_empty() {
            errs.push(required("spec.externalName", ""));
        } else {
            for msg in is_dns1123_subdomain(external_name.trim_end_matches('.')) {
                errs.push(invalid("spec.externalName", external_name, &msg));
            }
        }
    }
    let require_name = ports.len() > 1;
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = s(p, "name");
        if require_name && name.is_empty() {
            errs.push(required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            let msgs = is_dns1123_label(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(format!("{path}.name"), name, &msg));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(duplicate(format!("{path}.name"), name));
            }
        }
        let port = int(p, "port").unwrap_or(0);
        for msg in is_valid_port_num(port) {
            errs.push(invalid(format!("{path}.port"), port, &msg));
        }
        let protocol = s(p, "protocol");
        if protocol.is_empty() {
            errs.push(required(format!("{path}.protocol"), ""));
        } else if !PROTOCOLS.contains(&protocol) {
            errs.push(not_supported(
                format!("{path}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
        port_num_or_name(p.get("targetPort"), &format!("{path}.targetPort"), errs);
        let node_port = int(p, "nodePort").unwrap_or(0);
        if node_port != 0 {
            if svc_type == "ClusterIP" {
                errs.push(forbidden(
                    format!("{path}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                for msg in is_valid_port_num(node_port) {
                    errs.push(invalid(format!("{path}.nodePort"), node_port, &msg));
                }
            }
        }
    }
    // Duplicate (protocol, port) pairs and node ports.
    let mut pairs = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let (protocol, port) = (s(p, "protocol"), int(p, "port").unwrap_or(0));
        if !pairs.insert((protocol.to_string(), port)) {
            errs.push(duplicate(
                format!("spec.ports[{i}]"),
                Bad::Raw(format!(
                    "core.ServicePort{{Name:\"\", Protocol:\"{protocol}\", AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}"
                )),
            ));
        }
        let node_port = int(p, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((protocol.to_string(), node_port)) {
            errs.push(duplicate(format!("spec.ports[{i}].nodePort"), node_port));
        }
    }
    labels(obj(spec, "selector"), "spec.selector", errs);
    let affinity = s(spec, "sessionAffinity");
    match affinity {
        "" => errs.push(required("spec.sessionAffinity", "")),
        "None" | "ClientIP" => {}
        other => errs.push(not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
    if affinity == "ClientIP"
        && let Some(t) = spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .and_then(Value::as_i64)
        && !(1..=86400).contains(&t)
    {
        errs.push(invalid(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            t,
            "must be greater than 0 and less than 86400",
        ));
    }
    // Cluster IPs: Kubernetes mirrors clusterIP into clusterIPs[0] before validating.
    let cluster_ips: Vec<&str> = match arr(spec, "clusterIPs") {
        [] if !cluster_ip.is_empty() => vec![cluster_ip],
        list => list.iter().filter_map(Value::as_str).collect(),
    };
    for (i, ip) in cluster_ips.iter().enumerate() {
        if *ip == "None" && i == 0 {
            continue;
        }
        for msg in is_valid_ip(ip) {
            errs.push(invalid(format!("spec.clusterIPs[{i}]"), *ip, &msg));
        }
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or_default();
        for msg in is_valid_ip(ip) {
            errs.push(invalid(format!("spec.externalIPs[{i}]"), ip, &msg));
        }
    }
    for key in ["externalTrafficPolicy", "internalTrafficPolicy"] {
        let v = s(spec, key);
        if !v.is_empty() && !["Cluster", "Local"].contains(&v) {
            errs.push(not_supported(
                format!("spec.{key}"),
                v,
                &["Cluster", "Local"],
            ));
        }
    }
    if svc_type == "ClusterIP" && !s(spec, "externalTrafficPolicy").is_empty() {
        errs.push(invalid(
            "spec.externalTrafficPolicy",
            s(spec, "externalTrafficPolicy"),
            "may only be set for externally-accessible services",
        ));
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&empty);
        let old_ips: Vec<&str> = match arr(old_spec, "clusterIPs") {
            [] if !s(old_spec, "clusterIP").is_empty() => vec![s(old_spec, "clusterIP")],
            list => list.iter().filter_map(Value::as_str).collect(),
        };
        let changing_external_name =
            svc_type == "ExternalName" || s(old_spec, "type") == "ExternalName";
        if !changing_external_name && !cluster_ips.is_empty() {
            for (i, (n, o)) in cluster_ips.iter().zip(&old_ips).enumerate() {
                if n != o {
                    errs.push(invalid(
                        format!("spec.clusterIPs[{i}]"),
                        go_string_slice(&cluster_ips),
                        "may not change once set",
                    ));
                }
            }
        }
    }
}

/// ValidateEndpoints.
pub(crate) fn endpoints(ep: &Value, errs: &mut Vec<FieldError>) {
    for (i, subset) in arr(ep, "subsets").iter().enumerate() {
        let path = format!("subsets[{i}]");
        if arr(subset, "addresses").is_empty() && arr(subset, "notReadyAddresses").is_empty() {
            errs.push(required(
                path.clone(),
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(subset, key).iter().enumerate() {
                let apath = format!("{path}.{key}[{j}]");
                let ip = s(a, "ip");
                let msgs = is_valid_ip(ip);
                for msg in &msgs {
                    errs.push(invalid(format!("{apath}.ip"), ip, msg));
                }
                if msgs.is_empty() {
                    for msg in non_special_ip(ip) {
                        errs.push(invalid(format!("{apath}.ip"), ip, &msg));
                    }
                }
                let hostname = s(a, "hostname");
                if !hostname.is_empty() {
                    for msg in is_dns1123_label(hostname) {
                        errs.push(invalid(format!("{apath}.hostname"), hostname, &msg));
                    }
                }
                let node = s(a, "nodeName");
                if !node.is_empty() {
                    for msg in is_dns1123_subdomain(node) {
                        errs.push(invalid(format!("{apath}.nodeName"), node, &msg));
                    }
                }
            }
        }
        let ports = arr(subset, "ports");
        let require_name = ports.len() > 1;
        let mut names = HashSet::new();
        for (j, p) in ports.iter().enumerate() {
            let ppath = format!("{path}.ports[{j}]");
            let name = s(p, "name");
            if require_name && name.is_empty() {
                errs.push(required(format!("{ppath}.name"), ""));
            } else if !name.is_empty() {
                let msgs = is_dns1123_label(name);
                if !msgs.is_empty() {
                    for msg in msgs {
                        errs.push(invalid(format!("{ppath}.name"), name, &msg));
                    }
                } else if !names.insert(name.to_string()) {
                    errs.push(duplicate(format!("{ppath}.name"), name));
                }
            }
            let port = int(p, "port").unwrap_or(0);
            for msg in is_valid_port_num(port) {
                errs.push(invalid(format!("{ppath}.port"), port, &msg));
            }
            let protocol = s(p, "protocol");
            if protocol.is_empty() {
                errs.push(required(format!("{ppath}.protocol"), ""));
            } else if !PROTOCOLS.contains(&protocol) {
                errs.push(not_supported(
                    format!("{ppath}.protocol"),
                    protocol,
                    PROTOCOLS,
                ));
            }
        }
    }
}

/// ValidateNode (+ the podCIDR/providerID rules of ValidateNodeUpdate).
pub(crate) fn node(node: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = node.get("spec").unwrap_or(&empty);
    let pod_cidrs: Vec<&str> = match arr(spec, "podCIDRs") {
        [] if !s(spec, "podCIDR").is_empty() => vec![s(spec, "podCIDR")],
        list => list.iter().filter_map(Value::as_str).collect(),
    };
    for (i, cidr) in pod_cidrs.iter().enumerate() {
        if !is_valid_cidr(cidr) {
            errs.push(invalid(
                format!("spec.podCIDRs[{i}]"),
                *cidr,
                "must be a valid CIDR",
            ));
        }
    }
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = s(t, "key");
        if key.is_empty() {
            errs.push(required(format!("{path}.key"), ""));
        }
        for msg in is_qualified_name(key) {
            if !key.is_empty() {
                errs.push(invalid(format!("{path}.key"), key, &msg));
            }
        }
        let effect = s(t, "effect");
        let effects = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
        if effect.is_empty() {
            errs.push(required(format!("{path}.effect"), ""));
        } else if !effects.contains(&effect) {
            errs.push(not_supported(format!("{path}.effect"), effect, &effects));
        }
    }
    let status = node.get("status").unwrap_or(&empty);
    for key in ["capacity", "allocatable"] {
        for (name, q) in obj(status, key).into_iter().flatten() {
            let path = format!("status.{key}[{name}]");
            for msg in is_qualified_name(name) {
                errs.push(invalid(path.clone(), name, &msg));
            }
            quantity_value(name, q.as_str().unwrap_or_default(), &path, errs);
        }
    }
    let address_types = [
        "Hostname",
        "InternalIP",
        "ExternalIP",
        "InternalDNS",
        "ExternalDNS",
    ];
    for (i, a) in arr(status, "addresses").iter().enumerate() {
        let t = s(a, "type");
        if !address_types.contains(&t) {
            errs.push(not_supported(
                format!("status.addresses[{i}].type"),
                t,
                &address_types,
            ));
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&empty);
        let old_cidrs: Vec<&str> = match arr(old_spec, "podCIDRs") {
            [] if !s(old_spec, "podCIDR").is_empty() => vec![s(old_spec, "podCIDR")],
            list => list.iter().filter_map(Value::as_str).collect(),
        };
        if !old_cidrs.is_empty() && old_cidrs != pod_cidrs {
            errs.push(forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = s(old_spec, "providerID");
        if !old_provider.is_empty() && old_provider != s(spec, "providerID") {
            errs.push(forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
}

/// ValidateNamespace.
pub(crate) fn namespace(ns: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = ns.get("spec").unwrap_or(&empty);
    for (i, f) in arr(spec, "finalizers").iter().enumerate() {
        finalizer_name(
            f.as_str().unwrap_or_default(),
            &format!("spec.finalizers[{i}]"),
            errs,
        );
    }
    let phase = s(ns.get("status").unwrap_or(&empty), "phase");
    if !phase.is_empty() && !["Active", "Terminating"].contains(&phase) {
        errs.push(not_supported(
            "status.phase",
            phase,
            &["Active", "Terminating"],
        ));
    }
}

/// Keys a Secret of each well-known type must carry.
fn secret_required_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

/// ValidateSecret (+ ValidateSecretUpdate).
pub(crate) fn secret(secret: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    let data = obj(secret, "data");
    for (k, v) in data.into_iter().flatten() {
        for msg in is_config_map_key(k) {
            errs.push(invalid(format!("data[{k}]"), k, &msg));
        }
        // Sizes count decoded bytes; the JSON holds base64 (4 chars per 3 bytes).
        total += v
            .as_str()
            .map_or(0, |b64| b64.trim_end_matches('=').len() * 3 / 4);
    }
    for (k, v) in obj(secret, "stringData").into_iter().flatten() {
        for msg in is_config_map_key(k) {
            errs.push(invalid(format!("stringData[{k}]"), k, &msg));
        }
        total += v.as_str().map_or(0, str::len);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("data", MAX_SECRET_SIZE));
    }
    let secret_type = s(secret, "type");
    let has_key = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match secret_type {
        "kubernetes.io/service-account-token" => {
            let annotated = secret
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !annotated {
                errs.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/basic-auth" => {
            if !has_key("username") && !has_key("password") {
                errs.push(required("data[username]", ""));
                errs.push(required("data[password]", ""));
            }
        }
        t => {
            for key in secret_required_keys(t) {
                if !has_key(key) {
                    errs.push(required(format!("data[{key}]"), ""));
                }
            }
        }
    }
    if let Some(old) = old {
        let old_type = s(old, "type");
        if !old_type.is_empty() && old_type != secret_type {
            errs.push(invalid("type", secret_type, "field is immutable"));
        }
        immutable_data(secret, old, &["data"], errs);
    }
}

/// `immutable: true` freezes data (and itself).
fn immutable_data(new: &Value, old: &Value, data_keys: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for key in data_keys {
        if new.get(*key) != old.get(*key) {
            errs.push(forbidden(
                *key,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// ValidateConfigMap (+ ValidateConfigMapUpdate).
pub(crate) fn config_map(cm: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let mut total = 0usize;
    let data = obj(cm, "data");
    for (k, v) in data.into_iter().flatten() {
        for msg in is_config_map_key(k) {
            errs.push(invalid(format!("data[{k}]"), k, &msg));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in obj(cm, "binaryData").into_iter().flatten() {
        for msg in is_config_map_key(k) {
            errs.push(invalid(format!("binaryData[{k}]"), k, &msg));
        }
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(invalid(
                format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total += v
            .as_str()
            .map_or(0, |b64| b64.trim_end_matches('=').len() * 3 / 4);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(too_long("", MAX_SECRET_SIZE));
    }
    if let Some(old) = old {
        immutable_data(cm, old, &["data", "binaryData"], errs);
    }
}

/// ValidateEvent (the legacy v1 rules).
pub(crate) fn event(ev: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let involved = ev.get("involvedObject").unwrap_or(&empty);
    let ns = ev
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved_ns = s(involved, "namespace");
    // Cluster-scoped objects' events live in "default"; namespaced ones in their namespace.
    if !involved_ns.is_empty() && involved_ns != ns {
        errs.push(invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
    let event_type = s(ev, "type");
    if !event_type.is_empty() && !["Normal", "Warning"].contains(&event_type) {
        errs.push(not_supported("type", event_type, &["Normal", "Warning"]));
    }
}

/// Quantities of one LimitRange map, by resource name (`None` when unparsable).
type Entries = Vec<(String, Option<quantity::Quantity>)>;

/// ValidateLimitRange.
pub(crate) fn limit_range(lr: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = lr.get("spec").unwrap_or(&empty);
    let mut types = HashSet::new();
    for (i, item) in arr(spec, "limits").iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let limit_type = s(item, "type");
        if !types.insert(limit_type.to_string()) {
            errs.push(duplicate(format!("{path}.type"), limit_type));
        }
        let mut maps: Vec<(&str, Entries)> = Vec::new();
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            let mut entries = Vec::new();
            for (name, q) in obj(item, key).into_iter().flatten() {
                let text = q.as_str().unwrap_or_default();
                let qpath = format!("{path}.{key}[{name}]");
                for msg in is_qualified_name(name) {
                    errs.push(invalid(qpath.clone(), name.as_str(), &msg));
                }
                quantity_value(name, text, &qpath, errs);
                entries.push((name.clone(), quantity::parse(text).ok()));
            }
            if limit_type == "Pod"
                && matches!(key, "default" | "defaultRequest")
                && !entries.is_empty()
            {
                errs.push(forbidden(
                    format!("{path}.{key}"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            maps.push((key, entries));
        }
        let get = |key: &str, name: &str| -> Option<quantity::Quantity> {
            maps.iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, e)| e.iter().find(|(n, _)| n == name))
                .and_then(|(_, q)| *q)
        };
        let mut names: Vec<String> = maps
            .iter()
            .flat_map(|(_, e)| e.iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let (min, max) = (get("min", &name), get("max", &name));
            let (def, def_req) = (get("default", &name), get("defaultRequest", &name));
            let ratio = get("maxLimitRequestRatio", &name);
            let c = |q: quantity::Quantity| q.canonical();
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                errs.push(invalid(
                    format!("{path}.min[{name}]"),
                    c(min),
                    &format!("min value {} is greater than max value {}", c(min), c(max)),
                ));
            }
            if let (Some(dr), Some(min)) = (def_req, min)
                && min > dr
            {
                errs.push(invalid(
                    format!("{path}.defaultRequest[{name}]"),
                    c(dr),
                    &format!(
                        "min value {} is greater than default request value {}",
                        c(min),
                        c(dr)
                    ),
                ));
            }
            if let (Some(dr), Some(max)) = (def_req, max)
                && dr > max
            {
                errs.push(invalid(
                    format!("{path}.defaultRequest[{name}]"),
                    c(dr),
                    &format!(
                        "default request value {} is greater than max value {}",
                        c(dr),
                        c(max)
                    ),
                ));
            }
            if let (Some(dr), Some(d)) = (def_req, def)
                && dr > d
            {
                errs.push(invalid(
                    format!("{path}.defaultRequest[{name}]"),
                    c(dr),
                    &format!(
                        "default request value {} is greater than default limit value {}",
                        c(dr),
                        c(d)
                    ),
                ));
            }
            if let (Some(d), Some(min)) = (def, min)
                && min > d
            {
                errs.push(invalid(
                    format!("{path}.default[{name}]"),
                    c(min),
                    &format!(
                        "min value {} is greater than default value {}",
                        c(min),
                        c(d)
                    ),
                ));
            }
            if let (Some(d), Some(max)) = (def, max)
                && d > max
            {
                errs.push(invalid(
                    format!("{path}.default[{name}]"),
                    c(max),
                    &format!(
                        "default value {} is greater than max value {}",
                        c(d),
                        c(max)
                    ),
                ));
            }
            if let Some(r) = ratio
                && r.millis < 1000
            {
                errs.push(invalid(
                    format!("{path}.maxLimitRequestRatio[{name}]"),
                    c(r),
                    &format!("ratio {} is less than 1", c(r)),
                ));
            }
        }
    }
}

/// Resource names a quota may limit without a domain prefix.
const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// ValidateResourceQuota: quota resource names and non-negative quantities.
pub(crate) fn resource_quota(rq: &Value, errs: &mut Vec<FieldError>) {
    for (section, key) in [("spec", "hard"), ("status", "hard"), ("status", "used")] {
        let Some(map) = rq.get(section).and_then(|s| obj(s, key)) else {
            continue;
        };
        for (name, q) in map {
            let path = format!("{section}.{key}[{name}]");
            let msgs = is_qualified_name(name);
            for msg in &msgs {
                errs.push(invalid(path.clone(), name.as_str(), msg));
            }
            let known = STANDARD_QUOTA_RESOURCES.contains(&name.as_str())
                || name.contains('/')
                || name.starts_with("count/")
                || name.starts_with("requests.")
                || name.starts_with("limits.");
            if msgs.is_empty() && !known {
                errs.push(invalid(
                    path.clone(),
                    name.as_str(),
                    "must be a standard resource type or fully qualified",
                ));
            }
            quantity_value(name, q.as_str().unwrap_or_default(), &path, errs);
        }
    }
    for (i, scope) in arr(rq.get("spec").unwrap_or(&Value::Null), "scopes")
        .iter()
        .enumerate()
    {
        let scope = scope.as_str().unwrap_or_default();
        let scopes = [
            "Terminating",
            "NotTerminating",
            "BestEffort",
            "NotBestEffort",
            "PriorityClass",
            "CrossNamespacePodAffinity",
        ];
        if !scopes.contains(&scope) {
            errs.push(not_supported(format!("spec.scopes[{i}]"), scope, &scopes));
        }
    }
}

/// ValidateLease.
pub(crate) fn lease(lease: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = lease.get("spec").unwrap_or(&empty);
    if let Some(d) = int(spec, "leaseDurationSeconds")
        && d <= 0
    {
        errs.push(invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions")
        && t < 0
    {
        errs.push(invalid("spec.leaseTransitions", t, NEGATIVE));
    }
    let strategy = s(spec, "strategy");
    if !strategy.is_empty() && strategy != "OldestEmulationVersion" {
        errs.push(not_supported(
            "spec.strategy",
            strategy,
            &["OldestEmulationVersion"],
        ));
    }
}

/// ValidatePodBinding.
pub(crate) fn binding(b: &Value, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let target = b.get("target").unwrap_or(&empty);
    let kind = s(target, "kind");
    if !kind.is_empty() && kind != "Node" {
        errs.push(not_supported("target.kind", kind, &["Node", "<empty>"]));
    }
    if s(target, "name").is_empty() {
        errs.push(required("target.name", ""));
    }
}
