//! Image import, unpack and listing against a real, private containerd, with the busybox
//! archive that scripts/build-images.sh builds.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, StatSnapshotRequest};
use keelson_kubelet::Containerd;
use keelson_kubelet::images::{self, ImageSummary};
use keelson_testsupport::{Containerd as PrivateContainerd, busybox_image};
use sha2::Digest as _;

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// The members of an archive, by path.
fn members(path: &Path) -> HashMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).expect("open archive");
    let mut tar = tar::Archive::new(file);
    let mut out = HashMap::new();
    for entry in tar.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read member");
        out.insert(name, data);
    }
    out
}

/// The busybox archive's manifest digest, manifest and config, read independently of the
/// importer.
struct Busybox {
    members: HashMap<String, Vec<u8>>,
    manifest_digest: String,
    manifest: serde_json::Value,
    config: serde_json::Value,
}

impl Busybox {
    fn read() -> Self {
        let members = members(&busybox_image());
        let index: serde_json::Value =
            serde_json::from_slice(&members["index.json"]).expect("index.json");
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest")
            .to_string();
        let blob = |digest: &str| {
            members[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))].clone()
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(&manifest_digest)).expect("manifest");
        let config: serde_json::Value = serde_json::from_slice(&blob(
            manifest["config"]["digest"].as_str().expect("config"),
        ))
        .expect("config");
        Self {
            members,
            manifest_digest,
            manifest,
            config,
        }
    }

    fn blob(&self, digest: &str) -> &[u8] {
        &self.members[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))]
    }

    /// The chain id of the top layer, computed from the config's diff ids.
    fn chain_id(&self) -> String {
        let mut chain = String::new();
        for diff_id in self.config["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
        {
            let diff_id = diff_id.as_str().expect("diff id");
            chain = if chain.is_empty() {
                diff_id.to_string()
            } else {
                format!(
                    "sha256:{:x}",
                    sha2::Sha256::digest(format!("{chain} {diff_id}"))
                )
            };
        }
        chain
    }
}

async fn connect(cd: &PrivateContainerd) -> Containerd {
    Containerd::connect(&cd.socket, &cd.namespace)
        .await
        .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", cd.log()))
}

async fn committed_snapshots(cd: &Containerd, snapshotter: &str) -> Vec<String> {
    let mut stream = cd
        .snapshots()
        .list(cd.request(
            ListSnapshotsRequest {
                snapshotter: snapshotter.to_string(),
                filters: vec![],
            },
            None,
        ))
        .await
        .expect("list snapshots")
        .into_inner();
    let mut names = Vec::new();
    while let Some(reply) = stream.message().await.expect("snapshot list stream") {
        names.extend(
            reply
                .info
                .into_iter()
                .filter(|i| i.kind == 3)
                .map(|i| i.name),
        );
    }
    names.sort();
    names
}

fn find<'a>(list: &'a [ImageSummary], name: &str) -> Option<&'a ImageSummary> {
    list.iter().find(|i| i.name == name)
}

#[tokio::test]
async fn import_lists_and_unpacks_busybox_idempotently() {
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;
    let busybox = Busybox::read();

    let imported = images::import(&cd, &busybox_image())
        .await
        .expect("import busybox.tar");
    assert_eq!(imported.len(), 1, "{imported:?}");
    let image = &imported[0];
    assert_eq!(image.names, vec![BUSYBOX.to_string()]);
    assert_eq!(image.manifest.digest, busybox.manifest_digest);
    assert_eq!(image.chain_id, busybox.chain_id());

    let list = images::list(&cd).await.expect("list images");
    let listed = find(&list, BUSYBOX).unwrap_or_else(|| panic!("{BUSYBOX} not in {list:?}"));
    assert_eq!(listed.digest, busybox.manifest_digest);
    let layers: u64 = busybox.manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("layer size"))
        .sum();
    let expected_size = busybox.blob(&busybox.manifest_digest).len() as u64
        + busybox.manifest["config"]["size"]
            .as_u64()
            .expect("config size")
        + layers;
    assert_eq!(listed.size, expected_size);

    // Unpacked: the snapshot of the top layer's chain id is committed.
    let stat = cd
        .snapshots()
        .stat(cd.request(
            StatSnapshotRequest {
                snapshotter: image.snapshotter.clone(),
                key: busybox.chain_id(),
            },
            None,
        ))
        .await
        .unwrap_or_else(|e| panic!("no snapshot {} after import: {e}", busybox.chain_id()))
        .into_inner();
    assert_eq!(stat.info.map(|i| i.kind), Some(3), "a committed snapshot");
    let snapshots = committed_snapshots(&cd, &image.snapshotter).await;

    // Again: same record, no new snapshots.
    let again = images::import(&cd, &busybox_image())
        .await
        .expect("import busybox.tar again");
    assert_eq!(&again, &imported);
    let list_again = images::list(&cd).await.expect("list images");
    assert_eq!(list_again, list);
    assert_eq!(
        committed_snapshots(&cd, &image.snapshotter).await,
        snapshots
    );
}

#[tokio::test]
async fn a_container_runs_from_the_unpacked_image() {
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;
    let imported = images::import(&cd, &busybox_image())
        .await
        .expect("import busybox.tar");
    let snapshotter = imported[0].snapshotter.clone();
    let before = committed_snapshots(&cd, &snapshotter).await;

    let id = format!("t1-{}", std::process::id());
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&private.socket)
        .args(["-n", &private.namespace, "run", "--rm", "--snapshotter"])
        .arg(&snapshotter)
        .args([BUSYBOX, &id, "sh", "-c", "echo hello; ls /bin/wget"])
        .output()
        .expect("spawn ctr");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().collect::<Vec<_>>() == ["hello", "/bin/wget"],
        "ctr run: {}\nstdout:\n{stdout}\nstderr:\n{}\ncontainerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        private.log()
    );
    // ctr found the image unpacked: it committed no snapshots of its own.
    assert_eq!(committed_snapshots(&cd, &snapshotter).await, before);
}

/// Writes a tar of `(name, bytes)` members.
fn write_tar(path: &Path, members: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).expect("create archive");
    let mut tar = tar::Builder::new(file);
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(946_684_800);
        header.set_cksum();
        tar.append_data(&mut header, name, *data)
            .expect("append member");
    }
    tar.finish().expect("finish archive");
}

/// The busybox image re-packed as `docker save` writes it: manifest.json with RepoTags, the
/// config, and the layer as an uncompressed tar. `corrupt` flips a byte of the layer.
fn docker_archive(dir: &Path, tags: &[&str], corrupt: bool) -> PathBuf {
    let busybox = Busybox::read();
    let config_digest = busybox.manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let layer_digest = busybox.manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(busybox.blob(layer_digest))
        .read_to_end(&mut layer)
        .expect("gunzip the layer");
    if corrupt {
        // Inside busybox's own bytes, well past the tar headers.
        let at = layer.len() / 2;
        layer[at] ^= 0xff;
    }
    let config_name = format!("{}.json", config_digest.trim_start_matches("sha256:"));
    let layer_name = "0123456789abcdef/layer.tar".to_string();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": [layer_name],
    }]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest.json");
    let path = dir.join(if corrupt {
        "docker-corrupt.tar"
    } else {
        "docker.tar"
    });
    write_tar(
        &path,
        &[
            (config_name.as_str(), busybox.blob(config_digest)),
            (layer_name.as_str(), &layer),
            ("manifest.json", &manifest),
        ],
    );
    path
}

#[tokio::test]
async fn imports_a_docker_save_archive_under_its_repo_tags() {
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = docker_archive(
        dir.path(),
        &["busybox:docker", "keelson.test/tools/bb:v1"],
        false,
    );

    let imported = images::import(&cd, &archive)
        .await
        .expect("import the docker archive");
    assert_eq!(imported.len(), 1);
    assert_eq!(
        imported[0].names,
        vec![
            "docker.io/library/busybox:docker".to_string(),
            "keelson.test/tools/bb:v1".to_string()
        ]
    );
    assert_eq!(
        imported[0].target.media_type,
        images::media_types::DOCKER_MANIFEST
    );
    // Same layer content as the OCI archive, so the same chain id.
    assert_eq!(imported[0].chain_id, Busybox::read().chain_id());

    let list = images::list(&cd).await.expect("list images");
    for name in &imported[0].names {
        let listed = find(&list, name).unwrap_or_else(|| panic!("{name} not in {list:?}"));
        assert_eq!(listed.digest, imported[0].target.digest);
    }
    let stat = cd
        .snapshots()
        .stat(cd.request(
            StatSnapshotRequest {
                snapshotter: imported[0].snapshotter.clone(),
                key: imported[0].chain_id.clone(),
            },
            None,
        ))
        .await;
    assert!(stat.is_ok(), "snapshot of the docker archive: {stat:?}");
}

#[tokio::test]
async fn corrupt_archives_fail_clearly_and_record_nothing() {
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let original = std::fs::read(busybox_image()).expect("read busybox.tar");
    let busybox = Busybox::read();

    // Truncated half way.
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &original[..original.len() / 2]).expect("write");
    let err = images::import(&cd, &truncated)
        .await
        .expect_err("a truncated archive must not import")
        .to_string();
    assert!(err.contains(&truncated.display().to_string()), "{err}");
    assert!(
        err.contains("the archive is truncated inside blobs/sha256/"),
        "{err}"
    );

    // One byte of the layer changed: the blob no longer matches its digest.
    let layer_digest = busybox.manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");
    let layer = busybox.blob(layer_digest);
    let at = original
        .windows(layer.len().min(512))
        .position(|w| w == &layer[..layer.len().min(512)])
        .expect("layer inside the archive")
        + layer.len() / 2;
    let mut flipped = original.clone();
    flipped[at] ^= 0xff;
    let bad_digest = dir.path().join("bad-digest.tar");
    std::fs::write(&bad_digest, &flipped).expect("write");
    let err = images::import(&cd, &bad_digest)
        .await
        .expect_err("a blob with a wrong digest must not import")
        .to_string();
    assert!(
        err.contains(layer_digest) && err.contains("does not match its digest"),
        "{err}"
    );

    // A docker archive's layer that does not unpack to the config's diff id.
    let docker = docker_archive(dir.path(), &["busybox:corrupt"], true);
    let err = images::import(&cd, &docker)
        .await
        .expect_err("a layer that does not match its diff id must not import")
        .to_string();
    assert!(err.contains("cannot unpack layer"), "{err}");

    // Not an archive at all.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar file").expect("write");
    let err = images::import(&cd, &junk)
        .await
        .expect_err("junk must not import")
        .to_string();
    assert!(
        err.contains(&junk.display().to_string()) && err.contains("not a tar archive"),
        "{err}"
    );

    let list = images::list(&cd).await.expect("list images");
    assert!(
        list.is_empty(),
        "no image records after failed imports: {list:?}"
    );
}

#[tokio::test]
async fn unpacks_with_native_when_overlayfs_is_unavailable() {
    let private = PrivateContainerd::start_disabling(&["io.containerd.snapshotter.v1.overlayfs"]);
    let cd = connect(&private).await;
    assert_eq!(
        cd.default_snapshotter().await.expect("default snapshotter"),
        "native"
    );
    let imported = images::import(&cd, &busybox_image())
        .await
        .expect("import busybox.tar");
    assert_eq!(imported[0].snapshotter, "native");
    assert_eq!(
        committed_snapshots(&cd, "native").await,
        vec![Busybox::read().chain_id()]
    );

    let id = format!("t2-{}", std::process::id());
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&private.socket)
        .args([
            "-n",
            &private.namespace,
            "run",
            "--rm",
            "--snapshotter",
            "native",
        ])
        .args([BUSYBOX, &id, "echo", "hello"])
        .output()
        .expect("spawn ctr");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello",
        "ctr run: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
