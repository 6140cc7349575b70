//! A private OCI distribution registry (Debian's `docker-registry`) on a loopback port, with
//! its storage in a temp dir, and a small pusher that puts the busybox test image into it
//! over the distribution API (blobs by POST + PUT, manifests by PUT).
//!
//! The pusher speaks just enough HTTP/1.1 for a loopback registry: one request per
//! connection, `Content-Length` bodies.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, busybox_image, free_port, tail, wait_until};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A `docker-registry serve` on 127.0.0.1:<free port>, killed on drop with its storage.
pub struct Registry {
    /// `127.0.0.1:<port>`: the registry host in image references.
    pub host: String,
    proc: ChildGuard,
    dir: tempfile::TempDir,
}

/// What [`Registry::push_busybox`] pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `127.0.0.1:<port>/<repository>:<tag>`.
    pub reference: String,
    /// The digest the tag names (the manifest, or the index of [`Registry::push_busybox_index`]).
    pub digest: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
}

impl Registry {
    /// Starts the registry and waits until its API answers. Panics with the reason when the
    /// binary is missing or the registry does not come up.
    pub fn start() -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: run scripts/setup.sh (Debian package docker-registry)"
        );
        let dir = tempfile::tempdir().expect("registry temp dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {host}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let proc = ChildGuard::spawn(
            "docker-registry",
            Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log),
        )
        .expect("spawn docker-registry");
        let mut registry = Self { host, proc, dir };
        let up = wait_until(Duration::from_secs(20), || {
            matches!(registry.proc.child.try_wait(), Ok(None))
                && registry
                    .request("GET", "/v2/", &[], &[])
                    .is_ok_and(|r| r.status == 200)
        });
        assert!(
            up,
            "docker-registry did not come up on {}:\n{}",
            registry.host,
            tail(&registry.log(), 30)
        );
        registry
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the registry stores a blob's bytes (to tamper with in tests).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Pushes the busybox test image as `<repository>:<tag>`.
    pub fn push_busybox(&self, repository: &str, tag: &str) -> Pushed {
        let image = OciLayout::read(&busybox_image());
        self.push_image(&image, repository);
        let manifest = &image.manifest_digest;
        self.put_manifest(repository, tag, OCI_MANIFEST, image.blob(manifest));
        image.pushed(&self.host, repository, tag, manifest.clone())
    }

    /// Pushes the busybox test image under an OCI index that names its manifest for
    /// linux/amd64 and linux/arm64 (the same manifest: enough to check that a pull picks
    /// its platform's entry), tagged `<repository>:<tag>`.
    pub fn push_busybox_index(&self, repository: &str, tag: &str) -> Pushed {
        let image = OciLayout::read(&busybox_image());
        self.push_image(&image, repository);
        let manifest = &image.manifest_digest;
        self.put_manifest(repository, manifest, OCI_MANIFEST, image.blob(manifest));
        let size = image.blob(manifest).len();
        let entry = |arch: &str| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": manifest,
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            })
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry("arm64"), entry("amd64")],
        });
        let bytes = serde_json::to_vec(&index).expect("index json");
        let digest = self.put_manifest(repository, tag, OCI_INDEX, &bytes);
        image.pushed(&self.host, repository, tag, digest)
    }

    fn push_image(&self, image: &OciLayout, repository: &str) {
        let manifest: serde_json::Value =
            serde_json::from_slice(image.blob(&image.manifest_digest)).expect("manifest json");
        let mut digests = vec![manifest["config"]["digest"].as_str().expect("config")];
        for layer in manifest["layers"].as_array().expect("layers") {
            digests.push(layer["digest"].as_str().expect("layer digest"));
        }
        for digest in digests {
            self.push_blob(repository, digest, image.blob(digest));
        }
    }

    fn push_blob(&self, repository: &str, digest: &str, data: &[u8]) {
        let start = self
            .request(
                "POST",
                &format!("/v2/{repository}/blobs/uploads/"),
                &[],
                &[],
            )
            .expect("start upload");
        assert_eq!(
            start.status, 202,
            "start upload of {digest}: {}",
            start.body
        );
        let location = start.header("location").expect("upload location");
        let path = location
            .strip_prefix(&format!("http://{}", self.host))
            .unwrap_or(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = self
            .request(
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                data,
            )
            .expect("upload blob");
        assert_eq!(put.status, 201, "upload of {digest}: {}", put.body);
    }

    /// PUTs a manifest; returns the digest the registry gives it.
    fn put_manifest(&self, repository: &str, tag: &str, media_type: &str, bytes: &[u8]) -> String {
        let reply = self
            .request(
                "PUT",
                &format!("/v2/{repository}/manifests/{tag}"),
                &[("Content-Type", media_type)],
                bytes,
            )
            .expect("put manifest");
        assert_eq!(
            reply.status, 201,
            "put manifest {repository}:{tag}: {}",
            reply.body
        );
        reply
            .header("docker-content-digest")
            .expect("Docker-Content-Digest")
            .to_string()
    }

    /// One HTTP/1.1 request to the registry.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        let mut stream = TcpStream::connect(&self.host)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no end of headers in the reply"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
        })
    }
}

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The blobs of an OCI image-layout tar, by digest, and the digest of its first manifest.
struct OciLayout {
    blobs: HashMap<String, Vec<u8>>,
    manifest_digest: String,
}

impl OciLayout {
    fn read(path: &Path) -> Self {
        let file = std::fs::File::open(path).expect("open image archive");
        let mut archive = tar::Archive::new(file);
        let mut blobs = HashMap::new();
        let mut index = None;
        for entry in archive.entries().expect("tar entries") {
            let mut entry = entry.expect("tar entry");
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read member");
            let name = name.trim_start_matches("./");
            if name == "index.json" {
                index = Some(data);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), data);
            }
        }
        let index: serde_json::Value =
            serde_json::from_slice(&index.expect("index.json in the archive")).expect("index");
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest")
            .to_string();
        Self {
            blobs,
            manifest_digest,
        }
    }

    fn blob(&self, digest: &str) -> &[u8] {
        self.blobs
            .get(digest)
            .unwrap_or_else(|| panic!("blob {digest} missing from the archive"))
    }

    fn pushed(&self, host: &str, repository: &str, tag: &str, digest: String) -> Pushed {
        let manifest: serde_json::Value =
            serde_json::from_slice(self.blob(&self.manifest_digest)).expect("manifest json");
        Pushed {
            reference: format!("{host}/{repository}:{tag}"),
            digest,
            manifest_digest: self.manifest_digest.clone(),
            config_digest: manifest["config"]["digest"]
                .as_str()
                .expect("config")
                .to_string(),
            layer_digests: manifest["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["digest"].as_str().expect("layer digest").to_string())
                .collect(),
        }
    }
}
