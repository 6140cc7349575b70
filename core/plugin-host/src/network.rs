//! The typed handle on a network-backend plugin, Wasm or native.

use std::collections::BTreeMap;
use std::time::Instant;

use keelson_plugin_abi::network as f;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::bindings::exports::keelson::plugin::{backend, lifecycle};
use crate::bindings::keelson::plugin::types::PluginError;
use crate::format::PluginFormat;
use crate::instance::{Core, WasmExports};
use crate::metrics::PluginMetrics;
use crate::state::StoreState;
use crate::{Error, FailurePolicy, Result};

pub use crate::bindings::keelson::plugin::network_types::{
    AddressFamily, AttachRequest, AttachResult, AttachedPod, DetachRequest, IpAddress, IpPrefix,
    MacAddress, Netns, NodeAddress, NodeAddressKind, NodeNetworkInfo, PodAddress, Route,
};

pub(crate) struct Indices {
    lifecycle: lifecycle::GuestIndices,
    backend: backend::GuestIndices,
}

pub(crate) struct Exports {
    lifecycle: lifecycle::Guest,
    backend: backend::Guest,
}

impl WasmExports for Exports {
    type Indices = Indices;

    fn indices(plugin: &str, pre: &InstancePre<StoreState>) -> Result<Indices> {
        let missing = |interface| Error::MissingExport {
            plugin: plugin.to_string(),
            interface,
        };
        Ok(Indices {
            lifecycle: lifecycle::GuestIndices::new(pre)
                .map_err(|_| missing("keelson:plugin/lifecycle@0.1.0"))?,
            backend: backend::GuestIndices::new(pre)
                .map_err(|_| missing("keelson:plugin/backend@0.1.0"))?,
        })
    }

    fn load(
        i: &Indices,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self> {
        Ok(Exports {
            lifecycle: i.lifecycle.load(&mut *store, instance)?,
            backend: i.backend.load(&mut *store, instance)?,
        })
    }

    fn lifecycle(&self) -> &lifecycle::Guest {
        &self.lifecycle
    }
}

/// A network-backend plugin: a Wasm component or a native library and, once configured, one
/// live instance at a time.
///
/// The handle remembers the nodes it was told about and the pods attached through it (or
/// restored), so that after a trap, a missed deadline or a panic a fresh instance is
/// configured and replayed (`node-added` for every node, the local one first, then
/// `restore-pod` for every attached pod) before the next call, as after a daemon restart.
///
/// The failure policy does not apply: the kubelet retries failed network calls with backoff.
pub struct NetworkPlugin {
    core: Core<Exports>,
    nodes: BTreeMap<String, NodeNetworkInfo>,
    /// Attached pods by sandbox id.
    pods: BTreeMap<String, AttachedPod>,
}

type PluginResult<T> = std::result::Result<T, PluginError>;

impl NetworkPlugin {
    pub(crate) fn new(core: Core<Exports>) -> Self {
        NetworkPlugin {
            core,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
        }
    }

    /// The plugin's name as given to the host.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Whether the plugin runs as a Wasm component or a native library.
    pub fn format(&self) -> PluginFormat {
        self.core.format()
    }

    /// The plugin's failure policy (kept for uniformity; network calls are retried instead).
    pub fn failure_policy(&self) -> FailurePolicy {
        self.core.failure_policy
    }

    /// A snapshot of the plugin's metrics.
    pub fn metrics(&self) -> PluginMetrics {
        self.core.metrics.clone()
    }

    /// The name the plugin reports for itself (`lifecycle.name`). Works before `configure`,
    /// on a throwaway instance.
    pub fn reported_name(&mut self) -> Result<String> {
        self.counted(|this| {
            if this.core.options.is_none() && !this.core.is_live() {
                this.core.instantiate()?;
                let r = this.core.name_call();
                this.core.discard();
                return r;
            }
            this.ensure_live()?;
            this.core.name_call()
        })
    }

    /// Configures the plugin with `options` (JSON text), on a fresh instance, and replays the
    /// nodes and pods known so far. If the plugin rejects the options, later calls fail with
    /// [`Error::NotConfigured`] until `configure` succeeds.
    pub fn configure(&mut self, options: &str) -> Result<()> {
        self.core.discard();
        self.core.options = Some(options.to_string());
        let r = self.counted(|this| this.ensure_live());
        if let Err(Error::Plugin { .. }) = &r {
            self.core.options = None;
        }
        r
    }

    /// `node-added`: a node joined, or this instance learns of it at start.
    pub fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<()> {
        self.nodes.insert(node.name.clone(), node.clone());
        self.unit("node-added", f::NODE_ADDED, node, |x, s| {
            x.backend.call_node_added(s, node)
        })
    }

    /// `node-updated`: a node's network information changed.
    pub fn node_updated(&mut self, node: &NodeNetworkInfo) -> Result<()> {
        self.nodes.insert(node.name.clone(), node.clone());
        self.unit("node-updated", f::NODE_UPDATED, node, |x, s| {
            x.backend.call_node_updated(s, node)
        })
    }

    /// `node-removed`: a node left; `node` is its last known record.
    pub fn node_removed(&mut self, node: &NodeNetworkInfo) -> Result<()> {
        self.nodes.remove(&node.name);
        self.unit("node-removed", f::NODE_REMOVED, node, |x, s| {
            x.backend.call_node_removed(s, node)
        })
    }

    /// `restore-pod`: a pod attached before this instance started.
    pub fn restore_pod(&mut self, pod: &AttachedPod) -> Result<()> {
        self.pods.insert(pod.sandbox_id.clone(), pod.clone());
        self.unit("restore-pod", f::RESTORE_POD, pod, |x, s| {
            x.backend.call_restore_pod(s, pod)
        })
    }

    /// `attach-pod`: connects a pod sandbox.
    pub fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult> {
        let result = self.counted(|this| {
            this.ensure_live()?;
            let r: PluginResult<AttachResult> =
                this.core
                    .call("attach-pod", f::ATTACH_POD, &(request,), |x, s| {
                        x.backend.call_attach_pod(s, request)
                    })?;
            r.map_err(|e| this.core.plugin_error("attach-pod", e))
        })?;
        self.pods.insert(
            request.sandbox_id.clone(),
            AttachedPod {
                pod_namespace: request.pod_namespace.clone(),
                pod_name: request.pod_name.clone(),
                pod_uid: request.pod_uid.clone(),
                sandbox_id: request.sandbox_id.clone(),
                interface_name: request.interface_name.clone(),
                addresses: result.addresses.clone(),
            },
        );
        Ok(result)
    }

    /// `detach-pod`: disconnects a pod sandbox.
    pub fn detach_pod(&mut self, request: &DetachRequest) -> Result<()> {
        self.unit("detach-pod", f::DETACH_POD, request, |x, s| {
            x.backend.call_detach_pod(s, request)
        })?;
        self.pods.remove(&request.sandbox_id);
        Ok(())
    }

    /// Runs one counted call of a backend function returning `result<_, plugin-error>`.
    fn unit<A: serde::Serialize>(
        &mut self,
        call: &'static str,
        func: u32,
        arg: &A,
        wasm: impl FnOnce(&Exports, &mut Store<StoreState>) -> wasmtime::Result<PluginResult<()>>,
    ) -> Result<()> {
        self.counted(|this| {
            this.ensure_live()?;
            let r: PluginResult<()> = this.core.call(call, func, &(arg,), wasm)?;
            r.map_err(|e| this.core.plugin_error(call, e))
        })
    }

    fn counted<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let r = f(self);
        self.core.record(start, &r);
        r
    }

    /// Creates and configures an instance if there is none, replaying nodes (the local one
    /// first) and attached pods. A plugin error during the replay is logged, not returned: the
    /// call that needed the instance is not the one that failed.
    fn ensure_live(&mut self) -> Result<()> {
        if self.core.is_live() {
            return Ok(());
        }
        self.core.start()?;
        let mut nodes: Vec<&NodeNetworkInfo> = self.nodes.values().collect();
        nodes.sort_by_key(|n| !n.is_local);
        for node in nodes {
            let r: PluginResult<()> =
                self.core
                    .call("node-added", f::NODE_ADDED, &(node,), |x, s| {
                        x.backend.call_node_added(s, node)
                    })?;
            if let Err(e) = r {
                tracing::warn!(plugin = %self.core.name, node = %node.name, error = %e.message, "replaying node-added into a fresh instance failed");
            }
        }
        for pod in self.pods.values() {
            let r: PluginResult<()> =
                self.core
                    .call("restore-pod", f::RESTORE_POD, &(pod,), |x, s| {
                        x.backend.call_restore_pod(s, pod)
                    })?;
            if let Err(e) = r {
                tracing::warn!(plugin = %self.core.name, pod = %pod.pod_uid, error = %e.message, "replaying restore-pod into a fresh instance failed");
            }
        }
        Ok(())
    }
}
