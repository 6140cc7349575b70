//! Scheduler policies: the [`SchedulerPolicy`] trait, the node table the SDK keeps for it, and
//! the glue the export macro uses.

use crate::{CycleOutcome, FilterResult, NodeInfo, PluginError, PodInfo, PreFilterResult};
use crate::{ErrorKind, plugin_error};

/// The position of a node in the node table; see [`NodeTable`].
///
/// ```
/// let first: keelson_plugin_sdk::NodeIndex = 0;
/// # let _ = first;
/// ```
pub type NodeIndex = u32;

/// The nodes the host has told the plugin about, indexed by [`NodeIndex`].
///
/// The SDK keeps the table from the host's `node-added`, `node-updated` and `node-removed`
/// events, so a policy reads nodes by index instead of receiving them on every call.
///
/// ```
/// use keelson_plugin_sdk::NodeTable;
/// let table = NodeTable::default();
/// assert!(table.get(0).is_none());
/// assert_eq!(table.iter().count(), 0);
/// ```
#[derive(Debug, Default, Clone)]
pub struct NodeTable {
    nodes: Vec<Option<NodeInfo>>,
}

impl NodeTable {
    /// The node at `index`, if the host has added one there.
    ///
    /// ```
    /// let table = keelson_plugin_sdk::NodeTable::default();
    /// assert!(table.get(3).is_none());
    /// ```
    pub fn get(&self, index: NodeIndex) -> Option<&NodeInfo> {
        self.nodes.get(index as usize).and_then(Option::as_ref)
    }

    /// Every node in the table with its index, in index order.
    ///
    /// ```
    /// let table = keelson_plugin_sdk::NodeTable::default();
    /// let names: Vec<&str> = table.iter().map(|(_, n)| n.name.as_str()).collect();
    /// assert!(names.is_empty());
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (NodeIndex, &NodeInfo)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as NodeIndex, n)))
    }

    /// Puts `node` at `index`, growing the table as needed (the host keeps indexes dense).
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # fn node() -> NodeInfo { keelson_plugin_sdk::fixtures::node("a").build() }
    /// let mut table = NodeTable::default();
    /// table.insert(2, node());
    /// assert_eq!(table.get(2).map(|n| n.name.as_str()), Some("a"));
    /// ```
    pub fn insert(&mut self, index: NodeIndex, node: NodeInfo) {
        let i = index as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        self.nodes[i] = Some(node);
    }

    /// Removes the node at `index`, if any.
    ///
    /// ```
    /// let mut table = keelson_plugin_sdk::NodeTable::default();
    /// table.remove(7);
    /// assert!(table.get(7).is_none());
    /// ```
    pub fn remove(&mut self, index: NodeIndex) {
        if let Some(slot) = self.nodes.get_mut(index as usize) {
            *slot = None;
        }
    }
}

/// A scheduler policy: the extension points of the Kubernetes scheduling framework that Keelson
/// offers, batched over candidate nodes.
///
/// Only [`NAME`](Self::NAME) and [`configure`](Self::configure) are required. Every other method
/// has a default that leaves scheduling unchanged, so a policy overrides what it implements.
/// Nodes arrive through the SDK-kept [`NodeTable`]; per-pod state (what `pre_filter` computed
/// for `filter` and `score`) lives in `self` and is dropped in [`end_cycle`](Self::end_cycle).
///
/// ```no_run
/// use keelson_plugin_sdk::*;
///
/// struct ReadyOnly;
///
/// impl SchedulerPolicy for ReadyOnly {
///     const NAME: &'static str = "ready-only";
///
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(ReadyOnly)
///     }
///
///     fn reasons() -> &'static [&'static str] {
///         &["node(s) not ready"]
///     }
///
///     fn filter(
///         &mut self,
///         _cycle: u64,
///         _pod: &PodInfo,
///         nodes: &NodeTable,
///         candidates: &[NodeIndex],
///     ) -> Result<Vec<FilterResult>, PluginError> {
///         Ok(candidates
///             .iter()
///             .map(|&i| match nodes.get(i) {
///                 Some(n) if n.ready => FilterResult::Pass,
///                 _ => FilterResult::Unresolvable(0),
///             })
///             .collect())
///     }
/// }
///
/// export_scheduler_policy!(ReadyOnly, exports: [filter]);
/// # fn main() {}
/// ```
pub trait SchedulerPolicy: Sized + 'static {
    /// The plugin's name, short and kebab-case (`zone-spread`); used in the host's logs,
    /// metrics and errors.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P {
    /// const NAME: &'static str = "zone-spread";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// assert_eq!(P::NAME, "zone-spread");
    /// ```
    const NAME: &'static str;

    /// Builds the policy from its options, the plugin's section of the daemon's configuration
    /// as JSON text (`{}` when the operator gave none). Return an error of kind
    /// [`ErrorKind::InvalidConfig`] to stop the daemon from starting.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// fn configure(options: &str) -> Result<Self, PluginError> {
    ///     if options.trim() == "{}" {
    ///         Ok(P)
    ///     } else {
    ///         Err(plugin_error(ErrorKind::InvalidConfig, "this plugin takes no options"))
    ///     }
    /// }
    /// # }
    /// assert!(P::configure("{}").is_ok());
    /// ```
    fn configure(options: &str) -> Result<Self, PluginError>;

    /// The texts of the reason ids [`FilterResult`] carries, indexed by id. The table must only
    /// grow over the plugin's life. Default: no reasons.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn reasons() -> &'static [&'static str] {
    ///     &["insufficient cpu", "insufficient memory"]
    /// }
    /// # }
    /// assert_eq!(P::reasons().len(), 2);
    /// ```
    fn reasons() -> &'static [&'static str] {
        &[]
    }

    /// Called after the SDK has added or replaced the node at `index` in the table, for
    /// policies that keep derived state (per-zone counts). Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { changes: u32 }
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { changes: 0 }) }
    /// fn node_changed(&mut self, _index: NodeIndex, _nodes: &NodeTable) {
    ///     self.changes += 1;
    /// }
    /// # }
    /// ```
    fn node_changed(&mut self, index: NodeIndex, nodes: &NodeTable) {
        let _ = (index, nodes);
    }

    /// Called after the SDK has removed the node at `index` from the table. Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { removed: Vec<NodeIndex> }
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { removed: vec![] }) }
    /// fn node_removed(&mut self, index: NodeIndex, _nodes: &NodeTable) {
    ///     self.removed.push(index);
    /// }
    /// # }
    /// ```
    fn node_removed(&mut self, index: NodeIndex, nodes: &NodeTable) {
        let _ = (index, nodes);
    }

    /// Checks the pod once per cycle before any node is judged. Default:
    /// [`PreFilterResult::AllNodes`], so the policy's `filter` sees every candidate.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn pre_filter(&mut self, _cycle: u64, pod: &PodInfo, _nodes: &NodeTable)
    ///     -> Result<PreFilterResult, PluginError>
    /// {
    ///     if pod.requests.cpu == 0 { Ok(PreFilterResult::Skip) } else { Ok(PreFilterResult::AllNodes) }
    /// }
    /// # }
    /// ```
    fn pre_filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
    ) -> Result<PreFilterResult, PluginError> {
        let _ = (cycle, pod, nodes);
        Ok(PreFilterResult::AllNodes)
    }

    /// Judges every candidate node; one result per candidate, in order. Default: every node
    /// passes.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn filter(&mut self, _cycle: u64, _pod: &PodInfo, nodes: &NodeTable, candidates: &[NodeIndex])
    ///     -> Result<Vec<FilterResult>, PluginError>
    /// {
    ///     Ok(candidates.iter().map(|&i| match nodes.get(i) {
    ///         Some(n) if !n.unschedulable => FilterResult::Pass,
    ///         _ => FilterResult::Unresolvable(0),
    ///     }).collect())
    /// }
    /// # }
    /// ```
    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        let _ = (cycle, pod, nodes);
        Ok(vec![FilterResult::Pass; candidates.len()])
    }

    /// Scores every candidate node, 0 to 100 unless `normalize_score` rescales; one score per
    /// candidate, in order. Default: 0 for every node, which leaves the ranking unchanged.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn score(&mut self, _cycle: u64, _pod: &PodInfo, nodes: &NodeTable, candidates: &[NodeIndex])
    ///     -> Result<Vec<i64>, PluginError>
    /// {
    ///     Ok(candidates.iter().map(|&i| nodes.get(i).map_or(0, |n| 100 - i64::from(n.pod_count.min(100)))).collect())
    /// }
    /// # }
    /// ```
    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        let _ = (cycle, pod, nodes);
        Ok(vec![0; candidates.len()])
    }

    /// Rescales this policy's scores of the cycle to 0 to 100. Default: returns them unchanged.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn normalize_score(&mut self, _cycle: u64, scores: Vec<i64>) -> Result<Vec<i64>, PluginError> {
    ///     let max = scores.iter().copied().max().unwrap_or(0).max(1);
    ///     Ok(scores.into_iter().map(|s| s * 100 / max).collect())
    /// }
    /// # }
    /// ```
    fn normalize_score(&mut self, cycle: u64, scores: Vec<i64>) -> Result<Vec<i64>, PluginError> {
        let _ = cycle;
        Ok(scores)
    }

    /// Ends the cycle; drop any per-pod state kept for it. Default: nothing.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P { current: Option<u64> }
    /// # impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P { current: None }) }
    /// fn end_cycle(&mut self, _cycle: u64, _outcome: CycleOutcome) {
    ///     self.current = None;
    /// }
    /// # }
    /// ```
    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) {
        let _ = (cycle, outcome);
    }
}

/// The policy's name, for the native manifest.
pub fn name_of<T: SchedulerPolicy>() -> &'static str {
    T::NAME
}

/// One plugin instance: the node table and, once configured, the policy.
pub(crate) struct Runtime<T> {
    nodes: NodeTable,
    policy: Option<T>,
}

impl<T> Default for Runtime<T> {
    fn default() -> Self {
        Runtime {
            nodes: NodeTable::default(),
            policy: None,
        }
    }
}

impl<T: SchedulerPolicy> Runtime<T> {
    pub(crate) fn configure(&mut self, options: &str) -> Result<(), PluginError> {
        self.policy = Some(T::configure(options)?);
        Ok(())
    }

    pub(crate) fn node_added(&mut self, index: NodeIndex, node: NodeInfo) {
        self.nodes.insert(index, node);
        if let Some(p) = self.policy.as_mut() {
            p.node_changed(index, &self.nodes);
        }
    }

    pub(crate) fn node_removed(&mut self, index: NodeIndex) {
        self.nodes.remove(index);
        if let Some(p) = self.policy.as_mut() {
            p.node_removed(index, &self.nodes);
        }
    }

    pub(crate) fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) {
        if let Some(p) = self.policy.as_mut() {
            p.end_cycle(cycle, outcome);
        }
    }

    fn with_policy<R>(
        &mut self,
        f: impl FnOnce(&mut T, &NodeTable) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        match self.policy.as_mut() {
            Some(p) => f(p, &self.nodes),
            None => Err(plugin_error(
                ErrorKind::Internal,
                "called before configure succeeded",
            )),
        }
    }

    pub(crate) fn pre_filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
    ) -> Result<PreFilterResult, PluginError> {
        self.with_policy(|p, nodes| p.pre_filter(cycle, pod, nodes))
    }

    pub(crate) fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        self.with_policy(|p, nodes| p.filter(cycle, pod, nodes, candidates))
    }

    pub(crate) fn reasons(start: u32) -> Vec<String> {
        T::reasons()
            .iter()
            .skip(start as usize)
            .map(|r| r.to_string())
            .collect()
    }

    pub(crate) fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        self.with_policy(|p, nodes| p.score(cycle, pod, nodes, candidates))
    }

    pub(crate) fn normalize_score(
        &mut self,
        cycle: u64,
        scores: Vec<i64>,
    ) -> Result<Vec<i64>, PluginError> {
        self.with_policy(|p, _| p.normalize_score(cycle, scores))
    }
}

/// What the Wasm `Guest` impls the export macro generates call: one runtime per component.
pub mod wasm {
    use super::{NodeIndex, Runtime, SchedulerPolicy};
    use crate::host::wasm_state;
    use crate::{CycleOutcome, FilterResult, NodeInfo, PluginError, PodInfo, PreFilterResult};

    /// `lifecycle.name`.
    pub fn name<T: SchedulerPolicy>() -> String {
        T::NAME.to_string()
    }
    /// `lifecycle.configure`.
    pub fn configure<T: SchedulerPolicy>(options: String) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.configure(&options))
    }
    /// `scheduler.node-added`.
    pub fn node_added<T: SchedulerPolicy>(index: NodeIndex, node: NodeInfo) {
        wasm_state::with(|rt: &mut Runtime<T>| rt.node_added(index, node))
    }
    /// `scheduler.node-updated`.
    pub fn node_updated<T: SchedulerPolicy>(index: NodeIndex, node: NodeInfo) {
        wasm_state::with(|rt: &mut Runtime<T>| rt.node_added(index, node))
    }
    /// `scheduler.node-removed`.
    pub fn node_removed<T: SchedulerPolicy>(index: NodeIndex) {
        wasm_state::with(|rt: &mut Runtime<T>| rt.node_removed(index))
    }
    /// `scheduler.end-cycle`.
    pub fn end_cycle<T: SchedulerPolicy>(cycle: u64, outcome: CycleOutcome) {
        wasm_state::with(|rt: &mut Runtime<T>| rt.end_cycle(cycle, outcome))
    }
    /// `pre-filter.pre-filter`.
    pub fn pre_filter<T: SchedulerPolicy>(
        cycle: u64,
        pod: PodInfo,
    ) -> Result<PreFilterResult, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.pre_filter(cycle, &pod))
    }
    /// `filter.filter`.
    pub fn filter<T: SchedulerPolicy>(
        cycle: u64,
        pod: PodInfo,
        candidates: Vec<NodeIndex>,
    ) -> Result<Vec<FilterResult>, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.filter(cycle, &pod, &candidates))
    }
    /// `filter.reasons`.
    pub fn reasons<T: SchedulerPolicy>(start: u32) -> Vec<String> {
        Runtime::<T>::reasons(start)
    }
    /// `score.score`.
    pub fn score<T: SchedulerPolicy>(
        cycle: u64,
        pod: PodInfo,
        candidates: Vec<NodeIndex>,
    ) -> Result<Vec<i64>, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.score(cycle, &pod, &candidates))
    }
    /// `normalize-score.normalize-score`.
    pub fn normalize_score<T: SchedulerPolicy>(
        cycle: u64,
        scores: Vec<i64>,
    ) -> Result<Vec<i64>, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.normalize_score(cycle, scores))
    }
}

/// What the native `extern "C"` functions the export macro generates call.
#[cfg(not(target_arch = "wasm32"))]
#[allow(unsafe_code)]
pub mod native {
    use keelson_plugin_abi::{lifecycle, scheduler as f};

    use super::{Runtime, SchedulerPolicy};
    use crate::native::{Dispatch, decode, encode};
    use crate::{CycleOutcome, NodeInfo, PodInfo};

    impl<T: SchedulerPolicy> crate::native::Runtime for Runtime<T> {
        fn dispatch(
            &mut self,
            exports: &[&str],
            func: u32,
            input: &[u8],
        ) -> Result<Vec<u8>, Dispatch> {
            let exported = |name: &str| {
                if exports.contains(&name) {
                    Ok(())
                } else {
                    Err(Dispatch::Unknown)
                }
            };
            match func {
                lifecycle::NAME => encode(T::NAME),
                lifecycle::CONFIGURE => {
                    let (options,): (String,) = decode(input)?;
                    encode(&self.configure(&options))
                }
                f::NODE_ADDED | f::NODE_UPDATED => {
                    let (index, node): (u32, NodeInfo) = decode(input)?;
                    self.node_added(index, node);
                    encode(&())
                }
                f::NODE_REMOVED => {
                    let (index,): (u32,) = decode(input)?;
                    self.node_removed(index);
                    encode(&())
                }
                f::END_CYCLE => {
                    let (cycle, outcome): (u64, CycleOutcome) = decode(input)?;
                    self.end_cycle(cycle, outcome);
                    encode(&())
                }
                f::PRE_FILTER => {
                    exported("pre-filter")?;
                    let (cycle, pod): (u64, PodInfo) = decode(input)?;
                    encode(&self.pre_filter(cycle, &pod))
                }
                f::FILTER => {
                    exported("filter")?;
                    let (cycle, pod, candidates): (u64, PodInfo, Vec<u32>) = decode(input)?;
                    encode(&self.filter(cycle, &pod, &candidates))
                }
                f::REASONS => {
                    exported("filter")?;
                    let (start,): (u32,) = decode(input)?;
                    encode(&Self::reasons(start))
                }
                f::SCORE => {
                    exported("score")?;
                    let (cycle, pod, candidates): (u64, PodInfo, Vec<u32>) = decode(input)?;
                    encode(&self.score(cycle, &pod, &candidates))
                }
                f::NORMALIZE_SCORE => {
                    exported("normalize-score")?;
                    let (cycle, scores): (u64, Vec<i64>) = decode(input)?;
                    encode(&self.normalize_score(cycle, scores))
                }
                _ => Err(Dispatch::Unknown),
            }
        }
    }

    crate::native::entry_points!(SchedulerPolicy);
}
