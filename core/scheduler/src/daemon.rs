//! `keelson scheduler`: the [`Scheduler`] fed by watches of nodes, pods, services and
//! replication controllers, its decisions carried out as bindings, events and pod conditions.
//!
//! One task owns the scheduler and is the only one to touch it; watches and bindings talk to
//! it through a channel. It schedules only once every watch has listed (a scheduler that
//! started placing pods before it knew the nodes would call every pod unschedulable) and only
//! while it leads. Bindings run concurrently, up to a limit, while the loop goes on: each pod
//! is assumed on its node at once, so the next pods see the room it takes.

use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, Pod, ReplicationController, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::events::{EventRecorder, EventType, reference};
use keelson_client::leader::Leadership;
use keelson_client::{Change, changes};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::scheduler::{Decision, Scheduler};

/// How the daemon runs, beyond the policies it schedules with.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The `spec.schedulerName` of the pods this scheduler places.
    pub scheduler_name: String,
    /// How many bindings may be in flight at once.
    pub bind_concurrency: usize,
    /// The reporting instance named in events (host name and a unique suffix).
    pub instance: String,
}

/// What reaches the scheduling task.
enum Input {
    Node(Change<Node>),
    Pod(Change<Pod>),
    Service(Change<Service>),
    Rc(Change<ReplicationController>),
    Bound {
        key: String,
        node: String,
        pod: ObjectReference,
        result: BindResult,
    },
}

enum BindResult {
    Bound,
    /// The API server says the binding can never succeed (the pod is gone or bound).
    Rejected(String),
    /// It might succeed later.
    Failed(String),
}

/// The four watches, each marked once its first list is in.
#[derive(Default)]
struct Synced {
    nodes: bool,
    pods: bool,
    services: bool,
    rcs: bool,
}

impl Synced {
    fn all(&self) -> bool {
        self.nodes && self.pods && self.services && self.rcs
    }
}

/// Watches every `K` in the cluster and forwards the changes, wrapped, into the scheduling
/// task's channel until it closes.
fn watch<K>(
    client: &Client,
    what: &'static str,
    tx: &mpsc::Sender<Input>,
    wrap: fn(Change<K>) -> Input,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let stream = changes(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        what,
    );
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut stream = pin!(stream);
        while let Some(change) = stream.next().await {
            if tx.send(wrap(change)).await.is_err() {
                break;
            }
        }
    });
}

/// Runs the scheduler until `shutdown` turns true; `leadership` says when to act.
pub async fn run(
    client: Client,
    mut scheduler: Scheduler,
    options: DaemonOptions,
    leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<Input>(8192);
    watch(&client, "nodes", &tx, Input::Node);
    watch(&client, "pods", &tx, Input::Pod);
    watch(&client, "services", &tx, Input::Service);
    watch(&client, "replicationcontrollers", &tx, Input::Rc);
    let recorder = EventRecorder::new(client.clone(), &options.scheduler_name, &options.instance);
    let bindings = Arc::new(Semaphore::new(options.bind_concurrency.max(1)));
    let mut leading = leadership.subscribe();
    let mut synced = Synced::default();
    let mut more = false;
    tracing::info!(scheduler = %options.scheduler_name, "scheduler started; waiting for caches");
    loop {
        let wake = if more {
            Some(Instant::now())
        } else {
            scheduler.next_retry()
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            input = rx.recv() => {
                let Some(input) = input else { break };
                let was_synced = synced.all();
                handle(&mut scheduler, &mut synced, &recorder, input);
                // Take whatever else has arrived before scheduling again, so each decision
                // sees the freshest cluster.
                for _ in 0..4096 {
                    let Ok(input) = rx.try_recv() else { break };
                    handle(&mut scheduler, &mut synced, &recorder, input);
                }
                if !was_synced && synced.all() {
                    tracing::info!(pending = scheduler.pending(), "caches synced");
                }
            }
            _ = leading.changed() => {
                if *leading.borrow() {
                    tracing::info!("leading: scheduling");
                } else {
                    tracing::info!("not leading: standing by");
                }
            }
            _ = sleep => {}
        }
        more = false;
        if !synced.all() || !*leading.borrow() {
            continue;
        }
        // A batch, then back to the channel for fresh events.
        for _ in 0..256 {
            let Ok(permit) = bindings.clone().try_acquire_owned() else {
                // Every binding slot is busy; a returning binding wakes the loop.
                break;
            };
            match scheduler.schedule_next(Instant::now()) {
                Ok(None) => break,
                Ok(Some(decision)) => {
                    act(&client, &scheduler, &recorder, &tx, decision, permit);
                    more = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "scheduling failed");
                    break;
                }
            }
        }
    }
    leadership.release().await;
    tracing::info!("scheduler stopped");
}

fn handle(scheduler: &mut Scheduler, synced: &mut Synced, recorder: &EventRecorder, input: Input) {
    match input {
        Input::Node(Change::Applied(n)) => scheduler.node_changed(n),
        Input::Node(Change::Deleted(k)) => scheduler.node_deleted(&k.name),
        Input::Node(Change::Synced) => synced.nodes = true,
        Input::Pod(Change::Applied(p)) => scheduler.pod_changed(p),
        Input::Pod(Change::Deleted(k)) => scheduler.pod_deleted(&k.to_string()),
        Input::Pod(Change::Synced) => synced.pods = true,
        Input::Service(Change::Applied(s)) => scheduler.service_changed(&s),
        Input::Service(Change::Deleted(k)) => scheduler.service_deleted(&k.namespace, &k.name),
        Input::Service(Change::Synced) => synced.services = true,
        Input::Rc(Change::Applied(r)) => scheduler.rc_changed(&r),
        Input::Rc(Change::Deleted(k)) => scheduler.rc_deleted(&k.namespace, &k.name),
        Input::Rc(Change::Synced) => synced.rcs = true,
        Input::Bound {
            key,
            node,
            pod,
            result,
        } => match result {
            BindResult::Bound => {
                let ns = pod.namespace.clone().unwrap_or_default();
                let name = pod.name.clone().unwrap_or_default();
                recorder.record(
                    pod,
                    EventType::Normal,
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {node}"),
                );
            }
            BindResult::Rejected(message) => {
                tracing::info!(pod = %key, node = %node, %message, "binding rejected; waiting for the pod's next update");
                scheduler.binding_abandoned(&key);
            }
            BindResult::Failed(message) => {
                let retry = scheduler.binding_failed(&key, Instant::now());
                tracing::warn!(pod = %key, node = %node, %message, ?retry, "binding failed");
                if retry.is_some() {
                    recorder.record(
                        pod,
                        EventType::Warning,
                        "FailedScheduling",
                        &format!("Binding rejected: {message}"),
                    );
                }
            }
        },
    }
}

/// Carries out one decision; a binding holds `permit` until it returns.
fn act(
    client: &Client,
    scheduler: &Scheduler,
    recorder: &EventRecorder,
    tx: &mpsc::Sender<Input>,
    decision: Decision,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    match decision {
        Decision::Bind { key, node } => {
            let Some(pod) = scheduler.pod(&key) else {
                return;
            };
            let pod_ref = reference(pod);
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let tx = tx.clone();
            tokio::spawn(async move {
                let binding = Binding {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.clone()),
                        uid,
                        ..ObjectMeta::default()
                    },
                    target: ObjectReference {
                        kind: Some("Node".into()),
                        name: Some(node.clone()),
                        ..ObjectReference::default()
                    },
                };
                let result = match api
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => BindResult::Bound,
                    Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                        BindResult::Rejected(s.message)
                    }
                    Err(e) => BindResult::Failed(e.to_string()),
                };
                drop(permit);
                let _ = tx
                    .send(Input::Bound {
                        key,
                        node,
                        pod: pod_ref,
                        result,
                    })
                    .await;
            });
        }
        Decision::Unschedulable { key, message, .. } => {
            drop(permit);
            let Some(pod) = scheduler.pod(&key) else {
                return;
            };
            recorder.record(
                reference(pod),
                EventType::Warning,
                "FailedScheduling",
                &message,
            );
            set_unschedulable(client, pod, &message);
        }
        Decision::Failed { key, message, .. } => {
            drop(permit);
            tracing::warn!(pod = %key, %message, "scheduling cycle failed");
            let Some(pod) = scheduler.pod(&key) else {
                return;
            };
            recorder.record(
                reference(pod),
                EventType::Warning,
                "FailedScheduling",
                &message,
            );
        }
    }
}

/// Sets the pod's `PodScheduled` condition to False/Unschedulable with `message`, unless it
/// says that already.
fn set_unschedulable(client: &Client, pod: &Pod, message: &str) {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return;
    }
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": jiff::Timestamp::now().to_string(),
            }]
        }
    });
    tokio::spawn(async move {
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "could not set the PodScheduled condition");
        }
    });
}
