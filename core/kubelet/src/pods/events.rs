//! Events the kubelet records about pods and their containers, with the reasons Kubernetes'
//! kubelet uses (`Pulling`, `Pulled`, `Created`, `Started`, `Killing`, `Unhealthy`,
//! `BackOff`, `Failed`, `FailedMount`, ...).

use k8s_openapi::api::core::v1::Pod;
use keelson_client::events::{EventRecorder, EventType, reference};

/// Records events as component `kubelet` from this node.
#[derive(Debug, Clone)]
pub struct PodEvents {
    recorder: EventRecorder,
}

impl PodEvents {
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Self {
            recorder: EventRecorder::new(client, "kubelet", node_name),
        }
    }

    /// An event about the pod as a whole.
    pub fn pod(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        self.recorder.record(reference(pod), kind, reason, message);
    }

    /// An event about one of the pod's containers (`fieldPath: spec.containers{name}`, or
    /// `spec.initContainers{name}` for an init container).
    pub fn container(
        &self,
        pod: &Pod,
        container: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let mut object = reference(pod);
        let init = pod.spec.as_ref().is_some_and(|s| {
            s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
        });
        let list = if init { "initContainers" } else { "containers" };
        object.field_path = Some(format!("spec.{list}{{{container}}}"));
        self.recorder.record(object, kind, reason, message);
    }
}
