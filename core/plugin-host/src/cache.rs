//! The on-disk cache of compiled components, keyed by content hash.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{Error, Result};

/// Counts of compiled-code cache use since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from the cache without compiling.
    pub hits: u64,
    /// Loads that compiled the component.
    pub compiles: u64,
}

pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
    compiles: AtomicU64,
}

impl ArtifactCache {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache {
            dir,
            hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
        }
    }

    /// Whether compiled code for a component with these bytes is in the cache.
    pub(crate) fn is_cached(&self, engine: &Engine, bytes: &[u8]) -> bool {
        self.dir.as_ref().is_some_and(|dir| {
            dir.join(format!("{}.cwasm", cache_key(engine, bytes)))
                .is_file()
        })
    }

    /// Compiles the component in `path`, whose contents are `bytes`, or loads its compiled
    /// code from the cache.
    pub(crate) fn load(&self, engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Component> {
        let Some(dir) = &self.dir else {
            return self.compile(engine, path, bytes);
        };
        let artifact = dir.join(format!("{}.cwasm", cache_key(engine, bytes)));
        if artifact.is_file() {
            match deserialize(engine, &artifact) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    artifact = %artifact.display(),
                    error = %e,
                    "compiled plugin code in the cache is unusable, compiling again"
                ),
            }
        }
        let component = self.compile(engine, path, bytes)?;
        // The cache is an optimisation: failing to write it costs a compile next time, no more.
        if let Err(e) = store(dir, &artifact, &component) {
            tracing::warn!(artifact = %artifact.display(), error = %e, "could not cache compiled plugin code");
        }
        Ok(component)
    }

    fn compile(&self, engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Component> {
        self.compiles.fetch_add(1, Ordering::Relaxed);
        Component::new(engine, bytes).map_err(|e| Error::Compile {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}

/// The SHA-256 of the component's bytes and of the engine's compatibility hash, so that code
/// compiled by another wasmtime version or configuration is never even tried.
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut compat = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut sha = Sha256::new();
    sha.update(compat.finish().to_le_bytes());
    sha.update(bytes);
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn deserialize(engine: &Engine, artifact: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be code wasmtime compiled. The file is one
    // this cache wrote with `Component::serialize` (the cache directory must be writable only
    // by the daemon, as `HostConfig::cache_dir` documents), it is named after the hash of its
    // source and of this engine's compatibility hash, and wasmtime still checks its header
    // against the engine. Files are replaced by rename, never rewritten in place, so the
    // mapping wasmtime makes is not changed under it.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, artifact)
    }
}

fn store(dir: &Path, artifact: &Path, component: &Component) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component.serialize().map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        artifact
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, artifact)
}
