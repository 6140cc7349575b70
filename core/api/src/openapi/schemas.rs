//! Schema definitions: the `k8s-openapi` schemas collected with schemars, then dressed the way
//! Kubernetes publishes them (group-version-kind and list/patch extensions, list kinds,
//! Kubernetes' forms of `Quantity` and `IntOrString`).
//!
//! The canonical form is Swagger 2.0 (`#/definitions/<name>` references, `$ref` with sibling
//! `description`); [`to_v3`] derives the OpenAPI 3.0 form from it.

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::patch_meta::{ATOMIC_MAP_FIELDS, ATOMIC_STRUCTS, LIST_FIELDS, ListType, full_name};
use super::resources::{EXTRA_KINDS, GROUP_VERSIONS, RESOURCES, SHARED_META_KINDS};

pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";

pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

pub(crate) fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

/// Builds every definition reachable from the served kinds, in Swagger 2.0 form, sorted by
/// name.
pub(crate) fn definitions() -> Map<String, Value> {
    // No transforms: the k8s-openapi schemas are already in the shape Kubernetes publishes in
    // Swagger 2.0, and the v3 rewrite is done by `to_v3` so both documents share one source.
    let mut generator = SchemaSettings::draft07()
        .with(|settings| {
            settings.meta_schema = None;
            settings.transforms.clear();
            settings.definitions_path = "/definitions".into();
        })
        .into_generator();
    for resource in RESOURCES {
        (resource.seed)(&mut generator);
    }
    for kind in EXTRA_KINDS.iter().chain(SHARED_META_KINDS) {
        (kind.seed)(&mut generator);
    }
    let mut defs = generator.take_definitions(false);

    relax_metadata_requirement(&mut defs);
    add_list_kinds(&mut defs);
    defs.insert(
        PATCH.to_owned(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    kubernetes_scalar_forms(&mut defs);
    add_group_version_kinds(&mut defs);
    add_list_and_map_semantics(&mut defs);

    let mut names: Vec<String> = defs.keys().cloned().collect();
    names.sort();
    let mut sorted = Map::new();
    for name in names {
        if let Some(schema) = defs.remove(&name) {
            sorted.insert(name, schema);
        }
    }
    sorted
}

/// k8s-openapi makes `metadata` non-optional on every resource and so marks it required;
/// Kubernetes only requires it where the Go field has no `omitempty` (core/v1 Event).
fn relax_metadata_requirement(defs: &mut Map<String, Value>) {
    let kinds = RESOURCES
        .iter()
        .map(|r| r.definition)
        .chain(EXTRA_KINDS.iter().map(|k| k.definition));
    for name in kinds {
        if name == "io.k8s.api.core.v1.Event" {
            continue;
        }
        let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut) else {
            continue;
        };
        let now_empty = match schema.get_mut("required").and_then(Value::as_array_mut) {
            Some(required) => {
                required.retain(|field| field != "metadata");
                required.is_empty()
            }
            None => false,
        };
        if now_empty {
            schema.remove("required");
        }
    }
}

/// k8s-openapi has no schema for its generic `List<T>`; Kubernetes publishes one definition
/// per list kind.
fn add_list_kinds(defs: &mut Map<String, Value>) {
    for resource in RESOURCES
        .iter()
        .filter(|r| r.verbs.contains(&super::resources::Verb::List))
    {
        // Reuse the kind's own apiVersion/kind documentation, which is the same text.
        let property_doc = |field: &str| {
            defs.get(resource.definition)
                .and_then(|s| s.pointer(&format!("/properties/{field}/description")))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let list = json!({
            "description": format!("{}List is a list of {} objects.", resource.kind, resource.kind),
            "type": "object",
            "properties": {
                "apiVersion": { "description": property_doc("apiVersion"), "type": "string" },
                "items": {
                    "description": format!("List of {}.", resource.plural),
                    "type": "array",
                    "items": { "$ref": format!("{V2_REF_PREFIX}{}", resource.definition) },
                },
                "kind": { "description": property_doc("kind"), "type": "string" },
                "metadata": {
                    "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                },
            },
            "required": ["items"],
        });
        defs.insert(resource.list_definition(), list);
    }
}

/// Quantity and IntOrString in their Swagger 2.0 form (strings with a format); `to_v3` turns
/// them into the `oneOf` form Kubernetes uses in OpenAPI v3.
fn kubernetes_scalar_forms(defs: &mut Map<String, Value>) {
    if let Some(schema) = defs.get_mut(QUANTITY) {
        let description = schema.get("description").cloned().unwrap_or(Value::Null);
        *schema = json!({ "description": description, "type": "string" });
    }
    if let Some(schema) = defs.get_mut(INT_OR_STRING) {
        let description = schema.get("description").cloned().unwrap_or(Value::Null);
        *schema = json!({
            "description": description,
            "type": "string",
            "format": "int-or-string",
            "x-kubernetes-int-or-string": true,
        });
    }
}

fn add_group_version_kinds(defs: &mut Map<String, Value>) {
    let mut set = |name: &str, gvks: Vec<Value>| {
        if let Some(schema) = defs.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert(GVK_EXTENSION.to_owned(), Value::Array(gvks));
        }
    };
    for r in RESOURCES {
        set(r.definition, vec![gvk(r.group, r.version, r.kind)]);
        if r.verbs.contains(&super::resources::Verb::List) {
            set(
                &r.list_definition(),
                vec![gvk(r.group, r.version, &format!("{}List", r.kind))],
            );
        }
    }
    for k in EXTRA_KINDS {
        set(k.definition, vec![gvk(k.group, k.version, k.kind)]);
    }
    for k in SHARED_META_KINDS {
        let gvks = GROUP_VERSIONS
            .iter()
            .map(|gv| gvk(gv.group, gv.version, k.kind))
            .collect();
        set(k.definition, gvks);
    }
}

/// Writes the shared patch-metadata table into the property schemas, and marks every other
/// list atomic as Kubernetes 1.33 does.
fn add_list_and_map_semantics(defs: &mut Map<String, Value>) {
    for entry in LIST_FIELDS {
        let Some(property) = property_mut(defs, &entry.full(), entry.field) else {
            continue;
        };
        if let Some(strategy) = entry.strategy {
            property.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
        if let Some(key) = entry.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        match entry.list_type {
            ListType::Atomic => {
                property.insert("x-kubernetes-list-type".into(), "atomic".into());
            }
            ListType::Set => {
                property.insert("x-kubernetes-list-type".into(), "set".into());
            }
            ListType::Map(keys) => {
                property.insert("x-kubernetes-list-map-keys".into(), json!(keys));
                property.insert("x-kubernetes-list-type".into(), "map".into());
            }
        }
    }
    for (definition, field) in ATOMIC_MAP_FIELDS {
        if let Some(property) = property_mut(defs, &full_name(definition), field) {
            property.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
    }
    for definition in ATOMIC_STRUCTS {
        if let Some(schema) = defs
            .get_mut(&full_name(definition))
            .and_then(Value::as_object_mut)
        {
            schema.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
    }
    let list_kinds: Vec<String> = RESOURCES.iter().map(|r| r.list_definition()).collect();
    for (name, schema) in defs.iter_mut() {
        let is_list_kind = list_kinds.contains(name);
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, property) in properties.iter_mut() {
            // The items of a list kind are a plain array in Kubernetes' documents.
            if is_list_kind && field == "items" {
                continue;
            }
            if let Some(property) = property.as_object_mut()
                && property.get("type").and_then(Value::as_str) == Some("array")
                && !property.contains_key("x-kubernetes-list-type")
            {
                property.insert("x-kubernetes-list-type".into(), "atomic".into());
            }
        }
    }
}

fn property_mut<'a>(
    defs: &'a mut Map<String, Value>,
    definition: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    defs.get_mut(definition)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// The names of all definitions `roots` reference, transitively (roots included when they
/// are definition names).
pub(crate) fn closure(
    defs: &Map<String, Value>,
    roots: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut pending: Vec<String> = roots.into_iter().collect();
    while let Some(name) = pending.pop() {
        if seen.contains(&name) {
            continue;
        }
        let Some(schema) = defs.get(&name) else {
            continue;
        };
        collect_refs(schema, &mut pending);
        seen.push(name);
    }
    seen.sort();
    seen
}

/// Pushes the definition name of every `$ref` found in `value`.
pub(crate) fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref"
                    && let Some(name) = child.as_str().and_then(|r| {
                        r.strip_prefix(V2_REF_PREFIX)
                            .or_else(|| r.strip_prefix(V3_REF_PREFIX))
                    })
                {
                    out.push(name.to_owned());
                } else {
                    collect_refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// The OpenAPI 3.0 form of one definition: references under `#/components/schemas/`, and a
/// `$ref` that has siblings (a field's own description) wrapped in `allOf`, since a 3.0 `$ref`
/// ignores its siblings. Quantity and IntOrString get Kubernetes' `oneOf` forms.
pub(crate) fn to_v3(name: &str, schema: &Value) -> Value {
    match name {
        QUANTITY => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "oneOf": [{ "type": "string" }, { "type": "number" }],
        }),
        INT_OR_STRING => json!({
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
            "format": "int-or-string",
            "oneOf": [{ "type": "integer" }, { "type": "string" }],
            "x-kubernetes-int-or-string": true,
        }),
        _ => v3_schema(schema),
    }
}

fn v3_schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, child) in map {
                let child = if key == "$ref" {
                    match child.as_str().and_then(|r| r.strip_prefix(V2_REF_PREFIX)) {
                        Some(name) => Value::String(format!("{V3_REF_PREFIX}{name}")),
                        None => child.clone(),
                    }
                } else {
                    v3_schema(child)
                };
                out.insert(key.clone(), child);
            }
            if out.len() > 1
                && let Some(reference) = out.remove("$ref")
            {
                out.insert("allOf".into(), json!([{ "$ref": reference }]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(v3_schema).collect()),
        other => other.clone(),
    }
}
