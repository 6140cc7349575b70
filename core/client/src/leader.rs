//! Leader election through a coordination.k8s.io/v1 Lease, with Kubernetes' rules and
//! defaults (`--leader-elect-lease-duration=15s`, `--leader-elect-renew-deadline=10s`,
//! `--leader-elect-retry-period=2s`).
//!
//! A candidate takes the Lease when it has no holder, or when its holder has not renewed it
//! for `leaseDurationSeconds` as *this candidate observed* (the candidate's own clock measures
//! how long the record stayed unchanged, so clocks need not agree). The leader renews every
//! retry period; if it cannot renew within the renew deadline it stops leading. Every write
//! carries the resourceVersion it read, so two candidates cannot both win. A leader that
//! stops cleanly releases the Lease, and a standby takes over at its next retry instead of
//! waiting out the lease.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease is and who competes for it.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// The Lease's namespace (Kubernetes' components use `kube-system`).
    pub namespace: String,
    /// The Lease's name (`kube-scheduler`, `kube-controller-manager`).
    pub name: String,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Kubernetes' defaults, for the Lease `namespace/name`, as a candidate named from the
    /// host name and a random suffix.
    pub fn new(namespace: &str, name: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<uuid>`, the identity Kubernetes' components use.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Whether this process leads, kept current by the election task.
#[derive(Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Without an election, the sender of the constant `true`, kept so receivers never see
    /// a closed channel.
    _fixed: Option<watch::Sender<bool>>,
    stop: Option<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Leadership {
    /// Leadership without an election (`--leader-elect=false`): always leading.
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership {
            rx,
            _fixed: Some(tx),
            stop: None,
            task: None,
        }
    }

    /// Runs an election for `config` on the current runtime.
    pub fn elect(client: Client, config: LeaderConfig) -> Leadership {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let candidate = Candidate {
            api,
            config,
            observed: None,
        };
        let task = tokio::spawn(candidate.run(tx, stop_rx));
        Leadership {
            rx,
            _fixed: None,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Whether this process leads now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// A receiver that sees every change of leadership.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Stops competing and, when leading, releases the Lease so a standby takes over now.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The Lease as last read, and when this candidate first saw it that way.
#[derive(Debug)]
struct Observed {
    holder: String,
    renew_time: Option<Timestamp>,
    lease_duration: Duration,
    since: Instant,
}

struct Candidate {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl Candidate {
    async fn run(mut self, tx: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut leading = false;
        let mut last_renew = Instant::now();
        loop {
            // A request that never answers (a stalled API server, a half-open connection) must
            // not keep a leader leading: each attempt gets at most what is left of the renew
            // deadline, so the leader stands down before a standby may take the lease.
            let budget = if leading {
                self.config
                    .renew_deadline
                    .saturating_sub(last_renew.elapsed())
                    .max(Duration::from_millis(50))
            } else {
                self.config.renew_deadline
            };
            let attempt = match tokio::time::timeout(budget, self.try_acquire_or_renew()).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {budget:?}")),
            };
            match attempt {
                Ok(true) => {
                    last_renew = Instant::now();
                    if !leading {
                        leading = true;
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                        let _ = tx.send(true);
                    }
                }
                Ok(false) => {
                    if leading {
                        leading = false;
                        tracing::warn!(lease = %self.config.name, "another candidate holds the lease; no longer leading");
                        let _ = tx.send(false);
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "lease update failed");
                    if leading && last_renew.elapsed() >= self.config.renew_deadline {
                        leading = false;
                        tracing::warn!(lease = %self.config.name, "could not renew within the renew deadline; no longer leading");
                        let _ = tx.send(false);
                    }
                }
            }
            let wait = if leading {
                self.config.retry_period
            } else {
                jittered(self.config.retry_period)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        if leading {
            let _ = tx.send(false);
            match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "could not release the lease")
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.name, "could not release the lease in time")
                }
            }
        }
    }

    /// One attempt: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let me = self.config.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let lease_duration = Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(self.config.lease_duration.as_secs()),
        );
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew_time,
                lease_duration,
                since: Instant::now(),
            });
        }
        let held_by_other = !holder.is_empty()
            && holder != me
            && self
                .observed
                .as_ref()
                .is_some_and(|o| o.since.elapsed() < o.lease_duration);
        if held_by_other {
            return Ok(false);
        }
        let (acquired, transitions) = if holder == me {
            (
                spec.acquire_time.map(|t| t.0).unwrap_or(now),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now, spec.lease_transitions.unwrap_or(0).saturating_add(1))
        };
        lease.spec = Some(self.spec(acquired, now, transitions));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: i32::try_from(self.config.lease_duration.as_secs()).ok(),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up: no holder, so the next candidate takes it at once.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %self.config.name, "released the lease");
        Ok(())
    }
}

/// `period` plus up to 20% so candidates do not retry in lockstep.
fn jittered(period: Duration) -> Duration {
    let frac = f64::from(rand_fraction()) / f64::from(u32::MAX);
    period.mul_f64(1.0 + 0.2 * frac)
}

fn rand_fraction() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
