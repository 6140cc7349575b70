//! Running the controllers: configuration, the shared context, leadership.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, ResourceQuota, Secret,
    Service, ServiceAccount,
};
use keelson_client::events::EventRecorder;
use keelson_client::leader::Leadership;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::informer::Informer;
use crate::{Error, Result};

/// A controller's running part, polled once the caches it reads have synced.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every controller, by the name `--controllers` uses (Kubernetes' names).
pub const CONTROLLERS: &[&str] = &[
    "replicationcontroller",
    "garbagecollector",
    "endpoint",
    "nodelifecycle",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "resourcequota",
    "nodeipam",
    "podgc",
];

/// How the controllers behave. [`Config::default`] gives Kubernetes' defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// The controllers to run (names from [`CONTROLLERS`]).
    pub controllers: BTreeSet<String>,
    /// How long a node may go without a heartbeat before it is marked Unknown (40 s).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (5 s).
    pub node_monitor_period: Duration,
    /// How long a node stays unreachable before its pods are deleted (5 min).
    pub pod_eviction_timeout: Duration,
    /// Nodes per second whose pods may be evicted (0.1: one node every 10 s).
    pub node_eviction_rate: f64,
    /// The pod network nodes' podCIDRs are carved from; `None` turns node IPAM off.
    pub cluster_cidr: Option<Ipv4Net>,
    /// The prefix length of each node's podCIDR (24).
    pub node_cidr_mask_size: u8,
    /// PEM private key that signs service-account tokens; without it no tokens are made.
    pub service_account_private_key: Option<String>,
    /// PEM CA bundle put in token Secrets as `ca.crt`.
    pub root_ca: Option<String>,
    /// Workers per controller for the busy ones (replication, endpoints): 5 as in Kubernetes.
    pub concurrent_syncs: usize,
    /// Finished pods kept before the oldest are deleted (12,500; 0 keeps them all).
    pub terminated_pod_gc_threshold: usize,
    /// Who this controller manager is, in events (`reportingInstance`).
    pub instance: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            controllers: CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            pod_eviction_timeout: Duration::from_secs(300),
            node_eviction_rate: 0.1,
            cluster_cidr: "10.244.0.0/16".parse().ok(),
            node_cidr_mask_size: 24,
            service_account_private_key: None,
            root_ca: None,
            concurrent_syncs: 5,
            terminated_pod_gc_threshold: 12_500,
            instance: keelson_client::leader::default_identity(),
        }
    }
}

impl Config {
    /// Applies a `--controllers` list: `*` for all, `name` to add one, `-name` to remove one.
    pub fn select_controllers(&mut self, list: &[String]) -> Result<()> {
        let mut out = BTreeSet::new();
        let mut removed = BTreeSet::new();
        for item in list.iter().flat_map(|s| s.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, add) = match item.strip_prefix('-') {
                Some(n) => (n, false),
                None => (item, true),
            };
            if name == "*" {
                if add {
                    out.extend(CONTROLLERS.iter().map(|s| s.to_string()));
                }
                continue;
            }
            if !CONTROLLERS.contains(&name) {
                return Err(Error::Config(format!(
                    "unknown controller {name:?} (known: {})",
                    CONTROLLERS.join(", ")
                )));
            }
            if add {
                out.insert(name.to_string());
            } else {
                removed.insert(name.to_string());
            }
        }
        self.controllers = out.difference(&removed).cloned().collect();
        Ok(())
    }

    /// Checks values that cannot work.
    pub fn validate(&self) -> Result<()> {
        if let Some(cidr) = self.cluster_cidr
            && self.controllers.contains("nodeipam")
            && (self.node_cidr_mask_size < cidr.prefix_len() || self.node_cidr_mask_size > 30)
        {
            return Err(Error::Config(format!(
                "node CIDR mask size /{} does not fit in cluster CIDR {cidr} (it must be between /{} and /30)",
                self.node_cidr_mask_size,
                cidr.prefix_len()
            )));
        }
        if !(self.node_eviction_rate.is_finite() && self.node_eviction_rate > 0.0) {
            return Err(Error::Config(
                "the node eviction rate must be positive".into(),
            ));
        }
        Ok(())
    }

    fn enabled(&self, name: &str) -> bool {
        self.controllers.contains(name)
    }
}

/// One watch cache per resource, shared by every controller; only the ones a controller
/// uses are started.
pub struct Informers {
    pub pods: Informer<Pod>,
    pub nodes: Informer<Node>,
    pub services: Informer<Service>,
    pub endpoints: Informer<Endpoints>,
    pub replication_controllers: Informer<ReplicationController>,
    pub namespaces: Informer<Namespace>,
    pub service_accounts: Informer<ServiceAccount>,
    pub secrets: Informer<Secret>,
    pub config_maps: Informer<ConfigMap>,
    pub resource_quotas: Informer<ResourceQuota>,
    /// Node heartbeats: Leases in `kube-node-lease`.
    pub node_leases: Informer<Lease>,
}

impl Informers {
    fn new(client: &Client) -> Self {
        let c = || client.clone();
        Self {
            pods: Informer::new(Api::all(c()), "pods"),
            nodes: Informer::new(Api::all(c()), "nodes"),
            services: Informer::new(Api::all(c()), "services"),
            endpoints: Informer::new(Api::all(c()), "endpoints"),
            replication_controllers: Informer::new(Api::all(c()), "replicationcontrollers"),
            namespaces: Informer::new(Api::all(c()), "namespaces"),
            service_accounts: Informer::new(Api::all(c()), "serviceaccounts"),
            secrets: Informer::new(Api::all(c()), "secrets"),
            config_maps: Informer::new(Api::all(c()), "configmaps"),
            resource_quotas: Informer::new(Api::all(c()), "resourcequotas"),
            node_leases: Informer::new(Api::namespaced(c(), "kube-node-lease"), "leases"),
        }
    }

    /// The watch of every used informer, and a future that resolves once all have listed.
    fn start(&self) -> (Vec<Task>, Task) {
        let mut runs: Vec<Task> = Vec::new();
        let mut syncs: Vec<Task> = Vec::new();
        macro_rules! each {
            ($($f:ident),*) => {$(
                if self.$f.is_used() {
                    let inf = self.$f.clone();
                    runs.push(Box::pin(inf.clone().run(watcher::Config::default())));
                    syncs.push(Box::pin(async move { inf.wait_synced().await }));
                }
            )*};
        }
        each!(
            pods,
            nodes,
            services,
            endpoints,
            replication_controllers,
            namespaces,
            service_accounts,
            secrets,
            config_maps,
            resource_quotas,
            node_leases
        );
        let synced: Task = Box::pin(async move {
            futures::future::join_all(syncs).await;
        });
        (runs, synced)
    }

    /// Drops every handler (see [`Informer::clear_handlers`]).
    fn clear_handlers(&self) {
        self.pods.clear_handlers();
        self.nodes.clear_handlers();
        self.services.clear_handlers();
        self.endpoints.clear_handlers();
        self.replication_controllers.clear_handlers();
        self.namespaces.clear_handlers();
        self.service_accounts.clear_handlers();
        self.secrets.clear_handlers();
        self.config_maps.clear_handlers();
        self.resource_quotas.clear_handlers();
        self.node_leases.clear_handlers();
    }
}

/// What every controller gets: the client, the caches and the configuration.
pub struct Context {
    pub client: Client,
    pub informers: Informers,
    pub config: Arc<Config>,
}

impl Context {
    /// An event recorder reporting as `component` (such as `replication-controller`).
    pub fn recorder(&self, component: &str) -> EventRecorder {
        EventRecorder::new(self.client.clone(), component, &self.config.instance)
    }
}

/// Builds the enabled controllers: registers their handlers and returns their workers.
fn build(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    type Start = fn(&Arc<Context>) -> Result<Vec<Task>>;
    let all: &[(&str, Start)] = &[
        ("replicationcontroller", crate::replication::start),
        ("garbagecollector", crate::gc::start),
        ("endpoint", crate::endpoints::start),
        ("nodelifecycle", crate::nodelifecycle::start),
        ("namespace", crate::namespace::start),
        ("serviceaccount", crate::serviceaccount::start_accounts),
        ("serviceaccount-token", crate::serviceaccount::start_tokens),
        ("resourcequota", crate::quota::start),
        ("nodeipam", crate::ipam::start),
        ("podgc", crate::podgc::start),
    ];
    let mut tasks = Vec::new();
    for (name, start) in all {
        if ctx.config.enabled(name) {
            tasks.extend(start(ctx)?);
            tracing::info!(controller = name, "controller started");
        }
    }
    Ok(tasks)
}

/// Runs the enabled controllers while `leadership` says this process leads, until `shutdown`
/// turns true. Losing the lead stops every controller and drops the caches; regaining it
/// starts afresh from a new list.
pub async fn run(
    client: Client,
    config: Config,
    leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    config.validate()?;
    let config = Arc::new(config);
    let mut leading = leadership.subscribe();
    loop {
        tokio::select! {
            r = leading.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        tracing::info!("leading: starting controllers");
        let ctx = Arc::new(Context {
            client: client.clone(),
            informers: Informers::new(&client),
            config: config.clone(),
        });
        let workers = build(&ctx)?;
        let (watches, synced) = ctx.informers.start();
        let mut set = tokio::task::JoinSet::new();
        for w in watches {
            set.spawn(w);
        }
        // Watches and workers run forever: one that ends has failed (it panicked), and the
        // controllers must not go on leading with a part missing. Everything is stopped and
        // started afresh.
        let started = async {
            tokio::select! {
                _ = synced => {}
                Some(r) = set.join_next() => return task_ended(r),
            }
            tracing::info!("caches synced");
            for w in workers {
                set.spawn(w);
            }
            match set.join_next().await {
                Some(r) => task_ended(r),
                None => futures::future::pending::<bool>().await,
            }
        };
        let mut failed = false;
        tokio::select! {
            f = started => failed = f,
            r = leading.wait_for(|l| !*l) => {
                if r.is_ok() {
                    tracing::warn!("lost the leader lease: stopping controllers");
                }
            }
            _ = shutdown.wait_for(|s| *s) => {}
        }
        set.shutdown().await;
        // Handlers may hold the context: without this the caches would outlive the lead.
        ctx.informers.clear_handlers();
        drop(ctx);
        if *shutdown.borrow() {
            break;
        }
        if failed {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    leadership.release().await;
    Ok(())
}

/// Logs why a controller task ended; always a failure (true).
fn task_ended(r: std::result::Result<(), tokio::task::JoinError>) -> bool {
    match r {
        Err(e) if e.is_panic() => {
            tracing::error!("a controller task panicked: restarting the controllers")
        }
        _ => tracing::error!("a controller task ended: restarting the controllers"),
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn controllers_are_selected_like_kubernetes() {
        let mut c = Config::default();
        c.select_controllers(&["*,-nodeipam".into()]).unwrap();
        assert!(!c.enabled("nodeipam"));
        assert!(c.enabled("endpoint"));
        c.select_controllers(&["endpoint".into(), "namespace".into()])
            .unwrap();
        assert_eq!(c.controllers.len(), 2);
        let err = c.select_controllers(&["replicaset".into()]).unwrap_err();
        assert!(err.to_string().contains("replicaset"), "{err}");
    }

    #[test]
    fn a_node_mask_outside_the_cluster_cidr_is_refused() {
        let mut c = Config {
            node_cidr_mask_size: 12,
            ..Config::default()
        };
        assert!(c.validate().is_err());
        c.node_cidr_mask_size = 24;
        c.validate().unwrap();
    }
}
