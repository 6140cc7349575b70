//! Subresources: status, scale, binding, eviction and finalize.

use http::{Method, Response};
use serde_json::{Value, json};

use super::Call;
use super::write::parse_body;
use crate::ApiServer;
use crate::response::{self, Body};
use crate::status::{ApiError, ApiResult, success_status};

impl ApiServer {
    pub(crate) async fn subresource(
        &self,
        call: &mut Call,
        sub: &str,
    ) -> ApiResult<Response<Body>> {
        match (sub, call.method.clone()) {
            ("status", Method::GET) => self.get(call).await,
            ("status", Method::PUT) => {
                let body = parse_body(call)?;
                let obj = self.decode_status_body(call, body)?;
                let (out, _) = self
                    .update_with(call, Some("status"), |_| Ok(obj.clone()))
                    .await?;
                self.render_one(call, 200, &out)
            }
            ("status", Method::PATCH) => {
                let (out, _) = self.patch_object(call, Some("status")).await?;
                self.render_one(call, 200, &out)
            }
            ("scale", Method::GET) => {
                let rc = self.get_value(call).await?;
                Ok(response::json(200, &to_scale(&rc)))
            }
            ("scale", Method::PUT) | ("scale", Method::PATCH) => self.write_scale(call).await,
            ("binding", Method::POST) => {
                let body = parse_body(call)?;
                self.bind(call, body).await
            }
            ("eviction", Method::POST) => {
                let name = call.name().unwrap_or_default().to_string();
                let opts = parse_body(call)
                    .ok()
                    .and_then(|b| b.get("deleteOptions").cloned())
                    .unwrap_or(Value::Null);
                self.delete_object(call, &name, &opts).await?;
                Ok(response::json(
                    201,
                    &success_status("", "pods", &name, None),
                ))
            }
            ("finalize", Method::PUT) => {
                let body = parse_body(call)?;
                let finalizers = body
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or_else(|| json!([]));
                let (out, _) = self
                    .update_with(call, Some("finalize"), |cur| {
                        let mut v = cur.clone();
                        v["spec"]["finalizers"] = finalizers.clone();
                        Ok(v)
                    })
                    .await?;
                self.render_one(call, 200, &out)
            }
            (_, m) => Err(ApiError::method_not_allowed(m.as_str())),
        }
    }

    fn decode_status_body(&self, call: &mut Call, body: Value) -> ApiResult<Value> {
        let decoded = keelson_api::object::decode(call.info, &body)
            .map_err(|e| super::write::decode_error(call.info, e))?;
        Ok(decoded.value)
    }

    async fn get_value(&self, call: &Call) -> ApiResult<Value> {
        let name = call.name().unwrap_or_default();
        let key = super::object_key(call.info, call.namespace(), name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(call.info.group, call.info.plural, name))?;
        crate::watchcache::CachedObject::from_kv(&kv)
            .map(|o| o.value)
            .ok_or_else(|| ApiError::internal(format!("stored object {key} is not valid JSON")))
    }

    /// PUT or PATCH on `scale`: the change is made on the Scale view, then carried to the
    /// controller's `spec.replicas`.
    async fn write_scale(&self, call: &mut Call) -> ApiResult<Response<Body>> {
        let body = parse_body(call)?;
        let ct = call.media_type().to_string();
        let is_patch = call.method == Method::PATCH;
        let scale_gk = ("autoscaling", "Scale");
        let (out, _) = self
            .update_with(call, Some("scale"), |cur| {
                let scale = to_scale(cur);
                let wanted = if is_patch {
                    match ct.as_str() {
                        "application/merge-patch+json" => {
                            keelson_api::patch::json_merge_patch(&scale, &body)
                        }
                        "application/strategic-merge-patch+json" => {
                            keelson_api::patch::strategic_merge_patch(scale_gk, &scale, &body)
                                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
                        }
                        "application/json-patch+json" => {
                            keelson_api::patch::json_patch(&scale, &body)
                                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?
                        }
                        other => return Err(ApiError::unsupported_media_type(other)),
                    }
                } else {
                    body.clone()
                };
                let replicas = wanted
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        cur.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        &[keelson_api::validation::FieldError {
                            reason: "FieldValueInvalid",
                            field: "spec.replicas".into(),
                            message: format!(
                                "Invalid value: {replicas}: must be greater than or equal to 0"
                            ),
                        }],
                    ));
                }
                let mut rc = cur.clone();
                // A resourceVersion on the Scale is a precondition on the controller.
                match wanted
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    Some(rv) if !rv.is_empty() && !is_patch => {
                        rc["metadata"]["resourceVersion"] = json!(rv);
                    }
                    _ => {
                        if let Some(m) = rc.get_mut("metadata").and_then(Value::as_object_mut) {
                            m.remove("resourceVersion");
                        }
                    }
                }
                rc["spec"]["replicas"] = json!(replicas);
                Ok(rc)
            })
            .await?;
        Ok(response::json(200, &to_scale(&out)))
    }

    /// `pods/binding` and `bindings`: assigns a pod to a node, once.
    pub(crate) async fn bind(&self, call: &mut Call, body: Value) -> ApiResult<Response<Body>> {
        let target = body
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "",
                    "Binding",
                    "",
                    &[keelson_api::validation::FieldError {
                        reason: "FieldValueRequired",
                        field: "target.name".into(),
                        message: "Required value".into(),
                    }],
                )
            })?
            .to_string();
        let pod_name = match call.name() {
            Some(n) => n.to_string(),
            None => body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let pods = super::ApiServer::resource_info("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not registered"))?;
        let saved_info = call.info;
        let saved_name = call.path.name.clone();
        let saved_sub = call.path.subresource.clone();
        call.info = pods;
        call.path.name = Some(pod_name.clone());
        let annotations = body.pointer("/metadata/annotations").cloned();
        let result = self
            .update_with(call, Some("binding"), |cur| {
                if cur.pointer("/metadata/deletionTimestamp").is_some() {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &pod_name,
                        "pod is being deleted, cannot be assigned to a host",
                    ));
                }
                let assigned = cur
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !assigned.is_empty() {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &pod_name,
                        &format!("pod {pod_name} is already assigned to node \"{assigned}\""),
                    ));
                }
                let mut v = cur.clone();
                v["spec"]["nodeName"] = json!(target);
                set_scheduled(&mut v);
                if let Some(Value::Object(a)) = &annotations {
                    for (k, val) in a {
                        v["metadata"]["annotations"][k] = val.clone();
                    }
                }
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(v)
            })
            .await;
        call.info = saved_info;
        call.path.name = saved_name;
        call.path.subresource = saved_sub;
        result?;
        Ok(response::json(
            201,
            &json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
            }),
        ))
    }
}

/// Sets the pod's `PodScheduled` condition to True, as a binding does.
fn set_scheduled(pod: &mut Value) {
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": super::write::now_rfc3339(),
    });
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    match conditions.as_array_mut() {
        Some(list) => {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.insert(0, condition);
        }
        None => *conditions = json!([condition]),
    }
}

/// The autoscaling/v1 Scale view of a ReplicationController.
pub fn to_scale(rc: &Value) -> Value {
    let m = rc.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta[k] = v.clone();
        }
    }
    let selector = rc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|s| {
            s.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": rc.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": rc.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}
