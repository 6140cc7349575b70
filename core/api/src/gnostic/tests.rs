use prost::Message as _;
use serde_json::{Value, json};

use super::messages::{self, Any, Document, NamedAny, Schema};
use super::{GnosticError, encode_v2, v2_document_protobuf, yaml};

fn decoded() -> Document {
    Document::decode(v2_document_protobuf()).expect("v2 protobuf decodes as openapi.v2.Document")
}

fn definition<'a>(doc: &'a Document, name: &str) -> &'a Schema {
    doc.definitions
        .as_ref()
        .expect("definitions")
        .additional_properties
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| d.value.as_ref())
        .unwrap_or_else(|| panic!("definition {name}"))
}

fn property<'a>(schema: &'a Schema, name: &str) -> &'a Schema {
    schema
        .properties
        .as_ref()
        .expect("properties")
        .additional_properties
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_ref())
        .unwrap_or_else(|| panic!("property {name}"))
}

/// The value of a vendor extension, parsed from its YAML text the way kubectl does.
fn extension(extensions: &[NamedAny], name: &str) -> Option<Value> {
    let any = extensions.iter().find(|e| e.name == name)?.value.as_ref()?;
    Some(parse_yaml(any))
}

fn parse_yaml(any: &Any) -> Value {
    serde_yaml_ng::from_str(&any.yaml).unwrap_or_else(|e| panic!("yaml {:?}: {e}", any.yaml))
}

#[test]
fn pod_definition_carries_its_group_version_kind() {
    let doc = decoded();
    assert_eq!(doc.swagger, "2.0");
    let pod = definition(&doc, "io.k8s.api.core.v1.Pod");
    assert_eq!(
        extension(&pod.vendor_extension, "x-kubernetes-group-version-kind"),
        Some(json!([{ "group": "", "kind": "Pod", "version": "v1" }]))
    );
    assert_eq!(
        pod.r#type.as_ref().map(|t| t.value.as_slice()),
        Some(&["object".to_owned()][..])
    );
    assert_eq!(
        property(pod, "spec").reference,
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
}

#[test]
fn pod_spec_containers_carry_the_patch_merge_key() {
    let doc = decoded();
    let containers = property(definition(&doc, "io.k8s.api.core.v1.PodSpec"), "containers");
    let merge_key = containers
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-patch-merge-key")
        .and_then(|e| e.value.as_ref())
        .expect("x-kubernetes-patch-merge-key");
    // Plain YAML, as Kubernetes writes it.
    assert_eq!(merge_key.yaml, "name\n");
    assert_eq!(
        extension(&containers.vendor_extension, "x-kubernetes-patch-strategy"),
        Some(json!("merge"))
    );
    let items = containers.items.as_ref().expect("items");
    assert_eq!(items.schema.len(), 1);
    assert_eq!(
        items.schema[0].reference,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
}

/// Walks the wire bytes with field numbers read off `OpenAPIv2.proto`, independently of the prost
/// structs: Document.definitions = 9, Definitions.additional_properties = 1, NamedSchema.name = 1
/// and .value = 2, Schema.vendor_extension = 31, NamedAny.name = 1 and .value = 2, Any.yaml = 2.
#[test]
fn wire_layout_matches_the_proto_field_numbers() {
    fn fields(mut buf: &[u8]) -> Vec<(u64, &[u8])> {
        fn varint(buf: &mut &[u8]) -> u64 {
            let mut value = 0;
            for shift in (0..64).step_by(7) {
                let byte = buf[0];
                *buf = &buf[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            value
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf);
            match key & 7 {
                0 => {
                    varint(&mut buf);
                }
                1 => buf = &buf[8..],
                2 => {
                    let len = usize::try_from(varint(&mut buf)).expect("length");
                    out.push((key >> 3, &buf[..len]));
                    buf = &buf[len..];
                }
                5 => buf = &buf[4..],
                wire => panic!("unexpected wire type {wire}"),
            }
        }
        out
    }
    let field = |buf, number| -> Vec<&[u8]> {
        fields(buf)
            .into_iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, b)| b)
            .collect()
    };
    let doc = v2_document_protobuf();
    assert_eq!(field(doc, 1), vec![b"2.0".as_slice()]);
    let definitions = field(doc, 9);
    assert_eq!(definitions.len(), 1);
    let pod = field(definitions[0], 1)
        .into_iter()
        .find(|named| field(named, 1) == vec![b"io.k8s.api.core.v1.Pod".as_slice()])
        .expect("Pod NamedSchema");
    let schema = field(pod, 2)[0];
    let gvk = field(schema, 31)
        .into_iter()
        .find(|named| field(named, 1) == vec![b"x-kubernetes-group-version-kind".as_slice()])
        .expect("gvk NamedAny");
    let yaml = field(field(gvk, 2)[0], 2)[0];
    let value: Value = serde_yaml_ng::from_slice(yaml).expect("yaml");
    assert_eq!(
        value,
        json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
}

/// The checks kubectl's schema parser (`k8s.io/kube-openapi/pkg/util/proto`) makes on every
/// definition before `kubectl apply` can use any of them.
#[test]
fn every_definition_parses_the_way_kubectl_parses_it() {
    fn check(schema: &Schema, names: &[&str], path: &str) {
        if !schema.reference.is_empty() {
            let target = schema
                .reference
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{path}: reference {}", schema.reference));
            assert!(
                names.contains(&target),
                "{path}: dangling reference {target}"
            );
            return;
        }
        let types = schema
            .r#type
            .as_ref()
            .map(|t| t.value.as_slice())
            .unwrap_or_default();
        assert!(types.len() <= 1, "{path}: several types");
        match types.first().map(String::as_str) {
            Some("array") => {
                let items = schema
                    .items
                    .as_ref()
                    .map(|i| i.schema.as_slice())
                    .unwrap_or_default();
                assert_eq!(
                    items.len(),
                    1,
                    "{path}: array needs exactly one items schema"
                );
                check(&items[0], names, &format!("{path}[]"));
            }
            Some("object") | None => {
                if let Some(props) = &schema.properties {
                    for p in &props.additional_properties {
                        check(
                            p.value.as_ref().expect("property schema"),
                            names,
                            &format!("{path}.{}", p.name),
                        );
                    }
                }
                if let Some(messages::additional_properties_item::Kind::Schema(s)) = schema
                    .additional_properties
                    .as_ref()
                    .and_then(|a| a.kind.as_ref())
                {
                    check(s, names, &format!("{path}{{}}"));
                }
            }
            Some("string" | "integer" | "number" | "boolean") => {}
            Some(other) => panic!("{path}: unknown primitive type {other}"),
        }
        for ext in &schema.vendor_extension {
            parse_yaml(ext.value.as_ref().expect("extension value"));
        }
    }
    let doc = decoded();
    let definitions = &doc
        .definitions
        .as_ref()
        .expect("definitions")
        .additional_properties;
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    assert!(names.len() > 100, "only {} definitions", names.len());
    for d in definitions {
        check(
            d.value.as_ref().expect("definition schema"),
            &names,
            &d.name,
        );
    }
}

#[test]
fn paths_keep_query_path_and_body_parameters() {
    use messages::{non_body_parameter, parameter, parameters_item};
    let doc = decoded();
    let paths = doc.paths.as_ref().expect("paths");
    let pods = paths
        .path
        .iter()
        .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods")
        .and_then(|p| p.value.as_ref())
        .expect("pods path");
    let post = pods.post.as_ref().expect("post");
    let params: Vec<&messages::Parameter> = pods
        .parameters
        .iter()
        .chain(&post.parameters)
        .filter_map(|item| match &item.kind {
            Some(parameters_item::Kind::Parameter(p)) => Some(&**p),
            _ => None,
        })
        .collect();
    let body = params
        .iter()
        .find_map(|p| match &p.kind {
            Some(parameter::Kind::BodyParameter(b)) => Some(b),
            _ => None,
        })
        .expect("body parameter");
    assert_eq!(body.r#in, "body");
    assert_eq!(
        body.schema.as_ref().map(|s| s.reference.as_str()),
        Some("#/definitions/io.k8s.api.core.v1.Pod")
    );
    let non_body = |kind: &str| {
        params.iter().any(|p| match &p.kind {
            Some(parameter::Kind::NonBodyParameter(nb)) => matches!(
                (&nb.kind, kind),
                (Some(non_body_parameter::Kind::Query(_)), "query")
                    | (Some(non_body_parameter::Kind::Path(_)), "path")
            ),
            _ => false,
        })
    };
    assert!(non_body("path"), "namespace path parameter");
    assert!(non_body("query"), "query parameters");
    let responses = post.responses.as_ref().expect("responses");
    assert!(
        responses
            .response_code
            .iter()
            .any(|r| r.name == "201" || r.name == "200")
    );
}

#[test]
fn every_vendor_extension_round_trips_through_yaml() {
    fn walk(value: &Value, count: &mut usize) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key.starts_with("x-")
                        || key == "default"
                        || key == "enum"
                        || key == "example"
                    {
                        let text = yaml::to_yaml(v);
                        let back: Value = serde_yaml_ng::from_str(&text)
                            .unwrap_or_else(|e| panic!("{text:?}: {e}"));
                        assert_eq!(&back, v, "{key}: {text:?}");
                        *count += 1;
                    }
                    walk(v, count);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, count)),
            _ => {}
        }
    }
    let mut count = 0;
    walk(crate::openapi::v2_document_ref(), &mut count);
    assert!(count > 100, "only {count} extensions");
}

#[test]
fn yaml_quotes_what_yaml_would_misread() {
    for value in [
        json!("yes"),
        json!("no"),
        json!("on"),
        json!("null"),
        json!("~"),
        json!("1.0"),
        json!("0x1f"),
        json!("12:30"),
        json!(""),
        json!("a: b"),
        json!("- item"),
        json!("#comment"),
        json!("tab\there \"quoted\" back\\slash\nnew\u{0}line\u{85}\u{2028}"),
        json!("ünïcödé 🚀"),
        json!({ "true": [1, -2.5, true, null, {}], "": [] }),
    ] {
        let text = yaml::to_yaml(&value);
        let back: Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(back, value, "{text:?}");
    }
    assert_eq!(yaml::to_yaml(&json!("atomic")), "atomic\n");
    assert_eq!(
        yaml::to_yaml(&json!(["name", "protocol"])),
        "[name, protocol]\n"
    );
}

#[test]
fn schema_keywords_are_encoded() {
    let doc = json!({
        "swagger": "2.0",
        "info": { "title": "t", "version": "v" },
        "definitions": {
            "a.B": {
                "type": "object",
                "description": "d",
                "required": ["x"],
                "properties": {
                    "x": { "type": "string", "format": "byte", "enum": ["p", "q"], "default": "p" },
                    "m": { "type": "object", "additionalProperties": { "type": "integer", "format": "int32" } },
                    "f": { "type": "object", "additionalProperties": false },
                    "n": { "type": "integer", "maximum": 5, "minimum": 1.5, "maxLength": 3.0 },
                    "r": { "allOf": [{ "$ref": "#/definitions/a.B" }], "description": "wrapped" },
                    "weird": { "type": 7, "items": "nope", "properties": [], "required": "x" },
                },
                "x-kubernetes-list-map-keys": ["name", "protocol"],
            },
            "not-a-schema": 3,
        },
        "securityDefinitions": {
            "BearerToken": { "type": "apiKey", "name": "authorization", "in": "header" },
            "odd": { "type": "mystery" },
        },
        "security": [{ "BearerToken": [] }],
    });
    let decoded = Document::decode(encode_v2(&doc).expect("encodes").as_slice()).expect("decodes");
    assert_eq!(decoded.info.as_ref().map(|i| i.title.as_str()), Some("t"));
    let b = definition(&decoded, "a.B");
    assert_eq!(b.required, ["x"]);
    assert_eq!(b.description, "d");
    assert_eq!(
        extension(&b.vendor_extension, "x-kubernetes-list-map-keys"),
        Some(json!(["name", "protocol"]))
    );
    let x = property(b, "x");
    assert_eq!(x.format, "byte");
    assert_eq!(
        x.r#enum.iter().map(parse_yaml).collect::<Vec<_>>(),
        [json!("p"), json!("q")]
    );
    assert_eq!(x.default.as_ref().map(parse_yaml), Some(json!("p")));
    use messages::additional_properties_item::Kind;
    match property(b, "m")
        .additional_properties
        .as_ref()
        .and_then(|a| a.kind.as_ref())
    {
        Some(Kind::Schema(s)) => assert_eq!(s.format, "int32"),
        other => panic!("additionalProperties schema: {other:?}"),
    }
    assert_eq!(
        property(b, "f")
            .additional_properties
            .as_ref()
            .and_then(|a| a.kind.clone()),
        Some(Kind::Boolean(false))
    );
    let n = property(b, "n");
    assert_eq!((n.maximum, n.minimum, n.max_length), (5.0, 1.5, 3));
    let r = property(b, "r");
    assert_eq!(r.all_of.len(), 1);
    assert_eq!(r.all_of[0].reference, "#/definitions/a.B");
    let weird = property(b, "weird");
    assert!(weird.r#type.is_none() && weird.items.is_none() && weird.properties.is_none());
    assert!(weird.required.is_empty());
    let names: Vec<&str> = decoded
        .definitions
        .as_ref()
        .map(|d| {
            d.additional_properties
                .iter()
                .map(|n| n.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["a.B"]);
    let security = decoded
        .security_definitions
        .as_ref()
        .expect("securityDefinitions");
    assert_eq!(security.additional_properties.len(), 1);
    assert!(matches!(
        security.additional_properties[0].value.as_ref().and_then(|v| v.kind.as_ref()),
        Some(messages::security_definitions_item::Kind::ApiKey(k)) if k.r#in == "header" && k.name == "authorization"
    ));
    assert_eq!(decoded.security.len(), 1);
}

#[test]
fn rejects_what_is_not_a_swagger_2_object() {
    assert!(matches!(
        encode_v2(&json!([])),
        Err(GnosticError::NotAnObject("an array"))
    ));
    assert!(matches!(
        encode_v2(&json!({ "openapi": "3.0.0" })),
        Err(GnosticError::UnsupportedVersion(v)) if v.is_empty()
    ));
    assert!(matches!(
        encode_v2(&json!({ "swagger": "1.2" })),
        Err(GnosticError::UnsupportedVersion(v)) if v == "1.2"
    ));
    assert!(encode_v2(&json!({ "swagger": "2.0" })).is_ok_and(|b| !b.is_empty()));
}
