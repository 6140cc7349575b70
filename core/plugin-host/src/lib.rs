//! Loads Keelson plugins and runs them under limits: Wasm components in a sandbox, or native
//! libraries at full speed, behind one API per plugin kind.
//!
//! One [`PluginHost`] per process owns the wasmtime [`Engine`], one linker
//! per plugin kind, the on-disk cache of compiled code and the thread that drives deadlines.
//! [`PluginHost::load`] opens a file by its content (a Wasm component, a core module it refuses
//! with a hint, a native library, or anything else it refuses), checks the contract version and
//! what the plugin imports, and returns a [`LoadedPlugin`]: a [`SchedulerPlugin`], an
//! [`AdmissionPlugin`] or a [`NetworkPlugin`], each with the same methods whether it runs as
//! Wasm or natively. [`PluginHost::inspect`] reports what a file is without running it.
//! [`PluginHost::load_builtin`] and [`PluginHost::load_network_builtin`] run a plugin linked
//! into the daemon's binary (a [`Builtin`]) through the native path, without a file.
//!
//! # Limits and their defaults
//!
//! - **Deadline** per call, default [`DEFAULT_DEADLINE`] (100 ms), enforced by epoch
//!   interruption: a host thread advances the engine's epoch every [`DEFAULT_EPOCH_TICK`] (1 ms),
//!   so a deadline is honoured to within about one tick. 1 ms keeps that slack well under the
//!   smallest useful deadline at the cost of one atomic increment per millisecond.
//! - **Memory** per instance, default [`DEFAULT_MEMORY_LIMIT`] (64 MiB) per linear memory (a
//!   Rust guest has one), enforced with wasmtime's `StoreLimits`. Growing past the cap traps
//!   instead of letting `memory.grow` return -1, so the call fails at the allocation that broke
//!   the cap rather than somewhere after it.
//! - **Imports**: each kind's linker links only what its WIT world imports (`log`, plus
//!   `cluster` for admission checks and `host-net` for network backends) and the WASI p2
//!   interfaces a `wasm32-wasip2` standard library needs (streams, command environment, clocks,
//!   randomness), backed by a context that grants nothing: no arguments, no environment, no
//!   files, no sockets; standard output and error go to the daemon's log through `tracing`. A
//!   component importing anything else (`wasi:filesystem`, another kind's imports) fails to
//!   load with [`Error::ImportNotGranted`] naming the import.
//! - **Native libraries** are not sandboxed and **cannot be interrupted**: deadlines and memory
//!   caps apply to Wasm only. A native call that runs past the deadline completes, is counted
//!   in [`PluginMetrics::native_deadline_overruns`] and logged as a warning. Load native
//!   plugins only from trusted sources; they are never unloaded.
//!
//! A trap, a missed deadline, a hit memory cap or a native panic becomes an [`Error`] naming the
//! plugin and the call; the instance is discarded and the next call runs on a fresh one,
//! replayed with the plugin's configuration (and node table, for scheduler policies; nodes and
//! attached pods, for network backends).
//!
//! # Failure policy
//!
//! Each plugin has a [`FailurePolicy`], fail closed by default. [`AdmissionPlugin::admit`]
//! applies it to a request; the scheduler applies it through [`SchedulerPlugin::on_error`]
//! (fail open skips the plugin for the rest of the cycle).

#![deny(unsafe_code)]

mod admission;
mod bindings;
mod cache;
mod error;
mod format;
mod instance;
mod linker;
mod metrics;
mod native;
mod network;
pub mod records;
mod scheduler;
mod services;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine};

pub use admission::{
    AdmissionOutcome, AdmissionPlugin, AdmissionPoints, AdmissionRequest, AdmissionResponse,
    Operation, UserInfo,
};
pub use bindings::ErrorKind;
pub use bindings::keelson::plugin::cluster::LookupError;
pub use bindings::keelson::plugin::host_net::{
    FdbEntry, LinkInfo, LinkKind, LinkSpec, Neighbour, NetError, OvsDatapath, OvsPortType,
    VethOptions, VxlanOptions,
};
pub use bindings::keelson::plugin::log::Level;
pub use bindings::keelson::plugin::types::{
    GroupVersionKind, GroupVersionResource, LabelSelector, NamedQuantity, ObjectReference,
    PluginError, Resources, SelectorOperator, SelectorRequirement,
};
pub use cache::CacheStats;
pub use error::{Error, Result};
pub use format::{CONTRACT_VERSION, PluginFormat, PluginInfo, PluginKind};
pub use keelson_plugin_abi::Builtin;
pub use metrics::{LATENCY_BUCKETS, LatencyHistogram, PluginMetrics};
pub use network::{
    AddressFamily, AttachRequest, AttachResult, AttachedPod, DetachRequest, IpAddress, IpPrefix,
    MacAddress, Netns, NetworkPlugin, NodeAddress, NodeAddressKind, NodeNetworkInfo, PodAddress,
    Route,
};
pub use scheduler::{
    CycleOutcome, DiskVolume, ExtensionPoints, FailureAction, FilterResult, GroupCount, HostPort,
    NodeAffinity, NodeInfo, NodeSelectorTerm, PodAffinity, PodAffinityTerm, PodInfo,
    PreFilterResult, PreferredNodeTerm, Protocol, SchedulerPlugin, Taint, TaintEffect, Toleration,
    TolerationOperator, TopologySpread, UnsatisfiableAction, WeightedPodAffinityTerm,
};
pub use services::{ClusterLookup, DryRunHostNet, HostNet, NoCluster, NoHostNet};

use format::Detected;
use instance::{Artifact, Core, WasmExports};
use native::NativeLibrary;
use state::{HostImports, StoreState};

/// Default per-call deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);
/// Default cap on each linear memory of a plugin instance, in bytes (64 MiB).
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// Default period of the epoch ticker that enforces deadlines.
pub const DEFAULT_EPOCH_TICK: Duration = Duration::from_millis(1);

/// Configuration of a [`PluginHost`].
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled code is cached, keyed by the component's content hash; `None` disables the
    /// cache. The directory must be writable only by the daemon: its files are loaded as
    /// executable code.
    pub cache_dir: Option<PathBuf>,
    /// How often the engine's epoch advances; the granularity of deadlines.
    pub epoch_tick: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            epoch_tick: DEFAULT_EPOCH_TICK,
        }
    }
}

/// Limits of one plugin; see the crate docs for what each enforces. Both apply to Wasm
/// components only: a native call cannot be interrupted, and its memory is the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// The longest one call may run.
    pub deadline: Duration,
    /// The largest size, in bytes, each linear memory of an instance may grow to.
    pub memory: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            deadline: DEFAULT_DEADLINE,
            memory: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// What happens when a plugin call fails (an error, a trap, a missed deadline, a panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// The failure stops what the call was for: an admission request is denied, a scheduling
    /// cycle fails.
    #[default]
    FailClosed,
    /// The failure is logged and counted, and the plugin is left out: an admission request is
    /// admitted as if the plugin had allowed it, a scheduling cycle goes on without the
    /// plugin.
    FailOpen,
}

/// One plugin to load: the name it goes by in logs, metrics and errors, its file, its limits
/// and its failure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// The plugin's name in the daemon's configuration.
    pub name: String,
    /// The plugin file: a Wasm component or a native library.
    pub path: PathBuf,
    /// Deadline and memory cap (Wasm only).
    pub limits: PluginLimits,
    /// What a failed call means.
    pub failure_policy: FailurePolicy,
}

impl PluginSpec {
    /// A plugin with the default limits, failing closed.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            limits: PluginLimits::default(),
            failure_policy: FailurePolicy::default(),
        }
    }

    /// The same plugin with `limits`.
    pub fn with_limits(mut self, limits: PluginLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same plugin with `policy`.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }
}

/// The embedder's services that plugins import, for [`PluginHost::load`]. The defaults refuse
/// every lookup and network operation, which suits `keelson plugin check`.
#[derive(Clone)]
pub struct HostServices {
    /// Cluster lookups for admission checks.
    pub cluster: Arc<dyn ClusterLookup>,
    /// Network operations for network backends.
    pub host_net: Arc<dyn HostNet>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            cluster: Arc::new(NoCluster),
            host_net: Arc::new(NoHostNet),
        }
    }
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

/// A loaded plugin of any kind.
pub enum LoadedPlugin {
    /// A scheduler policy.
    Scheduler(SchedulerPlugin),
    /// An admission check.
    Admission(AdmissionPlugin),
    /// A network backend.
    Network(NetworkPlugin),
}

impl LoadedPlugin {
    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        match self {
            LoadedPlugin::Scheduler(_) => PluginKind::SchedulerPolicy,
            LoadedPlugin::Admission(_) => PluginKind::AdmissionCheck,
            LoadedPlugin::Network(_) => PluginKind::NetworkBackend,
        }
    }

    /// The plugin's name as given to the host.
    pub fn name(&self) -> &str {
        match self {
            LoadedPlugin::Scheduler(p) => p.name(),
            LoadedPlugin::Admission(p) => p.name(),
            LoadedPlugin::Network(p) => p.name(),
        }
    }

    /// Whether the plugin runs as a Wasm component or a native library.
    pub fn format(&self) -> PluginFormat {
        match self {
            LoadedPlugin::Scheduler(p) => p.format(),
            LoadedPlugin::Admission(p) => p.format(),
            LoadedPlugin::Network(p) => p.format(),
        }
    }

    /// The name the plugin reports for itself; works before `configure`.
    pub fn reported_name(&mut self) -> Result<String> {
        match self {
            LoadedPlugin::Scheduler(p) => p.reported_name(),
            LoadedPlugin::Admission(p) => p.reported_name(),
            LoadedPlugin::Network(p) => p.reported_name(),
        }
    }

    /// Configures the plugin with `options` (JSON text).
    pub fn configure(&mut self, options: &str) -> Result<()> {
        match self {
            LoadedPlugin::Scheduler(p) => p.configure(options),
            LoadedPlugin::Admission(p) => p.configure(options),
            LoadedPlugin::Network(p) => p.configure(options),
        }
    }

    /// A snapshot of the plugin's metrics.
    pub fn metrics(&self) -> PluginMetrics {
        match self {
            LoadedPlugin::Scheduler(p) => p.metrics(),
            LoadedPlugin::Admission(p) => p.metrics(),
            LoadedPlugin::Network(p) => p.metrics(),
        }
    }
}

/// The process-wide plugin host: one engine, one linker per kind, one compiled-code cache.
pub struct PluginHost {
    engine: Engine,
    linkers: [Linker<StoreState>; 3],
    cache: cache::ArtifactCache,
    epoch_tick: Duration,
    ticker: Arc<Ticker>,
}

/// The thread that advances the engine's epoch; stops when the host and every plugin it
/// created are dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A plugin file opened and checked, ready to become a plugin handle.
struct Opened {
    info: PluginInfo,
    artifact: OpenedArtifact,
}

enum OpenedArtifact {
    Wasm(InstancePre<StoreState>),
    Native(Arc<NativeLibrary>),
}

impl PluginHost {
    /// Creates the engine, links the host imports of each kind and starts the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self> {
        let mut wasm_config = Config::new();
        wasm_config.epoch_interruption(true);
        wasm_config.wasm_component_model(true);
        let engine = Engine::new(&wasm_config).map_err(|e| Error::Engine(e.into()))?;

        let linker = |kind| linker::linker(&engine, kind).map_err(|e| Error::Engine(e.into()));
        let linkers = [
            linker(PluginKind::SchedulerPolicy)?,
            linker(PluginKind::AdmissionCheck)?,
            linker(PluginKind::NetworkBackend)?,
        ];

        let epoch_tick = config.epoch_tick.max(Duration::from_micros(100));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("keelson-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(epoch_tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(Error::Ticker)?
        };

        Ok(PluginHost {
            cache: cache::ArtifactCache::new(config.cache_dir),
            engine,
            linkers,
            epoch_tick,
            ticker: Arc::new(Ticker {
                stop,
                handle: Some(ticker),
            }),
        })
    }

    fn linker(&self, kind: PluginKind) -> &Linker<StoreState> {
        match kind {
            PluginKind::SchedulerPolicy => &self.linkers[0],
            PluginKind::AdmissionCheck => &self.linkers[1],
            PluginKind::NetworkBackend => &self.linkers[2],
        }
    }

    /// Compiles the component in `path`, or loads its compiled code from the cache, without
    /// checking what it imports or exports.
    pub fn load_component(&self, path: &Path) -> Result<Component> {
        let bytes = format::read(path)?;
        self.cache.load(&self.engine, path, &bytes)
    }

    /// How many loads hit the compiled-code cache and how many compiled.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// What the file in `path` is: format, kind, contract, exports, imports, size, whether its
    /// compiled code is cached. Refuses what [`load`](Self::load) would refuse, with the same
    /// errors.
    ///
    /// A component is read without compiling or running it. A native library is loaded to
    /// read its ABI version and manifest, which runs its initialisers (and keeps it loaded).
    pub fn inspect(&self, path: &Path) -> Result<PluginInfo> {
        let name = path.display().to_string();
        let bytes = format::read(path)?;
        match format::detect(&bytes) {
            Detected::Component => self.check_component(&name, path, &bytes),
            Detected::Native => {
                let library = native::load(&name, path, &bytes)?;
                Ok(native_info(path, &bytes, &library))
            }
            Detected::CoreModule => Err(Error::CoreModule {
                path: path.to_path_buf(),
            }),
            Detected::Unknown => Err(Error::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Opens, checks and prepares the plugin `spec` describes, whatever its kind and format.
    /// Admission checks get `services.cluster`, network backends `services.host_net`.
    pub fn load(&self, spec: &PluginSpec, services: &HostServices) -> Result<LoadedPlugin> {
        let opened = self.open(spec)?;
        Ok(match opened.info.kind {
            PluginKind::SchedulerPolicy => {
                LoadedPlugin::Scheduler(SchedulerPlugin::new(self.core(spec, opened, services)?))
            }
            PluginKind::AdmissionCheck => {
                LoadedPlugin::Admission(AdmissionPlugin::new(self.core(spec, opened, services)?))
            }
            PluginKind::NetworkBackend => {
                LoadedPlugin::Network(NetworkPlugin::new(self.core(spec, opened, services)?))
            }
        })
    }

    /// Loads the scheduler policy `spec` describes. The plugin is not instantiated until
    /// [`SchedulerPlugin::configure`].
    pub fn load_scheduler(&self, spec: &PluginSpec) -> Result<SchedulerPlugin> {
        let opened = self.open_kind(spec, PluginKind::SchedulerPolicy)?;
        Ok(SchedulerPlugin::new(self.core(
            spec,
            opened,
            &HostServices::default(),
        )?))
    }

    /// Loads the scheduler policy in `path` (a component or a native library) as plugin
    /// `name`, failing closed: [`load_scheduler`](Self::load_scheduler) with a spec made of
    /// these.
    pub fn scheduler_plugin(
        &self,
        name: &str,
        path: &Path,
        limits: PluginLimits,
    ) -> Result<SchedulerPlugin> {
        self.load_scheduler(&PluginSpec::new(name, path).with_limits(limits))
    }

    /// Loads the admission check `spec` describes, with `cluster` serving its lookups.
    pub fn load_admission(
        &self,
        spec: &PluginSpec,
        cluster: Arc<dyn ClusterLookup>,
    ) -> Result<AdmissionPlugin> {
        let opened = self.open_kind(spec, PluginKind::AdmissionCheck)?;
        let services = HostServices {
            cluster,
            ..HostServices::default()
        };
        Ok(AdmissionPlugin::new(self.core(spec, opened, &services)?))
    }

    /// Loads the network backend `spec` describes, with `host_net` serving its operations.
    pub fn load_network(
        &self,
        spec: &PluginSpec,
        host_net: Arc<dyn HostNet>,
    ) -> Result<NetworkPlugin> {
        let opened = self.open_kind(spec, PluginKind::NetworkBackend)?;
        let services = HostServices {
            host_net,
            ..HostServices::default()
        };
        Ok(NetworkPlugin::new(self.core(spec, opened, &services)?))
    }

    /// Loads the network backend `builtin`, linked into this binary, as plugin `name`, with
    /// `host_net` serving its operations; see [`load_builtin`](Self::load_builtin).
    ///
    /// ```no_run
    /// # fn f(host: &keelson_plugin_host::PluginHost, b: keelson_plugin_host::Builtin) -> keelson_plugin_host::Result<()> {
    /// let net = std::sync::Arc::new(keelson_plugin_host::DryRunHostNet::default());
    /// let mut plugin = host.load_network_builtin("bridge", &b, net)?;
    /// plugin.configure("{}")?;
    /// # Ok(()) }
    /// ```
    pub fn load_network_builtin(
        &self,
        name: &str,
        builtin: &Builtin,
        host_net: Arc<dyn HostNet>,
    ) -> Result<NetworkPlugin> {
        let services = HostServices {
            host_net,
            ..HostServices::default()
        };
        match self.load_builtin(&PluginSpec::new(name, ""), builtin, &services)? {
            LoadedPlugin::Network(plugin) => Ok(plugin),
            other => Err(Error::WrongKind {
                plugin: name.to_string(),
                expected: PluginKind::NetworkBackend,
                found: other.kind(),
            }),
        }
    }

    /// Loads a plugin linked into this binary (`keelson_plugin_sdk::builtin`) as plugin
    /// `spec.name` (`spec.path` is not used). It runs through the native ABI exactly like a
    /// native library: the manifest and the vtable's ABI version are checked the same way,
    /// panics are caught at the boundary, a failed instance is replaced by a fresh, replayed
    /// one, and calls are counted in the same metrics. Like a native library it is not
    /// sandboxed and cannot be interrupted.
    pub fn load_builtin(
        &self,
        spec: &PluginSpec,
        builtin: &Builtin,
        services: &HostServices,
    ) -> Result<LoadedPlugin> {
        let library = native::builtin(&spec.name, builtin)?;
        let info = PluginInfo {
            path: spec.path.clone(),
            format: PluginFormat::Builtin,
            kind: library.kind,
            contract: library.manifest.contract.clone(),
            abi_version: Some(keelson_plugin_abi::ABI_VERSION),
            name: Some(library.manifest.name.clone()),
            exports: library.manifest.exports.clone(),
            imports: Vec::new(),
            size: 0,
            sha256: String::new(),
            compiled_cached: None,
        };
        let opened = Opened {
            info,
            artifact: OpenedArtifact::Native(library),
        };
        Ok(match opened.info.kind {
            PluginKind::SchedulerPolicy => {
                LoadedPlugin::Scheduler(SchedulerPlugin::new(self.core(spec, opened, services)?))
            }
            PluginKind::AdmissionCheck => {
                LoadedPlugin::Admission(AdmissionPlugin::new(self.core(spec, opened, services)?))
            }
            PluginKind::NetworkBackend => {
                LoadedPlugin::Network(NetworkPlugin::new(self.core(spec, opened, services)?))
            }
        })
    }

    fn open_kind(&self, spec: &PluginSpec, expected: PluginKind) -> Result<Opened> {
        let opened = self.open(spec)?;
        if opened.info.kind != expected {
            return Err(Error::WrongKind {
                plugin: spec.name.clone(),
                expected,
                found: opened.info.kind,
            });
        }
        Ok(opened)
    }

    /// Reads the file, tells its format, checks it and prepares it for instantiation.
    fn open(&self, spec: &PluginSpec) -> Result<Opened> {
        let path = &spec.path;
        let bytes = format::read(path)?;
        match format::detect(&bytes) {
            Detected::Component => {
                let info = self.check_component(&spec.name, path, &bytes)?;
                let component = self.cache.load(&self.engine, path, &bytes)?;
                let pre = self
                    .linker(info.kind)
                    .instantiate_pre(&component)
                    .map_err(|e| Error::Link {
                        plugin: spec.name.clone(),
                        source: e.into(),
                    })?;
                Ok(Opened {
                    info,
                    artifact: OpenedArtifact::Wasm(pre),
                })
            }
            Detected::Native => {
                let library = native::load(&spec.name, path, &bytes)?;
                Ok(Opened {
                    info: native_info(path, &bytes, &library),
                    artifact: OpenedArtifact::Native(library),
                })
            }
            Detected::CoreModule => Err(Error::CoreModule { path: path.clone() }),
            Detected::Unknown => Err(Error::UnknownFormat { path: path.clone() }),
        }
    }

    /// Checks a component's contract version, kind and imports from its names, without
    /// compiling it, so a refused plugin costs no compile.
    fn check_component(&self, plugin: &str, path: &Path, bytes: &[u8]) -> Result<PluginInfo> {
        let names = format::component_names(bytes).map_err(|e| Error::Compile {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        format::check_contract(plugin, &names)?;
        let exports: Vec<String> = names
            .exports
            .iter()
            .filter_map(|e| format::keelson_interface(e).map(|(i, _)| i.to_string()))
            .collect();
        let kind =
            PluginKind::from_exports(exports.iter().map(String::as_str)).map_err(|reason| {
                Error::UnknownKind {
                    plugin: plugin.to_string(),
                    reason,
                }
            })?;
        let refused: Vec<String> = names
            .imports
            .iter()
            .filter(|i| !linker::is_granted(kind, i))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(Error::ImportNotGranted {
                plugin: plugin.to_string(),
                imports: refused,
                kind,
            });
        }
        let info = PluginInfo {
            path: path.to_path_buf(),
            format: PluginFormat::WasmComponent,
            kind,
            contract: format!("keelson:plugin@{CONTRACT_VERSION}"),
            abi_version: None,
            name: None,
            exports,
            imports: names.imports,
            size: bytes.len() as u64,
            sha256: format::sha256_hex(bytes),
            compiled_cached: Some(self.cache.is_cached(&self.engine, bytes)),
        };
        Ok(info)
    }

    fn core<X: WasmExports>(
        &self,
        spec: &PluginSpec,
        opened: Opened,
        services: &HostServices,
    ) -> Result<Core<X>> {
        let artifact = match opened.artifact {
            OpenedArtifact::Wasm(pre) => Artifact::Wasm {
                indices: X::indices(&spec.name, &pre)?,
                pre,
                epoch_tick: self.epoch_tick,
                _ticker: self.ticker.clone(),
            },
            OpenedArtifact::Native(library) => {
                check_native_exports(&spec.name, &library)?;
                Artifact::Native(library)
            }
        };
        let imports = HostImports {
            kind: opened.info.kind,
            cluster: services.cluster.clone(),
            net: services.host_net.clone(),
        };
        Ok(Core::new(spec, artifact, imports))
    }
}

/// Checks a native library's manifest lists what its kind must export.
fn check_native_exports(plugin: &str, library: &NativeLibrary) -> Result<()> {
    let missing = |interface| Error::MissingExport {
        plugin: plugin.to_string(),
        interface,
    };
    if !library.exports("lifecycle") {
        return Err(missing("keelson:plugin/lifecycle@0.1.0"));
    }
    match library.kind {
        PluginKind::SchedulerPolicy if !library.exports("scheduler") => {
            Err(missing("keelson:plugin/scheduler@0.1.0"))
        }
        PluginKind::AdmissionCheck
            if !library.exports("validate") && !library.exports("mutate") =>
        {
            Err(missing(
                "keelson:plugin/validate@0.1.0 or keelson:plugin/mutate@0.1.0",
            ))
        }
        PluginKind::NetworkBackend if !library.exports("backend") => {
            Err(missing("keelson:plugin/backend@0.1.0"))
        }
        _ => Ok(()),
    }
}

fn native_info(path: &Path, bytes: &[u8], library: &NativeLibrary) -> PluginInfo {
    PluginInfo {
        path: path.to_path_buf(),
        format: PluginFormat::NativeLibrary,
        kind: library.kind,
        contract: library.manifest.contract.clone(),
        abi_version: Some(keelson_plugin_abi::ABI_VERSION),
        name: Some(library.manifest.name.clone()),
        exports: library.manifest.exports.clone(),
        imports: Vec::new(),
        size: bytes.len() as u64,
        sha256: format::sha256_hex(bytes),
        compiled_cached: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_handles_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<SchedulerPlugin>();
        send::<AdmissionPlugin>();
        send::<NetworkPlugin>();
        send::<LoadedPlugin>();
        fn shared<T: Send + Sync>() {}
        shared::<PluginHost>();
    }
}
