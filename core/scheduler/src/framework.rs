//! One scheduling cycle: predicates filter the candidate nodes, priorities score the ones
//! left, the weighted sum ranks them and a seeded RNG breaks ties, as v1's
//! `generic_scheduler.go` does.
//!
//! Built-in policies run in process over one [`NodeTable`] that the framework owns and lends
//! to each of them, so node data is never copied per policy. Plugin policies (Wasm or native)
//! keep their own table on the other side of the boundary; the framework forwards every node
//! event to them through [`ExternalPolicy`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use keelson_plugin_host::{PluginHost, PluginSpec, SchedulerPlugin};
use keelson_plugin_sdk::{
    CycleOutcome, FilterResult, NodeIndex, NodeInfo, NodeTable, PodInfo, PreFilterResult,
    SchedulerPolicy,
};
use keelson_scheduler_policies::Builtin;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{PolicyConfig, PolicySource};
use crate::{Error, Result};

/// The reason given for cordoned nodes (`spec.unschedulable`).
pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The reason given for nodes whose `Ready` condition is not true.
pub const REASON_NOT_READY: &str = "node(s) were not ready";

/// A policy on the far side of a plugin boundary, seen with the SDK's types. Methods for
/// extension points the plugin does not export return `Ok(None)`.
///
/// [`SchedulerPlugin`] implements it; tests implement it with fakes.
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

impl ExternalPolicy for SchedulerPlugin {
    fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        let n = convert(node, self.name(), "node-added")?;
        SchedulerPlugin::node_added(self, index, n).map_err(|e| host_err(self, "node-added", e))
    }

    fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> Result<()> {
        let n = convert(node, self.name(), "node-updated")?;
        SchedulerPlugin::node_updated(self, index, n).map_err(|e| host_err(self, "node-updated", e))
    }

    fn node_removed(&mut self, index: NodeIndex) -> Result<()> {
        SchedulerPlugin::node_removed(self, index).map_err(|e| host_err(self, "node-removed", e))
    }

    fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> Result<Option<PreFilterResult>> {
        let p = convert(pod, self.name(), "pre-filter")?;
        let r = SchedulerPlugin::pre_filter(self, cycle, &p)
            .map_err(|e| host_err(self, "pre-filter", e))?;
        r.map(|r| convert(&r, self.name(), "pre-filter"))
            .transpose()
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Option<Vec<FilterResult>>> {
        let p = convert(pod, self.name(), "filter")?;
        let r = SchedulerPlugin::filter(self, cycle, &p, candidates)
            .map_err(|e| host_err(self, "filter", e))?;
        r.map(|r| convert(&r, self.name(), "filter")).transpose()
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
        let p = convert(pod, self.name(), "score")?;
        SchedulerPlugin::score(self, cycle, &p, candidates).map_err(|e| host_err(self, "score", e))
    }

    fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> Result<Option<Vec<i64>>> {
        SchedulerPlugin::normalize_score(self, cycle, scores)
            .map_err(|e| host_err(self, "normalize-score", e))
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> Result<()> {
        let o = convert(&outcome, self.name(), "end-cycle")?;
        SchedulerPlugin::end_cycle(self, cycle, o).map_err(|e| host_err(self, "end-cycle", e))
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
        if parts.is_empty() {
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
    /// A framework for `config`, loading plugin entries through `host`; `seed` seeds the
    /// tie-breaking RNG.
    pub fn new(config: &PolicyConfig, host: &PluginHost, seed: u64) -> Result<Framework> {
        Self::with_loader(config, seed, |name, path, options| {
            let spec = PluginSpec::new(name, path);
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
            Ok(Box::new(plugin) as Box<dyn ExternalPolicy>)
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
    pub fn with_loader(
        config: &PolicyConfig,
        seed: u64,
        mut load: impl FnMut(&str, &std::path::Path, &str) -> Result<Box<dyn ExternalPolicy>>,
    ) -> Result<Framework> {
        let mut stage = |e: &crate::config::PolicyEntry| -> Result<Stage> {
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
                    plugin: load(&e.name, path, options)?,
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
        })
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

    /// Adds the node, or replaces the node of the same name, and tells every policy.
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
                Runner::External { plugin, .. } if added => plugin.node_added(index, node)?,
                Runner::External { plugin, .. } => plugin.node_updated(index, node)?,
            }
        }
        Ok(index)
    }

    /// Applies the cache's node changes.
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

    /// Removes the node named `name`, if known, and tells every policy.
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
                Runner::External { plugin, .. } => plugin.node_removed(index)?,
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

    fn run_cycle(&mut self, cycle: u64, pod: &PodInfo) -> Result<Outcome> {
        let Framework {
            nodes,
            predicates,
            priorities,
            rng,
            ..
        } = self;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut total_nodes = 0;
        let mut candidates: Vec<NodeIndex> = Vec::new();
        for (i, n) in nodes.iter() {
            total_nodes += 1;
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
        // Predicates in order; a node leaves at its first failure, which is its reason.
        for (s, run) in predicates.iter_mut().zip(run_filter) {
            if !run || candidates.is_empty() {
                continue;
            }
            let verdicts = s.filter(cycle, pod, nodes, &candidates)?;
            let mut kept = Vec::with_capacity(candidates.len());
            for (i, v) in candidates.iter().zip(verdicts) {
                match v {
                    FilterResult::Pass => kept.push(*i),
                    FilterResult::Unschedulable(id) | FilterResult::Unresolvable(id) => {
                        *reasons.entry(s.reason(id)?).or_default() += 1;
                    }
                }
            }
            candidates = kept;
        }
        if candidates.is_empty() {
            return Ok(Outcome::Unschedulable(FitError {
                total_nodes,
                reasons,
            }));
        }
        let mut totals = vec![0i64; candidates.len()];
        for s in priorities.iter_mut() {
            let scores = s.score(cycle, pod, nodes, &candidates)?;
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
            "0/0 nodes are available."
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
