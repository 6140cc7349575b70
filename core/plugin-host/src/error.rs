use std::path::PathBuf;
use std::time::Duration;

use crate::state::ErrorKind;

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
    /// The plugin file is not a valid Wasm component.
    #[error("plugin file {path} is not a valid component")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The component imports something the host does not provide.
    #[error("plugin {plugin:?}: cannot be linked")]
    Link {
        /// The plugin.
        plugin: String,
        /// Why, naming the import.
        #[source]
        source: BoxError,
    },
    /// The component lacks an export its contract requires.
    #[error("plugin {plugin:?}: does not export {interface}")]
    MissingExport {
        /// The plugin.
        plugin: String,
        /// The missing interface.
        interface: &'static str,
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
    /// A call ran past its deadline and was interrupted.
    #[error("plugin {plugin:?}: call {call:?} exceeded its {deadline:?} deadline")]
    Deadline {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The deadline.
        deadline: Duration,
    },
    /// A call tried to grow memory past the instance's cap.
    #[error("plugin {plugin:?}: call {call:?} exceeded its memory cap of {limit} bytes")]
    MemoryCap {
        /// The plugin.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// A call trapped (a panic in the guest, an out-of-bounds access, ...).
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
    /// Whether the error discarded the plugin's instance (trap, deadline, memory cap).
    pub fn is_fatal_to_instance(&self) -> bool {
        matches!(
            self,
            Error::Deadline { .. } | Error::MemoryCap { .. } | Error::Trap { .. }
        )
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
