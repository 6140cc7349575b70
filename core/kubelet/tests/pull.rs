//! Pulls from a real registry (Debian's docker-registry on a loopback port, plain HTTP) into
//! a real, private containerd: a manifest and an index, layers skipped the second time,
//! corrupted blobs refused, unknown tags, refused connections and plain HTTP to a registry
//! not named insecure.

use std::process::Command;
use std::sync::{Arc, Mutex};

use containerd_client::services::v1::InfoRequest;
use keelson_kubelet::Containerd;
use keelson_kubelet::images::{self, Progress, PullError, PullOptions, media_types as mt};
use keelson_testsupport::{Containerd as PrivateContainerd, Registry, free_port};

async fn connect(cd: &PrivateContainerd) -> Containerd {
    Containerd::connect(&cd.socket, &cd.namespace)
        .await
        .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", cd.log()))
}

fn insecure(registry: &Registry) -> PullOptions {
    PullOptions {
        insecure_registries: vec![registry.host.clone()],
        ..Default::default()
    }
}

async fn in_store(cd: &Containerd, digest: &str) -> bool {
    cd.content()
        .info(cd.request(
            InfoRequest {
                digest: digest.to_string(),
            },
            None,
        ))
        .await
        .is_ok()
}

#[tokio::test]
async fn pulls_run_skip_present_layers_and_resolve_indexes() {
    let registry = Registry::start();
    let pushed = registry.push_busybox("library/busybox", "1");
    let multi = registry.push_busybox_index("multi/busybox", "v1");
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;

    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let mut options = insecure(&registry);
    let record = seen.clone();
    options.progress = Some(Arc::new(move |p: &Progress| {
        record.lock().expect("progress lock").push(p.clone());
    }));
    let pulled = images::pull(&cd, &pushed.reference, &options)
        .await
        .unwrap_or_else(|e| panic!("pull: {e}\nregistry log:\n{}", registry.log()));
    assert_eq!(pulled.name, pushed.reference);
    assert_eq!(pulled.target.digest, pushed.digest);
    assert_eq!(pulled.target.media_type, mt::OCI_MANIFEST);
    assert_eq!(pulled.layers_fetched, pushed.layer_digests.len());
    assert_eq!(pulled.layers_present, 0);
    assert!(
        pulled.fetched > 0 && pulled.size > pulled.fetched,
        "{pulled:?}"
    );
    let progress = seen.lock().expect("progress lock").clone();
    let last_layer = progress
        .iter()
        .rfind(|p| p.what == "layer")
        .expect("layer progress");
    assert_eq!(last_layer.done, last_layer.total, "{progress:?}");
    assert!(!last_layer.present);

    let list = images::list(&cd).await.expect("list");
    let listed = list
        .iter()
        .find(|i| i.name == pushed.reference)
        .unwrap_or_else(|| panic!("{} not listed: {list:?}", pushed.reference));
    assert_eq!(listed.digest, pushed.digest);
    assert_eq!(listed.size, pulled.size);

    // Runnable as pulled: ctr finds the snapshots unpacked.
    let id = format!("pull-{}", std::process::id());
    let out = Command::new("ctr")
        .arg("--address")
        .arg(&private.socket)
        .args(["-n", &private.namespace, "run", "--rm", "--snapshotter"])
        .arg(&pulled.snapshotter)
        .args([&pushed.reference, &id, "echo", "ok"])
        .output()
        .expect("spawn ctr");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "ctr run: {}\nstdout:\n{}\nstderr:\n{}\ncontainerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        private.log()
    );

    // Again: nothing fetched but the manifest and config.
    let again = images::pull(&cd, &pushed.reference, &insecure(&registry))
        .await
        .expect("second pull");
    assert_eq!(again.layers_fetched, 0, "{again:?}");
    assert_eq!(again.layers_present, pushed.layer_digests.len());
    assert_eq!(again.fetched, 0);
    assert_eq!(again.chain_id, pulled.chain_id);

    // An index resolves to this platform's manifest; concurrent pulls of it share one.
    let options = insecure(&registry);
    let (a, b) = tokio::join!(
        images::pull(&cd, &multi.reference, &options),
        images::pull(&cd, &multi.reference, &options),
    );
    let a = a.unwrap_or_else(|e| panic!("pull index: {e}\n{}", registry.log()));
    let b = b.expect("concurrent pull of the index");
    assert_eq!(a, b);
    assert_eq!(a.target.digest, multi.digest);
    assert_eq!(a.target.media_type, mt::OCI_INDEX);
    assert_eq!(a.manifest.digest, multi.manifest_digest);
    assert!(in_store(&cd, &multi.digest).await);
    let list = images::list(&cd).await.expect("list");
    assert!(
        list.iter()
            .any(|i| i.name == multi.reference && i.digest == multi.digest),
        "{list:?}"
    );

    // A tag the registry does not have.
    let missing = format!("{}/library/busybox:nope", registry.host);
    let err = images::pull(&cd, &missing, &insecure(&registry))
        .await
        .expect_err("unknown tag");
    assert!(
        matches!(err.pull_error(), Some(PullError::NotFound { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found"
        )
    );
    let list = images::list(&cd).await.expect("list");
    assert!(!list.iter().any(|i| i.name == missing), "{list:?}");
}

#[tokio::test]
async fn corrupted_blobs_unreachable_and_plain_http_registries_are_refused() {
    let registry = Registry::start();
    let pushed = registry.push_busybox("app", "v1");
    let private = PrivateContainerd::start();
    let cd = connect(&private).await;

    // Plain HTTP to a registry not named insecure: HTTPS is tried, and fails saying why.
    let err = images::pull(&cd, &pushed.reference, &PullOptions::default())
        .await
        .expect_err("HTTPS to a plain HTTP registry");
    assert!(
        matches!(err.pull_error(), Some(PullError::Tls { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("https://{}/v2/app/manifests/v1", registry.host))
            && text.contains(&format!("--insecure-registry {}", registry.host)),
        "{text}"
    );

    // Nobody listening.
    let closed = format!("127.0.0.1:{}", free_port());
    let options = PullOptions {
        insecure_registries: vec![closed.clone()],
        ..Default::default()
    };
    let err = images::pull(&cd, &format!("{closed}/app:v1"), &options)
        .await
        .expect_err("connection refused");
    assert!(
        matches!(err.pull_error(), Some(PullError::Connect { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("connection refused"), "{err}");

    // A layer whose bytes changed in the registry's storage: the same size, another
    // digest. Nothing is committed and no image recorded.
    let layer = &pushed.layer_digests[0];
    let path = registry.blob_path(layer);
    let mut bytes = std::fs::read(&path).expect("read the stored layer");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).expect("tamper with the stored layer");
    let err = images::pull(&cd, &pushed.reference, &insecure(&registry))
        .await
        .expect_err("corrupted layer");
    assert!(
        matches!(err.pull_error(), Some(PullError::Digest { digest, .. }) if digest == layer),
        "{err:?}"
    );
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(
        !in_store(&cd, layer).await,
        "the corrupted layer was committed"
    );
    let list = images::list(&cd).await.expect("list");
    assert!(list.is_empty(), "{list:?}");
}
