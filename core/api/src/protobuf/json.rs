//! A Kubernetes message, walked by its descriptor, written in the JSON form the Go types give.
//!
//! - Field names are the proto field names: Kubernetes names its proto fields after the JSON ones
//!   (`generateName`, `volumeID`). The exceptions (`Webhooks`, `$ref`, `x-kubernetes-*`) and the
//!   embedded structs Go inlines (`Probe.handler`, `Volume.volumeSource`,
//!   `SecretKeySelector.localObjectReference`) are listed in `json_names.txt`.
//! - go-to-protobuf writes every non-pointer field, even at its zero value, and only pointer fields
//!   are absent when unset; the JSON form leaves out the zero values of `omitempty` fields. So a
//!   present singular `""`, `0`, `false` or zero `IntOrString` is dropped, unless the field is
//!   required (its comment has no `+optional`, listed in `required.txt`) or one of the
//!   [`KEEP_ZERO`] pointer fields whose zero means something (`replicas: 0`, `runAsUser: 0`).
//!   Map values and list items are never dropped; present messages stay, `{}` when empty.
//! - `bytes` are base64; `resource.Quantity` is its string; `intstr.IntOrString` a number or a
//!   string; `metav1.Time` RFC 3339 in seconds and `MicroTime` in microseconds (absent when
//!   zero); `metav1.Duration` Go's duration string; `runtime.RawExtension`, `metav1.FieldsV1` and
//!   apiextensions `JSON` the JSON they carry; one-field `items` wrappers (`ExtraValue`) a list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use base64::Engine;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, MapKey, MessageDescriptor, ReflectMessage,
    Value,
};
use serde_json::{Map, Number, Value as JsonValue};

use super::ProtobufError;

pub(super) const UNKNOWN: &str = "apimachinery.pkg.runtime.Unknown";
const TIME: &str = "apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "apimachinery.pkg.apis.meta.v1.FieldsV1";
const QUANTITY: &str = "apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "apimachinery.pkg.runtime.RawExtension";
const APIEXTENSIONS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.";

/// Optional pointer fields (by field name, in any message) whose zero value is not the same as
/// unset, so a present zero is kept.
const KEEP_ZERO: &[&str] = &[
    // meta/v1
    "blockOwnerDeletion",
    "controller",
    "deletionGracePeriodSeconds",
    "gracePeriodSeconds",
    "orphanDependents",
    "remainingItemCount",
    // core/v1 pods and service accounts
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "defaultMode",
    "enableServiceLinks",
    "expirationSeconds",
    "fsGroup",
    "hostProcess",
    "hostUsers",
    "immutable",
    "mode",
    "optional",
    "priority",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "started",
    "storageClassName",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    // core/v1 services, discovery/v1
    "allocateLoadBalancerNodePorts",
    "ready",
    "serving",
    "terminating",
    // apps/v1, batch/v1, autoscaling, policy/v1, coordination/v1
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "failedJobsHistoryLimit",
    "leaseTransitions",
    "manualSelector",
    "maxFailedIndexes",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
    "minReplicas",
    "parallelism",
    "partition",
    "replicas",
    "revisionHistoryLimit",
    "stabilizationWindowSeconds",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "suspend",
    "ttlSecondsAfterFinished",
    // storage/v1
    "allowVolumeExpansion",
    "attachRequired",
    "podInfoOnMount",
    "requiresRepublish",
    "seLinuxMount",
    "storageCapacity",
    // apiextensions JSONSchemaProps
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "xKubernetesEmbeddedResource",
    "xKubernetesIntOrString",
    "xKubernetesPreserveUnknownFields",
];

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!("kubernetes.binpb").as_slice())
        .expect("the embedded descriptor set is valid (checked by the tests)")
});

/// `package.Message.field` -> JSON name, `-` for an inlined embedded struct.
static JSON_NAMES: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    include_str!("json_names.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('\t'))
        .collect()
});

static REQUIRED: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("required.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

pub(super) fn pool() -> &'static DescriptorPool {
    &POOL
}

/// A message of the embedded descriptor set the code names by a constant.
pub(super) fn message(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in the embedded descriptor set"))
}

/// The JSON form of `message`, `None` where Kubernetes JSON has no value (a zero `Time`).
pub(super) fn message_to_json(
    message: &DynamicMessage,
) -> Result<Option<JsonValue>, ProtobufError> {
    let descriptor = message.descriptor();
    let name = descriptor.full_name();
    Ok(Some(match name {
        TIME => return Ok(time(message, false)),
        MICRO_TIME => return Ok(time(message, true)),
        DURATION => go_duration(int(message, "duration")).into(),
        QUANTITY => string(message, "string").into(),
        INT_OR_STRING => int_or_string(message),
        RAW_EXTENSION => return embedded_json(message, "raw", name),
        FIELDS_V1 => return embedded_json(message, "Raw", name),
        _ if name.starts_with(APIEXTENSIONS) => match descriptor.name() {
            "JSON" => return embedded_json(message, "raw", name),
            "JSONSchemaPropsOrArray" => return either(message, "schema", "jSONSchemas"),
            "JSONSchemaPropsOrBool" => return either(message, "schema", "allows"),
            "JSONSchemaPropsOrStringArray" => return either(message, "schema", "property"),
            _ => object(message)?,
        },
        _ if is_items_wrapper(&descriptor) => match message.get_field_by_name("items").as_deref() {
            Some(items) => value_to_json(items)?.unwrap_or(JsonValue::Null),
            None => JsonValue::Array(Vec::new()),
        },
        _ => object(message)?,
    }))
}

fn object(message: &DynamicMessage) -> Result<JsonValue, ProtobufError> {
    let mut out = Map::new();
    for (field, value) in message.fields() {
        if drop_zero(&field, value) {
            continue;
        }
        match (json_name(&field), value_to_json(value)?) {
            (_, None) => {}
            (Some(name), Some(json)) => {
                out.insert(name.to_owned(), json);
            }
            (None, Some(JsonValue::Object(inlined))) => out.extend(inlined),
            (None, Some(other)) => {
                out.insert(field.name().to_owned(), other);
            }
        }
    }
    Ok(JsonValue::Object(out))
}

fn value_to_json(value: &Value) -> Result<Option<JsonValue>, ProtobufError> {
    Ok(Some(match value {
        Value::Bool(b) => JsonValue::Bool(*b),
        Value::I32(n) => (*n).into(),
        Value::I64(n) => (*n).into(),
        Value::U32(n) => (*n).into(),
        Value::U64(n) => (*n).into(),
        Value::EnumNumber(n) => (*n).into(),
        Value::F32(n) => Number::from_f64(f64::from(*n)).map_or(JsonValue::Null, JsonValue::Number),
        Value::F64(n) => Number::from_f64(*n).map_or(JsonValue::Null, JsonValue::Number),
        Value::String(s) => JsonValue::String(s.clone()),
        Value::Bytes(b) => JsonValue::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Message(m) => return message_to_json(m),
        Value::List(items) => JsonValue::Array(
            items
                .iter()
                .map(|item| Ok(value_to_json(item)?.unwrap_or(JsonValue::Null)))
                .collect::<Result<_, ProtobufError>>()?,
        ),
        Value::Map(entries) => {
            // Go writes map keys sorted.
            let mut sorted = BTreeMap::new();
            for (key, value) in entries {
                sorted.insert(
                    map_key(key),
                    value_to_json(value)?.unwrap_or(JsonValue::Null),
                );
            }
            JsonValue::Object(sorted.into_iter().collect())
        }
    }))
}

fn drop_zero(field: &FieldDescriptor, value: &Value) -> bool {
    if field.is_list() || field.is_map() {
        return false;
    }
    let zero = match value {
        Value::Bool(b) => !b,
        Value::I32(n) | Value::EnumNumber(n) => *n == 0,
        Value::I64(n) => *n == 0,
        Value::U32(n) => *n == 0,
        Value::U64(n) => *n == 0,
        Value::F32(n) => *n == 0.0,
        Value::F64(n) => *n == 0.0,
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::Message(m) if m.descriptor().full_name() == INT_OR_STRING => {
            match int_or_string(m) {
                JsonValue::Number(n) => n.as_i64() == Some(0),
                JsonValue::String(s) => s.is_empty(),
                _ => false,
            }
        }
        Value::Message(_) | Value::List(_) | Value::Map(_) => false,
    };
    zero && !REQUIRED.contains(field.full_name()) && !KEEP_ZERO.contains(&field.name())
}

/// How a field appears in JSON: under its proto name, another name, or (`None`) inlined.
fn json_name(field: &FieldDescriptor) -> Option<&str> {
    match JSON_NAMES.get(field.full_name()) {
        Some(&"-") => None,
        Some(name) => Some(name),
        None => Some(field.name()),
    }
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

/// Go named slice types (`type ExtraValue []string`) travel as `message X { repeated items = 1; }`.
fn is_items_wrapper(descriptor: &MessageDescriptor) -> bool {
    let mut fields = descriptor.fields();
    matches!(
        (fields.next(), fields.next()),
        (Some(field), None) if field.name() == "items" && field.is_list()
    ) && !descriptor.name().ends_with("List")
}

fn int(message: &DynamicMessage, field: &str) -> i64 {
    match message.get_field_by_name(field).as_deref() {
        Some(Value::I64(n)) => *n,
        Some(Value::I32(n)) => i64::from(*n),
        _ => 0,
    }
}

fn string(message: &DynamicMessage, field: &str) -> String {
    match message.get_field_by_name(field).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn int_or_string(message: &DynamicMessage) -> JsonValue {
    match int(message, "type") {
        1 => string(message, "strVal").into(),
        _ => int(message, "intVal").into(),
    }
}

/// `metav1.Time` keeps whole seconds (Go drops the nanoseconds when decoding), `MicroTime`
/// microseconds; a zero time is sent as an empty message.
fn time(message: &DynamicMessage, micro: bool) -> Option<JsonValue> {
    if !message.has_field_by_name("seconds") && !message.has_field_by_name("nanos") {
        return None;
    }
    let nanos = if micro { int(message, "nanos") } else { 0 };
    let at =
        jiff::Timestamp::new(int(message, "seconds"), i32::try_from(nanos).unwrap_or(0)).ok()?;
    let seconds = at.strftime("%Y-%m-%dT%H:%M:%S");
    Some(JsonValue::String(if micro {
        format!("{seconds}.{:06}Z", at.subsec_microsecond())
    } else {
        format!("{seconds}Z")
    }))
}

/// Go's `time.Duration.String()`: `1h0m0s`, `1m30s`, `1.5s`, `500ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    fn fraction(value: u64, unit: u64, digits: usize) -> String {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let rest = format!("{rest:0digits$}");
        format!("{whole}.{}", rest.trim_end_matches('0'))
    }
    const SECOND: u64 = 1_000_000_000;
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let text = match n {
        0 => return "0s".to_owned(),
        1..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{}µs", fraction(n, 1_000, 3)),
        1_000_000..SECOND => format!("{}ms", fraction(n, 1_000_000, 6)),
        _ => {
            let (hours, minutes) = (n / (3600 * SECOND), n / (60 * SECOND) % 60);
            let seconds = format!("{}s", fraction(n % (60 * SECOND), SECOND, 9));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, _) => format!("{minutes}m{seconds}"),
                _ => format!("{hours}h{minutes}m{seconds}"),
            }
        }
    };
    format!("{sign}{text}")
}

/// An object embedded as bytes: JSON, or (from protobuf clients) a nested protobuf object.
fn embedded_json(
    message: &DynamicMessage,
    field: &str,
    name: &str,
) -> Result<Option<JsonValue>, ProtobufError> {
    let raw = match message.get_field_by_name(field).as_deref() {
        Some(Value::Bytes(raw)) if !raw.is_empty() => raw.clone(),
        _ => return Ok(None),
    };
    if raw.starts_with(super::MAGIC) {
        return super::decode(&raw).map(Some);
    }
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|source| ProtobufError::EmbeddedJson {
            field: name.to_owned(),
            source,
        })
}

/// apiextensions' `JSONSchemaPropsOr*`: the schema when present, else the other form.
fn either(
    message: &DynamicMessage,
    schema: &str,
    other: &str,
) -> Result<Option<JsonValue>, ProtobufError> {
    let field = if message.has_field_by_name(schema) {
        schema
    } else {
        other
    };
    match message.get_field_by_name(field).as_deref() {
        Some(value) => value_to_json(value),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}ns");
        }
    }

    #[test]
    fn generated_names_follow_the_json_tags() {
        let name = |message: &str, field: &str| {
            json_name(
                &super::message(message)
                    .get_field_by_name(field)
                    .expect("field"),
            )
            .map(str::to_owned)
        };
        let props = "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
        assert_eq!(name(props, "ref").as_deref(), Some("$ref"));
        assert_eq!(
            name(props, "xKubernetesListMapKeys").as_deref(),
            Some("x-kubernetes-list-map-keys")
        );
        assert_eq!(name(props, "type").as_deref(), Some("type"));
        let webhooks = "api.admissionregistration.v1.MutatingWebhookConfiguration";
        assert_eq!(name(webhooks, "Webhooks").as_deref(), Some("webhooks"));
        assert_eq!(name("api.core.v1.Probe", "handler"), None);
        assert_eq!(name("api.core.v1.Volume", "volumeSource"), None);
    }

    #[test]
    fn generated_lists_name_real_fields() {
        let fields = REQUIRED.iter().chain(JSON_NAMES.keys());
        for full_name in fields {
            let (message, field) = full_name.rsplit_once('.').expect("package.Message.field");
            let found = POOL
                .get_message_by_name(message)
                .and_then(|m| m.get_field_by_name(field));
            assert!(found.is_some(), "{full_name} is not in the descriptor set");
        }
    }
}
