//! The C ABI between Keelson's native plugin loader and plugins built natively with the SDK.
//!
//! A native plugin is a shared library exporting three symbols:
//!
//! - [`SYMBOL_ABI_VERSION`]: `extern "C" fn() -> u32`, which must return [`ABI_VERSION`]. The
//!   loader calls it before touching anything else and refuses the library on a mismatch.
//! - [`SYMBOL_MANIFEST`]: `extern "C" fn() -> Bytes`, a static UTF-8 JSON [`manifest`](crate#manifest)
//!   that says which contract, kind and exports the library implements.
//! - [`SYMBOL_VTABLE`]: `extern "C" fn() -> *const PluginVtable`, the functions of the plugin.
//!
//! Every call crosses as one function id (the constants of [`scheduler`], [`admission`],
//! [`network`] and [`imports`]) and one byte string: the call's arguments as a tuple, encoded
//! with `postcard` from the very types both sides generate from `wit/`; the result comes back
//! the same way. One generic entry point per direction keeps the ABI small and lets both sides
//! share the dispatch code with the Wasm bindings, so a plugin behaves the same built either
//! way.
//!
//! # Manifest
//!
//! ```json
//! {"contract":"keelson:plugin@0.1.0","kind":"scheduler-policy","name":"zone-spread",
//!  "exports":["lifecycle","scheduler","score"]}
//! ```
//!
//! # Ownership
//!
//! Input bytes are borrowed for the duration of the call. Output bytes are allocated by the
//! callee, written to an [`OwnedBuf`], and released by the caller with the callee's `free_buf`,
//! so each side frees only what its own allocator made.

use std::ffi::c_void;

/// The version of this ABI. Bumped on any change to the symbols, the vtables, the function ids
/// or the encoding; the loader refuses a library that reports another.
pub const ABI_VERSION: u32 = 1;

/// The WIT contract this ABI carries.
pub const CONTRACT: &str = "keelson:plugin@0.1.0";

/// The symbol returning [`ABI_VERSION`], NUL-terminated for `dlsym`.
pub const SYMBOL_ABI_VERSION: &[u8] = b"keelson_plugin_abi_version\0";
/// The symbol returning the manifest, NUL-terminated for `dlsym`.
pub const SYMBOL_MANIFEST: &[u8] = b"keelson_plugin_manifest\0";
/// The symbol returning the [`PluginVtable`], NUL-terminated for `dlsym`.
pub const SYMBOL_VTABLE: &[u8] = b"keelson_plugin_vtable\0";

/// A borrowed byte string.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Bytes {
    /// The first byte; may dangle when `len` is 0.
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl Bytes {
    /// Borrows `bytes` for a call.
    pub fn from_slice(bytes: &[u8]) -> Bytes {
        Bytes {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// A byte string allocated by the callee; the caller gives it back to the callee's `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct OwnedBuf {
    /// The first byte; null when nothing was written.
    pub ptr: *mut u8,
    /// The number of bytes.
    pub len: usize,
    /// The allocation's capacity, for the callee's allocator.
    pub cap: usize,
}

impl OwnedBuf {
    /// A buffer holding nothing, for the callee to fill.
    pub const EMPTY: OwnedBuf = OwnedBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };
}

/// The outcome of a call across the ABI.
pub mod status {
    /// The call returned; the output holds the encoded result.
    pub const OK: u32 = 0;
    /// The callee panicked; the output holds the panic message as UTF-8. The instance must not
    /// be used again.
    pub const PANIC: u32 = 1;
    /// The input could not be decoded; the output holds a UTF-8 message.
    pub const BAD_INPUT: u32 = 2;
    /// The function id is not one the callee implements.
    pub const UNKNOWN_FUNCTION: u32 = 3;
}

/// The functions a native plugin provides, returned by [`SYMBOL_VTABLE`].
#[repr(C)]
pub struct PluginVtable {
    /// [`ABI_VERSION`] again, so a vtable is never read with the wrong layout.
    pub abi_version: u32,
    /// Creates an instance that calls back into `host` (which outlives the instance). Returns
    /// null if the instance could not be created.
    pub create: extern "C" fn(host: *const HostVtable) -> *mut c_void,
    /// Runs function `func` on `instance` with encoded `input`, writing to `output`; returns a
    /// [`status`] code.
    pub call:
        extern "C" fn(instance: *mut c_void, func: u32, input: Bytes, output: *mut OwnedBuf) -> u32,
    /// Releases a buffer this plugin returned.
    pub free_buf: extern "C" fn(buf: OwnedBuf),
    /// Destroys an instance. Never fails; a panic while dropping is caught and ignored.
    pub destroy: extern "C" fn(instance: *mut c_void),
}

/// A plugin linked into the daemon's own binary: what a native library's [`SYMBOL_MANIFEST`]
/// and [`SYMBOL_VTABLE`] would return, without a library file or symbol lookups.
///
/// The SDK makes one from a plugin type (`keelson_plugin_sdk::builtin::network::<T>()`) and the
/// host runs it through exactly the path it runs a native library through: the same vtable,
/// the same encoding, panics caught at the same boundary. A plugin therefore behaves the same
/// built into the daemon, as a native library, or as a Wasm component.
#[derive(Clone, Copy)]
pub struct Builtin {
    /// The plugin's [manifest](crate#manifest) JSON.
    pub manifest: &'static str,
    /// The plugin's functions; `abi_version` is [`ABI_VERSION`] of the crate the plugin was
    /// built with.
    pub vtable: &'static PluginVtable,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin")
            .field("manifest", &self.manifest)
            .field("abi_version", &self.vtable.abi_version)
            .finish_non_exhaustive()
    }
}

/// The functions the host gives each native instance: its imports (logging, cluster lookups,
/// network operations), behind one entry point.
#[repr(C)]
pub struct HostVtable {
    /// The host's context for this instance, passed back on every call.
    pub ctx: *mut c_void,
    /// Runs import `func` (an id of [`imports`]) with encoded `input`, writing to `output`;
    /// returns a [`status`] code.
    pub call:
        extern "C" fn(ctx: *mut c_void, func: u32, input: Bytes, output: *mut OwnedBuf) -> u32,
    /// Releases a buffer the host returned.
    pub free_buf: extern "C" fn(buf: OwnedBuf),
}

/// Function ids of `lifecycle`, shared by every kind.
pub mod lifecycle {
    /// `name() -> string`.
    pub const NAME: u32 = 1;
    /// `configure(options: string) -> result<_, plugin-error>`.
    pub const CONFIGURE: u32 = 2;
}

/// Function ids of the scheduler-policy world's exports.
pub mod scheduler {
    /// `node-added(index, node)`.
    pub const NODE_ADDED: u32 = 10;
    /// `node-updated(index, node)`.
    pub const NODE_UPDATED: u32 = 11;
    /// `node-removed(index)`.
    pub const NODE_REMOVED: u32 = 12;
    /// `end-cycle(cycle, outcome)`.
    pub const END_CYCLE: u32 = 13;
    /// `pre-filter(cycle, pod)`.
    pub const PRE_FILTER: u32 = 20;
    /// `filter(cycle, pod, candidates)`.
    pub const FILTER: u32 = 21;
    /// `reasons(start)`.
    pub const REASONS: u32 = 22;
    /// `score(cycle, pod, candidates)`.
    pub const SCORE: u32 = 23;
    /// `normalize-score(cycle, scores)`.
    pub const NORMALIZE_SCORE: u32 = 24;
}

/// Function ids of the admission-check world's exports.
pub mod admission {
    /// `validate(request)`.
    pub const VALIDATE: u32 = 30;
    /// `mutate(request)`.
    pub const MUTATE: u32 = 31;
}

/// Function ids of the network-backend world's exports.
pub mod network {
    /// `node-added(node)`.
    pub const NODE_ADDED: u32 = 40;
    /// `node-updated(node)`.
    pub const NODE_UPDATED: u32 = 41;
    /// `node-removed(node)`.
    pub const NODE_REMOVED: u32 = 42;
    /// `restore-pod(pod)`.
    pub const RESTORE_POD: u32 = 43;
    /// `attach-pod(request)`.
    pub const ATTACH_POD: u32 = 44;
    /// `detach-pod(request)`.
    pub const DETACH_POD: u32 = 45;
}

/// Function ids of host imports, called through [`HostVtable::call`]. Each takes its WIT
/// arguments as a tuple and returns its WIT result.
pub mod imports {
    /// `log.enabled(level)`.
    pub const LOG_ENABLED: u32 = 100;
    /// `log.log(level, message)`.
    pub const LOG: u32 = 101;
    /// `cluster.get-object(resource, namespace, name)`.
    pub const CLUSTER_GET_OBJECT: u32 = 110;
    /// `cluster.list-objects(resource, namespace, selector)`.
    pub const CLUSTER_LIST_OBJECTS: u32 = 111;
    /// The first id of `host-net`: its functions are numbered from here in the order
    /// `wit/network.wit` declares them (see [`HOST_NET`]).
    pub const HOST_NET_BASE: u32 = 200;

    /// The functions of `host-net`, in declaration order; function `HOST_NET[i]` has id
    /// `HOST_NET_BASE + i`. New functions are only ever appended (as `wit/network.wit` appends
    /// them), so the id of a function never changes and a library built before an addition
    /// keeps working: it simply never calls the new ids.
    pub const HOST_NET: &[&str] = &[
        "create-link",
        "delete-link",
        "get-link",
        "list-links",
        "move-link",
        "set-link-up",
        "set-link-mtu",
        "set-link-master",
        "add-address",
        "del-address",
        "list-addresses",
        "add-route",
        "replace-route",
        "del-route",
        "list-routes",
        "set-neighbour",
        "del-neighbour",
        "add-fdb",
        "del-fdb",
        "set-forwarding",
        "ovs-add-bridge",
        "ovs-del-bridge",
        "ovs-add-port",
        "ovs-del-port",
        "ovs-add-flows",
        "ovs-del-flows",
        "node-pod-cidrs",
        "node-addresses",
        "default-interface",
        "set-masquerade",
        "clear-masquerade",
        "set-link-hairpin",
    ];

    /// The id of the `host-net` function named `name`, for constants: naming a function that
    /// does not exist fails the build.
    ///
    /// ```
    /// use keelson_plugin_abi::imports::{host_net, HOST_NET_BASE};
    /// const SET_LINK_UP: u32 = host_net("set-link-up");
    /// assert_eq!(SET_LINK_UP, HOST_NET_BASE + 5);
    /// ```
    pub const fn host_net(name: &str) -> u32 {
        let mut i = 0;
        while i < HOST_NET.len() {
            let (a, b) = (HOST_NET[i].as_bytes(), name.as_bytes());
            if a.len() == b.len() {
                let mut j = 0;
                while j < a.len() && a[j] == b[j] {
                    j += 1;
                }
                if j == a.len() {
                    return HOST_NET_BASE + i as u32;
                }
            }
            i += 1;
        }
        panic!("no such host-net function")
    }

    /// The id of the `host-net` function named `name`.
    ///
    /// ```
    /// use keelson_plugin_abi::imports::{host_net_id, HOST_NET_BASE};
    /// assert_eq!(host_net_id("create-link"), Some(HOST_NET_BASE));
    /// assert_eq!(host_net_id("open-file"), None);
    /// ```
    pub fn host_net_id(name: &str) -> Option<u32> {
        HOST_NET
            .iter()
            .position(|n| *n == name)
            .map(|i| HOST_NET_BASE + i as u32)
    }
}

/// The signature of [`SYMBOL_ABI_VERSION`].
pub type AbiVersionFn = extern "C" fn() -> u32;
/// The signature of [`SYMBOL_MANIFEST`].
pub type ManifestFn = extern "C" fn() -> Bytes;
/// The signature of [`SYMBOL_VTABLE`].
pub type VtableFn = extern "C" fn() -> *const PluginVtable;
