//! A test harness that drives a plugin as the host does, with fake host imports, so a plugin
//! is tested with `cargo test` and no cluster.
//!
//! The harness calls the same code the Wasm and native exports call. It calls every method of
//! the trait, including ones the export macro leaves out; the trait's defaults are neutral, so
//! results are what the host would see.
//!
//! ```
//! use keelson_plugin_sdk::testing::SchedulerHarness;
//! use keelson_plugin_sdk::fixtures::{node, pod};
//! use keelson_plugin_sdk::*;
//!
//! struct FewestPods;
//! impl SchedulerPolicy for FewestPods {
//!     const NAME: &'static str = "fewest-pods";
//!     fn configure(_: &str) -> Result<Self, PluginError> { Ok(FewestPods) }
//!     fn score(&mut self, _: u64, _: &PodInfo, nodes: &NodeTable, c: &[NodeIndex])
//!         -> Result<Vec<i64>, PluginError>
//!     {
//!         Ok(c.iter().map(|&i| 100 - i64::from(nodes.get(i).map_or(100, |n| n.pod_count.min(100)))).collect())
//!     }
//! }
//!
//! let mut h = SchedulerHarness::<FewestPods>::new("{}").unwrap();
//! let busy = h.add_node(node("busy").requested(0, 0, 30).build());
//! let idle = h.add_node(node("idle").build());
//! let decision = h.schedule(&pod("web").build()).unwrap();
//! assert_eq!(decision.chosen, Some(idle));
//! assert_ne!(decision.chosen, Some(busy));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use keelson_plugin_abi::imports;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::LookupError;
use crate::host::native::{Enter, Imports};
use crate::net::NetError;
use crate::{
    AdmissionCheck, AdmissionRequest, AdmissionResponse, AttachRequest, AttachResult, AttachedPod,
    CycleOutcome, DetachRequest, FilterResult, GroupVersionResource, IpPrefix, LabelSelector,
    Level, NetworkBackend, NodeAddress, NodeIndex, NodeInfo, NodeNetworkInfo, PluginError, PodInfo,
    PreFilterResult, SchedulerPolicy, SelectorOperator,
};

/// A host import the plugin called during a network harness call.
#[derive(Debug, Clone, PartialEq)]
pub struct NetCall {
    /// The `host-net` function, as named in WIT (`create-link`).
    pub name: &'static str,
    input: Vec<u8>,
}

impl NetCall {
    /// The call's arguments decoded as the tuple of their owned types, such as
    /// `(LinkSpec,)` for `create-link` or `(Netns, String, bool)` for `set-link-up`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::testing::NetCall;
    /// # fn f(call: &NetCall) {
    /// if call.name == "set-link-up" {
    ///     let (_netns, name, up): (keelson_plugin_sdk::Netns, String, bool) = call.args().unwrap();
    ///     assert!(up, "{name} should be set up");
    /// }
    /// # }
    /// ```
    pub fn args<T: DeserializeOwned>(&self) -> Result<T, String> {
        postcard::from_bytes(&self.input).map_err(|e| format!("{}: {e}", self.name))
    }
}

struct StoredObject {
    resource: GroupVersionResource,
    namespace: Option<String>,
    name: String,
    labels: Vec<(String, String)>,
    json: String,
}

/// The fake host behind every harness: records logs and network calls, serves objects.
#[derive(Default)]
struct TestHost {
    logs: RefCell<Vec<(Level, String)>>,
    objects: RefCell<Vec<StoredObject>>,
    net_calls: RefCell<Vec<NetCall>>,
    net_responses: RefCell<BTreeMap<&'static str, Vec<u8>>>,
    pod_cidrs: RefCell<Vec<IpPrefix>>,
    node_addresses: RefCell<Vec<NodeAddress>>,
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(v).map_err(|e| e.to_string())
}

fn dec<T: DeserializeOwned>(input: &[u8]) -> Result<T, String> {
    postcard::from_bytes(input).map_err(|e| e.to_string())
}

fn matches(selector: &LabelSelector, labels: &[(String, String)]) -> bool {
    let get = |k: &str| labels.iter().find(|(lk, _)| lk == k).map(|(_, v)| v);
    selector.match_labels.iter().all(|(k, v)| get(k) == Some(v))
        && selector.match_expressions.iter().all(|r| {
            let value = get(&r.key);
            match r.operator {
                SelectorOperator::In => value.is_some_and(|v| r.values.contains(v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
                SelectorOperator::Gt | SelectorOperator::Lt => {
                    let (Some(v), Some(bound)) = (value, r.values.first()) else {
                        return false;
                    };
                    match (v.parse::<i64>(), bound.parse::<i64>()) {
                        (Ok(v), Ok(b)) if r.operator == SelectorOperator::Gt => v > b,
                        (Ok(v), Ok(b)) => v < b,
                        _ => false,
                    }
                }
            }
        })
}

impl Imports for TestHost {
    fn call(&self, func: u32, input: &[u8]) -> Result<Vec<u8>, String> {
        match func {
            imports::LOG_ENABLED => enc(&true),
            imports::LOG => {
                let (level, message): (Level, String) = dec(input)?;
                self.logs.borrow_mut().push((level, message));
                enc(&())
            }
            imports::CLUSTER_GET_OBJECT => {
                let (resource, namespace, name): (GroupVersionResource, Option<String>, String) =
                    dec(input)?;
                let found = self
                    .objects
                    .borrow()
                    .iter()
                    .find(|o| o.resource == resource && o.namespace == namespace && o.name == name)
                    .map(|o| o.json.clone());
                enc(&Ok::<_, LookupError>(found))
            }
            imports::CLUSTER_LIST_OBJECTS => {
                let (resource, namespace, selector): (
                    GroupVersionResource,
                    Option<String>,
                    LabelSelector,
                ) = dec(input)?;
                let found: Vec<String> = self
                    .objects
                    .borrow()
                    .iter()
                    .filter(|o| {
                        o.resource == resource
                            && (namespace.is_none() || o.namespace == namespace)
                            && matches(&selector, &o.labels)
                    })
                    .map(|o| o.json.clone())
                    .collect();
                enc(&Ok::<_, LookupError>(found))
            }
            f if f >= imports::HOST_NET_BASE
                && ((f - imports::HOST_NET_BASE) as usize) < imports::HOST_NET.len() =>
            {
                let name = imports::HOST_NET[(f - imports::HOST_NET_BASE) as usize];
                self.net_calls.borrow_mut().push(NetCall {
                    name,
                    input: input.to_vec(),
                });
                if let Some(response) = self.net_responses.borrow().get(name) {
                    return Ok(response.clone());
                }
                match name {
                    "node-pod-cidrs" => enc(&Ok::<_, NetError>(self.pod_cidrs.borrow().clone())),
                    "node-addresses" => {
                        enc(&Ok::<_, NetError>(self.node_addresses.borrow().clone()))
                    }
                    "get-link" | "default-interface" => enc(&Err::<(), _>(NetError::NotFound)),
                    // Every list is empty until the test says otherwise; an empty list encodes
                    // the same whatever its element type.
                    "list-links" | "list-addresses" | "list-routes" => {
                        enc(&Ok::<_, NetError>(Vec::<()>::new()))
                    }
                    _ => enc(&Ok::<(), NetError>(())),
                }
            }
            other => Err(format!("the test host has no import {other}")),
        }
    }
}

struct Shared {
    host: Rc<TestHost>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            host: Rc::new(TestHost::default()),
        }
    }

    fn enter(&self) -> Enter {
        Enter::new(self.host.clone() as Rc<dyn Imports>)
    }

    fn logs(&self) -> Vec<(Level, String)> {
        self.host.logs.borrow().clone()
    }
}

/// The outcome of one scheduling cycle run by [`SchedulerHarness::schedule`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What pre-filter returned.
    pub pre_filter: PreFilterResult,
    /// Each node's filter verdict, for the nodes filter saw.
    pub filtered: Vec<(NodeIndex, FilterResult)>,
    /// Each feasible node's score after normalize-score.
    pub scores: Vec<(NodeIndex, i64)>,
    /// The best-scoring feasible node (the lowest index among equal tops), if any.
    pub chosen: Option<NodeIndex>,
}

/// Drives a [`SchedulerPolicy`] through node events and scheduling cycles.
pub struct SchedulerHarness<T: SchedulerPolicy> {
    runtime: crate::scheduler::Runtime<T>,
    shared: Shared,
    indices: BTreeSet<NodeIndex>,
    next_cycle: u64,
}

impl<T: SchedulerPolicy> SchedulerHarness<T> {
    /// Configures the policy with `options` (JSON text).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let h = SchedulerHarness::<P>::new("{}");
    /// assert!(h.is_ok());
    /// ```
    pub fn new(options: &str) -> Result<Self, PluginError> {
        let shared = Shared::new();
        let mut runtime = crate::scheduler::Runtime::default();
        {
            let _enter = shared.enter();
            runtime.configure(options)?;
        }
        Ok(SchedulerHarness {
            runtime,
            shared,
            indices: BTreeSet::new(),
            next_cycle: 1,
        })
    }

    /// Adds a node at the smallest free index, as the host does, and returns the index.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness, fixtures::node};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = SchedulerHarness::<P>::new("{}").unwrap();
    /// assert_eq!(h.add_node(node("a").build()), 0);
    /// assert_eq!(h.add_node(node("b").build()), 1);
    /// ```
    pub fn add_node(&mut self, node: NodeInfo) -> NodeIndex {
        let index = (0..).find(|i| !self.indices.contains(i)).unwrap_or(0);
        self.indices.insert(index);
        let _enter = self.shared.enter();
        self.runtime.node_added(index, node);
        index
    }

    /// Replaces the node at `index`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness, fixtures::node};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = SchedulerHarness::<P>::new("{}").unwrap();
    /// let i = h.add_node(node("a").build());
    /// h.update_node(i, node("a").cordoned().build());
    /// ```
    pub fn update_node(&mut self, index: NodeIndex, node: NodeInfo) {
        let _enter = self.shared.enter();
        self.runtime.node_added(index, node);
    }

    /// Removes the node at `index`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness, fixtures::node};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = SchedulerHarness::<P>::new("{}").unwrap();
    /// let i = h.add_node(node("a").build());
    /// h.remove_node(i);
    /// assert_eq!(h.schedule(&keelson_plugin_sdk::fixtures::pod("p").build()).unwrap().chosen, None);
    /// ```
    pub fn remove_node(&mut self, index: NodeIndex) {
        self.indices.remove(&index);
        let _enter = self.shared.enter();
        self.runtime.node_removed(index);
    }

    /// Runs one whole cycle for `pod` over every node, as the host does with this policy
    /// alone: pre-filter, filter, score over the nodes that passed, normalize-score, end-cycle.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness, fixtures::{node, pod}};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = SchedulerHarness::<P>::new("{}").unwrap();
    /// let a = h.add_node(node("a").build());
    /// assert_eq!(h.schedule(&pod("p").build()).unwrap().chosen, Some(a));
    /// ```
    pub fn schedule(&mut self, pod: &PodInfo) -> Result<Decision, PluginError> {
        let cycle = self.next_cycle;
        self.next_cycle += 1;
        let _enter = self.shared.enter();
        let result = self.run_cycle(cycle, pod);
        let outcome = match &result {
            Ok(Decision {
                chosen: Some(i), ..
            }) => CycleOutcome::Scheduled(*i),
            Ok(_) => CycleOutcome::Unschedulable,
            Err(_) => CycleOutcome::Failed,
        };
        self.runtime.end_cycle(cycle, outcome);
        result
    }

    fn run_cycle(&mut self, cycle: u64, pod: &PodInfo) -> Result<Decision, PluginError> {
        let pre_filter = self.runtime.pre_filter(cycle, pod)?;
        let all: Vec<NodeIndex> = self.indices.iter().copied().collect();
        let (candidates, run_filter) = match &pre_filter {
            PreFilterResult::AllNodes => (all, true),
            PreFilterResult::Nodes(only) => {
                (all.into_iter().filter(|i| only.contains(i)).collect(), true)
            }
            PreFilterResult::Skip => (all, false),
        };
        let (filtered, feasible) = if run_filter {
            let verdicts = self.runtime.filter(cycle, pod, &candidates)?;
            if verdicts.len() != candidates.len() {
                return Err(crate::plugin_error(
                    crate::ErrorKind::Internal,
                    format!(
                        "filter returned {} results for {} nodes",
                        verdicts.len(),
                        candidates.len()
                    ),
                ));
            }
            let feasible = candidates
                .iter()
                .zip(&verdicts)
                .filter(|(_, v)| **v == FilterResult::Pass)
                .map(|(i, _)| *i)
                .collect::<Vec<_>>();
            (candidates.into_iter().zip(verdicts).collect(), feasible)
        } else {
            (Vec::new(), candidates)
        };
        let raw = self.runtime.score(cycle, pod, &feasible)?;
        let scores = self.runtime.normalize_score(cycle, raw)?;
        let scores: Vec<(NodeIndex, i64)> = feasible.into_iter().zip(scores).collect();
        let chosen = scores
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| *i);
        Ok(Decision {
            pre_filter,
            filtered,
            scores,
            chosen,
        })
    }

    /// The texts of the policy's filter reasons, indexed by reason id.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn reasons() -> &'static [&'static str] { &["too far"] } }
    /// let h = SchedulerHarness::<P>::new("{}").unwrap();
    /// assert_eq!(h.reasons(), vec!["too far".to_string()]);
    /// ```
    pub fn reasons(&self) -> Vec<String> {
        crate::scheduler::Runtime::<T>::reasons(0)
    }

    /// The log records the policy wrote.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::SchedulerHarness};
    /// # struct P; impl SchedulerPolicy for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { log(Level::Info, "hello"); Ok(P) } }
    /// let h = SchedulerHarness::<P>::new("{}").unwrap();
    /// assert_eq!(h.logs(), vec![(Level::Info, "hello".to_string())]);
    /// ```
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.shared.logs()
    }
}

/// Drives an [`AdmissionCheck`] with requests, serving cluster lookups from objects the test
/// adds.
pub struct AdmissionHarness<T: AdmissionCheck> {
    runtime: crate::admission::Runtime<T>,
    shared: Shared,
}

impl<T: AdmissionCheck> AdmissionHarness<T> {
    /// Configures the check with `options` (JSON text).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::AdmissionHarness};
    /// # struct P; impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// assert!(AdmissionHarness::<P>::new("{}").is_ok());
    /// ```
    pub fn new(options: &str) -> Result<Self, PluginError> {
        let shared = Shared::new();
        let mut runtime = crate::admission::Runtime::default();
        {
            let _enter = shared.enter();
            runtime.configure(options)?;
        }
        Ok(AdmissionHarness { runtime, shared })
    }

    /// Adds an object that [`cluster`](crate::cluster) lookups can find.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::AdmissionHarness};
    /// # struct P; impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = AdmissionHarness::<P>::new("{}").unwrap();
    /// h.add_object(cluster::core("namespaces"), None, "prod", &[("env", "prod")], r#"{"metadata":{"name":"prod"}}"#);
    /// ```
    pub fn add_object(
        &mut self,
        resource: GroupVersionResource,
        namespace: Option<&str>,
        name: &str,
        labels: &[(&str, &str)],
        json: &str,
    ) {
        self.shared.host.objects.borrow_mut().push(StoredObject {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            json: json.into(),
        });
    }

    /// Calls `validate`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::AdmissionHarness};
    /// # struct P; impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = AdmissionHarness::<P>::new("{}").unwrap();
    /// let r = h.validate(&fixtures::create_request("Pod", "pods", Some("default"), "{}")).unwrap();
    /// assert!(r.allowed);
    /// ```
    pub fn validate(
        &mut self,
        request: &AdmissionRequest,
    ) -> Result<AdmissionResponse, PluginError> {
        let _enter = self.shared.enter();
        self.runtime.validate(request)
    }

    /// Calls `mutate`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::AdmissionHarness};
    /// # struct P; impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// let mut h = AdmissionHarness::<P>::new("{}").unwrap();
    /// let r = h.mutate(&fixtures::create_request("Pod", "pods", Some("default"), "{}")).unwrap();
    /// assert!(r.patch.is_none());
    /// ```
    pub fn mutate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        let _enter = self.shared.enter();
        self.runtime.mutate(request)
    }

    /// The log records the check wrote.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::AdmissionHarness};
    /// # struct P; impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// assert!(AdmissionHarness::<P>::new("{}").unwrap().logs().is_empty());
    /// ```
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.shared.logs()
    }
}

/// Drives a [`NetworkBackend`], recording the host network operations it asks for instead of
/// performing them.
pub struct NetworkHarness<T: NetworkBackend> {
    runtime: crate::network::Runtime<T>,
    shared: Shared,
}

impl<T: NetworkBackend> NetworkHarness<T> {
    /// Configures the backend with `options` (JSON text).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// assert!(NetworkHarness::<P>::new("{}").is_ok());
    /// ```
    pub fn new(options: &str) -> Result<Self, PluginError> {
        let shared = Shared::new();
        let mut runtime = crate::network::Runtime::default();
        {
            let _enter = shared.enter();
            runtime.configure(options)?;
        }
        Ok(NetworkHarness { runtime, shared })
    }

    /// Sets what `node-pod-cidrs` returns (empty by default).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.set_pod_cidrs(vec![IpPrefix { address: IpAddress::Ipv4((10, 244, 1, 0)), prefix_length: 24 }]);
    /// ```
    pub fn set_pod_cidrs(&mut self, cidrs: Vec<IpPrefix>) {
        *self.shared.host.pod_cidrs.borrow_mut() = cidrs;
    }

    /// Sets what `node-addresses` returns (empty by default).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.set_node_addresses(vec![NodeAddress { kind: NodeAddressKind::InternalIp, address: IpAddress::Ipv4((192, 168, 0, 2)) }]);
    /// ```
    pub fn set_node_addresses(&mut self, addresses: Vec<NodeAddress>) {
        *self.shared.host.node_addresses.borrow_mut() = addresses;
    }

    /// Makes `host-net` function `name` return `result` (its WIT result type, such as
    /// `Err::<(), _>(NetError::Exists)`) instead of the default (success, empty lists,
    /// `not-found` for lookups of one link).
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.respond("create-link", &Err::<(), _>(net::NetError::Exists)).unwrap();
    /// ```
    pub fn respond<R: Serialize>(&mut self, name: &str, result: &R) -> Result<(), String> {
        let Some(known) = imports::HOST_NET.iter().find(|n| **n == name) else {
            return Err(format!("host-net has no function {name:?}"));
        };
        self.shared
            .host
            .net_responses
            .borrow_mut()
            .insert(known, enc(result)?);
        Ok(())
    }

    /// Calls `node-added`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.node_added(&fixtures::network_node("n1", true)).unwrap();
    /// ```
    pub fn node_added(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.node_added(node)
    }

    /// Calls `node-updated`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.node_updated(&fixtures::network_node("n1", true)).unwrap();
    /// ```
    pub fn node_updated(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.node_updated(node)
    }

    /// Calls `node-removed`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.node_removed(&fixtures::network_node("n2", false)).unwrap();
    /// ```
    pub fn node_removed(&mut self, node: &NodeNetworkInfo) -> Result<(), PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.node_removed(node)
    }

    /// Calls `restore-pod`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// let pod = AttachedPod { pod_namespace: "default".into(), pod_name: "web".into(), pod_uid: "1".into(),
    ///     sandbox_id: "s".into(), interface_name: "eth0".into(), addresses: vec![] };
    /// h.restore_pod(&pod).unwrap();
    /// ```
    pub fn restore_pod(&mut self, pod: &AttachedPod) -> Result<(), PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.restore_pod(pod)
    }

    /// Calls `attach-pod`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: Some(1500) }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// let r = h.attach_pod(&fixtures::attach_request("web", "1")).unwrap();
    /// assert_eq!(r.mtu, Some(1500));
    /// ```
    pub fn attach_pod(&mut self, request: &AttachRequest) -> Result<AttachResult, PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.attach_pod(request)
    }

    /// Calls `detach-pod`.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.detach_pod(&fixtures::detach_request("web", "1")).unwrap();
    /// ```
    pub fn detach_pod(&mut self, request: &DetachRequest) -> Result<(), PluginError> {
        let _enter = self.shared.enter();
        self.runtime.backend()?.detach_pod(request)
    }

    /// The host network operations the backend asked for, in order.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, r: &AttachRequest) -> Result<AttachResult, PluginError> {
    /// #   net::set_link_up(&Netns::Pod(r.pod_uid.clone()), "lo", true).map_err(net::to_plugin_error)?;
    /// #   Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// let mut h = NetworkHarness::<P>::new("{}").unwrap();
    /// h.attach_pod(&fixtures::attach_request("web", "1")).unwrap();
    /// assert_eq!(h.net_calls()[0].name, "set-link-up");
    /// ```
    pub fn net_calls(&self) -> Vec<NetCall> {
        self.shared.host.net_calls.borrow().clone()
    }

    /// The log records the backend wrote.
    ///
    /// ```
    /// # use keelson_plugin_sdk::{*, testing::NetworkHarness};
    /// # struct P; impl NetworkBackend for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// # fn attach_pod(&mut self, _: &AttachRequest) -> Result<AttachResult, PluginError> { Ok(AttachResult { addresses: vec![], routes: vec![], mac: None, mtu: None }) }
    /// # fn detach_pod(&mut self, _: &DetachRequest) -> Result<(), PluginError> { Ok(()) } }
    /// assert!(NetworkHarness::<P>::new("{}").unwrap().logs().is_empty());
    /// ```
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.shared.logs()
    }
}
