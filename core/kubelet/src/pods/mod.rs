//! The pod workers: the pods bound to this node are watched (field selector
//! `spec.nodeName=<node>`), and each pod uid gets one worker task that syncs it, serialized,
//! whenever the pod changes and on timers (restart backoff, status refresh).
//!
//! A sync ensures the pod's sandbox and its containers (restarted per restartPolicy with
//! CrashLoopBackOff), then posts the pod's status when it changed. A pod with a
//! deletionTimestamp has its containers stopped within its grace period and is then deleted
//! for good; a pod gone from the API has its containers removed. At start, containers of pods
//! that still exist are adopted as they are, and those of pods that are gone are removed.
//!
//! Static pods (`crate::static_pods`) are a second source: read from manifest files before
//! the watch starts and on a timer, and handed to the same workers. Mirror pods seen by the
//! watch are never run; they wake the worker of their static pod, which keeps them in place.
//!
//! Images are pulled per imagePullPolicy (`crate::images::ContainerImages`).
//!
//! Volumes, environments and pod files come from `crate::volumes`.
//!
//! Not yet: init containers.

mod events;
mod status;
mod worker;

pub use events::PodEvents;

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use keelson_client::{Change, ObjectKey};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;

use crate::runtime::{self, Kind, Runtime};
use crate::static_pods::{self, StaticPods};

pub use status::{BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET, conditions, next_backoff, phase};

/// Errors of a pod sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Runtime(#[from] runtime::Error),
    #[error(transparent)]
    Images(#[from] crate::images::Error),
    #[error(transparent)]
    Volumes(#[from] crate::volumes::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the pod workers run.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// The node whose pods are run.
    pub node_name: String,
    /// The pods' hostIP (the node's InternalIP).
    pub host_ip: Option<String>,
    /// How often a worker looks at its containers when nothing else wakes it.
    pub resync: Duration,
    /// Where static pods are read from; none runs no static pods.
    pub static_pods: Option<crate::static_pods::StaticPodConfig>,
    /// Where pod volumes and files go, and the pods' DNS settings.
    pub volumes: crate::volumes::VolumeConfig,
    /// Insecure registries, and whether pulls take turns.
    pub image_pulls: crate::images::PullConfig,
}

impl PodConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            host_ip: None,
            resync: Duration::from_secs(1),
            static_pods: None,
            volumes: crate::volumes::VolumeConfig::default(),
            image_pulls: crate::images::PullConfig::default(),
        }
    }
}

struct Ctx {
    client: kube::Client,
    runtime: Runtime,
    config: PodConfig,
    events: PodEvents,
    /// The mirror pods of this node's static pods, as the pod watch sees them.
    mirrors: crate::static_pods::Mirrors,
    /// The pod network; none runs pods with loopback only.
    network: Option<crate::network::PodNetwork>,
}

/// Runs the pods bound to one node.
pub struct PodManager {
    ctx: Arc<Ctx>,
}

/// How long workers get to finish a sync at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl PodManager {
    pub fn new(client: kube::Client, runtime: Runtime, config: PodConfig) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                events: PodEvents::new(client.clone(), &config.node_name),
                mirrors: Default::default(),
                client,
                runtime,
                config,
                network: None,
            }),
        }
    }

    /// Attaches the pods' sandboxes to `network` (before [`PodManager::run`]).
    pub fn with_network(mut self, network: crate::network::PodNetwork) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.network = Some(network);
        }
        self
    }

    /// Watches this node's pods and runs a worker per pod until `shutdown` turns true.
    /// Containers are left running at shutdown: a restarted kubelet adopts them.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let selector = format!("spec.nodeName={}", self.ctx.config.node_name);
        let mut changes = pin!(keelson_client::changes(
            api,
            watcher::Config::default().fields(&selector),
            "pods"
        ));
        let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
        let mut uids: HashMap<ObjectKey, String> = HashMap::new();
        let mut tasks: JoinSet<Option<String>> = JoinSet::new();
        let mut synced = false;
        // Static pods are read first, so that their containers are not taken for orphans.
        let node = self.ctx.config.node_name.clone();
        let mut statics = StaticPods::new(self.ctx.config.static_pods.clone(), &node);
        for pod in statics.poll(|uid| workers.contains_key(uid)) {
            self.deliver(&mut workers, &mut tasks, &shutdown, pod);
        }
        let mut static_tick = tokio::time::interval(statics.check_frequency());
        static_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        static_tick.reset();
        loop {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok(Some(uid)) => {
                            if workers.get(&uid).is_some_and(|tx| tx.receiver_count() == 0) {
                                workers.remove(&uid);
                            }
                            for pod in statics.release(|uid| workers.contains_key(uid)) {
                                self.deliver(&mut workers, &mut tasks, &shutdown, pod);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::error!("pod worker failed: {e}"),
                    }
                }
                _ = static_tick.tick() => {
                    for pod in statics.poll(|uid| workers.contains_key(uid)) {
                        self.deliver(&mut workers, &mut tasks, &shutdown, pod);
                    }
                    if synced {
                        for mirror in self.ctx.mirrors.orphans(&statics.names()) {
                            let ctx = self.ctx.clone();
                            tasks.spawn(async move {
                                if let Err(e) = static_pods::delete_mirror(&ctx.client, &mirror).await {
                                    tracing::warn!("{e}");
                                }
                                None
                            });
                        }
                    }
                }
                change = changes.next() => match change {
                    None => break,
                    Some(Change::Applied(pod)) if static_pods::is_mirror(&pod) => {
                        // Not run: the worker of its static pod keeps it in place.
                        let (namespace, name) = static_pods::full_name(&pod);
                        self.ctx.mirrors.applied(pod);
                        wake_static(&statics, &workers, &namespace, &name);
                    }
                    Some(Change::Applied(pod)) => {
                        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
                            continue;
                        };
                        let key = ObjectKey::of(&pod);
                        if let Some(old) = uids.insert(key, uid.clone()).filter(|o| *o != uid)
                            && let Some(tx) = workers.get(&old)
                        {
                            tx.send_replace(None);
                        }
                        self.deliver(&mut workers, &mut tasks, &shutdown, pod);
                    }
                    Some(Change::Deleted(key)) => {
                        if self.ctx.mirrors.deleted(&key.namespace, &key.name) {
                            wake_static(&statics, &workers, &key.namespace, &key.name);
                        }
                        if let Some(uid) = uids.remove(&key)
                            && let Some(tx) = workers.get(&uid)
                        {
                            tx.send_replace(None);
                        }
                    }
                    Some(Change::Synced) => {
                        if !synced {
                            synced = true;
                            let known: HashSet<String> = workers.keys().cloned().collect();
                            let ctx = self.ctx.clone();
                            let now = std::time::SystemTime::now();
                            tasks.spawn(async move {
                                remove_orphans(&ctx.runtime, ctx.network.as_ref(), &known).await;
                                let volumes = &ctx.config.volumes;
                                crate::volumes::remove_orphaned_pod_dirs(volumes, &known, now);
                                None
                            });
                        }
                    }
                },
            }
        }
        drop(workers);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("pod workers did not stop in time; aborting them");
            tasks.abort_all();
        }
    }
}

impl PodManager {
    /// Hands `pod` to its worker, starting one if it has none.
    fn deliver(
        &self,
        workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
        tasks: &mut JoinSet<Option<String>>,
        shutdown: &watch::Receiver<bool>,
        pod: Pod,
    ) {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            return;
        };
        let delivered = workers
            .get(&uid)
            .is_some_and(|tx| tx.send(Some(pod.clone())).is_ok());
        if !delivered {
            let (tx, rx) = watch::channel(Some(pod));
            workers.insert(uid.clone(), tx);
            let ctx = self.ctx.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                worker::run(ctx, uid.clone(), rx, shutdown).await;
                Some(uid)
            });
        }
    }
}

/// Wakes the worker of static pod `namespace/name` (its mirror pod changed).
fn wake_static(
    statics: &StaticPods,
    workers: &HashMap<String, watch::Sender<Option<Pod>>>,
    namespace: &str,
    name: &str,
) {
    if let Some(uid) = statics.uid_of(namespace, name)
        && let Some(tx) = workers.get(&uid)
    {
        tx.send_modify(|_| {});
    }
}

/// Removes every pod's containers from the runtime, sandboxes last, without touching their
/// network (`keelson down`, which removes the node's network itself).
pub async fn remove_all_pods(rt: &Runtime) {
    remove_orphans(rt, None, &HashSet::new()).await;
}

/// Removes the containers of pods that are no longer bound to this node (deleted while the
/// kubelet was down).
async fn remove_orphans(
    rt: &Runtime,
    network: Option<&crate::network::PodNetwork>,
    known: &HashSet<String>,
) {
    let all = match rt.list_pod_containers().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!("cannot list containers to remove orphans: {e}");
            return;
        }
    };
    let orphans = all.iter().filter(|c| !known.contains(&c.pod_uid));
    // App containers first, then the sandboxes they joined.
    let (sandboxes, containers): (Vec<_>, Vec<_>) = orphans.partition(|c| c.kind == Kind::Sandbox);
    for c in containers {
        tracing::info!(container = %c.id, pod = %format!("{}/{}", c.pod_namespace, c.pod_name), "removing the container of a pod that is gone");
        if let Err(e) = rt
            .stop_container(&runtime::ContainerId(c.id.clone()), worker::ORPHAN_GRACE)
            .await
        {
            tracing::warn!(container = %c.id, "cannot remove orphaned container: {e}");
        }
    }
    for s in sandboxes {
        tracing::info!(sandbox = %s.id, "removing the sandbox of a pod that is gone");
        if let Some(net) = network {
            let id = runtime::SandboxId(s.id.clone());
            let pid = rt.sandbox_status(&id).await.ok().and_then(|st| st.pid);
            let (ns, name, uid) = (&s.pod_namespace, &s.pod_name, &s.pod_uid);
            if let Err(e) = net.detach(ns, name, uid, &s.id, pid).await {
                tracing::warn!(sandbox = %s.id, "cannot detach the network of an orphaned sandbox: {e}");
            }
        }
        if let Err(e) = rt
            .remove_sandbox(&runtime::SandboxId(s.id.clone()), worker::ORPHAN_GRACE)
            .await
        {
            tracing::warn!(sandbox = %s.id, "cannot remove orphaned sandbox: {e}");
        }
    }
}
