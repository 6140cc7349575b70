//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into the
//! object's JSON form, so that the rest of the server sees what a JSON request would carry.
//!
//! Clients built on client-go (kubectl 1.32+, kubelet, controllers) send typed objects as
//! protobuf: the 4-byte magic `k8s\0`, then a `runtime.Unknown` envelope whose `typeMeta` names
//! the kind and whose `raw` holds the object's message. The messages are read by reflection over
//! a descriptor set of every Kubernetes `generated.proto` (`protobuf/json.rs` has the conversion
//! rules; `protobuf/regenerate.py` rebuilds the descriptor set and the lists beside it).
//! Responses stay JSON: clients accept it.

mod json;

use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use serde_json::Value as JsonValue;

/// The content type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// A body that is not a Kubernetes protobuf object this server knows.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf: missing k8s magic prefix")]
    MissingMagic,
    #[error("protobuf: malformed runtime.Unknown envelope: {0}")]
    Envelope(#[source] prost_reflect::prost::DecodeError),
    #[error("protobuf: envelope has no apiVersion or kind")]
    MissingTypeMeta,
    #[error("protobuf: unsupported content encoding {0:?}")]
    ContentEncoding(String),
    #[error("protobuf: unknown kind {api_version}/{kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("protobuf: malformed {message}: {source}")]
    Message {
        message: String,
        #[source]
        source: prost_reflect::prost::DecodeError,
    },
    #[error("protobuf: {field}: embedded object is not JSON: {source}")]
    EmbeddedJson {
        field: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes a Kubernetes protobuf body (4-byte magic `k8s\0` + `runtime.Unknown` envelope
/// `{typeMeta{apiVersion, kind}, raw, contentEncoding, contentType}`) into the object's JSON
/// form, with `apiVersion` and `kind` set from the envelope.
///
/// ```
/// let err = keelson_api::protobuf::decode(b"{}").unwrap_err();
/// assert_eq!(err.to_string(), "protobuf: missing k8s magic prefix");
/// ```
pub fn decode(body: &[u8]) -> Result<JsonValue, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = DynamicMessage::decode(json::message(json::UNKNOWN), envelope)
        .map_err(ProtobufError::Envelope)?;
    let (api_version, kind) = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(Value::Message(type_meta)) => {
            (string(type_meta, "apiVersion"), string(type_meta, "kind"))
        }
        _ => (String::new(), String::new()),
    };
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    let encoding = string(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let descriptor =
        descriptor_for(&api_version, &kind).ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(Value::Bytes(raw)) => raw.clone(),
        _ => Default::default(),
    };
    let message = DynamicMessage::decode(descriptor.clone(), raw).map_err(|source| {
        ProtobufError::Message {
            message: descriptor.full_name().to_owned(),
            source,
        }
    })?;
    let mut object = serde_json::Map::new();
    object.insert("apiVersion".to_owned(), api_version.into());
    object.insert("kind".to_owned(), kind.into());
    if let Some(JsonValue::Object(fields)) = json::message_to_json(&message)? {
        object.extend(fields);
    }
    Ok(JsonValue::Object(object))
}

fn string(message: &DynamicMessage, field: &str) -> String {
    match message.get_field_by_name(field).as_deref() {
        Some(Value::String(value)) => value.clone(),
        _ => String::new(),
    }
}

/// The message of `kind` in `apiVersion`: the proto package follows the group (`apps/v1` ->
/// `api.apps.v1`), and the `meta/v1` kinds every group version carries (`DeleteOptions`,
/// `Status`, ...) are found in `apimachinery.pkg.apis.meta.v1`.
fn descriptor_for(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "api.core".to_owned(),
        "meta.k8s.io" => "apimachinery.pkg.apis.meta".to_owned(),
        "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".to_owned(),
        "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".to_owned(),
        "metrics.k8s.io" => "metrics.pkg.apis.metrics".to_owned(),
        "custom.metrics.k8s.io" => "metrics.pkg.apis.custom_metrics".to_owned(),
        "external.metrics.k8s.io" => "metrics.pkg.apis.external_metrics".to_owned(),
        "internal.apiserver.k8s.io" => "api.apiserverinternal".to_owned(),
        group => format!("api.{}", group.split('.').next().unwrap_or(group)),
    };
    let pool = json::pool();
    pool.get_message_by_name(&format!("{package}.{version}.{kind}"))
        .or_else(|| {
            META_KINDS
                .contains(&kind)
                .then(|| pool.get_message_by_name(&format!("apimachinery.pkg.apis.meta.v1.{kind}")))
                .flatten()
        })
}

/// The `meta/v1` kinds registered in every group version.
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

#[cfg(test)]
mod tests;
