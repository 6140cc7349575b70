//! `keelson bench controllers`: the replication and endpoints controllers in this process
//! against an API server on the embedded store, each figure beside a baseline measured in
//! the same run. It prints figures and ratios; it asserts nothing.
//!
//! Replication: one ReplicationController of `--pods` replicas, timed from its create to the
//! bench's pod watch seeing the last of its pods. The baselines are the same number of pods
//! created by the bench itself: with `--concurrency` requests in flight, and in the request
//! pattern one RC sync uses (slow-start batches of 1, 2, 4, ... awaited one after the other,
//! at most 500 pods per sync).
//!
//! Endpoints: `--services` Services, each with an RC of its share of the pods. The bench plays
//! the kubelet and patches every pod's status to Running and Ready with an IP; per pod it
//! times the patch's return to the Endpoints (the bench's endpoints watch) showing the IP, and,
//! as the baseline, to the bench's own pod watch showing the pod ready: what any watcher of
//! pods, the endpoints controller included, waits before it can react.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Endpoints, Pod, ReplicationController, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use crate::bench::{Latencies, ms};
use crate::bench_scheduler_e2e::{create_concurrently, create_namespace, embedded_apiserver};

/// The most pods one RC sync creates (the replication controller's `BURST_REPLICAS`).
const RC_BURST: usize = 500;
/// How long one phase may take before the bench gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the controllers and the bench's watches may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct BenchControllersArgs {
    /// Replicas of the one RC, and pods behind the Services.
    #[arg(long, default_value_t = 1_000)]
    pub pods: usize,
    /// Services (each with its own RC) the pods are split between.
    #[arg(long, default_value_t = 10)]
    pub services: usize,
    /// Workers per controller (`concurrentSyncs`), and the bench's creates and status
    /// patches in flight.
    #[arg(long, default_value_t = 5)]
    pub concurrency: usize,
}

/// What the bench's watches saw, stamped on arrival.
enum Seen {
    /// Both watches have listed.
    Synced,
    Pod {
        namespace: String,
        name: String,
        /// The uid of its controller owner.
        owner: Option<String>,
        /// Its IP, once it is Ready.
        ready_ip: Option<String>,
        at: Instant,
    },
    Endpoints {
        namespace: String,
        name: String,
        ready_ips: Vec<String>,
        at: Instant,
    },
}

/// Streams `api`'s objects, mapped by `seen`, to `tx` until the receiver goes.
async fn forward<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Seen>,
    seen: impl Fn(K, Instant) -> Seen + Send + 'static,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let at = Instant::now();
        let out = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => seen(o, at),
            Ok(watcher::Event::InitDone) => Seen::Synced,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "bench watch failed; retrying");
                continue;
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

fn pod_seen(p: Pod, at: Instant) -> Seen {
    let owner = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone());
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Seen::Pod {
        namespace: p.metadata.namespace.unwrap_or_default(),
        name: p.metadata.name.unwrap_or_default(),
        owner,
        ready_ip: status.and_then(|s| s.pod_ip.clone()).filter(|_| ready),
        at,
    }
}

fn endpoints_seen(ep: Endpoints, at: Instant) -> Seen {
    let ready_ips = ep
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.ip.clone())
        .collect();
    Seen::Endpoints {
        namespace: ep.metadata.namespace.unwrap_or_default(),
        name: ep.metadata.name.unwrap_or_default(),
        ready_ips,
        at,
    }
}

/// Feeds what the watches see to `done` until it returns true, for at most [`PHASE_TIMEOUT`].
async fn watch_until(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    what: &str,
    done: impl FnMut(Seen) -> bool,
) -> anyhow::Result<()> {
    watch_until_within(rx, what, PHASE_TIMEOUT, done).await
}

async fn watch_until_within(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(Seen) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(seen)) => {
                if done(seen) {
                    return Ok(());
                }
            }
            Ok(None) => bail!("the bench's watches ended while waiting for {what}"),
            Err(_) => bail!("{what}: not done after {} s", timeout.as_secs()),
        }
    }
}

/// Waits for `n` pods in `ns` (controlled by `owner`, if given); returns when the last was
/// seen and the pods' names.
async fn wait_for_pods(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    ns: &str,
    n: usize,
    owner: Option<&str>,
) -> anyhow::Result<(Instant, Vec<String>)> {
    let mut names = HashSet::new();
    let mut last = Instant::now();
    watch_until(rx, &format!("{n} pods in {ns}"), |seen| {
        if let Seen::Pod {
            namespace,
            name,
            owner: o,
            at,
            ..
        } = seen
            && namespace == ns
            && (owner.is_none() || o.as_deref() == owner)
            && names.insert(name)
        {
            last = at;
        }
        names.len() >= n
    })
    .await?;
    let mut names: Vec<_> = names.into_iter().collect();
    names.sort();
    Ok((last, names))
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "direct"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}
    }))?)
}

fn rc(name: &str, replicas: usize) -> anyhow::Result<ReplicationController> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"app": name},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                    "ports": [{"name": "http", "containerPort": 8080}]}]}
            }
        }
    }))?)
}

/// A Service selecting the pods of [`rc`] `name`.
fn service(name: &str) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?)
}

/// The `i`th pod's IP, from 10.0.0.1 up.
fn pod_ip(i: usize) -> String {
    let i = i + 1;
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// Creates `objects` as one RC sync of that size would: slow-start batches of 1, 2, 4, ...,
/// each awaited before the next, at most [`RC_BURST`] per sync.
async fn create_slow_start(api: &Api<Pod>, objects: Vec<Pod>) -> anyhow::Result<()> {
    let mut objects = objects.into_iter().peekable();
    while objects.peek().is_some() {
        let mut sync: Vec<Pod> = objects.by_ref().take(RC_BURST).collect();
        let mut batch = 1usize;
        while !sync.is_empty() {
            let rest = sync.split_off(batch.min(sync.len()));
            let params = PostParams::default();
            let calls = sync.iter().map(|p| api.create(&params, p));
            for r in futures::future::join_all(calls).await {
                r.context("create pod")?;
            }
            sync = rest;
            batch = batch.saturating_mul(2);
        }
    }
    Ok(())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

struct Rate {
    what: String,
    pods: usize,
    took: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        rate(self.pods, self.took)
    }
}

struct EndpointsResult {
    watch: Latencies,
    endpoints: Latencies,
    /// Per pod, from the bench's pod watch to its endpoints watch showing the address: what
    /// the endpoints controller adds to a watch's delivery.
    added: Latencies,
    /// Endpoints writes seen from the first status patch to the last address.
    updates: usize,
    /// From the first status patch to the last address in an Endpoints.
    took: Duration,
    patches: Duration,
}

pub async fn run(args: BenchControllersArgs) -> anyhow::Result<()> {
    let BenchControllersArgs {
        pods: n,
        services,
        concurrency,
    } = args;
    if n == 0 || n >= 1 << 24 {
        bail!("--pods must be between 1 and 16777215, not {n}");
    }
    if services == 0 || services > n {
        bail!("--services must be between 1 and --pods ({n}), not {services}");
    }
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    println!(
        "keelson bench controllers: {n} pods, {services} services, concurrency {concurrency}, \
         embedded SQLite store, controllers replicationcontroller,endpoint in process"
    );

    let (_dir, server, client) = embedded_apiserver().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(forward(
        Api::<Pod>::all(client.clone()),
        tx.clone(),
        pod_seen,
    ));
    watches.spawn(forward(
        Api::<Endpoints>::all(client.clone()),
        tx,
        endpoints_seen,
    ));
    let mut synced = 0;
    watch_until_within(&mut rx, "the bench's watches to list", START_TIMEOUT, |s| {
        synced += usize::from(matches!(s, Seen::Synced));
        synced == 2
    })
    .await?;

    let mut config = keelson_controllers::Config::default();
    config
        .select_controllers(&["replicationcontroller,endpoint".to_string()])
        .context("select controllers")?;
    config.concurrent_syncs = concurrency;
    // On its own thread and runtime, as the scheduler in `keelson bench scheduler`: its work
    // never waits behind the bench's, and dropping the runtime at the end ends the event
    // writers still working through their backlog without their polling a closed client.
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let kubeconfig = server.kubeconfig.clone();
    let cm = std::thread::Builder::new()
        .name("controller-manager".into())
        .spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the controller manager's runtime")?;
            rt.block_on(async move {
                let client = keelson_client::connect(&kubeconfig, "keelson-controller-manager")
                    .await
                    .context("connect the controller manager")?;
                let leadership = keelson_client::leader::Leadership::always();
                keelson_controllers::run(client, config, leadership, shutdown)
                    .await
                    .context("controller manager")
            })
        })
        .context("start the controller manager thread")?;

    let result = measure(&client, &mut rx, n, services, concurrency).await;

    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || cm.join());
    match tokio::time::timeout(Duration::from_secs(5), joined).await {
        Ok(Ok(Ok(Err(e)))) => eprintln!("keelson: {e:#}"),
        Ok(_) => {}
        Err(_) => eprintln!("keelson: the controller manager did not stop in time"),
    }
    watches.shutdown().await;
    server.shutdown().await;
    let (rates, ep) = result?;
    report(n, services, concurrency, &rates, ep);
    Ok(())
}

async fn measure(
    client: &Client,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    services: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Rate>, EndpointsResult)> {
    for ns in [
        "bench-direct",
        "bench-slow-start",
        "bench-rc",
        "bench-endpoints",
    ] {
        create_namespace(client, ns).await?;
    }

    // The controllers are running once the endpoints controller has made a Service's Endpoints.
    Api::<Service>::namespaced(client.clone(), "bench-direct")
        .create(&PostParams::default(), &service("probe")?)
        .await
        .context("create the probe service")?;
    watch_until_within(rx, "the controllers to start", START_TIMEOUT, |s| {
        matches!(s, Seen::Endpoints { namespace, name, .. }
            if namespace == "bench-direct" && name == "probe")
    })
    .await?;

    let mut rates = Vec::new();
    let names = |prefix: &str| {
        (0..n)
            .map(|i| pod(&format!("{prefix}-{i:06}")))
            .collect::<anyhow::Result<Vec<_>>>()
    };

    // Baseline: the bench creates the pods itself, `concurrency` at a time.
    let objs = names("direct")?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench-direct");
    let t = Instant::now();
    create_concurrently(&api, objs, concurrency).await?;
    let (last, _) = wait_for_pods(rx, "bench-direct", n, None).await?;
    rates.push(Rate {
        what: format!("direct creates, {concurrency} in flight"),
        pods: n,
        took: last.saturating_duration_since(t),
    });

    // Baseline: the bench creates the pods in the request pattern of RC syncs.
    let objs = names("slow")?;
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench-slow-start");
    let t = Instant::now();
    create_slow_start(&api, objs).await?;
    let (last, _) = wait_for_pods(rx, "bench-slow-start", n, None).await?;
    rates.push(Rate {
        what: format!("direct creates, slow-start batches <= {RC_BURST}"),
        pods: n,
        took: last.saturating_duration_since(t),
    });

    // The replication controller.
    let api: Api<ReplicationController> = Api::namespaced(client.clone(), "bench-rc");
    let t = Instant::now();
    let created = api
        .create(&PostParams::default(), &rc("bench", n)?)
        .await
        .context("create the replication controller")?;
    let uid = created.metadata.uid.context("the new RC has no uid")?;
    let (last, _) = wait_for_pods(rx, "bench-rc", n, Some(&uid)).await?;
    rates.push(Rate {
        what: format!("RC controller, 1 RC x {n}"),
        pods: n,
        took: last.saturating_duration_since(t),
    });

    // Endpoints: a Service and an RC per share of the pods.
    let ns = "bench-endpoints";
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    let rc_api: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
    let svc_names: Vec<String> = (0..services).map(|k| format!("svc-{k:04}")).collect();
    let svcs = svc_names
        .iter()
        .map(|s| service(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    create_concurrently(&svc_api, svcs, concurrency).await?;
    let rcs = svc_names
        .iter()
        .enumerate()
        .map(|(k, s)| rc(s, n / services + usize::from(k < n % services)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let t = Instant::now();
    create_concurrently(&rc_api, rcs, concurrency).await?;
    let mut pod_names = HashSet::new();
    let mut eps = HashSet::new();
    let mut last = t;
    watch_until(rx, "the Services' pods and Endpoints", |s| {
        if let Seen::Pod {
            namespace,
            name,
            at,
            ..
        } = &s
            && namespace == ns
            && pod_names.insert(name.clone())
        {
            last = *at;
        }
        if let Seen::Endpoints {
            namespace, name, ..
        } = s
            && namespace == ns
        {
            eps.insert(name);
        }
        pod_names.len() >= n && eps.len() >= services
    })
    .await?;
    rates.push(Rate {
        what: if n.is_multiple_of(services) {
            format!("RC controller, {services} RCs x {}", n / services)
        } else {
            format!(
                "RC controller, {services} RCs x {}-{}",
                n / services,
                n / services + 1
            )
        },
        pods: n,
        took: last.saturating_duration_since(t),
    });

    let ep = endpoints(client, rx, pod_names, concurrency).await?;
    Ok((rates, ep))
}

/// Plays the kubelet for every pod in `bench-endpoints`; times the addresses' arrival.
async fn endpoints(
    client: &Client,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    pods: HashSet<String>,
    concurrency: usize,
) -> anyhow::Result<EndpointsResult> {
    let ns = "bench-endpoints";
    let mut pods: Vec<String> = pods.into_iter().collect();
    pods.sort();
    let n = pods.len();
    let ips: HashMap<String, String> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), pod_ip(i)))
        .collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let patching = {
        let ips = ips.clone();
        tokio::spawn(async move {
            futures::stream::iter(ips)
                .map(|(name, ip)| {
                    let api = api.clone();
                    async move {
                        let status = json!({"status": {
                            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "conditions": [{"type": "Ready", "status": "True"}]
                        }});
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await
                            .with_context(|| format!("patch the status of pod {name}"))?;
                        Ok::<_, anyhow::Error>((name, Instant::now()))
                    }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<anyhow::Result<HashMap<_, _>>>()
        })
    };

    let mut watch_seen: HashMap<String, Instant> = HashMap::new();
    let mut ep_seen: HashMap<String, Instant> = HashMap::new();
    let mut updates = 0;
    let mut last = start;
    watch_until(rx, "every pod's address in an Endpoints", |s| {
        match s {
            Seen::Pod {
                namespace,
                name,
                ready_ip: Some(ip),
                at,
                ..
            } if namespace == ns && ips.get(&name) == Some(&ip) => {
                watch_seen.entry(name).or_insert(at);
            }
            Seen::Endpoints {
                namespace,
                ready_ips,
                at,
                ..
            } if namespace == ns => {
                updates += 1;
                for ip in ready_ips {
                    if let Entry::Vacant(e) = ep_seen.entry(ip) {
                        e.insert(at);
                        last = at;
                    }
                }
            }
            _ => {}
        }
        watch_seen.len() >= n && ep_seen.len() >= n
    })
    .await?;
    let patched = patching.await.context("status patch task")??;
    let patches = patched
        .values()
        .max()
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(start));

    // A watch may show a change before the patch's response arrives: that counts as zero.
    let mut watch = Vec::with_capacity(n);
    let mut endpoints = Vec::with_capacity(n);
    let mut added = Vec::with_capacity(n);
    for (name, done) in &patched {
        let watched = watch_seen.get(name);
        let listed = ips.get(name).and_then(|ip| ep_seen.get(ip));
        if let Some(at) = watched {
            watch.push(at.saturating_duration_since(*done));
        }
        if let Some(at) = listed {
            endpoints.push(at.saturating_duration_since(*done));
        }
        if let (Some(w), Some(e)) = (watched, listed) {
            added.push(e.saturating_duration_since(*w));
        }
    }
    Ok(EndpointsResult {
        watch: Latencies(watch),
        endpoints: Latencies(endpoints),
        added: Latencies(added),
        updates,
        took: last.saturating_duration_since(start),
        patches,
    })
}

fn report(n: usize, services: usize, concurrency: usize, rates: &[Rate], mut ep: EndpointsResult) {
    let base = |i: usize| rates.get(i).map_or(f64::NAN, Rate::per_sec);
    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>10} {:>12}",
        "replication (pods until watched)", "pods/s", "seconds", "/ direct", "/ slow-start"
    );
    for r in rates {
        println!(
            "{:<44} {:>9.0} {:>9.2} {:>10.2} {:>12.2}",
            r.what,
            r.per_sec(),
            r.took.as_secs_f64(),
            r.per_sec() / base(0),
            r.per_sec() / base(1)
        );
    }
    println!();
    println!(
        "{:<44} {:>9} {:>9} {:>10}",
        "status patch returned -> seen ready (ms)", "p50", "p99", "max"
    );
    let early = ep.watch.0.iter().filter(|d| d.is_zero()).count();
    let quantiles = |l: &mut Latencies| [l.pct(0.5), l.pct(0.99), l.pct(1.0)];
    let watch = quantiles(&mut ep.watch);
    let endpoints = quantiles(&mut ep.endpoints);
    let added = quantiles(&mut ep.added);
    for (what, q) in [
        ("bench pod watch (baseline)", watch),
        ("Endpoints address (endpoints controller)", endpoints),
    ] {
        println!(
            "{what:<44} {:>9.1} {:>9.1} {:>10.1}",
            ms(q[0]),
            ms(q[1]),
            ms(q[2])
        );
    }
    let cell = |i: usize| {
        // Below a tenth of a millisecond the watch was as quick as the clock: no ratio.
        if watch[i] < Duration::from_micros(100) {
            "-".to_string()
        } else {
            format!("{:.1}", endpoints[i].as_secs_f64() / watch[i].as_secs_f64())
        }
    };
    println!(
        "{:<44} {:>9.1} {:>9.1} {:>10.1}",
        "endpoints - watch, per pod",
        ms(added[0]),
        ms(added[1]),
        ms(added[2])
    );
    println!(
        "{:<44} {:>9} {:>9} {:>10}",
        "endpoints / watch",
        cell(0),
        cell(1),
        cell(2)
    );
    println!(
        "(the pod watch showed {early} of {n} pods ready before their patch's response arrived: \
         counted as 0)"
    );
    println!();
    println!(
        "{n} status patches ({concurrency} in flight) took {:.2} s ({:.0}/s); every address was \
         in one of {services} Endpoints after {:.2} s: {} Endpoints updates, {:.0}/s, \
         {:.1} addresses each",
        ep.patches.as_secs_f64(),
        rate(n, ep.patches),
        ep.took.as_secs_f64(),
        ep.updates,
        rate(ep.updates, ep.took),
        n as f64 / ep.updates.max(1) as f64
    );
    println!(
        "controller workers: {concurrency} per controller; one RC's pods are created by one \
         worker in slow-start batches (1, 2, 4, ... up to {RC_BURST} per sync)"
    );
}
