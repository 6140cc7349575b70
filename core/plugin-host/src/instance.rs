//! What every plugin wrapper shares: one plugin's artifact (a pre-instantiated component or a
//! native library), its live instance, limits, metrics, and the call path that runs a call on
//! either format and classifies its failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Store, Trap};

use crate::bindings::exports::keelson::plugin::lifecycle;
use crate::bindings::keelson::plugin::types::PluginError;
use crate::format::PluginFormat;
use crate::metrics::PluginMetrics;
use crate::native::{NativeFailure, NativeInstance, NativeLibrary};
use crate::state::{HostImports, StoreState};
use crate::{Error, FailurePolicy, PluginLimits, PluginSpec, Result, Ticker};

/// The typed exports of one kind's world, loaded from a Wasm instance.
pub(crate) trait WasmExports: Sized + Send + 'static {
    /// Where each export lives in the component, resolved once per component.
    type Indices: Send + Sync + 'static;

    /// Resolves the exports, failing if a required one is missing.
    fn indices(plugin: &str, pre: &InstancePre<StoreState>) -> Result<Self::Indices>;

    /// Loads the exports of a fresh instance.
    fn load(
        indices: &Self::Indices,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self>;

    /// `lifecycle`, which every world exports.
    fn lifecycle(&self) -> &lifecycle::Guest;
}

/// What a plugin is instantiated from.
pub(crate) enum Artifact<X: WasmExports> {
    Wasm {
        pre: InstancePre<StoreState>,
        indices: X::Indices,
        epoch_tick: Duration,
        // Keeps the epoch ticker running while this plugin lives, even if the host is dropped:
        // without it deadlines would never fire.
        _ticker: Arc<Ticker>,
    },
    Native(Arc<NativeLibrary>),
}

enum Live<X> {
    Wasm {
        store: Store<StoreState>,
        exports: X,
    },
    Native(NativeInstance),
}

pub(crate) struct Core<X: WasmExports> {
    pub(crate) name: Arc<str>,
    artifact: Artifact<X>,
    pub(crate) limits: PluginLimits,
    pub(crate) failure_policy: FailurePolicy,
    imports: HostImports,
    live: Option<Live<X>>,
    /// The options of the last successful `configure`, replayed into fresh instances.
    pub(crate) options: Option<String>,
    pub(crate) metrics: PluginMetrics,
}

impl<X: WasmExports> Core<X> {
    pub(crate) fn new(spec: &PluginSpec, artifact: Artifact<X>, imports: HostImports) -> Self {
        Core {
            name: spec.name.as_str().into(),
            artifact,
            limits: spec.limits,
            failure_policy: spec.failure_policy,
            imports,
            live: None,
            options: None,
            metrics: PluginMetrics::default(),
        }
    }

    pub(crate) fn format(&self) -> PluginFormat {
        match &self.artifact {
            Artifact::Wasm { .. } => PluginFormat::WasmComponent,
            Artifact::Native(library) if library.builtin => PluginFormat::Builtin,
            Artifact::Native(_) => PluginFormat::NativeLibrary,
        }
    }

    /// Whether the plugin exports `interface` beyond its world's required exports; `wasm`
    /// answers for a component from its indices.
    pub(crate) fn exports(&self, interface: &str, wasm: impl FnOnce(&X::Indices) -> bool) -> bool {
        match &self.artifact {
            Artifact::Wasm { indices, .. } => wasm(indices),
            Artifact::Native(library) => library.exports(interface),
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    pub(crate) fn discard(&mut self) {
        self.live = None;
    }

    pub(crate) fn not_configured(&self, call: &'static str) -> Error {
        Error::NotConfigured {
            plugin: self.name.to_string(),
            call,
        }
    }

    pub(crate) fn plugin_error(&self, call: &'static str, e: PluginError) -> Error {
        Error::Plugin {
            plugin: self.name.to_string(),
            call,
            kind: e.kind,
            message: e.message,
        }
    }

    pub(crate) fn invalid(&self, call: &'static str, reason: String) -> Error {
        Error::InvalidResult {
            plugin: self.name.to_string(),
            call,
            reason,
        }
    }

    /// Records one call in the metrics: counted, timed, its error classified.
    pub(crate) fn record<R>(&mut self, start: Instant, r: &Result<R>) {
        self.metrics.calls += 1;
        self.metrics.latency.record(start.elapsed());
        if let Err(e) = r {
            self.metrics.errors += 1;
            match e {
                Error::Deadline { .. } => self.metrics.deadlines_exceeded += 1,
                Error::MemoryCap { .. } => self.metrics.memory_cap_hits += 1,
                Error::Trap { .. } | Error::Panic { .. } => self.metrics.traps += 1,
                _ => {}
            }
        }
    }

    /// Creates a fresh instance, not yet configured, replacing any live one.
    pub(crate) fn instantiate(&mut self) -> Result<()> {
        self.live = None;
        let instantiate_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Instantiate {
            plugin: self.name.to_string(),
            source: e,
        };
        let live = match &self.artifact {
            Artifact::Wasm {
                pre,
                indices,
                epoch_tick,
                ..
            } => {
                let mut store = Store::new(
                    pre.engine(),
                    StoreState::new(self.name.clone(), self.limits.memory, self.imports.clone()),
                );
                store.limiter(|s| s.limiter());
                store.set_epoch_deadline(deadline_ticks(self.limits.deadline, *epoch_tick));
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| instantiate_err(e.into()))?;
                let exports = X::load(indices, &mut store, &instance)
                    .map_err(|e| instantiate_err(e.into()))?;
                Live::Wasm { store, exports }
            }
            Artifact::Native(library) => Live::Native(
                NativeInstance::new(library.clone(), self.name.clone(), self.imports.clone())
                    .map_err(|e| instantiate_err(e.into()))?,
            ),
        };
        self.live = Some(live);
        self.metrics.instances_created += 1;
        Ok(())
    }

    /// Creates a fresh instance and configures it with the stored options. A plugin error
    /// discards the instance.
    pub(crate) fn start(&mut self) -> Result<()> {
        let Some(options) = self.options.clone() else {
            return Err(self.not_configured("instantiate"));
        };
        self.instantiate()?;
        let r = self.call(
            "configure",
            keelson_plugin_abi::lifecycle::CONFIGURE,
            &(options.as_str(),),
            |x, store| x.lifecycle().call_configure(store, &options),
        )?;
        r.map_err(|e| {
            self.live = None;
            self.plugin_error("configure", e)
        })
    }

    /// `lifecycle.name` on the live instance.
    pub(crate) fn name_call(&mut self) -> Result<String> {
        self.call(
            "name",
            keelson_plugin_abi::lifecycle::NAME,
            &(),
            |x, store| x.lifecycle().call_name(store),
        )
    }

    /// Runs one call on the live instance: `wasm` on a component; on a native library,
    /// function `func` with `args` encoded. A trap, a missed deadline, a hit memory cap or a
    /// panic discards the instance.
    pub(crate) fn call<A, R>(
        &mut self,
        call: &'static str,
        func: u32,
        args: &A,
        wasm: impl FnOnce(&X, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let name = self.name.clone();
        let plugin = || name.to_string();
        let Some(live) = self.live.as_mut() else {
            return Err(self.not_configured(call));
        };
        match live {
            Live::Wasm { store, exports } => {
                let Artifact::Wasm { epoch_tick, .. } = &self.artifact else {
                    unreachable!("a Wasm instance comes from a Wasm artifact");
                };
                store.data_mut().begin_call(call);
                store.set_epoch_deadline(deadline_ticks(self.limits.deadline, *epoch_tick));
                match wasm(exports, store) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        let memory_cap_hit = store.data().memory_cap_hit();
                        self.live = None;
                        Err(if memory_cap_hit {
                            Error::MemoryCap {
                                plugin: plugin(),
                                call,
                                limit: self.limits.memory,
                            }
                        } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                            Error::Deadline {
                                plugin: plugin(),
                                call,
                                deadline: self.limits.deadline,
                            }
                        } else {
                            Error::Trap {
                                plugin: plugin(),
                                call,
                                source: e.into(),
                            }
                        })
                    }
                }
            }
            Live::Native(instance) => {
                let abi = |message: String| Error::Abi {
                    plugin: plugin(),
                    call,
                    message,
                };
                let input = postcard::to_allocvec(args)
                    .map_err(|e| abi(format!("could not encode the arguments: {e}")))?;
                let start = Instant::now();
                let r = instance.call(call, func, &input);
                let elapsed = start.elapsed();
                if elapsed > self.limits.deadline {
                    self.metrics.native_deadline_overruns += 1;
                    tracing::warn!(
                        plugin = %self.name,
                        call,
                        ?elapsed,
                        deadline = ?self.limits.deadline,
                        "native plugin call ran past its deadline; native calls cannot be interrupted"
                    );
                }
                match r {
                    Ok(bytes) => postcard::from_bytes(&bytes)
                        .map_err(|e| abi(format!("could not decode the result: {e}"))),
                    Err(NativeFailure::Panic(message)) => {
                        self.live = None;
                        Err(Error::Panic {
                            plugin: plugin(),
                            call,
                            message,
                        })
                    }
                    Err(NativeFailure::BadInput(m)) => Err(abi(format!(
                        "the plugin could not decode the arguments: {m}"
                    ))),
                    Err(NativeFailure::UnknownFunction) => {
                        Err(abi("the plugin does not implement this function".into()))
                    }
                    Err(NativeFailure::Status(code, m)) => {
                        Err(abi(format!("unknown status {code}: {m}")))
                    }
                }
            }
        }
    }
}

/// Epoch ticks for `deadline`, plus one because the current tick is already partly elapsed.
pub(crate) fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_the_partial_tick() {
        let ms = Duration::from_millis(1);
        assert_eq!(deadline_ticks(Duration::from_millis(100), ms), 101);
        assert_eq!(deadline_ticks(Duration::from_micros(1500), ms), 3);
        assert_eq!(deadline_ticks(Duration::ZERO, ms), 1);
    }
}
