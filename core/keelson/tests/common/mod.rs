//! What the kubelet tests share beyond `keelson_testsupport`: the kubelet crate's own view of
//! a test node's containerd (testsupport cannot depend on the kubelet crate, whose tests use
//! it).
#![allow(dead_code)]

use keelson_kubelet::runtime::{PodContainer, Runtime};
use keelson_testsupport::KubeletNode;

/// A current-thread async runtime, and the kubelet's container runtime over `node`'s
/// containerd (in its namespace), to drive with it.
pub fn node_runtime(node: &KubeletNode) -> (tokio::runtime::Runtime, Runtime) {
    let cd = node.containerd();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let runtime = rt.block_on(async {
        let client = keelson_kubelet::Containerd::connect(&cd.socket, &cd.namespace)
            .await
            .expect("connect to the test's containerd");
        Runtime::new(client, node.root.path().join("logs"))
            .await
            .expect("the container runtime")
    });
    (rt, runtime)
}

/// The pod containers containerd holds in the test's namespace.
pub fn pod_containers(node: &KubeletNode) -> Vec<PodContainer> {
    let (rt, runtime) = node_runtime(node);
    rt.block_on(runtime.list_pod_containers())
        .expect("list the pod containers")
}
