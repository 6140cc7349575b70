//! One pod's worker: syncs are serialized, woken by changes to the pod and by timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as K8sStatus, Pod, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_client::events::EventType;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::status::{self, BACKOFF_RESET, next_backoff, restarts};
use super::{Ctx, Error, Result};
use crate::images::{self, ImageSummary};
use crate::runtime::{ContainerId, ContainerState, ContainerStatus, Kind, SandboxId};

/// The grace period for containers of pods removed from the API without one (a forced
/// deletion, or while the kubelet was down).
pub(super) const ORPHAN_GRACE: Duration = Duration::from_secs(1);
/// How long a worker waits after a failed sync.
const RETRY: Duration = Duration::from_secs(2);
/// The first wait after a failed network attach; it doubles up to the restart backoff's cap.
const NET_RETRY: Duration = Duration::from_secs(1);
/// How long a worker of a finished pod sleeps when nothing wakes it.
const IDLE: Duration = Duration::from_secs(3600);

/// What the worker knows of one container across syncs.
#[derive(Default)]
struct Tracked {
    id: Option<ContainerId>,
    /// The container has been started before (a new start is a restart).
    started_before: bool,
    restart_count: i32,
    /// The current exit has been acted on (backoff computed).
    exit_handled: bool,
    /// Not to be restarted (restartPolicy).
    done: bool,
    state: K8sState,
    last_state: Option<K8sState>,
    /// The restart backoff; zero until the first restart.
    backoff: Duration,
    /// The delay of the restart being waited for.
    crash_delay: Duration,
    pull_backoff: Duration,
    pull_failures: u32,
    retry_at: Option<Instant>,
    image_id: String,
}

impl Tracked {
    /// Decides, once per exit, whether and when the container is restarted: at once the
    /// first time, then after the backoff (reset by a long run).
    fn on_exit(&mut self, policy: &str, exit_code: i32, ran: Duration, now: Instant) {
        self.exit_handled = true;
        if ran >= BACKOFF_RESET {
            self.backoff = Duration::ZERO;
        }
        if restarts(policy, exit_code) {
            self.crash_delay = self.backoff;
            self.retry_at = Some(now + self.backoff);
            self.backoff = next_backoff(self.backoff);
        } else {
            self.done = true;
            self.retry_at = None;
        }
    }
}

struct Worker {
    ctx: Arc<Ctx>,
    uid: String,
    pod: Pod,
    sandbox: Option<SandboxId>,
    containers: HashMap<String, Tracked>,
    adopted: bool,
    start_time: Option<Time>,
    /// The status last posted by this worker.
    posted: Option<PodStatus>,
    /// The probes of the running containers.
    probes: crate::probes::PodProbes,
    /// The last mirror pod error logged (static pods), so it is logged once.
    mirror_error: Option<String>,
    /// The pod's volumes and files.
    volumes: crate::volumes::PodVolumes,
    /// The pod's network attachment.
    net: NetState,
    /// The pod's image pulls.
    pulls: images::ContainerImages,
}

/// What the worker knows of its sandbox's network attachment.
#[derive(Default)]
struct NetState {
    /// The pod's IPs once attached.
    ips: Vec<String>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Why the last attach failed.
    message: Option<String>,
}

enum Next {
    After(Duration),
    Done,
}

/// Runs the worker of pod `uid` until the pod is gone and cleaned up, or shutdown.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    uid: String,
    mut rx: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let pulls = images::ContainerImages::new(ctx.config.image_pulls.clone());
    let mut w = Worker {
        ctx,
        uid,
        pod,
        sandbox: None,
        containers: HashMap::new(),
        adopted: false,
        start_time: None,
        posted: None,
        probes: Default::default(),
        mirror_error: None,
        volumes: Default::default(),
        net: NetState::default(),
        pulls,
    };
    let probed = w.probes.wake();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let latest = rx.borrow_and_update().clone();
        let outcome = match latest {
            Some(pod) => {
                w.pod = pod;
                w.sync().await
            }
            None => w.remove(ORPHAN_GRACE).await.map(|()| Next::Done),
        };
        let wait = match outcome {
            Ok(Next::Done) => return,
            Ok(Next::After(d)) => d,
            Err(e) => {
                tracing::warn!(pod = %w.name(), "sync failed: {e}");
                RETRY
            }
        };
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(wait) => {}
            _ = probed.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn container_id_uri(id: &ContainerId) -> String {
    format!("containerd://{id}")
}

fn time(t: Option<jiff::Timestamp>) -> Option<Time> {
    t.map(Time)
}

fn terminated(s: &ContainerStatus, id: &ContainerId) -> ContainerStateTerminated {
    let code = s.exit_code.unwrap_or(-1);
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.to_string()),
        started_at: time(s.started_at),
        finished_at: time(s.finished_at),
        container_id: Some(container_id_uri(id)),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> K8sState {
    K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// `docker.io/library/busybox@sha256:...` for an image named `docker.io/library/busybox:1`.
fn image_id(image: &ImageSummary) -> String {
    let name = image.name.split('@').next().unwrap_or_default();
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    };
    format!("{repo}@{}", image.digest)
}

impl Worker {
    fn name(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(
            self.ctx.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn spec_containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    /// Finds this pod's containers in containerd, and what the API says about them.
    async fn adopt(&mut self) -> Result<()> {
        let mut found = 0;
        for c in self.ctx.runtime.list_pod_containers().await? {
            if c.pod_uid != self.uid {
                continue;
            }
            found += 1;
            match c.kind {
                Kind::Sandbox => self.sandbox = Some(SandboxId(c.id)),
                Kind::Container => {
                    let t = self.containers.entry(c.container_name).or_default();
                    t.id = Some(ContainerId(c.id));
                    t.started_before = true;
                }
            }
        }
        let mut status = self.pod.status.clone();
        if status.is_none() && crate::static_pods::is_static(&self.pod) {
            status = crate::static_pods::mirror_status(&self.ctx.client, &self.pod).await;
        }
        if let Some(status) = &status {
            self.start_time = status.start_time.clone();
            for cs in status.container_statuses.iter().flatten() {
                let t = self.containers.entry(cs.name.clone()).or_default();
                t.restart_count = cs.restart_count;
                t.last_state = cs.last_state.clone().filter(|s| s.terminated.is_some());
                t.image_id = cs.image_id.clone();
                if cs.restart_count > 0 || cs.state.as_ref().is_some_and(|s| s.waiting.is_none()) {
                    t.started_before = true;
                }
            }
        }
        if found > 0 {
            tracing::info!(pod = %self.name(), containers = found, "adopted the pod's containers");
        }
        Ok(())
    }

    async fn sync(&mut self) -> Result<Next> {
        if !self.adopted {
            self.adopt().await?;
            self.adopted = true;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0);
            self.stopping_events();
            self.remove(Duration::from_secs(grace.unsigned_abs()))
                .await?;
            if crate::static_pods::is_static(&self.pod) {
                self.remove_mirror().await;
            } else {
                self.delete_for_good().await?;
            }
            return Ok(Next::Done);
        }
        let api_phase = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if api_phase == "Succeeded" || api_phase == "Failed" {
            // A finished pod is never run again; its containers go (their logs stay).
            if self.sandbox.is_some() || self.containers.values().any(|t| t.id.is_some()) {
                self.remove(Duration::ZERO).await?;
            }
            return Ok(Next::After(IDLE));
        }
        if self.start_time.is_none() {
            self.start_time = Some(Time(jiff::Timestamp::now()));
        }
        let next = self.sync_containers().await?;
        if crate::static_pods::is_static(&self.pod) {
            self.ensure_mirror().await;
        }
        self.post_status().await?;
        Ok(Next::After(next))
    }

    /// Ensures the sandbox and the containers; returns when to look again.
    async fn sync_containers(&mut self) -> Result<Duration> {
        let rt = self.ctx.runtime.clone();
        let mut next = self.ctx.config.resync;
        let volumes = self
            .volumes
            .set_up(&self.ctx.client, &self.ctx.config.volumes, &self.pod)
            .await;
        if let Err(e) = volumes {
            let message = e.to_string();
            tracing::warn!(pod = %self.name(), "{message}");
            let events = &self.ctx.events;
            events.pod(&self.pod, EventType::Warning, "FailedMount", &message);
            let delay = self.volumes.backoff();
            // A pod whose volumes were never set up waits; a running one keeps going.
            if self.sandbox.is_none() {
                for c in self.spec_containers() {
                    let t = self.containers.entry(c.name).or_default();
                    t.state = waiting("ContainerCreating", None);
                }
                return Ok(delay);
            }
            next = next.min(delay);
        }
        let sandbox_running = match &self.sandbox {
            Some(id) => rt
                .sandbox_status(id)
                .await
                .is_ok_and(|s| s.state == ContainerState::Running),
            None => false,
        };
        if !sandbox_running {
            if let Some(old) = self.sandbox.take() {
                tracing::info!(pod = %self.name(), sandbox = %old, "sandbox is not running; recreating it");
                self.detach_network(&old).await?;
                rt.remove_sandbox(&old, Duration::ZERO).await?;
                for t in self.containers.values_mut() {
                    t.id = None;
                }
            }
            match rt.run_sandbox(&self.pod).await {
                Ok(id) => self.sandbox = Some(id),
                Err(e) => {
                    let message = format!("cannot create the pod sandbox: {e}");
                    tracing::warn!(pod = %self.name(), "{message}");
                    for c in self.spec_containers() {
                        let t = self.containers.entry(c.name).or_default();
                        t.state = waiting("ContainerCreating", Some(message.clone()));
                    }
                    return Ok(status::BACKOFF_INITIAL);
                }
            }
        }
        let Some(sandbox) = self.sandbox.clone() else {
            return Ok(next);
        };
        if let Some(wait) = self.ensure_network(&sandbox).await {
            return Ok(wait);
        }
        let policy = self.policy();
        let pod_label = format!(
            "{}_{}({})",
            self.pod.metadata.name.as_deref().unwrap_or_default(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
            self.uid
        );
        let mut images: Option<Vec<ImageSummary>> = None;
        let pod_ip = self.pod_ips().first().and_then(|ip| ip.parse().ok());
        let pod_grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let pod_ips = self.pod_ips();
        for c in self.spec_containers() {
            let now = Instant::now();
            let t = self.containers.entry(c.name.clone()).or_default();
            if t.done {
                continue;
            }
            if let Some(id) = t.id.clone() {
                match rt.container_status(&id).await {
                    Ok(s) if s.state == ContainerState::Running => {
                        t.state = K8sState {
                            running: Some(ContainerStateRunning {
                                started_at: time(s.started_at),
                            }),
                            ..Default::default()
                        };
                        let target = crate::probes::ProbeTarget {
                            runtime: &rt,
                            events: &self.ctx.events,
                            pod: &self.pod,
                            sandbox: &sandbox,
                            pod_ip,
                        };
                        self.probes.running(&target, &c, &id, s.started_at).await;
                        if let Some(kind) = self.probes.failed(&c.name) {
                            let mut message =
                                format!("Container {} failed {} probe", c.name, kind.lower());
                            if policy != "Never" {
                                message.push_str(", will be restarted");
                            }
                            let events = &self.ctx.events;
                            events.container(
                                &self.pod,
                                &c.name,
                                EventType::Normal,
                                "Killing",
                                &message,
                            );
                            let grace = crate::probes::PodProbes::kill_grace(
                                &c,
                                kind,
                                pod_grace.unwrap_or(30),
                            );
                            self.probes.stopped(&c.name);
                            crate::probes::kill(&rt, &id, grace).await?;
                            // Its exit is seen (and acted on per restartPolicy) at once.
                            next = Duration::ZERO;
                        }
                        continue;
                    }
                    Ok(s) if s.state == ContainerState::Created => {
                        t.state = waiting("ContainerCreating", None);
                        continue;
                    }
                    // Neither running nor exited (paused, or containerd cannot tell): left
                    // alone and looked at again.
                    Ok(s) if s.state == ContainerState::Unknown => continue,
                    Ok(s) => {
                        self.probes.stopped(&c.name);
                        let term = terminated(&s, &id);
                        if !t.exit_handled {
                            let ran = match (s.started_at, s.finished_at) {
                                (Some(a), Some(b)) => b.duration_since(a).unsigned_abs(),
                                _ => Duration::ZERO,
                            };
                            t.on_exit(&policy, term.exit_code, ran, now);
                        }
                        let state = K8sState {
                            terminated: Some(term),
                            ..Default::default()
                        };
                        if t.done {
                            t.state = state;
                            continue;
                        }
                        t.last_state = Some(state);
                        if let Some(at) = t.retry_at.filter(|at| *at > now) {
                            let delay = at.saturating_duration_since(now);
                            let reason = t.state.waiting.as_ref().and_then(|w| w.reason.as_deref());
                            if reason != Some("CrashLoopBackOff") {
                                let message = format!(
                                    "Back-off restarting failed container {} in pod {pod_label}",
                                    c.name
                                );
                                let events = &self.ctx.events;
                                events.container(
                                    &self.pod,
                                    &c.name,
                                    EventType::Warning,
                                    "BackOff",
                                    &message,
                                );
                            }
                            t.state = waiting(
                                "CrashLoopBackOff",
                                Some(format!(
                                    "back-off {}s restarting failed container={} pod={pod_label}",
                                    t.crash_delay.as_secs(),
                                    c.name
                                )),
                            );
                            next = next.min(delay);
                            continue;
                        }
                        // The id is reused: the exited container goes first.
                        rt.stop_container(&id, Duration::ZERO).await?;
                        t.id = None;
                    }
                    Err(crate::runtime::Error::NotFound { .. }) => {
                        self.probes.stopped(&c.name);
                        t.id = None;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(at) = t.retry_at.filter(|at| *at > now) {
                // Waiting keeps the reason of the failed attempt (ErrImageNeverPull,
                // RunContainerError) until the next one; a failed pull backs off as
                // ImagePullBackOff.
                let failed_pull = t
                    .state
                    .waiting
                    .as_ref()
                    .filter(|w| w.reason.as_deref() == Some("ErrImagePull"));
                if let Some(failed) = failed_pull {
                    let image_ref = c.image.clone().unwrap_or_default();
                    let failure = failed.message.clone().unwrap_or_default();
                    let (message, notices) = images::back_off(&image_ref, &failure);
                    let events = &self.ctx.events;
                    for n in &notices {
                        events.container(&self.pod, &c.name, n.kind(), n.reason, &n.message);
                    }
                    t.state = waiting("ImagePullBackOff", Some(message));
                }
                next = next.min(at.saturating_duration_since(now));
                continue;
            }
            // Start (or restart) it once its image is there, per imagePullPolicy.
            let list = match &images {
                Some(l) => l,
                None => images.insert(images::list(rt.containerd()).await?),
            };
            let report = {
                let (events, pod, name) =
                    (self.ctx.events.clone(), self.pod.clone(), c.name.clone());
                Arc::new(move |message: String| {
                    events.container(&pod, &name, EventType::Normal, "Pulling", &message);
                })
            };
            let (ensured, notices) = self
                .pulls
                .ensure(
                    rt.containerd(),
                    &self.ctx.client,
                    &self.pod,
                    &c,
                    list,
                    report,
                )
                .await;
            let events = &self.ctx.events;
            for n in &notices {
                events.container(&self.pod, &c.name, n.kind(), n.reason, &n.message);
            }
            let found = match ensured {
                images::Ensure::Ready(found) => {
                    if !list.iter().any(|i| i.digest == found.digest) {
                        images = None;
                    }
                    found
                }
                images::Ensure::Pulling => {
                    if t.state.waiting.is_none() {
                        t.state = waiting("ContainerCreating", None);
                    }
                    next = next.min(images::PULL_POLL);
                    continue;
                }
                images::Ensure::Failed { reason, message } => {
                    t.pull_failures += 1;
                    t.pull_backoff = next_backoff(t.pull_backoff);
                    t.retry_at = Some(now + t.pull_backoff);
                    next = next.min(t.pull_backoff);
                    t.state = waiting(reason, Some(message));
                    continue;
                }
            };
            t.image_id = image_id(&found);
            t.pull_failures = 0;
            t.pull_backoff = Duration::ZERO;
            let extras = self
                .volumes
                .container_extras(
                    &self.ctx.client,
                    &self.ctx.config.volumes,
                    &self.ctx.events,
                    &self.pod,
                    &c,
                    self.ctx.config.host_ip.as_deref(),
                    &pod_ips,
                )
                .await;
            let extras = match extras {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(pod = %pod_label, container = %c.name, "cannot make the container's configuration: {e}");
                    let message = format!("Error: {e}");
                    let events = &self.ctx.events;
                    events.container(&self.pod, &c.name, EventType::Warning, "Failed", &message);
                    t.retry_at = Some(now + RETRY);
                    next = next.min(RETRY);
                    t.state = waiting("CreateContainerConfigError", Some(e.to_string()));
                    continue;
                }
            };
            match rt.start_container(&sandbox, &self.pod, &c, &extras).await {
                Ok(id) => {
                    let events = &self.ctx.events;
                    let created = format!("Created container {}", c.name);
                    events.container(&self.pod, &c.name, EventType::Normal, "Created", &created);
                    let started = format!("Started container {}", c.name);
                    events.container(&self.pod, &c.name, EventType::Normal, "Started", &started);
                    if t.started_before {
                        t.restart_count += 1;
                    }
                    t.started_before = true;
                    t.exit_handled = false;
                    t.retry_at = None;
                    let started = rt
                        .container_status(&id)
                        .await
                        .ok()
                        .and_then(|s| s.started_at);
                    t.state = K8sState {
                        running: Some(ContainerStateRunning {
                            started_at: time(started.or_else(|| Some(jiff::Timestamp::now()))),
                        }),
                        ..Default::default()
                    };
                    t.id = Some(id);
                }
                Err(e) => {
                    tracing::warn!(pod = %pod_label, container = %c.name, "cannot start: {e}");
                    let message = format!("Error: {e}");
                    let events = &self.ctx.events;
                    events.container(&self.pod, &c.name, EventType::Warning, "Failed", &message);
                    t.backoff = next_backoff(t.backoff);
                    t.retry_at = Some(now + t.backoff);
                    next = next.min(t.backoff);
                    t.state = waiting("RunContainerError", Some(e.to_string()));
                }
            }
        }
        Ok(next)
    }

    fn desired_status(&self) -> PodStatus {
        let policy = self.policy();
        let statuses: Vec<K8sStatus> = self
            .spec_containers()
            .iter()
            .map(|c| {
                let t = self.containers.get(&c.name);
                let state = t
                    .map(|t| t.state.clone())
                    .filter(|s| {
                        s.running.is_some() || s.terminated.is_some() || s.waiting.is_some()
                    })
                    .unwrap_or_else(|| waiting("ContainerCreating", None));
                let running = state.running.is_some();
                let started = running && self.probes.started(c);
                K8sStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    image_id: t.map(|t| t.image_id.clone()).unwrap_or_default(),
                    container_id: t.and_then(|t| t.id.as_ref()).map(container_id_uri),
                    ready: started && self.probes.ready(c),
                    started: Some(started),
                    restart_count: t.map_or(0, |t| t.restart_count),
                    last_state: t.and_then(|t| t.last_state.clone()),
                    state: Some(state),
                    ..Default::default()
                }
            })
            .collect();
        let phase = status::phase(&policy, &statuses);
        let previous = self
            .posted
            .as_ref()
            .or(self.pod.status.as_ref())
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(status::conditions(
                &previous,
                &statuses,
                phase,
                jiff::Timestamp::now(),
            )),
            container_statuses: Some(statuses),
            host_ip: self.ctx.config.host_ip.clone(),
            pod_ip: self.pod_ips().first().cloned(),
            pod_ips: Some(self.pod_ips())
                .filter(|ips| !ips.is_empty())
                .map(|ips| ips.into_iter().map(|ip| PodIP { ip }).collect()),
            start_time: self.start_time.clone(),
            ..Default::default()
        }
    }

    async fn post_status(&mut self) -> Result<()> {
        let desired = self.desired_status();
        if self.posted.as_ref() == Some(&desired) {
            return Ok(());
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let body = serde_json::json!({ "status": desired });
        match self
            .api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    what: format!("update status of pod {}", self.name()),
                    source,
                });
            }
        }
        self.posted = Some(desired);
        Ok(())
    }

    /// Stops the app containers together within `grace`, then the sandbox.
    async fn remove(&mut self, grace: Duration) -> Result<()> {
        if !self.adopted {
            self.adopt().await?;
            self.adopted = true;
        }
        let rt = self.ctx.runtime.clone();
        self.probes.clear();
        let had_sandbox = self.sandbox.is_some();
        let mut stops = JoinSet::new();
        for t in self.containers.values_mut() {
            if let Some(id) = t.id.take() {
                let rt = rt.clone();
                stops.spawn(async move { rt.stop_container(&id, grace).await });
            }
        }
        let stopped = !stops.is_empty() || had_sandbox;
        let mut first_err = None;
        while let Some(done) = stops.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(Error::Runtime(e));
                }
                Err(e) => tracing::warn!(pod = %self.name(), "container stop task failed: {e}"),
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        if let Some(sandbox) = self.sandbox.clone() {
            self.detach_network(&sandbox).await?;
        }
        if let Some(sandbox) = self.sandbox.take() {
            rt.remove_sandbox(&sandbox, Duration::ZERO).await?;
        }
        self.volumes
            .tear_down(&self.ctx.config.volumes, &self.uid)?;
        if stopped {
            tracing::info!(pod = %self.name(), "pod containers removed");
        }
        Ok(())
    }

    fn host_network(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
    }

    /// The pod's IPs: its network's, or the node's for a hostNetwork pod.
    fn pod_ips(&self) -> Vec<String> {
        if self.host_network() {
            return self.ctx.config.host_ip.clone().into_iter().collect();
        }
        self.net.ips.clone()
    }

    /// Attaches the running sandbox to the pod network, once. While that fails the
    /// containers wait in ContainerCreating and it is retried with backoff: returns when.
    async fn ensure_network(&mut self, sandbox: &SandboxId) -> Option<Duration> {
        let net = self.ctx.network.clone()?;
        if self.host_network() || !self.net.ips.is_empty() {
            return None;
        }
        let now = Instant::now();
        let waiting_for = self.net.retry_at.filter(|at| *at > now);
        let result: std::result::Result<(), Duration> = match waiting_for {
            Some(at) => Err(at.saturating_duration_since(now)),
            None => {
                let pid = self
                    .ctx
                    .runtime
                    .sandbox_status(sandbox)
                    .await
                    .ok()
                    .and_then(|s| s.pid);
                let attached = match pid {
                    Some(pid) => net.attach(&self.pod, &sandbox.0, pid).await,
                    None => Err(crate::network::Error::NotReady(
                        "the sandbox has no process".into(),
                    )),
                };
                match attached {
                    Ok(ips) => {
                        self.net = NetState {
                            ips: ips.iter().map(|ip| ip.to_string()).collect(),
                            ..NetState::default()
                        };
                        return None;
                    }
                    Err(e) => {
                        let message = format!(
                            "Failed to create pod sandbox: failed to set up network for sandbox \"{sandbox}\": {e}"
                        );
                        tracing::warn!(pod = %self.name(), "{message}");
                        let events = &self.ctx.events;
                        events.pod(
                            &self.pod,
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            &message,
                        );
                        self.net.backoff =
                            (self.net.backoff * 2).clamp(NET_RETRY, status::BACKOFF_MAX);
                        self.net.retry_at = Some(now + self.net.backoff);
                        self.net.message = Some(message);
                        Err(self.net.backoff)
                    }
                }
            }
        };
        let wait = result.err()?;
        for c in self.spec_containers() {
            let t = self.containers.entry(c.name).or_default();
            t.state = waiting("ContainerCreating", self.net.message.clone());
        }
        Some(wait)
    }

    /// Detaches `sandbox` from the pod network (before it is removed).
    async fn detach_network(&mut self, sandbox: &SandboxId) -> Result<()> {
        let Some(net) = self.ctx.network.clone() else {
            return Ok(());
        };
        if self.host_network() {
            return Ok(());
        }
        let pid = self
            .ctx
            .runtime
            .sandbox_status(sandbox)
            .await
            .ok()
            .and_then(|s| s.pid);
        let namespace = self.pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = self.pod.metadata.name.as_deref().unwrap_or_default();
        net.detach(namespace, name, &self.uid, &sandbox.0, pid)
            .await?;
        self.net = NetState::default();
        Ok(())
    }

    /// `Killing` events for the running containers of a pod being deleted.
    fn stopping_events(&self) {
        for c in self.spec_containers() {
            let running = self
                .containers
                .get(&c.name)
                .is_some_and(|t| t.id.is_some() && t.state.running.is_some());
            if running {
                let message = format!("Stopping container {}", c.name);
                let events = &self.ctx.events;
                events.container(&self.pod, &c.name, EventType::Normal, "Killing", &message);
            }
        }
    }

    /// Static pods: keeps the mirror pod of this version in the API (without the API server
    /// the pod runs all the same; the mirror follows when it answers).
    async fn ensure_mirror(&mut self) {
        let (client, mirrors, node) = (
            &self.ctx.client,
            &self.ctx.mirrors,
            &self.ctx.config.node_name,
        );
        match crate::static_pods::ensure_mirror(client, mirrors, &self.pod, node).await {
            Ok(created) => {
                if created {
                    // The new mirror pod has no status yet.
                    self.posted = None;
                }
                self.mirror_error = None;
            }
            Err(e) => {
                let text = e.to_string();
                if self.mirror_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(pod = %self.name(), "{text}");
                }
                self.mirror_error = Some(text);
            }
        }
    }

    /// Static pods: deletes the mirror pod of this version once the pod has stopped.
    async fn remove_mirror(&self) {
        let (client, mirrors) = (&self.ctx.client, &self.ctx.mirrors);
        if let Err(e) = crate::static_pods::remove_mirror(client, mirrors, &self.pod).await {
            tracing::warn!(pod = %self.name(), "{e}");
        }
    }

    /// Deletes the pod object with grace 0 once its containers are gone.
    async fn delete_for_good(&self) -> Result<()> {
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or a new pod of the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => Err(Error::Api {
                what: format!("delete pod {}", self.name()),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_restart_at_once_then_back_off() {
        let now = Instant::now();
        let short = Duration::from_secs(1);
        let mut t = Tracked::default();
        let mut delays = Vec::new();
        for _ in 0..4 {
            t.on_exit("Always", 1, short, now);
            delays.push(t.retry_at.map(|at| (at - now).as_secs()));
            t.exit_handled = false;
        }
        assert_eq!(delays, [Some(0), Some(10), Some(20), Some(40)]);
        assert_eq!(t.crash_delay, Duration::from_secs(40));
        // Ten minutes of running start the backoff over.
        t.on_exit("Always", 0, BACKOFF_RESET, now);
        assert_eq!(t.retry_at, Some(now));
        assert!(!t.done);

        let mut never = Tracked::default();
        never.on_exit("Never", 0, short, now);
        assert!(never.done && never.retry_at.is_none());
        let mut on_failure = Tracked::default();
        on_failure.on_exit("OnFailure", 0, short, now);
        assert!(on_failure.done);
        let mut on_failure = Tracked::default();
        on_failure.on_exit("OnFailure", 3, short, now);
        assert!(!on_failure.done && on_failure.retry_at == Some(now));
    }

    #[test]
    fn image_ids_name_the_repository_and_digest() {
        let img = |name: &str| ImageSummary {
            name: name.into(),
            digest: "sha256:abc".into(),
            media_type: String::new(),
            size: 0,
        };
        assert_eq!(
            image_id(&img("docker.io/library/busybox:latest")),
            "docker.io/library/busybox@sha256:abc"
        );
        assert_eq!(
            image_id(&img("localhost:5000/app")),
            "localhost:5000/app@sha256:abc"
        );
    }
}
