//! Importing an image archive into containerd, the way `ctr images import` does: blobs into
//! the content store (with the garbage-collection labels that tie them together), layers
//! unpacked into snapshots with the diff service, then the image records.
//!
//! Everything happens under a lease, so that containerd's garbage collector cannot take
//! content or snapshots before the image record that references them exists. The archive is
//! checked in full before anything is written, and image records are written last, so a bad
//! archive never leaves an image behind.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest, Image, Info, InfoRequest, UpdateImageRequest,
    UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::{self, Code};
use containerd_client::types;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::archive::{self, Archive, Blob, Descriptor, ImagePlan, Manifest, Source};
use super::{Error, Result};
use crate::containerd::{Containerd, RpcExt as _, error_chain, rpc_error};

/// Bytes per content-write message (gRPC's default message limit is 4 MiB).
const CHUNK: usize = 1 << 20;
/// How long containerd keeps an import's lease if the importer dies before deleting it.
const LEASE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(3600);

const LABEL_GC_EXPIRE: &str = "containerd.io/gc.expire";
const LABEL_GC_CONTENT: &str = "containerd.io/gc.ref.content";
const LABEL_GC_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
const LABEL_UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// One image an import recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedImage {
    /// The normalised names it was recorded under.
    pub names: Vec<String>,
    /// What the records point at (a manifest, or an index of manifests).
    pub target: Descriptor,
    /// The manifest unpacked for this machine's platform.
    pub manifest: Descriptor,
    /// The chain id of its top layer: the snapshot a container's rootfs is prepared from.
    pub chain_id: String,
    /// The snapshotter the layers were unpacked into.
    pub snapshotter: String,
}

/// Imports every image of an OCI image-layout or `docker save` archive into containerd and
/// unpacks it with the default snapshotter (overlayfs, or `native` without it). Importing the
/// same archive again is harmless: present content and snapshots are kept, records updated.
pub async fn import(cd: &Containerd, path: &Path) -> Result<Vec<ImportedImage>> {
    let owned = path.to_path_buf();
    let (archive, plans) = tokio::task::spawn_blocking(move || archive::plan(&owned))
        .await
        .map_err(|e| Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
    let archive = Arc::new(archive);
    let snapshotter = cd.default_snapshotter().await?;
    let lease = create_lease(cd).await?;
    let mut imported = Vec::new();
    let mut result = Ok(());
    for plan in plans {
        match import_one(cd, &archive, plan, &snapshotter, &lease).await {
            Ok(image) => imported.push(image),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // The image records now hold what the lease held; without them, the lease's end lets
    // containerd collect the partial import.
    delete_lease(cd, &lease).await;
    result.map(|()| imported)
}

/// Ends a lease (a failure is only logged: the lease expires on its own).
pub(super) async fn delete_lease(cd: &Containerd, lease: &str) {
    let deleted = cd
        .leases()
        .delete(cd.request(
            DeleteLeaseRequest {
                id: lease.to_string(),
                sync: false,
            },
            None,
        ))
        .await;
    if let Err(status) = deleted {
        tracing::warn!(lease = %lease, "cannot delete import lease: {}", status.message());
    }
}

pub(super) async fn create_lease(cd: &Containerd) -> Result<String> {
    let expiry = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(LEASE_EXPIRY).unwrap_or_default())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let id = format!("keelson-import-{}", uuid::Uuid::new_v4().simple());
    let reply = cd
        .leases()
        .create(cd.request(
            CreateLeaseRequest {
                id: id.clone(),
                labels: HashMap::from([(LABEL_GC_EXPIRE.to_string(), expiry.to_string())]),
            },
            None,
        ))
        .await
        .rpc("create lease")?;
    Ok(reply.lease.map_or(id, |l| l.id))
}

async fn import_one(
    cd: &Containerd,
    archive: &Arc<Archive>,
    plan: ImagePlan,
    snapshotter: &str,
    lease: &str,
) -> Result<ImportedImage> {
    let image = plan.names.join(", ");
    let diff_ids = &plan.config.rootfs.diff_ids;
    if diff_ids.len() != plan.manifest.layers.len() {
        return Err(Error::Invalid {
            path: archive.path().to_path_buf(),
            reason: format!(
                "{image}: the config lists {} layer diff ids for {} layers",
                diff_ids.len(),
                plan.manifest.layers.len()
            ),
        });
    }
    if let Some(reason) = diff_ids.iter().find_map(|d| archive::check_digest(d).err()) {
        return Err(Error::Invalid {
            path: archive.path().to_path_buf(),
            reason: format!("{image}: the config's diff ids: {reason}"),
        });
    }
    for blob in &plan.blobs {
        let mut labels = HashMap::new();
        for (key, digest) in plan.references.get(&blob.desc.digest).into_iter().flatten() {
            labels.insert(format!("{LABEL_GC_CONTENT}.{key}"), digest.clone());
        }
        ensure_blob(cd, archive, blob, labels, lease).await?;
    }

    let chain_id = unpack(
        cd,
        &image,
        &plan.manifest,
        &plan.config.rootfs.diff_ids,
        snapshotter,
        lease,
    )
    .await?;
    // Tie the snapshots to the config, as containerd's own unpacker does: the image keeps the
    // config, the config keeps the snapshot chain.
    set_labels(
        cd,
        &plan.manifest.config.digest,
        HashMap::from([(
            format!("{LABEL_GC_SNAPSHOT}.{snapshotter}"),
            chain_id.clone(),
        )]),
        lease,
    )
    .await?;
    for (layer, diff_id) in plan.manifest.layers.iter().zip(diff_ids) {
        set_labels(
            cd,
            &layer.digest,
            HashMap::from([(LABEL_UNCOMPRESSED.to_string(), diff_id.clone())]),
            lease,
        )
        .await?;
    }

    for name in &plan.names {
        record_image(cd, name, &plan.target, lease).await?;
        tracing::info!(
            image = %name,
            digest = %plan.target.digest,
            %snapshotter,
            "imported image"
        );
    }
    Ok(ImportedImage {
        names: plan.names.clone(),
        target: plan.target.clone(),
        manifest: plan.manifest_desc.clone(),
        chain_id,
        snapshotter: snapshotter.to_string(),
    })
}

/// Makes sure a blob is in the content store with at least `labels`.
async fn ensure_blob(
    cd: &Containerd,
    archive: &Arc<Archive>,
    blob: &Blob,
    labels: HashMap<String, String>,
    lease: &str,
) -> Result<()> {
    let digest = &blob.desc.digest;
    let info = cd
        .content()
        .info(cd.request(
            InfoRequest {
                digest: digest.clone(),
            },
            Some(lease),
        ))
        .await;
    match info {
        Ok(reply) => {
            let present = reply
                .into_inner()
                .info
                .map(|i| i.labels)
                .unwrap_or_default();
            let missing: HashMap<String, String> = labels
                .into_iter()
                .filter(|(k, v)| present.get(k) != Some(v))
                .collect();
            if !missing.is_empty() {
                set_labels(cd, digest, missing, lease).await?;
            }
            Ok(())
        }
        Err(status) if status.code() == Code::NotFound => {
            write_blob(cd, archive, blob, labels, lease).await
        }
        Err(status) => Err(rpc_error(format!("content info {digest}"), status).into()),
    }
}

pub(super) async fn set_labels(
    cd: &Containerd,
    digest: &str,
    labels: HashMap<String, String>,
    lease: &str,
) -> Result<()> {
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    cd.content()
        .update(cd.request(
            UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            },
            Some(lease),
        ))
        .await
        .rpc(format!("content update {digest}"))?;
    Ok(())
}

/// Streams a blob into the content store: WRITE messages at increasing offsets, then a COMMIT
/// that makes containerd check the size and digest.
async fn write_blob(
    cd: &Containerd,
    archive: &Arc<Archive>,
    blob: &Blob,
    labels: HashMap<String, String>,
    lease: &str,
) -> Result<()> {
    let digest = blob.desc.digest.clone();
    let total = i64::try_from(blob.desc.size).unwrap_or(i64::MAX);
    // The ref names the ingest; a unique one per lease never meets another writer's lock.
    let reference = format!("{lease}-{digest}");
    let (tx, rx) = mpsc::channel::<WriteContentRequest>(4);
    let producer = {
        let archive = Arc::clone(archive);
        let source = blob.source.clone();
        let digest = digest.clone();
        let reference = reference.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut reader: Box<dyn std::io::Read + Send> = match source {
                Source::Entry(name) => {
                    Box::new(archive.open_member(&name).map_err(std::io::Error::other)?.0)
                }
                Source::Memory(bytes) => Box::new(std::io::Cursor::new(bytes.to_vec())),
            };
            let mut offset = 0i64;
            loop {
                let mut data = vec![0; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match reader.read(&mut data[filled..])? {
                        0 => break,
                        n => filled += n,
                    }
                }
                data.truncate(filled);
                let last = filled < CHUNK;
                let message = WriteContentRequest {
                    action: if last {
                        WriteAction::Commit
                    } else {
                        WriteAction::Write
                    } as i32,
                    r#ref: reference.clone(),
                    total,
                    expected: digest.clone(),
                    offset,
                    data,
                    labels: if last { labels.clone() } else { HashMap::new() },
                };
                offset += i64::try_from(filled).unwrap_or(0);
                if tx.blocking_send(message).is_err() || last {
                    return Ok(());
                }
            }
        })
    };
    let write_err = |reason: String| Error::Write {
        digest: digest.clone(),
        reason,
    };
    let request = cd.request(tokio_stream::wrappers::ReceiverStream::new(rx), Some(lease));
    let outcome: std::result::Result<(), tonic::Status> = async {
        let mut replies = cd.content().write(request).await?.into_inner();
        while replies.message().await?.is_some() {}
        Ok(())
    }
    .await;
    let produced = producer
        .await
        .map_err(|e| write_err(e.to_string()))
        .and_then(|r| {
            r.map_err(|e| write_err(format!("reading the archive: {}", error_chain(&e))))
        });
    match outcome {
        // Another import (or an earlier one) got there first.
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) => Err(write_err(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
        Ok(()) => produced,
    }
}

/// Applies each layer on top of its parent's snapshot and commits it under its chain id;
/// layers already unpacked are skipped. Returns the top layer's chain id.
pub(super) async fn unpack(
    cd: &Containerd,
    image: &str,
    manifest: &Manifest,
    diff_ids: &[String],
    snapshotter: &str,
    lease: &str,
) -> Result<String> {
    let mut parent = String::new();
    for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
        let unpack_err = |reason: String| Error::Unpack {
            image: image.to_string(),
            layer: layer.digest.clone(),
            snapshotter: snapshotter.to_string(),
            reason,
        };
        let chain_id = if parent.is_empty() {
            diff_id.clone()
        } else {
            format!("sha256:{:x}", Sha256::digest(format!("{parent} {diff_id}")))
        };
        let stat = cd
            .snapshots()
            .stat(cd.request(
                StatSnapshotRequest {
                    snapshotter: snapshotter.to_string(),
                    key: chain_id.clone(),
                },
                Some(lease),
            ))
            .await;
        match stat {
            Ok(_) => {
                parent = chain_id;
                continue;
            }
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) => {
                return Err(rpc_error(format!("snapshot stat {chain_id}"), status).into());
            }
        }

        let key = format!("extract-{}-{chain_id}", uuid::Uuid::new_v4().simple());
        let mounts = cd
            .snapshots()
            .prepare(cd.request(
                PrepareSnapshotRequest {
                    snapshotter: snapshotter.to_string(),
                    key: key.clone(),
                    parent: parent.clone(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await
            .map_err(|s| unpack_err(format!("prepare snapshot: {:?}: {}", s.code(), s.message())))?
            .into_inner()
            .mounts;
        let applied = cd
            .diff()
            .apply(cd.request(
                ApplyRequest {
                    diff: Some(types::Descriptor {
                        media_type: layer.media_type.clone(),
                        digest: layer.digest.clone(),
                        size: i64::try_from(layer.size).unwrap_or(i64::MAX),
                        annotations: HashMap::new(),
                    }),
                    mounts,
                    ..Default::default()
                },
                Some(lease),
            ))
            .await
            .map(|r| r.into_inner().applied.map(|d| d.digest).unwrap_or_default());
        let committed = match applied {
            Err(s) => Err(unpack_err(format!(
                "apply layer: {:?}: {}",
                s.code(),
                s.message()
            ))),
            Ok(got) if &got != diff_id => Err(unpack_err(format!(
                "the layer unpacks to {got}, but the image config says {diff_id}"
            ))),
            Ok(_) => {
                let commit = cd
                    .snapshots()
                    .commit(cd.request(
                        CommitSnapshotRequest {
                            snapshotter: snapshotter.to_string(),
                            name: chain_id.clone(),
                            key: key.clone(),
                            labels: HashMap::new(),
                        },
                        Some(lease),
                    ))
                    .await;
                match commit {
                    Ok(_) => Ok(true),
                    // Unpacked meanwhile by someone else: theirs is as good as ours.
                    Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                    Err(s) => Err(unpack_err(format!(
                        "commit snapshot: {:?}: {}",
                        s.code(),
                        s.message()
                    ))),
                }
            }
        };
        if !matches!(committed, Ok(true)) {
            let _ = cd
                .snapshots()
                .remove(cd.request(
                    RemoveSnapshotRequest {
                        snapshotter: snapshotter.to_string(),
                        key: key.clone(),
                    },
                    Some(lease),
                ))
                .await;
        }
        committed?;
        tracing::debug!(%image, layer = %layer.digest, %chain_id, %snapshotter, "unpacked layer");
        parent = chain_id;
    }
    Ok(parent)
}

/// Creates the image record, or points an existing one at the new target.
pub(super) async fn record_image(
    cd: &Containerd,
    name: &str,
    target: &Descriptor,
    lease: &str,
) -> Result<()> {
    let image = Image {
        name: name.to_string(),
        target: Some(types::Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: i64::try_from(target.size).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        }),
        ..Default::default()
    };
    let created = cd
        .images()
        .create(cd.request(
            CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            },
            Some(lease),
        ))
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => {
            cd.images()
                .update(cd.request(
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".to_string()],
                        }),
                        ..Default::default()
                    },
                    Some(lease),
                ))
                .await
                .rpc(format!("update image {name}"))?;
            Ok(())
        }
        Err(status) => Err(rpc_error(format!("create image {name}"), status).into()),
    }
}
