//! Listing the images containerd holds in a namespace.

use containerd_client::services::v1::{ListImagesRequest, ReadContentRequest};
use containerd_client::tonic::Code;

use super::archive::{self, Descriptor, Index, Manifest};
use super::{Result, media_types as mt};
use crate::containerd::{Containerd, RpcExt as _, rpc_error};

/// Largest manifest or index read back from the content store.
const MAX_METADATA: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    pub name: String,
    /// Digest of the record's target (a manifest or an index).
    pub digest: String,
    pub media_type: String,
    /// Bytes of content for this machine's platform: the target, the manifest, its config
    /// and its (compressed) layers, as `ctr images ls` counts them.
    pub size: u64,
}

/// The images in the client's namespace, by name.
pub async fn list(cd: &Containerd) -> Result<Vec<ImageSummary>> {
    let reply = cd
        .images()
        .list(cd.request(ListImagesRequest { filters: vec![] }, None))
        .await
        .rpc("list images")?;
    let mut out = Vec::new();
    for image in reply.images {
        let Some(target) = image.target else {
            continue;
        };
        let desc = Descriptor {
            media_type: target.media_type,
            digest: target.digest,
            size: u64::try_from(target.size).unwrap_or(0),
            annotations: Default::default(),
            platform: None,
        };
        let size = content_size(cd, &desc).await?;
        out.push(ImageSummary {
            name: image.name,
            digest: desc.digest,
            media_type: desc.media_type,
            size,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Size of a target and what it references for this platform. Content missing from the
/// store counts only its descriptor's size.
async fn content_size(cd: &Containerd, desc: &Descriptor) -> Result<u64> {
    let mut total = desc.size;
    match desc.media_type.as_str() {
        mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => {
            let Some(index) = read_json::<Index>(cd, &desc.digest).await? else {
                return Ok(total);
            };
            let (os, arch) = archive::host_platform();
            let child = index.manifests.iter().find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.os == os && p.architecture == arch)
            });
            if let Some(child) = child {
                total += Box::pin(content_size(cd, child)).await?;
            }
        }
        mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => {
            let Some(manifest) = read_json::<Manifest>(cd, &desc.digest).await? else {
                return Ok(total);
            };
            total += manifest.config.size;
            total += manifest.layers.iter().map(|l| l.size).sum::<u64>();
        }
        _ => {}
    }
    Ok(total)
}

/// Reads and parses a small blob; None when it is absent or not the JSON expected.
async fn read_json<T: serde::de::DeserializeOwned>(
    cd: &Containerd,
    digest: &str,
) -> Result<Option<T>> {
    let stream = cd
        .content()
        .read(cd.request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            None,
        ))
        .await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(status) if status.code() == Code::NotFound => return Ok(None),
        Err(status) => return Err(rpc_error(format!("read content {digest}"), status).into()),
    };
    let mut data = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                data.extend_from_slice(&chunk.data);
                if data.len() > MAX_METADATA {
                    return Ok(None);
                }
            }
            Ok(None) => break,
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(rpc_error(format!("read content {digest}"), status).into()),
        }
    }
    Ok(serde_json::from_slice(&data).ok())
}
