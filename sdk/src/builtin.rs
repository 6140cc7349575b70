//! Plugins linked into the daemon's own binary.
//!
//! A built-in plugin is an ordinary SDK plugin (the same trait, the same code a Wasm component
//! or a native library is built from) that a Keelson daemon depends on as a crate. Instead of
//! loading a library file, the daemon hands the plugin host the [`Builtin`] these functions
//! make: the manifest and vtable a native library would export, built from generic functions
//! rather than exported symbols, so any number of built-ins can share one binary. The host
//! runs it exactly as it runs a native library: same encoding, panics caught at the same
//! boundary, a fresh instance (replayed) after a failure.

pub use keelson_plugin_abi::Builtin;

use crate::NetworkBackend;

/// The network backend `T` as a built-in plugin, for the plugin host's
/// `load_network_builtin`.
///
/// ```
/// use keelson_plugin_sdk::*;
///
/// struct Nothing;
/// impl NetworkBackend for Nothing {
///     const NAME: &'static str = "nothing";
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(Nothing)
///     }
///     fn attach_pod(&mut self, _request: &AttachRequest) -> Result<AttachResult, PluginError> {
///         Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None })
///     }
///     fn detach_pod(&mut self, _request: &DetachRequest) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// let plugin = builtin::network::<Nothing>();
/// assert!(plugin.manifest.contains("\"name\":\"nothing\""));
/// assert_eq!(plugin.vtable.abi_version, keelson_plugin_abi::ABI_VERSION);
/// ```
pub fn network<T: NetworkBackend>() -> Builtin {
    crate::network::native::builtin::<T>()
}
