//! `/stats/summary`: cpu and memory of the node, its pods and their containers, in the
//! Summary API's JSON shape (`stats.k8s.io/v1alpha1`), read from cgroups.
//!
//! The node's figures come from the root cgroup (`/proc/stat` and `/proc/meminfo` where the
//! root has no cpu.stat); each container's from the cgroup runc made for it
//! (`/keelson/<containerd-namespace>-<container-id>`, cgroup v2 or v1). A pod's are the sum of
//! its containers', its sandbox included. `usageNanoCores` is the rate since the previous
//! reading of the same cgroup (at least a short sampling interval on the first).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::runtime::{ContainerId, Kind, Runtime};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long apart two cpu readings are when there is no earlier one to compare with.
const FIRST_SAMPLE_GAP: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stats: {0}")]
    Runtime(#[from] crate::runtime::Error),
}

/// One cgroup's readings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative cpu time in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The node only.
    pub available: Option<u64>,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        let sum = |a: &mut Option<u64>, b: Option<u64>| {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0) + b);
            }
        };
        sum(&mut self.cpu_ns, other.cpu_ns);
        sum(&mut self.memory_usage, other.memory_usage);
        sum(&mut self.working_set, other.working_set);
        sum(&mut self.rss, other.rss);
        sum(&mut self.page_faults, other.page_faults);
        sum(&mut self.major_page_faults, other.major_page_faults);
    }
}

/// `key value` lines (cpu.stat, memory.stat) into a map.
fn flat_keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads a cgroup v2 directory.
pub fn read_v2(dir: &Path) -> Option<Usage> {
    if !dir.is_dir() {
        return None;
    }
    let cpu = std::fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
    let cpu = flat_keyed(&cpu);
    let mem = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let mem = flat_keyed(&mem);
    let usage = read_u64(&dir.join("memory.current"));
    Some(Usage {
        cpu_ns: cpu.get("usage_usec").map(|u| u * 1000),
        memory_usage: usage,
        working_set: usage
            .map(|u| u.saturating_sub(mem.get("inactive_file").copied().unwrap_or(0))),
        rss: mem.get("anon").copied(),
        page_faults: mem.get("pgfault").copied(),
        major_page_faults: mem.get("pgmajfault").copied(),
        available: None,
    })
}

/// Reads a cgroup v1 path under the cpuacct and memory hierarchies.
fn read_v1(root: &Path, rel: &str) -> Option<Usage> {
    let cpu_dir = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
        .iter()
        .map(|h| root.join(h).join(rel))
        .find(|d| d.is_dir());
    let mem_dir = root.join("memory").join(rel);
    if cpu_dir.is_none() && !mem_dir.is_dir() {
        return None;
    }
    let mem = std::fs::read_to_string(mem_dir.join("memory.stat")).unwrap_or_default();
    let mem = flat_keyed(&mem);
    let usage = read_u64(&mem_dir.join("memory.usage_in_bytes"));
    Some(Usage {
        cpu_ns: cpu_dir.and_then(|d| read_u64(&d.join("cpuacct.usage"))),
        memory_usage: usage,
        working_set: usage
            .map(|u| u.saturating_sub(mem.get("total_inactive_file").copied().unwrap_or(0))),
        rss: mem.get("total_rss").copied(),
        page_faults: mem.get("total_pgfault").copied(),
        major_page_faults: mem.get("total_pgmajfault").copied(),
        available: None,
    })
}

/// A container's cgroup readings, by the cgroups path runc was given.
pub fn read_cgroup(cgroups_path: &str) -> Option<Usage> {
    let root = Path::new(CGROUP_ROOT);
    let rel = cgroups_path.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        read_v2(&root.join(rel))
    } else {
        read_v1(root, rel)
    }
}

/// The node's readings: cpu from `/proc/stat`, memory from `/proc/meminfo` (working set:
/// used less inactive file pages, as cAdvisor counts it).
pub fn read_node() -> Usage {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    node_usage(&meminfo, &stat, user_hz())
}

/// The unit of `/proc/stat` (USER_HZ, 100 on every Linux architecture).
fn user_hz() -> u64 {
    100
}

fn node_usage(meminfo: &str, stat: &str, hz: u64) -> Usage {
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(n * 1024)
        })
    };
    let total = kib("MemTotal");
    let free = kib("MemFree");
    let used = total.zip(free).map(|(t, f)| t.saturating_sub(f));
    let inactive = kib("Inactive(file)").unwrap_or(0);
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let cpu_ns = stat.lines().find_map(|l| {
        let rest = l.strip_prefix("cpu ")?;
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let busy: u64 = f
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| *v)
            .sum();
        Some(busy.saturating_mul(1_000_000_000 / hz))
    });
    Usage {
        cpu_ns,
        memory_usage: used,
        working_set: used.map(|u| u.saturating_sub(inactive)),
        rss: None,
        page_faults: None,
        major_page_faults: None,
        available: kib("MemAvailable"),
    }
}

/// The Summary API's CPUStats.
fn cpu_json(time: &str, usage: &Usage, nano_cores: Option<u64>) -> Value {
    let mut v = json!({"time": time});
    if let Some(n) = nano_cores {
        v["usageNanoCores"] = json!(n);
    }
    if let Some(n) = usage.cpu_ns {
        v["usageCoreNanoSeconds"] = json!(n);
    }
    v
}

/// The Summary API's MemoryStats.
fn memory_json(time: &str, usage: &Usage) -> Value {
    let mut v = json!({"time": time});
    let mut put = |k: &str, n: Option<u64>| {
        if let Some(n) = n {
            v[k] = json!(n);
        }
    };
    put("availableBytes", usage.available);
    put("usageBytes", usage.memory_usage);
    put("workingSetBytes", usage.working_set);
    put("rssBytes", usage.rss);
    put("pageFaults", usage.page_faults);
    put("majorPageFaults", usage.major_page_faults);
    v
}

type Readings = (crate::runtime::PodContainer, Option<Usage>);

/// A pod's figures: its containers' and sandbox's added up.
#[derive(Default)]
struct PodTotals {
    usage: Usage,
    containers: Vec<Value>,
    nano_cores: Option<u64>,
    started: Option<Timestamp>,
}

/// Reads the summary, remembering each cgroup's last cpu reading for the next rate.
pub struct StatsProvider {
    runtime: Option<Runtime>,
    last_cpu: Mutex<HashMap<String, (Instant, u64)>>,
    started: Timestamp,
}

impl StatsProvider {
    pub fn new(runtime: Option<Runtime>) -> Self {
        Self {
            runtime,
            last_cpu: Mutex::new(HashMap::new()),
            started: Timestamp::now(),
        }
    }

    /// The rate since the last reading of `key`, recording this one.
    fn rate(&self, key: &str, now: Instant, cpu_ns: Option<u64>) -> Option<u64> {
        let cpu_ns = cpu_ns?;
        let mut last = self.last_cpu.lock().ok()?;
        let previous = last.insert(key.to_string(), (now, cpu_ns));
        let (then, before) = previous?;
        let secs = now.duration_since(then).as_secs_f64();
        if secs <= 0.0 || cpu_ns < before {
            return None;
        }
        Some(((cpu_ns - before) as f64 / secs) as u64)
    }

    /// The node's readings and every container's (sandboxes included).
    async fn readings(&self) -> Result<(Usage, Vec<Readings>), Error> {
        let node = read_node();
        let mut containers = Vec::new();
        if let Some(rt) = &self.runtime {
            let ns = rt.containerd().namespace().to_string();
            for c in rt.list_pod_containers().await? {
                let usage = read_cgroup(&format!("/keelson/{ns}-{}", c.id));
                containers.push((c, usage));
            }
        }
        Ok((node, containers))
    }

    /// The summary JSON for node `node_name`.
    pub async fn summary(&self, node_name: &str) -> Result<Value, Error> {
        let fresh = self.last_cpu.lock().map(|l| l.is_empty()).unwrap_or(true);
        if fresh {
            // A first reading to compute rates against.
            let (node, containers) = self.readings().await?;
            let now = Instant::now();
            self.rate("node", now, node.cpu_ns);
            for (c, u) in &containers {
                self.rate(&c.id, now, u.and_then(|u| u.cpu_ns));
            }
            tokio::time::sleep(FIRST_SAMPLE_GAP).await;
        }
        let (node, containers) = self.readings().await?;
        let now = Instant::now();
        let time = Timestamp::now().to_string();

        let mut pods: Vec<(String, String, String)> = Vec::new();
        let mut per_pod: HashMap<String, PodTotals> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for (c, usage) in &containers {
            seen.insert(c.id.clone());
            let usage = usage.unwrap_or_default();
            let rate = self.rate(&c.id, now, usage.cpu_ns);
            let started = match &self.runtime {
                Some(rt) => rt
                    .container_status(&ContainerId(c.id.clone()))
                    .await
                    .ok()
                    .and_then(|s| s.started_at),
                None => None,
            };
            let totals = per_pod.entry(c.pod_uid.clone()).or_insert_with(|| {
                pods.push((
                    c.pod_namespace.clone(),
                    c.pod_name.clone(),
                    c.pod_uid.clone(),
                ));
                PodTotals::default()
            });
            totals.usage.add(&usage);
            if let Some(r) = rate {
                totals.nano_cores = Some(totals.nano_cores.unwrap_or(0) + r);
            }
            if c.kind == Kind::Sandbox {
                // The pod started with its sandbox.
                totals.started = started;
                continue;
            }
            let mut cj = json!({
                "name": c.container_name,
                "cpu": cpu_json(&time, &usage, rate),
                "memory": memory_json(&time, &usage),
            });
            if let Some(s) = started {
                cj["startTime"] = json!(s.to_string());
            }
            totals.containers.push(cj);
        }
        // Forget cgroups that are gone.
        if let Ok(mut last) = self.last_cpu.lock() {
            last.retain(|k, _| k == "node" || seen.contains(k));
        }
        let pods: Vec<Value> = pods
            .into_iter()
            .filter_map(|(ns, name, uid)| {
                let t = per_pod.remove(&uid)?;
                let mut pod = json!({
                    "podRef": {"name": name, "namespace": ns, "uid": uid},
                    "containers": t.containers,
                    "cpu": cpu_json(&time, &t.usage, t.nano_cores),
                    "memory": memory_json(&time, &t.usage),
                });
                if let Some(s) = t.started {
                    pod["startTime"] = json!(s.to_string());
                }
                Some(pod)
            })
            .collect();
        let node_rate = self.rate("node", now, node.cpu_ns);
        Ok(json!({
            "node": {
                "nodeName": node_name,
                "startTime": self.started.to_string(),
                "cpu": cpu_json(&time, &node, node_rate),
                "memory": memory_json(&time, &node),
                "systemContainers": [],
            },
            "pods": pods,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_from_proc() {
        let meminfo = "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  100 kB\n";
        let stat = "cpu  10 0 5 100 7 0 0 0 0 0\ncpu0 10 0 5 100 7 0 0 0 0 0\n";
        let u = node_usage(meminfo, stat, 100);
        assert_eq!(u.memory_usage, Some(800 * 1024));
        assert_eq!(u.working_set, Some(700 * 1024));
        assert_eq!(u.available, Some(600 * 1024));
        assert_eq!(u.cpu_ns, Some(15 * 10_000_000));
    }

    #[test]
    fn cgroup_v2_files() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("memory.current"), "4096\n").expect("write");
        std::fs::write(
            dir.path().join("memory.stat"),
            "anon 2048\ninactive_file 1024\npgfault 7\npgmajfault 1\n",
        )
        .expect("write");
        let u = read_v2(dir.path()).expect("usage");
        assert_eq!(u.cpu_ns, Some(1_500_000));
        assert_eq!(u.memory_usage, Some(4096));
        assert_eq!(u.working_set, Some(3072));
        assert_eq!(u.rss, Some(2048));
        let time = "2026-01-01T00:00:00Z";
        let m = memory_json(time, &u);
        assert_eq!(m["workingSetBytes"], 3072);
        assert_eq!(m["usageBytes"], 4096);
        assert_eq!(m["time"], time);
        let c = cpu_json(time, &u, Some(5));
        assert_eq!(c["usageNanoCores"], 5);
        assert_eq!(c["usageCoreNanoSeconds"], 1_500_000);
        assert!(read_v2(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn rates_come_from_consecutive_readings() {
        let p = StatsProvider::new(None);
        let t0 = Instant::now();
        assert_eq!(p.rate("c", t0, Some(1_000)), None);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(p.rate("c", t1, Some(2_000_001_000)), Some(1_000_000_000));
    }

    #[tokio::test]
    async fn summary_shape_without_a_runtime() {
        let p = StatsProvider::new(None);
        let s = p.summary("node-a").await.expect("summary");
        assert_eq!(s["node"]["nodeName"], "node-a");
        assert!(
            s["node"]["memory"]["workingSetBytes"]
                .as_u64()
                .is_some_and(|n| n > 0)
        );
        assert!(s["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().is_some());
        assert_eq!(s["pods"], json!([]));
    }
}
