//! The Kubernetes v1 scheduler predicates and priorities as Keelson scheduler policies.
//!
//! Each predicate (`PodFitsResources`, `MatchNodeSelector`, ...) and each priority
//! (`LeastRequestedPriority`, `SelectorSpreadPriority`, ...) is a type implementing
//! [`SchedulerPolicy`](keelson_plugin_sdk::SchedulerPolicy) with the semantics of the v1.0 to
//! v1.2 scheduler (`plugin/pkg/scheduler/algorithm`). Predicates implement `filter`, with
//! reasons worded as Kubernetes words them; priorities implement `score`, returning the v1
//! 0..=10 result times 10 so that weighted sums rank nodes as v1 did.
//!
//! [`Builtin`] picks one of them from a v1 Policy-file entry (`{"name": ..., "argument":
//! ...}`), so the scheduler can load a whole v1 Policy through one type; [`known_policies`],
//! [`DEFAULT_PREDICATES`] and [`DEFAULT_PRIORITIES`] describe the set for config validation.
//!
//! The crate exports nothing itself (it is linked into the daemon); the `component` folder
//! beside it builds [`Builtin`] as a Wasm component or a native plugin.
//!
//! ```
//! use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
//! use keelson_scheduler_policies::Builtin;
//!
//! let mut h = SchedulerHarness::<Builtin>::new(r#"{"name":"PodFitsResources"}"#).unwrap();
//! h.add_node(node("small").cpu(500).build());
//! let big = h.add_node(node("big").cpu(4000).build());
//! assert_eq!(h.schedule(&pod("p").cpu(1000).build()).unwrap().chosen, Some(big));
//! ```

mod builtin;
mod catalog;
mod error;
mod predicates;
mod priorities;
pub mod reasons;
mod util;

pub use builtin::Builtin;
pub use catalog::{
    ArgumentKind, DEFAULT_PREDICATES, DEFAULT_PRIORITIES, PolicyInfo, PolicyKind, known_policies,
    lookup,
};
pub use error::{Error, Result};
pub use predicates::{
    CheckNodeLabelPresence, CheckServiceAffinity, HostName, LabelsPresenceArgs, MatchNodeSelector,
    NoDiskConflict, PodFitsHostPorts, PodFitsResources, PodToleratesNodeTaints,
    ServiceAffinityArgs,
};
pub use priorities::{
    BalancedResourceAllocation, EqualPriority, LabelPreferenceArgs, LeastRequestedPriority,
    NodeLabelPriority, SelectorSpreadPriority, ServiceAntiAffinity, ServiceAntiAffinityArgs,
    ServiceSpreadingPriority, TaintTolerationPriority,
};
