//! The Swagger 2.0 document in the protobuf form kubectl asks for first
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, the `openapi.v2.Document`
//! message of gnostic's `OpenAPIv2.proto`). kubectl 1.27 and 1.28 read `/openapi/v2` only in
//! this form, for `explain` and to detect server-side field validation.
//!
//! Only the parts of Swagger 2.0 the document uses are encoded. Field numbers are those of
//! `OpenAPIv2.proto`; vendor extensions (`x-kubernetes-*`) travel as YAML text, which the
//! extensions' JSON form is.

use serde_json::{Map, Value};

/// Protobuf wire types.
const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u64, wire_type: u64) {
        self.varint(field << 3 | wire_type);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, LENGTH_DELIMITED);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// A string field; empty strings are the proto3 default and are left out.
    fn string(&mut self, field: u64, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }

    fn strings<'a>(&mut self, field: u64, values: impl IntoIterator<Item = &'a str>) {
        for value in values {
            self.bytes(field, value.as_bytes());
        }
    }

    fn bool(&mut self, field: u64, value: bool) {
        if value {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn message(&mut self, field: u64, message: Message) {
        self.bytes(field, &message.0);
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn string_list<'a>(value: &'a Value, key: &str) -> Vec<&'a str> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn named(name: &str, field: u64, value: Message) -> Message {
    let mut out = Message::default();
    out.string(1, name);
    out.message(field, value);
    out
}

/// `NamedAny` entries for the `x-` keys of an object (`Any.yaml` holds the value).
fn vendor_extensions(object: &Map<String, Value>, field: u64, out: &mut Message) {
    for (key, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut any = Message::default();
        any.string(2, &value.to_string());
        out.message(field, named(key, 2, any));
    }
}

/// `openapi.v2.Schema`.
fn schema(value: &Value) -> Message {
    let mut out = Message::default();
    let Some(object) = value.as_object() else {
        return out;
    };
    out.string(1, text(value, "$ref"));
    out.string(2, text(value, "format"));
    out.string(4, text(value, "description"));
    out.strings(19, string_list(value, "required"));
    if let Some(additional) = object.get("additionalProperties") {
        let mut item = Message::default();
        match additional {
            Value::Bool(b) => {
                item.key(2, VARINT);
                item.varint(u64::from(*b));
            }
            other => item.message(1, schema(other)),
        }
        out.message(21, item);
    }
    if let Some(ty) = object.get("type").and_then(Value::as_str) {
        let mut type_item = Message::default();
        type_item.strings(1, [ty]);
        out.message(22, type_item);
    }
    if let Some(items) = object.get("items") {
        let mut items_item = Message::default();
        items_item.message(1, schema(items));
        out.message(23, items_item);
    }
    for part in object
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.message(24, schema(part));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let mut props = Message::default();
        for (name, property) in properties {
            props.message(1, named(name, 2, schema(property)));
        }
        out.message(25, props);
    }
    vendor_extensions(object, 31, &mut out);
    out
}

/// `openapi.v2.ParametersItem` for a parameter object.
fn parameter(value: &Value) -> Message {
    let location = text(value, "in");
    let mut parameter = Message::default();
    if location == "body" {
        let mut body = Message::default();
        body.string(1, text(value, "description"));
        body.string(2, text(value, "name"));
        body.string(3, location);
        body.bool(
            4,
            value
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
        if let Some(s) = value.get("schema") {
            body.message(5, schema(s));
        }
        parameter.message(1, body);
    } else {
        // Query and path sub-schemas differ only in field numbers from `type` on.
        let (variant, type_field, unique_field) = match location {
            "path" => (4, 5, 19),
            "header" => (1, 5, 19),
            _ => (3, 6, 20),
        };
        let mut sub = Message::default();
        sub.bool(
            1,
            value
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
        sub.string(2, location);
        sub.string(3, text(value, "description"));
        sub.string(4, text(value, "name"));
        sub.string(type_field, text(value, "type"));
        sub.bool(
            unique_field,
            value
                .get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
        let mut non_body = Message::default();
        non_body.message(variant, sub);
        parameter.message(2, non_body);
    }
    let mut item = Message::default();
    item.message(1, parameter);
    item
}

/// `openapi.v2.Operation`.
fn operation(value: &Value) -> Message {
    let mut out = Message::default();
    out.strings(1, string_list(value, "tags"));
    out.string(3, text(value, "description"));
    out.string(5, text(value, "operationId"));
    out.strings(6, string_list(value, "produces"));
    out.strings(7, string_list(value, "consumes"));
    for p in value
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.message(8, parameter(p));
    }
    if let Some(responses) = value.get("responses").and_then(Value::as_object) {
        let mut all = Message::default();
        for (code, response) in responses {
            let mut body = Message::default();
            body.string(1, text(response, "description"));
            if let Some(s) = response.get("schema") {
                let mut schema_item = Message::default();
                schema_item.message(1, schema(s));
                body.message(2, schema_item);
            }
            let mut response_value = Message::default();
            response_value.message(1, body);
            all.message(1, named(code, 2, response_value));
        }
        out.message(9, all);
    }
    out.strings(10, string_list(value, "schemes"));
    if let Some(object) = value.as_object() {
        vendor_extensions(object, 13, &mut out);
    }
    out
}

/// `openapi.v2.PathItem`.
fn path_item(value: &Value) -> Message {
    let mut out = Message::default();
    for (method, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = value.get(method) {
            out.message(field, operation(op));
        }
    }
    for p in value
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.message(9, parameter(p));
    }
    out
}

/// Encodes a Swagger 2.0 document (as built by this module) as an `openapi.v2.Document`.
pub(crate) fn encode(document: &Value) -> Vec<u8> {
    let mut out = Message::default();
    out.string(1, text(document, "swagger"));
    if let Some(info) = document.get("info") {
        let mut message = Message::default();
        message.string(1, text(info, "title"));
        message.string(2, text(info, "version"));
        out.message(2, message);
    }
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        let mut message = Message::default();
        for (path, item) in paths {
            message.message(2, named(path, 2, path_item(item)));
        }
        out.message(8, message);
    }
    if let Some(definitions) = document.get("definitions").and_then(Value::as_object) {
        let mut message = Message::default();
        for (name, definition) in definitions {
            message.message(1, named(name, 2, schema(definition)));
        }
        out.message(9, message);
    }
    for requirement in document
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut message = Message::default();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut array = Message::default();
            array.strings(
                1,
                scopes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            );
            message.message(1, named(name, 2, array));
        }
        out.message(12, message);
    }
    if let Some(schemes) = document
        .get("securityDefinitions")
        .and_then(Value::as_object)
    {
        let mut message = Message::default();
        for (name, scheme) in schemes {
            let mut api_key = Message::default();
            api_key.string(1, text(scheme, "type"));
            api_key.string(2, text(scheme, "name"));
            api_key.string(3, text(scheme, "in"));
            api_key.string(4, text(scheme, "description"));
            let mut item = Message::default();
            item.message(2, api_key);
            message.message(1, named(name, 2, item));
        }
        out.message(13, message);
    }
    out.0
}
