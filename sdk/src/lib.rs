//! The Rust SDK for Keelson plugins.
//!
//! A plugin is a Wasm component built with `cargo build --target wasm32-wasip2` from a `cdylib`
//! crate that depends on this one. The contract it implements is the WIT package
//! `keelson:plugin@0.1.0` in the repository's root `wit/` folder; [`bindings`] holds the Rust
//! bindings generated from it, so plugin authors never run a bindings generator themselves.
//!
//! # Scheduler policies
//!
//! Implement [`SchedulerPolicy`] and export it with [`export_scheduler_policy!`]:
//!
//! ```no_run
//! use keelson_plugin_sdk::{
//!     export_scheduler_policy, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
//! };
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
//! export_scheduler_policy!(MostPods);
//! ```
//!
//! # What this first slice does not do yet
//!
//! - Only scheduler policies have a trait; admission checks and network backends have bindings
//!   in [`bindings`] only for the types they share, and no trait or export macro yet.
//! - A plugin builds to a Wasm component only; the native `cdylib` export from the same source
//!   (the C ABI of the native loader) is not generated yet.
//! - [`export_scheduler_policy!`] exports all four extension points of the `scheduler-policy`
//!   world; the ones a policy does not override answer neutrally (see each method of
//!   [`SchedulerPolicy`]). The host already calls only the extension points a component exports,
//!   so a component built against a narrower world (for instance
//!   `scheduler-policy-base` + `score`, as `examples/plugins/score-only` does with
//!   `wit-bindgen` directly) costs no calls for the others.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

/// Rust bindings generated from the root `wit/` folder for the `scheduler-policy` world.
///
/// Types plugin authors need are re-exported at the crate root; this module is public so that
/// [`export_scheduler_policy!`] can reach the generated export glue from the plugin's crate.
///
/// ```
/// use keelson_plugin_sdk::bindings::keelson::plugin::types::ErrorKind;
/// assert_ne!(ErrorKind::Internal, ErrorKind::InvalidConfig);
/// ```
// The generated code is the component ABI glue: raw pointers into linear memory, the only
// `unsafe` in the SDK, as the workspace style allows for "the SDK's export glue".
#[allow(unsafe_code, clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "keelson:plugin/scheduler-policy@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "keelson_plugin_sdk::bindings",
    });
}

use bindings::exports::keelson::plugin::{
    filter as wit_filter, lifecycle as wit_lifecycle, normalize_score as wit_normalize,
    pre_filter as wit_pre_filter, scheduler as wit_scheduler, score as wit_score,
};

pub use bindings::exports::keelson::plugin::filter::FilterResult;
pub use bindings::exports::keelson::plugin::pre_filter::PreFilterResult;
pub use bindings::keelson::plugin::log::Level;
pub use bindings::keelson::plugin::scheduler_types::{
    CycleOutcome, HostPort, NodeInfo, PodInfo, Protocol, Taint, TaintEffect, Toleration,
};
pub use bindings::keelson::plugin::types::{ErrorKind, NamedQuantity, PluginError, Resources};

/// The position of a node in the node table; see [`NodeTable`].
///
/// ```
/// let first: keelson_plugin_sdk::NodeIndex = 0;
/// # let _ = first;
/// ```
pub type NodeIndex = u32;

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
/// The host adds the plugin's and the call's names. Only meaningful inside a plugin running in
/// the host; outside a component (for instance in a native unit test) the import is missing.
///
/// ```no_run
/// keelson_plugin_sdk::log(keelson_plugin_sdk::Level::Info, "configured");
/// ```
pub fn log(level: Level, message: &str) {
    if bindings::keelson::plugin::log::enabled(level) {
        bindings::keelson::plugin::log::log(level, message);
    }
}

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
    /// # fn node() -> NodeInfo { NodeInfo { name: "a".into(), labels: vec![], allocatable: Resources { cpu: 0, memory: 0, ephemeral_storage: 0, extended: vec![] }, allocatable_pods: 0, requested: Resources { cpu: 0, memory: 0, ephemeral_storage: 0, extended: vec![] }, pod_count: 0, used_ports: vec![], taints: vec![], unschedulable: false, ready: true, group_counts: vec![] } }
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
/// export_scheduler_policy!(ReadyOnly);
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

/// Exports a [`SchedulerPolicy`] type as the plugin's implementation of the `scheduler-policy`
/// world. Use it once, in the plugin's `cdylib` crate, built for `wasm32-wasip2`.
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
/// export_scheduler_policy!(Noop);
/// ```
#[macro_export]
macro_rules! export_scheduler_policy {
    ($ty:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            type __KeelsonSchedulerExport = $crate::__private::SchedulerExport<$ty>;
    $crate::bindings::export!(__KeelsonSchedulerExport with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use super::SchedulerExport;
}

/// The glue between the generated `Guest` traits and a [`SchedulerPolicy`]; used by
/// [`export_scheduler_policy!`], not by plugin authors.
#[doc(hidden)]
pub struct SchedulerExport<T>(PhantomData<T>);

struct SchedulerState<T> {
    nodes: NodeTable,
    policy: Option<T>,
}

thread_local! {
    // One policy per component; `Any` because statics cannot be generic over `T`.
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

fn with_state<T: SchedulerPolicy, R>(f: impl FnOnce(&mut SchedulerState<T>) -> R) -> R {
    STATE.with_borrow_mut(|slot| {
        let state = slot.get_or_insert_with(|| {
            Box::new(SchedulerState::<T> {
                nodes: NodeTable::default(),
                policy: None,
            })
        });
        match state.downcast_mut::<SchedulerState<T>>() {
            Some(state) => f(state),
            // Unreachable: only `SchedulerExport<T>` with a single `T` touches the slot.
            None => panic!("keelson-plugin-sdk: scheduler state has an unexpected type"),
        }
    })
}

fn with_policy<T: SchedulerPolicy, R>(
    f: impl FnOnce(&mut T, &NodeTable) -> Result<R, PluginError>,
) -> Result<R, PluginError> {
    with_state::<T, _>(|s| match s.policy.as_mut() {
        Some(p) => f(p, &s.nodes),
        None => Err(plugin_error(
            ErrorKind::Internal,
            "called before configure succeeded",
        )),
    })
}

impl<T: SchedulerPolicy> wit_lifecycle::Guest for SchedulerExport<T> {
    fn name() -> String {
        T::NAME.to_string()
    }

    fn configure(options: String) -> Result<(), PluginError> {
        let policy = T::configure(&options)?;
        with_state::<T, _>(|s| s.policy = Some(policy));
        Ok(())
    }
}

impl<T: SchedulerPolicy> wit_scheduler::Guest for SchedulerExport<T> {
    fn node_added(index: NodeIndex, node: NodeInfo) {
        with_state::<T, _>(|s| {
            s.nodes.insert(index, node);
            if let Some(p) = s.policy.as_mut() {
                p.node_changed(index, &s.nodes);
            }
        })
    }

    fn node_updated(index: NodeIndex, node: NodeInfo) {
        <Self as wit_scheduler::Guest>::node_added(index, node)
    }

    fn node_removed(index: NodeIndex) {
        with_state::<T, _>(|s| {
            s.nodes.remove(index);
            if let Some(p) = s.policy.as_mut() {
                p.node_removed(index, &s.nodes);
            }
        })
    }

    fn end_cycle(cycle: u64, outcome: CycleOutcome) {
        with_state::<T, _>(|s| {
            if let Some(p) = s.policy.as_mut() {
                p.end_cycle(cycle, outcome);
            }
        })
    }
}

impl<T: SchedulerPolicy> wit_pre_filter::Guest for SchedulerExport<T> {
    fn pre_filter(cycle: u64, pod: PodInfo) -> Result<PreFilterResult, PluginError> {
        with_policy::<T, _>(|p, nodes| p.pre_filter(cycle, &pod, nodes))
    }
}

impl<T: SchedulerPolicy> wit_filter::Guest for SchedulerExport<T> {
    fn filter(
        cycle: u64,
        pod: PodInfo,
        candidates: Vec<NodeIndex>,
    ) -> Result<Vec<FilterResult>, PluginError> {
        with_policy::<T, _>(|p, nodes| p.filter(cycle, &pod, nodes, &candidates))
    }

    fn reasons(start: u32) -> Vec<String> {
        T::reasons()
            .iter()
            .skip(start as usize)
            .map(|r| r.to_string())
            .collect()
    }
}

impl<T: SchedulerPolicy> wit_score::Guest for SchedulerExport<T> {
    fn score(
        cycle: u64,
        pod: PodInfo,
        candidates: Vec<NodeIndex>,
    ) -> Result<Vec<i64>, PluginError> {
        with_policy::<T, _>(|p, nodes| p.score(cycle, &pod, nodes, &candidates))
    }
}

impl<T: SchedulerPolicy> wit_normalize::Guest for SchedulerExport<T> {
    fn normalize_score(cycle: u64, scores: Vec<i64>) -> Result<Vec<i64>, PluginError> {
        with_policy::<T, _>(|p, _| p.normalize_score(cycle, scores))
    }
}
