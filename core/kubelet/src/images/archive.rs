//! Reading image archives: an OCI image layout (`oci-layout`, `index.json`, `blobs/`) or a
//! `docker save` archive (`manifest.json` with RepoTags, a config file and layer tars), both as
//! one uncompressed tar. The archive is indexed once; blobs are then read straight from their
//! offsets, never extracted to disk.
//!
//! Everything here is blocking file I/O: the importer runs it on tokio's blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Error, Result, media_types as mt, reference};

/// Largest index, manifest or config read into memory.
const MAX_METADATA: u64 = 16 << 20;

/// An OCI content descriptor as it appears in manifests and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One image of `docker save`'s manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Where a blob's bytes come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A file in the archive.
    Entry(String),
    /// Made by the importer (the manifest of a docker archive).
    Memory(Arc<Vec<u8>>),
}

#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub desc: Descriptor,
    pub source: Source,
}

/// One image of the archive, checked and ready to import.
#[derive(Clone, Debug)]
pub(crate) struct ImagePlan {
    /// Normalised references to record the image under.
    pub names: Vec<String>,
    /// What the image records point at: a manifest, or an index of manifests.
    pub target: Descriptor,
    /// Every blob to write, children before the manifests and indexes that name them.
    pub blobs: Vec<Blob>,
    /// Manifests and indexes among the blobs, with the digests they reference (for
    /// containerd's garbage-collection labels).
    pub references: HashMap<String, Vec<(String, String)>>,
    /// The manifest for this machine's platform, which gets unpacked.
    pub manifest: Manifest,
    pub manifest_desc: Descriptor,
    pub config: ImageConfig,
}

/// A tar archive indexed by member name.
pub(crate) struct Archive {
    path: PathBuf,
    entries: HashMap<String, Member>,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    offset: u64,
    size: u64,
}

impl Archive {
    pub fn open(path: &Path) -> Result<Self> {
        let read_err = |source| Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        let mut tar = tar::Archive::new(file);
        let mut entries = HashMap::new();
        let mut links = Vec::new();
        let not_tar = |e: std::io::Error| Error::Invalid {
            path: path.to_path_buf(),
            reason: format!("not a tar archive ({e})"),
        };
        for (i, entry) in tar.entries_with_seek().map_err(read_err)?.enumerate() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if i == 0 => return Err(not_tar(e)),
                Err(e) => return Err(read_err(e)),
            };
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let member = Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                };
                if member.offset.saturating_add(member.size) > len {
                    return Err(Error::Invalid {
                        path: path.to_path_buf(),
                        reason: format!("the archive is truncated inside {name}"),
                    });
                }
                entries.insert(name, member);
            } else if (kind.is_symlink() || kind.is_hard_link())
                && let Some(target) = entry.link_name_bytes()
            {
                let target = String::from_utf8_lossy(&target).into_owned();
                links.push((name, target, kind.is_symlink()));
            }
        }
        // docker save links layers shared between images; resolve them (one level is all it
        // makes).
        for (name, target, symbolic) in links {
            let resolved = if symbolic {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                clean(&format!("{dir}/{target}"))
            } else {
                clean(&target)
            };
            if let Some(member) = entries.get(&resolved).copied() {
                entries.insert(name, member);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn read_err(&self, source: std::io::Error) -> Error {
        Error::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// A reader over one member's bytes.
    pub fn open_member(&self, name: &str) -> Result<(std::io::Take<File>, u64)> {
        let member = self
            .entries
            .get(name)
            .copied()
            .ok_or_else(|| self.invalid(format!("{name} is missing")))?;
        let mut file = File::open(&self.path).map_err(|e| self.read_err(e))?;
        file.seek(SeekFrom::Start(member.offset))
            .map_err(|e| self.read_err(e))?;
        Ok((file.take(member.size), member.size))
    }

    fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        let (mut reader, size) = self.open_member(name)?;
        if size > MAX_METADATA {
            return Err(self.invalid(format!("{name} is too large ({size} bytes)")));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .read_to_end(&mut data)
            .map_err(|e| self.read_err(e))?;
        Ok(data)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let data = self.read_member(name)?;
        serde_json::from_slice(&data).map_err(|e| self.invalid(format!("{name}: {e}")))
    }

    /// sha256 digest and size of a member.
    fn hash_member(&self, name: &str) -> Result<(String, u64)> {
        let (mut reader, size) = self.open_member(name)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut reader, &mut hasher).map_err(|e| self.read_err(e))?;
        Ok((format!("sha256:{:x}", hasher.finalize()), size))
    }

    /// The first bytes of a member (to tell gzip from plain tar).
    fn magic(&self, name: &str) -> Result<Vec<u8>> {
        let (reader, _) = self.open_member(name)?;
        let mut head = Vec::with_capacity(4);
        reader
            .take(4)
            .read_to_end(&mut head)
            .map_err(|e| self.read_err(e))?;
        Ok(head)
    }

    /// Checks that a blob is in the archive with the size and digest its descriptor gives.
    fn verify(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let blob_err = |reason: String| Error::Blob {
            path: self.path.clone(),
            digest: desc.digest.clone(),
            reason,
        };
        let member = self
            .entries
            .get(name)
            .ok_or_else(|| blob_err(format!("{name} is missing from the archive")))?;
        if member.size != desc.size {
            return Err(blob_err(format!(
                "{name} has {} bytes where its descriptor says {}",
                member.size, desc.size
            )));
        }
        let (digest, _) = self.hash_member(name)?;
        if digest != desc.digest {
            return Err(blob_err(format!(
                "{name} does not match its digest: its content hashes to {digest}"
            )));
        }
        Ok(())
    }
}

/// Removes `./` and `..` segments and leading slashes from a member path.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Checks a digest's form: `sha256:` and 64 lowercase hex digits.
pub(crate) fn check_digest(digest: &str) -> std::result::Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        Some(("sha256", _)) => Err(format!("malformed digest {digest:?}")),
        Some((alg, _)) => Err(format!("unsupported digest algorithm {alg:?}")),
        None => Err(format!("malformed digest {digest:?}")),
    }
}

/// The platform this process runs on, in OCI terms.
pub(crate) fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    };
    ("linux", arch)
}

/// Reads an archive and checks every blob the images in it need.
pub(crate) fn plan(path: &Path) -> Result<(Archive, Vec<ImagePlan>)> {
    let archive = Archive::open(path)?;
    let docker_tags = if archive.has("manifest.json") {
        Some(archive.read_json::<Vec<DockerEntry>>("manifest.json")?)
    } else {
        None
    };
    let plans = if archive.has("index.json") {
        plan_oci(&archive, docker_tags.as_deref())?
    } else if let Some(entries) = docker_tags {
        plan_docker(&archive, &entries)?
    } else {
        return Err(archive.invalid(
            "it has neither index.json (an OCI image layout) nor manifest.json (docker save)",
        ));
    };
    if plans.is_empty() {
        return Err(archive.invalid("it holds no images"));
    }
    Ok((archive, plans))
}

fn blob_name(archive: &Archive, digest: &str) -> Result<String> {
    check_digest(digest).map_err(|reason| archive.invalid(reason))?;
    Ok(format!("blobs/{}", digest.replacen(':', "/", 1)))
}

/// Names of an OCI index entry: containerd's full-name annotation, else the OCI ref name.
fn oci_names(desc: &Descriptor) -> Vec<&str> {
    desc.annotations
        .get("io.containerd.image.name")
        .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"))
        .map(String::as_str)
        .into_iter()
        .collect()
}

fn normalize_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let n = reference::normalize(name)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn plan_oci(archive: &Archive, docker: Option<&[DockerEntry]>) -> Result<Vec<ImagePlan>> {
    let index: Index = archive.read_json("index.json")?;
    let mut plans = Vec::new();
    for (i, desc) in index.manifests.iter().enumerate() {
        let mut names = normalize_all(oci_names(desc))?;
        if names.is_empty() {
            // docker save (25 and later) writes an OCI layout beside manifest.json; its tags
            // for this image are there.
            if let Some(entry) = docker.and_then(|d| d.get(i)) {
                names = normalize_all(entry.repo_tags.iter().flatten().map(String::as_str))?;
            }
        }
        if names.is_empty() {
            return Err(archive.invalid(format!(
                "image {} in index.json has no name (no org.opencontainers.image.ref.name annotation)",
                desc.digest
            )));
        }
        let mut walk = Walk::default();
        let chosen = walk.descend(archive, desc, None)?;
        let Some((manifest_desc, manifest, config)) = chosen else {
            let (os, arch) = host_platform();
            return Err(archive.invalid(format!(
                "image {} has no manifest for {os}/{arch}",
                names.join(", ")
            )));
        };
        plans.push(ImagePlan {
            names,
            target: strip(desc),
            blobs: walk.blobs,
            references: walk.references,
            manifest,
            manifest_desc,
            config,
        });
    }
    Ok(plans)
}

/// A descriptor without the annotations and platform of the index that named it.
fn strip(desc: &Descriptor) -> Descriptor {
    Descriptor {
        annotations: BTreeMap::new(),
        platform: None,
        ..desc.clone()
    }
}

#[derive(Default)]
struct Walk {
    blobs: Vec<Blob>,
    references: HashMap<String, Vec<(String, String)>>,
}

impl Walk {
    fn add(&mut self, archive: &Archive, desc: &Descriptor) -> Result<()> {
        if self.blobs.iter().any(|b| b.desc.digest == desc.digest) {
            return Ok(());
        }
        let name = blob_name(archive, &desc.digest)?;
        archive.verify(&name, desc)?;
        self.blobs.push(Blob {
            desc: strip(desc),
            source: Source::Entry(name),
        });
        Ok(())
    }

    /// Adds a manifest or index and everything under it; returns the manifest for this
    /// platform. `platform` is the platform an index gave this descriptor.
    fn descend(
        &mut self,
        archive: &Archive,
        desc: &Descriptor,
        platform: Option<&Platform>,
    ) -> Result<Option<(Descriptor, Manifest, ImageConfig)>> {
        let name = blob_name(archive, &desc.digest)?;
        match desc.media_type.as_str() {
            mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => {
                archive.verify(&name, desc)?;
                let index: Index = archive.read_json(&name)?;
                let (os, arch) = host_platform();
                let mut chosen = None;
                let mut refs = Vec::new();
                for (i, child) in index.manifests.iter().enumerate() {
                    let matches = child
                        .platform
                        .as_ref()
                        .is_none_or(|p| p.os == os && p.architecture == arch);
                    let present = archive.has(&blob_name(archive, &child.digest)?);
                    // Multi-platform archives often hold only some platforms' blobs: import
                    // what is there, and insist only on the manifest this machine runs.
                    let needed = matches && chosen.is_none();
                    if !present && !needed {
                        continue;
                    }
                    let found = self.descend(archive, child, child.platform.as_ref())?;
                    refs.push((format!("m.{i}"), child.digest.clone()));
                    if chosen.is_none() && matches {
                        chosen = found;
                    }
                }
                self.references.insert(desc.digest.clone(), refs);
                self.add(archive, desc)?;
                Ok(chosen)
            }
            mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => {
                archive.verify(&name, desc)?;
                let manifest: Manifest = archive.read_json(&name)?;
                self.add(archive, &manifest.config)?;
                let config: ImageConfig =
                    archive.read_json(&blob_name(archive, &manifest.config.digest)?)?;
                let mut refs = vec![("config".to_string(), manifest.config.digest.clone())];
                for (i, layer) in manifest.layers.iter().enumerate() {
                    self.add(archive, layer)?;
                    refs.push((format!("l.{i}"), layer.digest.clone()));
                }
                self.references.insert(desc.digest.clone(), refs);
                self.add(archive, desc)?;
                let (os, arch) = host_platform();
                // An index already matched this manifest's platform; a lone manifest has
                // only its config to say where it runs.
                let runs_here = platform.is_some()
                    || ((config.os.is_empty() || config.os == os)
                        && (config.architecture.is_empty() || config.architecture == arch));
                Ok(runs_here.then(|| (strip(desc), manifest, config)))
            }
            other => Err(archive.invalid(format!(
                "{} has media type {other:?}, which is neither an image manifest nor an index",
                desc.digest
            ))),
        }
    }
}

/// Turns `docker save`'s manifest.json into OCI-style images: each config and layer is a
/// blob under the sha256 of its bytes, and a Docker schema 2 manifest is made to name them.
fn plan_docker(archive: &Archive, entries: &[DockerEntry]) -> Result<Vec<ImagePlan>> {
    let mut plans = Vec::new();
    for entry in entries {
        let names = normalize_all(entry.repo_tags.iter().flatten().map(String::as_str))?;
        if names.is_empty() {
            return Err(archive.invalid(format!(
                "image {} in manifest.json has no RepoTags",
                entry.config
            )));
        }
        let config_name = clean(&entry.config);
        let (digest, size) = archive.hash_member(&config_name)?;
        let config_desc = Descriptor {
            media_type: mt::DOCKER_CONFIG.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let config: ImageConfig = archive.read_json(&config_name)?;
        let mut blobs = vec![Blob {
            desc: config_desc.clone(),
            source: Source::Entry(config_name),
        }];
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let layer_name = clean(layer);
            let (digest, size) = archive.hash_member(&layer_name)?;
            let media_type = match archive.magic(&layer_name)?.as_slice() {
                [0x1f, 0x8b, ..] => mt::DOCKER_LAYER_GZIP,
                [0x28, 0xb5, 0x2f, 0xfd] => mt::OCI_LAYER_ZSTD,
                _ => mt::DOCKER_LAYER,
            };
            let desc = Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                annotations: BTreeMap::new(),
                platform: None,
            };
            if !blobs.iter().any(|b| b.desc.digest == desc.digest) {
                blobs.push(Blob {
                    desc: desc.clone(),
                    source: Source::Entry(layer_name),
                });
            }
            layers.push(desc);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(mt::DOCKER_MANIFEST.to_string()),
            config: config_desc.clone(),
            layers,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| archive.invalid(format!("cannot encode a manifest: {e}")))?;
        let manifest_desc = Descriptor {
            media_type: mt::DOCKER_MANIFEST.to_string(),
            digest: format!("sha256:{:x}", Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let mut refs = vec![("config".to_string(), config_desc.digest.clone())];
        refs.extend(
            manifest
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| (format!("l.{i}"), l.digest.clone())),
        );
        blobs.push(Blob {
            desc: manifest_desc.clone(),
            source: Source::Memory(Arc::new(bytes)),
        });
        plans.push(ImagePlan {
            names,
            target: manifest_desc.clone(),
            blobs,
            references: HashMap::from([(manifest_desc.digest.clone(), refs)]),
            manifest,
            manifest_desc,
            config,
        });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_member_paths() {
        assert_eq!(clean("./index.json"), "index.json");
        assert_eq!(clean("/blobs//sha256/ab"), "blobs/sha256/ab");
        assert_eq!(clean("abc/../def/layer.tar"), "def/layer.tar");
        assert_eq!(clean("../../etc/passwd"), "etc/passwd");
    }

    #[test]
    fn digests() {
        assert!(check_digest(&format!("sha256:{}", "0".repeat(64))).is_ok());
        assert!(check_digest("sha256:../../x").is_err());
        assert!(check_digest(&format!("sha512:{}", "0".repeat(128))).is_err());
        assert!(check_digest("nocolon").is_err());
    }
}
