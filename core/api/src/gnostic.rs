//! The Swagger 2.0 document as the protobuf kubectl asks for first: gnostic's
//! `openapi.v2.Document` (`openapiv2/OpenAPIv2.proto`, proto package `openapi.v2`), served for
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`. kubectl 1.27 and 1.28
//! read `/openapi/v2` only in this form and fail `kubectl apply` without it.
//!
//! The JSON document is mapped field by field onto [`messages`]. Values that the proto types as
//! `Any` (vendor extensions such as `x-kubernetes-patch-merge-key`, `default`, `example`, `enum`)
//! travel as YAML text in `Any.yaml`, as Kubernetes does. Keys and values the proto has no place
//! for, or of the wrong JSON type, are skipped.

mod messages;
#[cfg(test)]
mod tests;
mod yaml;

use std::sync::OnceLock;

use prost::Message as _;
use serde_json::{Map, Value};

use messages::{
    AdditionalPropertiesItem, Any, ApiKeySecurity, BasicAuthenticationSecurity, BodyParameter,
    Contact, Definitions, Document, Examples, ExternalDocs, FileSchema, FormDataParameterSubSchema,
    Header, HeaderParameterSubSchema, Headers, Info, ItemsItem, JsonReference, License, NamedAny,
    NamedHeader, NamedParameter, NamedPathItem, NamedResponse, NamedResponseValue, NamedSchema,
    NamedSecurityDefinitionsItem, NamedString, NamedStringArray, NonBodyParameter,
    Oauth2AccessCodeSecurity, Oauth2Scopes, Oauth2Security, Operation, Parameter,
    ParameterDefinitions, ParametersItem, PathItem, PathParameterSubSchema, Paths, PrimitivesItems,
    Properties, QueryParameterSubSchema, Response, ResponseDefinitions, ResponseValue, Responses,
    Schema, SchemaItem, SecurityDefinitions, SecurityDefinitionsItem, SecurityRequirement,
    StringArray, Tag, TypeItem, Xml,
};

/// Why a JSON value cannot be encoded as an `openapi.v2.Document`.
#[derive(Debug, thiserror::Error)]
pub enum GnosticError {
    #[error("swagger document must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error(
        "swagger document has version {0:?}; only \"2.0\" can be encoded as openapi.v2.Document"
    )]
    UnsupportedVersion(String),
}

/// The Swagger 2.0 document (`crate::openapi::v2_document_ref()`) encoded as a gnostic
/// `openapi.v2.Document` protobuf, built once.
pub fn v2_document_protobuf() -> &'static [u8] {
    static ENCODED: OnceLock<Vec<u8>> = OnceLock::new();
    ENCODED.get_or_init(|| {
        // Only fails for a document that is not a Swagger 2.0 object, which the built-in one
        // always is (a unit test checks it); an empty Document beats a panic in a request.
        encode_v2(crate::openapi::v2_document_ref()).unwrap_or_default()
    })
}

/// Encodes a Swagger 2.0 JSON document as a gnostic `openapi.v2.Document` protobuf.
pub fn encode_v2(doc: &Value) -> Result<Vec<u8>, GnosticError> {
    Ok(document(doc)?.encode_to_vec())
}

fn document(doc: &Value) -> Result<Document, GnosticError> {
    let obj = Obj::of(doc).ok_or(GnosticError::NotAnObject(json_type(doc)))?;
    let swagger = obj.string("swagger");
    if swagger != "2.0" {
        return Err(GnosticError::UnsupportedVersion(swagger));
    }
    Ok(Document {
        swagger,
        info: obj.object("info").map(info),
        host: obj.string("host"),
        base_path: obj.string("basePath"),
        schemes: obj.strings("schemes"),
        consumes: obj.strings("consumes"),
        produces: obj.strings("produces"),
        paths: obj.object("paths").map(paths),
        definitions: obj.object("definitions").map(|defs| Definitions {
            additional_properties: named_schemas(defs),
        }),
        parameters: obj.object("parameters").map(|params| ParameterDefinitions {
            additional_properties: params
                .entries()
                .filter_map(|(name, value)| {
                    Some(NamedParameter {
                        name: name.clone(),
                        value: Some(parameter(Obj::of(value)?)),
                    })
                })
                .collect(),
        }),
        responses: obj
            .object("responses")
            .map(|responses| ResponseDefinitions {
                additional_properties: responses
                    .entries()
                    .filter_map(|(name, value)| {
                        Some(NamedResponse {
                            name: name.clone(),
                            value: Some(response(Obj::of(value)?)),
                        })
                    })
                    .collect(),
            }),
        security: security_requirements(obj),
        security_definitions: obj.object("securityDefinitions").map(security_definitions),
        tags: obj.objects("tags").map(tag).collect(),
        external_docs: obj.object("externalDocs").map(external_docs),
        vendor_extension: obj.extensions(),
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object with typed getters that treat a missing key and a value of the wrong type
/// alike: both give the proto3 default, so the field is left off the wire.
#[derive(Clone, Copy)]
struct Obj<'a>(&'a Map<String, Value>);

impl<'a> Obj<'a> {
    fn of(value: &'a Value) -> Option<Self> {
        value.as_object().map(Obj)
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn entries(self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.0.iter()
    }

    fn string(self, key: &str) -> String {
        self.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    fn bool(self, key: &str) -> bool {
        self.get(key).and_then(Value::as_bool).unwrap_or_default()
    }

    fn f64(self, key: &str) -> f64 {
        self.get(key).and_then(Value::as_f64).unwrap_or_default()
    }

    /// An integer keyword (`maxLength`, ...); `5.0` counts as 5, like Go's JSON decoding.
    fn i64(self, key: &str) -> i64 {
        match self.get(key) {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .unwrap_or_default(),
            _ => 0,
        }
    }

    fn strings(self, key: &str) -> Vec<String> {
        self.array(key)
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }

    fn array(self, key: &str) -> impl Iterator<Item = &'a Value> {
        self.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    fn object(self, key: &str) -> Option<Obj<'a>> {
        self.get(key).and_then(Obj::of)
    }

    fn objects(self, key: &str) -> impl Iterator<Item = Obj<'a>> {
        self.array(key).filter_map(Obj::of)
    }

    fn any(self, key: &str) -> Option<Any> {
        self.get(key).map(any)
    }

    fn anys(self, key: &str) -> Vec<Any> {
        self.array(key).map(any).collect()
    }

    /// The `x-` keys, which Swagger 2.0 allows on most objects, as `NamedAny`s.
    fn extensions(self) -> Vec<NamedAny> {
        self.entries()
            .filter(|(key, _)| key.starts_with("x-"))
            .map(|(key, value)| named_any(key, value))
            .collect()
    }
}

fn any(value: &Value) -> Any {
    Any {
        yaml: yaml::to_yaml(value),
    }
}

fn named_any(name: &str, value: &Value) -> NamedAny {
    NamedAny {
        name: name.to_owned(),
        value: Some(any(value)),
    }
}

fn info(obj: Obj) -> Info {
    Info {
        title: obj.string("title"),
        version: obj.string("version"),
        description: obj.string("description"),
        terms_of_service: obj.string("termsOfService"),
        contact: obj.object("contact").map(|c| Contact {
            name: c.string("name"),
            url: c.string("url"),
            email: c.string("email"),
            vendor_extension: c.extensions(),
        }),
        license: obj.object("license").map(|l| License {
            name: l.string("name"),
            url: l.string("url"),
            vendor_extension: l.extensions(),
        }),
        vendor_extension: obj.extensions(),
    }
}

fn external_docs(obj: Obj) -> ExternalDocs {
    ExternalDocs {
        description: obj.string("description"),
        url: obj.string("url"),
        vendor_extension: obj.extensions(),
    }
}

fn tag(obj: Obj) -> Tag {
    Tag {
        name: obj.string("name"),
        description: obj.string("description"),
        external_docs: obj.object("externalDocs").map(external_docs),
        vendor_extension: obj.extensions(),
    }
}

fn paths(obj: Obj) -> Paths {
    Paths {
        vendor_extension: obj.extensions(),
        path: obj
            .entries()
            .filter(|(key, _)| key.starts_with('/'))
            .filter_map(|(key, value)| {
                Some(NamedPathItem {
                    name: key.clone(),
                    value: Some(path_item(Obj::of(value)?)),
                })
            })
            .collect(),
    }
}

fn path_item(obj: Obj) -> PathItem {
    let op = |method: &str| obj.object(method).map(operation);
    PathItem {
        reference: obj.string("$ref"),
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        options: op("options"),
        head: op("head"),
        patch: op("patch"),
        parameters: obj.objects("parameters").map(parameters_item).collect(),
        vendor_extension: obj.extensions(),
    }
}

fn operation(obj: Obj) -> Operation {
    Operation {
        tags: obj.strings("tags"),
        summary: obj.string("summary"),
        description: obj.string("description"),
        external_docs: obj.object("externalDocs").map(external_docs),
        operation_id: obj.string("operationId"),
        produces: obj.strings("produces"),
        consumes: obj.strings("consumes"),
        parameters: obj.objects("parameters").map(parameters_item).collect(),
        responses: obj.object("responses").map(responses),
        schemes: obj.strings("schemes"),
        deprecated: obj.bool("deprecated"),
        security: security_requirements(obj),
        vendor_extension: obj.extensions(),
    }
}

fn security_requirements(obj: Obj) -> Vec<SecurityRequirement> {
    obj.objects("security")
        .map(|requirement| SecurityRequirement {
            additional_properties: requirement
                .entries()
                .map(|(name, scopes)| NamedStringArray {
                    name: name.clone(),
                    value: Some(StringArray {
                        value: scopes
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    }),
                })
                .collect(),
        })
        .collect()
}

fn json_reference(obj: Obj) -> JsonReference {
    JsonReference {
        reference: obj.string("$ref"),
        description: obj.string("description"),
    }
}

/// A parameter or a `$ref` to one of the document's `parameters`.
fn parameters_item(obj: Obj) -> ParametersItem {
    use messages::parameters_item::Kind;
    let kind = if obj.get("$ref").is_some() {
        Kind::JsonReference(json_reference(obj))
    } else {
        Kind::Parameter(Box::new(parameter(obj)))
    };
    ParametersItem { kind: Some(kind) }
}

fn parameter(obj: Obj) -> Parameter {
    use messages::non_body_parameter::Kind as NonBody;
    use messages::parameter::Kind;
    let location = obj.string("in");
    let kind = match location.as_str() {
        "body" => Kind::BodyParameter(BodyParameter {
            description: obj.string("description"),
            name: obj.string("name"),
            required: obj.bool("required"),
            schema: obj.object("schema").map(schema),
            vendor_extension: obj.extensions(),
            r#in: location,
        }),
        "header" => Kind::NonBodyParameter(NonBodyParameter {
            kind: Some(NonBody::Header(SimpleParameter::of(obj).header())),
        }),
        "path" => Kind::NonBodyParameter(NonBodyParameter {
            kind: Some(NonBody::Path(SimpleParameter::of(obj).path())),
        }),
        "formData" => Kind::NonBodyParameter(NonBodyParameter {
            kind: Some(NonBody::FormData(SimpleParameter::of(obj).form_data())),
        }),
        // `query`, and anything unknown, which gnostic would reject: a query parameter is the
        // least surprising reading.
        _ => Kind::NonBodyParameter(NonBodyParameter {
            kind: Some(NonBody::Query(SimpleParameter::of(obj).query())),
        }),
    };
    Parameter { kind: Some(kind) }
}

/// The fields the four non-body parameter messages share; each message numbers them its own way.
struct SimpleParameter {
    required: bool,
    location: String,
    description: String,
    name: String,
    allow_empty_value: bool,
    primitive: PrimitivesItems,
}

impl SimpleParameter {
    fn of(obj: Obj) -> Self {
        SimpleParameter {
            required: obj.bool("required"),
            location: obj.string("in"),
            description: obj.string("description"),
            name: obj.string("name"),
            allow_empty_value: obj.bool("allowEmptyValue"),
            primitive: primitives_items(obj),
        }
    }

    fn header(self) -> HeaderParameterSubSchema {
        let p = self.primitive;
        HeaderParameterSubSchema {
            required: self.required,
            r#in: self.location,
            description: self.description,
            name: self.name,
            r#type: p.r#type,
            format: p.format,
            items: p.items.map(|items| *items),
            collection_format: p.collection_format,
            default: p.default,
            maximum: p.maximum,
            exclusive_maximum: p.exclusive_maximum,
            minimum: p.minimum,
            exclusive_minimum: p.exclusive_minimum,
            max_length: p.max_length,
            min_length: p.min_length,
            pattern: p.pattern,
            max_items: p.max_items,
            min_items: p.min_items,
            unique_items: p.unique_items,
            r#enum: p.r#enum,
            multiple_of: p.multiple_of,
            vendor_extension: p.vendor_extension,
        }
    }

    fn path(self) -> PathParameterSubSchema {
        let h = self.header();
        PathParameterSubSchema {
            required: h.required,
            r#in: h.r#in,
            description: h.description,
            name: h.name,
            r#type: h.r#type,
            format: h.format,
            items: h.items,
            collection_format: h.collection_format,
            default: h.default,
            maximum: h.maximum,
            exclusive_maximum: h.exclusive_maximum,
            minimum: h.minimum,
            exclusive_minimum: h.exclusive_minimum,
            max_length: h.max_length,
            min_length: h.min_length,
            pattern: h.pattern,
            max_items: h.max_items,
            min_items: h.min_items,
            unique_items: h.unique_items,
            r#enum: h.r#enum,
            multiple_of: h.multiple_of,
            vendor_extension: h.vendor_extension,
        }
    }

    fn query(self) -> QueryParameterSubSchema {
        let p = self.primitive;
        QueryParameterSubSchema {
            required: self.required,
            r#in: self.location,
            description: self.description,
            name: self.name,
            allow_empty_value: self.allow_empty_value,
            r#type: p.r#type,
            format: p.format,
            items: p.items.map(|items| *items),
            collection_format: p.collection_format,
            default: p.default,
            maximum: p.maximum,
            exclusive_maximum: p.exclusive_maximum,
            minimum: p.minimum,
            exclusive_minimum: p.exclusive_minimum,
            max_length: p.max_length,
            min_length: p.min_length,
            pattern: p.pattern,
            max_items: p.max_items,
            min_items: p.min_items,
            unique_items: p.unique_items,
            r#enum: p.r#enum,
            multiple_of: p.multiple_of,
            vendor_extension: p.vendor_extension,
        }
    }

    fn form_data(self) -> FormDataParameterSubSchema {
        let q = self.query();
        FormDataParameterSubSchema {
            required: q.required,
            r#in: q.r#in,
            description: q.description,
            name: q.name,
            allow_empty_value: q.allow_empty_value,
            r#type: q.r#type,
            format: q.format,
            items: q.items,
            collection_format: q.collection_format,
            default: q.default,
            maximum: q.maximum,
            exclusive_maximum: q.exclusive_maximum,
            minimum: q.minimum,
            exclusive_minimum: q.exclusive_minimum,
            max_length: q.max_length,
            min_length: q.min_length,
            pattern: q.pattern,
            max_items: q.max_items,
            min_items: q.min_items,
            unique_items: q.unique_items,
            r#enum: q.r#enum,
            multiple_of: q.multiple_of,
            vendor_extension: q.vendor_extension,
        }
    }
}

/// The validation keywords of a non-body parameter, header or their `items`.
fn primitives_items(obj: Obj) -> PrimitivesItems {
    PrimitivesItems {
        r#type: obj.string("type"),
        format: obj.string("format"),
        items: obj
            .object("items")
            .map(|items| Box::new(primitives_items(items))),
        collection_format: obj.string("collectionFormat"),
        default: obj.any("default"),
        maximum: obj.f64("maximum"),
        exclusive_maximum: obj.bool("exclusiveMaximum"),
        minimum: obj.f64("minimum"),
        exclusive_minimum: obj.bool("exclusiveMinimum"),
        max_length: obj.i64("maxLength"),
        min_length: obj.i64("minLength"),
        pattern: obj.string("pattern"),
        max_items: obj.i64("maxItems"),
        min_items: obj.i64("minItems"),
        unique_items: obj.bool("uniqueItems"),
        r#enum: obj.anys("enum"),
        multiple_of: obj.f64("multipleOf"),
        vendor_extension: obj.extensions(),
    }
}

fn header(obj: Obj) -> Header {
    let p = primitives_items(obj);
    Header {
        r#type: p.r#type,
        format: p.format,
        items: p.items.map(|items| *items),
        collection_format: p.collection_format,
        default: p.default,
        maximum: p.maximum,
        exclusive_maximum: p.exclusive_maximum,
        minimum: p.minimum,
        exclusive_minimum: p.exclusive_minimum,
        max_length: p.max_length,
        min_length: p.min_length,
        pattern: p.pattern,
        max_items: p.max_items,
        min_items: p.min_items,
        unique_items: p.unique_items,
        r#enum: p.r#enum,
        multiple_of: p.multiple_of,
        description: obj.string("description"),
        vendor_extension: p.vendor_extension,
    }
}

fn responses(obj: Obj) -> Responses {
    use messages::response_value::Kind;
    Responses {
        response_code: obj
            .entries()
            .filter(|(code, _)| !code.starts_with("x-"))
            .filter_map(|(code, value)| {
                let value = Obj::of(value)?;
                let kind = if value.get("$ref").is_some() {
                    Kind::JsonReference(json_reference(value))
                } else {
                    Kind::Response(Box::new(response(value)))
                };
                Some(NamedResponseValue {
                    name: code.clone(),
                    value: Some(ResponseValue { kind: Some(kind) }),
                })
            })
            .collect(),
        vendor_extension: obj.extensions(),
    }
}

fn response(obj: Obj) -> Response {
    use messages::schema_item::Kind;
    Response {
        description: obj.string("description"),
        schema: obj.object("schema").map(|s| SchemaItem {
            kind: Some(if s.string("type") == "file" {
                Kind::FileSchema(Box::new(file_schema(s)))
            } else {
                Kind::Schema(Box::new(schema(s)))
            }),
        }),
        headers: obj.object("headers").map(|headers| Headers {
            additional_properties: headers
                .entries()
                .filter_map(|(name, value)| {
                    Some(NamedHeader {
                        name: name.clone(),
                        value: Some(header(Obj::of(value)?)),
                    })
                })
                .collect(),
        }),
        examples: obj.object("examples").map(|examples| Examples {
            additional_properties: examples
                .entries()
                .map(|(mime, value)| named_any(mime, value))
                .collect(),
        }),
        vendor_extension: obj.extensions(),
    }
}

fn file_schema(obj: Obj) -> FileSchema {
    FileSchema {
        format: obj.string("format"),
        title: obj.string("title"),
        description: obj.string("description"),
        default: obj.any("default"),
        required: obj.strings("required"),
        r#type: obj.string("type"),
        read_only: obj.bool("readOnly"),
        external_docs: obj.object("externalDocs").map(external_docs),
        example: obj.any("example"),
        vendor_extension: obj.extensions(),
    }
}

fn named_schemas(obj: Obj) -> Vec<NamedSchema> {
    obj.entries()
        .filter_map(|(name, value)| {
            Some(NamedSchema {
                name: name.clone(),
                value: Some(schema(Obj::of(value)?)),
            })
        })
        .collect()
}

fn schema(obj: Obj) -> Schema {
    use messages::additional_properties_item::Kind;
    let additional_properties = match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Kind::Boolean(*b)),
        Some(value) => Obj::of(value).map(|s| Kind::Schema(Box::new(schema(s)))),
        None => None,
    };
    let r#type = match obj.get("type") {
        Some(Value::String(t)) => Some(TypeItem {
            value: vec![t.clone()],
        }),
        Some(Value::Array(_)) => Some(TypeItem {
            value: obj.strings("type"),
        }),
        _ => None,
    };
    // `items` is one schema or, in tuple form, a list of them.
    let items = match obj.get("items") {
        Some(Value::Object(_)) => obj.object("items").map(|s| ItemsItem {
            schema: vec![schema(s)],
        }),
        Some(Value::Array(_)) => Some(ItemsItem {
            schema: obj.objects("items").map(schema).collect(),
        }),
        _ => None,
    };
    Schema {
        reference: obj.string("$ref"),
        format: obj.string("format"),
        title: obj.string("title"),
        description: obj.string("description"),
        default: obj.any("default"),
        multiple_of: obj.f64("multipleOf"),
        maximum: obj.f64("maximum"),
        exclusive_maximum: obj.bool("exclusiveMaximum"),
        minimum: obj.f64("minimum"),
        exclusive_minimum: obj.bool("exclusiveMinimum"),
        max_length: obj.i64("maxLength"),
        min_length: obj.i64("minLength"),
        pattern: obj.string("pattern"),
        max_items: obj.i64("maxItems"),
        min_items: obj.i64("minItems"),
        unique_items: obj.bool("uniqueItems"),
        max_properties: obj.i64("maxProperties"),
        min_properties: obj.i64("minProperties"),
        required: obj.strings("required"),
        r#enum: obj.anys("enum"),
        additional_properties: additional_properties
            .map(|kind| AdditionalPropertiesItem { kind: Some(kind) }),
        r#type,
        items,
        all_of: obj.objects("allOf").map(schema).collect(),
        properties: obj.object("properties").map(|props| Properties {
            additional_properties: named_schemas(props),
        }),
        discriminator: obj.string("discriminator"),
        read_only: obj.bool("readOnly"),
        xml: obj.object("xml").map(|x| Xml {
            name: x.string("name"),
            namespace: x.string("namespace"),
            prefix: x.string("prefix"),
            attribute: x.bool("attribute"),
            wrapped: x.bool("wrapped"),
            vendor_extension: x.extensions(),
        }),
        external_docs: obj.object("externalDocs").map(external_docs),
        example: obj.any("example"),
        vendor_extension: obj.extensions(),
    }
}

fn security_definitions(obj: Obj) -> SecurityDefinitions {
    SecurityDefinitions {
        additional_properties: obj
            .entries()
            .filter_map(|(name, value)| {
                Some(NamedSecurityDefinitionsItem {
                    name: name.clone(),
                    value: Some(SecurityDefinitionsItem {
                        kind: Some(security_scheme(Obj::of(value)?)?),
                    }),
                })
            })
            .collect(),
    }
}

/// One security scheme; schemes of an unknown `type` or OAuth2 `flow` are skipped.
fn security_scheme(obj: Obj) -> Option<messages::security_definitions_item::Kind> {
    use messages::security_definitions_item::Kind;
    let scopes = || {
        obj.object("scopes").map(|scopes| Oauth2Scopes {
            additional_properties: scopes
                .entries()
                .map(|(name, value)| NamedString {
                    name: name.clone(),
                    value: value.as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
        })
    };
    let oauth2 = |url_key: &str| Oauth2Security {
        r#type: obj.string("type"),
        flow: obj.string("flow"),
        scopes: scopes(),
        url: obj.string(url_key),
        description: obj.string("description"),
        vendor_extension: obj.extensions(),
    };
    Some(
        match (obj.string("type").as_str(), obj.string("flow").as_str()) {
            ("basic", _) => Kind::Basic(BasicAuthenticationSecurity {
                r#type: obj.string("type"),
                description: obj.string("description"),
                vendor_extension: obj.extensions(),
            }),
            ("apiKey", _) => Kind::ApiKey(ApiKeySecurity {
                r#type: obj.string("type"),
                name: obj.string("name"),
                r#in: obj.string("in"),
                description: obj.string("description"),
                vendor_extension: obj.extensions(),
            }),
            ("oauth2", "implicit") => Kind::Oauth2Implicit(oauth2("authorizationUrl")),
            ("oauth2", "password") => Kind::Oauth2Password(oauth2("tokenUrl")),
            ("oauth2", "application") => Kind::Oauth2Application(oauth2("tokenUrl")),
            ("oauth2", "accessCode") => Kind::Oauth2AccessCode(Oauth2AccessCodeSecurity {
                r#type: obj.string("type"),
                flow: obj.string("flow"),
                scopes: scopes(),
                authorization_url: obj.string("authorizationUrl"),
                token_url: obj.string("tokenUrl"),
                description: obj.string("description"),
                vendor_extension: obj.extensions(),
            }),
            _ => return None,
        },
    )
}
