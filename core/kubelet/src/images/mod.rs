//! Images in containerd: import from OCI image-layout and `docker save` archives (content,
//! image records, unpacked snapshots), pull from OCI distribution registries, and list them.

mod archive;
mod import;
mod list;
mod pull;
mod reference;

use std::path::PathBuf;
use std::sync::Arc;

use crate::containerd;

pub use archive::{Descriptor, Platform};
pub use import::{ImportedImage, import};
pub use list::{ImageSummary, list};
pub use pull::{
    ContainerImages, Credential, Ensure, Notice, PULL_POLL, Progress, ProgressFn, PullConfig,
    PullError, PullOptions, PullPolicy, PulledImage, back_off, credential_for,
    credentials_from_secret, go_duration, pull,
};
pub use reference::normalize as normalize_reference;

/// Media types of image content.
pub mod media_types {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Containerd(#[from] containerd::Error),
    #[error("cannot read image archive {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a usable image archive: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("image archive {}: blob {digest}: {reason}", .path.display())]
    Blob {
        path: PathBuf,
        digest: String,
        reason: String,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("cannot write blob {digest} to containerd's content store: {reason}")]
    Write { digest: String, reason: String },
    #[error("cannot unpack layer {layer} of {image} with snapshotter {snapshotter}: {reason}")]
    Unpack {
        image: String,
        layer: String,
        snapshotter: String,
        reason: String,
    },
    /// A pull failed on the registry's side (containerd's wording, which `ErrImagePull`
    /// messages show).
    #[error("failed to pull and unpack image {image:?}: {reason}")]
    Pull { image: String, reason: PullError },
    /// The outcome of a pull shared by concurrent callers.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// The registry-side reason of a failed pull, if that is what failed.
    pub fn pull_error(&self) -> Option<&PullError> {
        match self {
            Error::Pull { reason, .. } => Some(reason),
            Error::Shared(inner) => inner.pull_error(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
