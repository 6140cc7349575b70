//! The typed handle on an admission-check plugin, Wasm or native.

use std::time::Instant;

use keelson_plugin_abi::admission as f;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::bindings::exports::keelson::plugin::{lifecycle, mutate, validate};
use crate::bindings::keelson::plugin::types::PluginError;
use crate::format::PluginFormat;
use crate::instance::{Core, WasmExports};
use crate::metrics::PluginMetrics;
use crate::state::StoreState;
use crate::{Error, FailurePolicy, Result};

pub use crate::bindings::keelson::plugin::admission::{
    AdmissionRequest, AdmissionResponse, Operation, UserInfo,
};

pub(crate) struct Indices {
    lifecycle: lifecycle::GuestIndices,
    validate: Option<validate::GuestIndices>,
    mutate: Option<mutate::GuestIndices>,
}

pub(crate) struct Exports {
    lifecycle: lifecycle::Guest,
    validate: Option<validate::Guest>,
    mutate: Option<mutate::Guest>,
}

impl WasmExports for Exports {
    type Indices = Indices;

    fn indices(plugin: &str, pre: &InstancePre<StoreState>) -> Result<Indices> {
        let missing = |interface| Error::MissingExport {
            plugin: plugin.to_string(),
            interface,
        };
        let indices = Indices {
            lifecycle: lifecycle::GuestIndices::new(pre)
                .map_err(|_| missing("keelson:plugin/lifecycle@0.1.0"))?,
            validate: validate::GuestIndices::new(pre).ok(),
            mutate: mutate::GuestIndices::new(pre).ok(),
        };
        if indices.validate.is_none() && indices.mutate.is_none() {
            return Err(missing(
                "keelson:plugin/validate@0.1.0 or keelson:plugin/mutate@0.1.0",
            ));
        }
        Ok(indices)
    }

    fn load(
        i: &Indices,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self> {
        Ok(Exports {
            lifecycle: i.lifecycle.load(&mut *store, instance)?,
            validate: i
                .validate
                .as_ref()
                .map(|x| x.load(&mut *store, instance))
                .transpose()?,
            mutate: i
                .mutate
                .as_ref()
                .map(|x| x.load(&mut *store, instance))
                .transpose()?,
        })
    }

    fn lifecycle(&self) -> &lifecycle::Guest {
        &self.lifecycle
    }
}

/// Which admission extension points a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPoints {
    /// `validate`.
    pub validate: bool,
    /// `mutate`.
    pub mutate: bool,
}

/// The decision [`AdmissionPlugin::admit`] reached, with the plugin's failure policy applied.
#[derive(Debug)]
pub struct AdmissionOutcome {
    /// The response to apply: the plugin's own, a plain allow when the plugin does not export
    /// the extension point, or the one the failure policy made.
    pub response: AdmissionResponse,
    /// Why the plugin's own decision is missing, when the failure policy decided instead: a
    /// denial naming the plugin and the call (fail closed) or an allow (fail open).
    pub failure: Option<Error>,
}

impl AdmissionOutcome {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.response.allowed
    }
}

/// An admission-check plugin: a Wasm component or a native library and, once configured, one
/// live instance at a time.
///
/// [`validate`](Self::validate) and [`mutate`](Self::mutate) return `Ok(None)` when the plugin
/// does not export them and report failures as errors; [`admit`](Self::admit) applies the
/// plugin's failure policy and always gives a decision. A call that traps, misses its deadline,
/// hits the memory cap or (native) panics discards the instance; the next call runs on a fresh
/// one configured with the last options.
pub struct AdmissionPlugin {
    core: Core<Exports>,
    points: AdmissionPoints,
}

impl AdmissionPlugin {
    pub(crate) fn new(core: Core<Exports>) -> Self {
        let points = AdmissionPoints {
            validate: core.exports("validate", |i| i.validate.is_some()),
            mutate: core.exports("mutate", |i| i.mutate.is_some()),
        };
        AdmissionPlugin { core, points }
    }

    /// The plugin's name as given to the host.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Whether the plugin runs as a Wasm component or a native library.
    pub fn format(&self) -> PluginFormat {
        self.core.format()
    }

    /// The plugin's failure policy, applied by [`admit`](Self::admit).
    pub fn failure_policy(&self) -> FailurePolicy {
        self.core.failure_policy
    }

    /// Which extension points the plugin exports.
    pub fn extension_points(&self) -> AdmissionPoints {
        self.points
    }

    /// A snapshot of the plugin's metrics.
    pub fn metrics(&self) -> PluginMetrics {
        self.core.metrics.clone()
    }

    /// The name the plugin reports for itself (`lifecycle.name`). Works before `configure`,
    /// on a throwaway instance.
    pub fn reported_name(&mut self) -> Result<String> {
        self.counted(|this| {
            if this.core.options.is_none() && !this.core.is_live() {
                this.core.instantiate()?;
                let r = this.core.name_call();
                this.core.discard();
                return r;
            }
            this.ensure_live()?;
            this.core.name_call()
        })
    }

    /// Configures the plugin with `options` (JSON text), on a fresh instance. If the plugin
    /// rejects them, later calls fail with [`Error::NotConfigured`] until `configure`
    /// succeeds.
    pub fn configure(&mut self, options: &str) -> Result<()> {
        self.core.discard();
        self.core.options = Some(options.to_string());
        let r = self.counted(|this| this.ensure_live());
        if let Err(Error::Plugin { .. }) = &r {
            self.core.options = None;
        }
        r
    }

    /// Calls `validate`, or returns `None` if the plugin does not export it. A response with a
    /// patch, or a denial with a status code outside 400..=599, is an invalid result.
    pub fn validate(&mut self, request: &AdmissionRequest) -> Result<Option<AdmissionResponse>> {
        if !self.points.validate {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<AdmissionResponse, PluginError> =
                this.core
                    .call("validate", f::VALIDATE, &(request,), |x, s| {
                        match &x.validate {
                            Some(g) => g.call_validate(s, request),
                            None => Err(wasmtime::Error::msg("validate is not exported")),
                        }
                    })?;
            let response = r.map_err(|e| this.core.plugin_error("validate", e))?;
            if response.patch.is_some() {
                return Err(this
                    .core
                    .invalid("validate", "only mutate may return a patch".into()));
            }
            this.check_response("validate", &response)?;
            Ok(Some(response))
        })
    }

    /// Calls `mutate`, or returns `None` if the plugin does not export it. A patch that is not
    /// a JSON array, or a denial with a status code outside 400..=599, is an invalid result;
    /// whether the patch applies is for the caller to find out.
    pub fn mutate(&mut self, request: &AdmissionRequest) -> Result<Option<AdmissionResponse>> {
        if !self.points.mutate {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<AdmissionResponse, PluginError> =
                this.core
                    .call("mutate", f::MUTATE, &(request,), |x, s| match &x.mutate {
                        Some(g) => g.call_mutate(s, request),
                        None => Err(wasmtime::Error::msg("mutate is not exported")),
                    })?;
            let response = r.map_err(|e| this.core.plugin_error("mutate", e))?;
            if let Some(patch) = &response.patch {
                let parsed: std::result::Result<serde_json::Value, _> = serde_json::from_str(patch);
                if !matches!(parsed, Ok(serde_json::Value::Array(_))) {
                    return Err(this
                        .core
                        .invalid("mutate", "the patch is not a JSON Patch array".into()));
                }
            }
            this.check_response("mutate", &response)?;
            Ok(Some(response))
        })
    }

    /// Runs `mutate` (when `mutate` is true) or `validate` and applies the failure policy to
    /// any failure: fail closed denies with HTTP 500 and a message naming the plugin and the
    /// call; fail open allows, logs a warning and counts [`PluginMetrics::failed_open`]. A
    /// plugin that does not export the extension point allows the request unchanged.
    pub fn admit(&mut self, request: &AdmissionRequest, mutate: bool) -> AdmissionOutcome {
        let r = if mutate {
            self.mutate(request)
        } else {
            self.validate(request)
        };
        match r {
            Ok(Some(response)) => AdmissionOutcome {
                response,
                failure: None,
            },
            Ok(None) => AdmissionOutcome {
                response: allow(),
                failure: None,
            },
            Err(error) => match self.core.failure_policy {
                FailurePolicy::FailClosed => AdmissionOutcome {
                    response: AdmissionResponse {
                        allowed: false,
                        message: Some(format!("admission plugin failed and fails closed: {error}")),
                        status_code: Some(500),
                        ..allow()
                    },
                    failure: Some(error),
                },
                FailurePolicy::FailOpen => {
                    self.core.metrics.failed_open += 1;
                    tracing::warn!(
                        plugin = %self.core.name,
                        request = %request.uid,
                        error = %error,
                        "admission plugin failed; admitting the request (fail open)"
                    );
                    AdmissionOutcome {
                        response: allow(),
                        failure: Some(error),
                    }
                }
            },
        }
    }

    fn check_response(&self, call: &'static str, response: &AdmissionResponse) -> Result<()> {
        match response.status_code {
            Some(code) if !response.allowed && !(400..=599).contains(&code) => Err(self
                .core
                .invalid(call, format!("status code {code} is outside 400..=599"))),
            _ => Ok(()),
        }
    }

    fn counted<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let r = f(self);
        self.core.record(start, &r);
        r
    }

    fn ensure_live(&mut self) -> Result<()> {
        if self.core.is_live() {
            return Ok(());
        }
        self.core.start()
    }
}

fn allow() -> AdmissionResponse {
    AdmissionResponse {
        allowed: true,
        message: None,
        status_code: None,
        patch: None,
        warnings: Vec::new(),
    }
}
