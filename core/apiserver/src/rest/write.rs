//! CREATE, UPDATE, PATCH, DELETE and DELETECOLLECTION, with the per-kind rules Kubernetes
//! applies around them (status preserved on spec writes, generation, graceful pod deletion,
//! finalizers, namespace termination, service IP and port allocation).

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;
use http::Response;
use rand::Rng;
use serde_json::{Value, json};

use keelson_api::registry::ResourceInfo;

use super::{Call, Filter, object_key, resource_id};
use crate::ApiServer;
use crate::admission::{Attributes, Operation};
use crate::alloc::AllocError;
use crate::response::Body;
use crate::status::{ApiError, ApiResult};
use crate::watchcache::CachedObject;

/// Times an internal read-modify-write retries on a conflict it caused itself.
const MAX_RETRIES: usize = 10;

pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    // Kubernetes timestamps have second precision.
    let secs = now.as_second();
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| now.to_string())
}

fn rfc3339_in(secs: i64) -> String {
    let t = jiff::Timestamp::now().as_second() + secs;
    jiff::Timestamp::from_second(t)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| now_rfc3339())
}

/// Parses a request body as JSON or YAML according to its Content-Type.
pub fn parse_body(call: &Call) -> ApiResult<Value> {
    let ct = call.media_type().to_string();
    if call.body.is_empty() {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    match ct.as_str() {
        "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json"
        | "" => serde_json::from_slice(&call.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            let v: Value = serde_yaml_ng::from_slice(&call.body).map_err(|e| {
                ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
            })?;
            Ok(v)
        }
        // kubectl 1.32+ sends typed objects as Kubernetes protobuf.
        keelson_api::protobuf::CONTENT_TYPE => keelson_api::protobuf::decode(&call.body)
            .map_err(|e| ApiError::bad_request(e.to_string())),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn meta<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    v.get("metadata").and_then(|m| m.get(field))
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    meta(v, field).and_then(Value::as_str)
}

fn meta_mut(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.get("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    match v.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresources.iter().any(|s| s.name == "status")
}

/// Kinds whose spec changes bump `metadata.generation`.
fn tracks_generation(info: &ResourceInfo) -> bool {
    info.group.is_empty() && matches!(info.plural, "pods" | "replicationcontrollers")
}

fn without_meta_status(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    c
}

/// Characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const SUFFIX_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_name(base: &str) -> String {
    let mut rng = rand::rng();
    let base: String = base.chars().take(63 - 5).collect();
    let suffix: String = (0..5)
        .map(|_| SUFFIX_CHARS[rng.random_range(0..SUFFIX_CHARS.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// A body that does not decode into the kind, worded as Kubernetes words it.
pub(crate) fn decode_error(info: &ResourceInfo, e: keelson_api::object::DecodeError) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
        kind = info.kind,
        v = info.version
    ))
}

/// Per-kind state reset on create (what Kubernetes' `PrepareForCreate` does).
fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if !info.group.is_empty() {
        return;
    }
    match info.plural {
        "pods" => {
            let qos = keelson_api::object::pod_qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "replicationcontrollers" => obj["status"] = json!({"replicas": 0}),
        "services" => obj["status"] = json!({"loadBalancer": {}}),
        "resourcequotas" => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        "namespaces" => obj["status"] = json!({"phase": "Active"}),
        _ => {}
    }
}

impl ApiServer {
    fn decode_for_write(&self, call: &mut Call, body: Value) -> ApiResult<Value> {
        let info = call.info;
        let mut body = body;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let want_av = info.api_version();
        match body.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => body["apiVersion"] = json!(want_av),
            Some(av) if av == want_av => {}
            Some(av) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
        match body.get("kind").and_then(Value::as_str) {
            None | Some("") => body["kind"] = json!(info.kind),
            Some(k) if k == info.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )));
            }
        }
        let decoded =
            keelson_api::object::decode(info, &body).map_err(|e| decode_error(info, e))?;
        let mode = call.q("fieldValidation").unwrap_or("Warn");
        // Duplicates are only visible in the raw JSON text, not in the parsed value.
        let duplicates = if call
            .content_type
            .as_deref()
            .is_none_or(|c| c.contains("json"))
        {
            keelson_api::object::find_duplicate_fields(&call.body)
        } else {
            Vec::new()
        };
        let mut problems: Vec<String> = decoded
            .unknown_fields
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        problems.extend(
            decoded
                .duplicate_fields
                .iter()
                .chain(duplicates.iter())
                .map(|f| format!("duplicate field \"{f}\"")),
        );
        match mode {
            "Strict" if !problems.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    problems.join(", ")
                )));
            }
            "Strict" | "Warn" => call.warnings.extend(problems),
            "Ignore" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation must be one of Ignore, Warn, Strict; got {other:?}"
                )));
            }
        }
        Ok(decoded.value)
    }

    fn check_namespace(&self, call: &Call, obj: &mut Value) -> ApiResult<()> {
        let info = call.info;
        if !info.namespaced {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
            return Ok(());
        }
        let Some(ns) = call.namespace() else {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: a namespace is required",
            ));
        };
        match meta_str(obj, "namespace") {
            None | Some("") => {
                meta_mut(obj).insert("namespace".into(), json!(ns));
            }
            Some(n) if n == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        Ok(())
    }

    fn validate_object(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let errs = keelson_api::validation::validate(info, obj, old);
        if errs.is_empty() {
            return Ok(());
        }
        let name = meta_str(obj, "name").unwrap_or("");
        Err(ApiError::invalid(info.group, info.kind, name, &errs))
    }

    pub(crate) async fn create(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let body = parse_body(call)?;
        let mut obj = self.decode_for_write(call, body)?;
        self.check_namespace(call, &mut obj)?;
        let (obj, rev) = self.create_object(call, obj).await?;
        let out = super::read::with_rv(obj, rev);
        self.render_one(call, 201, &out)
    }

    /// The create path shared by POST and create-on-update: metadata, defaults, admission,
    /// validation, allocation, store.
    pub(crate) async fn create_object(
        &self,
        call: &mut Call,
        mut obj: Value,
    ) -> ApiResult<(Value, i64)> {
        let info = call.info;
        let generated = {
            let m = meta_mut(&mut obj);
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let gen_base = m
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if name.is_empty() && gen_base.is_empty() {
                let err = keelson_api::validation::FieldError {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                };
                return Err(ApiError::invalid(info.group, info.kind, "", &[err]));
            }
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
                "managedFields",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if tracks_generation(info) {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
            if name.is_empty() {
                Some(gen_base)
            } else {
                None
            }
        };
        prepare_for_create(info, &mut obj);
        keelson_api::object::apply_defaults(info, &mut obj);

        let ns = call.namespace().map(str::to_string);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(base) = &generated {
                meta_mut(&mut obj).insert("name".into(), json!(generate_name(base)));
            }
            let name = meta_str(&obj, "name").unwrap_or("").to_string();
            let attrs = Attributes {
                operation: Operation::Create,
                info,
                subresource: None,
                namespace: ns.as_deref(),
                name: &name,
                user: &call.user,
                old: None,
                dry_run: call.dry_run(),
            };
            self.admission.mutate(&attrs, Some(&mut obj)).await?;
            self.validate_object(info, &obj, None)?;
            self.admission.validate(&attrs, Some(&obj)).await?;

            let allocated = if info.group.is_empty() && info.plural == "services" && !call.dry_run()
            {
                self.allocate_service(&mut obj, None, ns.as_deref().unwrap_or(""), &name)
                    .await?
            } else {
                Vec::new()
            };
            if call.dry_run() {
                return Ok((obj, 0));
            }
            let key = object_key(info, ns.as_deref(), &name);
            let bytes = Bytes::from(
                serde_json::to_vec(&obj).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            match self.store.create(&key, bytes).await {
                Ok(kv) => return Ok((obj, kv.mod_revision)),
                Err(keelson_store::Error::AlreadyExists(_)) => {
                    self.release(&allocated).await;
                    if generated.is_some() && attempt < 8 {
                        continue;
                    }
                    return Err(ApiError::already_exists(info.group, info.plural, &name));
                }
                Err(e) => {
                    self.release(&allocated).await;
                    return Err(e.into());
                }
            }
        }
    }

    pub(crate) async fn update(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let body = parse_body(call)?;
        let obj = self.decode_for_write(call, body)?;
        let (out, created) = self.update_with(call, None, |_cur| Ok(obj.clone())).await?;
        self.render_one(call, if created { 201 } else { 200 }, &out)
    }

    /// Read-modify-write of one object. `f` builds the new object from the current one;
    /// Kubernetes' rules for the subresource are applied around it. Returns the stored object
    /// and whether it was created.
    pub(crate) async fn update_with(
        &self,
        call: &mut Call,
        sub: Option<&str>,
        mut f: impl FnMut(&Value) -> ApiResult<Value>,
    ) -> ApiResult<(Value, bool)> {
        let info = call.info;
        let name = call.name().unwrap_or_default().to_string();
        let ns = call.namespace().map(str::to_string);
        let key = object_key(info, ns.as_deref(), &name);
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                // Some kinds may be created by PUT, as in Kubernetes.
                let allow_create =
                    sub.is_none() && matches!(info.plural, "endpoints" | "events" | "leases");
                if !allow_create {
                    return Err(ApiError::not_found(info.group, info.plural, &name));
                }
                let mut obj = f(&Value::Null)?;
                self.check_namespace(call, &mut obj)?;
                if meta_str(&obj, "name").unwrap_or("") != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta_str(&obj, "name").unwrap_or("")
                    )));
                }
                let (obj, rev) = self.create_object(call, obj).await?;
                return Ok((super::read::with_rv(obj, rev), true));
            };
            let current = CachedObject::from_kv(&kv).ok_or_else(|| {
                ApiError::internal(format!("stored object {key} is not valid JSON"))
            })?;
            let old = current.value;
            let mut new = f(&old)?;
            self.check_namespace(call, &mut new)?;

            // The client's resourceVersion, when given, is a precondition.
            let precondition = match meta_str(&new, "resourceVersion") {
                Some(rv) if !rv.is_empty() => Some(rv.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion: {rv}"))
                })?),
                _ => None,
            };
            if let Some(p) = precondition
                && p != kv.mod_revision
            {
                return Err(ApiError::modified(info.group, info.plural, &name));
            }
            let new_name = meta_str(&new, "name").unwrap_or("");
            if new_name.is_empty() {
                meta_mut(&mut new).insert("name".into(), json!(name));
            } else if new_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
            if let (Some(u), Some(o)) = (meta_str(&new, "uid"), meta_str(&old, "uid"))
                && !u.is_empty()
                && u != o
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {u}, UID in object meta: {o}"
                    ),
                ));
            }

            let mut new = self.merge_update(info, sub, &old, new);
            keelson_api::object::apply_defaults(info, &mut new);
            if tracks_generation(info) && sub != Some("status") {
                let generation = meta(&old, "generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let changed = without_meta_status(&old) != without_meta_status(&new);
                meta_mut(&mut new).insert(
                    "generation".into(),
                    json!(if changed { generation + 1 } else { generation }),
                );
            }

            let attrs = Attributes {
                operation: Operation::Update,
                info,
                subresource: sub,
                namespace: ns.as_deref(),
                name: &name,
                user: &call.user,
                old: Some(&old),
                dry_run: call.dry_run(),
            };
            self.admission.mutate(&attrs, Some(&mut new)).await?;
            // A binding only sets the node, which pod update rules forbid; Kubernetes writes it
            // without them, so only the object itself is checked.
            let validate_old = if sub == Some("binding") {
                None
            } else {
                Some(&old)
            };
            self.validate_object(info, &new, validate_old)?;
            self.admission.validate(&attrs, Some(&new)).await?;

            let mut allocated = Vec::new();
            if info.group.is_empty()
                && info.plural == "services"
                && sub.is_none()
                && !call.dry_run()
            {
                allocated = self
                    .allocate_service(&mut new, Some(&old), ns.as_deref().unwrap_or(""), &name)
                    .await?;
            }

            // Strip the resourceVersion before comparing and storing: the store's revision is
            // the only source of truth for it.
            let mut stored = new.clone();
            if let Some(m) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let mut old_cmp = old.clone();
            if let Some(m) = old_cmp.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            if call.dry_run() {
                return Ok((new, false));
            }
            if stored == old_cmp {
                // A no-op update writes nothing and keeps the resourceVersion, as in Kubernetes.
                return Ok((old, false));
            }
            // Removing the last finalizer of an object being deleted completes the deletion.
            let finalizers_left = meta(&stored, "finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let deleting = meta(&stored, "deletionTimestamp").is_some();
            let ns_pending = info.plural == "namespaces"
                && stored
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
            let pod_grace = info.plural == "pods"
                && meta(&stored, "deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    > 0;
            if deleting && !finalizers_left && !ns_pending && !pod_grace {
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(d) => {
                        self.after_delete(info, &stored).await;
                        return Ok((super::read::with_rv(stored, d.mod_revision), false));
                    }
                    Err(keelson_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let bytes = Bytes::from(
                serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            match self.store.update(&key, bytes, kv.mod_revision).await {
                Ok(kv) => {
                    self.release_replaced(info, &old, &stored).await;
                    return Ok((super::read::with_rv(stored, kv.mod_revision), false));
                }
                Err(keelson_store::Error::Conflict { .. }) => {
                    self.release(&allocated).await;
                    if precondition.is_some() {
                        return Err(ApiError::modified(info.group, info.plural, &name));
                    }
                    continue;
                }
                Err(keelson_store::Error::NotFound(_)) => {
                    self.release(&allocated).await;
                    return Err(ApiError::not_found(info.group, info.plural, &name));
                }
                Err(e) => {
                    self.release(&allocated).await;
                    return Err(e.into());
                }
            }
        }
        Err(ApiError::conflict(
            info.group,
            info.plural,
            &name,
            "the object kept changing; please retry",
        ))
    }

    /// Applies Kubernetes' update strategy: a write to the main resource keeps the stored
    /// status, a write to /status keeps everything but the status; system metadata is kept.
    fn merge_update(
        &self,
        info: &ResourceInfo,
        sub: Option<&str>,
        old: &Value,
        new: Value,
    ) -> Value {
        let mut out = match sub {
            Some("status") => {
                let mut o = old.clone();
                match new.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                // Labels and annotations may change through status too (Kubernetes allows it
                // for pods and nodes); keep what the client sent.
                for k in ["labels", "annotations"] {
                    match meta(&new, k) {
                        Some(v) => {
                            meta_mut(&mut o).insert(k.into(), v.clone());
                        }
                        None => {
                            meta_mut(&mut o).remove(k);
                        }
                    }
                }
                o
            }
            // A binding writes the node and the PodScheduled condition, both.
            Some("binding") => new,
            _ => {
                let mut n = new;
                if has_status_subresource(info) {
                    match old.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                n
            }
        };
        let om = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let m = meta_mut(&mut out);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match om.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("selfLink");
        m.remove("managedFields");
        // A Service keeps its cluster IP when an update leaves it out.
        if info.plural == "services" && info.group.is_empty() {
            let empty = out
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                    if let Some(v) = old.pointer(&format!("/spec/{k}"))
                        && out.get("spec").is_some_and(Value::is_object)
                    {
                        out["spec"][k] = v.clone();
                    }
                }
            }
        }
        out
    }

    pub(crate) async fn patch(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let (out, created) = self.patch_object(call, None).await?;
        self.render_one(call, if created { 201 } else { 200 }, &out)
    }

    pub(crate) async fn patch_object(
        &self,
        call: &mut Call,
        sub: Option<&str>,
    ) -> ApiResult<(Value, bool)> {
        let ct = call.media_type().to_string();
        if ct == "application/apply-patch+yaml" {
            return Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml (server-side apply is not supported yet; use client-side kubectl apply)",
            ));
        }
        let patch = parse_body(call)?;
        let info = call.info;
        let kind = (info.group, info.kind);
        let validation = call.q("fieldValidation").unwrap_or("Warn").to_string();
        let mut unknown: Vec<String> = Vec::new();
        let result = self
            .update_with(call, sub, |cur| {
                if cur.is_null() {
                    return Err(ApiError::not_found(info.group, info.plural, ""));
                }
                let patched = match ct.as_str() {
                    "application/merge-patch+json" => {
                        Ok(keelson_api::patch::json_merge_patch(cur, &patch))
                    }
                    "application/strategic-merge-patch+json" => {
                        keelson_api::patch::strategic_merge_patch(kind, cur, &patch)
                            .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))
                    }
                    "application/json-patch+json" => keelson_api::patch::json_patch(cur, &patch)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string())),
                    other => Err(ApiError::unsupported_media_type(other)),
                }?;
                let decoded = keelson_api::object::decode(info, &patched)
                    .map_err(|e| decode_error(info, e))?;
                unknown = decoded.unknown_fields.clone();
                if validation == "Strict" && !unknown.is_empty() {
                    let list: Vec<String> = unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                let mut v = decoded.value;
                // The patch's own resourceVersion is a precondition; otherwise patch the
                // current version.
                let rv_in_patch = patch.pointer("/metadata/resourceVersion").is_some();
                if !rv_in_patch
                    && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.remove("resourceVersion");
                }
                Ok(v)
            })
            .await;
        if validation == "Warn" {
            call.warnings
                .extend(unknown.iter().map(|f| format!("unknown field \"{f}\"")));
        }
        result
    }

    pub(crate) async fn delete(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let opts = delete_options(call)?;
        let name = call.name().unwrap_or_default().to_string();
        let (out, gone) = self.delete_object(call, &name, &opts).await?;
        // Kubernetes answers with the object while it waits for a grace period or finalizers,
        // and for pods, services and namespaces always; other kinds answer a success Status.
        let info = call.info;
        let returns_object =
            info.group.is_empty() && matches!(info.plural, "pods" | "services" | "namespaces");
        if gone && !returns_object {
            let uid = out.pointer("/metadata/uid").and_then(Value::as_str);
            let status = crate::status::success_status(info.group, info.plural, &name, uid);
            return Ok(crate::response::json(200, &status));
        }
        // Kubernetes answers 202 to an object kept after `orphanDependents: false` (and only
        // then, for the sake of old clients).
        let code = if !gone && opts.get("orphanDependents") == Some(&Value::Bool(false)) {
            202
        } else {
            200
        };
        self.render_one(call, code, &out)
    }

    /// Deletes one object, honouring preconditions, grace periods, finalizers and the
    /// propagation policy (whose garbage-collection finalizer may keep the object). Returns the
    /// object and whether it is gone from the store.
    pub(crate) async fn delete_object(
        &self,
        call: &mut Call,
        name: &str,
        opts: &Value,
    ) -> ApiResult<(Value, bool)> {
        let info = call.info;
        let ns = call.namespace().map(str::to_string);
        let key = object_key(info, ns.as_deref(), name);
        let propagation = super::propagation::requested(opts)?;
        for _ in 0..MAX_RETRIES {
            let Some(kv) = self.store.get(&key).await? else {
                return Err(ApiError::not_found(info.group, info.plural, name));
            };
            let current = CachedObject::from_kv(&kv).ok_or_else(|| {
                ApiError::internal(format!("stored object {key} is not valid JSON"))
            })?;
            let obj = current.value;
            if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
                && meta_str(&obj, "uid") != Some(uid)
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&obj, "uid").unwrap_or("")
                    ),
                ));
            }
            if let Some(rv) = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                && rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    info.group,
                    info.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let attrs = Attributes {
                operation: Operation::Delete,
                info,
                subresource: None,
                namespace: ns.as_deref(),
                name,
                user: &call.user,
                old: Some(&obj),
                dry_run: call.dry_run(),
            };
            self.admission.validate(&attrs, None).await?;

            // What remains before the object may go: finalizers, a pod's grace period, a
            // namespace's contents.
            let mut updated = obj.clone();
            let already = meta(&obj, "deletionTimestamp").is_some();
            let mut keep = false;
            // A pod in its grace period that this delete does not shorten: Kubernetes leaves
            // it as it is, finalizers included.
            let mut grace_pending = false;
            if info.group.is_empty() && info.plural == "namespaces" {
                let pending = obj
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
                if pending || already {
                    keep = true;
                    if !already {
                        meta_mut(&mut updated)
                            .insert("deletionTimestamp".into(), json!(now_rfc3339()));
                        meta_mut(&mut updated)
                            .insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                    updated["status"]["phase"] = json!("Terminating");
                }
            } else if info.group.is_empty() && info.plural == "pods" {
                let grace = opts
                    .get("gracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .or_else(|| {
                        obj.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0);
                let scheduled = obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty());
                let terminal = matches!(
                    obj.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded") | Some("Failed")
                );
                // Unscheduled or finished pods have nothing to stop: they go at once.
                let grace = if !scheduled || terminal { 0 } else { grace };
                let current_grace =
                    meta(&obj, "deletionGracePeriodSeconds").and_then(Value::as_i64);
                if grace == 0 && already {
                    // The final delete (the kubelet's, with grace 0) ends the grace period;
                    // only finalizers may hold the pod after this.
                    grace_pending = current_grace == Some(0);
                    meta_mut(&mut updated).insert("deletionGracePeriodSeconds".into(), json!(0));
                    meta_mut(&mut updated).insert("deletionTimestamp".into(), json!(now_rfc3339()));
                }
                if grace > 0 {
                    keep = true;
                    // A second delete may only shorten the grace period.
                    if current_grace.is_none_or(|g| grace < g) {
                        meta_mut(&mut updated)
                            .insert("deletionTimestamp".into(), json!(rfc3339_in(grace)));
                        meta_mut(&mut updated)
                            .insert("deletionGracePeriodSeconds".into(), json!(grace));
                    } else {
                        grace_pending = true;
                    }
                }
            }
            // The garbage collector's finalizer for the propagation policy.
            if !grace_pending
                && let Some(f) =
                    super::propagation::finalizers_after_delete(info, &updated, propagation)
            {
                meta_mut(&mut updated).insert("finalizers".into(), Value::Array(f));
            }
            let finalizers = meta(&updated, "finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if finalizers {
                keep = true;
                if meta(&updated, "deletionTimestamp").is_none() {
                    meta_mut(&mut updated).insert("deletionTimestamp".into(), json!(now_rfc3339()));
                    meta_mut(&mut updated).insert("deletionGracePeriodSeconds".into(), json!(0));
                }
            }
            if call.dry_run() {
                return Ok((obj, !keep));
            }
            if keep {
                if updated == obj {
                    return Ok((obj, false));
                }
                if let Some(m) = updated.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let bytes = Bytes::from(
                    serde_json::to_vec(&updated).map_err(|e| ApiError::internal(e.to_string()))?,
                );
                match self.store.update(&key, bytes, kv.mod_revision).await {
                    Ok(kv) => return Ok((super::read::with_rv(updated, kv.mod_revision), false)),
                    Err(keelson_store::Error::Conflict { .. }) => continue,
                    Err(keelson_store::Error::NotFound(_)) => {
                        return Err(ApiError::not_found(info.group, info.plural, name));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(d) => {
                    self.after_delete(info, &obj).await;
                    return Ok((super::read::with_rv(obj, d.mod_revision), true));
                }
                Err(keelson_store::Error::Conflict { .. }) => continue,
                Err(keelson_store::Error::NotFound(_)) => {
                    return Err(ApiError::not_found(info.group, info.plural, name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            "the object kept changing; please retry",
        ))
    }

    pub(crate) async fn delete_collection(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let filter = Filter::from_call(call)?;
        let opts = delete_options(call)?;
        let current = self.store.current_revision().await?;
        self.cache
            .wait_for(current, std::time::Duration::from_secs(3))
            .await?;
        let (objs, rev) = self
            .cache
            .list(&resource_id(call.info), filter.namespace.as_deref());
        let mut deleted = Vec::new();
        for o in objs.into_iter().filter(|o| filter.matches(o)) {
            let saved_ns = call.path.namespace.clone();
            if call.info.namespaced {
                call.path.namespace = Some(o.namespace.clone());
            }
            let r = self.delete_object(call, &o.name, &opts).await;
            call.path.namespace = saved_ns;
            match r {
                Ok((v, _)) => deleted.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": call.info.list_kind(),
            "apiVersion": call.info.api_version(),
            "metadata": {"resourceVersion": rev.to_string()},
            "items": deleted,
        });
        Ok(crate::response::json(200, &list))
    }

    async fn after_delete(&self, info: &ResourceInfo, obj: &Value) {
        if info.group.is_empty() && info.plural == "services" {
            self.release(&service_allocations(obj)).await;
        }
    }

    /// Releases what an update dropped (node ports no longer used).
    async fn release_replaced(&self, info: &ResourceInfo, old: &Value, new: &Value) {
        if !(info.group.is_empty() && info.plural == "services") {
            return;
        }
        let keep: HashSet<Allocation> = service_allocations(new).into_iter().collect();
        let gone: Vec<Allocation> = service_allocations(old)
            .into_iter()
            .filter(|a| !keep.contains(a))
            .collect();
        self.release(&gone).await;
    }

    async fn release(&self, allocs: &[Allocation]) {
        for a in allocs {
            match a {
                Allocation::Ip(ip) => self.alloc.release_ip(ip).await,
                Allocation::Port(p) => self.alloc.release_port(*p).await,
            }
        }
    }

    /// Gives a Service its cluster IP and node ports. Returns what was newly allocated, so a
    /// failed write can give it back.
    async fn allocate_service(
        &self,
        svc: &mut Value,
        old: Option<&Value>,
        ns: &str,
        name: &str,
    ) -> ApiResult<Vec<Allocation>> {
        let owner = format!("{ns}/{name}");
        let mut fresh = Vec::new();
        let ty = svc
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        let invalid = |field: &str, value: String, msg: String| {
            ApiError::invalid(
                "",
                "Service",
                name,
                &[keelson_api::validation::FieldError {
                    reason: "FieldValueInvalid",
                    field: field.to_string(),
                    message: format!("Invalid value: {value}: {msg}"),
                }],
            )
        };
        if ty != "ExternalName" && old.is_none() {
            let requested = svc
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .map(str::to_string);
            match requested.as_deref() {
                Some("None") => {
                    svc["spec"]["clusterIPs"] = json!(["None"]);
                }
                req => {
                    let req = req.filter(|r| !r.is_empty());
                    let ip = self
                        .alloc
                        .allocate_ip(req, &owner)
                        .await
                        .map_err(|e| match e {
                            AllocError::OutOfRange(m) => invalid(
                                "spec.clusterIPs",
                                format!("[]string{{\"{}\"}}", req.unwrap_or("")),
                                format!("failed to allocate IP {}: {m}", req.unwrap_or("")),
                            ),
                            AllocError::Taken => invalid(
                                "spec.clusterIPs",
                                format!("[]string{{\"{}\"}}", req.unwrap_or("")),
                                format!(
                                    "failed to allocate IP {}: provided IP is already allocated",
                                    req.unwrap_or("")
                                ),
                            ),
                            AllocError::Exhausted => {
                                ApiError::internal("failed to allocate a serviceIP: range is full")
                            }
                        })?;
                    svc["spec"]["clusterIP"] = json!(ip.to_string());
                    svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                    fresh.push(Allocation::Ip(ip.to_string()));
                }
            }
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
        let wants_node_ports = matches!(ty.as_str(), "NodePort" | "LoadBalancer");
        let old_ports: BTreeSet<u16> = old
            .map(service_allocations)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| match a {
                Allocation::Port(p) => Some(p),
                _ => None,
            })
            .collect();
        let old_by_port: Vec<(i64, String, u16)> = old
            .and_then(|o| o.pointer("/spec/ports").and_then(Value::as_array))
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((
                            p.get("port")?.as_i64()?,
                            p.get("protocol")
                                .and_then(Value::as_str)
                                .unwrap_or("TCP")
                                .to_string(),
                            u16::try_from(p.get("nodePort")?.as_i64()?).ok()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
            return Ok(fresh);
        };
        let mut used_here = BTreeSet::new();
        for (i, p) in ports.iter_mut().enumerate() {
            if !wants_node_ports {
                if let Some(o) = p.as_object_mut() {
                    o.remove("nodePort");
                }
                continue;
            }
            let requested = p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0);
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string();
            let field = format!("spec.ports[{i}].nodePort");
            let chosen = match requested {
                Some(n) => {
                    let n16 = u16::try_from(n).map_err(|_| {
                        invalid(
                            &field,
                            n.to_string(),
                            "must be between 1 and 65535, inclusive".into(),
                        )
                    })?;
                    if old_ports.contains(&n16) {
                        n16
                    } else {
                        let got = self.alloc.allocate_port(Some(n16), &owner).await.map_err(
                            |e| match e {
                                AllocError::OutOfRange(m) => invalid(&field, n.to_string(), m),
                                AllocError::Taken => invalid(
                                    &field,
                                    n.to_string(),
                                    "provided port is already allocated".into(),
                                ),
                                AllocError::Exhausted => ApiError::internal(
                                    "failed to allocate a nodePort: range is full",
                                ),
                            },
                        )?;
                        fresh.push(Allocation::Port(got));
                        got
                    }
                }
                None => {
                    // Keep the node port this service port had before, if any.
                    if let Some((_, _, np)) = old_by_port
                        .iter()
                        .find(|(pp, pr, _)| *pp == port && *pr == proto)
                    {
                        *np
                    } else {
                        let got = self.alloc.allocate_port(None, &owner).await.map_err(|_| {
                            ApiError::internal("failed to allocate a nodePort: range is full")
                        })?;
                        fresh.push(Allocation::Port(got));
                        got
                    }
                }
            };
            used_here.insert(chosen);
            p["nodePort"] = json!(chosen);
        }
        Ok(fresh)
    }
}

/// DeleteOptions from the body, with the query parameters clients may use instead
/// (`gracePeriodSeconds`, `propagationPolicy`) filled in.
fn delete_options(call: &Call) -> ApiResult<Value> {
    let mut opts = if call.body.is_empty() {
        json!({})
    } else {
        parse_body(call)?
    };
    if !opts.is_object() {
        opts = json!({});
    }
    if let Some(g) = call.q("gracePeriodSeconds") {
        let g: i64 = g
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds: {g}")))?;
        opts["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = call.q("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(o) = call.q("orphanDependents") {
        let o: bool = o
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid orphanDependents: {o}")))?;
        opts["orphanDependents"] = json!(o);
    }
    // Refuse bad options before anything is deleted (a collection delete would otherwise
    // find out at its first object).
    super::propagation::requested(&opts)?;
    Ok(opts)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Allocation {
    Ip(String),
    Port(u16),
}

fn service_allocations(svc: &Value) -> Vec<Allocation> {
    let mut out = Vec::new();
    if let Some(ip) = svc.pointer("/spec/clusterIP").and_then(Value::as_str)
        && !ip.is_empty()
        && ip != "None"
    {
        out.push(Allocation::Ip(ip.to_string()));
    }
    if let Some(ports) = svc.pointer("/spec/ports").and_then(Value::as_array) {
        for p in ports {
            if let Some(n) = p
                .get("nodePort")
                .and_then(Value::as_i64)
                .and_then(|n| u16::try_from(n).ok())
                && n != 0
            {
                out.push(Allocation::Port(n));
            }
        }
    }
    out
}
