//! Leader-election flags and config keys, the same for every daemon that elects a leader
//! (`keelson scheduler`, `keelson controller-manager`), spelled as Kubernetes' daemons spell
//! them.

use std::time::Duration;

use anyhow::bail;
use clap::Args;
use keelson_client::leader::LeaderConfig;
use serde::Deserialize;

use crate::config::{duration, parse_duration};

/// `--leader-elect*` flags. Each overrides the same key of the config file's `leaderElection`.
#[derive(Args, Debug, Default, Clone)]
pub struct LeaderElectionArgs {
    /// Run only while holding the leader Lease (default true).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// How long a leader's claim lasts without renewal (e.g. 15s).
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_lease_duration: Option<Duration>,
    /// How long the leader tries to renew before it stops leading (e.g. 10s).
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Option<Duration>,
    /// How often candidates try to acquire and the leader renews (e.g. 2s).
    #[arg(long, value_parser = parse_duration)]
    pub leader_elect_retry_period: Option<Duration>,
    /// The Lease's namespace.
    #[arg(long)]
    pub leader_elect_resource_namespace: Option<String>,
    /// The Lease's name.
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

/// The config file's `leaderElection` section.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionFile {
    leader_elect: Option<bool>,
    lease_duration: Option<String>,
    renew_deadline: Option<String>,
    retry_period: Option<String>,
    resource_namespace: Option<String>,
    resource_name: Option<String>,
}

impl LeaderElectionArgs {
    /// Merges the flags over `file`; `None` when leader election is off. The Lease is
    /// `kube-system/<default_name>` unless named.
    pub fn resolve(
        self,
        file: LeaderElectionFile,
        default_name: &str,
    ) -> anyhow::Result<Option<LeaderConfig>> {
        if !self.leader_elect.or(file.leader_elect).unwrap_or(true) {
            return Ok(None);
        }
        let mut c = LeaderConfig::new(
            &self
                .leader_elect_resource_namespace
                .or(file.resource_namespace)
                .unwrap_or_else(|| "kube-system".into()),
            &self
                .leader_elect_resource_name
                .or(file.resource_name)
                .unwrap_or_else(|| default_name.into()),
        );
        if let Some(d) = duration(
            self.leader_elect_lease_duration,
            "leaderElection.leaseDuration",
            file.lease_duration,
        )? {
            c.lease_duration = d;
        }
        if let Some(d) = duration(
            self.leader_elect_renew_deadline,
            "leaderElection.renewDeadline",
            file.renew_deadline,
        )? {
            c.renew_deadline = d;
        }
        if let Some(d) = duration(
            self.leader_elect_retry_period,
            "leaderElection.retryPeriod",
            file.retry_period,
        )? {
            c.retry_period = d;
        }
        if c.renew_deadline >= c.lease_duration {
            bail!("leader election: the renew deadline must be shorter than the lease duration");
        }
        if c.retry_period >= c.renew_deadline {
            bail!("leader election: the retry period must be shorter than the renew deadline");
        }
        Ok(Some(c))
    }
}
