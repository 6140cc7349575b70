//! Decoding request bodies into the typed `k8s-openapi` structs, and Kubernetes defaulting.
//!
//! A body goes through [`decode`] (typed round trip: unknown fields are collected with the
//! paths Kubernetes prints in strict field validation, type errors are worded like Go's
//! `encoding/json`), then [`apply_defaults`], then `validation::validate`. Metadata that the
//! server owns (uid, resourceVersion, creationTimestamp, generation) is left to the caller.

mod defaults;
pub mod quantity;

use std::collections::HashSet;
use std::fmt;

use k8s_openapi::api::coordination::v1 as coordv1;
use k8s_openapi::api::core::v1 as corev1;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::registry::ResourceInfo;

pub use defaults::apply_defaults;
pub(crate) use defaults::volume_sources as defaults_volume_sources;

/// The result of [`decode`]: the normalised object and what strict field validation reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The body re-serialised from the typed struct: unknown fields dropped, `null` members
    /// removed, `apiVersion`/`kind` filled in.
    pub value: Value,
    /// Paths of fields the typed struct does not know, worded as Kubernetes words them in
    /// `unknown field "spec.containers[0].imagee"` (no leading dot, `[i]` for list items).
    pub unknown_fields: Vec<String>,
    /// Paths of keys given twice in one JSON object (only [`decode_slice`] can see them: a
    /// parsed [`Value`] has already dropped duplicates).
    pub duplicate_fields: Vec<String>,
}

impl Decoded {
    /// The strict field validation messages (`unknown field "x"`, `duplicate field "y"`), in
    /// the order Kubernetes lists them: unknown first.
    pub fn strict_errors(&self) -> Vec<String> {
        self.unknown_fields
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .chain(
                self.duplicate_fields
                    .iter()
                    .map(|p| format!("duplicate field \"{p}\"")),
            )
            .collect()
    }
}

/// Why a body could not be decoded. The server answers these with 400 BadRequest, prefixing
/// the message the way Kubernetes does (`Pod in version "v1" cannot be handled as a Pod: ...`).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    /// The body is not valid JSON.
    #[error("{0}")]
    Syntax(String),
    /// The body is JSON but not an object.
    #[error("json: cannot unmarshal {found} into Go value of type {go_type}")]
    NotAnObject {
        /// What the body was (`array`, `string`, ...).
        found: &'static str,
        /// Go type Kubernetes would name, e.g. `v1.Pod`.
        go_type: String,
    },
    /// `apiVersion` in the body differs from the resource's.
    #[error(
        "the API version in the data ({found}) does not match the expected API version ({expected})"
    )]
    ApiVersion {
        /// The body's `apiVersion`.
        found: String,
        /// The resource's `apiVersion`.
        expected: String,
    },
    /// `kind` in the body differs from the resource's.
    #[error("the kind in the data ({found}) does not match the expected kind ({expected})")]
    Kind {
        /// The body's `kind`.
        found: String,
        /// The resource's kind.
        expected: String,
    },
    /// A value has the wrong JSON type for its field.
    #[error("json: cannot unmarshal {found} into Go struct field {go_field} of type {go_type}")]
    Type {
        /// Path as Kubernetes prints unknown fields (`spec.containers[0].ports[0].containerPort`).
        path: String,
        /// JSON type found (`string`, `number`, `bool`, `object`, `array`).
        found: &'static str,
        /// Go's `Struct.json.path` (`ContainerPort.spec.containers.ports.containerPort`).
        go_field: String,
        /// Go type expected (`int32`, `[]v1.Container`).
        go_type: String,
    },
    /// Any other value error (bad base64 in a Secret, a malformed timestamp, ...).
    #[error("{message}")]
    Value {
        /// Path of the offending value.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// A resource quantity that does not parse.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Quantity {
        /// Path of the quantity.
        path: String,
        /// The text given.
        value: String,
    },
    /// The kind has no typed decoder (a bug: every served kind should have one).
    #[error("no decoder for {0}")]
    UnknownKind(String),
}

/// Parses raw bytes, reports duplicate keys, then [`decode`]s.
pub fn decode_slice(info: &ResourceInfo, body: &[u8]) -> Result<Decoded, DecodeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    let mut decoded = decode(info, &value)?;
    decoded.duplicate_fields = find_duplicate_fields(body);
    Ok(decoded)
}

/// Decodes a body for `info` through its typed `k8s-openapi` struct.
pub fn decode(info: &ResourceInfo, body: &Value) -> Result<Decoded, DecodeError> {
    decode_as(&info.api_version(), info.kind, body)
}

/// Decodes a body of kind `kind` in `api_version`; covers the served kinds plus the bodies of
/// subresources (`autoscaling/v1` Scale, `policy/v1` Eviction, `v1` Binding).
pub fn decode_as(api_version: &str, kind: &str, body: &Value) -> Result<Decoded, DecodeError> {
    use k8s_openapi::api::autoscaling::v1::Scale;
    use k8s_openapi::api::policy::v1::Eviction;
    let obj = body.as_object().ok_or_else(|| DecodeError::NotAnObject {
        found: json_type(body),
        go_type: format!("{}.{kind}", go_package(api_version)),
    })?;
    for (field, expected) in [("apiVersion", api_version), ("kind", kind)] {
        if let Some(found) = obj.get(field).and_then(Value::as_str)
            && !found.is_empty()
            && found != expected
        {
            return Err(if field == "kind" {
                DecodeError::Kind {
                    found: found.to_string(),
                    expected: expected.to_string(),
                }
            } else {
                DecodeError::ApiVersion {
                    found: found.to_string(),
                    expected: expected.to_string(),
                }
            });
        }
    }
    // Go leaves a field alone when the JSON says null; k8s-openapi would reject null for a
    // required field, so nulls go before the typed pass. An empty apiVersion/kind is treated
    // like a missing one, as the Kubernetes decoder does with the URL's defaults.
    let mut body = strip_nulls(body);
    if let Some(o) = body.as_object_mut() {
        for field in ["apiVersion", "kind"] {
            if o.get(field).and_then(Value::as_str) == Some("") {
                o.remove(field);
            }
        }
    }
    let (value, unknown_fields) = match (api_version, kind) {
        ("v1", "Pod") => typed::<corev1::Pod>(kind, &body)?,
        ("v1", "ReplicationController") => typed::<corev1::ReplicationController>(kind, &body)?,
        ("v1", "Service") => typed::<corev1::Service>(kind, &body)?,
        ("v1", "Endpoints") => typed::<corev1::Endpoints>(kind, &body)?,
        ("v1", "Node") => typed::<corev1::Node>(kind, &body)?,
        ("v1", "Namespace") => typed::<corev1::Namespace>(kind, &body)?,
        ("v1", "Secret") => typed::<corev1::Secret>(kind, &body)?,
        ("v1", "ServiceAccount") => typed::<corev1::ServiceAccount>(kind, &body)?,
        ("v1", "ConfigMap") => typed::<corev1::ConfigMap>(kind, &body)?,
        ("v1", "Event") => typed::<corev1::Event>(kind, &body)?,
        ("v1", "LimitRange") => typed::<corev1::LimitRange>(kind, &body)?,
        ("v1", "ResourceQuota") => typed::<corev1::ResourceQuota>(kind, &body)?,
        ("v1", "PodTemplate") => typed::<corev1::PodTemplate>(kind, &body)?,
        ("v1", "Binding") => typed::<corev1::Binding>(kind, &body)?,
        ("coordination.k8s.io/v1", "Lease") => typed::<coordv1::Lease>(kind, &body)?,
        ("autoscaling/v1", "Scale") => typed::<Scale>(kind, &body)?,
        ("policy/v1", "Eviction") => typed::<Eviction>(kind, &body)?,
        _ => {
            return Err(DecodeError::UnknownKind(format!(
                "{api_version}, Kind={kind}"
            )));
        }
    };
    check_quantities(kind, &value)?;
    Ok(Decoded {
        value,
        unknown_fields,
        duplicate_fields: Vec::new(),
    })
}

/// Removes object members whose value is `null`, recursively.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// The typed round trip: deserialize `T` noting ignored fields and the path of any error,
/// then serialize it back.
fn typed<T>(kind: &str, body: &Value) -> Result<(Value, Vec<String>), DecodeError>
where
    T: DeserializeOwned + Serialize + schemars::JsonSchema,
{
    let mut unknown = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(body, &mut on_ignored);
    let typed: T = match serde_path_to_error::deserialize(de) {
        Ok(t) => t,
        Err(err) => {
            let segments = error_segments(err.path());
            return Err(type_error::<T>(
                kind,
                body,
                &segments,
                &err.inner().to_string(),
            ));
        }
    };
    let value = serde_json::to_value(&typed).map_err(|e| DecodeError::Value {
        path: String::new(),
        message: e.to_string(),
    })?;
    Ok((value, unknown))
}

/// One step of a path into a JSON document.
#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Renders a path the way Kubernetes' strict decoder does: `spec.containers[0].name`.
fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.push(Segment::Index(*index));
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                out.push(Segment::Key(key.clone()));
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    render_path(&segments)
}

fn error_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|s| match s {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { variant } => Some(Segment::Key(variant.clone())),
            S::Unknown => None,
        })
        .collect()
}

/// Builds the Go-worded error for a failure at `segments`, using the JSON schema of `T` to
/// name the Go struct that holds the field and the Go type it expected.
fn type_error<T: schemars::JsonSchema>(
    kind: &str,
    body: &Value,
    segments: &[Segment],
    serde_message: &str,
) -> DecodeError {
    let path = render_path(segments);
    let found = lookup_segments(body, segments);
    // A value of the right JSON type that still failed (bad base64, bad timestamp) is not a
    // type error: report serde's message with the path.
    let schema = schemars::SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value();
    let target = schema_walk(&schema, kind, segments);
    match (found, target) {
        (Some(found), Some((go_struct, node, keys)))
            if !json_type_fits(found, resolve_ref(&schema, node)) =>
        {
            DecodeError::Type {
                path,
                found: json_type(found),
                go_field: format!("{go_struct}.{}", keys.join(".")),
                go_type: go_type(&schema, node),
            }
        }
        _ => DecodeError::Value {
            message: if path.is_empty() {
                serde_message.to_string()
            } else {
                format!("{path}: {serde_message}")
            },
            path,
        },
    }
}

fn lookup_segments<'a>(body: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    segments.iter().try_fold(body, |v, s| match s {
        Segment::Key(k) => v.get(k),
        Segment::Index(i) => v.get(i),
    })
}

/// Follows `$ref` into the root's `$defs`.
fn resolve_ref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    // Bounded: k8s-openapi schemas never chain more than one reference.
    for _ in 0..4 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r
                .rsplit('/')
                .next()
                .and_then(|name| root.get("$defs")?.get(name))
            {
                Some(target) => node = target,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

fn ref_short_name(node: &Value) -> Option<&str> {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('.').next())
}

/// Walks the schema along `segments`; returns the innermost struct holding the last field,
/// the schema node of the target and the struct field names on the way (Go's error path
/// leaves out list indexes and map keys).
fn schema_walk<'a>(
    root: &'a Value,
    kind: &str,
    segments: &[Segment],
) -> Option<(String, &'a Value, Vec<String>)> {
    let mut node = root;
    let mut go_struct = kind.to_string();
    let mut current_struct = kind.to_string();
    let mut keys = Vec::new();
    for s in segments {
        let resolved = resolve_ref(root, node);
        match s {
            Segment::Key(k) => {
                if let Some(name) = ref_short_name(node) {
                    current_struct = name.to_string();
                }
                match resolved.get("properties").and_then(|p| p.get(k)) {
                    Some(n) => {
                        go_struct = current_struct.clone();
                        keys.push(k.clone());
                        node = n;
                    }
                    None => node = resolved.get("additionalProperties")?,
                }
            }
            Segment::Index(_) => node = resolved.get("items")?,
        }
    }
    Some((go_struct, node, keys))
}

fn json_type_fits(value: &Value, schema: &Value) -> bool {
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return value.is_string() || value.is_number();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    }
}

/// The Go type name Kubernetes' decoder would print for a schema node.
fn go_type(root: &Value, node: &Value) -> String {
    if let Some(name) = ref_short_name(node) {
        return match name {
            "Quantity" => "resource.Quantity".to_string(),
            "IntOrString" => "intstr.IntOrString".to_string(),
            "RawExtension" => "runtime.RawExtension".to_string(),
            _ => format!("v1.{name}"),
        };
    }
    let node = resolve_ref(root, node);
    match node.get("type").and_then(Value::as_str) {
        Some("integer") => match node.get("format").and_then(Value::as_str) {
            Some("int64") => "int64".to_string(),
            _ => "int32".to_string(),
        },
        Some("number") => "float64".to_string(),
        Some("boolean") => "bool".to_string(),
        Some("string") => match node.get("format").and_then(Value::as_str) {
            Some("byte") => "[]uint8".to_string(),
            _ => "string".to_string(),
        },
        Some("array") => match node.get("items") {
            Some(items) => format!("[]{}", go_type(root, items)),
            None => "[]interface {}".to_string(),
        },
        Some("object") => match node.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map[string]{}", go_type(root, v)),
            _ => "map[string]interface {}".to_string(),
        },
        _ => "interface {}".to_string(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_package(api_version: &str) -> &str {
    crate::registry::split_api_version(api_version).1
}

/// Kubernetes parses quantities while decoding, so a bad one is a decode error, not a
/// validation error. These are the quantity-valued maps of the kinds we serve.
fn check_quantities(kind: &str, obj: &Value) -> Result<(), DecodeError> {
    let mut maps: Vec<(String, &Value)> = Vec::new();
    let spec_path = |pod_spec: &str| -> Vec<String> { vec![pod_spec.to_string()] };
    let pod_specs = match kind {
        "Pod" => spec_path("spec"),
        "ReplicationController" => spec_path("spec.template.spec"),
        "PodTemplate" => spec_path("template.spec"),
        _ => Vec::new(),
    };
    for spec in &pod_specs {
        let Some(spec_value) = pointer(obj, spec) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            for (i, c) in spec_value
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                for field in ["limits", "requests"] {
                    if let Some(m) = c.get("resources").and_then(|r| r.get(field)) {
                        maps.push((format!("{spec}.{list}[{i}].resources.{field}"), m));
                    }
                }
            }
        }
        if let Some(m) = spec_value.get("overhead") {
            maps.push((format!("{spec}.overhead"), m));
        }
    }
    match kind {
        "LimitRange" => {
            for (i, item) in pointer(obj, "spec.limits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                for field in [
                    "max",
                    "min",
                    "default",
                    "defaultRequest",
                    "maxLimitRequestRatio",
                ] {
                    if let Some(m) = item.get(field) {
                        maps.push((format!("spec.limits[{i}].{field}"), m));
                    }
                }
            }
        }
        "ResourceQuota" => {
            for p in ["spec.hard", "status.hard", "status.used"] {
                if let Some(m) = pointer(obj, p) {
                    maps.push((p.to_string(), m));
                }
            }
        }
        "Node" => {
            for p in ["status.capacity", "status.allocatable"] {
                if let Some(m) = pointer(obj, p) {
                    maps.push((p.to_string(), m));
                }
            }
        }
        _ => {}
    }
    for (path, map) in maps {
        for (key, q) in map.as_object().into_iter().flatten() {
            let text = q.as_str().unwrap_or_default();
            if quantity::parse_quantity(text).is_err() {
                return Err(DecodeError::Quantity {
                    path: format!("{path}[{key}]"),
                    value: text.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// The pod's QoS class as Kubernetes computes it for `status.qosClass` (`GetPodQOS`): only
/// cpu and memory count, zero quantities are ignored; `Guaranteed` needs cpu and memory
/// limits on every container with requests equal to them, `BestEffort` has neither anywhere.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        });
    let relevant = |c: &Value, key: &str| -> Vec<(String, i128)> {
        ["cpu", "memory"]
            .into_iter()
            .filter_map(|r| {
                let text = c.pointer(&format!("/resources/{key}/{r}"))?.as_str()?;
                let millis = quantity::parse_quantity(text).ok()?;
                (millis != 0).then(|| (r.to_string(), millis))
            })
            .collect()
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let (requests, limits) = (relevant(c, "requests"), relevant(c, "limits"));
        any |= !requests.is_empty() || !limits.is_empty();
        if limits.len() < 2 {
            guaranteed = false;
        }
        if requests.iter().any(|r| !limits.contains(r)) {
            guaranteed = false;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `a.b.c` lookup in a JSON object.
pub(crate) fn pointer<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

/// Finds keys that appear twice in one JSON object, as paths (`metadata.name`).
pub fn find_duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    // A syntax error here was already reported by the caller's own parse.
    let _ = DupSeed {
        path: Vec::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

/// Walks any JSON value, recording duplicate keys with their path.
struct DupSeed<'a> {
    path: Vec<Segment>,
    found: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for DupSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let mut path = self.path.clone();
            path.push(Segment::Index(i));
            let seed = DupSeed {
                path,
                found: &mut *self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut path = self.path.clone();
            path.push(Segment::Key(key.clone()));
            if !seen.insert(key) {
                self.found.push(render_path(&path));
            }
            map.next_value_seed(DupSeed {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        lookup("", "v1", "pods").unwrap()
    }

    #[test]
    fn unknown_fields_have_kubernetes_paths() {
        let body = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i"}, {"name": "d", "imagee": "x"}], "foo": {}},
            "extra": true
        });
        let d = decode(pods(), &body).unwrap();
        let mut unknown = d.unknown_fields.clone();
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "extra",
                "metadata.bogus",
                "spec.containers[1].imagee",
                "spec.foo"
            ]
        );
        assert!(d.value["spec"]["containers"][1].get("imagee").is_none());
        assert!(
            d.strict_errors()
                .contains(&"unknown field \"spec.containers[1].imagee\"".to_string())
        );
    }

    #[test]
    fn type_errors_read_like_go() {
        let body =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}});
        let err = decode(pods(), &body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32"
        );
        let err = decode(pods(), &json!({"spec": {"containers": {}}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container"
        );
        let err = decode(pods(), &json!({"metadata": {"labels": {"a": 1}}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"
        );
        let err = decode(pods(), &json!([])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal array into Go value of type v1.Pod"
        );
    }

    #[test]
    fn kind_and_version_checked() {
        let err = decode(pods(), &json!({"apiVersion": "v1", "kind": "Service"})).unwrap_err();
        assert!(matches!(err, DecodeError::Kind { .. }));
        let err = decode(pods(), &json!({"apiVersion": "v2", "kind": "Pod"})).unwrap_err();
        assert!(matches!(err, DecodeError::ApiVersion { .. }));
        let d = decode(pods(), &json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(d.value["kind"], "Pod");
        assert_eq!(d.value["apiVersion"], "v1");
    }

    #[test]
    fn nulls_are_absent_fields() {
        let body = json!({"metadata": {"name": "x", "labels": null},
                          "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": null}]}]}});
        let d = decode(pods(), &body).unwrap();
        assert!(d.value["metadata"].get("labels").is_none());
    }

    #[test]
    fn bad_values_and_quantities() {
        let secrets = lookup("", "v1", "secrets").unwrap();
        let err = decode(secrets, &json!({"data": {"k": "!!!"}})).unwrap_err();
        assert!(matches!(err, DecodeError::Value { .. }), "{err:?}");
        let body = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "lots"}}}]}});
        let err = decode(pods(), &body).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Quantity {
                path: "spec.containers[0].resources.limits[cpu]".into(),
                value: "lots".into()
            }
        );
        // Numbers are quantities too, as YAML `cpu: 1` arrives as a JSON number.
        let body =
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}});
        let d = decode(pods(), &body).unwrap();
        assert_eq!(
            d.value["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }

    #[test]
    fn duplicates_from_bytes() {
        let body = br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"name": "c", "image": "x", "image": "y"}]}}"#;
        let d = decode_slice(pods(), body).unwrap();
        assert_eq!(
            d.duplicate_fields,
            ["metadata.name", "spec.containers[0].image"]
        );
        assert!(matches!(
            decode_slice(pods(), b"{").unwrap_err(),
            DecodeError::Syntax(_)
        ));
    }

    #[test]
    fn qos_classes() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "c", "resources": resources}]}});
        assert_eq!(pod_qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"},
                                     "requests": {"cpu": "1000m", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            pod_qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&pod(json!({"limits": {"cpu": "0"}}))),
            "BestEffort"
        );
    }

    #[test]
    fn every_served_kind_decodes() {
        for r in crate::registry::resources() {
            let d = decode(r, &json!({"metadata": {"name": "x"}})).unwrap();
            assert_eq!(d.value["kind"], r.kind);
        }
        let scale =
            decode_as("autoscaling/v1", "Scale", &json!({"spec": {"replicas": 3}})).unwrap();
        assert_eq!(scale.value["spec"]["replicas"], 3);
    }
}
