//! The filter reasons of every predicate, in one table shared by all of them.
//!
//! One table (rather than one per policy) keeps reason ids identical whether a predicate runs
//! alone or behind [`Builtin`](crate::Builtin), which must return a single static table. The
//! texts are worded as Kubernetes words them in `FailedScheduling` events, so `kubectl
//! describe pod` reads the same as against a Kubernetes scheduler.

/// The table every policy of the crate returns from `reasons()`, indexed by the constants
/// below.
///
/// ```
/// use keelson_scheduler_policies::reasons::{REASONS, INSUFFICIENT_CPU};
/// assert_eq!(REASONS[INSUFFICIENT_CPU as usize], "Insufficient cpu");
/// ```
pub const REASONS: &[&str] = &[
    "Insufficient cpu",
    "Insufficient memory",
    "Too many pods",
    "node(s) didn't have free ports for the requested pod ports",
    "node(s) had no available disk",
    "node(s) didn't match Pod's node affinity/selector",
    "node(s) didn't match the requested node name",
    "node(s) had untolerated taint",
    "node(s) didn't have the requested labels",
    "node(s) didn't match service affinity",
    "node(s) unknown to the scheduler policy",
];

/// `PodFitsResources`: not enough CPU left.
pub const INSUFFICIENT_CPU: u32 = 0;
/// `PodFitsResources`: not enough memory left.
pub const INSUFFICIENT_MEMORY: u32 = 1;
/// `PodFitsResources`: the node runs as many pods as it may.
pub const TOO_MANY_PODS: u32 = 2;
/// `PodFitsHostPorts`: a wanted host port is taken.
pub const PORTS: u32 = 3;
/// `NoDiskConflict`: a disk the pod mounts is in use in a conflicting way.
pub const DISK_CONFLICT: u32 = 4;
/// `MatchNodeSelector`: the node selector or required node affinity does not match.
pub const NODE_SELECTOR: u32 = 5;
/// `HostName`: the pod names another node.
pub const NODE_NAME: u32 = 6;
/// `PodToleratesNodeTaints`: a NoSchedule or NoExecute taint is not tolerated.
pub const TAINTS: u32 = 7;
/// `CheckNodeLabelPresence`: the node's labels are not as required.
pub const LABEL_PRESENCE: u32 = 8;
/// `CheckServiceAffinity`: the node's labels differ from the service peers' node.
pub const SERVICE_AFFINITY: u32 = 9;
/// A candidate index that is not in the node table (a host bug; the node is rejected).
pub const UNKNOWN_NODE: u32 = 10;
