//! The end-to-end half of `keelson bench scheduler`: an API server (embedded store) and the
//! scheduler daemon in this process, 1,000 Node objects, then 3,000 pods created as fast as
//! 32 clients can; the figure is pods bound per second, from the first create to the last
//! binding seen. The baseline, measured first in the same run, is how fast the same API
//! server accepts the same 3,000 pods when nobody schedules them: the end-to-end rate cannot
//! beat it, and the ratio shows what scheduling adds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::scheduler_cmd::{self, SchedulerArgs};

const CLIENTS: usize = 32;

fn node(i: usize) -> anyhow::Result<Node> {
    let name = format!("node-{i:05}");
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))?)
}

fn pod(i: usize, scheduler: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]
        }
    }))?)
}

async fn create_all<K>(api: &Api<K>, objects: Vec<K>) -> anyhow::Result<Duration>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    create_concurrently(api, objects, CLIENTS).await
}

/// Creates `objects` with at most `clients` requests in flight; returns how long it took.
pub(crate) async fn create_concurrently<K>(
    api: &Api<K>,
    objects: Vec<K>,
    clients: usize,
) -> anyhow::Result<Duration>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let t = Instant::now();
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await }
        })
        .buffer_unordered(clients.max(1))
        .try_collect::<Vec<_>>()
        .await
        .context("create objects")?;
    Ok(t.elapsed())
}

/// An API server on the embedded SQLite store in a temporary directory, on a free port,
/// and a client for it. The directory goes when the returned guard is dropped.
pub(crate) async fn embedded_apiserver() -> anyhow::Result<(
    tempfile::TempDir,
    keelson_apiserver::RunningServer,
    kube::Client,
)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = keelson_apiserver::Config::new(dir.path().to_path_buf());
    cfg.bind_address = "127.0.0.1".parse()?;
    cfg.secure_port = 0;
    let server = keelson_apiserver::start(cfg)
        .await
        .context("start the API server")?;
    let client = keelson_client::connect(&server.kubeconfig, "keelson-bench").await?;
    Ok((dir, server, client))
}

/// Creates the namespace `name`.
pub(crate) async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}}))?,
    )
    .await
    .with_context(|| format!("create namespace {name}"))?;
    Ok(())
}

/// Runs the end-to-end scenario; prints its report.
pub fn run(nodes: usize, pods: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(scenario(nodes, pods))
}

async fn scenario(nodes: usize, pods: usize) -> anyhow::Result<()> {
    println!("end to end through the API server (embedded store), {nodes} nodes / {pods} pods");
    let (_dir, server, client) = embedded_apiserver().await?;

    let node_api: Api<Node> = Api::all(client.clone());
    let node_objs = (0..nodes).map(node).collect::<anyhow::Result<Vec<_>>>()?;
    create_all(&node_api, node_objs).await?;

    // Baseline: the same pods, for a scheduler that does not exist, in another namespace.
    create_namespace(&client, "baseline").await?;
    let baseline_api: Api<Pod> = Api::namespaced(client.clone(), "baseline");
    let baseline_pods = (0..pods)
        .map(|i| pod(i, "nobody"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let create_time = create_all(&baseline_api, baseline_pods).await?;

    // The scheduler, on its own thread and runtime as in `keelson server`.
    let resolved = SchedulerArgs {
        kubeconfig: Some(server.kubeconfig.clone()),
        leader: crate::leader_args::LeaderElectionArgs {
            leader_elect: Some(false),
            ..Default::default()
        },
        seed: Some(1),
        bind_concurrency: Some(CLIENTS),
        ..SchedulerArgs::default()
    }
    .resolve()?;
    let (host, scheduler) = scheduler_cmd::build(&resolved)?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || -> anyhow::Result<()> {
        let _host = host;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(scheduler_cmd::run(resolved, scheduler, shutdown))
    });
    // Let its watches list the nodes.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let objs = (0..pods)
        .map(|i| pod(i, "default-scheduler"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t = Instant::now();
    let creating = {
        let api = api.clone();
        tokio::spawn(async move { create_all(&api, objs).await })
    };
    let deadline = t + Duration::from_secs(600);
    let (elapsed, per_node) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = api.list(&ListParams::default()).await?;
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for p in &list.items {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                *per_node.entry(n).or_default() += 1;
            }
        }
        let bound: usize = per_node.values().sum();
        if bound >= pods {
            break (t.elapsed(), per_node);
        }
        if Instant::now() > deadline {
            bail!("only {bound} of {pods} pods were bound after 10 minutes");
        }
    };
    let created_in = creating.await.context("create task")??;
    let _ = stop.send(true);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    server.shutdown().await;

    let rate = |d: Duration| pods as f64 / d.as_secs_f64().max(f64::EPSILON);
    let (min, max) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    println!(
        "  baseline: create {pods} pods, nobody schedules   {:>8.0} pods/s  ({:.2} s)",
        rate(create_time),
        create_time.as_secs_f64()
    );
    println!(
        "  create + schedule + bind, all bound            {:>8.0} pods/s  ({:.2} s; creates took {:.2} s)",
        rate(elapsed),
        elapsed.as_secs_f64(),
        created_in.as_secs_f64()
    );
    println!(
        "  end to end / baseline: {:.2}   pods per node: min {min}, max {max} on {} nodes",
        rate(elapsed) / rate(create_time),
        per_node.len()
    );
    Ok(())
}
