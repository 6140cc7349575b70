//! The container runtime the pod workers call: pod sandboxes and app containers in
//! containerd (containers and tasks services, runc through `io.containerd.runc.v2`).
//!
//! A pod's sandbox is a small container from the busybox image whose init brings up
//! loopback in a new network namespace and then idles; its network, IPC and UTS namespaces
//! (with the pod's hostname) are joined by path by every app container of the pod. Every
//! container carries the pod's name, namespace and uid, and its own name, as labels, so
//! that a restarted kubelet can find and adopt them.

mod exec;
mod image;
mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::{
    Container as ContainerRecord, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, GetContainerRequest, GetRequest, KillRequest,
    ListContainersRequest, StartRequest, UpdateContainerRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::v1::Status as TaskStatus;
use keelson_api::k8s_openapi::api::core::v1::{Container, Pod};

use crate::containerd::{self, Containerd, FoundExt as _, RpcExt as _};

pub use exec::{ExecOutput, ExecProcess, ExecRequest, ExecSession};
pub use image::ImageConfig;
pub use spec::{BindMount, ContainerExtras};

pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// The image sandboxes run (busybox: `sh`, `ip`, `sleep`).
pub const DEFAULT_SANDBOX_IMAGE: &str = "docker.io/library/busybox:latest";

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// `sandbox` or `container`.
pub const LABEL_KIND: &str = "io.keelson.kind";
const LABEL_STARTED_AT: &str = "io.keelson.started-at";
/// The sandbox an app container joined.
const LABEL_SANDBOX: &str = "io.keelson.sandbox";

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;
/// How long a sandbox may take to bring up loopback.
const SANDBOX_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGKILLed task may take to be reaped.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// containerd's limit on container ids.
const MAX_ID_LEN: usize = 76;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {container}: {source}")]
    Containerd {
        container: String,
        #[source]
        source: containerd::Error,
    },
    #[error("container {container}: image {image}: {reason}")]
    Image {
        container: String,
        image: String,
        reason: String,
    },
    #[error("container {container}: {reason}")]
    Spec { container: String, reason: String },
    #[error("container {container} did not start: {reason}")]
    Start { container: String, reason: String },
    #[error("pod {pod}: {reason}")]
    Pod { pod: String, reason: String },
    #[error("container {container} not found")]
    NotFound { container: String },
    #[error("container {container}: exec failed: {reason}")]
    Exec { container: String, reason: String },
    #[error("container {container}: cannot create log directory {}", .path.display())]
    LogDir {
        container: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn cd_err(container: &str) -> impl FnOnce(containerd::Error) -> Error + '_ {
    move |source| Error::Containerd {
        container: container.to_string(),
        source,
    }
}

/// A pod's sandbox container, by its containerd id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SandboxId(pub String);

/// An app container, by its containerd id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl std::fmt::Display for SandboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Recorded, with no process started yet.
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub state: ContainerState,
    pub exit_code: Option<i32>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub pid: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sandbox,
    Container,
}

/// A container found in containerd with Keelson's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    pub id: String,
    pub kind: Kind,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// The Kubernetes container name (empty for a sandbox).
    pub container_name: String,
}

/// The pod's identity, checked once.
struct PodRef {
    namespace: String,
    name: String,
    uid: String,
    hostname: String,
}

impl PodRef {
    fn of(pod: &Pod) -> Result<Self> {
        let meta = &pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let bad = |reason: &str| Error::Pod {
            pod: name.clone(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(bad("has no name"));
        }
        let uid = meta
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| bad("has no uid"))?;
        let namespace = meta
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let mut hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| name.clone());
        hostname.truncate(63);
        let hostname = hostname.trim_end_matches(['-', '.']).to_string();
        Ok(Self {
            namespace,
            name,
            uid,
            hostname,
        })
    }

    /// `<ns>_<pod>_<uid8>_<suffix>`, shortened with a hash when over containerd's limit.
    fn container_id(&self, suffix: &str) -> String {
        let uid8: String = self.uid.chars().filter(|c| *c != '-').take(8).collect();
        let id = format!("{}_{}_{uid8}_{suffix}", self.namespace, self.name);
        if id.len() <= MAX_ID_LEN {
            return id;
        }
        use sha2::Digest as _;
        let hash = format!("{:x}", sha2::Sha256::digest(&id));
        let keep = MAX_ID_LEN - 17;
        let mut head: String = id.chars().take(keep).collect();
        head = head.trim_end_matches(['-', '.', '_']).to_string();
        format!("{head}_{}", &hash[..16])
    }

    fn labels(&self, kind: Kind, container: &str) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_POD_NAME.to_string(), self.name.clone()),
            (LABEL_POD_NAMESPACE.to_string(), self.namespace.clone()),
            (LABEL_POD_UID.to_string(), self.uid.clone()),
            (
                LABEL_KIND.to_string(),
                match kind {
                    Kind::Sandbox => "sandbox",
                    Kind::Container => "container",
                }
                .to_string(),
            ),
        ]);
        if kind == Kind::Container {
            labels.insert(LABEL_CONTAINER_NAME.to_string(), container.to_string());
        }
        labels
    }

    fn log_dir_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.name, self.uid)
    }
}

/// The runtime: containerd, the snapshotter images were unpacked with, and where container
/// logs go (`<log_root>/<ns>_<pod>_<uid>/<container>.log`).
#[derive(Clone, Debug)]
pub struct Runtime {
    cd: Containerd,
    snapshotter: String,
    log_root: PathBuf,
    sandbox_image: String,
}

impl Runtime {
    pub async fn new(cd: Containerd, log_root: impl Into<PathBuf>) -> Result<Self> {
        let snapshotter = cd
            .default_snapshotter()
            .await
            .map_err(cd_err("(runtime)"))?;
        Ok(Self {
            cd,
            snapshotter,
            log_root: log_root.into(),
            sandbox_image: DEFAULT_SANDBOX_IMAGE.to_string(),
        })
    }

    /// Uses another image for sandboxes; it needs `sh`, `ip` and `sleep`.
    pub fn with_sandbox_image(mut self, image: impl Into<String>) -> Self {
        self.sandbox_image = image.into();
        self
    }

    pub fn containerd(&self) -> &Containerd {
        &self.cd
    }

    /// The file an app container's stdout and stderr go to.
    pub fn log_path(&self, pod: &Pod, container: &str) -> Result<PathBuf> {
        let pod = PodRef::of(pod)?;
        Ok(self
            .log_root
            .join(pod.log_dir_name())
            .join(format!("{container}.log")))
    }

    /// Creates and starts the pod's sandbox, and waits until its loopback is up.
    pub async fn run_sandbox(&self, pod: &Pod) -> Result<SandboxId> {
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let pod = PodRef::of(pod)?;
        let id = pod.container_id("POD");
        let image = image::resolve(&self.cd, &self.sandbox_image)
            .await
            .map_err(|e| Error::Image {
                container: id.clone(),
                image: self.sandbox_image.clone(),
                reason: e.to_string(),
            })?;
        let mut input = spec::sandbox_input(&pod.hostname, &image, self.cgroups_path(&id));
        if host_network {
            // A hostNetwork pod (and so each of its containers) stays in the node's namespace.
            input.namespaces.retain(|n| n.kind != "network");
        }
        let labels = pod.labels(Kind::Sandbox, "");
        self.create_and_start(&id, &self.sandbox_image, &image, &input, labels, None)
            .await?;
        let ready = async {
            loop {
                let status = self.status(&id).await?;
                match (status.state, status.pid) {
                    (ContainerState::Running, Some(pid)) => {
                        let marker = PathBuf::from(format!("/proc/{pid}/root"))
                            .join(spec::SANDBOX_READY_FILE);
                        if marker.exists() {
                            return Ok(());
                        }
                    }
                    (ContainerState::Exited | ContainerState::Unknown, _) => {
                        return Err(Error::Start {
                            container: id.clone(),
                            reason: format!(
                                "sandbox exited with code {} while bringing up loopback",
                                status.exit_code.unwrap_or(-1)
                            ),
                        });
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let outcome = match tokio::time::timeout(SANDBOX_READY_TIMEOUT, ready).await {
            Ok(r) => r,
            Err(_) => Err(Error::Start {
                container: id.clone(),
                reason: format!(
                    "loopback not up within {}s",
                    SANDBOX_READY_TIMEOUT.as_secs()
                ),
            }),
        };
        if let Err(e) = outcome {
            if let Err(cleanup) = self.stop(&id, Duration::ZERO).await {
                tracing::warn!(container = %id, "cannot clean up failed sandbox: {cleanup}");
            }
            return Err(e);
        }
        tracing::info!(sandbox = %id, "sandbox running");
        Ok(SandboxId(id))
    }

    /// Creates and starts an app container in the pod's sandbox, with the mounts and
    /// environment the kubelet resolved for it.
    pub async fn start_container(
        &self,
        sandbox: &SandboxId,
        pod: &Pod,
        container: &Container,
        extras: &ContainerExtras,
    ) -> Result<ContainerId> {
        let pod_ref = PodRef::of(pod)?;
        let id = pod_ref.container_id(&container.name);
        let sandbox_status = self.status(&sandbox.0).await?;
        let sandbox_pid = match (sandbox_status.state, sandbox_status.pid) {
            (ContainerState::Running, Some(pid)) => pid,
            _ => {
                return Err(Error::Start {
                    container: id,
                    reason: format!("its sandbox {sandbox} is not running"),
                });
            }
        };
        let image_ref = container.image.clone().unwrap_or_default();
        let image = image::resolve(&self.cd, &image_ref)
            .await
            .map_err(|e| Error::Image {
                container: id.clone(),
                image: image_ref.clone(),
                reason: e.to_string(),
            })?;
        let input = spec::container_input(
            pod,
            container,
            &image,
            sandbox_pid,
            self.cgroups_path(&id),
            extras,
        )
        .map_err(|reason| Error::Spec {
            container: id.clone(),
            reason,
        })?;
        let log = self.log_path(pod, &container.name)?;
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::LogDir {
                container: id.clone(),
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // A restart starts a new log; the last one stays for `kubectl logs --previous`.
        crate::server::logs::keep_previous(&log);
        let mut labels = pod_ref.labels(Kind::Container, &container.name);
        labels.insert(LABEL_SANDBOX.to_string(), sandbox.0.clone());
        self.create_and_start(&id, &image_ref, &image, &input, labels, Some(&log))
            .await?;
        tracing::info!(container = %id, "container started");
        Ok(ContainerId(id))
    }

    pub async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.status(&id.0).await
    }

    pub async fn sandbox_status(&self, id: &SandboxId) -> Result<ContainerStatus> {
        self.status(&id.0).await
    }

    /// Stops a container (SIGTERM, SIGKILL after `grace`) and deletes its task, record and
    /// rootfs snapshot. Stopping a container that is gone is not an error.
    pub async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<()> {
        self.stop(&id.0, grace).await
    }

    /// Stops and removes the pod's app containers, then the sandbox.
    pub async fn remove_sandbox(&self, id: &SandboxId, grace: Duration) -> Result<()> {
        for c in self.list_pod_containers().await? {
            let joined = self.label(&c.id, LABEL_SANDBOX).await?;
            if c.kind == Kind::Container && joined.as_deref() == Some(id.0.as_str()) {
                self.stop(&c.id, grace).await?;
            }
        }
        self.stop(&id.0, grace).await
    }

    /// Every container with Keelson's pod labels, sandboxes included, for adoption after a
    /// restart.
    pub async fn list_pod_containers(&self) -> Result<Vec<PodContainer>> {
        let reply = self
            .cd
            .containers()
            .list(
                self.cd
                    .request(ListContainersRequest { filters: vec![] }, None),
            )
            .await
            .rpc("list containers")
            .map_err(cd_err("(all)"))?;
        let mut out: Vec<PodContainer> = reply
            .containers
            .into_iter()
            .filter_map(|c| {
                let get = |k: &str| c.labels.get(k).cloned();
                let kind = match get(LABEL_KIND)?.as_str() {
                    "sandbox" => Kind::Sandbox,
                    "container" => Kind::Container,
                    _ => return None,
                };
                Some(PodContainer {
                    kind,
                    pod_namespace: get(LABEL_POD_NAMESPACE)?,
                    pod_name: get(LABEL_POD_NAME)?,
                    pod_uid: get(LABEL_POD_UID)?,
                    container_name: get(LABEL_CONTAINER_NAME).unwrap_or_default(),
                    id: c.id,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn cgroups_path(&self, id: &str) -> String {
        format!("/keelson/{}-{id}", self.cd.namespace())
    }

    async fn label(&self, id: &str, key: &str) -> Result<Option<String>> {
        self.cd
            .containers()
            .get(
                self.cd
                    .request(GetContainerRequest { id: id.to_string() }, None),
            )
            .await
            .rpc("get container")
            .found()
            .map(|r| {
                r.and_then(|r| r.container)
                    .and_then(|c| c.labels.get(key).cloned())
            })
            .map_err(cd_err(id))
    }

    /// Records the container, prepares its rootfs, creates and starts its task. Whatever was
    /// made is removed again when a step fails.
    async fn create_and_start(
        &self,
        id: &str,
        image_ref: &str,
        image: &ImageConfig,
        input: &spec::SpecInput,
        labels: HashMap<String, String>,
        log: Option<&std::path::Path>,
    ) -> Result<()> {
        let spec = spec::build(input);
        let spec = serde_json::to_vec(&spec).map_err(|e| Error::Spec {
            container: id.to_string(),
            reason: e.to_string(),
        })?;
        let record = ContainerRecord {
            id: id.to_string(),
            labels,
            image: image_ref.to_string(),
            runtime: Some(ContainerRuntime {
                name: RUNC_RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec,
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        // The record first: it keeps the snapshot from containerd's garbage collector.
        self.cd
            .containers()
            .create(self.cd.request(
                CreateContainerRequest {
                    container: Some(record),
                },
                None,
            ))
            .await
            .rpc("create container")
            .map_err(|e| {
                if e.is_already_exists() {
                    Error::Start {
                        container: id.to_string(),
                        reason: "a container with this id exists already (stop it first)".into(),
                    }
                } else {
                    cd_err(id)(e)
                }
            })?;
        let started = self.prepare_and_start(id, image, log).await;
        if let Err(e) = started {
            if let Err(cleanup) = self.stop(id, Duration::ZERO).await {
                tracing::warn!(container = %id, "cannot clean up after a failed start: {cleanup}");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn prepare_and_start(
        &self,
        id: &str,
        image: &ImageConfig,
        log: Option<&std::path::Path>,
    ) -> Result<()> {
        let mounts = self
            .cd
            .snapshots()
            .prepare(self.cd.request(
                PrepareSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                    parent: image.chain_id.clone(),
                    labels: HashMap::new(),
                },
                None,
            ))
            .await
            .rpc(format!("prepare snapshot from {}", image.chain_id))
            .map_err(cd_err(id))?
            .mounts;
        // The runc shim appends both streams to a plain file given as a file:// URI.
        let uri = log
            .map(|p| format!("file://{}", p.display()))
            .unwrap_or_default();
        self.cd
            .tasks()
            .create(self.cd.request(
                CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: uri.clone(),
                    stderr: uri,
                    ..Default::default()
                },
                None,
            ))
            .await
            .map_err(|status| Error::Start {
                container: id.to_string(),
                reason: status.message().to_string(),
            })?;
        let started_at = jiff::Timestamp::now();
        self.cd
            .tasks()
            .start(self.cd.request(
                StartRequest {
                    container_id: id.to_string(),
                    ..Default::default()
                },
                None,
            ))
            .await
            .map_err(|status| Error::Start {
                container: id.to_string(),
                reason: status.message().to_string(),
            })?;
        let update = ContainerRecord {
            id: id.to_string(),
            labels: HashMap::from([(LABEL_STARTED_AT.to_string(), started_at.to_string())]),
            ..Default::default()
        };
        self.cd
            .containers()
            .update(self.cd.request(
                UpdateContainerRequest {
                    container: Some(update),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec![format!("labels.{LABEL_STARTED_AT}")],
                    }),
                },
                None,
            ))
            .await
            .rpc("update container")
            .map_err(cd_err(id))?;
        Ok(())
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus> {
        let started_at = self
            .label(id, LABEL_STARTED_AT)
            .await?
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let reply = self
            .cd
            .tasks()
            .get(self.cd.request(
                GetRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await;
        let process = match reply {
            Ok(r) => r.into_inner().process,
            Err(status) if status.code() == Code::NotFound => {
                // No task: a record without a process, or nothing at all.
                let exists = self
                    .cd
                    .containers()
                    .get(
                        self.cd
                            .request(GetContainerRequest { id: id.to_string() }, None),
                    )
                    .await;
                return match exists {
                    Ok(_) => Ok(ContainerStatus {
                        id: id.to_string(),
                        state: ContainerState::Created,
                        exit_code: None,
                        started_at: None,
                        finished_at: None,
                        pid: None,
                    }),
                    Err(s) if s.code() == Code::NotFound => Err(Error::NotFound {
                        container: id.to_string(),
                    }),
                    Err(s) => Err(cd_err(id)(containerd::rpc_error("get container", s))),
                };
            }
            Err(status) => return Err(cd_err(id)(containerd::rpc_error("get task", status))),
        };
        let Some(process) = process else {
            return Err(Error::NotFound {
                container: id.to_string(),
            });
        };
        let state = match TaskStatus::try_from(process.status) {
            Ok(TaskStatus::Created) => ContainerState::Created,
            Ok(TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing) => {
                ContainerState::Running
            }
            Ok(TaskStatus::Stopped) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        };
        let exited = state == ContainerState::Exited;
        Ok(ContainerStatus {
            id: id.to_string(),
            state,
            exit_code: exited.then(|| i32::try_from(process.exit_status).unwrap_or(i32::MAX)),
            started_at,
            finished_at: if exited {
                process
                    .exited_at
                    .and_then(|t| jiff::Timestamp::new(t.seconds, t.nanos).ok())
            } else {
                None
            },
            pid: (process.pid != 0 && state != ContainerState::Exited).then_some(process.pid),
        })
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        match self.status(id).await {
            Ok(status) if status.state == ContainerState::Running => {
                self.kill(id, SIGTERM).await?;
                if tokio::time::timeout(grace, self.wait(id)).await.is_err() {
                    tracing::info!(container = %id, "no exit within {grace:?} of SIGTERM; killing");
                    self.kill(id, SIGKILL).await?;
                    if tokio::time::timeout(KILL_TIMEOUT, self.wait(id))
                        .await
                        .is_err()
                    {
                        return Err(Error::Start {
                            container: id.to_string(),
                            reason: format!(
                                "still running {}s after SIGKILL",
                                KILL_TIMEOUT.as_secs()
                            ),
                        });
                    }
                }
            }
            Ok(_) => {}
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.cd
            .tasks()
            .delete(self.cd.request(
                DeleteTaskRequest {
                    container_id: id.to_string(),
                },
                None,
            ))
            .await
            .rpc("delete task")
            .found()
            .map_err(cd_err(id))?;
        self.cd
            .containers()
            .delete(
                self.cd
                    .request(DeleteContainerRequest { id: id.to_string() }, None),
            )
            .await
            .rpc("delete container")
            .found()
            .map_err(cd_err(id))?;
        self.cd
            .snapshots()
            .remove(self.cd.request(
                RemoveSnapshotRequest {
                    snapshotter: self.snapshotter.clone(),
                    key: id.to_string(),
                },
                None,
            ))
            .await
            .rpc("remove snapshot")
            .found()
            .map_err(cd_err(id))?;
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        let reply = self
            .cd
            .tasks()
            .kill(self.cd.request(
                KillRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                    signal,
                    all: false,
                },
                None,
            ))
            .await
            .rpc(format!("kill task (signal {signal})"));
        match reply {
            Ok(_) => Ok(()),
            // Already exited.
            Err(e) if e.is_not_found() || e.code() == Some(Code::FailedPrecondition) => Ok(()),
            Err(e) => Err(cd_err(id)(e)),
        }
    }

    /// Waits for the task's exit (at once when it has exited already).
    async fn wait(&self, id: &str) -> Result<()> {
        self.cd
            .tasks()
            .wait(self.cd.request(
                WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .rpc("wait task")
            .found()
            .map(|_| ())
            .map_err(cd_err(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some("0123abcd-ef45-6789-abcd-0123456789ab".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn container_ids() {
        let p = PodRef::of(&pod("web")).expect("pod");
        assert_eq!(p.container_id("app"), "ns_web_0123abcd_app");
        assert_eq!(p.hostname, "web");
        let long = PodRef::of(&pod(&"x".repeat(70))).expect("pod");
        let id = long.container_id("app");
        assert!(id.len() <= MAX_ID_LEN, "{id}");
        assert_ne!(id, long.container_id("other"));
        let mut no_uid = pod("web");
        no_uid.metadata.uid = None;
        assert!(PodRef::of(&no_uid).is_err());
    }
}
