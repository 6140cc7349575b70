//! Network backends: the [`NetworkBackend`] trait and the export glue.

use crate::{
    AttachRequest, AttachResult, AttachedPod, DetachRequest, ErrorKind, NodeNetworkInfo,
    PluginError, plugin_error,
};

/// A network backend: decides the pod network's topology and builds it through
/// [`net`](crate::net), the only access to the node it has.
///
/// After `configure` the host calls [`node_added`](Self::node_added) for every node (the local
/// one first), [`restore_pod`](Self::restore_pod) for every pod already attached, then node
/// events and pod calls as they come, one at a time. Every call must be idempotent: the host
/// retries failures and may repeat calls after a restart.
///
/// ```no_run
/// use keelson_plugin_sdk::*;
///
/// /// Gives each pod a loopback interface only.
/// struct LoopbackOnly;
///
/// impl NetworkBackend for LoopbackOnly {
///     const NAME: &'static str = "loopback-only";
///
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(LoopbackOnly)
///     }
///
///     fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError> {
///         let pod = Netns::Pod(request.pod_uid.clone());
///         net::set_link_up(&pod, "lo", true).map_err(net::to_plugin_error)?;
///         Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None })
///     }
///
///     fn detach_pod(&mut self, _request: &DetachRequest) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// export_network_backend!(LoopbackOnly);
/// # fn main() {}
/// ```
pub trait NetworkBackend: Sized + 'static {
    /// The plugin's name, short and kebab-case (`bridge`, `vxlan`).
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl NetworkBackend for P {
    /// const NAME: &'static str = "bridge";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// assert_eq!(P::NAME, "bridge");
    /// ```
    const NAME: &'static str;

    /// Builds the backend from its options (JSON text, `{}` when none were given).
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// fn configure(options: &str) -> Result<Self, PluginError> {
    ///     if options.trim() == "{}" { Ok(P) } else {
    ///         Err(plugin_error(ErrorKind::InvalidConfig, "this backend takes no options"))
    ///     }
    /// }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// ```
    fn configure(options: &str) -> Result<Self, PluginError>;

    /// A node joined, or this instance learns of it at start. Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { peers: Vec<String> }
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { peers: vec![] }) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) }
    /// fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
    ///     if !node.is_local { self.peers.push(node.name.clone()); }
    ///     Ok(())
    /// }
    /// # }
    /// ```
    fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        let _ = node;
        Ok(())
    }

    /// A node's network information changed. Default: treated as [`node_added`](Self::node_added).
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) }
    /// fn node_updated(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
    ///     self.node_added(node)
    /// }
    /// # }
    /// ```
    fn node_updated(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        self.node_added(node)
    }

    /// A node left; `node` is its last known record. Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { peers: Vec<String> }
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { peers: vec![] }) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) }
    /// fn node_removed(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
    ///     self.peers.retain(|p| *p != node.name);
    ///     Ok(())
    /// }
    /// # }
    /// ```
    fn node_removed(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        let _ = node;
        Ok(())
    }

    /// A pod attached before this instance started, so the backend can rebuild its address
    /// allocations. Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { pods: usize }
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { pods: 0 }) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) }
    /// fn restore_pod(&mut self, _pod: &AttachedPod) -> Result<(), PluginError> {
    ///     self.pods += 1;
    ///     Ok(())
    /// }
    /// # }
    /// ```
    fn restore_pod(&mut self, pod: &AttachedPod) -> Result<(), PluginError> {
        let _ = pod;
        Ok(())
    }

    /// Connects a pod sandbox: creates its interface, addresses and routes. Called again for
    /// the same sandbox, it must give the same result.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) }
    /// fn attach_pod(&mut self, _request: &AttachRequest) -> Result<AttachResult, PluginError> {
    ///     Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: Some(1500) })
    /// }
    /// # }
    /// ```
    fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError>;

    /// Disconnects a pod sandbox and releases its addresses; missing pieces are not an error.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { unimplemented!() }
    /// fn detach_pod(&mut self, request: &DetachRequest) -> Result<(), PluginError> {
    ///     match net::delete_link(&Netns::Host, &format!("veth{}", &request.pod_uid[..8])) {
    ///         Ok(()) | Err(net::NetError::NotFound) => Ok(()),
    ///         Err(e) => Err(net::to_plugin_error(e)),
    ///     }
    /// }
    /// # }
    /// ```
    fn detach_pod(&mut self, request: &DetachRequest) -> Result<(), PluginError>;
}

/// The backend's name, for the native manifest.
pub fn name_of<T: NetworkBackend>() -> &'static str {
    T::NAME
}

/// One plugin instance: the backend once configured.
pub(crate) struct Runtime<T> {
    backend: Option<T>,
}

impl<T> Default for Runtime<T> {
    fn default() -> Self {
        Runtime { backend: None }
    }
}

impl<T: NetworkBackend> Runtime<T> {
    pub(crate) fn configure(&mut self, options: &str) -> Result<(), PluginError> {
        self.backend = Some(T::configure(options)?);
        Ok(())
    }

    pub(crate) fn backend(&mut self) -> Result<&mut T, PluginError> {
        self.backend
            .as_mut()
            .ok_or_else(|| plugin_error(ErrorKind::Internal, "called before configure succeeded"))
    }
}

/// What the Wasm `Guest` impls the export macro generates call.
pub mod wasm {
    use super::{NetworkBackend, Runtime};
    use crate::host::wasm_state;
    use crate::{
        AttachRequest, AttachResult, AttachedPod, DetachRequest, NodeNetworkInfo, PluginError,
    };

    /// `lifecycle.name`.
    pub fn name<T: NetworkBackend>() -> String {
        T::NAME.to_string()
    }
    /// `lifecycle.configure`.
    pub fn configure<T: NetworkBackend>(options: String) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.configure(&options))
    }
    /// `backend.node-added`.
    pub fn node_added<T: NetworkBackend>(node: NodeNetworkInfo) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.node_added(&node))
    }
    /// `backend.node-updated`.
    pub fn node_updated<T: NetworkBackend>(node: NodeNetworkInfo) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.node_updated(&node))
    }
    /// `backend.node-removed`.
    pub fn node_removed<T: NetworkBackend>(node: NodeNetworkInfo) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.node_removed(&node))
    }
    /// `backend.restore-pod`.
    pub fn restore_pod<T: NetworkBackend>(pod: AttachedPod) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.restore_pod(&pod))
    }
    /// `backend.attach-pod`.
    pub fn attach_pod<T: NetworkBackend>(
        request: AttachRequest,
    ) -> Result<AttachResult, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.attach_pod(&request))
    }
    /// `backend.detach-pod`.
    pub fn detach_pod<T: NetworkBackend>(request: DetachRequest) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.backend()?.detach_pod(&request))
    }
}

/// What the native `extern "C"` functions the export macro generates call.
#[cfg(not(target_arch = "wasm32"))]
#[allow(unsafe_code)]
pub mod native {
    use keelson_plugin_abi::{lifecycle, network as f};

    use super::{NetworkBackend, Runtime};
    use crate::native::{Dispatch, decode, encode};
    use crate::{AttachRequest, AttachedPod, DetachRequest, NodeNetworkInfo};

    impl<T: NetworkBackend> crate::native::Runtime for Runtime<T> {
        fn dispatch(
            &mut self,
            _exports: &[&str],
            func: u32,
            input: &[u8],
        ) -> Result<Vec<u8>, Dispatch> {
            match func {
                lifecycle::NAME => encode(T::NAME),
                lifecycle::CONFIGURE => {
                    let (options,): (String,) = decode(input)?;
                    encode(&self.configure(&options))
                }
                f::NODE_ADDED => {
                    let (node,): (NodeNetworkInfo,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.node_added(&node)))
                }
                f::NODE_UPDATED => {
                    let (node,): (NodeNetworkInfo,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.node_updated(&node)))
                }
                f::NODE_REMOVED => {
                    let (node,): (NodeNetworkInfo,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.node_removed(&node)))
                }
                f::RESTORE_POD => {
                    let (pod,): (AttachedPod,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.restore_pod(&pod)))
                }
                f::ATTACH_POD => {
                    let (request,): (AttachRequest,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.attach_pod(&request)))
                }
                f::DETACH_POD => {
                    let (request,): (DetachRequest,) = decode(input)?;
                    encode(&self.backend().and_then(|b| b.detach_pod(&request)))
                }
                _ => Err(Dispatch::Unknown),
            }
        }
    }

    crate::native::entry_points!(NetworkBackend);

    /// What a network backend's native manifest lists: the world's required exports.
    const EXPORTS: &[&str] = &["lifecycle", "backend"];

    // The built-in entry points: the export macro's `extern "C"` functions, made generic
    // instead of `#[no_mangle]`, so a daemon can link any number of backends.

    extern "C" fn builtin_create<T: NetworkBackend>(
        host: *const keelson_plugin_abi::HostVtable,
    ) -> *mut std::ffi::c_void {
        // SAFETY: the host passes a vtable that outlives the instance, as for a library.
        unsafe { create::<T>(host) }
    }

    extern "C" fn builtin_call<T: NetworkBackend>(
        instance: *mut std::ffi::c_void,
        func: u32,
        input: keelson_plugin_abi::Bytes,
        output: *mut keelson_plugin_abi::OwnedBuf,
    ) -> u32 {
        // SAFETY: the host passes an instance `builtin_create::<T>` made, input bytes valid
        // for the call and a writable output buffer, as for a library.
        unsafe { call::<T>(EXPORTS, instance, func, input, output) }
    }

    extern "C" fn builtin_destroy<T: NetworkBackend>(instance: *mut std::ffi::c_void) {
        // SAFETY: the host passes an instance `builtin_create::<T>` made, once.
        unsafe { destroy::<T>(instance) }
    }

    /// The backend `T` as a plugin linked into the daemon's binary.
    pub fn builtin<T: NetworkBackend>() -> keelson_plugin_abi::Builtin {
        keelson_plugin_abi::Builtin {
            manifest: crate::native::static_manifest::<T>(|| {
                crate::native::manifest("network-backend", T::NAME, EXPORTS)
            }),
            vtable: const {
                &keelson_plugin_abi::PluginVtable {
                    abi_version: keelson_plugin_abi::ABI_VERSION,
                    create: builtin_create::<T>,
                    call: builtin_call::<T>,
                    free_buf: crate::native::free_buf,
                    destroy: builtin_destroy::<T>,
                }
            },
        }
    }
}
