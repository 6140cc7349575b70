//! One scheduling cycle: predicates filter the candidate nodes, priorities score the ones
//! left, the weighted sum ranks them and a seeded RNG breaks ties, as v1's
//! `generic_scheduler.go` does.
//!
//! Built-in policies run in process over one [`NodeTable`] that the framework owns and lends
//! to each of them, so node data is never copied per policy. Plugin policies (Wasm or native)
//! keep their own table on the other side of the boundary; the framework forwards every node
//! event to them through [`ExternalPolicy`].
//!
//! # When a plugin fails
//!
//! A plugin loaded by [`Framework::new`] runs as a [`PluginPolicy`], which applies the entry's
//! failure policy (`"failurePolicy"` in the [config](crate::config)) through
//! [`SchedulerPlugin::on_error`]:
//!
//! - fail open (`Ignore`): the plugin is left out for the rest of the cycle; its filter passes
//!   every node and its score counts for nothing;
//! - fail closed (`Fail`, the default): the cycle fails with [`Error::Plugin`] naming the plugin
//!   and the call, and the scheduler retries the pod with backoff;
//! - whatever the policy, an error of kind `unschedulable` or `unresolvable` is the plugin's
//!   verdict on the pod: the cycle ends with [`Outcome::Unschedulable`], the plugin's message
//!   counted for every node still a candidate.
//!
//! A failed node event (`node-added`, `node-updated`, `node-removed`) is logged and otherwise
//! ignored. Such a failure is a trap or a missed deadline, after which the plugin host
//! discards the instance; the host keeps its own copy of the node table and replays it into the
//! next instance, so the plugin misses nothing. Failing [`Framework::upsert_node`] or
//! [`Framework::apply`] instead would stop the scheduler's node table from following the
//! cluster, and with it all scheduling.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use keelson_plugin_host::{FailureAction, PluginHost, PluginMetrics, PluginSpec, SchedulerPlugin};
use keelson_plugin_sdk::{
    CycleOutcome, FilterResult, NodeIndex, NodeInfo, NodeTable, PodInfo, PreFilterResult,
    SchedulerPolicy,
};
use keelson_scheduler_policies::Builtin;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{PolicyConfig, PolicyEntry, PolicySource};
use crate::{Error, Result};

/// The reason given for cordoned nodes (`spec.unschedulable`).
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The reason given for nodes whose `Ready` condition is not true.
pub const REASON_NOT_READY: &str = "node(s) were not ready";

/// A policy on the far side of a plugin boundary, seen with the SDK's types. Methods for
/// extension points the plugin does not export return `Ok(None)`.
///
/// An error fails the cycle, except [`Error::Unschedulable`], which makes the pod
/// unschedulable, and errors of the node events, which are logged (see the
/// [module docs](self#when-a-plugin-fails)).
///
/// [`PluginPolicy`] implements it with the plugin's failure policy applied, [`SchedulerPlugin`]
/// with every error failing the cycle; tests implement it with fakes.
pub trait ExternalPolicy: Send {
    /// A node was added at `index`.
    fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()>;
    /// The node at `index` changed.
    fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()>;
    /// The node at `index` is gone.
    fn node_removed(&mut self, index: NodeIndex) -> Result<()>;
    /// `pre-filter`.
    fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>>;
    /// `filter`.
    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<FilterResult>>>;
    /// The reason texts from id `start` on.
    fn reasons(&mut self, start: u32) -> Result<Vec<String>>;
    /// `score`.
    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<i64>>>;
    /// `normalize-score`.
    fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>>;
    /// `end-cycle`.
    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()>;
    /// A snapshot of the plugin's metrics, if it keeps any.
    fn metrics(&self) -> Option<PluginMetrics> {
        None
    }
}

/// Converts between the SDK's and the host's copies of the WIT types, which have the same
/// structure and serde derives.
fn convert<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    value: &A,
    plugin: &str,
    call: &'static str,
) -> Result<B> {
    postcard::to_allocvec(value)
        .and_then(|bytes| postcard::from_bytes(&bytes))
        .map_err(|e| Error::Plugin {
            plugin: plugin.to_string(),
            call,
            message: format!("converting types: {e}"),
        })
}

fn host_err(plugin: &SchedulerPlugin, call: &'static str, e: keelson_plugin_host::Error) -> Error {
    Error::Plugin {
        plugin: plugin.name().to_string(),
        call,
        message: e.to_string(),
    }
}

/// The outcome of a call the plugin host made: the outer error is the framework's own (the
/// types did not convert), the inner one the plugin's, for its failure policy to judge.
type HostResult<T> = Result<std::result::Result<T, keelson_plugin_host::Error>>;

/// The calls of a [`SchedulerPlugin`] with the SDK's types, the plugin's errors kept apart.
mod call {
    use super::*;

    pub(super) fn node_added(
        p: &mut SchedulerPlugin,
        index: NodeIndex,
        node: &NodeInfo,
    ) -> HostResult<()> {
        let n = convert(node, p.name(), "node-added")?;
        Ok(p.node_added(index, n))
    }

    pub(super) fn node_updated(
        p: &mut SchedulerPlugin,
        index: NodeIndex,
        node: &NodeInfo,
    ) -> HostResult<()> {
        let n = convert(node, p.name(), "node-updated")?;
        Ok(p.node_updated(index, n))
    }

    pub(super) fn pre_filter(
        p: &mut SchedulerPlugin,
        cycle: u64,
        pod: &PodInfo,
    ) -> HostResult<Option<PreFilterResult>> {
        let pod = convert(pod, p.name(), "pre-filter")?;
        match p.pre_filter(cycle, &pod) {
            Ok(r) => Ok(Ok(r
                .map(|r| convert(&r, p.name(), "pre-filter"))
                .transpose()?)),
            Err(e) => Ok(Err(e)),
        }
    }

    pub(super) fn filter(
        p: &mut SchedulerPlugin,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> HostResult<Option<Vec<FilterResult>>> {
        let pod = convert(pod, p.name(), "filter")?;
        match p.filter(cycle, &pod, candidates) {
            Ok(r) => Ok(Ok(r
                .map(|r| convert(&r, p.name(), "filter"))
                .transpose()?)),
            Err(e) => Ok(Err(e)),
        }
    }

    pub(super) fn score(
        p: &mut SchedulerPlugin,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> HostResult<Option<Vec<i64>>> {
        let pod = convert(pod, p.name(), "score")?;
        Ok(p.score(cycle, &pod, candidates))
    }

    pub(super) fn end_cycle(
        p: &mut SchedulerPlugin,
        cycle: u64,
        outcome: CycleOutcome,
    ) -> HostResult<()> {
        let o = convert(&outcome, p.name(), "end-cycle")?;
        Ok(p.end_cycle(cycle, o))
    }
}

/// Every error fails the cycle: the plugin's failure policy is not applied (see
/// [`PluginPolicy`] for that).
impl ExternalPolicy for SchedulerPlugin {
    fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        call::node_added(self, index, node)?.map_err(|e| host_err(self, "node-added", e))
    }

    fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        call::node_updated(self, index, node)?.map_err(|e| host_err(self, "node-updated", e))
    }

    fn node_removed(&mut self, index: NodeIndex) -> Result<()> {
        SchedulerPlugin::node_removed(self, index).map_err(|e| host_err(self, "node-removed", e))
    }

    fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>> {
        call::pre_filter(self, cycle, pod)?.map_err(|e| host_err(self, "pre-filter", e))
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<FilterResult>>> {
        call::filter(self, cycle, pod, candidates)?.map_err(|e| host_err(self, "filter", e))
    }

    fn reasons(&mut self, start: u32) -> Result<Vec<String>> {
        SchedulerPlugin::reasons(self, start).map_err(|e| host_err(self, "reasons", e))
    }

    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<i64>>> {
        call::score(self, cycle, pod, candidates)?.map_err(|e| host_err(self, "score", e))
    }

    fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>> {
        SchedulerPlugin::normalize_score(self, cycle, scores)
            .map_err(|e| host_err(self, "normalize-score", e))
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        call::end_cycle(self, cycle, outcome)?.map_err(|e| host_err(self, "end-cycle", e))
    }

    fn metrics(&self) -> Option<PluginMetrics> {
        Some(SchedulerPlugin::metrics(self))
    }
}

/// A plugin with its failure policy applied: each failed call of a cycle goes through
/// [`SchedulerPlugin::on_error`] (see the [module docs](self#when-a-plugin-fails)).
///
/// Once a fail-open plugin has failed in a cycle, its other calls in that cycle return
/// `Ok(None)` (no filter, no score) without reaching it, except `end-cycle`, which lets a live
/// instance drop the cycle's state. Node events are passed on as they are, errors included:
/// the framework logs those.
pub struct PluginPolicy {
    plugin: SchedulerPlugin,
    /// The cycle of the latest call; `reasons` has none of its own.
    cycle: u64,
    /// The cycle the plugin failed open in, if it has.
    skipped_cycle: Option<u64>,
}

impl PluginPolicy {
    /// Wraps a loaded, configured plugin, whose failure policy came from its
    /// [`PluginSpec`].
    pub fn new(plugin: SchedulerPlugin) -> PluginPolicy {
        PluginPolicy {
            plugin,
            cycle: 0,
            skipped_cycle: None,
        }
    }

    /// The plugin.
    pub fn plugin(&self) -> &SchedulerPlugin {
        &self.plugin
    }

    /// Notes `cycle` as the current one and says whether the plugin is left out of it.
    fn skipped(&mut self, cycle: u64) -> bool {
        self.cycle = cycle;
        self.skipped_cycle == Some(cycle)
    }

    /// Applies the failure policy to a call of the current cycle's: the call's result when the
    /// plugin succeeded or is left out (`T::default()`, "nothing"), else the error for the
    /// framework.
    fn judge<T: Default>(&mut self, call: &'static str, r: HostResult<T>) -> Result<T> {
        let e = match r? {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match self.plugin.on_error(&e) {
            FailureAction::SkipPlugin => {
                self.skipped_cycle = Some(self.cycle);
                Ok(T::default())
            }
            FailureAction::Unschedulable { message, .. } => Err(Error::Unschedulable {
                plugin: self.plugin.name().to_string(),
                call,
                message,
            }),
            FailureAction::FailCycle => Err(host_err(&self.plugin, call, e)),
        }
    }
}

impl ExternalPolicy for PluginPolicy {
    fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        ExternalPolicy::node_added(&mut self.plugin, index, node)
    }

    fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        ExternalPolicy::node_updated(&mut self.plugin, index, node)
    }

    fn node_removed(&mut self, index: NodeIndex) -> Result<()> {
        ExternalPolicy::node_removed(&mut self.plugin, index)
    }

    fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>> {
        if self.skipped(cycle) {
            return Ok(None);
        }
        let r = call::pre_filter(&mut self.plugin, cycle, pod);
        self.judge("pre-filter", r)
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<FilterResult>>> {
        if self.skipped(cycle) {
            return Ok(None);
        }
        let r = call::filter(&mut self.plugin, cycle, pod, candidates);
        self.judge("filter", r)
    }

    fn reasons(&mut self, start: u32) -> Result<Vec<String>> {
        // With no texts the framework names the plugin as the reason.
        if self.skipped(self.cycle) {
            return Ok(Vec::new());
        }
        let r = Ok(self.plugin.reasons(start));
        self.judge("reasons", r)
    }

    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<i64>>> {
        if self.skipped(cycle) {
            return Ok(None);
        }
        let r = call::score(&mut self.plugin, cycle, pod, candidates);
        self.judge("score", r)
    }

    fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>> {
        if self.skipped(cycle) {
            return Ok(None);
        }
        let r = Ok(self.plugin.normalize_score(cycle, scores));
        let normalized = self.judge("normalize-score", r)?;
        if self.skipped_cycle == Some(cycle) {
            // Left out now, after `score` succeeded: its raw scores must not count either.
            return Ok(Some(vec![0; scores.len()]));
        }
        Ok(normalized)
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        self.skipped(cycle);
        let r = call::end_cycle(&mut self.plugin, cycle, outcome);
        self.judge("end-cycle", r)
    }

    fn metrics(&self) -> Option<PluginMetrics> {
        Some(self.plugin.metrics())
    }
}

enum Runner {
    Builtin(Box<Builtin>),
    External {
        plugin: Box<dyn ExternalPolicy>,
        reasons: Vec<String>,
    },
}

struct Stage {
    name: String,
    weight: i64,
    runner: Runner,
}

fn builtin_err(name: &str, call: &'static str, e: keelson_plugin_sdk::PluginError) -> Error {
    Error::Plugin {
        plugin: name.to_string(),
        call,
        message: e.message,
    }
}

impl Stage {
    fn pre_filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
    ) -> Result<PreFilterResult> {
        match &mut self.runner {
            Runner::Builtin(b) => b
                .pre_filter(cycle, pod, nodes)
                .map_err(|e| builtin_err(&self.name, "pre-filter", e)),
            Runner::External { plugin, .. } => Ok(plugin
                .pre_filter(cycle, pod)?
                .unwrap_or(PreFilterResult::AllNodes)),
        }
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>> {
        let results = match &mut self.runner {
            Runner::Builtin(b) => b
                .filter(cycle, pod, nodes, candidates)
                .map_err(|e| builtin_err(&self.name, "filter", e))?,
            Runner::External { plugin, .. } => plugin
                .filter(cycle, pod, candidates)?
                .unwrap_or_else(|| vec![FilterResult::Pass; candidates.len()]),
        };
        if results.len() != candidates.len() {
            return Err(Error::Plugin {
                plugin: self.name.clone(),
                call: "filter",
                message: format!("{} results for {} nodes", results.len(), candidates.len()),
            });
        }
        Ok(results)
    }

    fn reason(&mut self, id: u32) -> Result<String> {
        match &mut self.runner {
            Runner::Builtin(_) => Ok(<Builtin as SchedulerPolicy>::reasons()
                .get(id as usize)
                .map_or_else(
                    || format!("node(s) didn't satisfy plugin(s) [{}]", self.name),
                    |r| r.to_string(),
                )),
            Runner::External { plugin, reasons } => {
                if reasons.len() <= id as usize {
                    reasons.extend(plugin.reasons(reasons.len() as u32)?);
                }
                Ok(reasons
                    .get(id as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("node(s) didn't satisfy plugin(s) [{}]", self.name)))
            }
        }
    }

    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>> {
        let scores = match &mut self.runner {
            Runner::Builtin(b) => {
                let raw = b
                    .score(cycle, pod, nodes, candidates)
                    .map_err(|e| builtin_err(&self.name, "score", e))?;
                b.normalize_score(cycle, raw)
                    .map_err(|e| builtin_err(&self.name, "normalize-score", e))?
            }
            Runner::External { plugin, .. } => {
                let raw = plugin
                    .score(cycle, pod, candidates)?
                    .unwrap_or_else(|| vec![0; candidates.len()]);
                match plugin.normalize_score(cycle, &raw)? {
                    Some(s) => s,
                    None => raw,
                }
            }
        };
        if scores.len() != candidates.len() {
            return Err(Error::Plugin {
                plugin: self.name.clone(),
                call: "score",
                message: format!("{} scores for {} nodes", scores.len(), candidates.len()),
            });
        }
        Ok(scores)
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        match &mut self.runner {
            Runner::Builtin(b) => {
                b.end_cycle(cycle, outcome);
                Ok(())
            }
            Runner::External { plugin, .. } => plugin.end_cycle(cycle, outcome),
        }
    }
}

/// Runs the predicates (those `run` says to) over `candidates`, counting each failing node
/// under its first failure's reason and leaving in `candidates` the nodes that pass them all.
fn filter_nodes(
    cycle: u64,
    pod: &PodInfo,
    nodes: &NodeTable,
    predicates: &mut [Stage],
    run: &[bool],
    candidates: &mut Vec<NodeIndex>,
    reasons: &mut BTreeMap<String, usize>,
) -> Result<()> {
    for (s, run) in predicates.iter_mut().zip(run) {
        if !run || candidates.is_empty() {
            continue;
        }
        let verdicts = s.filter(cycle, pod, nodes, candidates)?;
        let mut kept = Vec::with_capacity(candidates.len());
        let mut failed = Vec::new();
        for (i, v) in candidates.iter().zip(verdicts) {
            match v {
                FilterResult::Pass => kept.push(*i),
                FilterResult::Unschedulable(id) | FilterResult::Unresolvable(id) => {
                    failed.push(id);
                }
            }
        }
        // Every text first, so that a verdict while fetching them counts no node twice.
        let texts = failed
            .into_iter()
            .map(|id| s.reason(id))
            .collect::<Result<Vec<_>>>()?;
        for t in texts {
            *reasons.entry(t).or_default() += 1;
        }
        *candidates = kept;
    }
    Ok(())
}

/// Why no node fits a pod: how many nodes there were and how many failed for each reason,
/// printed as Kubernetes prints it in a `FailedScheduling` event.
///
/// ```
/// use keelson_scheduler::framework::FitError;
/// let mut e = FitError { total_nodes: 3, reasons: Default::default() };
/// e.reasons.insert("Insufficient cpu".into(), 2);
/// e.reasons.insert("node(s) didn't match Pod's node affinity/selector".into(), 1);
/// assert_eq!(
///     e.to_string(),
///     "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
/// );
/// let none = FitError { total_nodes: 0, reasons: Default::default() };
/// assert_eq!(none.to_string(), "no nodes available to schedule pods");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// Every node the scheduler knows, schedulable or not.
    pub total_nodes: usize,
    /// Reason text to the number of nodes that failed for it (each node counts once, for the
    /// first predicate it failed).
    pub reasons: BTreeMap<String, usize>,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kubernetes' FitError.Error(): "<count> <reason>" strings, sorted as strings.
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        if self.total_nodes == 0 {
            // What Kubernetes says when the cluster has no nodes at all.
            f.write_str("no nodes available to schedule pods")
        } else if parts.is_empty() {
            write!(f, "0/{} nodes are available.", self.total_nodes)
        } else {
            write!(
                f,
                "0/{} nodes are available: {}.",
                self.total_nodes,
                parts.join(", ")
            )
        }
    }
}

impl std::error::Error for FitError {}

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The pod goes to `node`.
    Scheduled {
        /// The node's name.
        node: String,
        /// The node's index in the table.
        index: NodeIndex,
        /// The winning total, Σ score × weight.
        score: i64,
    },
    /// No node fits.
    Unschedulable(FitError),
}

/// Runs scheduling cycles; see the [module docs](self).
pub struct Framework {
    nodes: NodeTable,
    slots: HashMap<String, NodeIndex>,
    free: Vec<NodeIndex>,
    next_slot: NodeIndex,
    predicates: Vec<Stage>,
    priorities: Vec<Stage>,
    rng: StdRng,
    next_cycle: u64,
    /// `percentageOfNodesToScore`: 0 for Kubernetes' adaptive default.
    percentage_to_score: u32,
    /// Where the next cycle starts looking, so every node gets its turn.
    next_start: usize,
}

/// Below this many feasible nodes wanted, every node is evaluated (Kubernetes'
/// `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// How many feasible nodes a cycle looks for among `total` candidates before it stops
/// filtering and scores what it found, as Kubernetes' `numFeasibleNodesToFind` decides:
/// `percentage` of them (0 means adaptive: 50% minus 1% per 125 nodes, at least 5%), never
/// fewer than 100, and all of them when `percentage` is 100 or there are fewer than 100.
///
/// ```
/// use keelson_scheduler::framework::feasible_nodes_to_find;
/// assert_eq!(feasible_nodes_to_find(80, 0), 80);
/// assert_eq!(feasible_nodes_to_find(500, 0), 230);   // 46%
/// assert_eq!(feasible_nodes_to_find(5_000, 0), 500); // 10%
/// assert_eq!(feasible_nodes_to_find(5_000, 100), 5_000);
/// assert_eq!(feasible_nodes_to_find(1_000, 5), 100);
/// ```
pub fn feasible_nodes_to_find(total: usize, percentage: u32) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return total;
    }
    let percentage = if percentage == 0 {
        (50 - (total / 125).min(45)).max(5)
    } else {
        percentage as usize
    };
    (total * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl fmt::Debug for Framework {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framework")
            .field("nodes", &self.slots.len())
            .field(
                "predicates",
                &self.predicates.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field(
                "priorities",
                &self.priorities.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Framework {
    /// A framework for `config`, loading plugin entries through `host`, each as a
    /// [`PluginPolicy`] with the entry's failure policy; `seed` seeds the tie-breaking RNG.
    pub fn new(config: &PolicyConfig, host: &PluginHost, seed: u64) -> Result<Framework> {
        Self::load_entries(config, seed, |entry, path, options| {
            let name = entry.name.as_str();
            let spec = PluginSpec::new(name, path).with_failure_policy(entry.failure_policy);
            let mut plugin = host.load_scheduler(&spec).map_err(|e| Error::Plugin {
                plugin: name.to_string(),
                call: "load",
                message: e.to_string(),
            })?;
            plugin.configure(options).map_err(|e| Error::Plugin {
                plugin: name.to_string(),
                call: "configure",
                message: e.to_string(),
            })?;
            Ok(Box::new(PluginPolicy::new(plugin)) as Box<dyn ExternalPolicy>)
        })
    }

    /// A framework for a config of built-in policies only (plugin entries are an error).
    pub fn builtin(config: &PolicyConfig, seed: u64) -> Result<Framework> {
        Self::with_loader(config, seed, |name, _, _| {
            Err(Error::Plugin {
                plugin: name.to_string(),
                call: "load",
                message: "plugins need a plugin host".into(),
            })
        })
    }

    /// A framework whose plugin entries are built by `load(name, path, options)`.
    ///
    /// `load` is not given the entries' [`failure_policy`](PolicyEntry::failure_policy): what
    /// it builds decides what a failed call means (a [`PluginPolicy`] applies the policy its
    /// plugin was loaded with; a bare [`SchedulerPlugin`] fails the cycle on every error).
    pub fn with_loader(
        config: &PolicyConfig,
        seed: u64,
        mut load: impl FnMut(&str, &std::path::Path, &str) -> Result<Box<dyn ExternalPolicy>>,
    ) -> Result<Framework> {
        Self::load_entries(config, seed, |entry, path, options| {
            load(&entry.name, path, options)
        })
    }

    /// A framework whose plugin entries are built by `load(entry, path, options)`.
    fn load_entries(
        config: &PolicyConfig,
        seed: u64,
        mut load: impl FnMut(&PolicyEntry, &std::path::Path, &str) -> Result<Box<dyn ExternalPolicy>>,
    ) -> Result<Framework> {
        let mut stage = |e: &PolicyEntry| -> Result<Stage> {
            let runner = match &e.source {
                PolicySource::Builtin(json) => {
                    Runner::Builtin(Box::new(Builtin::from_entry(json).map_err(|err| {
                        Error::Plugin {
                            plugin: e.name.clone(),
                            call: "configure",
                            message: err.to_string(),
                        }
                    })?))
                }
                PolicySource::Plugin { path, options } => Runner::External {
                    plugin: load(e, path, options)?,
                    reasons: Vec::new(),
                },
            };
            Ok(Stage {
                name: e.name.clone(),
                weight: i64::from(e.weight),
                runner,
            })
        };
        let predicates = config
            .predicates
            .iter()
            .map(&mut stage)
            .collect::<Result<_>>()?;
        let priorities = config
            .priorities
            .iter()
            .map(&mut stage)
            .collect::<Result<_>>()?;
        Ok(Framework {
            nodes: NodeTable::default(),
            slots: HashMap::new(),
            free: Vec::new(),
            next_slot: 0,
            predicates,
            priorities,
            rng: StdRng::seed_from_u64(seed),
            next_cycle: 1,
            percentage_to_score: 0,
            next_start: 0,
        })
    }

    /// Sets `percentageOfNodesToScore` (see [`feasible_nodes_to_find`]): 0 (the default) is
    /// Kubernetes' adaptive share, 100 evaluates every node in every cycle as v1 did.
    pub fn set_percentage_of_nodes_to_score(&mut self, percentage: u32) {
        self.percentage_to_score = percentage.min(100);
    }

    /// The shared node table.
    pub fn nodes(&self) -> &NodeTable {
        &self.nodes
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<NodeIndex> {
        self.slots.get(name).copied()
    }

    fn stages_mut(&mut self) -> impl Iterator<Item = &mut Stage> {
        self.predicates.iter_mut().chain(self.priorities.iter_mut())
    }

    /// The metrics of every plugin that keeps them, by entry name, predicates first.
    pub fn plugin_metrics(&self) -> Vec<(String, PluginMetrics)> {
        self.predicates
            .iter()
            .chain(&self.priorities)
            .filter_map(|s| match &s.runner {
                Runner::External { plugin, .. } => Some((s.name.clone(), plugin.metrics()?)),
                Runner::Builtin(_) => None,
            })
            .collect()
    }

    /// Adds the node, or replaces the node of the same name, and tells every policy. A plugin
    /// that fails to take the news is logged, not an error (see the
    /// [module docs](self#when-a-plugin-fails)).
    pub fn upsert_node(&mut self, node: NodeInfo) -> Result<NodeIndex> {
        let (index, added) = match self.slots.get(&node.name) {
            Some(&i) => (i, false),
            None => {
                // The smallest free index, so the table stays dense.
                let i = match self.free.pop() {
                    Some(i) => i,
                    None => {
                        let i = self.next_slot;
                        self.next_slot = i.checked_add(1).ok_or(Error::TooManyNodes)?;
                        i
                    }
                };
                self.slots.insert(node.name.clone(), i);
                (i, true)
            }
        };
        self.nodes.insert(index, node);
        let Framework {
            nodes,
            predicates,
            priorities,
            ..
        } = self;
        let node = nodes.get(index).ok_or(Error::TooManyNodes)?;
        for s in predicates.iter_mut().chain(priorities.iter_mut()) {
            match &mut s.runner {
                Runner::Builtin(b) => b.node_changed(index, nodes),
                Runner::External { plugin, .. } if added => {
                    log_node_event(&s.name, &node.name, plugin.node_added(index, node));
                }
                Runner::External { plugin, .. } => {
                    log_node_event(&s.name, &node.name, plugin.node_updated(index, node));
                }
            }
        }
        Ok(index)
    }

    /// Applies the cache's node changes. Plugins' failures are logged, as in
    /// [`upsert_node`](Self::upsert_node).
    pub fn apply(&mut self, changes: Vec<crate::cache::NodeChange>) -> Result<()> {
        for c in changes {
            match c {
                crate::cache::NodeChange::Upsert(n) => {
                    self.upsert_node(*n)?;
                }
                crate::cache::NodeChange::Remove(name) => self.remove_node(&name)?,
            }
        }
        Ok(())
    }

    /// Removes the node named `name`, if known, and tells every policy. A plugin that fails to
    /// take the news is logged, as in [`upsert_node`](Self::upsert_node).
    pub fn remove_node(&mut self, name: &str) -> Result<()> {
        let Some(index) = self.slots.remove(name) else {
            return Ok(());
        };
        self.nodes.remove(index);
        self.free.push(index);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        let Framework {
            nodes,
            predicates,
            priorities,
            ..
        } = self;
        for s in predicates.iter_mut().chain(priorities.iter_mut()) {
            match &mut s.runner {
                Runner::Builtin(b) => b.node_removed(index, nodes),
                Runner::External { plugin, .. } => {
                    log_node_event(&s.name, name, plugin.node_removed(index));
                }
            }
        }
        Ok(())
    }

    /// Runs one cycle for `pod`. The framework does not assume the pod anywhere: the caller
    /// updates the node (see [`Cache::assume`](crate::cache::Cache::assume)) and passes it to
    /// [`upsert_node`](Self::upsert_node).
    pub fn schedule(&mut self, pod: &PodInfo) -> Result<Outcome> {
        let cycle = self.next_cycle;
        self.next_cycle += 1;
        let result = self.run_cycle(cycle, pod);
        let outcome = match &result {
            Ok(Outcome::Scheduled { index, .. }) => CycleOutcome::Scheduled(*index),
            Ok(Outcome::Unschedulable(_)) => CycleOutcome::Unschedulable,
            Err(_) => CycleOutcome::Failed,
        };
        let mut ended = Ok(());
        for s in self.stages_mut() {
            let r = s.end_cycle(cycle, outcome);
            if ended.is_ok() {
                ended = r;
            }
        }
        let outcome = result?;
        ended?;
        Ok(outcome)
    }

    /// Runs the stages; a plugin's [`Error::Unschedulable`] verdict ends the cycle with the
    /// plugin's message as the reason of every node still a candidate.
    fn run_cycle(&mut self, cycle: u64, pod: &PodInfo) -> Result<Outcome> {
        let mut tally = Tally::default();
        match self.run_stages(cycle, pod, &mut tally) {
            Err(Error::Unschedulable { message, .. }) => {
                let Tally {
                    total_nodes,
                    mut reasons,
                    candidates,
                } = tally;
                if !candidates.is_empty() {
                    *reasons.entry(message).or_default() += candidates.len();
                }
                Ok(Outcome::Unschedulable(FitError {
                    total_nodes,
                    reasons,
                }))
            }
            other => other,
        }
    }

    fn run_stages(&mut self, cycle: u64, pod: &PodInfo, tally: &mut Tally) -> Result<Outcome> {
        let Framework {
            nodes,
            predicates,
            priorities,
            rng,
            percentage_to_score,
            next_start,
            ..
        } = self;
        let Tally {
            total_nodes,
            reasons,
            candidates,
        } = tally;
        for (i, n) in nodes.iter() {
            *total_nodes += 1;
            if n.unschedulable {
                *reasons.entry(REASON_UNSCHEDULABLE.into()).or_default() += 1;
            } else if !n.ready {
                *reasons.entry(REASON_NOT_READY.into()).or_default() += 1;
            } else {
                candidates.push(i);
            }
        }
        let mut run_filter = Vec::with_capacity(predicates.len());
        for s in predicates.iter_mut().chain(priorities.iter_mut()) {
            match s.pre_filter(cycle, pod, nodes)? {
                PreFilterResult::AllNodes => run_filter.push(true),
                PreFilterResult::Skip => run_filter.push(false),
                PreFilterResult::Nodes(only) => {
                    let before = candidates.len();
                    candidates.retain(|i| only.contains(i));
                    let dropped = before - candidates.len();
                    if dropped > 0 {
                        let r = format!("node(s) didn't satisfy plugin(s) [{}]", s.name);
                        *reasons.entry(r).or_default() += dropped;
                    }
                    run_filter.push(true);
                }
            }
        }
        // Predicates in order; a node leaves at its first failure, which is its reason. With
        // many nodes, filtering stops once enough feasible ones are found, starting each
        // cycle where the last one stopped.
        let want = feasible_nodes_to_find(candidates.len(), *percentage_to_score);
        if want >= candidates.len() {
            filter_nodes(
                cycle,
                pod,
                nodes,
                predicates,
                &run_filter,
                candidates,
                reasons,
            )?;
        } else {
            // `candidates` keeps every eligible node until filtering is done, for a plugin's
            // unschedulable verdict to count.
            let all = candidates.clone();
            let start = *next_start % all.len();
            let mut order = all[start..].iter().chain(&all[..start]).copied();
            let mut processed = 0;
            let mut feasible = Vec::with_capacity(want);
            while feasible.len() < want {
                let mut chunk: Vec<NodeIndex> =
                    order.by_ref().take(want - feasible.len()).collect();
                if chunk.is_empty() {
                    break;
                }
                processed += chunk.len();
                filter_nodes(
                    cycle,
                    pod,
                    nodes,
                    predicates,
                    &run_filter,
                    &mut chunk,
                    reasons,
                )?;
                feasible.extend(chunk);
            }
            *next_start = (start + processed) % all.len();
            *candidates = feasible;
        }
        if candidates.is_empty() {
            return Ok(Outcome::Unschedulable(FitError {
                total_nodes: *total_nodes,
                reasons: std::mem::take(reasons),
            }));
        }
        let mut totals = vec![0i64; candidates.len()];
        for s in priorities.iter_mut() {
            let scores = s.score(cycle, pod, nodes, candidates)?;
            for (t, score) in totals.iter_mut().zip(scores) {
                *t = t.saturating_add(score.saturating_mul(s.weight));
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let top: Vec<usize> = (0..candidates.len())
            .filter(|&k| totals[k] == best)
            .collect();
        let pick = top[rng.random_range(0..top.len())];
        let index = candidates[pick];
        let node = nodes.get(index).map(|n| n.name.clone()).unwrap_or_default();
        Ok(Outcome::Scheduled {
            node,
            index,
            score: best,
        })
    }
}

/// Where a cycle stands: every node counted, the reasons of those left out so far, the
/// candidates left.
#[derive(Default)]
struct Tally {
    total_nodes: usize,
    reasons: BTreeMap<String, usize>,
    candidates: Vec<NodeIndex>,
}

/// Logs a plugin's failed node event, which the plugin host recovers from by itself.
fn log_node_event(policy: &str, node: &str, result: Result<()>) {
    if let Err(error) = result {
        tracing::warn!(
            policy,
            node,
            %error,
            "scheduler plugin failed a node event; its next instance gets the whole node table"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;

    const HEAD: &str = r#""kind":"Policy","apiVersion":"v1""#;

    fn fw(policy: &str, seed: u64) -> Framework {
        let c = PolicyConfig::from_json(&format!("{{{HEAD},{policy}}}")).unwrap();
        Framework::builtin(&c, seed).unwrap()
    }

    fn chosen(f: &mut Framework, p: &PodInfo) -> String {
        match f.schedule(p).unwrap() {
            Outcome::Scheduled { node, .. } => node,
            Outcome::Unschedulable(e) => panic!("{e}"),
        }
    }

    fn fit_error(f: &mut Framework, p: &PodInfo) -> FitError {
        match f.schedule(p).unwrap() {
            Outcome::Unschedulable(e) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_many_nodes_filtering_stops_at_enough_feasible_ones_but_finds_rare_fits() {
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 5).unwrap();
        for i in 0..300 {
            let cpu = if i == 250 { 8000 } else { 1000 };
            f.upsert_node(node(&format!("n{i:03}")).cpu(cpu).build())
                .unwrap();
        }
        // 144 feasible nodes are wanted (48% of 300); only one node fits: every node is
        // looked at, and the message counts them all.
        assert_eq!(chosen(&mut f, &pod("big").cpu(4000).build()), "n250");
        assert_eq!(
            fit_error(&mut f, &pod("huge").cpu(9000).build()).to_string(),
            "0/300 nodes are available: 300 Insufficient cpu."
        );
        // Small pods fit everywhere: each cycle scores 144 nodes, starting where the last
        // one stopped, so successive cycles see different nodes.
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            seen.insert(chosen(&mut f, &pod("small").cpu(100).build()));
        }
        assert!(seen.len() > 1, "{seen:?}");
        // At 100%, as in v1, every node is evaluated.
        f.set_percentage_of_nodes_to_score(100);
        assert_eq!(chosen(&mut f, &pod("big").cpu(4000).build()), "n250");
    }

    #[test]
    fn message_counts_first_failures_and_excluded_nodes() {
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        f.upsert_node(node("a").cpu(4000).build()).unwrap();
        f.upsert_node(node("b").cpu(500).label("disk", "ssd").build())
            .unwrap();
        // Fails PodFitsResources and MatchNodeSelector: only the first (cpu) is counted.
        f.upsert_node(node("c").cpu(100).build()).unwrap();
        f.upsert_node(node("d").cordoned().build()).unwrap();
        f.upsert_node(node("e").not_ready().build()).unwrap();
        let p = pod("p").cpu(1000).node_selector("disk", "ssd").build();
        let e = fit_error(&mut f, &p);
        assert_eq!(e.total_nodes, 5);
        assert_eq!(
            e.to_string(),
            "0/5 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) were not ready, 1 node(s) were unschedulable, 2 Insufficient cpu."
        );
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        f.upsert_node(node("a").cpu(500).build()).unwrap();
        f.upsert_node(node("b").cpu(500).build()).unwrap();
        f.upsert_node(node("c").cpu(4000).build()).unwrap();
        let e = fit_error(&mut f, &pod("p").cpu(1000).node_selector("x", "y").build());
        // Resources run before the selector (v1 order), so a and b count as cpu.
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
        );
    }

    #[test]
    fn host_name_mismatch_is_reported() {
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        for n in ["a", "b", "c"] {
            f.upsert_node(node(n).build()).unwrap();
        }
        assert_eq!(chosen(&mut f, &pod("p").node_name("b").build()), "b");
        let e = fit_error(&mut f, &pod("p").node_name("zz").build());
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: 3 node(s) didn't match the requested node name."
        );
    }

    #[test]
    fn sdk_and_host_types_convert_both_ways() {
        let n = node("a")
            .label("zone", "z1")
            .used_port(80)
            .disk_volume("gce-pd:x", true)
            .group_count(3, 2)
            .taint("k", "v", keelson_plugin_sdk::TaintEffect::NoExecute)
            .build();
        let host: keelson_plugin_host::NodeInfo = convert(&n, "t", "node-added").unwrap();
        assert_eq!(host.name, "a");
        let back: NodeInfo = convert(&host, "t", "node-added").unwrap();
        assert_eq!(back, n);
        let p = pod("p")
            .cpu(5)
            .node_selector("a", "b")
            .selected_by(4, true)
            .build();
        let host: keelson_plugin_host::PodInfo = convert(&p, "t", "filter").unwrap();
        let back: PodInfo = convert(&host, "t", "filter").unwrap();
        assert_eq!(back, p);
        let r: keelson_plugin_host::FilterResult =
            convert(&FilterResult::Unresolvable(3), "t", "filter").unwrap();
        let back: FilterResult = convert(&r, "t", "filter").unwrap();
        assert_eq!(back, FilterResult::Unresolvable(3));
    }

    #[test]
    fn no_nodes() {
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        assert_eq!(
            fit_error(&mut f, &pod("p").build()).to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn weighted_sum_ranks_nodes() {
        // LeastRequested prefers the empty node; a label preference weighted 5 outweighs it.
        let mut f = fw(
            r#""predicates":[],"priorities":[
                {"name":"LeastRequestedPriority","weight":1},
                {"name":"PreferSsd","weight":5,"argument":{"labelPreference":{"label":"ssd","presence":true}}}]"#,
            3,
        );
        f.upsert_node(node("empty").build()).unwrap();
        f.upsert_node(
            node("busy")
                .label("ssd", "")
                .requested(1500, 3 << 30, 3)
                .build(),
        )
        .unwrap();
        assert_eq!(chosen(&mut f, &pod("p").build()), "busy");
        let mut f = fw(
            r#""predicates":[],"priorities":[
                {"name":"LeastRequestedPriority","weight":20},
                {"name":"PreferSsd","weight":1,"argument":{"labelPreference":{"label":"ssd","presence":true}}}]"#,
            3,
        );
        f.upsert_node(node("empty").build()).unwrap();
        f.upsert_node(
            node("busy")
                .label("ssd", "")
                .requested(1500, 3 << 30, 3)
                .build(),
        )
        .unwrap();
        assert_eq!(chosen(&mut f, &pod("p").build()), "empty");
    }

    #[test]
    fn total_is_sum_of_score_times_weight() {
        let mut f = fw(
            r#""predicates":[],"priorities":[{"name":"EqualPriority","weight":7}]"#,
            1,
        );
        f.upsert_node(node("a").build()).unwrap();
        match f.schedule(&pod("p").build()).unwrap() {
            Outcome::Scheduled { score, .. } => {
                // EqualPriority is 1 in v1, 10 on the 0..=100 scale.
                assert_eq!(score, 70);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ties_are_broken_at_random_but_reproducibly() {
        let run = |seed: u64| -> Vec<String> {
            let mut f = fw(
                r#""priorities":[{"name":"EqualPriority","weight":1}]"#,
                seed,
            );
            for n in ["a", "b", "c", "d"] {
                f.upsert_node(node(n).build()).unwrap();
            }
            (0..40)
                .map(|i| chosen(&mut f, &pod(&format!("p{i}")).build()))
                .collect()
        };
        let first = run(42);
        assert_eq!(first, run(42), "same seed, same picks");
        for n in ["a", "b", "c", "d"] {
            assert!(first.iter().any(|c| c == n), "{n} never picked: {first:?}");
        }
        assert_ne!(first, run(43));
        // A strictly better node always wins.
        let mut f = fw(r#""predicates":[]"#, 5);
        f.upsert_node(node("busy").requested(1500, 3 << 30, 3).build())
            .unwrap();
        f.upsert_node(node("idle").build()).unwrap();
        for i in 0..10 {
            assert_eq!(chosen(&mut f, &pod(&format!("p{i}")).build()), "idle");
        }
    }

    #[test]
    fn node_updates_and_removal_reuse_slots() {
        let mut f = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        let a = f.upsert_node(node("a").cpu(100).build()).unwrap();
        let b = f.upsert_node(node("b").cpu(100).build()).unwrap();
        assert_eq!((a, b), (0, 1));
        assert!(matches!(
            f.schedule(&pod("p").cpu(1000).build()).unwrap(),
            Outcome::Unschedulable(_)
        ));
        assert_eq!(f.upsert_node(node("b").cpu(4000).build()).unwrap(), 1);
        assert_eq!(chosen(&mut f, &pod("p").cpu(1000).build()), "b");
        f.remove_node("a").unwrap();
        f.remove_node("nope").unwrap();
        assert_eq!(f.index_of("a"), None);
        assert_eq!(
            f.upsert_node(node("c").build()).unwrap(),
            0,
            "smallest free index"
        );
        assert_eq!(f.nodes().iter().count(), 2);
    }

    #[derive(Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    /// A plugin that rejects node "a" with reason 0 and scores by index.
    struct Fake {
        log: Arc<Mutex<Vec<String>>>,
        names: BTreeMap<NodeIndex, String>,
    }

    impl ExternalPolicy for Fake {
        fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("added {index} {}", node.name));
            self.names.insert(index, node.name.clone());
            Ok(())
        }
        fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("updated {index} {}", node.name));
            Ok(())
        }
        fn node_removed(&mut self, index: NodeIndex) -> Result<()> {
            self.log.lock().unwrap().push(format!("removed {index}"));
            self.names.remove(&index);
            Ok(())
        }
        fn pre_filter(&mut self, _: u64, _: &PodInfo) -> Result<Option<PreFilterResult>> {
            Ok(None)
        }
        fn filter(
            &mut self,
            _: u64,
            _: &PodInfo,
            c: &[NodeIndex],
        ) -> Result<Option<Vec<FilterResult>>> {
            Ok(Some(
                c.iter()
                    .map(|i| match self.names.get(i).map(String::as_str) {
                        Some("a") => FilterResult::Unschedulable(0),
                        _ => FilterResult::Pass,
                    })
                    .collect(),
            ))
        }
        fn reasons(&mut self, start: u32) -> Result<Vec<String>> {
            Ok(["node(s) were too far away"]
                .iter()
                .skip(start as usize)
                .map(|s| s.to_string())
                .collect())
        }
        fn score(&mut self, _: u64, _: &PodInfo, c: &[NodeIndex]) -> Result<Option<Vec<i64>>> {
            Ok(Some(c.iter().map(|&i| i64::from(i)).collect()))
        }
        fn normalize_score(&mut self, _: u64, _: &[i64]) -> Result<Option<Vec<i64>>> {
            Ok(None)
        }
        fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("end {cycle} {outcome:?}"));
            Ok(())
        }
    }

    #[test]
    fn external_policies_get_node_events_and_run_in_the_cycle() {
        let log = Log::default();
        let c = PolicyConfig::from_json(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/p/far.wasm"}}],"priorities":[{{"path":"/p/far.wasm","name":"far-score","weight":2}}]}}"#
        ))
        .unwrap();
        let shared = log.0.clone();
        let mut f = Framework::with_loader(&c, 1, |name, path, options| {
            assert_eq!((path.to_str(), options), (Some("/p/far.wasm"), "{}"));
            shared.lock().unwrap().push(format!("load {name}"));
            Ok(Box::new(Fake {
                log: shared.clone(),
                names: BTreeMap::new(),
            }))
        })
        .unwrap();
        f.upsert_node(node("a").build()).unwrap();
        f.upsert_node(node("b").build()).unwrap();
        f.upsert_node(node("c").build()).unwrap();
        f.upsert_node(node("c").cpu(1).build()).unwrap();
        // Scores by index, weight 2: c (index 2) wins.
        assert_eq!(chosen(&mut f, &pod("p").build()), "c");
        f.remove_node("c").unwrap();
        f.remove_node("b").unwrap();
        let e = fit_error(&mut f, &pod("q").build());
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 node(s) were too far away."
        );
        let log = log.0.lock().unwrap().clone();
        assert_eq!(&log[..2], ["load far", "load far-score"]);
        for want in [
            "added 0 a",
            "updated 2 c",
            "removed 2",
            "end 1 CycleOutcome::Scheduled(2)",
            "end 2 CycleOutcome::Unschedulable",
        ] {
            assert_eq!(
                log.iter().filter(|l| *l == want).count(),
                2,
                "{want} in {log:?}"
            );
        }
    }

    /// A plugin that passes every node and scores them all 50, except that its `fail` call
    /// returns `error(call)`.
    struct Failing {
        fail: &'static str,
        error: fn(&'static str) -> Error,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Failing {
        fn call(&mut self, call: &'static str) -> Result<()> {
            self.log.lock().unwrap().push(call.to_string());
            if call == self.fail {
                return Err((self.error)(call));
            }
            Ok(())
        }
    }

    impl ExternalPolicy for Failing {
        fn node_added(&mut self, _: NodeIndex, _: &NodeInfo) -> Result<()> {
            self.call("node-added")
        }
        fn node_updated(&mut self, _: NodeIndex, _: &NodeInfo) -> Result<()> {
            self.call("node-updated")
        }
        fn node_removed(&mut self, _: NodeIndex) -> Result<()> {
            self.call("node-removed")
        }
        fn pre_filter(&mut self, _: u64, _: &PodInfo) -> Result<Option<PreFilterResult>> {
            self.call("pre-filter").map(|()| None)
        }
        fn filter(
            &mut self,
            _: u64,
            _: &PodInfo,
            c: &[NodeIndex],
        ) -> Result<Option<Vec<FilterResult>>> {
            self.call("filter")
                .map(|()| Some(vec![FilterResult::Pass; c.len()]))
        }
        fn reasons(&mut self, _: u32) -> Result<Vec<String>> {
            self.call("reasons").map(|()| Vec::new())
        }
        fn score(&mut self, _: u64, _: &PodInfo, c: &[NodeIndex]) -> Result<Option<Vec<i64>>> {
            self.call("score").map(|()| Some(vec![50; c.len()]))
        }
        fn normalize_score(&mut self, _: u64, _: &[i64]) -> Result<Option<Vec<i64>>> {
            self.call("normalize-score").map(|()| None)
        }
        fn end_cycle(&mut self, _: u64, outcome: CycleOutcome) -> Result<()> {
            self.call("end-cycle")?;
            self.log.lock().unwrap().push(format!("{outcome:?}"));
            Ok(())
        }
    }

    fn unschedulable(call: &'static str) -> Error {
        Error::Unschedulable {
            plugin: "failing".into(),
            call,
            message: "zone z1 is full".into(),
        }
    }

    fn broken(call: &'static str) -> Error {
        Error::Plugin {
            plugin: "failing".into(),
            call,
            message: "wasm trap: unreachable".into(),
        }
    }

    /// A framework with PodFitsResources, then the `Failing` plugin as a predicate and as a
    /// priority next to EqualPriority; nodes a and b fit a 1-cpu pod, c is too small and d is
    /// cordoned.
    fn failing(fail: &'static str, error: fn(&'static str) -> Error) -> (Framework, Log) {
        let log = Log::default();
        let c = PolicyConfig::from_json(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"PodFitsResources"}},{{"path":"/p/failing.wasm"}}],
              "priorities":[{{"name":"EqualPriority"}},{{"path":"/p/failing.wasm","weight":3}}]}}"#
        ))
        .unwrap();
        let shared = log.0.clone();
        let mut f = Framework::with_loader(&c, 1, |_, _, _| {
            Ok(Box::new(Failing {
                fail,
                error,
                log: shared.clone(),
            }))
        })
        .unwrap();
        f.upsert_node(node("a").cpu(4000).build()).unwrap();
        f.upsert_node(node("b").cpu(4000).build()).unwrap();
        f.upsert_node(node("c").cpu(100).build()).unwrap();
        f.upsert_node(node("d").cordoned().build()).unwrap();
        (f, log)
    }

    fn calls(log: &Log, call: &str) -> usize {
        log.0.lock().unwrap().iter().filter(|l| *l == call).count()
    }

    #[test]
    fn a_plugin_verdict_counts_every_candidate_left() {
        let p = pod("p").cpu(1000).build();
        // At pre-filter, a, b and c are candidates (d is cordoned).
        let (mut f, log) = failing("pre-filter", unschedulable);
        assert_eq!(
            fit_error(&mut f, &p).to_string(),
            "0/4 nodes are available: 1 node(s) were unschedulable, 3 zone z1 is full."
        );
        assert_eq!(calls(&log, "filter"), 0, "the cycle ended at pre-filter");
        assert_eq!(calls(&log, "CycleOutcome::Unschedulable"), 2);
        // At the plugin's filter, PodFitsResources has already left c out.
        let (mut f, log) = failing("filter", unschedulable);
        assert_eq!(
            fit_error(&mut f, &p).to_string(),
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable, \
             2 zone z1 is full."
        );
        assert_eq!(calls(&log, "score"), 0);
        // The next cycle starts afresh.
        let (mut f, _) = failing("none", unschedulable);
        assert!(matches!(f.schedule(&p).unwrap(), Outcome::Scheduled { .. }));
    }

    #[test]
    fn a_failed_plugin_call_fails_the_cycle() {
        for call in [
            "pre-filter",
            "filter",
            "score",
            "normalize-score",
            "end-cycle",
        ] {
            let (mut f, log) = failing(call, broken);
            let e = f.schedule(&pod("p").cpu(1000).build()).unwrap_err();
            assert!(
                matches!(&e, Error::Plugin { plugin, call: c, .. } if plugin == "failing" && *c == call),
                "{call}: {e}"
            );
            if call != "end-cycle" {
                assert_eq!(calls(&log, "CycleOutcome::Failed"), 2, "{call}");
            }
        }
    }

    #[test]
    fn failed_node_events_are_logged_not_propagated() {
        for call in ["node-added", "node-updated", "node-removed"] {
            let (mut f, log) = failing(call, broken);
            f.upsert_node(node("a").cpu(3000).build()).unwrap();
            f.apply(vec![
                crate::cache::NodeChange::Upsert(Box::new(node("e").cpu(4000).build())),
                crate::cache::NodeChange::Remove("b".into()),
            ])
            .unwrap();
            f.remove_node("c").unwrap();
            assert_eq!(
                f.nodes()
                    .iter()
                    .map(|(_, n)| n.name.as_str())
                    .collect::<Vec<_>>(),
                ["a", "d", "e"],
                "{call}"
            );
            assert!(calls(&log, call) >= 2, "{call} was called");
            assert!(
                matches!(
                    f.schedule(&pod("p").cpu(1000).build()).unwrap(),
                    Outcome::Scheduled { .. }
                ),
                "{call}"
            );
        }
    }

    #[test]
    fn plugin_entries_need_a_host() {
        let c = PolicyConfig::from_json(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/p/x.so"}}]}}"#
        ))
        .unwrap();
        let e = Framework::builtin(&c, 1).unwrap_err().to_string();
        assert!(e.contains("scheduler plugin x: load"), "{e}");
    }
}
