//! The typed handle on a scheduler-policy plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap};

use crate::metrics::PluginMetrics;
use crate::state::StoreState;
use crate::{Error, PluginLimits, Result};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "keelson:plugin/scheduler-policy@0.1.0",
        additional_derives: [PartialEq],
    });
}

use bindings::exports::keelson::plugin::{
    filter, lifecycle, normalize_score, pre_filter, scheduler, score,
};
use bindings::keelson::plugin::types::PluginError;

pub use bindings::keelson::plugin::scheduler_types::{
    CycleOutcome, FilterResult, GroupCount, HostPort, NodeAffinity, NodeInfo, NodeSelectorTerm,
    PodAffinity, PodAffinityTerm, PodInfo, PreFilterResult, PreferredNodeTerm, Protocol, Taint,
    TaintEffect, Toleration, TolerationOperator, TopologySpread, UnsatisfiableAction,
    WeightedPodAffinityTerm,
};
pub use bindings::keelson::plugin::types::{
    NamedQuantity, Resources, SelectorOperator, SelectorRequirement,
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

struct Indices {
    lifecycle: lifecycle::GuestIndices,
    scheduler: scheduler::GuestIndices,
    pre_filter: Option<pre_filter::GuestIndices>,
    filter: Option<filter::GuestIndices>,
    score: Option<score::GuestIndices>,
    normalize: Option<normalize_score::GuestIndices>,
}

struct Live {
    store: Store<StoreState>,
    exports: Exports,
}

struct Exports {
    lifecycle: lifecycle::Guest,
    scheduler: scheduler::Guest,
    pre_filter: Option<pre_filter::Guest>,
    filter: Option<filter::Guest>,
    score: Option<score::Guest>,
    normalize: Option<normalize_score::Guest>,
}

/// A scheduler policy plugin: one pre-instantiated component and, once configured, one live
/// instance at a time.
///
/// Methods for extension points the component does not export return `Ok(None)` without
/// calling it. A call that traps, misses its deadline or hits the memory cap returns the
/// matching [`Error`] and discards the instance; the next call creates a fresh one, configures
/// it with the last options and replays the node table, so callers just carry on.
pub struct SchedulerPlugin {
    name: Arc<str>,
    pre: InstancePre<StoreState>,
    indices: Indices,
    limits: PluginLimits,
    epoch_tick: Duration,
    // Keeps the epoch ticker running while this plugin lives, even if the host is dropped:
    // without it deadlines would never fire.
    _ticker: Arc<crate::Ticker>,
    options: Option<String>,
    nodes: BTreeMap<u32, NodeInfo>,
    live: Option<Live>,
    metrics: PluginMetrics,
}

impl SchedulerPlugin {
    pub(crate) fn new(
        name: &str,
        pre: InstancePre<StoreState>,
        limits: PluginLimits,
        epoch_tick: Duration,
        ticker: Arc<crate::Ticker>,
    ) -> Result<Self> {
        let missing = |interface| Error::MissingExport {
            plugin: name.to_string(),
            interface,
        };
        let indices = Indices {
            lifecycle: lifecycle::GuestIndices::new(&pre)
                .map_err(|_| missing("keelson:plugin/lifecycle@0.1.0"))?,
            scheduler: scheduler::GuestIndices::new(&pre)
                .map_err(|_| missing("keelson:plugin/scheduler@0.1.0"))?,
            pre_filter: pre_filter::GuestIndices::new(&pre).ok(),
            filter: filter::GuestIndices::new(&pre).ok(),
            score: score::GuestIndices::new(&pre).ok(),
            normalize: normalize_score::GuestIndices::new(&pre).ok(),
        };
        Ok(SchedulerPlugin {
            name: name.into(),
            pre,
            indices,
            limits,
            epoch_tick,
            _ticker: ticker,
            options: None,
            nodes: BTreeMap::new(),
            live: None,
            metrics: PluginMetrics::default(),
        })
    }

    /// The plugin's name as given to the host.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The optional extension points the component exports.
    pub fn extension_points(&self) -> ExtensionPoints {
        ExtensionPoints {
            pre_filter: self.indices.pre_filter.is_some(),
            filter: self.indices.filter.is_some(),
            score: self.indices.score.is_some(),
            normalize_score: self.indices.normalize.is_some(),
        }
    }

    /// A snapshot of the plugin's metrics.
    pub fn metrics(&self) -> PluginMetrics {
        self.metrics.clone()
    }

    /// The name the component reports for itself (`lifecycle.name`).
    pub fn reported_name(&mut self) -> Result<String> {
        self.call("name", |live, store| live.lifecycle.call_name(store))
    }

    /// Configures the plugin with `options` (JSON text), on a fresh instance.
    ///
    /// The node table the host keeps for replays is kept too, so a reconfigured plugin still
    /// knows every node. If the plugin rejects the options, later calls fail with
    /// [`Error::NotConfigured`] until `configure` succeeds.
    pub fn configure(&mut self, options: &str) -> Result<()> {
        self.live = None;
        self.options = Some(options.to_string());
        // Creating the instance is what calls the guest's `configure`, once per instance.
        let r = self.counted(|this| this.ensure_live());
        if let Err(Error::Plugin { .. }) = &r {
            self.options = None;
        }
        r
    }

    /// Adds `node` at `index` to the plugin's node table.
    pub fn node_added(&mut self, index: u32, node: NodeInfo) -> Result<()> {
        self.nodes.insert(index, node.clone());
        self.call("node-added", |live, store| {
            live.scheduler.call_node_added(store, index, &node)
        })
    }

    /// Replaces the node at `index`.
    pub fn node_updated(&mut self, index: u32, node: NodeInfo) -> Result<()> {
        self.nodes.insert(index, node.clone());
        self.call("node-updated", |live, store| {
            live.scheduler.call_node_updated(store, index, &node)
        })
    }

    /// Removes the node at `index`.
    pub fn node_removed(&mut self, index: u32) -> Result<()> {
        self.nodes.remove(&index);
        self.call("node-removed", |live, store| {
            live.scheduler.call_node_removed(store, index)
        })
    }

    /// Calls `pre-filter`, or returns `None` if the plugin does not export it.
    pub fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>> {
        if self.indices.pre_filter.is_none() {
            return Ok(None);
        }
        let r = self.call("pre-filter", |live, store| match &live.pre_filter {
            Some(g) => g.call_pre_filter(store, cycle, pod).map(Some),
            None => Ok(None),
        })?;
        r.map(|r| self.plugin_result("pre-filter", r)).transpose()
    }

    /// Calls `filter` over `candidates`, or returns `None` if the plugin does not export it.
    /// The result has one entry per candidate.
    pub fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[u32],
    ) -> Result<Option<Vec<FilterResult>>> {
        if self.indices.filter.is_none() {
            return Ok(None);
        }
        let r = self.call("filter", |live, store| match &live.filter {
            Some(g) => g.call_filter(store, cycle, pod, candidates).map(Some),
            None => Ok(None),
        })?;
        let Some(r) = r else { return Ok(None) };
        let results = self.plugin_result("filter", r)?;
        self.check_len("filter", results.len(), candidates.len())?;
        Ok(Some(results))
    }

    /// The filter reasons from id `start` on (empty if the plugin does not export `filter`).
    pub fn reasons(&mut self, start: u32) -> Result<Vec<String>> {
        if self.indices.filter.is_none() {
            return Ok(Vec::new());
        }
        self.call("reasons", |live, store| match &live.filter {
            Some(g) => g.call_reasons(store, start),
            None => Ok(Vec::new()),
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
        if self.indices.score.is_none() {
            return Ok(None);
        }
        let r = self.call("score", |live, store| match &live.score {
            Some(g) => g.call_score(store, cycle, pod, candidates).map(Some),
            None => Ok(None),
        })?;
        let Some(r) = r else { return Ok(None) };
        let scores = self.plugin_result("score", r)?;
        self.check_len("score", scores.len(), candidates.len())?;
        if self.indices.normalize.is_none() {
            self.check_range("score", &scores)?;
        }
        Ok(Some(scores))
    }

    /// Calls `normalize-score`, or returns `None` if the plugin does not export it.
    pub fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>> {
        if self.indices.normalize.is_none() {
            return Ok(None);
        }
        let r = self.call("normalize-score", |live, store| match &live.normalize {
            Some(g) => g.call_normalize_score(store, cycle, scores).map(Some),
            None => Ok(None),
        })?;
        let Some(r) = r else { return Ok(None) };
        let out = self.plugin_result("normalize-score", r)?;
        self.check_len("normalize-score", out.len(), scores.len())?;
        self.check_range("normalize-score", &out)?;
        Ok(Some(out))
    }

    /// Ends the cycle. Skipped when the instance was discarded during the cycle: the cycle's
    /// state went with it, and a fresh instance has none to drop.
    pub fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        if self.live.is_none() {
            return Ok(());
        }
        self.call("end-cycle", |live, store| {
            live.scheduler.call_end_cycle(store, cycle, outcome)
        })
    }

    fn plugin_result<T>(
        &mut self,
        call: &'static str,
        r: std::result::Result<T, PluginError>,
    ) -> Result<T> {
        r.map_err(|e| {
            self.metrics.errors += 1;
            Error::Plugin {
                plugin: self.name.to_string(),
                call,
                kind: e.kind,
                message: e.message,
            }
        })
    }

    fn check_len(&mut self, call: &'static str, got: usize, expected: usize) -> Result<()> {
        if got == expected {
            return Ok(());
        }
        self.metrics.errors += 1;
        Err(Error::InvalidResult {
            plugin: self.name.to_string(),
            call,
            reason: format!("{got} entries for {expected} inputs"),
        })
    }

    fn check_range(&mut self, call: &'static str, scores: &[i64]) -> Result<()> {
        match scores.iter().find(|s| !(0..=100).contains(*s)) {
            None => Ok(()),
            Some(s) => {
                self.metrics.errors += 1;
                Err(Error::InvalidResult {
                    plugin: self.name.to_string(),
                    call,
                    reason: format!("score {s} is outside 0..=100"),
                })
            }
        }
    }

    /// Runs one counted call on the live instance, creating it first if needed.
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&Exports, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        self.counted(|this| {
            this.ensure_live()?;
            this.raw_call(call, f)
        })
    }

    /// Runs `f` as one call in the metrics: counted, timed, its error classified.
    fn counted<R>(&mut self, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let start = Instant::now();
        let r = f(self);
        self.metrics.calls += 1;
        self.metrics.latency.record(start.elapsed());
        if let Err(e) = &r {
            self.metrics.errors += 1;
            match e {
                Error::Deadline { .. } => self.metrics.deadlines_exceeded += 1,
                Error::MemoryCap { .. } => self.metrics.memory_cap_hits += 1,
                Error::Trap { .. } => self.metrics.traps += 1,
                _ => {}
            }
        }
        r
    }

    /// Runs `f` under the deadline and classifies a failure; discards the instance on a trap.
    fn raw_call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&Exports, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let Some(live) = self.live.as_mut() else {
            return Err(Error::NotConfigured {
                plugin: self.name.to_string(),
                call,
            });
        };
        live.store.data_mut().begin_call(call);
        live.store
            .set_epoch_deadline(deadline_ticks(self.limits.deadline, self.epoch_tick));
        let r = f(&live.exports, &mut live.store);
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let memory_cap_hit = self
                    .live
                    .as_ref()
                    .is_some_and(|l| l.store.data().memory_cap_hit());
                self.live = None;
                let plugin = self.name.to_string();
                Err(if memory_cap_hit {
                    Error::MemoryCap {
                        plugin,
                        call,
                        limit: self.limits.memory,
                    }
                } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                    Error::Deadline {
                        plugin,
                        call,
                        deadline: self.limits.deadline,
                    }
                } else {
                    Error::Trap {
                        plugin,
                        call,
                        source: e.into(),
                    }
                })
            }
        }
    }

    /// Creates and configures an instance if there is none, replaying the node table.
    fn ensure_live(&mut self) -> Result<()> {
        if self.live.is_some() {
            return Ok(());
        }
        let Some(options) = self.options.clone() else {
            return Err(Error::NotConfigured {
                plugin: self.name.to_string(),
                call: "instantiate",
            });
        };
        let mut store = Store::new(
            self.pre.engine(),
            StoreState::new(self.name.clone(), self.limits.memory),
        );
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(deadline_ticks(self.limits.deadline, self.epoch_tick));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| Error::Instantiate {
                plugin: self.name.to_string(),
                source: e.into(),
            })?;
        let load_err = |e: wasmtime::Error| Error::Instantiate {
            plugin: self.name.to_string(),
            source: e.into(),
        };
        let i = &self.indices;
        let exports = Exports {
            lifecycle: i.lifecycle.load(&mut store, &instance).map_err(load_err)?,
            scheduler: i.scheduler.load(&mut store, &instance).map_err(load_err)?,
            pre_filter: i
                .pre_filter
                .as_ref()
                .map(|x| x.load(&mut store, &instance))
                .transpose()
                .map_err(load_err)?,
            filter: i
                .filter
                .as_ref()
                .map(|x| x.load(&mut store, &instance))
                .transpose()
                .map_err(load_err)?,
            score: i
                .score
                .as_ref()
                .map(|x| x.load(&mut store, &instance))
                .transpose()
                .map_err(load_err)?,
            normalize: i
                .normalize
                .as_ref()
                .map(|x| x.load(&mut store, &instance))
                .transpose()
                .map_err(load_err)?,
        };
        let live = Live { store, exports };
        self.live = Some(live);
        self.metrics.instances_created += 1;

        let r = self.raw_call("configure", |live, store| {
            live.lifecycle.call_configure(store, &options)
        })?;
        r.map_err(|e| Error::Plugin {
            plugin: self.name.to_string(),
            call: "configure",
            kind: e.kind,
            message: e.message,
        })
        .inspect_err(|_| self.live = None)?;
        let nodes: Vec<(u32, NodeInfo)> = self.nodes.iter().map(|(i, n)| (*i, n.clone())).collect();
        for (index, node) in nodes {
            self.raw_call("node-added", |live, store| {
                live.scheduler.call_node_added(store, index, &node)
            })?;
        }
        Ok(())
    }
}

/// Epoch ticks for `deadline`, plus one because the current tick is already partly elapsed.
fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
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
