use std::path::PathBuf;
use std::time::Duration;

use crate::bindings::ErrorKind;
use crate::format::PluginKind;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the plugin host. Errors about a plugin name the plugin and, for calls, the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The wasmtime engine or linker could not be set up (a host bug, not a plugin's fault).
    #[error("plugin engine setup failed")]
    Engine(#[source] BoxError),
    /// The epoch ticker thread could not be started.
    #[error("could not start the plugin epoch ticker")]
    Ticker(#[source] std::io::Error),
    /// The plugin file could not be read.
    #[error("could not read plugin file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is a core Wasm module, which the host does not run.
    #[error(
        "plugin file {path} is a core Wasm module, not a component; build with --target wasm32-wasip2"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The file is neither a Wasm component nor a native library.
    #[error(
        "plugin file {path} is neither a Wasm component nor a native library (ELF, Mach-O or PE)"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The plugin file is not a valid Wasm component.
    #[error("plugin file {path} is not a valid component")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The plugin was built for another version of the `keelson:plugin` contract.
    #[error(
        "plugin {plugin:?}: built for contract keelson:plugin@{found}, but this host supports keelson:plugin@{supported}; rebuild it against the supported contract"
    )]
    ContractVersion {
        /// The plugin.
        plugin: String,
        /// The version the plugin names (`none` when it names none).
        found: String,
        /// The version this host supports.
        supported: &'static str,
    },
    /// A native library speaks another version of the plugin ABI.
    #[error(
        "plugin {plugin:?}: native library speaks plugin ABI version {found}, but this host speaks version {supported}; rebuild it with a matching keelson-plugin-sdk"
    )]
    AbiVersion {
        /// The plugin.
        plugin: String,
        /// The version the library reports.
        found: u32,
        /// The version this host speaks.
        supported: u32,
    },
    /// The component imports something its world does not grant.
    #[error(
        "plugin {plugin:?}: imports {}, which the {kind} world does not grant; remove the code that uses it",
        .imports.join(", ")
    )]
    ImportNotGranted {
        /// The plugin.
        plugin: String,
        /// Every import not granted, as the component names them.
        imports: Vec<String>,
        /// The plugin's kind.
        kind: PluginKind,
    },
    /// The plugin's exports do not say which world it implements.
    #[error("plugin {plugin:?}: {reason}")]
    UnknownKind {
        /// The plugin.
        plugin: String,
        /// What is wrong with the exports.
        reason: String,
    },
    /// The plugin is of another kind than the caller asked for.
    #[error("plugin {plugin:?}: is of kind {found}, not {expected}")]
    WrongKind {
        /// The plugin.
        plugin: String,
        /// The kind asked for.
        expected: PluginKind,
        /// The kind the file is.
        found: PluginKind,
    },
    /// The component imports something the host does not provide, or with another type.
    #[error("plugin {plugin:?}: cannot be linked")]
    Link {
        /// The plugin.
        plugin: String,
        /// Why, naming the import.
        #[source]
        source: BoxError,
    },
    /// The plugin lacks an export its contract requires.
    #[error("plugin {plugin:?}: does not export {interface}")]
    MissingExport {
        /// The plugin.
        plugin: String,
        /// The missing interface.
        interface: &'static str,
    },
    /// The native library could not be loaded.
    #[error("could not load native plugin library {path}")]
    NativeLoad {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: libloading::Error,
    },
    /// The native library lacks a symbol of the plugin ABI.
    #[error(
        "plugin {plugin:?}: native library has no symbol {symbol}; build it with keelson-plugin-sdk"
    )]
    NativeSymbol {
        /// The plugin.
        plugin: String,
        /// The missing symbol.
        symbol: &'static str,
    },
    /// The native library's manifest is malformed.
    #[error("plugin {plugin:?}: native library manifest is invalid: {reason}")]
    NativeManifest {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// A native library at this path was loaded before with other contents; libraries are
    /// never unloaded, so the new contents need a restart.
    #[error(
        "native plugin library {path} changed since this process loaded it; restart to load the new version"
    )]
    NativeChanged {
        /// The file.
        path: PathBuf,
    },
    /// A fresh instance could not be created.
    #[error("plugin {plugin:?}: could not be instantiated")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// A call ran past its deadline and was interrupted (Wasm only).
    #[error("plugin {plugin:?}: call {call:?} exceeded its {deadline:?} deadline")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// A call tried to grow memory past the instance's cap (Wasm only).
    #[error("plugin {plugin:?}: call {call:?} exceeded its memory cap of {limit} bytes")]
    MemoryCap {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// A call trapped (a panic in a Wasm guest, an out-of-bounds access, ...).
    #[error("plugin {plugin:?}: call {call:?} trapped")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The trap, with the guest's backtrace when wasmtime has one.
        #[source]
        source: BoxError,
    },
    /// A native plugin panicked in a call; the panic was caught inside the library.
    #[error("plugin {plugin:?}: call {call:?} panicked: {message}")]
    Panic {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The panic message.
        message: String,
    },
    /// A native call failed at the ABI: undecodable arguments or result, unknown function.
    #[error("plugin {plugin:?}: call {call:?} failed at the native ABI: {message}")]
    Abi {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The plugin returned its own error from a call.
    #[error("plugin {plugin:?}: call {call:?} failed ({kind}): {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The class of error the plugin gave.
        kind: ErrorKind,
        /// The plugin's message.
        message: String,
    },
    /// The plugin returned a result that breaks the contract (wrong length, score out of range).
    #[error("plugin {plugin:?}: call {call:?} returned an invalid result: {reason}")]
    InvalidResult {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A call was made before `configure`.
    #[error("plugin {plugin:?}: call {call:?} made before configure")]
    NotConfigured {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
    },
}

impl Error {
    /// Whether the error discarded the plugin's instance (trap, deadline, memory cap, panic);
    /// the next call runs on a fresh instance.
    pub fn is_fatal_to_instance(&self) -> bool {
        matches!(
            self,
            Error::Deadline { .. }
                | Error::MemoryCap { .. }
                | Error::Trap { .. }
                | Error::Panic { .. }
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
