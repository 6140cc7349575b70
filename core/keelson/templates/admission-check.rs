//! {{name}}: a Keelson admission check.
//!
//! It denies pods that ask for a host network and gives every new pod a label saying it was
//! checked. Change `validate` and `mutate` to your check, list what you implement in
//! `export_admission_check!`, and run `cargo test`.

use keelson_plugin_sdk::{
    AdmissionCheck, AdmissionRequest, AdmissionResponse, ErrorKind, Operation, PluginError,
    allow, deny, export_admission_check, patch, plugin_error,
};

/// The check.
pub struct Check;

fn is_pod_create(request: &AdmissionRequest) -> bool {
    request.operation == Operation::Create
        && request.resource.group.is_empty()
        && request.resource.resource == "pods"
        && request.sub_resource.is_none()
}

impl AdmissionCheck for Check {
    const NAME: &'static str = "{{name}}";

    fn configure(options: &str) -> Result<Self, PluginError> {
        if options.trim() != "{}" {
            return Err(plugin_error(ErrorKind::InvalidConfig, "{{name}} takes no options"));
        }
        Ok(Check)
    }

    fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        let object = request.object.as_deref().unwrap_or_default();
        // A real check would parse the object (serde_json works in plugins); a substring
        // keeps the template free of dependencies.
        if is_pod_create(request) && object.replace(' ', "").contains("\"hostNetwork\":true") {
            return Ok(deny("pods may not use the host network"));
        }
        Ok(allow())
    }

    fn mutate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        if !is_pod_create(request) {
            return Ok(allow());
        }
        let object = request.object.as_deref().unwrap_or_default();
        let op = if object.contains("\"labels\"") {
            r#"{"op":"add","path":"/metadata/labels/checked-by","value":"{{name}}"}"#
        } else {
            r#"{"op":"add","path":"/metadata/labels","value":{"checked-by":"{{name}}"}}"#
        };
        Ok(patch(format!("[{op}]")))
    }
}

export_admission_check!(Check, exports: [validate, mutate]);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::create_request;
    use keelson_plugin_sdk::testing::AdmissionHarness;

    use super::*;

    #[test]
    fn host_network_pods_are_denied() {
        let mut h = AdmissionHarness::<Check>::new("{}").expect("configure");
        let r = create_request("Pod", "pods", Some("default"), r#"{"spec":{"hostNetwork": true}}"#);
        assert!(!h.validate(&r).expect("validate").allowed);
        let r = create_request("Pod", "pods", Some("default"), r#"{"spec":{}}"#);
        assert!(h.validate(&r).expect("validate").allowed);
    }

    #[test]
    fn new_pods_are_labelled() {
        let mut h = AdmissionHarness::<Check>::new("{}").expect("configure");
        let r = create_request("Pod", "pods", Some("default"), r#"{"metadata":{"name":"p"}}"#);
        let m = h.mutate(&r).expect("mutate");
        assert!(m.allowed);
        assert!(m.patch.expect("a patch").contains("checked-by"));
    }
}
