//! {{name}}: a Keelson network backend.
//!
//! It gives each pod only a loopback interface that is up: the smallest backend that does
//! something. Build on it with the operations in `keelson_plugin_sdk::net` (bridges, veth
//! pairs, vxlan, addresses, routes, OVS), and run `cargo test`.

use keelson_plugin_sdk::{
    AttachRequest, AttachResult, DetachRequest, ErrorKind, Level, Netns, NetworkBackend,
    NodeNetworkInfo, PluginError, export_network_backend, log, net, plugin_error,
};

/// The backend.
pub struct Backend;

impl NetworkBackend for Backend {
    const NAME: &'static str = "{{name}}";

    fn configure(options: &str) -> Result<Self, PluginError> {
        if options.trim() != "{}" {
            return Err(plugin_error(ErrorKind::InvalidConfig, "{{name}} takes no options"));
        }
        Ok(Backend)
    }

    fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        log(Level::Info, &format!("node {} joined (local: {})", node.name, node.is_local));
        Ok(())
    }

    fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError> {
        let pod = Netns::Pod(request.pod_uid.clone());
        net::set_link_up(&pod, "lo", true).map_err(net::to_plugin_error)?;
        Ok(AttachResult {
            addresses: Vec::new(),
            routes: Vec::new(),
            mac: None,
            mtu: None,
        })
    }

    fn detach_pod(&mut self, _request: &DetachRequest) -> Result<(), PluginError> {
        // Deleting the pod's namespace removes its loopback: nothing to undo.
        Ok(())
    }
}

export_network_backend!(Backend);

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{attach_request, detach_request, network_node};
    use keelson_plugin_sdk::testing::NetworkHarness;

    use super::*;

    #[test]
    fn attach_sets_the_pod_loopback_up() {
        let mut h = NetworkHarness::<Backend>::new("{}").expect("configure");
        h.node_added(&network_node("node-1", true)).expect("node-added");
        h.attach_pod(&attach_request("web", "uid-1")).expect("attach");
        h.detach_pod(&detach_request("web", "uid-1")).expect("detach");

        let calls = h.net_calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "set-link-up");
        let (netns, link, up): (Netns, String, bool) = calls[0].args().expect("args");
        assert_eq!((netns, link.as_str(), up), (Netns::Pod("uid-1".into()), "lo", true));
    }
}
