//! Pod volumes, container environments and the files the kubelet writes into containers.
//!
//! Volumes live under `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`:
//! emptyDir (a directory, or a tmpfs for medium Memory), hostPath (checked per its type),
//! secret (on a tmpfs) and configMap, whose files are written by the [`atomic`] writer and
//! refreshed when their object changes. Unless `automountServiceAccountToken` is false, the
//! pod's ServiceAccount token Secret is mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` (there is no ServiceAccount admission
//! plugin, so the kubelet does it). A volume that cannot be set up (a missing Secret, no token
//! yet) keeps the pod in ContainerCreating with a `FailedMount` event, and is retried with
//! backoff.
//!
//! Each container also gets the pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`,
//! written under the pod's directory ([`dns`]), and its environment ([`env`]).

pub mod atomic;
pub mod dns;
pub mod env;
pub mod hostpath;
pub mod mounts;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service, ServiceAccount};
use keelson_api::object::quantity::parse_quantity;
use keelson_client::events::EventType;
use kube::Api;
use tokio::time::Instant;

use crate::pods::PodEvents;
use crate::runtime::{BindMount, ContainerExtras};
use atomic::{FileProjection, Payload};

/// Where the ServiceAccount token is mounted.
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The mode of secret and configMap files without `defaultMode` (0644).
const DEFAULT_MODE: i32 = 0o644;
/// How often secret and configMap volumes are compared with their objects.
const REFRESH: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(122);

/// Where the kubelet keeps pods' files and how it makes their resolver configuration.
#[derive(Clone, Debug)]
pub struct VolumeConfig {
    /// The kubelet's `--root-dir`.
    pub root_dir: PathBuf,
    /// `--cluster-dns`: the nameservers of ClusterFirst pods.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain` (cluster.local).
    pub cluster_domain: String,
    /// `--resolv-conf`: the node's resolver configuration; empty for none.
    pub resolv_conf: PathBuf,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        Self {
            root_dir: PathBuf::from("/var/lib/keelson/kubelet"),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

impl VolumeConfig {
    /// `<root-dir>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    /// `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`.
    pub fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid)
            .join("volumes")
            .join(format!("kubernetes.io~{plugin}"))
            .join(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A volume cannot be set up; the pod waits (`FailedMount`).
    #[error("MountVolume.SetUp failed for volume {volume:?} : {reason}")]
    SetUp { volume: String, reason: String },
    /// The container's configuration cannot be made (`CreateContainerConfigError`).
    #[error("{0}")]
    Config(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.to_string();
    move |source| Error::Io { what, source }
}

fn set_up_err(volume: &str) -> impl Fn(String) -> Error + Copy + '_ {
    move |reason| Error::SetUp {
        volume: volume.to_string(),
        reason,
    }
}

/// A volume ready to be mounted into containers.
#[derive(Clone, Debug)]
struct ReadyVolume {
    path: PathBuf,
    /// Secret and configMap volumes are always mounted read-only.
    read_only: bool,
    /// A directory the kubelet made (subPaths may be created in it).
    managed: bool,
}

/// One pod's volumes and files, kept by its worker across syncs.
#[derive(Debug, Default)]
pub struct PodVolumes {
    volumes: BTreeMap<String, ReadyVolume>,
    /// The ServiceAccount token's directory, when one is mounted.
    token: Option<PathBuf>,
    set_up_at: Option<Instant>,
    backoff: Duration,
    dns_warned: bool,
    /// The missing ServiceAccount has been logged.
    no_account_warned: bool,
}

impl PodVolumes {
    /// Sets up the pod's volumes (and, every little while, refreshes secret and configMap
    /// files). On failure the pod waits: see [`PodVolumes::backoff`].
    pub async fn set_up(
        &mut self,
        client: &kube::Client,
        config: &VolumeConfig,
        pod: &Pod,
    ) -> Result<()> {
        let now = Instant::now();
        if self
            .set_up_at
            .is_some_and(|at| now.saturating_duration_since(at) < REFRESH)
        {
            return Ok(());
        }
        self.set_up_all(client, config, pod).await?;
        self.set_up_at = Some(now);
        self.backoff = Duration::ZERO;
        Ok(())
    }

    /// The delay before the next try after a failed [`PodVolumes::set_up`]: from 0.5s,
    /// doubling up to about 2 minutes, as the kubelet's volume manager.
    pub fn backoff(&mut self) -> Duration {
        self.backoff = if self.backoff.is_zero() {
            BACKOFF_INITIAL
        } else {
            (self.backoff * 2).min(BACKOFF_MAX)
        };
        self.backoff
    }

    async fn set_up_all(
        &mut self,
        client: &kube::Client,
        config: &VolumeConfig,
        pod: &Pod,
    ) -> Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return Err(Error::Config("the pod has no uid".into()));
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.clone().unwrap_or_default();
        for vol in spec.volumes.iter().flatten() {
            let name = vol.name.as_str();
            let fail = set_up_err(name);
            let ready = if let Some(hp) = &vol.host_path {
                let path = PathBuf::from(&hp.path);
                hostpath::check(&path, hp.type_.as_deref().unwrap_or("")).map_err(fail)?;
                ReadyVolume {
                    path,
                    read_only: false,
                    managed: false,
                }
            } else if let Some(s) = &vol.secret {
                let secret_name = s.secret_name.clone().unwrap_or_default();
                let secret = get::<Secret>(client, ns, &secret_name).await?;
                let optional = s.optional == Some(true);
                let payload = match secret {
                    Some(secret) => {
                        let mut data: BTreeMap<String, Vec<u8>> = secret
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect();
                        // stringData over data, as the API merges them on write.
                        for (k, v) in secret.string_data.unwrap_or_default() {
                            data.insert(k, v.into_bytes());
                        }
                        payload(
                            &data,
                            s.items.as_deref(),
                            s.default_mode,
                            "secret",
                            optional,
                        )
                        .map_err(fail)?
                    }
                    None if optional => Payload::new(),
                    None => return Err(fail(format!("secret {secret_name:?} not found"))),
                };
                let dir = config.volume_dir(&uid, "secret", name);
                write_tmpfs_volume(&dir, &payload).map_err(set_up_err(name))?;
                ReadyVolume {
                    path: dir,
                    read_only: true,
                    managed: true,
                }
            } else if let Some(c) = &vol.config_map {
                let cm_name = c.name.clone();
                let cm = get::<ConfigMap>(client, ns, &cm_name).await?;
                let optional = c.optional == Some(true);
                let payload = match cm {
                    Some(cm) => {
                        let mut data: BTreeMap<String, Vec<u8>> = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        for (k, v) in cm.binary_data.unwrap_or_default() {
                            data.insert(k, v.0);
                        }
                        payload(
                            &data,
                            c.items.as_deref(),
                            c.default_mode,
                            "configmap",
                            optional,
                        )
                        .map_err(fail)?
                    }
                    None if optional => Payload::new(),
                    None => return Err(fail(format!("configmap {cm_name:?} not found"))),
                };
                let dir = config.volume_dir(&uid, "configmap", name);
                atomic::write(&dir, &payload).map_err(|e| fail(e.to_string()))?;
                ReadyVolume {
                    path: dir,
                    read_only: true,
                    managed: true,
                }
            } else if vol.empty_dir.is_some() || is_sourceless(vol) {
                let dir = config.volume_dir(&uid, "empty-dir", name);
                make_dir(&dir, 0o777).map_err(|e| fail(e.to_string()))?;
                let ed = vol.empty_dir.clone().unwrap_or_default();
                if ed.medium.as_deref() == Some("Memory") {
                    let size = ed
                        .size_limit
                        .as_ref()
                        .map(|q| {
                            parse_quantity(&q.0)
                                .map(|m| u64::try_from(m / 1000).unwrap_or(u64::MAX))
                                .map_err(|e| format!("sizeLimit {:?}: {e}", q.0))
                        })
                        .transpose()
                        .map_err(set_up_err(name))?;
                    mounts::ensure_tmpfs(&dir, size).map_err(|e| {
                        fail(format!("cannot mount a tmpfs on {}: {e}", dir.display()))
                    })?;
                }
                ReadyVolume {
                    path: dir,
                    read_only: false,
                    managed: true,
                }
            } else {
                return Err(fail(
                    "this volume type is not supported by keelson's kubelet yet (emptyDir, hostPath, secret and configMap are)".into(),
                ));
            };
            self.volumes.insert(name.to_string(), ready);
        }
        self.token = self.set_up_token(client, config, pod, &uid).await?;
        Ok(())
    }

    /// Mounts the ServiceAccount's token Secret unless automounting is off or every
    /// container mounts something there already.
    async fn set_up_token(
        &mut self,
        client: &kube::Client,
        config: &VolumeConfig,
        pod: &Pod,
        uid: &str,
    ) -> Result<Option<PathBuf>> {
        let spec = pod.spec.clone().unwrap_or_default();
        // Static pods may not refer to API objects, their ServiceAccount included.
        if spec.automount_service_account_token == Some(false) || crate::static_pods::is_static(pod)
        {
            return Ok(None);
        }
        let all = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        if all.clone().count() > 0
            && all
                .clone()
                .all(|c| mounts_at(c, SERVICE_ACCOUNT_MOUNT_PATH))
        {
            return Ok(None);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa_name = spec
            .service_account_name
            .clone()
            .or(spec.service_account.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let Some(sa) = get::<ServiceAccount>(client, ns, &sa_name).await? else {
            // Without an admission plugin to refuse such pods, they run without a token.
            if !std::mem::replace(&mut self.no_account_warned, true) {
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                tracing::warn!(pod = %format!("{ns}/{pod_name}"),
                    "serviceaccount {sa_name:?} not found; no token is mounted");
            }
            return Ok(None);
        };
        if spec.automount_service_account_token.is_none()
            && sa.automount_service_account_token == Some(false)
        {
            return Ok(None);
        }
        let volume = format!("{sa_name}-token");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let list = secrets
            .list(&Default::default())
            .await
            .map_err(|source| Error::Api {
                what: format!("list secrets of namespace {ns}"),
                source,
            })?;
        let listed: Vec<String> = sa
            .secrets
            .iter()
            .flatten()
            .filter_map(|r| r.name.clone())
            .collect();
        let sa_uid = sa.metadata.uid.clone().unwrap_or_default();
        let mut candidates: Vec<&Secret> = list
            .items
            .iter()
            .filter(|s| s.type_.as_deref() == Some(TOKEN_SECRET_TYPE))
            .filter(|s| {
                let ann = s.metadata.annotations.clone().unwrap_or_default();
                ann.get(SA_NAME_ANNOTATION) == Some(&sa_name)
                    && ann
                        .get(SA_UID_ANNOTATION)
                        .is_none_or(|u| u.is_empty() || *u == sa_uid)
            })
            .filter(|s| {
                s.data
                    .as_ref()
                    .and_then(|d| d.get("token"))
                    .is_some_and(|t| !t.0.is_empty())
            })
            .collect();
        // The ones the account lists first.
        candidates.sort_by_key(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            (!listed.contains(&name), name)
        });
        let Some(secret) = candidates.first() else {
            return Err(Error::SetUp {
                volume,
                reason: format!(
                    "no token Secret (type {TOKEN_SECRET_TYPE}) for serviceaccount {sa_name:?} in namespace {ns:?} yet; the controller manager's serviceaccount-token controller creates it"
                ),
            });
        };
        let data = secret.data.clone().unwrap_or_default();
        let mut payload = Payload::new();
        for key in ["token", "ca.crt", "namespace"] {
            let bytes = match data.get(key) {
                Some(v) => v.0.clone(),
                None if key == "namespace" => ns.as_bytes().to_vec(),
                None => continue,
            };
            payload.insert(
                key.into(),
                FileProjection {
                    data: bytes,
                    mode: DEFAULT_MODE as u32,
                },
            );
        }
        let secret_name = secret.metadata.name.clone().unwrap_or(volume);
        // Once mounted, a replaced token Secret is written into the same directory, which
        // running containers see.
        let dir = self
            .token
            .clone()
            .unwrap_or_else(|| config.volume_dir(uid, "secret", &secret_name));
        write_tmpfs_volume(&dir, &payload).map_err(set_up_err(&secret_name))?;
        Ok(Some(dir))
    }

    /// The mounts and environment of `container`; the pod's volumes must be set up.
    #[allow(clippy::too_many_arguments)]
    pub async fn container_extras(
        &mut self,
        client: &kube::Client,
        config: &VolumeConfig,
        events: &PodEvents,
        pod: &Pod,
        container: &Container,
        host_ip: Option<&str>,
        pod_ips: &[String],
    ) -> Result<ContainerExtras> {
        let env = self
            .resolve_env(client, events, pod, container, host_ip, pod_ips)
            .await?;
        let mut mounts = Vec::new();
        for vm in container.volume_mounts.iter().flatten() {
            let vol = self.volumes.get(&vm.name).ok_or_else(|| {
                Error::Config(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    vm.name, container.name
                ))
            })?;
            let sub = match (&vm.sub_path, &vm.sub_path_expr) {
                (Some(s), _) if !s.is_empty() => Some(s.clone()),
                (_, Some(e)) if !e.is_empty() => Some(env::expand(e, |n| {
                    env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
                })),
                _ => None,
            };
            let source = match sub {
                Some(sub) => sub_path(&vol.path, &sub, vol.managed && !vol.read_only)
                    .map_err(Error::Config)?,
                None => vol.path.clone(),
            };
            mounts.push(BindMount {
                source,
                destination: vm.mount_path.clone(),
                read_only: vm.read_only == Some(true) || vol.read_only,
            });
        }
        if let Some(token) = &self.token
            && !mounts_at(container, SERVICE_ACCOUNT_MOUNT_PATH)
        {
            mounts.push(BindMount {
                source: token.clone(),
                destination: SERVICE_ACCOUNT_MOUNT_PATH.into(),
                read_only: true,
            });
        }
        mounts.extend(self.pod_files(config, events, pod, container, pod_ips)?);
        Ok(ContainerExtras {
            mounts,
            env: Some(env),
        })
    }

    async fn resolve_env(
        &self,
        client: &kube::Client,
        events: &PodEvents,
        pod: &Pod,
        container: &Container,
        host_ip: Option<&str>,
        pod_ips: &[String],
    ) -> Result<Vec<(String, String)>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (cms, secrets) = env::references(container);
        let mut objects = env::EnvObjects::default();
        for name in cms {
            let cm = get::<ConfigMap>(client, ns, &name).await?;
            objects.config_maps.insert(name, cm);
        }
        for name in secrets {
            let s = get::<Secret>(client, ns, &name).await?;
            objects.secrets.insert(name, s);
        }
        let candidates = match service_candidates(client, pod, ns).await {
            Ok(c) => c,
            // A static pod runs without the API server, as Kubernetes' kubelet runs it from
            // its (then empty) service cache: without service variables.
            Err(e) if is_static(pod) => {
                tracing::warn!(pod = ?pod.metadata.name, "static pod starts without service variables: {e}");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        objects.services = env::link_services(pod, &candidates);
        let (cpu, memory) = node_resources();
        let ctx = env::EnvContext {
            host_ip: host_ip.unwrap_or_default().to_string(),
            pod_ips: pod_ips.to_vec(),
            node_cpu_millis: cpu,
            node_memory_bytes: memory,
        };
        let resolved = env::resolve(pod, container, &objects, &ctx).map_err(Error::Config)?;
        for message in &resolved.invalid_keys {
            events.container(
                pod,
                &container.name,
                EventType::Warning,
                "InvalidEnvironmentVariableNames",
                message,
            );
        }
        Ok(resolved.vars)
    }

    /// Writes the pod's hosts, resolv.conf and hostname files and returns their mounts for
    /// `container`.
    fn pod_files(
        &mut self,
        config: &VolumeConfig,
        events: &PodEvents,
        pod: &Pod,
        container: &Container,
        pod_ips: &[String],
    ) -> Result<Vec<BindMount>> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = config.pod_dir(&uid);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let aliases = spec.host_aliases.clone().unwrap_or_default();
        let (hostname, domain) = dns::hostname_and_domain(pod, &config.cluster_domain);
        let hosts = if host_network {
            let node = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            dns::host_network_hosts(&node, &aliases)
        } else {
            dns::managed_hosts(pod_ips, &hostname, domain.as_deref(), &aliases)
        };
        let host_dns = if config.resolv_conf.as_os_str().is_empty() {
            None
        } else {
            let text = std::fs::read_to_string(&config.resolv_conf).map_err(io_err(format!(
                "read the node's resolver configuration {}",
                config.resolv_conf.display()
            )))?;
            Some(dns::DnsConfig::parse(&text))
        };
        let (resolv, warnings) = dns::pod_dns(
            pod,
            &dns::DnsSettings {
                cluster_dns: &config.cluster_dns,
                cluster_domain: &config.cluster_domain,
                host: host_dns.as_ref(),
            },
        );
        if !self.dns_warned {
            self.dns_warned = true;
            for (reason, message) in warnings {
                events.pod(pod, EventType::Warning, reason, &message);
            }
        }
        let read_only_root = container
            .security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false);
        let mut out = Vec::new();
        let mut file = |name: &str, content: &str, dest: &str, read_only: bool| -> Result<()> {
            let path = dir.join(name);
            // In place: running containers bind the file itself and see the update.
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
                std::fs::write(&path, content)
                    .map_err(io_err(format!("write {}", path.display())))?;
            }
            if !mounts_at(container, dest) {
                out.push(BindMount {
                    source: path,
                    destination: dest.into(),
                    read_only,
                });
            }
            Ok(())
        };
        file("etc-hosts", &hosts, "/etc/hosts", false)?;
        file(
            "resolv.conf",
            &resolv.render(),
            "/etc/resolv.conf",
            read_only_root,
        )?;
        if !host_network {
            file(
                "hostname",
                &format!("{hostname}\n"),
                "/etc/hostname",
                read_only_root,
            )?;
        }
        Ok(out)
    }

    /// Unmounts the pod's tmpfs volumes and removes its directory; its containers must be
    /// stopped first.
    pub fn tear_down(&mut self, config: &VolumeConfig, uid: &str) -> Result<()> {
        *self = Self::default();
        tear_down(config, uid)
    }
}

/// Unmounts what is mounted under the pod's directory and removes it.
pub fn tear_down(config: &VolumeConfig, uid: &str) -> Result<()> {
    if uid.is_empty() {
        return Ok(());
    }
    let dir = config.pod_dir(uid);
    if !dir.exists() {
        return Ok(());
    }
    mounts::unmount_under(&dir).map_err(io_err(format!("unmount under {}", dir.display())))?;
    std::fs::remove_dir_all(&dir).map_err(io_err(format!("remove {}", dir.display())))?;
    tracing::info!(dir = %dir.display(), "pod volumes torn down");
    Ok(())
}

/// Tears down the directories of pods that are not in `known` (deleted while the kubelet was
/// down) and that were last changed before `before`, so a pod that has just arrived keeps
/// its own.
pub fn remove_orphaned_pod_dirs(
    config: &VolumeConfig,
    known: &std::collections::HashSet<String>,
    before: std::time::SystemTime,
) {
    let Ok(entries) = std::fs::read_dir(config.root_dir.join("pods")) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < before);
        if known.contains(&uid) || !old {
            continue;
        }
        tracing::info!(uid, "removing the volumes of a pod that is gone");
        if let Err(e) = tear_down(config, &uid) {
            tracing::warn!(uid, "cannot remove the volumes of a pod that is gone: {e}");
        }
    }
}

/// A volume without a source is an emptyDir.
fn is_sourceless(vol: &k8s_openapi::api::core::v1::Volume) -> bool {
    let v = serde_json::to_value(vol).unwrap_or_default();
    v.as_object().is_some_and(|o| o.len() == 1)
}

fn mounts_at(container: &Container, path: &str) -> bool {
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| clean(&m.mount_path) == clean(path))
}

fn make_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Writes a secret volume: a tmpfs, so secrets never touch the node's disk.
fn write_tmpfs_volume(dir: &Path, payload: &Payload) -> Result<(), String> {
    make_dir(dir, 0o755).map_err(|e| e.to_string())?;
    mounts::ensure_tmpfs(dir, None)
        .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", dir.display()))?;
    atomic::write(dir, payload).map_err(|e| e.to_string())?;
    Ok(())
}

/// The files of a secret or configMap volume: every key, or the `items` chosen.
fn payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: Option<i32>,
    kind: &str,
    optional: bool,
) -> Result<Payload, String> {
    let default_mode = default_mode.unwrap_or(DEFAULT_MODE);
    let mode = |m: i32| {
        u32::try_from(m)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("mode {m} is out of range (0-0777)"))
    };
    let mut out = Payload::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(default_mode)?,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "{kind} references non-existent config key: {}",
                        item.key
                    ));
                };
                atomic::validate_path(&item.path)?;
                out.insert(
                    item.path.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode(item.mode.unwrap_or(default_mode))?,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The host path of `sub` in a volume: relative, without `..`, and (symlinks resolved) still
/// inside the volume; made as a directory when missing and `create`.
fn sub_path(base: &Path, sub: &str, create: bool) -> Result<PathBuf, String> {
    let p = Path::new(sub);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "subPath {sub:?} must be a relative path without '..'"
        ));
    }
    let target = base.join(p);
    if !target.exists() && create {
        make_dir(&target, 0o755).map_err(|e| format!("cannot create subPath {sub:?}: {e}"))?;
    }
    let real = target
        .canonicalize()
        .map_err(|e| format!("subPath {sub:?}: {e}"))?;
    let real_base = base
        .canonicalize()
        .map_err(|e| format!("volume path {}: {e}", base.display()))?;
    if !real.starts_with(&real_base) {
        return Err(format!("subPath {sub:?} is outside the volume"));
    }
    Ok(real)
}

/// The node's CPU (millicores) and memory (bytes): the limits of containers without one.
fn node_resources() -> (i128, i128) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i128>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    (i128::try_from(cpus).unwrap_or(1) * 1000, memory)
}

/// An object, or `None` when it does not exist.
async fn get<K>(client: &kube::Client, ns: &str, name: &str) -> Result<Option<K>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.map_err(|source| Error::Api {
        what: format!(
            "get {} {ns}/{name}",
            K::kind(&K::DynamicType::default()).to_lowercase()
        ),
        source,
    })
}

/// Whether `pod` comes from a manifest file (a static pod), not from the API server.
fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s == "file")
}

/// The Services whose variables `pod` may get: those of its namespace (unless
/// `enableServiceLinks` is false) and `default/kubernetes`.
async fn service_candidates(client: &kube::Client, pod: &Pod, ns: &str) -> Result<Vec<Service>> {
    let mut candidates = Vec::new();
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    if links {
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let list = api
            .list(&Default::default())
            .await
            .map_err(|source| Error::Api {
                what: format!("list services of namespace {ns}"),
                source,
            })?;
        candidates.extend(list.items.into_iter().map(|mut s| {
            s.metadata.namespace.get_or_insert_with(|| ns.to_string());
            s
        }));
    }
    if let Some(mut k) = get::<Service>(client, "default", "kubernetes").await? {
        k.metadata.namespace = Some("default".into());
        candidates.push(k);
    }
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::KeyToPath;

    #[test]
    fn payloads_take_items_modes_and_defaults() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = payload(&data, None, Some(0o400), "secret", false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o400);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o600),
        }];
        let some = payload(&data, Some(&items), None, "configmap", false).unwrap();
        assert_eq!(some.len(), 1);
        assert_eq!(some["dir/b.txt"].data, b"2");
        assert_eq!(some["dir/b.txt"].mode, 0o600);
        let missing = [KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
        }];
        assert_eq!(
            payload(&data, Some(&missing), None, "configmap", false).unwrap_err(),
            "configmap references non-existent config key: zz"
        );
        assert!(
            payload(&data, Some(&missing), None, "configmap", true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("vol");
        std::fs::create_dir(&base).unwrap();
        let made = sub_path(&base, "a/b", true).unwrap();
        assert!(made.is_dir() && made.ends_with("a/b"));
        assert!(sub_path(&base, "../x", true).is_err());
        assert!(sub_path(&base, "/etc", true).is_err());
        std::os::unix::fs::symlink("/etc", base.join("escape")).unwrap();
        assert!(
            sub_path(&base, "escape", false)
                .unwrap_err()
                .contains("outside")
        );
        assert!(sub_path(&base, "missing", false).is_err());
    }

    #[test]
    fn sourceless_volumes_are_empty_dirs() {
        let v = k8s_openapi::api::core::v1::Volume {
            name: "x".into(),
            ..Default::default()
        };
        assert!(is_sourceless(&v));
        let mut h = v.clone();
        h.host_path = Some(Default::default());
        assert!(!is_sourceless(&h));
    }
}
