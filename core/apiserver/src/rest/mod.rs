//! The REST surface for resources: get, list, watch, create, update, patch, delete,
//! deletecollection, and the subresources (status, scale, binding, finalize, eviction).

pub(crate) mod pod_stream;
mod propagation;
mod read;
mod subresources;
mod write;

use std::collections::HashMap;

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{Value, json};

use keelson_api::registry::{self, ResourceInfo};
use keelson_api::selectors::{FieldSelector, LabelSelector};

use crate::ApiServer;
use crate::auth::UserInfo;
use crate::request::{Output, ResourcePath};
use crate::response::{self, Body};
use crate::status::{ApiError, ApiResult};
use crate::watchcache::{CachedObject, REGISTRY_PREFIX};

pub use write::now_rfc3339;
pub use write::parse_body as write_parse_body;

/// Largest request body accepted, as in Kubernetes.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// One resource request, parsed.
pub struct Call {
    pub path: ResourcePath,
    pub info: &'static ResourceInfo,
    pub method: Method,
    pub query: HashMap<String, String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub user: UserInfo,
    pub warnings: Vec<String>,
}

impl Call {
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }
    pub fn name(&self) -> Option<&str> {
        self.path.name.as_deref()
    }
    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    /// The body's media type without parameters (`application/json`); JSON when unset.
    pub fn media_type(&self) -> &str {
        self.content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .unwrap_or("application/json")
    }
    /// What `includeObject` asks table rows to carry (`None`, `Metadata`, `Object`).
    pub fn include_object(&self) -> &str {
        self.q("includeObject").unwrap_or("Metadata")
    }
}

/// A `meta.k8s.io/v1` Table of `objects`. Watches send column definitions with their first
/// event only, as Kubernetes does, so `headers` may leave them out.
pub fn table<'a>(
    info: &ResourceInfo,
    include: &str,
    objects: impl Iterator<Item = &'a Value>,
    meta: Value,
    headers: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .map(|o| {
            let mut row = json!({ "cells": keelson_api::table::cells(info, o, now) });
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_metadata(o),
            }
            row
        })
        .collect();
    let columns = if headers {
        Value::Array(
            keelson_api::table::columns(info)
                .iter()
                .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
                .collect(),
        )
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The id of a resource inside store keys: `pods`, `leases.coordination.k8s.io`.
pub fn resource_id(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

pub fn object_key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
    match (info.namespaced, ns) {
        (true, Some(ns)) => format!("{REGISTRY_PREFIX}{}/{ns}/{name}", resource_id(info)),
        _ => format!("{REGISTRY_PREFIX}{}/{name}", resource_id(info)),
    }
}

pub fn list_prefix(info: &ResourceInfo, ns: Option<&str>) -> String {
    match (info.namespaced, ns) {
        (true, Some(ns)) => format!("{REGISTRY_PREFIX}{}/{ns}/", resource_id(info)),
        _ => format!("{REGISTRY_PREFIX}{}/", resource_id(info)),
    }
}

/// Label, field, namespace selection applied to lists and watches.
pub struct Filter {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub has_fields: bool,
}

impl Filter {
    pub fn from_call(call: &Call) -> ApiResult<Self> {
        let labels = match call.q("labelSelector") {
            Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let mut field_src = call.q("fieldSelector").unwrap_or("").to_string();
        // A watch or list on /{resource}/{name} selects that one object.
        if let Some(name) = call.name() {
            if !field_src.is_empty() {
                field_src.push(',');
            }
            field_src.push_str(&format!("metadata.name={name}"));
        }
        let fields =
            FieldSelector::parse(&field_src).map_err(|e| ApiError::bad_request(e.to_string()))?;
        fields
            .check_supported(call.info)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Self {
            info: call.info,
            namespace: call.namespace().map(str::to_string),
            labels,
            has_fields: !field_src.is_empty(),
            fields,
        })
    }

    pub fn matches(&self, obj: &CachedObject) -> bool {
        if let Some(ns) = &self.namespace
            && self.info.namespaced
            && &obj.namespace != ns
        {
            return false;
        }
        self.matches_value(&obj.value)
    }

    pub fn matches_value(&self, value: &Value) -> bool {
        if !self.labels.is_empty() && !self.labels.matches(&crate::watchcache::labels_of(value)) {
            return false;
        }
        if self.has_fields {
            let info = self.info;
            return self
                .fields
                .matches(&|f: &str| keelson_api::selectors::field_value(info, value, f));
        }
        true
    }
}

impl ApiServer {
    pub(crate) async fn serve_resource(&self, mut call: Call) -> Response<Body> {
        let result = self.dispatch(&mut call).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => response::error(&e),
        };
        response::add_warnings(&mut resp, &call.warnings);
        resp
    }

    async fn dispatch(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let sub = call.path.subresource.clone();
        let watch = call.path.watch_prefix
            || call
                .query
                .get("watch")
                .is_some_and(|v| v == "true" || v == "1");
        if let Some(sub) = sub.as_deref() {
            if !call.info.subresources.iter().any(|s| s.name == sub) {
                return Err(ApiError::no_route());
            }
            return self.subresource(call, sub).await;
        }
        match (call.method.clone(), call.name().is_some()) {
            (Method::GET, _) if watch => self.watch(call).await,
            (Method::GET, true) => self.get(call).await,
            (Method::GET, false) => self.list(call).await,
            (Method::POST, false) => self.create(call).await,
            (Method::PUT, true) => self.update(call).await,
            (Method::PATCH, true) => self.patch(call).await,
            (Method::DELETE, true) => self.delete(call).await,
            (Method::DELETE, false) => self.delete_collection(call).await,
            (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
        }
    }

    /// Writes `value` in the representation the client asked for (object, table, metadata).
    pub(crate) fn render_one(
        &self,
        call: &Call,
        code: u16,
        value: &Value,
    ) -> ApiResult<Response<Body>> {
        match crate::request::negotiate(call.accept.as_deref()) {
            Some(Output::Object) => {
                if crate::request::wants_yaml(call.accept.as_deref()) {
                    Ok(response::yaml(code, value))
                } else {
                    Ok(response::json(code, value))
                }
            }
            Some(Output::Table) => {
                let t = table(
                    call.info,
                    call.include_object(),
                    std::iter::once(value),
                    json!({}),
                    true,
                );
                Ok(response::json(code, &t))
            }
            Some(Output::PartialMetadata) => Ok(response::json(code, &partial_metadata(value))),
            None => Err(ApiError::not_acceptable(
                "application/json, application/yaml",
            )),
        }
    }

    pub(crate) fn resource_info(
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<&'static ResourceInfo> {
        registry::lookup(group, version, resource)
    }
}

/// The `PartialObjectMetadata` form of an object.
pub fn partial_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}
