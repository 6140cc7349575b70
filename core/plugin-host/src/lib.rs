//! Loads Keelson plugins built as Wasm components and runs them under limits.
//!
//! One [`PluginHost`] per process owns the wasmtime [`Engine`](wasmtime::Engine), the linker with
//! the host imports, the on-disk cache of compiled code and the thread that drives deadlines.
//! [`PluginHost::scheduler_plugin`] returns a [`SchedulerPlugin`], a typed handle on one
//! pre-instantiated component.
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
//! - **WASI**: the p2 interfaces a `wasm32-wasip2` guest's standard library imports are linked,
//!   but the context grants nothing: no arguments, no environment, no preopened directories, no
//!   network; standard output and error go to the daemon's log through `tracing`.
//!
//! A trap, a missed deadline or a hit memory cap becomes an [`Error`] naming the plugin and the
//! call; the instance is discarded and the next call runs on a fresh one, replayed with the
//! plugin's configuration and node table.

#![deny(unsafe_code)]

mod cache;
mod error;
mod metrics;
mod scheduler;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

pub use cache::CacheStats;
pub use error::{Error, Result};
pub use metrics::{LATENCY_BUCKETS, LatencyHistogram, PluginMetrics};
pub use scheduler::{
    CycleOutcome, ExtensionPoints, FilterResult, GroupCount, HostPort, NamedQuantity, NodeAffinity,
    NodeInfo, NodeSelectorTerm, PodAffinity, PodAffinityTerm, PodInfo, PreFilterResult,
    PreferredNodeTerm, Protocol, Resources, SchedulerPlugin, SelectorOperator, SelectorRequirement,
    Taint, TaintEffect, Toleration, TolerationOperator, TopologySpread, UnsatisfiableAction,
    WeightedPodAffinityTerm,
};
pub use state::ErrorKind;

use state::StoreState;

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

/// Limits of one plugin; see the crate docs for what each enforces.
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

/// The process-wide plugin host: one engine, one linker, one compiled-code cache.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<StoreState>,
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

impl PluginHost {
    /// Creates the engine, links the host imports and starts the epoch ticker.
    pub fn new(config: HostConfig) -> Result<Self> {
        let mut wasm_config = Config::new();
        wasm_config.epoch_interruption(true);
        wasm_config.wasm_component_model(true);
        let engine = Engine::new(&wasm_config).map_err(|e| Error::Engine(e.into()))?;

        let mut linker = Linker::<StoreState>::new(&engine);
        scheduler::bindings::SchedulerPolicy::add_to_linker::<StoreState, HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| Error::Engine(e.into()))?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| Error::Engine(e.into()))?;

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
            linker,
            epoch_tick,
            ticker: Arc::new(Ticker {
                stop,
                handle: Some(ticker),
            }),
        })
    }

    /// Compiles the component in `path`, or loads its compiled code from the cache.
    pub fn load_component(&self, path: &Path) -> Result<Component> {
        self.cache.load(&self.engine, path)
    }

    /// How many loads hit the compiled-code cache and how many compiled.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Loads the scheduler policy in `path` as plugin `name` (the name used in errors, logs and
    /// metrics), pre-instantiates it and checks it exports at least `scheduler-policy-base`.
    ///
    /// The plugin is not instantiated until [`SchedulerPlugin::configure`].
    pub fn scheduler_plugin(
        &self,
        name: &str,
        path: &Path,
        limits: PluginLimits,
    ) -> Result<SchedulerPlugin> {
        let component = self.load_component(path)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Link {
                plugin: name.to_string(),
                source: e.into(),
            })?;
        SchedulerPlugin::new(name, pre, limits, self.epoch_tick, self.ticker.clone())
    }
}
