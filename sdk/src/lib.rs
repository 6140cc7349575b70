//! The Rust SDK for Keelson plugins.
//!
//! A plugin is a crate with `crate-type = ["cdylib", "rlib"]` that depends on this one,
//! implements one trait and exports it with one macro:
//!
//! | kind | trait | export macro |
//! | --- | --- | --- |
//! | scheduler policy | [`SchedulerPolicy`] | [`export_scheduler_policy!`] |
//! | admission check | [`AdmissionCheck`] | [`export_admission_check!`] |
//! | network backend | [`NetworkBackend`] | [`export_network_backend!`] |
//!
//! The same source builds two ways, with identical behaviour:
//!
//! - `cargo build --release --target wasm32-wasip2` gives a **Wasm component** (`.wasm`), which
//!   the host runs under a per-call deadline and a memory cap. It exports exactly the extension
//!   points named in the export macro, so the host calls only those.
//! - `cargo build --release` gives a **native library** (`.so`) with the C ABI of
//!   [`keelson_plugin_abi`]: an ABI version symbol the loader checks first, a manifest, and one
//!   entry point that catches panics. Native plugins run at full speed but without the sandbox:
//!   load only ones you trust.
//!
//! A daemon can also link a plugin crate and run it as a **built-in** through the same native
//! ABI, without a library file: see [`builtin`].
//!
//! `keelson plugin new`, `build`, `inspect` and `check` wrap these steps. The contract is the
//! WIT package `keelson:plugin@0.1.0` in the repository's `wit/` folder; [`bindings`] holds the
//! Rust types generated from it, re-exported at the crate root.
//!
//! Plugins are tested without a cluster through [`testing`]: a harness that drives a plugin's
//! trait exactly as the host does (node table, cycles, admission requests, pod attachment) with
//! fake host imports, and [`fixtures`] to build nodes, pods and requests.
//!
//! ```no_run
//! use keelson_plugin_sdk::*;
//!
//! struct MostPods;
//!
//! impl SchedulerPolicy for MostPods {
//!     const NAME: &'static str = "most-pods";
//!
//!     fn configure(_options: &str) -> Result<Self, PluginError> {
//!         Ok(MostPods)
//!     }
//!
//!     fn score(
//!         &mut self,
//!         _cycle: u64,
//!         _pod: &PodInfo,
//!         nodes: &NodeTable,
//!         candidates: &[NodeIndex],
//!     ) -> Result<Vec<i64>, PluginError> {
//!         Ok(candidates
//!             .iter()
//!             .map(|&i| nodes.get(i).map_or(0, |n| i64::from(n.pod_count.min(100))))
//!             .collect())
//!     }
//! }
//!
//! export_scheduler_policy!(MostPods, exports: [score]);
//! # fn main() {}
//! ```

mod admission;
#[cfg(not(target_arch = "wasm32"))]
pub mod builtin;
pub mod cluster;
pub mod fixtures;
mod host;
pub mod net;
mod network;
mod scheduler;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(not(target_arch = "wasm32"))]
mod native;

/// Rust types generated from the root `wit/` folder: every type of the three worlds and the
/// host imports.
///
/// The types plugin authors need are re-exported at the crate root; the host imports are
/// wrapped by [`log`], [`cluster`] and [`net`], which also work in native builds and in the
/// [`testing`] harness. This module is public so that the export macros can point the
/// generated export glue at these types.
///
/// ```
/// use keelson_plugin_sdk::bindings::keelson::plugin::types::ErrorKind;
/// assert_ne!(ErrorKind::Internal, ErrorKind::InvalidConfig);
/// ```
// The generated code is the component ABI glue: raw pointers into linear memory, the
// `unsafe` the workspace style allows for "the SDK's export glue".
#[allow(unsafe_code, clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package keelson:sdk;
            world sdk {
                import keelson:plugin/log@0.1.0;
                import keelson:plugin/cluster@0.1.0;
                import keelson:plugin/host-net@0.1.0;
                import keelson:plugin/scheduler-types@0.1.0;
                import keelson:plugin/admission@0.1.0;
                import keelson:plugin/network-types@0.1.0;
            }
        ",
        world: "keelson:sdk/sdk",
        generate_all,
        generate_unused_types: true,
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub use admission::{AdmissionCheck, allow, deny, patch};
pub use bindings::keelson::plugin::admission::{
    AdmissionRequest, AdmissionResponse, Operation, UserInfo,
};
pub use bindings::keelson::plugin::log::Level;
pub use bindings::keelson::plugin::network_types::{
    AddressFamily, AttachRequest, AttachResult, AttachedPod, DetachRequest, IpAddress, IpPrefix,
    MacAddress, Netns, NodeAddress, NodeAddressKind, NodeNetworkInfo, PodAddress, Route,
};
pub use bindings::keelson::plugin::scheduler_types::{
    CycleOutcome, DiskVolume, FilterResult, GroupCount, HostPort, NodeAffinity, NodeInfo,
    NodeSelectorTerm, PodAffinity, PodAffinityTerm, PodInfo, PreFilterResult, PreferredNodeTerm,
    Protocol, Taint, TaintEffect, Toleration, TolerationOperator, TopologySpread,
    UnsatisfiableAction, WeightedPodAffinityTerm,
};
pub use bindings::keelson::plugin::types::{
    ErrorKind, GroupVersionKind, GroupVersionResource, LabelSelector, NamedQuantity, PluginError,
    Resources, SelectorOperator, SelectorRequirement,
};
pub use network::NetworkBackend;
pub use scheduler::{NodeIndex, NodeTable, SchedulerPolicy};

/// Builds a [`PluginError`] from a kind and a message.
///
/// ```
/// use keelson_plugin_sdk::{plugin_error, ErrorKind};
/// let e = plugin_error(ErrorKind::InvalidConfig, "option \"weight\" must be positive");
/// assert_eq!(e.kind, ErrorKind::InvalidConfig);
/// ```
pub fn plugin_error(kind: ErrorKind, message: impl Into<String>) -> PluginError {
    PluginError {
        kind,
        message: message.into(),
    }
}

/// Writes `message` to the daemon's log at `level`, if the daemon keeps records at that level.
///
/// The host adds the plugin's and the call's names. In the [`testing`] harness records are kept
/// for the test to read.
///
/// ```no_run
/// keelson_plugin_sdk::log(keelson_plugin_sdk::Level::Info, "configured");
/// ```
pub fn log(level: Level, message: &str) {
    if host::log_enabled(level) {
        host::log(level, message);
    }
}

/// Whether the daemon keeps log records at `level`: check it before formatting a costly
/// message inside a per-pod call.
///
/// ```no_run
/// use keelson_plugin_sdk::{log, log_enabled, Level};
/// if log_enabled(Level::Debug) {
///     log(Level::Debug, &format!("{:?}", (1, 2)));
/// }
/// ```
pub fn log_enabled(level: Level) -> bool {
    host::log_enabled(level)
}

/// Exports a [`SchedulerPolicy`] as the plugin's implementation of the `scheduler-policy`
/// world, as a Wasm component or a native library depending on the build target.
///
/// List the extension points the policy implements, from `pre_filter`, `filter`, `score` and
/// `normalize_score`: the plugin exports those and the host calls only those, so an extension
/// point left out costs nothing per pod. `normalize_score` needs `score`. Use the macro once,
/// at the root of the plugin's crate.
///
/// ```no_run
/// use keelson_plugin_sdk::{export_scheduler_policy, PluginError, SchedulerPolicy};
///
/// struct Noop;
/// impl SchedulerPolicy for Noop {
///     const NAME: &'static str = "noop";
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(Noop)
///     }
/// }
///
/// export_scheduler_policy!(Noop, exports: [filter, score]);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_scheduler_policy {
    ($ty:ty, exports: [$($point:ident),* $(,)?] $(,)?) => {
        $crate::__private::export!(scheduler, $ty, [$($point),*]);
    };
}

/// Exports an [`AdmissionCheck`] as the plugin's implementation of the `admission-check` world.
///
/// List what the check does, `validate`, `mutate` or both; the host calls only those.
///
/// ```no_run
/// use keelson_plugin_sdk::*;
///
/// struct AllowAll;
/// impl AdmissionCheck for AllowAll {
///     const NAME: &'static str = "allow-all";
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(AllowAll)
///     }
/// }
///
/// export_admission_check!(AllowAll, exports: [validate]);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_admission_check {
    ($ty:ty, exports: [$($point:ident),* $(,)?] $(,)?) => {
        $crate::__private::export!(admission, $ty, [$($point),*]);
    };
}

/// Exports a [`NetworkBackend`] as the plugin's implementation of the `network-backend` world.
///
/// ```no_run
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
/// export_network_backend!(Nothing);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_network_backend {
    ($ty:ty $(,)?) => {
        $crate::__private::export!(network, $ty, []);
    };
}

/// What the export macros expand to; not part of the SDK's API.
#[doc(hidden)]
pub mod __private {
    pub use keelson_plugin_abi as abi;
    pub use keelson_plugin_sdk_macros::export;
    pub use wit_bindgen;

    /// Scheduler-policy glue.
    pub mod scheduler {
        pub use crate::scheduler::name_of;
        #[cfg(not(target_arch = "wasm32"))]
        pub use crate::scheduler::native;
        pub use crate::scheduler::wasm;
    }
    /// Admission-check glue.
    pub mod admission {
        pub use crate::admission::name_of;
        #[cfg(not(target_arch = "wasm32"))]
        pub use crate::admission::native;
        pub use crate::admission::wasm;
    }
    /// Network-backend glue.
    pub mod network {
        pub use crate::network::name_of;
        #[cfg(not(target_arch = "wasm32"))]
        pub use crate::network::native;
        pub use crate::network::wasm;
    }
    /// Native ABI helpers.
    #[cfg(not(target_arch = "wasm32"))]
    pub mod native {
        pub use crate::native::{free_buf, manifest};
    }
}
