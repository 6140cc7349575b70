//! The typed handle on a scheduler-policy plugin, Wasm or native.

use std::collections::BTreeMap;
use std::time::Instant;

use keelson_plugin_abi::scheduler as f;
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::bindings::exports::keelson::plugin::{
    filter, lifecycle, normalize_score, pre_filter, scheduler, score,
};
use crate::bindings::keelson::plugin::types::PluginError;
use crate::format::PluginFormat;
use crate::instance::{Core, WasmExports};
use crate::metrics::PluginMetrics;
use crate::state::StoreState;
use crate::{Error, ErrorKind, FailurePolicy, Result};

pub use crate::bindings::keelson::plugin::scheduler_types::{
    CycleOutcome, DiskVolume, FilterResult, GroupCount, HostPort, NodeAffinity, NodeInfo,
    NodeSelectorTerm, PodAffinity, PodAffinityTerm, PodInfo, PreFilterResult, PreferredNodeTerm,
    Protocol, Taint, TaintEffect, Toleration, TolerationOperator, TopologySpread,
    UnsatisfiableAction, WeightedPodAffinityTerm,
};

/// Which optional extension points a scheduler plugin exports; the host calls only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionPoints {
    /// `pre-filter`.
    pub pre_filter: bool,
    /// `filter` (with `reasons`).
    pub filter: bool,
    /// `score`.
    pub score: bool,
    /// `normalize-score`.
    pub normalize_score: bool,
}

pub(crate) struct Indices {
    lifecycle: lifecycle::GuestIndices,
    scheduler: scheduler::GuestIndices,
    pre_filter: Option<pre_filter::GuestIndices>,
    filter: Option<filter::GuestIndices>,
    score: Option<score::GuestIndices>,
    normalize: Option<normalize_score::GuestIndices>,
}

pub(crate) struct Exports {
    lifecycle: lifecycle::Guest,
    scheduler: scheduler::Guest,
    pre_filter: Option<pre_filter::Guest>,
    filter: Option<filter::Guest>,
    score: Option<score::Guest>,
    normalize: Option<normalize_score::Guest>,
}

fn load_opt<I, G>(
    indices: Option<&I>,
    load: impl FnOnce(&I) -> wasmtime::Result<G>,
) -> wasmtime::Result<Option<G>> {
    indices.map(load).transpose()
}

impl WasmExports for Exports {
    type Indices = Indices;

    fn indices(plugin: &str, pre: &InstancePre<StoreState>) -> Result<Indices> {
        let missing = |interface| Error::MissingExport {
            plugin: plugin.to_string(),
            interface,
        };
        Ok(Indices {
            lifecycle: lifecycle::GuestIndices::new(pre)
                .map_err(|_| missing("keelson:plugin/lifecycle@0.1.0"))?,
            scheduler: scheduler::GuestIndices::new(pre)
                .map_err(|_| missing("keelson:plugin/scheduler@0.1.0"))?,
            pre_filter: pre_filter::GuestIndices::new(pre).ok(),
            filter: filter::GuestIndices::new(pre).ok(),
            score: score::GuestIndices::new(pre).ok(),
            normalize: normalize_score::GuestIndices::new(pre).ok(),
        })
    }

    fn load(
        i: &Indices,
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self> {
        Ok(Exports {
            lifecycle: i.lifecycle.load(&mut *store, instance)?,
            scheduler: i.scheduler.load(&mut *store, instance)?,
            pre_filter: load_opt(i.pre_filter.as_ref(), |x| x.load(&mut *store, instance))?,
            filter: load_opt(i.filter.as_ref(), |x| x.load(&mut *store, instance))?,
            score: load_opt(i.score.as_ref(), |x| x.load(&mut *store, instance))?,
            normalize: load_opt(i.normalize.as_ref(), |x| x.load(&mut *store, instance))?,
        })
    }

    fn lifecycle(&self) -> &lifecycle::Guest {
        &self.lifecycle
    }
}

/// What the scheduler does after a plugin call failed; see [`SchedulerPlugin::on_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// The plugin judged the pod unschedulable in this cycle (a `pre-filter` error of kind
    /// `unschedulable` or `unresolvable`): not a failure, whatever the policy.
    Unschedulable {
        /// Whether preempting other pods would not help (`unresolvable`).
        unresolvable: bool,
        /// The plugin's reason, shown on the pod.
        message: String,
    },
    /// Fail open: leave this plugin out for the rest of the cycle and go on without it.
    SkipPlugin,
    /// Fail closed: the cycle fails and the pod is retried with backoff.
    FailCycle,
}

/// A scheduler policy plugin: a Wasm component or a native library and, once configured, one
/// live instance at a time.
///
/// Methods for extension points the plugin does not export return `Ok(None)` without calling
/// it. A call that traps, misses its deadline, hits the memory cap or (native) panics returns
/// the matching [`Error`] and discards the instance; the next call creates a fresh one,
/// configures it with the last options and replays the node table, so callers just carry on.
///
/// The failure policy is applied by the scheduler through [`on_error`](Self::on_error): with
/// fail open, a failing plugin is skipped for the rest of that cycle; with fail closed (the
/// default) the cycle fails.
pub struct SchedulerPlugin {
    core: Core<Exports>,
    points: ExtensionPoints,
    nodes: BTreeMap<u32, NodeInfo>,
}

impl SchedulerPlugin {
    pub(crate) fn new(core: Core<Exports>) -> Self {
        let points = ExtensionPoints {
            pre_filter: core.exports("pre-filter", |i| i.pre_filter.is_some()),
            filter: core.exports("filter", |i| i.filter.is_some()),
            score: core.exports("score", |i| i.score.is_some()),
            normalize_score: core.exports("normalize-score", |i| i.normalize.is_some()),
        };
        SchedulerPlugin {
            core,
            points,
            nodes: BTreeMap::new(),
        }
    }

    /// The plugin's name as given to the host.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Whether the plugin runs as a Wasm component or a native library.
    pub fn format(&self) -> PluginFormat {
        self.core.format()
    }

    /// The plugin's failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.core.failure_policy
    }

    /// The optional extension points the plugin exports.
    pub fn extension_points(&self) -> ExtensionPoints {
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

    /// Configures the plugin with `options` (JSON text), on a fresh instance.
    ///
    /// The node table the host keeps for replays is kept too, so a reconfigured plugin still
    /// knows every node. If the plugin rejects the options, later calls fail with
    /// [`Error::NotConfigured`] until `configure` succeeds.
    pub fn configure(&mut self, options: &str) -> Result<()> {
        self.core.discard();
        self.core.options = Some(options.to_string());
        let r = self.counted(|this| this.ensure_live());
        if let Err(Error::Plugin { .. }) = &r {
            self.core.options = None;
        }
        r
    }

    /// Decides what a failed call means for the cycle, applying the failure policy: an
    /// `unschedulable`/`unresolvable` plugin error is a verdict, not a failure; any other error
    /// skips the plugin for the cycle when it fails open (counted in
    /// [`PluginMetrics::failed_open`] and logged) and fails the cycle when it fails closed.
    pub fn on_error(&mut self, error: &Error) -> FailureAction {
        if let Error::Plugin {
            kind: kind @ (ErrorKind::Unschedulable | ErrorKind::Unresolvable),
            message,
            ..
        } = error
        {
            return FailureAction::Unschedulable {
                unresolvable: *kind == ErrorKind::Unresolvable,
                message: message.clone(),
            };
        }
        match self.core.failure_policy {
            FailurePolicy::FailClosed => FailureAction::FailCycle,
            FailurePolicy::FailOpen => {
                self.core.metrics.failed_open += 1;
                tracing::warn!(plugin = %self.core.name, error = %error, "scheduler plugin failed; skipping it for this cycle (fail open)");
                FailureAction::SkipPlugin
            }
        }
    }

    /// Adds `node` at `index` to the plugin's node table.
    pub fn node_added(&mut self, index: u32, node: NodeInfo) -> Result<()> {
        self.nodes.insert(index, node.clone());
        self.call("node-added", f::NODE_ADDED, &(index, &node), |x, s| {
            x.scheduler.call_node_added(s, index, &node)
        })
    }

    /// Replaces the node at `index`.
    pub fn node_updated(&mut self, index: u32, node: NodeInfo) -> Result<()> {
        self.nodes.insert(index, node.clone());
        self.call("node-updated", f::NODE_UPDATED, &(index, &node), |x, s| {
            x.scheduler.call_node_updated(s, index, &node)
        })
    }

    /// Removes the node at `index`.
    pub fn node_removed(&mut self, index: u32) -> Result<()> {
        self.nodes.remove(&index);
        self.call("node-removed", f::NODE_REMOVED, &(index,), |x, s| {
            x.scheduler.call_node_removed(s, index)
        })
    }

    /// Calls `pre-filter`, or returns `None` if the plugin does not export it.
    pub fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>> {
        if !self.points.pre_filter {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<PreFilterResult, PluginError> =
                this.core
                    .call("pre-filter", f::PRE_FILTER, &(cycle, pod), |x, s| {
                        exported(&x.pre_filter)?.call_pre_filter(s, cycle, pod)
                    })?;
            r.map(Some)
                .map_err(|e| this.core.plugin_error("pre-filter", e))
        })
    }

    /// Calls `filter` over `candidates`, or returns `None` if the plugin does not export it.
    /// The result has one entry per candidate.
    pub fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[u32],
    ) -> Result<Option<Vec<FilterResult>>> {
        if !self.points.filter {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<Vec<FilterResult>, PluginError> =
                this.core
                    .call("filter", f::FILTER, &(cycle, pod, candidates), |x, s| {
                        exported(&x.filter)?.call_filter(s, cycle, pod, candidates)
                    })?;
            let results = r.map_err(|e| this.core.plugin_error("filter", e))?;
            this.check_len("filter", results.len(), candidates.len())?;
            Ok(Some(results))
        })
    }

    /// The filter reasons from id `start` on (empty if the plugin does not export `filter`).
    pub fn reasons(&mut self, start: u32) -> Result<Vec<String>> {
        if !self.points.filter {
            return Ok(Vec::new());
        }
        self.call("reasons", f::REASONS, &(start,), |x, s| {
            exported(&x.filter)?.call_reasons(s, start)
        })
    }

    /// Calls `score` over `candidates`, or returns `None` if the plugin does not export it.
    /// Unless the plugin exports `normalize-score`, every score is checked to be within 0..=100.
    pub fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[u32],
    ) -> Result<Option<Vec<i64>>> {
        if !self.points.score {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<Vec<i64>, PluginError> =
                this.core
                    .call("score", f::SCORE, &(cycle, pod, candidates), |x, s| {
                        exported(&x.score)?.call_score(s, cycle, pod, candidates)
                    })?;
            let scores = r.map_err(|e| this.core.plugin_error("score", e))?;
            this.check_len("score", scores.len(), candidates.len())?;
            if !this.points.normalize_score {
                this.check_range("score", &scores)?;
            }
            Ok(Some(scores))
        })
    }

    /// Calls `normalize-score`, or returns `None` if the plugin does not export it.
    pub fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>> {
        if !self.points.normalize_score {
            return Ok(None);
        }
        self.counted(|this| {
            this.ensure_live()?;
            let r: std::result::Result<Vec<i64>, PluginError> = this.core.call(
                "normalize-score",
                f::NORMALIZE_SCORE,
                &(cycle, scores),
                |x, s| exported(&x.normalize)?.call_normalize_score(s, cycle, scores),
            )?;
            let out = r.map_err(|e| this.core.plugin_error("normalize-score", e))?;
            this.check_len("normalize-score", out.len(), scores.len())?;
            this.check_range("normalize-score", &out)?;
            Ok(Some(out))
        })
    }

    /// Ends the cycle. Skipped when the instance was discarded during the cycle: the cycle's
    /// state went with it, and a fresh instance has none to drop.
    pub fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        if !self.core.is_live() {
            return Ok(());
        }
        self.call("end-cycle", f::END_CYCLE, &(cycle, outcome), |x, s| {
            x.scheduler.call_end_cycle(s, cycle, outcome)
        })
    }

    fn check_len(&self, call: &'static str, got: usize, expected: usize) -> Result<()> {
        if got == expected {
            return Ok(());
        }
        Err(self
            .core
            .invalid(call, format!("{got} entries for {expected} inputs")))
    }

    fn check_range(&self, call: &'static str, scores: &[i64]) -> Result<()> {
        match scores.iter().find(|s| !(0..=100).contains(*s)) {
            None => Ok(()),
            Some(s) => Err(self
                .core
                .invalid(call, format!("score {s} is outside 0..=100"))),
        }
    }

    /// Runs one counted call with no result to check.
    fn call<A, R>(
        &mut self,
        call: &'static str,
        func: u32,
        args: &A,
        wasm: impl FnOnce(&Exports, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        self.counted(|this| {
            this.ensure_live()?;
            this.core.call(call, func, args, wasm)
        })
    }

    /// Runs `f` as one call in the metrics.
    fn counted<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let r = f(self);
        self.core.record(start, &r);
        r
    }

    /// Creates and configures an instance if there is none, replaying the node table.
    fn ensure_live(&mut self) -> Result<()> {
        if self.core.is_live() {
            return Ok(());
        }
        self.core.start()?;
        for (index, node) in &self.nodes {
            let index = *index;
            self.core
                .call("node-added", f::NODE_ADDED, &(index, node), |x, s| {
                    x.scheduler.call_node_added(s, index, node)
                })?;
        }
        Ok(())
    }
}

/// The export the host checked was there before calling; a missing one is a host bug.
fn exported<G>(guest: &Option<G>) -> wasmtime::Result<&G> {
    guest
        .as_ref()
        .ok_or_else(|| wasmtime::Error::msg("extension point not exported"))
}
