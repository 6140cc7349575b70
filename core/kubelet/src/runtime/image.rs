//! What a container needs from its image: the config (entrypoint, cmd, env, working dir,
//! user) and the chain id of its top layer, read back from containerd's image record and
//! content store.

use containerd_client::services::v1::{GetImageRequest, ReadContentRequest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::containerd::{Containerd, RpcExt as _, rpc_error};
use crate::images;

/// Largest manifest, index or config read back from the content store.
const MAX_METADATA: usize = 16 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The snapshot a container's rootfs is prepared from.
    pub chain_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Containerd(#[from] crate::containerd::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct IndexOrManifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Desc>,
    config: Option<Desc>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigBody {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ConfigBody>,
    rootfs: RootFs,
}

/// The image's config for this machine's platform; the image must already be in containerd
/// (imported and unpacked).
pub async fn resolve(cd: &Containerd, reference: &str) -> Result<ImageConfig, ImageError> {
    let name =
        images::normalize_reference(reference).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let reply = cd
        .images()
        .get(cd.request(GetImageRequest { name: name.clone() }, None))
        .await;
    let image = match reply {
        Ok(r) => r.into_inner().image,
        Err(status) if status.code() == containerd_client::tonic::Code::NotFound => {
            return Err(ImageError::Invalid(format!(
                "image {name} is not present (import it first)"
            )));
        }
        Err(status) => return Err(rpc_error(format!("get image {name}"), status).into()),
    };
    let target = image
        .and_then(|i| i.target)
        .ok_or_else(|| ImageError::Invalid(format!("image record {name} has no target")))?;
    let mut digest = target.digest;
    // An index leads to the manifest for this platform; at most one level of nesting.
    for _ in 0..2 {
        let doc: IndexOrManifest = read_json(cd, &digest).await?;
        if let Some(config) = doc.config {
            let file: ConfigFile = read_json(cd, &config.digest).await?;
            let body = file.config.unwrap_or_default();
            return Ok(ImageConfig {
                entrypoint: body.entrypoint.unwrap_or_default(),
                cmd: body.cmd.unwrap_or_default(),
                env: body.env.unwrap_or_default(),
                working_dir: body.working_dir.unwrap_or_default(),
                user: body.user.unwrap_or_default(),
                chain_id: chain_id(&file.rootfs.diff_ids)
                    .ok_or_else(|| ImageError::Invalid(format!("image {name} has no layers")))?,
            });
        }
        let (os, arch) = host_platform();
        let child = doc
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_none_or(|p| p.os == os && p.architecture == arch)
            })
            .ok_or_else(|| {
                ImageError::Invalid(format!(
                    "image {name} ({}) has no manifest for {os}/{arch}",
                    doc.media_type
                ))
            })?;
        tracing::trace!(media_type = %child.media_type, digest = %child.digest, "image manifest");
        digest = child.digest.clone();
    }
    Err(ImageError::Invalid(format!(
        "image {name}: indexes nested too deep"
    )))
}

/// The chain id of the top layer: each layer's id hashed with its parent's.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut iter = diff_ids.iter();
    let mut chain = iter.next()?.clone();
    for diff_id in iter {
        chain = format!("sha256:{:x}", Sha256::digest(format!("{chain} {diff_id}")));
    }
    Some(chain)
}

fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

async fn read_json<T: serde::de::DeserializeOwned>(
    cd: &Containerd,
    digest: &str,
) -> Result<T, ImageError> {
    let op = || format!("read content {digest}");
    let mut stream = cd
        .content()
        .read(cd.request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            None,
        ))
        .await
        .rpc(op())?;
    let mut data = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(|s| rpc_error(op(), s))? {
        data.extend_from_slice(&chunk.data);
        if data.len() > MAX_METADATA {
            return Err(ImageError::Invalid(format!(
                "blob {digest} is larger than {MAX_METADATA} bytes"
            )));
        }
    }
    serde_json::from_slice(&data)
        .map_err(|e| ImageError::Invalid(format!("blob {digest} is not the JSON expected: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids() {
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(&["sha256:a".into()]).as_deref(), Some("sha256:a"));
        let two = chain_id(&["sha256:a".into(), "sha256:b".into()]).unwrap_or_default();
        assert_eq!(
            two,
            format!("sha256:{:x}", Sha256::digest("sha256:a sha256:b"))
        );
    }
}
