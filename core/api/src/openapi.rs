//! OpenAPI documents describing the resources Keelson serves, as a Kubernetes API server
//! publishes them: `GET /openapi/v2` (Swagger 2.0, all groups in one document) and
//! `GET /openapi/v3` (an index) plus `GET /openapi/v3/<group-version>` (one OpenAPI 3.0
//! document per group version).
//!
//! The schemas are the `k8s-openapi` ones (through schemars), under Kubernetes' definition
//! names and dressed with the extensions clients rely on:
//! - `x-kubernetes-group-version-kind` on kinds and operations: `kubectl explain` finds a
//!   resource's schema by it, and kubectl decides that the server validates fields itself when
//!   every PATCH operation of the kind lists the `fieldValidation` query parameter;
//! - the strategic-merge-patch and list metadata (`x-kubernetes-patch-strategy`,
//!   `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`, ...), from the table in
//!   [`patch_meta`] that [`crate::patch`] also reads: client-side `kubectl apply` computes its
//!   patches with it.
//!
//! Documents are deterministic and built once per process, on first use.

mod patch_meta;
mod paths;
mod resources;
mod schemas;

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use paths::Flavor;
use resources::GROUP_VERSIONS;

/// One v3 document with its serialized form and the hash clients cache it under.
struct V3Document {
    path: String,
    value: Value,
    json: Vec<u8>,
    hash: String,
}

struct Documents {
    /// Enriched definitions in Swagger 2.0 form; also the schema source of strategic merge
    /// patch.
    definitions: Map<String, Value>,
    v2: Value,
    v2_json: Vec<u8>,
    v3: Vec<V3Document>,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

fn documents() -> &'static Documents {
    DOCUMENTS.get_or_init(build)
}

fn build() -> Documents {
    let definitions = schemas::definitions();

    let v2 = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths::render(Flavor::V2, None),
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "security": [{ "BearerToken": [] }],
    });
    let v2_json = to_json(&v2);

    let v3 = GROUP_VERSIONS
        .iter()
        .map(|gv| {
            let paths = paths::render(Flavor::V3, Some((gv.group, gv.version)));
            let mut roots = Vec::new();
            schemas::collect_refs(&Value::Object(paths.clone()), &mut roots);
            // Kinds of the group served only as subresources (autoscaling/v1 Scale) still get
            // their schema into their own group's document.
            roots.extend(
                resources::EXTRA_KINDS
                    .iter()
                    .filter(|k| (k.group, k.version) == (gv.group, gv.version))
                    .map(|k| k.definition.to_owned()),
            );
            let components: Map<String, Value> = schemas::closure(&definitions, roots)
                .into_iter()
                .filter_map(|name| {
                    let schema = definitions.get(&name)?;
                    Some((name.clone(), schemas::to_v3(&name, schema)))
                })
                .collect();
            let value = json!({
                "openapi": "3.0.0",
                "info": { "title": "Kubernetes", "version": "unversioned" },
                "paths": paths,
                "components": {
                    "schemas": components,
                    "securitySchemes": {
                        "BearerToken": {
                            "description": "Bearer Token authentication",
                            "in": "header",
                            "name": "authorization",
                            "type": "apiKey",
                        },
                    },
                },
                "security": [{ "BearerToken": [] }],
            });
            let json = to_json(&value);
            let hash = hex_upper(&Sha512::digest(&json));
            V3Document {
                path: gv.path(),
                value,
                json,
                hash,
            }
        })
        .collect();

    Documents {
        definitions,
        v2,
        v2_json,
        v3,
    }
}

fn to_json(value: &Value) -> Vec<u8> {
    // A `Value` holds only string keys and finite numbers, so serialization cannot fail; an
    // empty body would be caught by every client immediately.
    serde_json::to_vec(value).unwrap_or_default()
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02X}");
            out
        })
}

fn find_v3(group_version_path: &str) -> Option<&'static V3Document> {
    let path = group_version_path
        .trim_start_matches('/')
        .trim_start_matches("openapi/v3/")
        .trim_end_matches('/');
    documents().v3.iter().find(|d| d.path == path)
}

/// The `GET /openapi/v3` index: every group version's document with the URL to fetch it at.
///
/// The URL carries the document's hash (uppercase hex SHA-512 of its JSON bytes, as Kubernetes
/// computes it), which clients use as a cache key: a request with the current hash may be
/// answered with `Cache-Control: public, immutable`.
pub fn v3_root() -> Value {
    let paths: Map<String, Value> = documents()
        .v3
        .iter()
        .map(|d| {
            let url = format!("/openapi/v3/{}?hash={}", d.path, d.hash);
            (d.path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The group-version paths that have a v3 document: `api/v1`, `apis/autoscaling/v1`, ...
pub fn v3_group_versions() -> Vec<&'static str> {
    documents().v3.iter().map(|d| d.path.as_str()).collect()
}

/// The OpenAPI 3.0 document of one group version, for `GET /openapi/v3/<path>`.
///
/// `group_version_path` is the key of [`v3_root`] (`api/v1`, `apis/coordination.k8s.io/v1`);
/// a leading `/` or `/openapi/v3/` is accepted. `None` for unknown group versions.
pub fn v3_document(group_version_path: &str) -> Option<Value> {
    find_v3(group_version_path).map(|d| d.value.clone())
}

/// Like [`v3_document`], borrowing the cached document instead of cloning it.
pub fn v3_document_ref(group_version_path: &str) -> Option<&'static Value> {
    find_v3(group_version_path).map(|d| &d.value)
}

/// The serialized JSON of [`v3_document`]: the exact bytes the hash is computed over, ready to
/// be sent as `application/json`.
pub fn v3_document_json(group_version_path: &str) -> Option<&'static [u8]> {
    find_v3(group_version_path).map(|d| d.json.as_slice())
}

/// The current hash of a v3 document (the `hash` query parameter of its URL in [`v3_root`]).
pub fn v3_document_hash(group_version_path: &str) -> Option<&'static str> {
    find_v3(group_version_path).map(|d| d.hash.as_str())
}

/// The Swagger 2.0 document for `GET /openapi/v2` in JSON form (for `Accept:
/// application/json`; kubectl asks for the protobuf form first, see `crate::gnostic`).
pub fn v2_document() -> Value {
    documents().v2.clone()
}

/// Like [`v2_document`], borrowing the cached document.
pub fn v2_document_ref() -> &'static Value {
    &documents().v2
}

/// The serialized JSON of [`v2_document`].
pub fn v2_document_json() -> &'static [u8] {
    &documents().v2_json
}

/// Swagger 2.0 definitions (with the patch extensions) the strategic merge patch walks.
pub(crate) fn definitions() -> &'static Map<String, Value> {
    &documents().definitions
}

/// The definition name of a kind (`("", "Pod")` -> `io.k8s.api.core.v1.Pod`), found by the
/// group-version-kind extension so that every kind of the documents is covered.
pub(crate) fn definition_of_kind(group: &str, kind: &str) -> Option<&'static str> {
    definitions().iter().find_map(|(name, schema)| {
        let gvks = schema.get("x-kubernetes-group-version-kind")?.as_array()?;
        gvks.iter()
            .any(|g| {
                g.get("group").and_then(Value::as_str) == Some(group)
                    && g.get("kind").and_then(Value::as_str) == Some(kind)
            })
            .then_some(name.as_str())
    })
}

#[cfg(test)]
mod tests;
