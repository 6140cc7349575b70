//! `keelson bench scheduler`: pods per second through the scheduler's real code path, in the
//! style of Kubernetes' scheduler_perf `SchedulingBasic`, with the `DefaultProvider` policies
//! compiled in, as a native library and as a Wasm component, side by side in one run with one
//! seed. Prints figures, ratios and the project's targets; it asserts only that every pod was
//! placed and that the three variants placed them alike.
//!
//! Each variant is a [`Scheduler`] fed k8s-openapi objects: M nodes (4 cores, 32Gi, 110 pods,
//! Ready, as scheduler_perf's `node-default`), one replication controller and one service
//! selecting the pods (so `SelectorSpreadPriority` has work), then N pods of one 100m / 500Mi
//! container (`pod-default`). `schedule_next` is called until the queue is empty; a `Bind`
//! decision has already assumed the pod on its node, as in the daemon. There is no API server:
//! the figure is the scheduler's own cost. Loading nodes into the policies is timed apart.
//!
//! The plugin variants run `plugins/scheduler-policies/component` (the same policies, one
//! instance per Policy entry); `--profile` adds a run per plugin variant that times every call
//! across the plugin boundary, per extension point and per policy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    PodTemplateSpec, ReplicationController, ReplicationControllerSpec, ResourceRequirements,
    Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keelson_plugin_host::{HostConfig, PluginHost, PluginSpec};
use keelson_plugin_sdk::{
    CycleOutcome, FilterResult, NodeIndex, NodeInfo, PodInfo, PreFilterResult,
};
use keelson_scheduler::config::{PolicyConfig, PolicySource};
use keelson_scheduler::framework::{ExternalPolicy, Framework};
use keelson_scheduler::scheduler::DEFAULT_SCHEDULER_NAME;
use keelson_scheduler::{Decision, Scheduler};

/// The project's targets for the Wasm variant.
const TARGET_WASM_VS_NATIVE: f64 = 0.70;
const TARGET_WASM_PODS_PER_SEC: f64 = 2_000.0;

const NAMESPACE: &str = "default";
const APP: &str = "scheduler-perf";

#[derive(Args, Debug)]
pub struct BenchSchedulerArgs {
    /// Which scenario: small (500 nodes, 1,000 pods), large (5,000 nodes, 10,000 pods) or all.
    #[arg(long, value_enum, default_value_t = ScenarioChoice::All)]
    pub scenario: ScenarioChoice,
    /// Run one scenario with this many nodes instead (pods default to twice as many).
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Run one scenario with this many pods instead (nodes default to half as many).
    #[arg(long)]
    pub pods: Option<u32>,
    /// Seed of the tie-breaking RNG, the same for every variant.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The policies as a Wasm component; built from plugins/scheduler-policies/component if
    /// absent.
    #[arg(long)]
    pub wasm: Option<PathBuf>,
    /// The policies as a native library; built from plugins/scheduler-policies/component if
    /// absent.
    #[arg(long)]
    pub native: Option<PathBuf>,
    /// Also time every call across the plugin boundary (an extra run per plugin variant).
    #[arg(long)]
    pub profile: bool,
    /// Share of nodes each cycle filters before scoring (0: adaptive, as Kubernetes; 100:
    /// every node, as v1).
    #[arg(long, default_value_t = 0)]
    pub percentage_of_nodes_to_score: u32,
    /// Nodes for the end-to-end run through the API server.
    #[arg(long, default_value_t = 1_000)]
    pub e2e_nodes: usize,
    /// Pods for the end-to-end run through the API server.
    #[arg(long, default_value_t = 3_000)]
    pub e2e_pods: usize,
    /// Leave out the end-to-end run.
    #[arg(long)]
    pub no_e2e: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioChoice {
    Small,
    Large,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scenario {
    nodes: u32,
    pods: u32,
}

fn scenarios(args: &BenchSchedulerArgs) -> Vec<Scenario> {
    const SMALL: Scenario = Scenario {
        nodes: 500,
        pods: 1_000,
    };
    const LARGE: Scenario = Scenario {
        nodes: 5_000,
        pods: 10_000,
    };
    match (args.nodes, args.pods) {
        (Some(nodes), Some(pods)) => vec![Scenario { nodes, pods }],
        (Some(nodes), None) => vec![Scenario {
            nodes,
            pods: nodes.saturating_mul(2),
        }],
        (None, Some(pods)) => vec![Scenario {
            nodes: (pods / 2).max(1),
            pods,
        }],
        (None, None) => match args.scenario {
            ScenarioChoice::Small => vec![SMALL],
            ScenarioChoice::Large => vec![LARGE],
            ScenarioChoice::All => vec![SMALL, LARGE],
        },
    }
}

fn quantities(cpu: &str, memory: &str, pods: Option<&str>) -> BTreeMap<String, Quantity> {
    let mut m = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
    ]);
    if let Some(p) = pods {
        m.insert("pods".into(), Quantity(p.into()));
    }
    m
}

fn node_name(i: u32) -> String {
    format!("scheduler-perf-node-{i:05}")
}

/// scheduler_perf's `node-default`: 4 cores, 32Gi, 110 pods, Ready, with its hostname label.
fn node(i: u32) -> Node {
    let name = node_name(i);
    let capacity = quantities("4", "32Gi", Some("110"));
    Node {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([(
                "kubernetes.io/hostname".to_string(),
                name.clone(),
            )])),
            name: Some(name),
            uid: Some(format!("node-uid-{i}")),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..NodeCondition::default()
            }]),
            ..NodeStatus::default()
        }),
    }
}

fn pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), APP.to_string()),
        ("tier".to_string(), "backend".to_string()),
    ])
}

/// The replication controller that owns every pod.
fn replication_controller() -> ReplicationController {
    ReplicationController {
        metadata: ObjectMeta {
            name: Some(APP.into()),
            namespace: Some(NAMESPACE.into()),
            uid: Some("rc-uid".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicationControllerSpec {
            selector: Some(BTreeMap::from([("app".to_string(), APP.to_string())])),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels()),
                    ..ObjectMeta::default()
                }),
                spec: None,
            }),
            ..ReplicationControllerSpec::default()
        }),
        status: None,
    }
}

/// A service in front of the pods.
fn service() -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(APP.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".to_string(), APP.to_string())])),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// scheduler_perf's `pod-default`: one pause container requesting (and limited to) 100m and
/// 500Mi, owned by the replication controller.
fn pod(i: u32) -> Pod {
    let resources = quantities("100m", "500Mi", None);
    let mut labels = pod_labels();
    labels.insert("shard".into(), (i % 10).to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{APP}-pod-{i:05}")),
            namespace: Some(NAMESPACE.into()),
            uid: Some(format!("pod-uid-{i}")),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ReplicationController".into(),
                name: APP.into(),
                uid: "rc-uid".into(),
                controller: Some(true),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ports: Some(vec![ContainerPort {
                    container_port: 80,
                    ..ContainerPort::default()
                }]),
                resources: Some(ResourceRequirements {
                    limits: Some(resources.clone()),
                    requests: Some(resources),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The same config with every entry run by the plugin at `path`.
fn as_plugins(config: &PolicyConfig, path: &Path) -> anyhow::Result<PolicyConfig> {
    let mut out = config.clone();
    for entry in out.predicates.iter_mut().chain(out.priorities.iter_mut()) {
        let PolicySource::Builtin(json) = &entry.source else {
            bail!("policy entry {} is not a built-in policy", entry.name);
        };
        entry.source = PolicySource::Plugin {
            path: path.to_path_buf(),
            options: json.clone(),
        };
    }
    Ok(out)
}

/// The `p`-quantile (0 to 1) of `sorted`, nearest rank; zero when empty.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One variant's run over one scenario.
#[derive(Debug)]
struct Run {
    /// Nodes, the RC and the service into the cache and every policy.
    setup: Duration,
    /// Scheduling every pod.
    total: Duration,
    /// Each `schedule_next` call, sorted.
    latencies: Vec<Duration>,
    /// Pods per node, every node included.
    min_per_node: u32,
    max_per_node: u32,
    /// Every decision, in order.
    placements: Vec<(String, String)>,
}

impl Run {
    fn pods_per_sec(&self) -> f64 {
        self.placements.len() as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// Schedules `scenario` with `framework`; an error if any pod is left unscheduled. `profile`,
/// if given, is cleared once the nodes are loaded, so it covers the scheduling only.
fn schedule_all(
    framework: Framework,
    scenario: Scenario,
    profile: Option<&Profile>,
) -> anyhow::Result<Run> {
    let mut scheduler = Scheduler::new(framework, DEFAULT_SCHEDULER_NAME);
    let nodes: Vec<Node> = (0..scenario.nodes).map(node).collect();
    let pods: Vec<Pod> = (0..scenario.pods).map(pod).collect();

    let start = Instant::now();
    for n in nodes {
        scheduler.node_changed(n);
    }
    scheduler.rc_changed(&replication_controller());
    scheduler.service_changed(&service());
    let now = Instant::now();
    // No pod is queued yet: this only hands the nodes to the policies.
    if let Some(d) = scheduler.schedule_next(now).context("loading the nodes")? {
        bail!("a decision with no pod queued: {d:?}");
    }
    let setup = start.elapsed();
    if let Some(p) = profile {
        p.clear();
    }

    for p in pods {
        scheduler.pod_changed(p);
    }
    if scheduler.pending() != scenario.pods as usize {
        bail!(
            "{} of {} pods were queued",
            scheduler.pending(),
            scenario.pods
        );
    }
    let mut latencies = Vec::with_capacity(scenario.pods as usize);
    let mut placements = Vec::with_capacity(scenario.pods as usize);
    let mut per_node: HashMap<String, u32> = HashMap::new();
    let mut failed: Vec<String> = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let Some(decision) = scheduler.schedule_next(now).context("scheduling")? else {
            break;
        };
        latencies.push(t.elapsed());
        match decision {
            Decision::Bind { key, node } => {
                *per_node.entry(node.clone()).or_default() += 1;
                placements.push((key, node));
            }
            Decision::Unschedulable { key, message, .. }
            | Decision::Failed { key, message, .. } => {
                failed.push(format!("{key}: {message}"));
            }
        }
    }
    let total = start.elapsed();
    if !failed.is_empty() || scheduler.pending() > 0 {
        bail!(
            "{} of {} pods were not scheduled; first: {}",
            scenario.pods as usize - placements.len(),
            scenario.pods,
            failed.first().map_or("(still queued)", String::as_str)
        );
    }
    latencies.sort_unstable();
    let max_per_node = per_node.values().copied().max().unwrap_or(0);
    let min_per_node = if per_node.len() < scenario.nodes as usize {
        0
    } else {
        per_node.values().copied().min().unwrap_or(0)
    };
    Ok(Run {
        setup,
        total,
        latencies,
        min_per_node,
        max_per_node,
        placements,
    })
}

/// Calls and time per (policy, call).
type CallTimes = BTreeMap<(String, &'static str), (u64, Duration)>;

/// Time spent in calls across the plugin boundary.
#[derive(Default)]
struct Profile(Mutex<CallTimes>);

impl Profile {
    fn record(&self, policy: &str, call: &'static str, took: Duration) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let e = m.entry((policy.to_string(), call)).or_default();
        e.0 += 1;
        e.1 += took;
    }

    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn snapshot(&self) -> CallTimes {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A plugin policy whose calls are timed into a [`Profile`].
struct Timed<P> {
    inner: P,
    policy: String,
    profile: Arc<Profile>,
}

impl<P> Timed<P> {
    fn time<T>(&mut self, call: &'static str, f: impl FnOnce(&mut P) -> T) -> T {
        let start = Instant::now();
        let r = f(&mut self.inner);
        self.profile.record(&self.policy, call, start.elapsed());
        r
    }
}

type SchedResult<T> = keelson_scheduler::Result<T>;

impl<P: ExternalPolicy> ExternalPolicy for Timed<P> {
    fn node_added(&mut self, index: NodeIndex, node: &NodeInfo) -> SchedResult<()> {
        self.time("node-added", |p| p.node_added(index, node))
    }

    fn node_updated(&mut self, index: NodeIndex, node: &NodeInfo) -> SchedResult<()> {
        self.time("node-updated", |p| p.node_updated(index, node))
    }

    fn node_removed(&mut self, index: NodeIndex) -> SchedResult<()> {
        self.time("node-removed", |p| p.node_removed(index))
    }

    fn pre_filter(&mut self, cycle: u64, pod: &PodInfo) -> SchedResult<Option<PreFilterResult>> {
        self.time("pre-filter", |p| p.pre_filter(cycle, pod))
    }

    fn filter(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> SchedResult<Option<Vec<FilterResult>>> {
        self.time("filter", |p| p.filter(cycle, pod, candidates))
    }

    fn reasons(&mut self, start: u32) -> SchedResult<Vec<String>> {
        self.time("reasons", |p| p.reasons(start))
    }

    fn score(
        &mut self,
        cycle: u64,
        pod: &PodInfo,
        candidates: &[NodeIndex],
    ) -> SchedResult<Option<Vec<i64>>> {
        self.time("score", |p| p.score(cycle, pod, candidates))
    }

    fn normalize_score(&mut self, cycle: u64, scores: &[i64]) -> SchedResult<Option<Vec<i64>>> {
        self.time("normalize-score", |p| p.normalize_score(cycle, scores))
    }

    fn end_cycle(&mut self, cycle: u64, outcome: CycleOutcome) -> SchedResult<()> {
        self.time("end-cycle", |p| p.end_cycle(cycle, outcome))
    }
}

/// A framework running `config`'s entries as the plugin at `path`, timed into `profile` if
/// given; loading it (and compiling a component) is timed too.
fn plugin_framework(
    config: &PolicyConfig,
    path: &Path,
    host: &PluginHost,
    seed: u64,
    percentage: u32,
    profile: Option<&Arc<Profile>>,
) -> anyhow::Result<(Framework, Duration)> {
    let config = as_plugins(config, path)?;
    let start = Instant::now();
    let mut framework = match profile {
        None => Framework::new(&config, host, seed),
        Some(profile) => Framework::with_loader(&config, seed, |name, path, options| {
            let err = |call: &'static str, e: keelson_plugin_host::Error| {
                keelson_scheduler::Error::Plugin {
                    plugin: name.to_string(),
                    call,
                    message: e.to_string(),
                }
            };
            let mut plugin = host
                .load_scheduler(&PluginSpec::new(name, path))
                .map_err(|e| err("load", e))?;
            plugin.configure(options).map_err(|e| err("configure", e))?;
            Ok(Box::new(Timed {
                inner: plugin,
                policy: name.to_string(),
                profile: Arc::clone(profile),
            }) as Box<dyn ExternalPolicy>)
        }),
    }
    .with_context(|| format!("loading {}", path.display()))?;
    framework.set_percentage_of_nodes_to_score(percentage);
    Ok((framework, start.elapsed()))
}

fn build_policies(native: bool) -> anyhow::Result<PathBuf> {
    crate::bench_plugins::build_source_plugin(
        "plugins/scheduler-policies/component",
        "the built-in policies",
        native,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn check(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn print_profile(label: &str, profile: &Profile, run: &Run) {
    let calls = profile.snapshot();
    let pods = run.placements.len().max(1) as f64;
    let mut per_call: BTreeMap<&'static str, (u64, Duration)> = BTreeMap::new();
    let mut per_policy: BTreeMap<&str, Duration> = BTreeMap::new();
    for ((policy, call), (n, took)) in &calls {
        let e = per_call.entry(call).or_default();
        e.0 += n;
        e.1 += *took;
        *per_policy.entry(policy.as_str()).or_default() += *took;
    }
    let in_plugins: Duration = per_call.values().map(|(_, t)| *t).sum();
    let share = |d: Duration| 100.0 * d.as_secs_f64() / run.total.as_secs_f64().max(1e-9);
    println!(
        "  profile, {label} ({:.0} pods/s with timing on): {:.1} ms of {:.1} ms in plugin calls \
         ({:.0}%), {:.1} ms in the framework, cache and queue",
        run.pods_per_sec(),
        ms(in_plugins),
        ms(run.total),
        share(in_plugins),
        ms(run.total.saturating_sub(in_plugins))
    );
    println!(
        "    {:<16} {:>9} {:>10} {:>10} {:>11} {:>7}",
        "call", "calls", "total ms", "us/call", "us/pod", "share"
    );
    for (call, (n, took)) in &per_call {
        println!(
            "    {:<16} {:>9} {:>10.1} {:>10.2} {:>11.1} {:>6.1}%",
            call,
            n,
            ms(*took),
            us(*took) / (*n).max(1) as f64,
            us(*took) / pods,
            share(*took)
        );
    }
    let mut policies: Vec<_> = per_policy.into_iter().collect();
    policies.sort_by_key(|p| std::cmp::Reverse(p.1));
    let line: Vec<String> = policies
        .iter()
        .map(|(p, t)| format!("{p} {:.0}%", share(*t)))
        .collect();
    println!("    per policy: {}", line.join(", "));
}

fn scenario_run(
    scenario: Scenario,
    config: &PolicyConfig,
    host: &PluginHost,
    wasm: &Path,
    native: &Path,
    args: &BenchSchedulerArgs,
) -> anyhow::Result<()> {
    println!(
        "scheduler, SchedulingBasic-like: {} pods onto {} nodes (4 cores, 32Gi, 110 pods each), \
         DefaultProvider policies, seed {}, percentageOfNodesToScore {} ({} nodes per cycle)",
        scenario.pods,
        scenario.nodes,
        args.seed,
        args.percentage_of_nodes_to_score,
        keelson_scheduler::framework::feasible_nodes_to_find(
            scenario.nodes as usize,
            args.percentage_of_nodes_to_score
        )
    );
    let mut builtin = Framework::builtin(config, args.seed).context("the built-in framework")?;
    builtin.set_percentage_of_nodes_to_score(args.percentage_of_nodes_to_score);
    let builtin = schedule_all(builtin, scenario, None).context("built-in policies")?;
    let (native_fw, native_load) = plugin_framework(
        config,
        native,
        host,
        args.seed,
        args.percentage_of_nodes_to_score,
        None,
    )?;
    let native_run = schedule_all(native_fw, scenario, None).context("native library")?;
    let (wasm_fw, wasm_load) = plugin_framework(
        config,
        wasm,
        host,
        args.seed,
        args.percentage_of_nodes_to_score,
        None,
    )?;
    let wasm_run = schedule_all(wasm_fw, scenario, None).context("Wasm component")?;

    // The three must agree before their speed means anything.
    for (label, r) in [
        ("native library", &native_run),
        ("Wasm component", &wasm_run),
    ] {
        if let Some(i) = (0..builtin.placements.len())
            .find(|&i| builtin.placements.get(i) != r.placements.get(i))
        {
            bail!(
                "the {label} placed pod {i} differently from the built-in policies: {:?} vs {:?}",
                r.placements.get(i),
                builtin.placements.get(i)
            );
        }
    }

    println!(
        "  {:<16} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10}",
        "variant",
        "pods/s",
        "total ms",
        "p50 us",
        "p99 us",
        "setup ms",
        "load ms",
        "pods/node",
        "vs built-in"
    );
    for (label, r, load) in [
        ("built-in", &builtin, None),
        ("native library", &native_run, Some(native_load)),
        ("Wasm component", &wasm_run, Some(wasm_load)),
    ] {
        println!(
            "  {:<16} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>9} {:>10.2}x",
            label,
            r.pods_per_sec(),
            ms(r.total),
            us(percentile(&r.latencies, 0.5)),
            us(percentile(&r.latencies, 0.99)),
            ms(r.setup),
            load.map_or_else(|| "-".to_string(), |d| format!("{:.1}", ms(d))),
            format!("{}..{}", r.min_per_node, r.max_per_node),
            r.pods_per_sec() / builtin.pods_per_sec().max(1e-9)
        );
    }
    let wasm_pps = wasm_run.pods_per_sec();
    let vs_native = wasm_pps / native_run.pods_per_sec().max(1e-9);
    println!(
        "  Wasm throughput: {:.0}% of the native library (target >= {:.0}%: {}), {:.0} pods/s \
         (target >= {:.0} pods/s: {})",
        vs_native * 100.0,
        TARGET_WASM_VS_NATIVE * 100.0,
        check(vs_native >= TARGET_WASM_VS_NATIVE),
        wasm_pps,
        TARGET_WASM_PODS_PER_SEC,
        check(wasm_pps >= TARGET_WASM_PODS_PER_SEC)
    );
    println!("  all variants placed all {} pods alike", scenario.pods);

    if args.profile {
        for (label, path) in [("native library", native), ("Wasm component", wasm)] {
            let profile = Arc::new(Profile::default());
            let (fw, _) = plugin_framework(
                config,
                path,
                host,
                args.seed,
                args.percentage_of_nodes_to_score,
                Some(&profile),
            )?;
            let r = schedule_all(fw, scenario, Some(&profile))
                .with_context(|| format!("{label}, profiled"))?;
            print_profile(label, &profile, &r);
        }
    }
    println!();
    Ok(())
}

pub fn run(args: BenchSchedulerArgs) -> anyhow::Result<()> {
    let wasm = match &args.wasm {
        Some(p) => p.clone(),
        None => build_policies(false)?,
    };
    let native = match &args.native {
        Some(p) => p.clone(),
        None => build_policies(true)?,
    };
    let cache = tempfile::tempdir().context("creating a cache directory")?;
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    })
    .context("starting the plugin host")?;
    let config = PolicyConfig::default_provider();
    for scenario in scenarios(&args) {
        scenario_run(scenario, &config, &host, &wasm, &native, &args)?;
    }
    if !args.no_e2e {
        crate::bench_scheduler_e2e::run(args.e2e_nodes, args.e2e_pods)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use keelson_scheduler::cache::Cache;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.5), ms(50));
        assert_eq!(percentile(&sorted, 0.99), ms(99));
        assert_eq!(percentile(&sorted, 1.0), ms(100));
        assert_eq!(percentile(&sorted, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn generated_objects_are_what_the_cache_expects() {
        let mut cache = Cache::new();
        cache.upsert_node(node(3));
        cache.upsert_rc(&replication_controller());
        cache.upsert_service(&service());
        let n = cache.node_info(&node_name(3)).unwrap();
        assert!(n.ready && !n.unschedulable);
        assert_eq!(n.allocatable.cpu, 4000);
        assert_eq!(n.allocatable.memory, 32 << 30);
        assert_eq!(n.allocatable_pods, 110);
        let p = cache.pod_info(&pod(1));
        assert_eq!(p.requests.cpu, 100);
        assert_eq!(p.requests.memory, 500 << 20);
        // Both the RC and the service select the pod, so the spreading policies count it.
        assert_eq!(p.spread_groups.len(), 2);
        assert_eq!(p.service_groups.len(), 1);
    }

    #[test]
    fn a_small_scenario_schedules_every_pod_and_spreads_them() {
        let fw = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        let r = schedule_all(
            fw,
            Scenario {
                nodes: 10,
                pods: 30,
            },
            None,
        )
        .unwrap();
        assert_eq!(r.placements.len(), 30);
        assert_eq!(r.latencies.len(), 30);
        assert_eq!((r.min_per_node, r.max_per_node), (3, 3));
    }

    #[test]
    fn pods_that_do_not_fit_are_an_error() {
        let fw = Framework::builtin(&PolicyConfig::default_provider(), 1).unwrap();
        // 4 cores hold 40 pods of 100m.
        let err = schedule_all(fw, Scenario { nodes: 1, pods: 41 }, None).unwrap_err();
        assert!(
            err.to_string().contains("1 of 41 pods were not scheduled"),
            "{err}"
        );
    }
}
