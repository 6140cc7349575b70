//! `keelson scheduler`: flags and the YAML config file, the policies loaded (built-in and
//! plugins) and the daemon started. Every error a config can cause is reported before the
//! scheduler connects: an unknown key, an unknown policy, a plugin that does not load.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use keelson_client::leader::{LeaderConfig, Leadership, default_identity};

use crate::config::{base_dir, kubeconfig, load_yaml};
use crate::leader_args::{LeaderElectionArgs, LeaderElectionFile};
use keelson_plugin_host::{HostConfig, PluginHost};
use keelson_scheduler::Scheduler;
use keelson_scheduler::config::PolicyConfig;
use keelson_scheduler::daemon::{self, DaemonOptions};
use keelson_scheduler::framework::Framework;
use keelson_scheduler::scheduler::DEFAULT_SCHEDULER_NAME;
use serde::Deserialize;
use tokio::sync::watch;

/// `keelson scheduler` flags. Each overrides the same key of `--config`.
#[derive(Args, Debug, Default, Clone)]
pub struct SchedulerArgs {
    /// YAML config file (keys: kubeconfig, schedulerName, policyConfigFile, policy,
    /// leaderElection, pluginCacheDir, bindConcurrency, percentageOfNodesToScore).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then
    /// /var/lib/keelson/kubeconfig.yaml).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Place the pods whose spec.schedulerName is this.
    #[arg(long)]
    pub scheduler_name: Option<String>,
    /// A Kubernetes v1 Policy file (JSON): predicates and priorities, built-in or plugins.
    #[arg(long)]
    pub policy_config_file: Option<PathBuf>,
    #[command(flatten)]
    pub leader: LeaderElectionArgs,
    /// Where compiled plugin code is cached.
    #[arg(long)]
    pub plugin_cache_dir: Option<PathBuf>,
    /// How many bindings may be in flight at once.
    #[arg(long)]
    pub bind_concurrency: Option<usize>,
    /// Share of the nodes a cycle looks for feasible ones among before it scores them:
    /// 0 (default) adapts to the cluster's size as Kubernetes does; 100 evaluates every node.
    #[arg(long)]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Seed for breaking ties between equally good nodes (random by default).
    #[arg(long, hide = true)]
    pub seed: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SchedulerFile {
    kubeconfig: Option<PathBuf>,
    scheduler_name: Option<String>,
    policy_config_file: Option<PathBuf>,
    /// A v1 Policy written inline (YAML or JSON).
    policy: Option<serde_json::Value>,
    #[serde(default)]
    leader_election: LeaderElectionFile,
    plugin_cache_dir: Option<PathBuf>,
    bind_concurrency: Option<usize>,
    percentage_of_nodes_to_score: Option<u32>,
}

/// Everything the scheduler needs, resolved and checked.
pub struct Resolved {
    pub kubeconfig: PathBuf,
    pub options: DaemonOptions,
    pub policy: PolicyConfig,
    pub leader: Option<LeaderConfig>,
    pub plugin_cache_dir: Option<PathBuf>,
    pub percentage_of_nodes_to_score: u32,
    pub seed: u64,
}

impl SchedulerArgs {
    /// Merges flags over the file and checks everything but the connection.
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let file: SchedulerFile = load_yaml(self.config.as_deref())?;
        let base = base_dir(self.config.as_deref());
        let kubeconfig = kubeconfig(self.kubeconfig, file.kubeconfig, &base);
        let policy_file = self
            .policy_config_file
            .or(file.policy_config_file.map(|p| base.join(p)));
        let policy = match (policy_file, file.policy) {
            (Some(_), Some(_)) if self.config.is_some() => {
                bail!(
                    "give the policy either inline (policy) or as a file (policyConfigFile), not both"
                )
            }
            (Some(path), _) => PolicyConfig::load(Some(&path))
                .with_context(|| format!("policy config file {}", path.display()))?,
            (None, Some(inline)) => PolicyConfig::from_json(&inline.to_string())
                .map(|c| c.relative_to(&base))
                .with_context(|| {
                    format!(
                        "policy in config file {}",
                        self.config.as_deref().unwrap_or(Path::new("")).display()
                    )
                })?,
            (None, None) => PolicyConfig::default_provider(),
        };
        let leader = self
            .leader
            .resolve(file.leader_election, "kube-scheduler")?;
        let bind_concurrency = self
            .bind_concurrency
            .or(file.bind_concurrency)
            .unwrap_or(16);
        if bind_concurrency == 0 {
            bail!("bindConcurrency must be at least 1");
        }
        let percentage_of_nodes_to_score = self
            .percentage_of_nodes_to_score
            .or(file.percentage_of_nodes_to_score)
            .unwrap_or(0);
        if percentage_of_nodes_to_score > 100 {
            bail!("percentageOfNodesToScore must be between 0 and 100");
        }
        let instance = leader
            .as_ref()
            .map(|l| l.identity.clone())
            .unwrap_or_else(default_identity);
        Ok(Resolved {
            kubeconfig,
            options: DaemonOptions {
                scheduler_name: self
                    .scheduler_name
                    .or(file.scheduler_name)
                    .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into()),
                bind_concurrency,
                instance,
            },
            policy,
            leader,
            plugin_cache_dir: self.plugin_cache_dir.or(file.plugin_cache_dir),
            percentage_of_nodes_to_score,
            seed: self.seed.unwrap_or_else(rand_seed),
        })
    }
}

fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}

/// Loads every policy (plugins included) into a scheduler. The host must outlive it.
pub fn build(resolved: &Resolved) -> anyhow::Result<(PluginHost, Scheduler)> {
    let host = PluginHost::new(HostConfig {
        cache_dir: resolved.plugin_cache_dir.clone(),
        ..HostConfig::default()
    })
    .context("start the plugin host")?;
    let mut framework = Framework::new(&resolved.policy, &host, resolved.seed)
        .context("load scheduler policies")?;
    framework.set_percentage_of_nodes_to_score(resolved.percentage_of_nodes_to_score);
    tracing::info!(policies = ?framework, "scheduler policies loaded");
    Ok((
        host,
        Scheduler::new(framework, resolved.options.scheduler_name.clone()),
    ))
}

/// Connects and runs until `shutdown` turns true.
pub async fn run(
    resolved: Resolved,
    scheduler: Scheduler,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = keelson_client::connect(&resolved.kubeconfig, "keelson-scheduler")
        .await
        .context("connect to the API server")?;
    let leadership = match resolved.leader {
        Some(config) => Leadership::elect(client.clone(), config),
        None => Leadership::always(),
    };
    daemon::run(client, scheduler, resolved.options, leadership, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    #[test]
    fn unknown_keys_and_bad_policies_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(
            &p,
            "schedulerName: x\nleaderElection:\n  leaseDurations: 3s\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            SchedulerArgs {
                config: Some(p.clone()),
                ..Default::default()
            }
            .resolve()
            .err()
            .unwrap()
        );
        assert!(err.contains("leaseDurations"), "{err}");
        std::fs::write(
            &p,
            "policy:\n  kind: Policy\n  apiVersion: v1\n  predicates:\n  - name: PodFitsEverything\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            SchedulerArgs {
                config: Some(p),
                ..Default::default()
            }
            .resolve()
            .err()
            .unwrap()
        );
        assert!(err.contains("PodFitsEverything"), "{err}");
    }

    #[test]
    fn flags_override_the_file_and_plugin_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(
            &p,
            "schedulerName: from-file\nbindConcurrency: 4\nleaderElection:\n  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 1s\npolicy:\n  kind: Policy\n  apiVersion: v1\n  priorities:\n  - path: zones.wasm\n    weight: 2\n",
        )
        .unwrap();
        let r = SchedulerArgs {
            config: Some(p),
            scheduler_name: Some("from-flag".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(r.options.scheduler_name, "from-flag");
        assert_eq!(r.options.bind_concurrency, 4);
        let l = r.leader.unwrap();
        assert_eq!(l.lease_duration, Duration::from_secs(4));
        assert_eq!(l.namespace, "kube-system");
        let keelson_scheduler::config::PolicySource::Plugin { path, .. } =
            &r.policy.priorities[0].source
        else {
            panic!("{:?}", r.policy.priorities);
        };
        assert_eq!(path, &dir.path().join("zones.wasm"));
    }
}
