//! Node IPAM (kube-controller-manager's `nodeipam` with the range allocator): gives every
//! Node a `spec.podCIDR` carved from `--cluster-cidr`.
//!
//! The allocator keeps which subnets are taken in memory only. Like Kubernetes, it persists
//! nothing itself: the Nodes are the record. Before the first allocation it marks every
//! podCIDR the Nodes already carry as used, so a restarted controller manager never hands a
//! subnet out twice. Then each Node without a podCIDR gets the next free subnet (searching
//! on from the last one given, as Kubernetes' `CidrSet` does), written as `spec.podCIDR` and
//! `spec.podCIDRs`; a deleted Node's subnet is free again. A write that fails without saying
//! whether it was applied keeps the subnet reserved for the Node until a read of the Node
//! tells (its podCIDR, whoever set it, is taken in; a Node gone frees it). When none is free, the Node gets
//! Kubernetes' `CIDRNotAvailable` event and is tried again later, or as soon as a Node goes.
//! A podCIDR outside the cluster CIDR is left alone (and logged).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use keelson_client::events::{EventRecorder, EventType};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Error, Result, is_not_found};

/// How long a Node that found the range full waits before trying again (unless a Node is
/// deleted first).
const FULL_RETRY: Duration = Duration::from_secs(30);
/// Concurrent node updates.
const WORKERS: usize = 5;

/// Registers the handlers and returns the worker, or nothing when no cluster CIDR is set.
pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let Some(cluster) = ctx.config.cluster_cidr else {
        tracing::info!("no cluster CIDR: node IPAM is off");
        return Ok(Vec::new());
    };
    let allocator = Allocator::new(cluster, ctx.config.node_cidr_mask_size)?;
    let queue: Queue<String> = Queue::new();

    let q = queue.clone();
    ctx.informers.nodes.on_change(move |old, new| {
        let cidrs = |n: Option<&Arc<Node>>| n.map(|n| pod_cidrs(n));
        let changed = match (old, new) {
            (Some(_), Some(_)) => cidrs(old) != cidrs(new),
            _ => true,
        };
        if changed && let Some(node) = new.or(old) {
            q.add(node.metadata.name.clone().unwrap_or_default());
        }
    });

    let ctx2 = ctx.clone();
    let task: Task = Box::pin(async move {
        // The caches have listed: take in every podCIDR before giving any out.
        let allocator = Arc::new(Mutex::new(allocator));
        if let Ok(mut a) = allocator.lock() {
            for node in ctx2.informers.nodes.list() {
                let name = node.metadata.name.clone().unwrap_or_default();
                let cidrs = pod_cidrs(&node);
                if cidrs.is_empty() {
                    continue;
                }
                if let Err(e) = a.occupy_node(&name, &cidrs) {
                    tracing::warn!(node = %name, error = %e, "leaving the node's podCIDR alone");
                }
            }
            tracing::info!(cluster_cidr = %cluster, taken = a.by_node.len(), "node CIDR allocator ready");
        }
        // One recorder, so a node that keeps finding the range full has one Event counting up.
        let recorder = ctx2.recorder("cidrAllocator");
        let q = queue.clone();
        run_workers("nodeipam", queue, WORKERS, move |name: String| {
            let ctx = ctx2.clone();
            let allocator = allocator.clone();
            let q = q.clone();
            let recorder = recorder.clone();
            async move { sync(&ctx, &allocator, &q, &recorder, &name).await }
        })
        .await;
    });
    Ok(vec![task])
}

/// The podCIDRs a Node carries (`podCIDRs`, or `podCIDR` alone).
fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match spec.pod_cidrs.as_deref() {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => spec
            .pod_cidr
            .clone()
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect(),
    }
}

/// Gives the Node `name` a podCIDR, takes note of the one it has, or frees the one it had.
async fn sync(
    ctx: &Context,
    allocator: &Mutex<Allocator>,
    queue: &Queue<String>,
    recorder: &EventRecorder,
    name: &str,
) -> Result<Requeue> {
    let lock = || {
        allocator
            .lock()
            .map_err(|_| Error::Other("node CIDR allocator poisoned".into()))
    };
    let Some(node) = ctx.informers.nodes.get("", name) else {
        let freed = lock()?.release(name);
        if let Some(cidr) = freed {
            tracing::info!(node = name, %cidr, "released the podCIDR of a deleted node");
            // Someone may be waiting for a free subnet.
            for n in ctx.informers.nodes.list() {
                if pod_cidrs(&n).is_empty() {
                    queue.add(n.metadata.name.clone().unwrap_or_default());
                }
            }
        }
        return Ok(Requeue::No);
    };
    let existing = pod_cidrs(&node);
    if !existing.is_empty() {
        if let Err(e) = lock()?.occupy_node(name, &existing) {
            tracing::warn!(node = name, error = %e, "leaving the node's podCIDR alone");
        }
        return Ok(Requeue::No);
    }
    let cidr = match lock()?.allocate(name) {
        Some(c) => c,
        None => {
            tracing::warn!(node = name, "no podCIDR left in the cluster CIDR");
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.to_string()),
                // Kubernetes' node status events use the node's name as its UID.
                uid: Some(name.to_string()),
                ..ObjectReference::default()
            };
            recorder.record(
                reference,
                EventType::Normal,
                "CIDRNotAvailable",
                &format!("Node {name} status is now: CIDRNotAvailable"),
            );
            return Ok(Requeue::After(FULL_RETRY));
        }
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = name, %cidr, "assigned podCIDR");
            Ok(Requeue::No)
        }
        Err(e) if is_not_found(&e) => {
            lock()?.release(name);
            Ok(Requeue::No)
        }
        Err(e) => {
            // The patch may have been applied all the same (a timeout after the write), or
            // someone else may have set a podCIDR meanwhile: the Node says which. Until it
            // says it has none, the subnet stays the Node's, so no other Node can get it.
            match api.get(name).await {
                Ok(live) => {
                    let cidrs = pod_cidrs(&live);
                    if cidrs.is_empty() {
                        // Not applied: the retry gives the Node the same subnet.
                        return Err(e.into());
                    }
                    if let Err(why) = lock()?.occupy_node(name, &cidrs) {
                        tracing::warn!(node = name, error = %why, "leaving the node's podCIDR alone");
                    }
                    Ok(Requeue::No)
                }
                Err(get) if is_not_found(&get) => {
                    lock()?.release(name);
                    Ok(Requeue::No)
                }
                // Still not known: keep the subnet reserved and try again.
                Err(_) => Err(e.into()),
            }
        }
    }
}

/// The subnets of the cluster CIDR and who has them.
#[derive(Debug)]
struct Allocator {
    cluster: Ipv4Net,
    mask: u8,
    /// How many subnets there are.
    size: u64,
    /// Subnet index -> the node holding it.
    used: BTreeMap<u64, String>,
    /// Node -> the subnet indices it holds.
    by_node: HashMap<String, Vec<u64>>,
    /// Where the next search starts (after the last subnet given).
    next: u64,
}

impl Allocator {
    fn new(cluster: Ipv4Net, mask: u8) -> Result<Allocator> {
        let cluster = cluster.trunc();
        if mask < cluster.prefix_len() || mask > 32 {
            return Err(Error::Config(format!(
                "node CIDR mask size /{mask} does not fit in cluster CIDR {cluster}"
            )));
        }
        Ok(Allocator {
            cluster,
            mask,
            size: 1u64 << (mask - cluster.prefix_len()),
            used: BTreeMap::new(),
            by_node: HashMap::new(),
            next: 0,
        })
    }

    /// The subnet with index `i`.
    fn subnet(&self, i: u64) -> Option<Ipv4Net> {
        let base = u64::from(u32::from(self.cluster.network()));
        let addr = base.checked_add(i.checked_shl(32 - u32::from(self.mask))?)?;
        let addr = u32::try_from(addr).ok()?;
        Ipv4Net::new(Ipv4Addr::from(addr), self.mask).ok()
    }

    /// The subnet indices `cidr` covers, or why it is not ours.
    fn indices(&self, cidr: &str) -> Result<std::ops::Range<u64>, String> {
        let net: Ipv4Net = cidr
            .parse()
            .map_err(|_| format!("podCIDR {cidr:?} is not an IPv4 CIDR"))?;
        let net = net.trunc();
        if !self.cluster.contains(&net) && !net.contains(&self.cluster) {
            return Err(format!(
                "podCIDR {net} is outside the cluster CIDR {}",
                self.cluster
            ));
        }
        let base = u32::from(self.cluster.network());
        let shift = 32 - u32::from(self.mask);
        let index = |a: Ipv4Addr| u64::from(u32::from(a).saturating_sub(base) >> shift);
        let first = index(net.network().max(self.cluster.network()));
        let last = index(net.broadcast().min(self.cluster.broadcast()));
        Ok(first..last + 1)
    }

    /// Records that `node` holds `cidrs` (what it already carries).
    fn occupy_node(&mut self, node: &str, cidrs: &[String]) -> Result<(), String> {
        let Some(first) = cidrs.iter().find(|c| c.parse::<Ipv4Net>().is_ok()) else {
            return Err(format!("no IPv4 podCIDR in {cidrs:?}"));
        };
        let range = self.indices(first)?;
        if self
            .by_node
            .get(node)
            .is_some_and(|held| held.iter().copied().eq(range.clone()))
        {
            return Ok(());
        }
        self.release(node);
        let mut clash = None;
        for i in range.clone() {
            if let Some(other) = self.used.insert(i, node.to_string())
                && other != node
            {
                clash = Some(other);
            }
        }
        self.by_node.insert(node.to_string(), range.collect());
        match clash {
            Some(other) => Err(format!(
                "podCIDR {first} overlaps the podCIDR of node {other}"
            )),
            None => Ok(()),
        }
    }

    /// The subnet for `node`: the one it was given already (a write that has not come back
    /// through the cache yet), or the next free one. `None` when the range is full.
    fn allocate(&mut self, node: &str) -> Option<Ipv4Net> {
        if let Some(&i) = self.by_node.get(node).and_then(|held| held.first()) {
            return self.subnet(i);
        }
        for step in 0..self.size {
            let i = (self.next + step) % self.size;
            if let std::collections::btree_map::Entry::Vacant(slot) = self.used.entry(i) {
                slot.insert(node.to_string());
                self.by_node.insert(node.to_string(), vec![i]);
                self.next = (i + 1) % self.size;
                return self.subnet(i);
            }
        }
        None
    }

    /// Frees what `node` holds; the first subnet it held, if any.
    fn release(&mut self, node: &str) -> Option<Ipv4Net> {
        let held = self.by_node.remove(node)?;
        for i in &held {
            if self.used.get(i).is_some_and(|n| n == node) {
                self.used.remove(i);
            }
        }
        held.first().and_then(|&i| self.subnet(i))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use keelson_client::Change;
    use serde_json::{Value, json};

    use super::*;
    use crate::replication::fake_api;

    fn alloc(cidr: &str, mask: u8) -> Allocator {
        Allocator::new(cidr.parse().unwrap(), mask).unwrap()
    }

    #[test]
    fn hands_out_distinct_subnets_in_order_and_reports_full() {
        let mut a = alloc("10.9.0.0/23", 24);
        assert_eq!(a.allocate("n1").unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.1.0/24");
        assert_eq!(a.allocate("n3"), None);
        // Asking again for a node that has one gives the same.
        assert_eq!(a.allocate("n1").unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(a.release("n1").unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(a.allocate("n3").unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(a.release("gone"), None);
    }

    #[test]
    fn existing_podcidrs_are_never_handed_out_again() {
        let mut a = alloc("10.244.0.0/16", 24);
        a.occupy_node("old1", &["10.244.0.0/24".into()]).unwrap();
        a.occupy_node("old2", &["10.244.2.0/24".into()]).unwrap();
        let got: Vec<String> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| a.allocate(n).unwrap().to_string())
            .collect();
        assert_eq!(got, ["10.244.1.0/24", "10.244.3.0/24", "10.244.4.0/24"]);
        // Occupying what a node already holds is a no-op.
        a.occupy_node("n1", &["10.244.1.0/24".into()]).unwrap();
        assert_eq!(a.used.len(), 5);
    }

    #[test]
    fn foreign_and_overlapping_podcidrs() {
        let mut a = alloc("10.244.0.0/16", 24);
        let err = a.occupy_node("x", &["192.168.0.0/24".into()]).unwrap_err();
        assert!(err.contains("outside the cluster CIDR"), "{err}");
        assert!(a.occupy_node("x", &["nonsense".into()]).is_err());
        assert!(a.used.is_empty());
        // A bigger block marks every subnet inside it.
        a.occupy_node("big", &["10.244.0.0/22".into()]).unwrap();
        assert_eq!(a.used.len(), 4);
        assert_eq!(a.allocate("n").unwrap().to_string(), "10.244.4.0/24");
        let err = a.occupy_node("dup", &["10.244.4.0/24".into()]).unwrap_err();
        assert!(err.contains("node n"), "{err}");
    }

    #[test]
    fn the_search_wraps_around() {
        let mut a = alloc("10.0.0.0/22", 24);
        for n in ["a", "b", "c", "d"] {
            a.allocate(n).unwrap();
        }
        a.release("b");
        assert_eq!(a.allocate("e").unwrap().to_string(), "10.0.1.0/24");
        assert_eq!(a.allocate("f"), None);
    }

    /// Syncs node `n1` (cached without a podCIDR) against a fake API server where patching
    /// it fails with `patch` and reading it answers `get`; returns the allocator after.
    async fn sync_failing(patch: (u16, Value), get: (u16, Value)) -> (Result<Requeue>, Allocator) {
        let (client, _) = fake_api::client(move |call| match call.method.as_str() {
            "PATCH" => patch.clone(),
            "GET" => get.clone(),
            _ => (201, call.body.clone()),
        });
        let ctx = fake_api::context(client);
        let mut n1 = Node::default();
        n1.metadata.name = Some("n1".into());
        ctx.informers.nodes.apply(Change::Applied(n1));
        let allocator = Mutex::new(alloc("10.9.0.0/23", 24));
        let recorder = ctx.recorder("cidrAllocator");
        let r = sync(&ctx, &allocator, &Queue::new(), &recorder, "n1").await;
        (r, allocator.into_inner().unwrap())
    }

    fn node_json(cidr: Option<&str>) -> (u16, Value) {
        let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
        if let Some(c) = cidr {
            n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
        }
        (200, n)
    }

    #[tokio::test]
    async fn a_write_that_may_have_been_applied_keeps_its_subnet() {
        // Timed out, but applied: the node has the subnet; no other node may get it.
        let (r, mut a) = sync_failing(
            fake_api::failure(504, "Timeout"),
            node_json(Some("10.9.0.0/24")),
        )
        .await;
        assert!(matches!(r, Ok(Requeue::No)), "{r:?}");
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.1.0/24");
        assert_eq!(a.allocate("n3"), None);

        // Applied with another subnet (someone else set it): that one is taken instead.
        let (r, mut a) = sync_failing(
            fake_api::failure(504, "Timeout"),
            node_json(Some("10.9.1.0/24")),
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.0.0/24");

        // Not applied: an error to retry, the subnet still reserved for n1.
        let (r, mut a) =
            sync_failing(fake_api::failure(500, "InternalError"), node_json(None)).await;
        assert!(r.is_err());
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.1.0/24");
        assert_eq!(a.allocate("n3"), None);
        assert_eq!(a.allocate("n1").unwrap().to_string(), "10.9.0.0/24");

        // Unknown (the read fails too): still reserved.
        let (r, mut a) = sync_failing(
            fake_api::failure(504, "Timeout"),
            fake_api::failure(503, "ServiceUnavailable"),
        )
        .await;
        assert!(r.is_err());
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.1.0/24");
        assert_eq!(a.allocate("n3"), None);

        // The node is gone: its subnet is free.
        let (r, mut a) = sync_failing(
            fake_api::failure(504, "Timeout"),
            fake_api::failure(404, "NotFound"),
        )
        .await;
        assert!(matches!(r, Ok(Requeue::No)), "{r:?}");
        assert!(!a.by_node.contains_key("n1"));
        assert_eq!(a.allocate("n2").unwrap().to_string(), "10.9.1.0/24");
        assert_eq!(a.allocate("n3").unwrap().to_string(), "10.9.0.0/24");
    }
}
