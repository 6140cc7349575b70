//! Pulling images from OCI distribution registries into containerd, the way containerd's
//! CRI plugin does: the manifest (an index or manifest list is resolved to this machine's
//! platform), the config and the layers go into the content store, each blob's size and
//! digest checked while it streams and before it is committed; layers already in the store
//! are not fetched again. The layers are then unpacked with the snapshotter and the image
//! record written last, all under one lease, as an import does.
//!
//! Concurrent pulls of the same image into the same containerd namespace share one
//! download. A pull limit (the kubelet's `--serialize-image-pulls`) makes pulls take turns.

mod container;
mod credentials;
mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use containerd_client::services::v1::{
    AbortRequest, InfoRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::{self, Code};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};

pub use container::{
    ContainerImages, Ensure, Notice, PULL_POLL, PullConfig, PullPolicy, back_off, go_duration,
};
pub use credentials::{Credential, credential_for, credentials_from_secret};

use super::archive::{self, Descriptor, ImageConfig, Index, Manifest};
use super::import::{create_lease, delete_lease, record_image, set_labels, unpack};
use super::{Error, Result, media_types as mt, reference};
use crate::containerd::{Containerd, rpc_error};

/// Largest manifest, index or config fetched into memory.
const MAX_METADATA: usize = 16 << 20;
/// Bytes per content-write message (gRPC's default message limit is 4 MiB).
const CHUNK: usize = 1 << 20;

const LABEL_GC_CONTENT: &str = "containerd.io/gc.ref.content";
const LABEL_GC_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// The manifest types a pull accepts, in the order of preference sent to registries.
const MANIFEST_TYPES: [&str; 4] = [
    mt::OCI_INDEX,
    mt::DOCKER_MANIFEST_LIST,
    mt::OCI_MANIFEST,
    mt::DOCKER_MANIFEST,
];

/// Why a pull failed on the registry's side. The messages follow containerd's, which is
/// what Kubernetes users see in `ErrImagePull`.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("failed to resolve reference {reference:?}: {reference}: not found")]
    NotFound { reference: String },
    #[error("pull access denied, repository does not exist or may require authorization: {detail}")]
    Unauthorized { detail: String },
    #[error("failed to do request: GET {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("failed to do request: GET {url}: TLS handshake failed: {detail}")]
    Tls { url: String, detail: String },
    #[error("unexpected status from GET request to {url}: {status}{message}")]
    Status {
        url: String,
        status: String,
        message: String,
    },
    #[error("failed to read {url}: {detail}")]
    Read { url: String, detail: String },
    #[error("{what} {digest}: digest mismatch: the registry sent content with digest {actual}")]
    Digest {
        what: String,
        digest: String,
        actual: String,
    },
    #[error(
        "{what} {digest}: size mismatch: expected {expected} bytes, the registry sent {actual}"
    )]
    Size {
        what: String,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} {digest}: {reason}")]
    Invalid {
        what: String,
        digest: String,
        reason: String,
    },
    #[error("no match for platform {platform} in manifest {digest}: not found")]
    NoPlatform { platform: String, digest: String },
    #[error("cannot set up the registry client: {detail}")]
    Client { detail: String },
}

/// One step of a pull, for progress reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `manifest`, `index`, `config` or `layer`.
    pub what: &'static str,
    pub digest: String,
    /// Bytes received so far.
    pub done: u64,
    pub total: u64,
    /// Already in the content store: nothing fetched.
    pub present: bool,
}

/// Called with each step of a pull (every MiB or so of a layer).
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// How to pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Registries (`host:port` as references name them) reached over plain HTTP instead of
    /// HTTPS.
    pub insecure_registries: Vec<String>,
    /// Credentials from image pull secrets; the first for the image's registry is used.
    pub credentials: Vec<Credential>,
    pub progress: Option<ProgressFn>,
    /// When set, a pull holds a permit of it while it runs (`--serialize-image-pulls` is a
    /// semaphore of one).
    pub limit: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("credentials", &self.credentials)
            .field("progress", &self.progress.is_some())
            .field("limit", &self.limit)
            .finish()
    }
}

/// An image a pull recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledImage {
    /// The normalised reference it was recorded under.
    pub name: String,
    /// What the record points at (a manifest, or an index of manifests).
    pub target: Descriptor,
    /// The manifest unpacked for this machine's platform.
    pub manifest: Descriptor,
    pub chain_id: String,
    pub snapshotter: String,
    /// Bytes of the image for this platform (target, manifest, config, compressed layers),
    /// as `keelson image ls` counts them.
    pub size: u64,
    /// Bytes fetched from the registry (layers already present are not).
    pub fetched: u64,
    pub layers_fetched: usize,
    pub layers_present: usize,
    /// Time spent pulling, without waiting for a turn.
    pub duration: Duration,
}

type Shared = Option<std::result::Result<PulledImage, Arc<Error>>>;

/// Pulls in progress, by containerd socket, namespace and image.
fn in_flight() -> &'static Mutex<HashMap<String, watch::Receiver<Shared>>> {
    static PULLS: OnceLock<Mutex<HashMap<String, watch::Receiver<Shared>>>> = OnceLock::new();
    PULLS.get_or_init(Default::default)
}

/// Takes a pull's entry out of [`in_flight`] when the pull ends, however it ends.
struct Registered(String);

impl Drop for Registered {
    fn drop(&mut self) {
        in_flight()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Pulls `reference` (normalised as Docker does: `busybox` is
/// `docker.io/library/busybox:latest`) into containerd and unpacks it. A pull of the same
/// image already running in this process is waited for instead of repeated.
pub async fn pull(cd: &Containerd, reference: &str, options: &PullOptions) -> Result<PulledImage> {
    let name = reference::normalize(reference)?;
    let key = format!("{}\0{}\0{name}", cd.address().display(), cd.namespace());
    loop {
        let (sender, mut receiver) = {
            let mut pulls = in_flight().lock().unwrap_or_else(PoisonError::into_inner);
            match pulls.get(&key) {
                Some(rx) => (None, rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pulls.insert(key.clone(), rx.clone());
                    (Some(tx), rx)
                }
            }
        };
        let Some(sender) = sender else {
            // Someone else is pulling it: their outcome is ours. If they gave up (their
            // task was cancelled), try again, maybe as the puller.
            if let Ok(outcome) = receiver.wait_for(Option::is_some).await
                && let Some(outcome) = outcome.clone()
            {
                return outcome.map_err(Error::Shared);
            }
            continue;
        };
        let registered = Registered(key.clone());
        let _permit = match &options.limit {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        };
        let outcome = pull_once(cd, &name, options).await.map_err(Arc::new);
        let _ = sender.send(Some(outcome.clone()));
        drop(registered);
        drop(receiver);
        drop(sender);
        return outcome.map_err(|e| Arc::try_unwrap(e).unwrap_or_else(Error::Shared));
    }
}

/// `host`, repository and tag or digest of a normalised reference.
fn split_reference(name: &str) -> (&str, &str, &str) {
    let (host, rest) = name.split_once('/').unwrap_or(("", name));
    if let Some((repo, digest)) = rest.split_once('@') {
        let repo = repo.rfind(':').map_or(repo, |i| &repo[..i]);
        return (host, repo, digest);
    }
    match rest.rfind(':') {
        Some(i) => (host, &rest[..i], &rest[i + 1..]),
        None => (host, rest, "latest"),
    }
}

async fn pull_once(cd: &Containerd, name: &str, options: &PullOptions) -> Result<PulledImage> {
    let started = Instant::now();
    let pull_err = |reason: PullError| Error::Pull {
        image: name.to_string(),
        reason,
    };
    let (host, repo, tag) = split_reference(name);
    let insecure = options.insecure_registries.iter().any(|h| h == host);
    let credential = credential_for(&options.credentials, host).cloned();
    let http = registry::http_client().map_err(pull_err)?;
    let mut registry = registry::Repository::new(http, host, repo, insecure, credential);
    let report = |p: Progress| {
        if let Some(progress) = &options.progress {
            progress(&p);
        }
    };

    // The target: what the tag names (or the digest itself).
    let (target_bytes, target_type) = fetch_manifest(&mut registry, name, tag)
        .await
        .map_err(pull_err)?;
    let target_digest = sha256(&target_bytes);
    if tag.starts_with("sha256:") && tag != target_digest {
        return Err(pull_err(PullError::Digest {
            what: "manifest".into(),
            digest: tag.to_string(),
            actual: target_digest,
        }));
    }
    let target = Descriptor {
        media_type: target_type.clone(),
        digest: target_digest.clone(),
        size: target_bytes.len() as u64,
        annotations: Default::default(),
        platform: None,
    };
    report(Progress {
        what: if is_index(&target_type) {
            "index"
        } else {
            "manifest"
        },
        digest: target.digest.clone(),
        done: target.size,
        total: target.size,
        present: false,
    });

    // The manifest for this platform.
    let mut blobs: Vec<(Descriptor, Vec<u8>, HashMap<String, String>)> = Vec::new();
    let (manifest_desc, manifest_bytes) = if is_index(&target_type) {
        let index: Index = parse(&target_bytes, "index", &target_digest).map_err(pull_err)?;
        let (os, arch) = archive::host_platform();
        let chosen = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            })
            .or_else(|| index.manifests.iter().find(|m| m.platform.is_none()))
            .ok_or_else(|| {
                pull_err(PullError::NoPlatform {
                    platform: format!("{os}/{arch}"),
                    digest: target_digest.clone(),
                })
            })?
            .clone();
        let labels = index
            .manifests
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{LABEL_GC_CONTENT}.m.{i}"), m.digest.clone()))
            .collect();
        blobs.push((target.clone(), target_bytes, labels));
        let (bytes, media_type) = fetch_manifest(&mut registry, name, &chosen.digest)
            .await
            .map_err(pull_err)?;
        verify("manifest", &chosen, &bytes).map_err(pull_err)?;
        let desc = Descriptor {
            media_type: if chosen.media_type.is_empty() {
                media_type
            } else {
                chosen.media_type.clone()
            },
            digest: chosen.digest.clone(),
            size: chosen.size,
            annotations: Default::default(),
            platform: None,
        };
        (desc, bytes)
    } else {
        (target.clone(), target_bytes)
    };
    let manifest: Manifest =
        parse(&manifest_bytes, "manifest", &manifest_desc.digest).map_err(pull_err)?;
    let mut labels = HashMap::from([(
        format!("{LABEL_GC_CONTENT}.config"),
        manifest.config.digest.clone(),
    )]);
    for (i, layer) in manifest.layers.iter().enumerate() {
        labels.insert(format!("{LABEL_GC_CONTENT}.l.{i}"), layer.digest.clone());
    }
    blobs.push((manifest_desc.clone(), manifest_bytes, labels));

    // The config: what the layers unpack to.
    let config_url = registry.blob_url(&manifest.config.digest);
    let response = fetch_blob(&mut registry, &manifest.config.digest)
        .await
        .map_err(pull_err)?;
    let config_bytes = registry::read_limited(response, MAX_METADATA, &config_url)
        .await
        .map_err(pull_err)?;
    verify("config", &manifest.config, &config_bytes).map_err(pull_err)?;
    let config: ImageConfig =
        parse(&config_bytes, "config", &manifest.config.digest).map_err(pull_err)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(pull_err(PullError::Invalid {
            what: "config".into(),
            digest: manifest.config.digest.clone(),
            reason: format!(
                "it lists {} layer diff ids for {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        }));
    }
    for d in diff_ids
        .iter()
        .chain(manifest.layers.iter().map(|l| &l.digest))
    {
        archive::check_digest(d).map_err(|reason| {
            pull_err(PullError::Invalid {
                what: "manifest".into(),
                digest: manifest_desc.digest.clone(),
                reason,
            })
        })?;
    }
    report(Progress {
        what: "config",
        digest: manifest.config.digest.clone(),
        done: manifest.config.size,
        total: manifest.config.size,
        present: false,
    });

    let snapshotter = cd.default_snapshotter().await?;
    let lease = create_lease(cd).await?;
    let outcome = async {
        let mut fetched = 0u64;
        let mut layers_fetched = 0;
        let mut layers_present = 0;
        for layer in &manifest.layers {
            if present(cd, &layer.digest, &lease).await? {
                layers_present += 1;
                report(Progress {
                    what: "layer",
                    digest: layer.digest.clone(),
                    done: layer.size,
                    total: layer.size,
                    present: true,
                });
                continue;
            }
            let response = fetch_blob(&mut registry, &layer.digest)
                .await
                .map_err(pull_err)?;
            let url = registry.blob_url(&layer.digest);
            write(
                cd,
                name,
                &lease,
                layer,
                Body::Http(response, url),
                HashMap::new(),
                &report,
            )
            .await?;
            fetched += layer.size;
            layers_fetched += 1;
        }
        ensure_blob(
            cd,
            name,
            &lease,
            &manifest.config,
            config_bytes,
            HashMap::new(),
        )
        .await?;
        // Manifest before index: a parent's labels may name children before they exist,
        // but writing children first keeps the store tidy if the pull stops half-way.
        for (desc, bytes, labels) in blobs.into_iter().rev() {
            ensure_blob(cd, name, &lease, &desc, bytes, labels).await?;
        }

        let chain_id = unpack(cd, name, &manifest, diff_ids, &snapshotter, &lease).await?;
        set_labels(
            cd,
            &manifest.config.digest,
            HashMap::from([(
                format!("{LABEL_GC_SNAPSHOT}.{snapshotter}"),
                chain_id.clone(),
            )]),
            &lease,
        )
        .await?;
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            set_labels(
                cd,
                &layer.digest,
                HashMap::from([(LABEL_UNCOMPRESSED.to_string(), diff_id.clone())]),
                &lease,
            )
            .await?;
        }
        record_image(cd, name, &target, &lease).await?;
        Ok::<_, Error>((chain_id, fetched, layers_fetched, layers_present))
    }
    .await;
    delete_lease(cd, &lease).await;
    let (chain_id, fetched, layers_fetched, layers_present) = outcome?;
    let size = target.size
        + if manifest_desc.digest != target.digest {
            manifest_desc.size
        } else {
            0
        }
        + manifest.config.size
        + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    tracing::info!(
        image = %name,
        digest = %target.digest,
        %snapshotter,
        fetched,
        layers_fetched,
        layers_present,
        "pulled image"
    );
    Ok(PulledImage {
        name: name.to_string(),
        target,
        manifest: manifest_desc,
        chain_id,
        snapshotter,
        size,
        fetched,
        layers_fetched,
        layers_present,
        duration: started.elapsed(),
    })
}

fn is_index(media_type: &str) -> bool {
    media_type == mt::OCI_INDEX || media_type == mt::DOCKER_MANIFEST_LIST
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    digest: &str,
) -> std::result::Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|e| PullError::Invalid {
        what: what.to_string(),
        digest: digest.to_string(),
        reason: format!("not a valid {what}: {e}"),
    })
}

/// Checks fetched bytes against the descriptor that named them.
fn verify(what: &str, desc: &Descriptor, bytes: &[u8]) -> std::result::Result<(), PullError> {
    let actual = sha256(bytes);
    if actual != desc.digest {
        return Err(PullError::Digest {
            what: what.to_string(),
            digest: desc.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(PullError::Size {
            what: what.to_string(),
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Fetches a manifest or index by tag or digest; returns its bytes and media type.
async fn fetch_manifest(
    registry: &mut registry::Repository,
    name: &str,
    reference: &str,
) -> std::result::Result<(Vec<u8>, String), PullError> {
    let url = registry.manifest_url(reference);
    let response = registry.get(&url, &MANIFEST_TYPES).await?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(PullError::NotFound {
            reference: name.to_string(),
        });
    }
    if !status.is_success() {
        let message = registry::error_message(response).await;
        return Err(PullError::Status {
            url,
            status: status.to_string(),
            message,
        });
    }
    let header_type = registry::content_type(&response);
    let bytes = registry::read_limited(response, MAX_METADATA, &url).await?;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = parse(&bytes, "manifest", reference)?;
    let media_type = if !probe.media_type.is_empty() {
        probe.media_type
    } else if MANIFEST_TYPES.contains(&header_type.as_str()) {
        header_type
    } else if probe.manifests.is_some() {
        mt::OCI_INDEX.to_string()
    } else {
        mt::OCI_MANIFEST.to_string()
    };
    if probe.schema_version != 2 || !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(PullError::Invalid {
            what: "manifest".into(),
            digest: reference.to_string(),
            reason: format!(
                "unsupported manifest (media type {media_type:?}, schema version {}): only OCI and Docker schema 2 images can be pulled",
                probe.schema_version
            ),
        });
    }
    Ok((bytes, media_type))
}

async fn fetch_blob(
    registry: &mut registry::Repository,
    digest: &str,
) -> std::result::Result<reqwest::Response, PullError> {
    let url = registry.blob_url(digest);
    let response = registry.get(&url, &[]).await?;
    let status = response.status();
    if !status.is_success() {
        let message = registry::error_message(response).await;
        return Err(PullError::Status {
            url,
            status: status.to_string(),
            message,
        });
    }
    Ok(response)
}

/// Whether content is in the store already.
async fn present(cd: &Containerd, digest: &str, lease: &str) -> Result<bool> {
    let info = cd
        .content()
        .info(cd.request(
            InfoRequest {
                digest: digest.to_string(),
            },
            Some(lease),
        ))
        .await;
    match info {
        Ok(_) => Ok(true),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(rpc_error(format!("content info {digest}"), status).into()),
    }
}

/// Makes sure a small blob is in the store with at least `labels`.
async fn ensure_blob(
    cd: &Containerd,
    image: &str,
    lease: &str,
    desc: &Descriptor,
    bytes: Vec<u8>,
    labels: HashMap<String, String>,
) -> Result<()> {
    if present(cd, &desc.digest, lease).await? {
        if !labels.is_empty() {
            set_labels(cd, &desc.digest, labels, lease).await?;
        }
        return Ok(());
    }
    write(cd, image, lease, desc, Body::Memory(bytes), labels, &|_| {}).await
}

/// Where a blob's bytes come from.
enum Body {
    Memory(Vec<u8>),
    /// A registry's response, and the URL it came from.
    Http(reqwest::Response, String),
}

/// Streams a blob into the content store: WRITE messages as the bytes arrive, while their
/// digest is computed; the COMMIT goes only when the size and digest are the descriptor's
/// (containerd checks them again). Anything else aborts the ingest.
async fn write(
    cd: &Containerd,
    image: &str,
    lease: &str,
    desc: &Descriptor,
    body: Body,
    labels: HashMap<String, String>,
    report: &(dyn Fn(Progress) + Sync),
) -> Result<()> {
    let digest = desc.digest.clone();
    let total = i64::try_from(desc.size).unwrap_or(i64::MAX);
    let reference = format!("{lease}-{digest}");
    let what = match &body {
        Body::Memory(_) => "metadata",
        Body::Http(..) => "layer",
    };
    let (tx, rx) = mpsc::channel::<WriteContentRequest>(4);
    let message = |action: WriteAction, offset: i64, data: Vec<u8>| WriteContentRequest {
        action: action as i32,
        r#ref: reference.clone(),
        total,
        expected: digest.clone(),
        offset,
        data,
        labels: if action == WriteAction::Commit {
            labels.clone()
        } else {
            HashMap::new()
        },
    };
    let producer = async {
        let tx = tx;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut pending = Vec::with_capacity(CHUNK);
        let flush = async |pending: &mut Vec<u8>, offset: &mut u64| {
            let data = std::mem::take(pending);
            let len = data.len() as u64;
            let start = i64::try_from(*offset).unwrap_or(i64::MAX);
            *offset += len;
            tx.send(message(WriteAction::Write, start, data))
                .await
                .is_ok()
        };
        match body {
            Body::Memory(bytes) => {
                hasher.update(&bytes);
                pending = bytes;
            }
            Body::Http(mut response, url) => loop {
                let chunk = response.chunk().await.map_err(|e| PullError::Read {
                    url: url.clone(),
                    detail: crate::containerd::error_chain(&e),
                })?;
                let Some(chunk) = chunk else { break };
                hasher.update(&chunk);
                pending.extend_from_slice(&chunk);
                if offset + pending.len() as u64 > desc.size {
                    return Err(PullError::Size {
                        what: what.into(),
                        digest: digest.clone(),
                        expected: desc.size,
                        actual: offset + pending.len() as u64,
                    });
                }
                if pending.len() >= CHUNK {
                    if !flush(&mut pending, &mut offset).await {
                        return Ok(());
                    }
                    report(Progress {
                        what: "layer",
                        digest: digest.clone(),
                        done: offset,
                        total: desc.size,
                        present: false,
                    });
                }
            },
        }
        if !pending.is_empty() && !flush(&mut pending, &mut offset).await {
            return Ok(());
        }
        if offset != desc.size {
            return Err(PullError::Size {
                what: what.into(),
                digest: digest.clone(),
                expected: desc.size,
                actual: offset,
            });
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != digest {
            return Err(PullError::Digest {
                what: what.into(),
                digest: digest.clone(),
                actual,
            });
        }
        let end = i64::try_from(offset).unwrap_or(i64::MAX);
        let _ = tx.send(message(WriteAction::Commit, end, Vec::new())).await;
        report(Progress {
            what: "layer",
            digest: digest.clone(),
            done: offset,
            total: desc.size,
            present: false,
        });
        Ok(())
    };
    let request = cd.request(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease));
    let consumer = async {
        let mut replies = cd.content().write(request).await?.into_inner();
        while replies.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    };
    let (produced, written) = tokio::join!(producer, consumer);
    let write_err = |reason: String| Error::Write {
        digest: desc.digest.clone(),
        reason,
    };
    if let Err(e) = produced {
        // Nothing was committed: drop what was written.
        let _ = cd
            .content()
            .abort(cd.request(
                AbortRequest {
                    r#ref: format!("{lease}-{}", desc.digest),
                },
                Some(lease),
            ))
            .await;
        return Err(Error::Pull {
            image: image.to_string(),
            reason: e,
        });
    }
    match written {
        // Another pull (or an import) got there first.
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(write_err(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_repository_and_tag() {
        assert_eq!(
            split_reference("docker.io/library/busybox:latest"),
            ("docker.io", "library/busybox", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/a/b:v1"),
            ("127.0.0.1:5000", "a/b", "v1")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            split_reference(&format!("127.0.0.1:5000/app@{digest}")),
            ("127.0.0.1:5000", "app", digest.as_str())
        );
        assert_eq!(
            split_reference(&format!("127.0.0.1:5000/app:v2@{digest}")),
            ("127.0.0.1:5000", "app", digest.as_str())
        );
    }
}
