//! Field validation with Kubernetes' rules and Kubernetes' words.
//!
//! [`validate`] runs after decoding and defaulting and returns the causes of a 422 Invalid
//! `Status`. Each [`FieldError`] carries the cause type, the field path and the message body
//! exactly as `k8s.io/apimachinery/pkg/util/validation/field` prints them, so that the
//! server's `"Pod \"x\" is invalid: spec.containers[0].image: Required value"` reads the same
//! as a real cluster's.

mod kinds;
mod names;
mod pod;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

pub use names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_ip, is_valid_label_value, is_valid_port_name,
};

/// One validation failure, shaped like a Kubernetes `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The `StatusCause.reason` (`CauseType`): `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueNotSupported`, `FieldValueDuplicate`, `FieldValueTooLong`,
    /// `FieldValueForbidden`, `FieldValueNotFound`, `FieldValueTypeInvalid`.
    pub reason: &'static str,
    /// Path of the field, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The message body without the field, e.g. `Required value` or
    /// `Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`.
    pub message: String,
}

impl FieldError {
    /// `field: message`, as Kubernetes joins them in the `Status` message.
    pub fn to_string_with_field(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_with_field())
    }
}

/// The whole `Status.message` Kubernetes builds from the causes:
/// `Pod "x" is invalid: [a: Required value, b: Invalid value: ...]` (no brackets for one).
pub fn status_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let joined: Vec<String> = errors
        .iter()
        .map(FieldError::to_string_with_field)
        .collect();
    let body = if joined.len() == 1 {
        joined.concat()
    } else {
        format!("[{}]", joined.join(", "))
    };
    format!("{kind} \"{name}\" is invalid: {body}")
}

/// A bad value as `field.Error` prints it.
#[derive(Clone, Debug)]
pub(crate) enum Bad {
    /// Printed with Go's `%q`.
    Str(String),
    /// Printed as a number.
    Int(i64),
    /// Printed as given (Go's `%#v` of maps and slices, rendered by the caller).
    Raw(String),
}

impl From<&str> for Bad {
    fn from(s: &str) -> Self {
        Bad::Str(s.to_string())
    }
}
impl From<String> for Bad {
    fn from(s: String) -> Self {
        Bad::Str(s)
    }
}
impl From<&String> for Bad {
    fn from(s: &String) -> Self {
        Bad::Str(s.clone())
    }
}
impl From<i64> for Bad {
    fn from(i: i64) -> Self {
        Bad::Int(i)
    }
}

impl Bad {
    fn render(&self) -> String {
        match self {
            Bad::Str(s) => go_quote(s),
            Bad::Int(i) => i.to_string(),
            Bad::Raw(r) => r.clone(),
        }
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

pub(crate) fn required(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueRequired",
        field: field.into(),
        message: with_detail("Required value".into(), detail),
    }
}

pub(crate) fn invalid(field: impl Into<String>, value: impl Into<Bad>, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: with_detail(format!("Invalid value: {}", value.into().render()), detail),
    }
}

pub(crate) fn not_supported(
    field: impl Into<String>,
    value: impl Into<Bad>,
    supported: &[&str],
) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    let detail = if list.is_empty() {
        String::new()
    } else {
        format!("supported values: {}", list.join(", "))
    };
    FieldError {
        reason: "FieldValueNotSupported",
        field: field.into(),
        message: with_detail(
            format!("Unsupported value: {}", value.into().render()),
            &detail,
        ),
    }
}

pub(crate) fn duplicate(field: impl Into<String>, value: impl Into<Bad>) -> FieldError {
    FieldError {
        reason: "FieldValueDuplicate",
        field: field.into(),
        message: format!("Duplicate value: {}", value.into().render()),
    }
}

pub(crate) fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueForbidden",
        field: field.into(),
        message: with_detail("Forbidden".into(), detail),
    }
}

pub(crate) fn not_found(field: impl Into<String>, value: impl Into<Bad>) -> FieldError {
    FieldError {
        reason: "FieldValueNotFound",
        field: field.into(),
        message: format!("Not found: {}", value.into().render()),
    }
}

pub(crate) fn too_long(field: impl Into<String>, max: usize) -> FieldError {
    let unit = if max == 1 { "byte" } else { "bytes" };
    FieldError {
        reason: "FieldValueTooLong",
        field: field.into(),
        message: format!("Too long: may not be more than {max} {unit}"),
    }
}

/// Go's `%q` for the strings we print (ASCII escapes, `\u` for other control characters).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `map[string]string`.
pub(crate) fn go_string_map(m: Option<&Map<String, Value>>) -> Bad {
    match m {
        None => Bad::Raw("map[string]string(nil)".into()),
        Some(m) => {
            let sorted: BTreeMap<&String, &str> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect();
            let entries: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            Bad::Raw(format!("map[string]string{{{}}}", entries.join(", ")))
        }
    }
}

/// Go's `%#v` of a `[]string`.
pub(crate) fn go_string_slice(items: &[&str]) -> Bad {
    let entries: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    Bad::Raw(format!("[]string{{{}}}", entries.join(", ")))
}

// Small accessors over the normalised JSON: missing means Go's zero value.
pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}
pub(crate) fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}
pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}
pub(crate) fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}
pub(crate) fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The name rule of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

impl NameRule {
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        // A generateName prefix may end in '-': Kubernetes masks it before checking.
        let owned;
        let name = if prefix && name.ends_with('-') {
            owned = format!("{}a", &name[..name.len() - 1]);
            owned.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label => is_dns1123_label(name),
            NameRule::Dns1035 => is_dns1035_label(name),
        }
    }
}

fn name_rule(info: &ResourceInfo) -> NameRule {
    match info.kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    }
}

/// Validates an object of `info`'s kind: a create when `old` is `None`, an update otherwise.
/// `obj` is the decoded and defaulted JSON.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Object(Map::new());
    let meta = obj.get("metadata").unwrap_or(&empty);
    if info.kind == "Binding" {
        kinds::binding(obj, &mut errs);
        return errs;
    }
    object_meta(
        meta,
        info.namespaced,
        name_rule(info),
        "metadata",
        &mut errs,
    );
    if let Some(old) = old {
        let old_meta = old.get("metadata").unwrap_or(&empty);
        object_meta_update(meta, old_meta, &mut errs);
    }
    match (info.group, info.kind) {
        ("", "Pod") => pod::validate_pod(obj, old, &mut errs),
        ("", "ReplicationController") => kinds::replication_controller(obj, &mut errs),
        ("", "PodTemplate") => {
            pod::pod_template_spec(obj.get("template").unwrap_or(&empty), "template", &mut errs)
        }
        ("", "Service") => kinds::service(obj, old, &mut errs),
        ("", "Endpoints") => kinds::endpoints(obj, &mut errs),
        ("", "Node") => kinds::node(obj, old, &mut errs),
        ("", "Namespace") => kinds::namespace(obj, &mut errs),
        ("", "Secret") => kinds::secret(obj, old, &mut errs),
        ("", "ConfigMap") => kinds::config_map(obj, old, &mut errs),
        ("", "Event") => kinds::event(obj, &mut errs),
        ("", "LimitRange") => kinds::limit_range(obj, &mut errs),
        ("", "ResourceQuota") => kinds::resource_quota(obj, &mut errs),
        ("coordination.k8s.io", "Lease") => kinds::lease(obj, &mut errs),
        _ => {}
    }
    errs
}

/// ValidateObjectMeta.
pub(crate) fn object_meta(
    meta: &Value,
    namespaced: bool,
    rule: NameRule,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let generate_name = s(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in rule.check(generate_name, true) {
            errs.push(invalid(format!("{path}.generateName"), generate_name, &msg));
        }
    }
    let name = s(meta, "name");
    if name.is_empty() {
        errs.push(required(
            format!("{path}.name"),
            "name or generateName is required",
        ));
    } else {
        for msg in rule.check(name, false) {
            errs.push(invalid(format!("{path}.name"), name, &msg));
        }
    }
    let namespace = s(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(required(format!("{path}.namespace"), ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                errs.push(invalid(format!("{path}.namespace"), namespace, &msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(forbidden(
            format!("{path}.namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(generation) = int(meta, "generation")
        && generation < 0
    {
        errs.push(invalid(
            format!("{path}.generation"),
            generation,
            names::NEGATIVE,
        ));
    }
    labels(obj(meta, "labels"), &format!("{path}.labels"), errs);
    annotations(
        obj(meta, "annotations"),
        &format!("{path}.annotations"),
        errs,
    );
    for (i, f) in arr(meta, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        let field = format!("{path}.finalizers[{i}]");
        finalizer_name(f, &field, errs);
    }
}

pub(crate) fn finalizer_name(f: &str, field: &str, errs: &mut Vec<FieldError>) {
    let msgs = is_qualified_name(f);
    if !msgs.is_empty() {
        for msg in msgs {
            errs.push(invalid(field, f, &msg));
        }
    } else if !f.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
        errs.push(invalid(
            field,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// ValidateObjectMetaUpdate: identity fields never change.
fn object_meta_update(meta: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for key in ["name", "namespace", "uid"] {
        let (new_v, old_v) = (s(meta, key), s(old, key));
        if !old_v.is_empty() && new_v != old_v {
            errs.push(invalid(
                format!("metadata.{key}"),
                new_v,
                "field is immutable",
            ));
        }
    }
    let (new_t, old_t) = (s(meta, "creationTimestamp"), s(old, "creationTimestamp"));
    if !old_t.is_empty() && !new_t.is_empty() && new_t != old_t {
        errs.push(invalid(
            "metadata.creationTimestamp",
            Bad::Raw(new_t.to_string()),
            "field is immutable",
        ));
    }
}

/// ValidateLabels: qualified-name keys, label-syntax values.
pub(crate) fn labels(labels: Option<&Map<String, Value>>, path: &str, errs: &mut Vec<FieldError>) {
    let Some(labels) = labels else { return };
    for (k, v) in labels {
        for msg in is_qualified_name(k) {
            errs.push(invalid(path, k, &msg));
        }
        let v = v.as_str().unwrap_or_default();
        for msg in is_valid_label_value(v) {
            errs.push(invalid(path, v, &msg));
        }
    }
}

/// Kubernetes' limit on all annotations of one object together (keys plus values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// ValidateAnnotations: qualified-name keys (case-insensitive) and a total size limit.
pub(crate) fn annotations(
    annotations: Option<&Map<String, Value>>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(annotations) = annotations else {
        return;
    };
    let mut total = 0;
    for (k, v) in annotations {
        for msg in is_qualified_name(&k.to_ascii_lowercase()) {
            errs.push(invalid(path, k, &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

#[cfg(test)]
mod tests;
