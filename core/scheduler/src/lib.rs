//! Keelson's scheduler, as a library the `keelson scheduler` daemon wires up.
//!
//! - [`config`]: the Kubernetes v1 `Policy` file (plus Keelson's entries naming plugin files),
//!   or v1's `DefaultProvider` when there is none.
//! - [`framework`]: runs one scheduling cycle for a pod over a node table shared by every
//!   in-process policy: predicates filter, priorities score, the weighted sum ranks, ties are
//!   broken at random with a seeded RNG; "nothing fits" carries Kubernetes' message.
//! - [`cache`]: turns API objects (nodes, pods, services, replication controllers) into the
//!   compact [`NodeInfo`](keelson_plugin_sdk::NodeInfo) and
//!   [`PodInfo`](keelson_plugin_sdk::PodInfo) records policies read, and assumes a pod on
//!   its node as soon as it is placed.
//! - [`queue`]: the pods waiting to be scheduled, with per-pod backoff.
//! - [`scheduler`]: the three wired together: API events in, bindings and failures out.
//! - [`daemon`]: the scheduler fed by watches, carrying out its decisions as bindings,
//!   events and pod conditions, while it leads.
//!
//! ```
//! use keelson_scheduler::{config::PolicyConfig, framework::{Framework, Outcome}};
//! use keelson_plugin_sdk::fixtures::{node, pod};
//!
//! let mut fw = Framework::builtin(&PolicyConfig::default_provider(), 7).unwrap();
//! fw.upsert_node(node("small").cpu(500).build()).unwrap();
//! fw.upsert_node(node("big").cpu(4000).build()).unwrap();
//! match fw.schedule(&pod("p").cpu(1000).build()).unwrap() {
//!     Outcome::Scheduled { node, .. } => assert_eq!(node, "big"),
//!     Outcome::Unschedulable(e) => panic!("{e}"),
//! }
//! ```

pub mod cache;
pub mod config;
pub mod daemon;
mod error;
pub mod framework;
pub mod queue;
pub mod scheduler;

pub use error::{Error, Result};
pub use scheduler::{Decision, Scheduler};
