//! `keelson plugin inspect` and `keelson plugin check`: what a plugin file is, and whether it
//! loads and answers under its limits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use keelson_plugin_host::records::{blank_node, blank_pod, resources};
use keelson_plugin_host::{
    AdmissionRequest, AttachRequest, CycleOutcome, DetachRequest, DryRunHostNet, FilterResult,
    GroupVersionKind, GroupVersionResource, HostConfig, HostServices, IpAddress, IpPrefix,
    LoadedPlugin, NodeInfo, NodeNetworkInfo, Operation, PluginHost, PluginLimits, PluginMetrics,
    PluginSpec, PodInfo, PreFilterResult, UserInfo,
};

use crate::plugin::{CheckArgs, InspectArgs};

fn host(cache_dir: &std::path::Path) -> anyhow::Result<PluginHost> {
    // A cache directory that cannot be created only costs a compile; say so and go on.
    let cache_dir = match std::fs::create_dir_all(cache_dir) {
        Ok(()) => Some(cache_dir.to_path_buf()),
        Err(e) => {
            eprintln!(
                "note: not caching compiled code: cannot create {}: {e}",
                cache_dir.display()
            );
            None
        }
    };
    PluginHost::new(HostConfig {
        cache_dir,
        ..HostConfig::default()
    })
    .context("starting the plugin host")
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let host = host(&args.cache_dir)?;
    let info = host
        .inspect(&args.file)
        .with_context(|| format!("inspecting {}", args.file.display()))?;
    println!("file:      {}", info.path.display());
    println!(
        "format:    {}",
        match info.format.as_str() {
            "wasm-component" => "Wasm component",
            "native-library" => "native library",
            other => other,
        }
    );
    println!("kind:      {}", info.kind.as_str());
    println!("contract:  {}", info.contract);
    if let Some(abi) = info.abi_version {
        println!("abi:       {abi}");
    }
    if let Some(name) = &info.name {
        println!("name:      {name}");
    }
    println!("exports:   {}", info.exports.join(", "));
    if !info.imports.is_empty() {
        println!("imports:   {}", info.imports.join(", "));
    }
    println!("size:      {} bytes", info.size);
    println!("sha256:    {}", info.sha256);
    match info.compiled_cached {
        Some(true) => println!(
            "cached: yes (compiled code in {})",
            args.cache_dir.display()
        ),
        Some(false) => println!("cached: no (the first load compiles it)"),
        None => {}
    }
    Ok(())
}

fn smoke_node(name: &str, cores: u64, used_pods: u32, zone: &str) -> NodeInfo {
    let requested = resources(500 * u64::from(used_pods), 256 << 20);
    NodeInfo {
        labels: vec![
            ("kubernetes.io/hostname".into(), name.into()),
            ("topology.kubernetes.io/zone".into(), zone.into()),
        ],
        allocatable: resources(cores * 1000, cores << 31),
        non_zero_requested: requested.clone(),
        requested,
        pod_count: used_pods,
        ..blank_node(name)
    }
}

fn smoke_pod() -> PodInfo {
    PodInfo {
        uid: "00000000-0000-0000-0000-00000000c4ec".into(),
        labels: vec![("app".into(), "plugin-check".into())],
        requests: resources(250, 64 << 20),
        non_zero_requests: resources(250, 64 << 20),
        ..blank_pod("default", "plugin-check")
    }
}

fn smoke_request() -> AdmissionRequest {
    AdmissionRequest {
        uid: "00000000-0000-0000-0000-00000000c4ec".into(),
        kind: GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        },
        resource: GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
        },
        sub_resource: None,
        namespace: Some("default".into()),
        name: Some("plugin-check".into()),
        operation: Operation::Create,
        user_info: UserInfo {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
            extra: Vec::new(),
        },
        object: Some(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"plugin-check","namespace":"default","labels":{"app":"plugin-check"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#
                .into(),
        ),
        old_object: None,
        dry_run: true,
        options: None,
    }
}

fn check_scheduler(plugin: &mut keelson_plugin_host::SchedulerPlugin) -> anyhow::Result<()> {
    let nodes = [
        smoke_node("check-a", 4, 10, "zone-a"),
        smoke_node("check-b", 8, 2, "zone-b"),
        smoke_node("check-c", 2, 0, "zone-a"),
    ];
    for (i, n) in nodes.iter().enumerate() {
        plugin.node_added(i as u32, n.clone())?;
    }
    let points = plugin.extension_points();
    println!(
        "exports:   pre-filter={} filter={} score={} normalize-score={}",
        points.pre_filter, points.filter, points.score, points.normalize_score
    );
    let pod = smoke_pod();
    let mut candidates: Vec<u32> = (0..nodes.len() as u32).collect();
    let cycle = 1;
    if let Some(pre) = plugin.pre_filter(cycle, &pod)? {
        println!("pre-filter: {pre:?}");
        if let PreFilterResult::Nodes(only) = pre {
            candidates.retain(|i| only.contains(i));
        }
    }
    if let Some(results) = plugin.filter(cycle, &pod, &candidates)? {
        let reasons = plugin.reasons(0)?;
        for (i, r) in candidates.iter().zip(&results) {
            let verdict = match r {
                FilterResult::Pass => "pass".to_string(),
                FilterResult::Unschedulable(id) | FilterResult::Unresolvable(id) => reasons
                    .get(*id as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("reason {id}")),
            };
            println!("filter:    {} -> {verdict}", nodes[*i as usize].name);
        }
        candidates = candidates
            .into_iter()
            .zip(results)
            .filter(|(_, r)| *r == FilterResult::Pass)
            .map(|(i, _)| i)
            .collect();
    }
    if let Some(scores) = plugin.score(cycle, &pod, &candidates)? {
        let scores = plugin.normalize_score(cycle, &scores)?.unwrap_or(scores);
        for (i, s) in candidates.iter().zip(&scores) {
            println!("score:     {} -> {s}", nodes[*i as usize].name);
        }
    }
    plugin.end_cycle(cycle, CycleOutcome::Unschedulable)?;
    Ok(())
}

fn check_admission(plugin: &mut keelson_plugin_host::AdmissionPlugin) -> anyhow::Result<()> {
    let request = smoke_request();
    let points = plugin.extension_points();
    println!(
        "exports:   validate={} mutate={}",
        points.validate, points.mutate
    );
    if let Some(r) = plugin.mutate(&request)? {
        println!(
            "mutate:    allowed={} message={:?} patch={}",
            r.allowed,
            r.message.unwrap_or_default(),
            r.patch.unwrap_or_else(|| "none".into())
        );
    }
    if let Some(r) = plugin.validate(&request)? {
        println!(
            "validate:  allowed={} message={:?}",
            r.allowed,
            r.message.unwrap_or_default()
        );
    }
    Ok(())
}

fn check_network(
    plugin: &mut keelson_plugin_host::NetworkPlugin,
    net: &DryRunHostNet,
) -> anyhow::Result<()> {
    let cidr = IpPrefix {
        address: IpAddress::Ipv4((10, 244, 0, 0)),
        prefix_length: 24,
    };
    let local = NodeNetworkInfo {
        name: "check-node".into(),
        is_local: true,
        pod_cidrs: vec![cidr],
        addresses: Vec::new(),
        labels: Vec::new(),
        annotations: Vec::new(),
    };
    plugin.node_added(&local)?;
    let uid = "00000000-0000-0000-0000-00000000c4ec";
    let attach = AttachRequest {
        pod_namespace: "default".into(),
        pod_name: "plugin-check".into(),
        pod_uid: uid.into(),
        sandbox_id: "plugin-check-sandbox".into(),
        netns_path: "/var/run/netns/plugin-check".into(),
        interface_name: "eth0".into(),
        labels: Vec::new(),
        annotations: Vec::new(),
    };
    let result = plugin.attach_pod(&attach)?;
    println!(
        "attach:    addresses={:?} routes={} mtu={:?}",
        result
            .addresses
            .iter()
            .map(|a| &a.address)
            .collect::<Vec<_>>(),
        result.routes.len(),
        result.mtu
    );
    plugin.detach_pod(&DetachRequest {
        pod_namespace: attach.pod_namespace.clone(),
        pod_name: attach.pod_name.clone(),
        pod_uid: attach.pod_uid.clone(),
        sandbox_id: attach.sandbox_id.clone(),
        netns_path: Some(attach.netns_path.clone()),
        interface_name: attach.interface_name.clone(),
    })?;
    println!("detach:    ok");
    let calls = net.calls();
    println!(
        "host-net:  {} operations asked for (dry run, nothing changed):",
        calls.len()
    );
    for call in calls {
        println!("           {call}");
    }
    Ok(())
}

fn print_metrics(m: &PluginMetrics) {
    let mean = if m.calls == 0 {
        Duration::ZERO
    } else {
        m.latency.sum / u32::try_from(m.calls).unwrap_or(u32::MAX)
    };
    println!(
        "metrics:   {} calls, {} errors, {} traps, {} instances, mean latency {:?}",
        m.calls, m.errors, m.traps, m.instances_created, mean
    );
}

pub fn check(args: CheckArgs) -> anyhow::Result<()> {
    if args.memory_mib == 0 || args.deadline_ms == 0 {
        bail!("--deadline-ms and --memory-mib must be positive");
    }
    let host = host(&args.cache_dir)?;
    let limits = PluginLimits {
        deadline: Duration::from_millis(args.deadline_ms),
        memory: args.memory_mib << 20,
    };
    let net = Arc::new(DryRunHostNet::new(
        vec![IpPrefix {
            address: IpAddress::Ipv4((10, 244, 0, 0)),
            prefix_length: 24,
        }],
        Vec::new(),
    ));
    let services = HostServices {
        host_net: net.clone(),
        ..HostServices::default()
    };
    let spec = PluginSpec::new("check", &args.file).with_limits(limits);
    let mut plugin = host
        .load(&spec, &services)
        .with_context(|| format!("loading {}", args.file.display()))?;
    let reported = plugin.reported_name()?;
    println!(
        "plugin {reported:?}: {} as a {}",
        plugin.kind().as_str(),
        plugin.format().as_str()
    );
    plugin
        .configure(&args.options)
        .with_context(|| format!("configuring with options {}", args.options))?;
    println!("configure: ok");
    match &mut plugin {
        LoadedPlugin::Scheduler(p) => check_scheduler(p)?,
        LoadedPlugin::Admission(p) => check_admission(p)?,
        LoadedPlugin::Network(p) => check_network(p, &net)?,
    }
    print_metrics(&plugin.metrics());
    println!("ok");
    Ok(())
}
