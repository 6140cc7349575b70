//! Static pods: pods read from manifest files on the node (`--pod-manifest-path`), run by the
//! same pod workers as the API's pods but without needing the API server, and shown in the
//! API as mirror pods.
//!
//! Each file holds one pod (YAML or JSON; files whose names start with `.` are ignored). The
//! pod is named `<name>-<node>`, lives in `default` unless it says otherwise, is bound to the
//! node, and gets a uid derived from its content, the node and the file (stable across kubelet
//! restarts, new whenever the file changes), which is also its `kubernetes.io/config.hash`.
//! The directory is read again every `--file-check-frequency`: a new file starts a pod, a
//! changed one replaces it (the old pod stops before the new one starts), a removed one stops
//! it.
//!
//! The mirror pod is a copy of the static pod in the API with `kubernetes.io/config.mirror`
//! set to the hash and the Node as its controller; the worker posts the static pod's status to
//! it. A mirror pod that is deleted (or that mirrors another version of the file) is deleted
//! for good and created again; the static pod's containers are not touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use sha2::{Digest as _, Sha256};

/// Where a pod came from: `file` for static pods (`api` for the API's, which do not carry it).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// The static pod's hash (its uid).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// On a mirror pod: the hash of the static pod it mirrors.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// How often the manifest directory is read when `--file-check-frequency` is not given.
pub const DEFAULT_CHECK_FREQUENCY: Duration = Duration::from_secs(20);

/// Errors of reading a manifest or of a mirror pod call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("static pod manifest {}: {reason}", .path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where static pods come from.
#[derive(Debug, Clone)]
pub struct StaticPodConfig {
    /// A directory of manifests, or a single manifest file.
    pub path: PathBuf,
    /// How often it is read again.
    pub check_frequency: Duration,
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether `pod` was read from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE) == Some("file")
}

/// Whether `pod` is a mirror pod (of any kubelet's static pod).
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

/// Whether `mirror` mirrors this version of `static_pod`.
pub fn is_mirror_of(mirror: &Pod, static_pod: &Pod) -> bool {
    mirror.metadata.name == static_pod.metadata.name
        && mirror.metadata.namespace == static_pod.metadata.namespace
        && annotation(mirror, CONFIG_MIRROR).is_some()
        && annotation(mirror, CONFIG_MIRROR) == annotation(static_pod, CONFIG_HASH)
}

/// The uid of a static pod that does not set one: a hash of the pod as read, the node and
/// the file, in the 32 hex digits of Kubernetes' (which hashes with MD5; the inputs match,
/// the digest does not).
pub fn static_uid(pod: &Pod, node: &str, path: &Path) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(pod).unwrap_or_default());
    h.update(format!("host:{node}"));
    h.update(format!("file:{}", path.display()));
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A static pod from the manifest at `path`, as Kubernetes' file source makes it.
pub fn from_manifest(path: &Path, content: &[u8], node: &str) -> Result<Pod> {
    let bad = |reason: String| Error::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_yaml_ng::from_slice(content)
        .map_err(|e| bad(format!("not a single YAML or JSON object: {e}")))?;
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("Pod") => {}
        Some(other) => return Err(bad(format!("kind is {other:?}, not \"Pod\""))),
        None => return Err(bad("kind is not set (want \"Pod\")".into())),
    }
    let pod: Pod =
        serde_json::from_value(value).map_err(|e| bad(format!("not a valid Pod: {e}")))?;
    // Kubernetes' defaults, as the API server would apply them (imagePullPolicy, ...).
    let mut pod = match keelson_api::registry::by_kind("v1", "Pod") {
        Some(info) => {
            let mut value = serde_json::to_value(&pod).unwrap_or_default();
            keelson_api::object::apply_defaults(info, &mut value);
            serde_json::from_value(value).map_err(|e| bad(format!("not a valid Pod: {e}")))?
        }
        None => pod,
    };
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("metadata.name is not set".into()))?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err(bad("spec.containers is empty".into()));
    }
    let uid = match pod.metadata.uid.clone().filter(|u| !u.is_empty()) {
        Some(uid) => uid,
        None => static_uid(&pod, node, path),
    };
    let meta = &mut pod.metadata;
    meta.uid = Some(uid.clone());
    meta.name = Some(format!("{name}-{node}"));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".into());
    }
    meta.resource_version = None;
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    // No ServiceAccount admission for static pods, so no token: they must run without the API.
    spec.automount_service_account_token.get_or_insert(false);
    // Static pods tolerate every NoExecute taint, so node problems do not evict them.
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let all = |t: &Toleration| {
        t.operator.as_deref() == Some("Exists")
            && t.key.as_deref().is_none_or(str::is_empty)
            && t.effect.as_deref() == Some("NoExecute")
    };
    if !tolerations.iter().any(all) {
        tolerations.push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    }
    pod.status = None;
    Ok(pod)
}

/// Reads the manifests of `--pod-manifest-path`, remembering which broken files were reported.
#[derive(Debug)]
pub struct StaticPodSource {
    config: StaticPodConfig,
    node: String,
    /// Files that did not parse, with their content, so each version is reported once.
    reported: HashMap<PathBuf, Vec<u8>>,
    missing_reported: bool,
}

impl StaticPodSource {
    pub fn new(config: StaticPodConfig, node: &str) -> Self {
        Self {
            config,
            node: node.to_string(),
            reported: HashMap::new(),
            missing_reported: false,
        }
    }

    pub fn check_frequency(&self) -> Duration {
        self.config.check_frequency
    }

    /// The static pods the path holds now, by uid. A missing path holds none.
    pub fn scan(&mut self) -> BTreeMap<String, Pod> {
        let path = &self.config.path;
        let files = if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot read the static pod directory: {e}");
                    return BTreeMap::new();
                }
            };
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .map(|e| e.path())
                .collect();
            files.sort();
            self.missing_reported = false;
            files
        } else if path.exists() {
            self.missing_reported = false;
            vec![path.clone()]
        } else {
            if !self.missing_reported {
                tracing::info!(path = %path.display(), "the static pod path does not exist; no static pods");
                self.missing_reported = true;
            }
            Vec::new()
        };
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut names: HashMap<(String, String), PathBuf> = HashMap::new();
        let mut still_broken = HashMap::new();
        for file in files {
            let content = match std::fs::read(&file) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %file.display(), "cannot read static pod manifest: {e}");
                    continue;
                }
            };
            let pod = match from_manifest(&file, &content, &self.node) {
                Ok(p) => p,
                Err(e) => {
                    if self.reported.get(&file) != Some(&content) {
                        tracing::warn!("{e}");
                    }
                    still_broken.insert(file, content);
                    continue;
                }
            };
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            if let Some(first) = names.get(&key) {
                if self.reported.get(&file) != Some(&content) {
                    tracing::warn!(path = %file.display(), "static pod {}/{} is defined by {} already; ignored", key.0, key.1, first.display());
                }
                still_broken.insert(file, content);
                continue;
            }
            names.insert(key, file);
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            pods.insert(uid, pod);
        }
        self.reported = still_broken;
        pods
    }
}

/// The mirror pods in the API, by namespace and name, as the pod watch sees them.
#[derive(Debug, Clone, Default)]
pub struct Mirrors(Arc<Mutex<HashMap<(String, String), Pod>>>);

fn key_of(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl Mirrors {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pod>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a mirror pod seen in the API.
    pub fn applied(&self, mirror: Pod) {
        self.map().insert(key_of(&mirror), mirror);
    }

    /// Forgets the pod `namespace/name`; returns whether it was a known mirror pod.
    pub fn deleted(&self, namespace: &str, name: &str) -> bool {
        self.map()
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
    }

    /// The mirror pod named as `pod`.
    pub fn get(&self, pod: &Pod) -> Option<Pod> {
        self.map().get(&key_of(pod)).cloned()
    }

    /// The mirror pods none of `statics` (namespace, name) accounts for.
    pub fn orphans(&self, statics: &[(String, String)]) -> Vec<Pod> {
        self.map()
            .iter()
            .filter(|(k, _)| !statics.contains(k))
            .map(|(_, p)| p.clone())
            .collect()
    }
}

/// The (namespace, name) of a pod.
pub fn full_name(pod: &Pod) -> (String, String) {
    key_of(pod)
}

/// Deletes `mirror` for good (grace 0, only this object); gone already is fine.
pub async fn delete_mirror(client: &kube::Client, mirror: &Pod) -> Result<()> {
    let (namespace, name) = key_of(mirror);
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: mirror.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(pod = %format!("{namespace}/{name}"), "deleted mirror pod");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(Error::Api {
            what: format!("delete mirror pod {namespace}/{name}"),
            source,
        }),
    }
}

/// The mirror pod of `static_pod`, owned by the Node whose uid is `node_uid`.
pub fn mirror_of(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut mirror = static_pod.clone();
    let hash = annotation(static_pod, CONFIG_HASH)
        .unwrap_or_default()
        .to_string();
    let meta = &mut mirror.metadata;
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        ..Default::default()
    }]);
    mirror.status = None;
    mirror
}

/// Makes sure the API holds the mirror pod of this version of `static_pod`: a mirror pod
/// being deleted or of another version is deleted for good first. Returns whether one was
/// created (its status has to be posted again).
pub async fn ensure_mirror(
    client: &kube::Client,
    mirrors: &Mirrors,
    static_pod: &Pod,
    node: &str,
) -> Result<bool> {
    if let Some(current) = mirrors.get(static_pod) {
        if current.metadata.deletion_timestamp.is_none() && is_mirror_of(&current, static_pod) {
            return Ok(false);
        }
        delete_mirror(client, &current).await?;
        let (namespace, name) = key_of(&current);
        mirrors.deleted(&namespace, &name);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node_uid = nodes
        .get(node)
        .await
        .map_err(|source| Error::Api {
            what: format!("get node {node} for the mirror pod's owner"),
            source,
        })?
        .metadata
        .uid
        .unwrap_or_default();
    let (namespace, name) = key_of(static_pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mirror = mirror_of(static_pod, node, &node_uid);
    match api.create(&PostParams::default(), &mirror).await {
        Ok(created) => {
            tracing::info!(pod = %format!("{namespace}/{name}"), "created mirror pod");
            mirrors.applied(created);
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Another version (or ours, not seen by the watch yet); the next sync looks again.
            if let Ok(existing) = api.get(&name).await
                && is_mirror(&existing)
            {
                mirrors.applied(existing);
            }
            Ok(false)
        }
        Err(source) => Err(Error::Api {
            what: format!("create mirror pod {namespace}/{name}"),
            source,
        }),
    }
}

/// Deletes the mirror pod of this version of `static_pod`, if the API has it.
pub async fn remove_mirror(
    client: &kube::Client,
    mirrors: &Mirrors,
    static_pod: &Pod,
) -> Result<()> {
    let Some(current) = mirrors.get(static_pod) else {
        return Ok(());
    };
    if !is_mirror_of(&current, static_pod) {
        return Ok(());
    }
    delete_mirror(client, &current).await?;
    let (namespace, name) = key_of(&current);
    mirrors.deleted(&namespace, &name);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: app\n    image: busybox\n";

    #[test]
    fn manifests_become_node_bound_static_pods() {
        let path = Path::new("/etc/keelson/manifests/web.yaml");
        let pod = from_manifest(path, YAML.as_bytes(), "node-1").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert!(uid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(annotation(&pod, CONFIG_HASH), Some(uid.as_str()));
        assert_eq!(annotation(&pod, CONFIG_SOURCE), Some("file"));
        assert!(is_static(&pod) && !is_mirror(&pod));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);

        // Stable for the same content, node and file; JSON reads the same as YAML.
        let json = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"labels":{"app":"web"},"name":"web"},"spec":{"containers":[{"image":"busybox","name":"app"}]}}"#;
        let again = from_manifest(path, json.as_bytes(), "node-1").unwrap();
        assert_eq!(again.metadata.uid.as_deref(), Some(uid.as_str()));
        // A change, another node or another file gives another uid.
        let changed =
            from_manifest(path, YAML.replace("web}", "web2}").as_bytes(), "node-1").unwrap();
        assert_ne!(changed.metadata.uid.as_deref(), Some(uid.as_str()));
        let other_node = from_manifest(path, YAML.as_bytes(), "node-2").unwrap();
        assert_ne!(other_node.metadata.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(other_node.metadata.name.as_deref(), Some("web-node-2"));
        let other_file = from_manifest(Path::new("/x.yaml"), YAML.as_bytes(), "node-1").unwrap();
        assert_ne!(other_file.metadata.uid.as_deref(), Some(uid.as_str()));

        let in_ns = YAML.replace("  name: web\n", "  name: web\n  namespace: kube-system\n");
        let pod = from_manifest(path, in_ns.as_bytes(), "node-1").unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn bad_manifests_are_named() {
        let path = Path::new("/m/bad.yaml");
        for (content, want) in [
            ("kind: Service\nmetadata: {name: x}\n", "Service"),
            ("metadata: {name: x}\n", "kind"),
            (
                "kind: Pod\nspec: {containers: [{name: a, image: b}]}\n",
                "metadata.name",
            ),
            (
                "kind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
                "containers",
            ),
            ("kind: Pod\nmetadata: {name: x}\n---\nkind: Pod\n", "single"),
        ] {
            let err = from_manifest(path, content.as_bytes(), "n")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(want) && err.contains("bad.yaml"),
                "{content:?}: {err}"
            );
        }
    }

    #[test]
    fn mirrors_carry_the_hash_and_the_node_owner() {
        let pod = from_manifest(Path::new("/m/web.yaml"), YAML.as_bytes(), "node-1").unwrap();
        let mirror = mirror_of(&pod, "node-1", "node-uid");
        assert!(mirror.metadata.uid.is_none());
        assert!(is_mirror(&mirror) && is_mirror_of(&mirror, &pod));
        let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "node-1", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
        let changed = from_manifest(
            Path::new("/m/web.yaml"),
            YAML.replace("busybox", "busybox:1").as_bytes(),
            "node-1",
        )
        .unwrap();
        assert!(!is_mirror_of(&mirror, &changed));

        let mirrors = Mirrors::default();
        mirrors.applied(mirror);
        assert!(mirrors.get(&pod).is_some());
        assert!(mirrors.orphans(&[full_name(&pod)]).is_empty());
        assert_eq!(mirrors.orphans(&[]).len(), 1);
        assert!(mirrors.deleted("default", "web-node-1"));
        assert!(!mirrors.deleted("default", "web-node-1"));
    }

    #[test]
    fn a_changed_manifest_stops_the_old_pod_before_the_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, YAML).unwrap();
        let mut statics = StaticPods::new(
            Some(StaticPodConfig {
                path: dir.path().to_path_buf(),
                check_frequency: Duration::from_secs(1),
            }),
            "n1",
        );
        let mut running: BTreeSet<String> = BTreeSet::new();
        let first = statics.poll(|uid| running.contains(uid));
        assert_eq!(first.len(), 1);
        let old_uid = first[0].metadata.uid.clone().unwrap();
        assert!(first[0].metadata.deletion_timestamp.is_none());
        running.insert(old_uid.clone());
        assert_eq!(statics.uid_of("default", "web-n1"), Some(old_uid.clone()));
        assert!(statics.poll(|uid| running.contains(uid)).is_empty());

        // Changed: the old version is stopped; the new one waits for it.
        std::fs::write(&file, YAML.replace("busybox", "busybox:1")).unwrap();
        let out = statics.poll(|uid| running.contains(uid));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].metadata.uid.as_deref(), Some(old_uid.as_str()));
        assert!(out[0].metadata.deletion_timestamp.is_some());
        assert_eq!(out[0].metadata.deletion_grace_period_seconds, Some(30));
        let new_uid = statics.uid_of("default", "web-n1").unwrap();
        assert_ne!(new_uid, old_uid);
        assert!(statics.release(|uid| running.contains(uid)).is_empty());
        running.remove(&old_uid);
        let started = statics.release(|uid| running.contains(uid));
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].metadata.uid.as_deref(), Some(new_uid.as_str()));
        running.insert(new_uid.clone());

        // Removed: stopped, and nothing new.
        std::fs::remove_file(&file).unwrap();
        let out = statics.poll(|uid| running.contains(uid));
        assert_eq!(out.len(), 1);
        assert!(out[0].metadata.deletion_timestamp.is_some());
        assert!(statics.names().is_empty());
        assert!(StaticPods::new(None, "n1").poll(|_| false).is_empty());
    }

    #[test]
    fn a_directory_scan_skips_hidden_broken_and_duplicate_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), YAML).unwrap();
        std::fs::write(dir.path().join("b.yaml"), YAML).unwrap();
        std::fs::write(
            dir.path().join(".hidden.yaml"),
            YAML.replace("web", "hidden"),
        )
        .unwrap();
        std::fs::write(dir.path().join("c.json"), "{").unwrap();
        std::fs::write(dir.path().join("d.json"), r#"{"kind":"Pod","metadata":{"name":"db"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#).unwrap();
        let mut source = StaticPodSource::new(
            StaticPodConfig {
                path: dir.path().to_path_buf(),
                check_frequency: Duration::from_secs(1),
            },
            "n1",
        );
        let pods = source.scan();
        let mut names: Vec<_> = pods
            .values()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["db-n1", "web-n1"]);
        assert_eq!(
            source.scan().keys().collect::<Vec<_>>(),
            pods.keys().collect::<Vec<_>>()
        );
        std::fs::remove_dir_all(dir.path()).unwrap();
        assert!(source.scan().is_empty());
    }
}

/// The pod manager's view of the static pods: which run, which wait for the previous version
/// of the same pod to stop, and which stop.
#[derive(Debug)]
pub struct StaticPods {
    source: Option<StaticPodSource>,
    /// The static pods as last read, by uid.
    current: BTreeMap<String, Pod>,
    /// Read but not handed to a worker yet, by uid.
    pending: BTreeSet<String>,
    /// Removed versions being stopped: uid -> (namespace, name).
    stopping: BTreeMap<String, (String, String)>,
}

impl StaticPods {
    /// No config: no static pods (mirror pods left from earlier are still cleaned up).
    pub fn new(config: Option<StaticPodConfig>, node: &str) -> Self {
        Self {
            source: config.map(|c| StaticPodSource::new(c, node)),
            current: BTreeMap::new(),
            pending: BTreeSet::new(),
            stopping: BTreeMap::new(),
        }
    }

    pub fn check_frequency(&self) -> Duration {
        self.source
            .as_ref()
            .map_or(DEFAULT_CHECK_FREQUENCY, StaticPodSource::check_frequency)
    }

    /// Reads the manifests again. Returns what to hand to the workers: removed pods as
    /// deleted (deletionTimestamp set, their grace period), and new pods whose previous
    /// version is not running. `running(uid)` tells whether a worker runs pod `uid`.
    pub fn poll(&mut self, running: impl Fn(&str) -> bool) -> Vec<Pod> {
        let Some(source) = &mut self.source else {
            return Vec::new();
        };
        let read = source.scan();
        let mut out = Vec::new();
        for (uid, pod) in &self.current {
            if !read.contains_key(uid) && running(uid) {
                tracing::info!(pod = %format!("{}/{}", full_name(pod).0, full_name(pod).1), "static pod manifest removed or changed; stopping the pod");
                self.stopping.insert(uid.clone(), full_name(pod));
                out.push(stopping(pod));
            }
        }
        self.pending.retain(|uid| read.contains_key(uid));
        for uid in read.keys() {
            if !self.current.contains_key(uid) {
                self.pending.insert(uid.clone());
            }
        }
        self.current = read;
        out.extend(self.release(running));
        out
    }

    /// The new pods whose previous version has stopped.
    pub fn release(&mut self, running: impl Fn(&str) -> bool) -> Vec<Pod> {
        self.stopping.retain(|uid, _| running(uid));
        let blocked: BTreeSet<&(String, String)> = self.stopping.values().collect();
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|uid| {
                self.current
                    .get(*uid)
                    .is_some_and(|p| !blocked.contains(&full_name(p)))
            })
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|uid| {
                self.pending.remove(&uid);
                self.current.get(&uid).cloned()
            })
            .collect()
    }

    /// The uid of the current static pod named `namespace/name`.
    pub fn uid_of(&self, namespace: &str, name: &str) -> Option<String> {
        self.current
            .iter()
            .find(|(_, p)| full_name(p) == (namespace.to_string(), name.to_string()))
            .map(|(uid, _)| uid.clone())
    }

    /// The (namespace, name) of every current static pod.
    pub fn names(&self) -> Vec<(String, String)> {
        self.current.values().map(full_name).collect()
    }
}

/// `pod` as deleted: the worker stops it within its grace period and removes its mirror.
fn stopping(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    pod.metadata.deletion_grace_period_seconds = Some(grace);
    pod
}

/// How long a restarted kubelet waits for a static pod's mirror pod before running the pod
/// without its earlier status.
const MIRROR_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The status the API holds for this version of `static_pod` (on its mirror pod), so that a
/// restarted kubelet keeps restart counts and start times; none if the API does not answer.
pub async fn mirror_status(client: &kube::Client, static_pod: &Pod) -> Option<PodStatus> {
    let (namespace, name) = key_of(static_pod);
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mirror = tokio::time::timeout(MIRROR_STATUS_TIMEOUT, api.get_opt(&name))
        .await
        .ok()?
        .ok()??;
    if !is_mirror_of(&mirror, static_pod) {
        return None;
    }
    mirror.status
}
