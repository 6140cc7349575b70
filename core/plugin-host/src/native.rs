//! The native plugin loader: shared libraries with the C ABI of `keelson-plugin-abi`, and
//! plugins linked into the daemon's binary that speak the same ABI ([`builtin`]).
//!
//! This is the only module of the crate with `unsafe` code. What it relies on:
//!
//! - **Trust.** Loading a library runs its initialisers and its code runs in the daemon's
//!   process with the daemon's privileges. Native plugins are for code the operator trusts; the
//!   sandbox is what Wasm components are for.
//! - **The ABI version first.** [`load`] reads `keelson_plugin_abi_version` before any other
//!   symbol and refuses a library that speaks another version, so no layout is ever read with
//!   the wrong assumptions.
//! - **Never unloaded.** Libraries stay mapped for the life of the process, in a registry keyed
//!   by canonical path and content hash, so loading the same file twice reuses it and no code
//!   or vtable pointer can outlive its library.
//! - **No unwinding across the boundary.** The SDK catches panics inside the library and
//!   reports them as a `PANIC` status; the host's import callback catches its own panics the
//!   same way.
//! - **No interruption.** A native call runs to completion on the caller's thread: deadlines
//!   and memory caps apply only to Wasm. Calls that run past the deadline are counted in the
//!   plugin's metrics and logged.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use keelson_plugin_abi::{
    ABI_VERSION, AbiVersionFn, Builtin, Bytes, CONTRACT, HostVtable, ManifestFn, OwnedBuf,
    PluginVtable, SYMBOL_ABI_VERSION, SYMBOL_MANIFEST, SYMBOL_VTABLE, VtableFn, imports, status,
};
use libloading::Library;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::keelson::plugin::cluster::LookupError;
use crate::bindings::keelson::plugin::host_net::{
    FdbEntry, LinkInfo, LinkSpec, Neighbour, NetError, OvsDatapath, OvsPortType,
};
use crate::bindings::keelson::plugin::log::Level;
use crate::bindings::keelson::plugin::network_types::{
    AddressFamily, IpAddress, IpPrefix, Netns, NodeAddress, Route,
};
use crate::bindings::keelson::plugin::types::{GroupVersionResource, LabelSelector};
use crate::format::{PluginKind, contract_version, sha256_hex};
use crate::services::{HostNet, host_net_functions};
use crate::state::{HostImports, LogSink};
use crate::{Error, Result};

/// A native library's manifest (`keelson_plugin_manifest`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Manifest {
    pub(crate) contract: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) exports: Vec<String>,
}

/// A loaded native library: its manifest and its functions.
pub(crate) struct NativeLibrary {
    pub(crate) manifest: Manifest,
    pub(crate) kind: PluginKind,
    vtable: &'static PluginVtable,
    /// Linked into this binary rather than loaded from a file.
    pub(crate) builtin: bool,
}

impl NativeLibrary {
    pub(crate) fn exports(&self, interface: &str) -> bool {
        self.manifest.exports.iter().any(|e| e == interface)
    }
}

struct Registered {
    sha256: String,
    library: Arc<NativeLibrary>,
}

/// Every library this process has loaded, by canonical path. Never shrinks.
static REGISTRY: Mutex<BTreeMap<PathBuf, Registered>> = Mutex::new(BTreeMap::new());

/// Loads (or finds already loaded) the library in `path`, whose contents are `bytes`, checking
/// its ABI version, then its manifest, then its vtable. `plugin` names it in errors.
pub(crate) fn load(plugin: &str, path: &Path, bytes: &[u8]) -> Result<Arc<NativeLibrary>> {
    let canonical = path.canonicalize().map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = sha256_hex(bytes);
    // Held across the load, so two threads loading one file load it once.
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = registry.get(&canonical) {
        if r.sha256 == sha256 {
            return Ok(r.library.clone());
        }
        // The dynamic loader would hand back the library already mapped for this path, so the
        // new contents cannot be loaded in this process.
        return Err(Error::NativeChanged { path: canonical });
    }

    // SAFETY: loading a library runs its initialisers. Native plugins are trusted code by
    // contract (see the module docs and the SDK's documentation); nothing else is assumed here.
    let library = unsafe { Library::new(&canonical) }.map_err(|source| Error::NativeLoad {
        path: canonical.clone(),
        source,
    })?;
    // Never unloaded: code and data of the library may be referenced for the process's life.
    let library: &'static Library = Box::leak(Box::new(library));

    let symbol_name = |s: &'static [u8]| -> &'static str {
        std::str::from_utf8(&s[..s.len() - 1]).unwrap_or("?")
    };
    let missing = |symbol: &'static [u8]| Error::NativeSymbol {
        plugin: plugin.to_string(),
        symbol: symbol_name(symbol),
    };

    // SAFETY: the symbol is the ABI version function, `extern "C" fn() -> u32` in every version
    // of the ABI; it is the only symbol read before the version is known.
    let abi_version: AbiVersionFn = *unsafe { library.get::<AbiVersionFn>(SYMBOL_ABI_VERSION) }
        .map_err(|_| missing(SYMBOL_ABI_VERSION))?;
    let found = abi_version();
    if found != ABI_VERSION {
        return Err(Error::AbiVersion {
            plugin: plugin.to_string(),
            found,
            supported: ABI_VERSION,
        });
    }

    // SAFETY: the library speaks this ABI version, whose manifest symbol has this signature.
    let manifest_fn: ManifestFn = *unsafe { library.get::<ManifestFn>(SYMBOL_MANIFEST) }
        .map_err(|_| missing(SYMBOL_MANIFEST))?;
    let raw = manifest_fn();
    let manifest_bytes: Vec<u8> = if raw.ptr.is_null() || raw.len == 0 {
        Vec::new()
    } else {
        // SAFETY: the ABI says the manifest is `len` bytes at `ptr`, static in the library,
        // which is never unloaded.
        unsafe { std::slice::from_raw_parts(raw.ptr, raw.len) }.to_vec()
    };
    let (manifest, kind) = parse_manifest(plugin, &manifest_bytes)?;

    // SAFETY: as for the manifest: a symbol of this ABI version with this signature.
    let vtable_fn: VtableFn =
        *unsafe { library.get::<VtableFn>(SYMBOL_VTABLE) }.map_err(|_| missing(SYMBOL_VTABLE))?;
    let vtable = vtable_fn();
    if vtable.is_null() {
        return Err(Error::NativeManifest {
            plugin: plugin.to_string(),
            reason: "keelson_plugin_vtable returned null".into(),
        });
    }
    // SAFETY: a non-null pointer to the library's static vtable, which lives as long as the
    // library, that is for the rest of the process.
    let vtable: &'static PluginVtable = unsafe { &*vtable };
    check_vtable(plugin, vtable)?;

    let loaded = Arc::new(NativeLibrary {
        manifest,
        kind,
        vtable,
        builtin: false,
    });
    registry.insert(
        canonical,
        Registered {
            sha256,
            library: loaded.clone(),
        },
    );
    Ok(loaded)
}

/// Checks a plugin linked into this binary as a library's manifest and vtable are checked.
/// Nothing is loaded or registered: the code is the daemon's own.
pub(crate) fn builtin(plugin: &str, builtin: &Builtin) -> Result<Arc<NativeLibrary>> {
    check_vtable(plugin, builtin.vtable)?;
    let (manifest, kind) = parse_manifest(plugin, builtin.manifest.as_bytes())?;
    Ok(Arc::new(NativeLibrary {
        manifest,
        kind,
        vtable: builtin.vtable,
        builtin: true,
    }))
}

/// Parses a manifest and checks its contract and kind.
fn parse_manifest(plugin: &str, bytes: &[u8]) -> Result<(Manifest, PluginKind)> {
    let bad_manifest = |reason: String| Error::NativeManifest {
        plugin: plugin.to_string(),
        reason,
    };
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| bad_manifest(e.to_string()))?;
    if manifest.contract != CONTRACT {
        return Err(Error::ContractVersion {
            plugin: plugin.to_string(),
            found: contract_version(&manifest.contract).to_string(),
            supported: crate::format::CONTRACT_VERSION,
        });
    }
    let kind: PluginKind = manifest.kind.parse().map_err(bad_manifest)?;
    Ok((manifest, kind))
}

/// Refuses a vtable of another ABI version, whose layout cannot be trusted.
fn check_vtable(plugin: &str, vtable: &PluginVtable) -> Result<()> {
    if vtable.abi_version != ABI_VERSION {
        return Err(Error::AbiVersion {
            plugin: plugin.to_string(),
            found: vtable.abi_version,
            supported: ABI_VERSION,
        });
    }
    Ok(())
}

/// How a native call failed.
pub(crate) enum NativeFailure {
    /// The plugin panicked; the instance must not be used again.
    Panic(String),
    /// The plugin could not decode the arguments.
    BadInput(String),
    /// The plugin does not implement the function.
    UnknownFunction,
    /// A status this ABI version does not define.
    Status(u32, String),
}

/// What the host's import callback reaches through `HostVtable::ctx`.
struct HostContext {
    log: RefCell<LogSink>,
    imports: HostImports,
}

/// One instance of a native plugin and the host vtable it calls back into.
pub(crate) struct NativeInstance {
    library: Arc<NativeLibrary>,
    instance: NonNull<c_void>,
    // Boxed so their addresses stay put while the instance holds them; dropped after the
    // instance is destroyed (see `Drop`).
    host: Box<HostVtable>,
    ctx: Box<HostContext>,
}

// SAFETY: an instance is used by one thread at a time (every method takes `&mut self`), and the
// ABI lets an instance move between threads between calls: the SDK keeps per-call state in
// thread-locals only for the duration of a call. The host context is reached only from inside
// a call, on the calling thread.
unsafe impl Send for NativeInstance {}

impl NativeInstance {
    pub(crate) fn new(
        library: Arc<NativeLibrary>,
        plugin: Arc<str>,
        imports: HostImports,
    ) -> std::result::Result<Self, String> {
        let ctx = Box::new(HostContext {
            log: RefCell::new(LogSink::new(plugin)),
            imports,
        });
        let host = Box::new(HostVtable {
            ctx: (&*ctx as *const HostContext).cast_mut().cast(),
            call: host_call,
            free_buf: host_free_buf,
        });
        let instance = (library.vtable.create)(&*host);
        let instance = NonNull::new(instance)
            .ok_or_else(|| "the library's create returned null".to_string())?;
        Ok(NativeInstance {
            library,
            instance,
            host,
            ctx,
        })
    }

    /// Runs function `func` with encoded `input`, returning the encoded result.
    pub(crate) fn call(
        &mut self,
        call: &'static str,
        func: u32,
        input: &[u8],
    ) -> std::result::Result<Vec<u8>, NativeFailure> {
        self.ctx.log.borrow_mut().begin_call(call);
        let vtable = self.library.vtable;
        let mut out = OwnedBuf::EMPTY;
        let code = (vtable.call)(
            self.instance.as_ptr(),
            func,
            Bytes::from_slice(input),
            &mut out,
        );
        let bytes = if out.ptr.is_null() || out.len == 0 {
            Vec::new()
        } else {
            // SAFETY: the plugin wrote `len` initialised bytes at `ptr`, which stay valid until
            // we hand the buffer back to its `free_buf` below.
            unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
        };
        (vtable.free_buf)(out);
        let message = || String::from_utf8_lossy(&bytes).into_owned();
        match code {
            status::OK => Ok(bytes),
            status::PANIC => Err(NativeFailure::Panic(message())),
            status::BAD_INPUT => Err(NativeFailure::BadInput(message())),
            status::UNKNOWN_FUNCTION => Err(NativeFailure::UnknownFunction),
            other => Err(NativeFailure::Status(other, message())),
        }
    }
}

impl Drop for NativeInstance {
    fn drop(&mut self) {
        (self.library.vtable.destroy)(self.instance.as_ptr());
        // `host` and `ctx` drop after this, once nothing can call back through them.
        let _ = (&self.host, &self.ctx);
    }
}

type ImportResult = std::result::Result<Vec<u8>, (u32, String)>;

fn decode<T: DeserializeOwned>(input: &[u8]) -> std::result::Result<T, (u32, String)> {
    postcard::from_bytes(input).map_err(|e| (status::BAD_INPUT, e.to_string()))
}

fn encode<T: Serialize + ?Sized>(value: &T) -> ImportResult {
    postcard::to_allocvec(value).map_err(|e| (status::BAD_INPUT, e.to_string()))
}

impl HostContext {
    fn dispatch(&self, func: u32, input: &[u8]) -> ImportResult {
        let kind = self.imports.kind;
        match func {
            imports::LOG_ENABLED => {
                let (level,): (Level,) = decode(input)?;
                encode(&self.log.borrow().enabled(level))
            }
            imports::LOG => {
                let (level, message): (Level, String) = decode(input)?;
                self.log.borrow_mut().log(level, message);
                encode(&())
            }
            imports::CLUSTER_GET_OBJECT if kind == PluginKind::AdmissionCheck => {
                let (resource, namespace, name): (GroupVersionResource, Option<String>, String) =
                    decode(input)?;
                let r: std::result::Result<Option<String>, LookupError> = self
                    .imports
                    .cluster
                    .get_object(&resource, namespace.as_deref(), &name);
                encode(&r)
            }
            imports::CLUSTER_LIST_OBJECTS if kind == PluginKind::AdmissionCheck => {
                let (resource, namespace, selector): (
                    GroupVersionResource,
                    Option<String>,
                    LabelSelector,
                ) = decode(input)?;
                let r: std::result::Result<Vec<String>, LookupError> = self
                    .imports
                    .cluster
                    .list_objects(&resource, namespace.as_deref(), &selector);
                encode(&r)
            }
            f if kind == PluginKind::NetworkBackend
                && f >= imports::HOST_NET_BASE
                && ((f - imports::HOST_NET_BASE) as usize) < imports::HOST_NET.len() =>
            {
                let name = imports::HOST_NET[(f - imports::HOST_NET_BASE) as usize];
                dispatch_host_net(&*self.imports.net, name, input)
            }
            other => Err((
                status::UNKNOWN_FUNCTION,
                format!("import {other} is not granted to a {kind}"),
            )),
        }
    }
}

macro_rules! define_dispatch_host_net {
    ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        fn dispatch_host_net(net: &dyn HostNet, name: &str, input: &[u8]) -> ImportResult {
            match name {
                $(
                    $wit => {
                        let ($($arg,)*): ($($ty,)*) = decode(input)?;
                        let r: std::result::Result<$ret, NetError> = net.$method($($arg),*);
                        encode(&r)
                    }
                )*
                other => Err((status::UNKNOWN_FUNCTION, format!("host-net has no function {other}"))),
            }
        }
    };
}
host_net_functions!(define_dispatch_host_net);

/// The host's import entry point, given to every instance in its [`HostVtable`].
extern "C" fn host_call(ctx: *mut c_void, func: u32, input: Bytes, output: *mut OwnedBuf) -> u32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        if ctx.is_null() {
            return Err((status::BAD_INPUT, "null host context".to_string()));
        }
        // SAFETY: `ctx` is the `HostContext` this instance's vtable was made with; it lives until
        // after the instance is destroyed, and is only read during the instance's calls.
        let ctx = unsafe { &*ctx.cast::<HostContext>() };
        let input: &[u8] = if input.len == 0 || input.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the ABI says `input` is `len` readable bytes for the call's duration.
            unsafe { std::slice::from_raw_parts(input.ptr, input.len) }
        };
        ctx.dispatch(func, input)
    }));
    let (code, bytes) = match result {
        Ok(Ok(bytes)) => (status::OK, bytes),
        Ok(Err((code, message))) => (code, message.into_bytes()),
        Err(panic) => (status::PANIC, panic_message(panic.as_ref()).into_bytes()),
    };
    if !output.is_null() {
        let mut bytes = ManuallyDrop::new(bytes);
        let buf = OwnedBuf {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        };
        // SAFETY: the ABI says `output` is valid for writes; the plugin gives the buffer back
        // to `host_free_buf`.
        unsafe { output.write(buf) };
    }
    code
}

/// Releases a buffer [`host_call`] returned.
extern "C" fn host_free_buf(buf: OwnedBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: every non-null buffer the host hands out is a leaked `Vec<u8>` with exactly
        // this pointer, length and capacity (see `host_call`).
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the host panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{NoCluster, NoHostNet};

    fn context(kind: PluginKind) -> HostContext {
        HostContext {
            log: RefCell::new(LogSink::new("test".into())),
            imports: HostImports {
                kind,
                cluster: Arc::new(NoCluster),
                net: Arc::new(NoHostNet),
            },
        }
    }

    fn roundtrip(ctx: &HostContext, func: u32, input: &[u8]) -> (u32, Vec<u8>) {
        let ptr: *const HostContext = ctx;
        let mut out = OwnedBuf::EMPTY;
        let code = host_call(
            ptr.cast_mut().cast(),
            func,
            Bytes::from_slice(input),
            &mut out,
        );
        let bytes = if out.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: `host_call` wrote a buffer of `len` bytes.
            unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
        };
        host_free_buf(out);
        (code, bytes)
    }

    #[test]
    fn imports_outside_the_kind_are_refused() {
        let ctx = context(PluginKind::SchedulerPolicy);
        let input = postcard::to_allocvec(&(NoCluster::resource(),)).expect("encode");
        let (code, message) = roundtrip(&ctx, imports::CLUSTER_GET_OBJECT, &input);
        assert_eq!(code, status::UNKNOWN_FUNCTION);
        assert_eq!(
            String::from_utf8_lossy(&message),
            "import 110 is not granted to a scheduler-policy"
        );
    }

    #[test]
    fn host_net_calls_reach_the_embedder_with_their_wit_results() {
        let ctx = context(PluginKind::NetworkBackend);
        let id = imports::host_net_id("node-pod-cidrs").expect("known");
        let (code, out) = roundtrip(&ctx, id, &[]);
        assert_eq!(code, status::OK);
        let r: std::result::Result<Vec<IpPrefix>, NetError> =
            postcard::from_bytes(&out).expect("decode");
        assert_eq!(
            r,
            Err(NetError::Unsupported(
                "node-pod-cidrs is not available on this host".into()
            ))
        );
    }

    #[test]
    fn undecodable_arguments_are_bad_input_not_a_panic() {
        let ctx = context(PluginKind::SchedulerPolicy);
        let (code, _) = roundtrip(&ctx, imports::LOG, &[0xff, 0xff, 0xff]);
        assert_eq!(code, status::BAD_INPUT);
    }

    impl NoCluster {
        fn resource() -> GroupVersionResource {
            GroupVersionResource {
                group: String::new(),
                version: "v1".into(),
                resource: "pods".into(),
            }
        }
    }
}
