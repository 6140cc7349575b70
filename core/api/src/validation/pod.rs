//! Pod, pod spec and pod template validation (`ValidatePodSpec` and what it calls).

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::names::{
    self, NEGATIVE, inclusive_range_error, is_config_map_key, is_dns1123_label,
    is_dns1123_subdomain, is_env_var_name, is_qualified_name, is_valid_port_name,
    is_valid_port_num,
};
use super::{
    Bad, FieldError, annotations, arr, duplicate, flag, forbidden, int, invalid, labels, not_found,
    not_supported, obj, required, s,
};
use crate::object::quantity;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// ValidatePodCreate / ValidatePodUpdate.
pub(crate) fn validate_pod(pod: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let spec = pod.get("spec").unwrap_or(&empty);
    pod_spec(spec, "spec", errs);
    if let Some(old) = old {
        pod_update(spec, old.get("spec").unwrap_or(&empty), errs);
    }
}

/// ValidatePodTemplateSpec: the template's labels and annotations, then its pod spec.
pub(crate) fn pod_template_spec(template: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let meta = template.get("metadata").unwrap_or(&empty);
    labels(
        obj(meta, "labels"),
        &format!("{path}.metadata.labels"),
        errs,
    );
    annotations(
        obj(meta, "annotations"),
        &format!("{path}.metadata.annotations"),
        errs,
    );
    pod_spec(
        template.get("spec").unwrap_or(&empty),
        &format!("{path}.spec"),
        errs,
    );
}

/// ValidatePodSpec.
pub(crate) fn pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volumes = volumes(arr(spec, "volumes"), &format!("{path}.volumes"), errs);
    let host_network = flag(spec, "hostNetwork");
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(required(format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (list, items) in [
        ("initContainers", arr(spec, "initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in items.iter().enumerate() {
            container(
                c,
                &format!("{path}.{list}[{i}]"),
                &volumes,
                host_network,
                &mut names,
                errs,
            );
        }
    }
    host_port_conflicts(spec, path, errs);

    let restart = s(spec, "restartPolicy");
    match restart {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(format!("{path}.restartPolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns = s(spec, "dnsPolicy");
    match dns {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(required(format!("{path}.dnsPolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    labels(
        obj(spec, "nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    for (key, rule) in [
        (
            "serviceAccountName",
            names::is_dns1123_subdomain as fn(&str) -> Vec<String>,
        ),
        ("nodeName", is_dns1123_subdomain),
        ("hostname", is_dns1123_label),
        ("subdomain", is_dns1123_label),
    ] {
        let v = s(spec, key);
        if !v.is_empty() {
            for msg in rule(v) {
                errs.push(invalid(format!("{path}.{key}"), v, &msg));
            }
        }
    }
    if let Some(ads) = int(spec, "activeDeadlineSeconds")
        && !(1..=i64::from(u32::MAX)).contains(&ads)
    {
        errs.push(invalid(
            format!("{path}.activeDeadlineSeconds"),
            ads,
            &inclusive_range_error(1, i64::from(u32::MAX)),
        ));
    }
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
    for (i, secret) in arr(spec, "imagePullSecrets").iter().enumerate() {
        let name = s(secret, "name");
        if !name.is_empty() {
            for msg in is_dns1123_subdomain(name) {
                errs.push(invalid(
                    format!("{path}.imagePullSecrets[{i}].name"),
                    name,
                    &msg,
                ));
            }
        }
    }
}

/// Validates volumes; returns their names for the volume mount check.
fn volumes(volumes: &[Value], path: &str, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let vpath = format!("{path}[{i}]");
        let name = s(v, "name");
        if name.is_empty() {
            errs.push(required(format!("{vpath}.name"), ""));
        } else {
            let msgs = is_dns1123_label(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(format!("{vpath}.name"), name, &msg));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(duplicate(format!("{vpath}.name"), name));
            }
        }
        let sources = v
            .as_object()
            .map(crate::object::defaults_volume_sources)
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errs.push(required(vpath.clone(), "must specify a volume type")),
            [first, rest @ ..] => {
                for extra in rest {
                    errs.push(forbidden(
                        format!("{vpath}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
                volume_source(v, first, &format!("{vpath}.{first}"), errs);
            }
        }
    }
    names
}

fn volume_source(v: &Value, source: &str, path: &str, errs: &mut Vec<FieldError>) {
    let empty = Value::Object(Map::new());
    let src = v.get(source).unwrap_or(&empty);
    match source {
        "hostPath" => {
            if s(src, "path").is_empty() {
                errs.push(required(format!("{path}.path"), ""));
            }
            let t = s(src, "type");
            let types = [
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            if !types.contains(&t) {
                errs.push(not_supported(format!("{path}.type"), t, &types));
            }
        }
        "emptyDir" => {
            let medium = s(src, "medium");
            if !["", "Memory", "HugePages"].contains(&medium) && !medium.starts_with("HugePages-") {
                errs.push(not_supported(
                    format!("{path}.medium"),
                    medium,
                    &["", "Memory", "HugePages"],
                ));
            }
        }
        "secret" => {
            if s(src, "secretName").is_empty() {
                errs.push(required(format!("{path}.secretName"), ""));
            }
            file_mode(src, "defaultMode", path, errs);
            key_to_paths(src, path, errs);
        }
        "configMap" => {
            if s(src, "name").is_empty() {
                errs.push(required(format!("{path}.name"), ""));
            }
            file_mode(src, "defaultMode", path, errs);
            key_to_paths(src, path, errs);
        }
        "persistentVolumeClaim" if s(src, "claimName").is_empty() => {
            errs.push(required(format!("{path}.claimName"), ""));
        }
        "nfs" => {
            if s(src, "server").is_empty() {
                errs.push(required(format!("{path}.server"), ""));
            }
            let p = s(src, "path");
            if p.is_empty() {
                errs.push(required(format!("{path}.path"), ""));
            } else if !p.starts_with('/') {
                errs.push(invalid(
                    format!("{path}.path"),
                    p,
                    "must be an absolute path",
                ));
            }
        }
        "downwardAPI" | "projected" => file_mode(src, "defaultMode", path, errs),
        _ => {}
    }
}

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

fn file_mode(src: &Value, key: &str, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(mode) = int(src, key)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(invalid(format!("{path}.{key}"), mode, FILE_MODE_MSG));
    }
}

fn key_to_paths(src: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (i, item) in arr(src, "items").iter().enumerate() {
        let ipath = format!("{path}.items[{i}]");
        if s(item, "key").is_empty() {
            errs.push(required(format!("{ipath}.key"), ""));
        }
        let p = s(item, "path");
        if p.is_empty() {
            errs.push(required(format!("{ipath}.path"), ""));
        } else {
            local_non_reserved_path(p, &format!("{ipath}.path"), errs);
        }
        file_mode(item, "mode", &ipath, errs);
    }
}

/// validateLocalDescendingPath + the `..` prefix rule for projected files.
fn local_non_reserved_path(p: &str, field: &str, errs: &mut Vec<FieldError>) {
    if p.starts_with('/') {
        errs.push(invalid(field, p, "must be a relative path"));
    }
    if p.split('/').any(|part| part == "..") {
        errs.push(invalid(field, p, "must not contain '..'"));
    }
    if p.starts_with("..") {
        errs.push(invalid(field, p, "must not start with '..'"));
    }
}

fn container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    host_network: bool,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let name = s(c, "name");
    if name.is_empty() {
        errs.push(required(format!("{path}.name"), ""));
    } else {
        let msgs = is_dns1123_label(name);
        if !msgs.is_empty() {
            for msg in msgs {
                errs.push(invalid(format!("{path}.name"), name, &msg));
            }
        } else if !names.insert(name.to_string()) {
            errs.push(duplicate(format!("{path}.name"), name));
        }
    }
    let image = s(c, "image");
    if image.is_empty() {
        errs.push(required(format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(invalid(
            format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(lifecycle) = c.get("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get(hook) {
                handler(h, &format!("{path}.lifecycle.{hook}"), errs);
            }
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(probe_name) {
            let ppath = format!("{path}.{probe_name}");
            probe(p, &ppath, errs);
            let success = int(p, "successThreshold").unwrap_or(0);
            if probe_name != "readinessProbe" && success != 1 {
                errs.push(invalid(
                    format!("{ppath}.successThreshold"),
                    success,
                    "must be 1",
                ));
            }
        }
    }
    container_ports(
        arr(c, "ports"),
        &format!("{path}.ports"),
        host_network,
        errs,
    );
    env(arr(c, "env"), &format!("{path}.env"), errs);
    volume_mounts(
        arr(c, "volumeMounts"),
        volumes,
        &format!("{path}.volumeMounts"),
        errs,
    );
    let pull = s(c, "imagePullPolicy");
    match pull {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(format!("{path}.imagePullPolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = c.get("resources") {
        resources(r, &format!("{path}.resources"), errs);
    }
    let tmp = s(c, "terminationMessagePolicy");
    match tmp {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(format!("{path}.terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            format!("{path}.terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
}

/// validateProbe.
fn probe(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    handler(p, path, errs);
    for key in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = int(p, key)
            && v < 0
        {
            errs.push(invalid(format!("{path}.{key}"), v, NEGATIVE));
        }
    }
    if let Some(t) = int(p, "terminationGracePeriodSeconds")
        && t <= 0
    {
        errs.push(invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
}

/// validateHandler: exactly one of exec, httpGet, tcpSocket, grpc (sleep for lifecycle).
fn handler(h: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let kinds = ["exec", "httpGet", "tcpSocket", "grpc", "sleep"];
    let present: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| h.get(*k).is_some())
        .collect();
    let Some(first) = present.first() else {
        errs.push(required(path, "must specify a handler type"));
        return;
    };
    for extra in &present[1..] {
        errs.push(forbidden(
            format!("{path}.{extra}"),
            "may not specify more than 1 handler type",
        ));
    }
    let empty = Value::Object(Map::new());
    let body = h.get(*first).unwrap_or(&empty);
    let bpath = format!("{path}.{first}");
    match *first {
        "exec" if arr(body, "command").is_empty() => {
            errs.push(required(format!("{bpath}.command"), ""));
        }
        "httpGet" => {
            if s(body, "path").is_empty() {
                errs.push(required(format!("{bpath}.path"), ""));
            }
            port_num_or_name(body.get("port"), &format!("{bpath}.port"), errs);
            let scheme = s(body, "scheme");
            if !["HTTP", "HTTPS"].contains(&scheme) {
                errs.push(not_supported(
                    format!("{bpath}.scheme"),
                    scheme,
                    &["HTTP", "HTTPS"],
                ));
            }
        }
        "tcpSocket" => port_num_or_name(body.get("port"), &format!("{bpath}.port"), errs),
        "grpc" => {
            let port = int(body, "port").unwrap_or(0);
            for msg in is_valid_port_num(port) {
                errs.push(invalid(format!("{bpath}.port"), port, &msg));
            }
        }
        _ => {}
    }
}

/// ValidatePortNumOrName.
pub(crate) fn port_num_or_name(port: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    match port {
        Some(Value::String(name)) => {
            for msg in is_valid_port_name(name) {
                errs.push(invalid(path, name, &msg));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for msg in is_valid_port_num(n) {
                errs.push(invalid(path, n, &msg));
            }
        }
        None => {
            for msg in is_valid_port_num(0) {
                errs.push(invalid(path, 0, &msg));
            }
        }
    }
}

fn container_ports(ports: &[Value], path: &str, host_network: bool, errs: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let ppath = format!("{path}[{i}]");
        let name = s(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid(format!("{ppath}.name"), name, &msg));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(duplicate(format!("{ppath}.name"), name));
            }
        }
        let container_port = int(p, "containerPort").unwrap_or(0);
        if container_port == 0 {
            errs.push(required(format!("{ppath}.containerPort"), ""));
        } else {
            for msg in is_valid_port_num(container_port) {
                errs.push(invalid(
                    format!("{ppath}.containerPort"),
                    container_port,
                    &msg,
                ));
            }
        }
        let host_port = int(p, "hostPort").unwrap_or(0);
        if host_port != 0 {
            for msg in is_valid_port_num(host_port) {
                errs.push(invalid(format!("{ppath}.hostPort"), host_port, &msg));
            }
        }
        if host_network && host_port != container_port {
            errs.push(invalid(
                format!("{ppath}.hostPort"),
                host_port,
                "must match `containerPort` when `hostNetwork` is true",
            ));
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

/// AccumulateUniqueHostPorts over all containers of the pod.
fn host_port_conflicts(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (list, items) in [
        ("initContainers", arr(spec, "initContainers")),
        ("containers", arr(spec, "containers")),
    ] {
        for (ci, c) in items.iter().enumerate() {
            for (pi, p) in arr(c, "ports").iter().enumerate() {
                let port = int(p, "hostPort").unwrap_or(0);
                if port == 0 {
                    continue;
                }
                let key = format!("{}/{}/{port}", s(p, "hostIP"), s(p, "protocol"));
                if !seen.insert(key.clone()) {
                    errs.push(duplicate(
                        format!("{path}.{list}[{ci}].ports[{pi}].hostPort"),
                        key,
                    ));
                }
            }
        }
    }
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

fn env(vars: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    for (i, ev) in vars.iter().enumerate() {
        let epath = format!("{path}[{i}]");
        let name = s(ev, "name");
        if name.is_empty() {
            errs.push(required(format!("{epath}.name"), ""));
        }
        for msg in is_env_var_name(name) {
            errs.push(invalid(format!("{epath}.name"), name, &msg));
        }
        let Some(from) = ev.get("valueFrom") else {
            continue;
        };
        let fpath = format!("{epath}.valueFrom");
        let mut sources = 0;
        if let Some(fr) = from.get("fieldRef") {
            sources += 1;
            field_ref(fr, &format!("{fpath}.fieldRef"), errs);
        }
        if let Some(rr) = from.get("resourceFieldRef") {
            sources += 1;
            let r = s(rr, "resource");
            if r.is_empty() {
                errs.push(required(format!("{fpath}.resourceFieldRef.resource"), ""));
            }
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(kr) = from.get(key) {
                sources += 1;
                let kpath = format!("{fpath}.{key}");
                if s(kr, "name").is_empty() {
                    errs.push(required(format!("{kpath}.name"), ""));
                }
                let k = s(kr, "key");
                if k.is_empty() {
                    errs.push(required(format!("{kpath}.key"), ""));
                } else {
                    for msg in is_config_map_key(k) {
                        errs.push(invalid(format!("{kpath}.key"), k, &msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(invalid(
                fpath,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(ev, "value").is_empty() {
            errs.push(invalid(
                fpath,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(invalid(
                fpath,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

/// validateObjectFieldSelector for the downward API in env vars.
fn field_ref(fr: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let api_version = s(fr, "apiVersion");
    let field_path = s(fr, "fieldPath");
    if api_version.is_empty() {
        errs.push(required(format!("{path}.apiVersion"), ""));
        return;
    }
    if field_path.is_empty() {
        errs.push(required(format!("{path}.fieldPath"), ""));
        return;
    }
    if api_version != "v1" {
        errs.push(invalid(
            format!("{path}.fieldPath"),
            field_path,
            &format!("error converting fieldPath: unsupported pod version: {api_version}"),
        ));
        return;
    }
    if let Some((base, rest)) = field_path.split_once('[') {
        // metadata.labels['key'] / metadata.annotations['key']
        if !matches!(base, "metadata.labels" | "metadata.annotations") {
            errs.push(invalid(
                format!("{path}.fieldPath"),
                field_path,
                &format!("error converting fieldPath: field label does not support subscript: {field_path}"),
            ));
            return;
        }
        let key = rest
            .strip_suffix(']')
            .map(|k| k.trim_matches('\''))
            .unwrap_or_default();
        for msg in is_qualified_name(&key.to_ascii_lowercase()) {
            errs.push(invalid(format!("{path}.fieldPath"), key, &msg));
        }
        return;
    }
    let known = [
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
        "spec.host",
    ];
    if !known.contains(&field_path) {
        errs.push(invalid(
            format!("{path}.fieldPath"),
            field_path,
            &format!("error converting fieldPath: field label not supported: {field_path}"),
        ));
        return;
    }
    let internal = if field_path == "spec.host" {
        "spec.nodeName"
    } else {
        field_path
    };
    if !ENV_FIELD_PATHS.contains(&internal) {
        errs.push(not_supported(
            format!("{path}.fieldPath"),
            internal,
            ENV_FIELD_PATHS,
        ));
    }
}

fn volume_mounts(
    mounts: &[Value],
    volumes: &HashSet<String>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let mpath = format!("{path}[{i}]");
        let name = s(m, "name");
        if name.is_empty() {
            errs.push(required(format!("{mpath}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(not_found(format!("{mpath}.name"), name));
        }
        let mount_path = s(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(required(format!("{mpath}.mountPath"), ""));
        }
        if !mount_points.insert(mount_path.to_string()) {
            errs.push(invalid(
                format!("{mpath}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        let sub_path = s(m, "subPath");
        if !sub_path.is_empty() {
            if sub_path.starts_with('/') {
                errs.push(invalid(
                    format!("{mpath}.subPath"),
                    sub_path,
                    "must be a relative path",
                ));
            }
            if sub_path.split('/').any(|p| p == "..") {
                errs.push(invalid(
                    format!("{mpath}.subPath"),
                    sub_path,
                    "must not contain '..'",
                ));
            }
        }
    }
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

/// ValidateResourceRequirements for a container.
fn resources(r: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let empty = Map::new();
    let limits = obj(r, "limits").unwrap_or(&empty);
    let requests = obj(r, "requests").unwrap_or(&empty);
    for (key, map) in [("limits", limits), ("requests", requests)] {
        for (name, q) in map {
            let rpath = format!("{path}.{key}[{name}]");
            container_resource_name(name, &rpath, errs);
            quantity_value(name, q.as_str().unwrap_or_default(), &rpath, errs);
        }
    }
    for (name, q) in requests {
        let q_text = q.as_str().unwrap_or_default();
        let Ok(req) = quantity::parse(q_text) else {
            continue;
        };
        match limits
            .get(name)
            .and_then(Value::as_str)
            .map(quantity::parse)
        {
            Some(Ok(limit)) => {
                if req.millis != limit.millis && !is_overcommit_allowed(name) {
                    errs.push(invalid(
                        format!("{path}.requests"),
                        req.canonical(),
                        &format!("must be equal to {name} limit of {}", limit.canonical()),
                    ));
                } else if req.millis > limit.millis {
                    errs.push(invalid(
                        format!("{path}.requests"),
                        req.canonical(),
                        &format!(
                            "must be less than or equal to {name} limit of {}",
                            limit.canonical()
                        ),
                    ));
                }
            }
            Some(Err(_)) => {}
            None => {
                if !is_overcommit_allowed(name) {
                    errs.push(required(
                        format!("{path}.limits"),
                        "Limit must be set for non overcommitable resources",
                    ));
                }
            }
        }
    }
}

fn container_resource_name(name: &str, path: &str, errs: &mut Vec<FieldError>) {
    let msgs = is_qualified_name(name);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(invalid(path, name, &msg));
        }
        return;
    }
    if !name.contains('/') {
        if !is_standard_container_resource(name) {
            errs.push(invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && name.starts_with("requests.") {
        errs.push(invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// Object-count quota resources take whole numbers only.
pub(crate) fn is_integer_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "services"
            | "replicationcontrollers"
            | "resourcequotas"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || name.starts_with("count/")
}

/// ValidateResourceQuantityValue.
pub(crate) fn quantity_value(name: &str, text: &str, path: &str, errs: &mut Vec<FieldError>) {
    let Ok(q) = quantity::parse(text) else {
        errs.push(invalid(path, text, quantity::QUANTITY_FORMAT_ERROR));
        return;
    };
    if q.millis < 0 {
        errs.push(invalid(path, q.canonical(), NEGATIVE));
    }
    if is_integer_resource(name) && q.millis % 1000 != 0 {
        errs.push(invalid(path, q.canonical(), "must be an integer"));
    }
}

fn toleration(t: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let key = s(t, "key");
    if !key.is_empty() {
        for msg in is_qualified_name(key) {
            errs.push(invalid(format!("{path}.key"), key, &msg));
        }
    }
    let operator = s(t, "operator");
    match operator {
        "" | "Equal" => {
            if key.is_empty() && operator == "Equal" {
                errs.push(invalid(
                    format!("{path}.operator"),
                    operator,
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                ));
            }
            let value = s(t, "value");
            for msg in names::is_valid_label_value(value) {
                errs.push(invalid(format!("{path}.value"), value, &msg));
            }
        }
        "Exists" => {
            let value = s(t, "value");
            if !value.is_empty() {
                errs.push(invalid(
                    format!("{path}.operator"),
                    Bad::Str(value.to_string()),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(not_supported(
            format!("{path}.operator"),
            other,
            &["Equal", "Exists"],
        )),
    }
    let effect = s(t, "effect");
    if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        errs.push(not_supported(
            format!("{path}.effect"),
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
    if t.get("tolerationSeconds").is_some() && effect != "NoExecute" {
        errs.push(invalid(
            format!("{path}.effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

/// The fields `kubectl` is told it may change on a pod.
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// ValidatePodUpdate for the spec: everything is immutable but a few fields.
fn pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    // activeDeadlineSeconds may be set, or lowered, never raised or removed.
    match (
        int(new, "activeDeadlineSeconds"),
        int(old, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(invalid(
                "spec.activeDeadlineSeconds",
                n,
                &inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => errs.push(invalid(
            "spec.activeDeadlineSeconds",
            Bad::Raw("null".into()),
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // Tolerations: every old toleration must still be there (tolerationSeconds may change).
    let strip_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    let new_tolerations: Vec<Value> = arr(new, "tolerations").iter().map(strip_seconds).collect();
    if arr(old, "tolerations")
        .iter()
        .map(strip_seconds)
        .any(|t| !new_tolerations.contains(&t))
    {
        errs.push(forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }

    let mut munged = new.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            let old_items = arr(old, list);
            if let Some(items) = m.get_mut(list).and_then(Value::as_array_mut)
                && items.len() == old_items.len()
            {
                for (c, o) in items.iter_mut().zip(old_items) {
                    if let Some(c) = c.as_object_mut() {
                        match o.get("image") {
                            Some(img) => c.insert("image".into(), img.clone()),
                            None => c.remove("image"),
                        };
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "tolerations"] {
            match old.get(key) {
                Some(v) => m.insert(key.into(), v.clone()),
                None => m.remove(key),
            };
        }
        let old_grace = int(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && int(new, "terminationGracePeriodSeconds") == Some(1)
            && let Some(g) = old.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".into(), g.clone());
        }
    }
    if munged != *old {
        errs.push(forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                spec_diff(old, &munged)
            ),
        ));
    }
}

/// A short diff in the spirit of `cmp.Diff` (which Kubernetes appends): the top-level spec
/// fields that differ, old then new.
fn spec_diff(old: &Value, new: &Value) -> String {
    let keys: BTreeSet<&String> = old
        .as_object()
        .into_iter()
        .flatten()
        .chain(new.as_object().into_iter().flatten())
        .map(|(k, _)| k)
        .collect();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        let (o, n) = (old.get(k.as_str()), new.get(k.as_str()));
        if o != n {
            let show = |v: Option<&Value>| v.map_or("nil".to_string(), Value::to_string);
            out.push_str(&format!("- \t{k}: {},\n", show(o)));
            out.push_str(&format!("+ \t{k}: {},\n", show(n)));
        }
    }
    out.push_str("  }\n");
    out
}
