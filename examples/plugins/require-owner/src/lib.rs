//! An admission check that requires every pod, replication controller and service to carry an
//! owner label, so someone answers for each workload.
//!
//! - `mutate`: an object without the label gets its namespace's value of the label, when the
//!   namespace has one (read through the host's cluster cache), as a JSON patch.
//! - `validate`: an object still without a non-empty label is denied, naming the label.
//!
//! Deletes are never checked. Options (JSON), all optional:
//! `{"label": "owner", "resources": ["pods", "replicationcontrollers", "services"]}`.

use keelson_plugin_sdk::{
    AdmissionCheck, AdmissionRequest, AdmissionResponse, ErrorKind, Level, Operation, PluginError,
    allow, cluster, deny, export_admission_check, log, patch, plugin_error,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_label")]
    label: String,
    #[serde(default = "default_resources")]
    resources: Vec<String>,
}

fn default_label() -> String {
    "owner".into()
}

fn default_resources() -> Vec<String> {
    ["pods", "replicationcontrollers", "services"]
        .map(String::from)
        .to_vec()
}

/// The check and its options.
pub struct RequireOwner {
    label: String,
    resources: Vec<String>,
}

impl RequireOwner {
    fn applies(&self, request: &AdmissionRequest) -> bool {
        request.operation != Operation::Delete
            && request.sub_resource.is_none()
            && request.resource.group.is_empty()
            && self.resources.contains(&request.resource.resource)
    }

    fn object(request: &AdmissionRequest) -> Result<Value, PluginError> {
        let text = request.object.as_deref().unwrap_or("{}");
        serde_json::from_str(text).map_err(|e| plugin_error(ErrorKind::InvalidInput, e.to_string()))
    }

    fn label_of<'a>(&self, object: &'a Value) -> Option<&'a str> {
        object
            .pointer("/metadata/labels")
            .and_then(|l| l.get(&self.label))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    fn namespace_owner(&self, namespace: &str) -> Result<Option<String>, PluginError> {
        let found =
            cluster::get_object(&cluster::core("namespaces"), None, namespace).map_err(|e| {
                plugin_error(ErrorKind::Unavailable, format!("namespace lookup: {e:?}"))
            })?;
        let Some(text) = found else { return Ok(None) };
        let ns: Value = serde_json::from_str(&text)
            .map_err(|e| plugin_error(ErrorKind::Internal, e.to_string()))?;
        Ok(self.label_of(&ns).map(str::to_string))
    }
}

/// Escapes a label key for a JSON Pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl AdmissionCheck for RequireOwner {
    const NAME: &'static str = "require-owner";

    fn configure(options: &str) -> Result<Self, PluginError> {
        let o: Options = serde_json::from_str(options)
            .map_err(|e| plugin_error(ErrorKind::InvalidConfig, e.to_string()))?;
        if o.label.is_empty() {
            return Err(plugin_error(
                ErrorKind::InvalidConfig,
                "option \"label\" must not be empty",
            ));
        }
        Ok(RequireOwner {
            label: o.label,
            resources: o.resources,
        })
    }

    fn mutate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        if !self.applies(request) {
            return Ok(allow());
        }
        let object = Self::object(request)?;
        if self.label_of(&object).is_some() {
            return Ok(allow());
        }
        let Some(namespace) = request.namespace.as_deref() else {
            return Ok(allow());
        };
        let Some(owner) = self.namespace_owner(namespace)? else {
            return Ok(allow());
        };
        log(
            Level::Info,
            &format!(
                "{} {}/{}: owner {owner} from the namespace",
                request.resource.resource,
                namespace,
                request.name.as_deref().unwrap_or("")
            ),
        );
        let value = Value::String(owner);
        let ops = if object
            .pointer("/metadata/labels")
            .is_some_and(Value::is_object)
        {
            serde_json::json!([{"op": "add", "path": format!("/metadata/labels/{}", pointer_token(&self.label)), "value": value}])
        } else {
            serde_json::json!([{"op": "add", "path": "/metadata/labels", "value": {self.label.clone(): value}}])
        };
        Ok(patch(ops.to_string()))
    }

    fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        if !self.applies(request) {
            return Ok(allow());
        }
        let object = Self::object(request)?;
        Ok(match self.label_of(&object) {
            Some(_) => allow(),
            None => deny(format!(
                "{} must have a non-empty {:?} label (or be created in a namespace that has one)",
                request.resource.resource, self.label
            )),
        })
    }
}

export_admission_check!(RequireOwner, exports: [validate, mutate]);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::create_request;
    use keelson_plugin_sdk::testing::AdmissionHarness;

    use super::*;

    fn harness() -> AdmissionHarness<RequireOwner> {
        let mut h = AdmissionHarness::<RequireOwner>::new("{}").expect("configure");
        h.add_object(
            cluster::core("namespaces"),
            None,
            "team-a",
            &[("owner", "alice")],
            r#"{"metadata":{"name":"team-a","labels":{"owner":"alice"}}}"#,
        );
        h.add_object(
            cluster::core("namespaces"),
            None,
            "loose",
            &[],
            r#"{"metadata":{"name":"loose"}}"#,
        );
        h
    }

    #[test]
    fn a_pod_with_an_owner_is_allowed_untouched() {
        let mut h = harness();
        let r = create_request(
            "Pod",
            "pods",
            Some("loose"),
            r#"{"metadata":{"labels":{"owner":"bob"}}}"#,
        );
        assert_eq!(h.mutate(&r).expect("mutate"), allow());
        assert_eq!(h.validate(&r).expect("validate"), allow());
    }

    #[test]
    fn the_namespace_owner_is_patched_in() {
        let mut h = harness();
        let r = create_request(
            "Pod",
            "pods",
            Some("team-a"),
            r#"{"metadata":{"name":"p"}}"#,
        );
        let m = h.mutate(&r).expect("mutate");
        assert!(m.allowed);
        assert_eq!(
            m.patch.as_deref(),
            Some(r#"[{"op":"add","path":"/metadata/labels","value":{"owner":"alice"}}]"#)
        );
        assert!(h.logs().iter().any(|(_, msg)| msg.contains("owner alice")));

        let r = create_request(
            "Pod",
            "pods",
            Some("team-a"),
            r#"{"metadata":{"labels":{"app":"web"}}}"#,
        );
        let m = h.mutate(&r).expect("mutate");
        assert_eq!(
            m.patch.as_deref(),
            Some(r#"[{"op":"add","path":"/metadata/labels/owner","value":"alice"}]"#)
        );
    }

    #[test]
    fn a_pod_without_an_owner_is_denied() {
        let mut h = harness();
        let r = create_request(
            "Pod",
            "pods",
            Some("loose"),
            r#"{"metadata":{"labels":{"owner":""}}}"#,
        );
        assert!(h.mutate(&r).expect("mutate").patch.is_none());
        let v = h.validate(&r).expect("validate");
        assert!(!v.allowed);
        assert!(v.message.unwrap_or_default().contains("\"owner\" label"));
    }

    #[test]
    fn other_resources_and_deletes_are_not_checked() {
        let mut h = harness();
        let r = create_request("ConfigMap", "configmaps", Some("loose"), "{}");
        assert!(h.validate(&r).expect("validate").allowed);
        let mut d = create_request("Pod", "pods", Some("loose"), "{}");
        d.operation = Operation::Delete;
        d.object = None;
        assert!(h.validate(&d).expect("validate").allowed);
    }

    #[test]
    fn options_are_checked() {
        assert!(AdmissionHarness::<RequireOwner>::new(r#"{"label":""}"#).is_err());
        assert!(AdmissionHarness::<RequireOwner>::new(r#"{"lable":"x"}"#).is_err());
        let mut h =
            AdmissionHarness::<RequireOwner>::new(r#"{"label":"team","resources":["configmaps"]}"#)
                .expect("configure");
        let r = create_request(
            "ConfigMap",
            "configmaps",
            Some("x"),
            r#"{"metadata":{"labels":{"owner":"a"}}}"#,
        );
        assert!(!h.validate(&r).expect("validate").allowed);
    }
}
