//! Read-only lookups of cluster objects for admission checks, served from the host's watch
//! cache (microseconds per lookup, but possibly a moment behind the latest write).
//!
//! Objects come back as JSON text. The operator grants each check the resources it may read;
//! others fail with [`LookupError::Forbidden`].

pub use crate::bindings::keelson::plugin::cluster::LookupError;
use crate::{GroupVersionResource, LabelSelector};

/// The core-group resource `resource` at version `v1`, such as `pods` or `namespaces`.
///
/// ```
/// let gvr = keelson_plugin_sdk::cluster::core("namespaces");
/// assert_eq!((gvr.group.as_str(), gvr.version.as_str()), ("", "v1"));
/// ```
pub fn core(resource: &str) -> GroupVersionResource {
    GroupVersionResource {
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
    }
}

/// Gets one object as JSON, or `None` if it does not exist. `namespace` is set for namespaced
/// resources and `None` for cluster-scoped ones.
///
/// ```no_run
/// use keelson_plugin_sdk::cluster;
/// let ns = cluster::get_object(&cluster::core("namespaces"), None, "default");
/// # let _ = ns;
/// ```
pub fn get_object(
    resource: &GroupVersionResource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<String>, LookupError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::cluster::get_object(resource, namespace, name)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            keelson_plugin_abi::imports::CLUSTER_GET_OBJECT,
            &(resource, namespace, name),
        )
    }
}

/// Lists the objects of `resource` whose labels match `selector`, as JSON texts; `namespace`
/// `None` lists across all namespaces.
///
/// ```no_run
/// use keelson_plugin_sdk::{cluster, LabelSelector};
/// let everything = LabelSelector { match_labels: vec![], match_expressions: vec![] };
/// let quotas = cluster::list_objects(&cluster::core("resourcequotas"), Some("default"), &everything);
/// # let _ = quotas;
/// ```
pub fn list_objects(
    resource: &GroupVersionResource,
    namespace: Option<&str>,
    selector: &LabelSelector,
) -> Result<Vec<String>, LookupError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::keelson::plugin::cluster::list_objects(resource, namespace, selector)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::host::native::call_import(
            keelson_plugin_abi::imports::CLUSTER_LIST_OBJECTS,
            &(resource, namespace, selector),
        )
    }
}
