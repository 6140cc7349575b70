//! Container probes by Kubernetes' rules: liveness, readiness and startup probes with exec,
//! httpGet and tcpSocket actions.
//!
//! Each probe of a running container has its own task, started when the pod worker first sees
//! the container running and dropped when the container stops or is replaced. A task waits
//! `initialDelaySeconds` from the container's start, then probes every `periodSeconds`, each
//! attempt bounded by `timeoutSeconds`. Results pass through [`ProbeState`]: a result is
//! published after `successThreshold` successes or `failureThreshold` failures in a row.
//! Readiness starts as failure, liveness as success, startup as unknown; until the startup
//! probe succeeds the other two do not run, and once it has, it stops. A published liveness or
//! startup failure puts the probe on hold until the container is replaced: the worker kills
//! the container (`Killing`) and restarts it per restartPolicy. Every failed attempt is
//! recorded as an `Unhealthy` event, as Kubernetes' prober does.
//!
//! Network probes dial from a thread that has entered the pod's network namespace (the
//! sandbox's `/proc/<pid>/ns/net`) to the pod IP when the worker knows it, else to the pod's
//! loopback address. Either way the connection reaches the pod as a probe of its IP would,
//! with or without a network backend on the node.

mod check;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_client::events::EventType;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::pods::PodEvents;
use crate::runtime::{ContainerId, ContainerState, Runtime, SandboxId};

pub use check::{MAX_OUTPUT, Outcome, kill};

/// The `periodSeconds` of a probe that does not set it.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// The `timeoutSeconds` of a probe that does not set it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The `failureThreshold` of a probe that does not set it.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// As in event messages ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// As in the `Killing` event ("failed liveness probe").
    pub fn lower(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Startup => "startup",
        }
    }

    /// The result before the first published one.
    pub fn initial(self) -> ProbeResult {
        match self {
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }

    fn index(self) -> usize {
        match self {
            ProbeKind::Liveness => 0,
            ProbeKind::Readiness => 1,
            ProbeKind::Startup => 2,
        }
    }
}

/// A published probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Unknown,
    Success,
    Failure,
}

/// One probe's published result, from attempt results and the thresholds (the kubelet prober
/// worker's `resultRun` logic).
#[derive(Debug, Clone)]
pub struct ProbeState {
    kind: ProbeKind,
    result: ProbeResult,
    last: ProbeResult,
    run: u32,
    on_hold: bool,
}

impl ProbeState {
    pub fn new(kind: ProbeKind) -> Self {
        Self {
            kind,
            result: kind.initial(),
            last: ProbeResult::Unknown,
            run: 0,
            on_hold: false,
        }
    }

    /// The published result.
    pub fn result(&self) -> ProbeResult {
        self.result
    }

    /// A failed liveness or startup probe waits for the container to be replaced.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Takes one attempt's result (success or failure); returns whether the published result
    /// changed.
    pub fn observe(
        &mut self,
        attempt: ProbeResult,
        success_threshold: u32,
        failure_threshold: u32,
    ) -> bool {
        if self.last == attempt {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = attempt;
            self.run = 1;
        }
        let enough = match attempt {
            ProbeResult::Success => self.run >= success_threshold.max(1),
            ProbeResult::Failure => self.run >= failure_threshold.max(1),
            ProbeResult::Unknown => false,
        };
        if !enough {
            return false;
        }
        let changed = self.result != attempt;
        self.result = attempt;
        if attempt == ProbeResult::Failure && self.kind != ProbeKind::Readiness {
            self.on_hold = true;
            self.run = 0;
        }
        changed
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exec(Vec<String>),
    Http(HttpGet),
    Tcp {
        host: Option<String>,
        port: u16,
    },
    /// A probe that cannot run (gRPC, no action, a port that does not resolve): each attempt
    /// is an error, which Kubernetes throws away after recording it.
    Invalid(String),
}

/// An httpGet probe, its port resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub https: bool,
    pub host: Option<String>,
    pub path: String,
    pub port: u16,
    pub headers: Vec<(String, String)>,
}

/// A container probe with Kubernetes' defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's own terminationGracePeriodSeconds (liveness and startup kills).
    pub termination_grace: Option<i64>,
}

fn seconds(v: Option<i32>, default: Duration) -> Duration {
    match v {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs().into()),
        _ => default,
    }
}

fn threshold(v: Option<i32>, default: u32) -> u32 {
    match v {
        Some(n) if n > 0 => n.unsigned_abs(),
        _ => default,
    }
}

/// A named or numbered port of `container`.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port);
            match named.or_else(|| name.parse().ok()) {
                Some(n) => n,
                None => return Err(format!("couldn't find port: {name} in {}", container.name)),
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

impl ProbeSpec {
    /// `probe` of `container`, with Kubernetes' defaults.
    pub fn new(probe: &Probe, container: &Container) -> Self {
        let action = if let Some(exec) = &probe.exec {
            Action::Exec(exec.command.clone().unwrap_or_default())
        } else if let Some(h) = &probe.http_get {
            match resolve_port(&h.port, container) {
                Ok(port) => Action::Http(HttpGet {
                    https: h
                        .scheme
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")),
                    host: h.host.clone().filter(|s| !s.is_empty()),
                    path: h
                        .path
                        .clone()
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "/".into()),
                    port,
                    headers: h
                        .http_headers
                        .iter()
                        .flatten()
                        .map(|h| (h.name.clone(), h.value.clone()))
                        .collect(),
                }),
                Err(e) => Action::Invalid(e),
            }
        } else if let Some(t) = &probe.tcp_socket {
            match resolve_port(&t.port, container) {
                Ok(port) => Action::Tcp {
                    host: t.host.clone().filter(|s| !s.is_empty()),
                    port,
                },
                Err(e) => Action::Invalid(e),
            }
        } else if probe.grpc.is_some() {
            Action::Invalid("grpc probes are not supported by this kubelet".into())
        } else {
            Action::Invalid("missing probe handler".into())
        };
        Self {
            action,
            initial_delay: seconds(probe.initial_delay_seconds, Duration::ZERO),
            period: seconds(probe.period_seconds, DEFAULT_PERIOD),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            termination_grace: probe.termination_grace_period_seconds,
        }
    }
}

/// The published results of one container's probes.
#[derive(Debug)]
struct Results {
    /// Which probes the container has.
    has: [bool; 3],
    result: [ProbeResult; 3],
}

impl Results {
    fn get(&self, kind: ProbeKind) -> ProbeResult {
        self.result[kind.index()]
    }

    fn started(&self) -> bool {
        !self.has[ProbeKind::Startup.index()]
            || self.get(ProbeKind::Startup) == ProbeResult::Success
    }
}

/// Aborts a probe task when its container's probes are dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ContainerProbes {
    id: ContainerId,
    results: Arc<Mutex<Results>>,
    _tasks: Vec<Task>,
}

/// Where and as whom a pod's probes run.
pub struct ProbeTarget<'a> {
    pub runtime: &'a Runtime,
    pub events: &'a PodEvents,
    pub pod: &'a Pod,
    pub sandbox: &'a SandboxId,
    /// The pod IP, when the worker knows it.
    pub pod_ip: Option<IpAddr>,
}

/// The probes of one pod's running containers; dropping it stops them.
#[derive(Default)]
pub struct PodProbes {
    wake: Arc<Notify>,
    containers: HashMap<String, ContainerProbes>,
}

fn lock(results: &Mutex<Results>) -> std::sync::MutexGuard<'_, Results> {
    results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PodProbes {
    /// Notified whenever a published result changes.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Keeps (or starts, for a new container id) the probes of running container `c`.
    pub async fn running(
        &mut self,
        target: &ProbeTarget<'_>,
        c: &Container,
        id: &ContainerId,
        started_at: Option<jiff::Timestamp>,
    ) {
        if self.containers.get(&c.name).is_some_and(|p| p.id == *id) {
            return;
        }
        self.containers.remove(&c.name);
        let specs: Vec<(ProbeKind, ProbeSpec)> = ProbeKind::ALL
            .iter()
            .filter_map(|k| k.of(c).map(|p| (*k, ProbeSpec::new(p, c))))
            .collect();
        if specs.is_empty() {
            return;
        }
        let mut has = [false; 3];
        for (k, _) in &specs {
            has[k.index()] = true;
        }
        let results = Arc::new(Mutex::new(Results {
            has,
            result: [
                ProbeKind::Liveness.initial(),
                ProbeKind::Readiness.initial(),
                ProbeKind::Startup.initial(),
            ],
        }));
        let sandbox_pid = match target.runtime.sandbox_status(target.sandbox).await {
            Ok(s) if s.state == ContainerState::Running => s.pid,
            _ => None,
        };
        let since_start = started_at
            .map(|t| jiff::Timestamp::now().duration_since(t).unsigned_abs())
            .unwrap_or_default();
        let env = Arc::new(check::Env {
            runtime: target.runtime.clone(),
            net: check::Net {
                sandbox_pid,
                pod_ip: target.pod_ip,
            },
        });
        let tasks = specs
            .into_iter()
            .map(|(kind, spec)| {
                let worker = ProbeWorker {
                    kind,
                    delay: spec.initial_delay.saturating_sub(since_start),
                    spec,
                    env: env.clone(),
                    events: target.events.clone(),
                    pod: target.pod.clone(),
                    container: c.name.clone(),
                    id: id.clone(),
                    results: results.clone(),
                    wake: self.wake.clone(),
                };
                Task(tokio::spawn(worker.run()))
            })
            .collect();
        self.containers.insert(
            c.name.clone(),
            ContainerProbes {
                id: id.clone(),
                results,
                _tasks: tasks,
            },
        );
    }

    /// Container `name` is not running (or is being replaced): its probes stop.
    pub fn stopped(&mut self, name: &str) {
        self.containers.remove(name);
    }

    /// Stops every probe (the pod is being stopped).
    pub fn clear(&mut self) {
        self.containers.clear();
    }

    /// Whether running container `c` counts as started: it has no startup probe, or that
    /// succeeded.
    pub fn started(&self, c: &Container) -> bool {
        if c.startup_probe.is_none() {
            return true;
        }
        self.containers
            .get(&c.name)
            .is_some_and(|p| lock(&p.results).started())
    }

    /// Whether running container `c` is ready: started, and its readiness probe (if any) has
    /// succeeded.
    pub fn ready(&self, c: &Container) -> bool {
        if !self.started(c) {
            return false;
        }
        if c.readiness_probe.is_none() {
            return true;
        }
        self.containers
            .get(&c.name)
            .is_some_and(|p| lock(&p.results).get(ProbeKind::Readiness) == ProbeResult::Success)
    }

    /// The probe whose failure means container `name` is to be killed and restarted.
    pub fn failed(&self, name: &str) -> Option<ProbeKind> {
        let p = self.containers.get(name)?;
        let r = lock(&p.results);
        [ProbeKind::Liveness, ProbeKind::Startup]
            .into_iter()
            .find(|k| r.has[k.index()] && r.get(*k) == ProbeResult::Failure)
    }

    /// The grace period a kill for `kind` gets: the probe's own, else the pod's.
    pub fn kill_grace(c: &Container, kind: ProbeKind, pod_grace: i64) -> Duration {
        let grace = kind
            .of(c)
            .and_then(|p| p.termination_grace_period_seconds)
            .unwrap_or(pod_grace)
            .max(0);
        Duration::from_secs(grace.unsigned_abs())
    }
}

/// `Liveness probe failed: <output>`, as the kubelet's prober words it; the output is
/// already cut at [`MAX_OUTPUT`], as Kubernetes' probers read no more.
fn event_message(kind: ProbeKind, verb: &str, output: &str) -> String {
    format!("{} probe {verb}: {output}", kind.title())
}

/// The task of one probe of one container.
struct ProbeWorker {
    kind: ProbeKind,
    delay: Duration,
    spec: ProbeSpec,
    env: Arc<check::Env>,
    events: PodEvents,
    pod: Pod,
    container: String,
    id: ContainerId,
    results: Arc<Mutex<Results>>,
    wake: Arc<Notify>,
}

impl ProbeWorker {
    async fn run(self) {
        tokio::time::sleep(self.delay).await;
        let mut state = ProbeState::new(self.kind);
        loop {
            let started = lock(&self.results).started();
            if self.kind == ProbeKind::Startup && started {
                return;
            }
            if self.kind == ProbeKind::Startup || started {
                let attempt = self.attempt().await;
                if let Some(attempt) = attempt
                    && state.observe(
                        attempt,
                        self.spec.success_threshold,
                        self.spec.failure_threshold,
                    )
                {
                    lock(&self.results).result[self.kind.index()] = state.result();
                    tracing::info!(
                        pod = %format!("{}/{}", self.pod.metadata.namespace.as_deref().unwrap_or("default"), self.pod.metadata.name.as_deref().unwrap_or_default()),
                        container = %self.container,
                        probe = self.kind.lower(),
                        result = ?state.result(),
                        "probe result changed"
                    );
                    self.wake.notify_one();
                }
                if state.on_hold() {
                    return;
                }
            }
            tokio::time::sleep(self.spec.period).await;
        }
    }

    /// One probe attempt: success, failure, or `None` for an error (recorded, not counted).
    async fn attempt(&self) -> Option<ProbeResult> {
        let outcome = check::run(&self.spec, &self.env, &self.id).await;
        let event = |kind: EventType, reason: &str, message: String| {
            self.events
                .container(&self.pod, &self.container, kind, reason, &message);
        };
        match outcome {
            Outcome::Success(_) => Some(ProbeResult::Success),
            Outcome::Warning(output) => {
                event(
                    EventType::Warning,
                    "ProbeWarning",
                    event_message(self.kind, "warning", &output),
                );
                Some(ProbeResult::Success)
            }
            Outcome::Failure(output) => {
                event(
                    EventType::Warning,
                    "Unhealthy",
                    event_message(self.kind, "failed", &output),
                );
                Some(ProbeResult::Failure)
            }
            Outcome::Error(output) => {
                event(
                    EventType::Warning,
                    "Unhealthy",
                    event_message(self.kind, "errored", &output),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, HTTPGetAction, HTTPHeader, TCPSocketAction,
    };

    use ProbeResult::{Failure, Success, Unknown};

    #[test]
    fn initial_results_follow_the_probe_kind() {
        assert_eq!(ProbeState::new(ProbeKind::Liveness).result(), Success);
        assert_eq!(ProbeState::new(ProbeKind::Readiness).result(), Failure);
        assert_eq!(ProbeState::new(ProbeKind::Startup).result(), Unknown);
    }

    #[test]
    fn failures_publish_after_the_threshold_and_liveness_holds() {
        let mut s = ProbeState::new(ProbeKind::Liveness);
        assert!(!s.observe(Failure, 1, 3));
        assert!(!s.observe(Failure, 1, 3));
        // A success in between starts the count over.
        assert!(!s.observe(Success, 1, 3));
        assert!(!s.observe(Failure, 1, 3));
        assert!(!s.observe(Failure, 1, 3));
        assert!(!s.on_hold());
        assert!(s.observe(Failure, 1, 3));
        assert_eq!(s.result(), Failure);
        assert!(s.on_hold());
    }

    #[test]
    fn readiness_flips_both_ways_with_thresholds() {
        let mut s = ProbeState::new(ProbeKind::Readiness);
        assert!(!s.observe(Success, 2, 2));
        assert!(s.observe(Success, 2, 2));
        assert_eq!(s.result(), Success);
        assert!(!s.observe(Success, 2, 2));
        assert!(!s.observe(Failure, 2, 2));
        assert!(s.observe(Failure, 2, 2));
        assert_eq!(s.result(), Failure);
        assert!(!s.on_hold());
        assert!(s.observe(Success, 1, 1));
        assert_eq!(s.result(), Success);
    }

    #[test]
    fn startup_succeeds_once_and_fails_into_hold() {
        let mut s = ProbeState::new(ProbeKind::Startup);
        assert!(s.observe(Success, 1, 3));
        let mut s = ProbeState::new(ProbeKind::Startup);
        assert!(!s.observe(Failure, 1, 2));
        assert!(s.observe(Failure, 1, 2));
        assert!(s.on_hold());
    }

    fn container() -> Container {
        Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("web".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn specs_get_kubernetes_defaults_and_named_ports() {
        let c = container();
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("web".into()),
                scheme: Some("HTTPS".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-A".into(),
                    value: "b".into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let spec = ProbeSpec::new(&probe, &c);
        assert_eq!(
            spec.action,
            Action::Http(HttpGet {
                https: true,
                host: None,
                path: "/".into(),
                port: 8080,
                headers: vec![("X-A".into(), "b".into())],
            })
        );
        assert_eq!(spec.period, DEFAULT_PERIOD);
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
        assert_eq!(spec.initial_delay, Duration::ZERO);

        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(3),
            initial_delay_seconds: Some(4),
            failure_threshold: Some(1),
            ..Default::default()
        };
        let spec = ProbeSpec::new(&probe, &c);
        assert!(matches!(spec.action, Action::Invalid(ref e) if e.contains("nope")));
        assert_eq!(
            (
                spec.period,
                spec.timeout,
                spec.initial_delay,
                spec.failure_threshold
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4),
                1
            )
        );

        let probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(
            ProbeSpec::new(&probe, &c).action,
            Action::Exec(vec!["true".into()])
        );
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(70000),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            ProbeSpec::new(&probe, &c).action,
            Action::Invalid(_)
        ));
    }

    #[test]
    fn readiness_needs_startup_first() {
        let r = Results {
            has: [false, true, true],
            result: [Success, Success, Unknown],
        };
        assert!(!r.started());
        let r = Results {
            has: [false, true, false],
            result: [Success, Failure, Unknown],
        };
        assert!(r.started());
    }
}
