//! The kernel-mode proxier: watches Services and Endpoints and keeps the nftables table in
//! step with them.
//!
//! Changes are gathered for [`MIN_SYNC_INTERVAL`] before a sync, so a burst of endpoint
//! updates costs one transaction. A sync that fails (nft refusing it, or the table removed by
//! someone) is followed by a full one after [`RETRY`]. Every `sync_period` the table is
//! checked and rebuilt if it has gone. After a sync, conntrack entries of UDP flows whose
//! endpoint (kernel mode) or listener (userspace mode) went away are deleted (see
//! [`crate::conntrack`]).

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use keelson_client::{Change, ObjectKey};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::Nft;
use crate::conntrack::{self, Stale};
use crate::model::{ServiceMap, service_map};
use crate::nft::{Config, Ruleset, ruleset, transaction};
use crate::userspace::{self, Portals};

/// How services are proxied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// nftables rules DNAT to the endpoints.
    Kernel,
    /// The book's proxy: nftables rules redirect to a listener per service port, which
    /// copies connections to the endpoints.
    Userspace,
}

/// What one mode keeps between syncs.
enum State {
    Kernel { applied: Option<Ruleset> },
    Userspace { portals: Portals, applied: bool },
}

impl State {
    fn new(mode: Mode, options: &Options) -> State {
        match mode {
            Mode::Kernel => State::Kernel { applied: None },
            Mode::Userspace => State::Userspace {
                portals: Portals::new(options.udp_idle_timeout),
                applied: false,
            },
        }
    }

    /// The conntrack entries that going from `old` to `new` leaves stale.
    fn stale(&self, old: &ServiceMap, new: &ServiceMap) -> Vec<Stale> {
        match self {
            State::Kernel { .. } => conntrack::stale_endpoints(old, new),
            State::Userspace { .. } => conntrack::stale_portals(old, new),
        }
    }

    /// Forgets what was applied: the next sync rebuilds the table.
    fn reset(&mut self) {
        match self {
            State::Kernel { applied } => *applied = None,
            State::Userspace { applied, .. } => *applied = false,
        }
    }

    /// Brings the node in line with `map`.
    async fn sync(&mut self, map: &ServiceMap, nft: &Nft, config: &Config) -> Result<(), String> {
        let table = config.table.clone();
        let (text, wanted) = match self {
            State::Kernel { applied } => {
                let wanted = ruleset(map, config);
                (transaction(&table, applied.as_ref(), &wanted), Some(wanted))
            }
            State::Userspace { portals, applied } => {
                let ports = portals
                    .sync(map)
                    .await
                    .map_err(|e| format!("cannot open a service listener: {e}"))?;
                let rules = userspace::portal_rules(map, &ports);
                let rejects = ruleset(map, config);
                (
                    userspace::transaction(&table, !*applied, &rules, &rejects),
                    None,
                )
            }
        };
        let nft = nft.clone();
        tokio::task::spawn_blocking(move || nft.apply(&text))
            .await
            .map_err(|e| format!("the sync task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        match self {
            State::Kernel { applied } => *applied = wanted,
            State::Userspace { applied, .. } => *applied = true,
        }
        Ok(())
    }
}

/// How long changes are gathered before a sync.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(50);
/// How long after a failed sync the next (full) one is tried.
pub const RETRY: Duration = Duration::from_secs(1);

/// Settings beyond the rules' [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Userspace mode: how long a UDP session may idle (kube-proxy's `udpIdleTimeout`).
    pub udp_idle_timeout: Duration,
    /// Delete conntrack entries of UDP flows whose endpoint or listener went away.
    pub flush_conntrack: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            udp_idle_timeout: crate::userspace::DEFAULT_UDP_IDLE_TIMEOUT,
            flush_conntrack: true,
        }
    }
}

/// Runs the proxier until `shutdown` turns true; the table is left in place (a restarted
/// proxy replaces it), unless `cleanup_on_exit`. [`Options::default`] for the rest.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: kube::Client,
    mode: Mode,
    nft: Nft,
    config: Config,
    sync_period: Duration,
    cleanup_on_exit: bool,
    shutdown: watch::Receiver<bool>,
) {
    run_with(
        client,
        mode,
        nft,
        config,
        sync_period,
        cleanup_on_exit,
        Options::default(),
        shutdown,
    )
    .await;
}

/// [`run`], with `options`.
#[allow(clippy::too_many_arguments)]
pub async fn run_with(
    client: kube::Client,
    mode: Mode,
    nft: Nft,
    config: Config,
    sync_period: Duration,
    cleanup_on_exit: bool,
    options: Options,
    mut shutdown: watch::Receiver<bool>,
) {
    let services: Api<Service> = Api::all(client.clone());
    let endpoints: Api<Endpoints> = Api::all(client);
    let mut svc_changes = pin!(keelson_client::changes(
        services,
        watcher::Config::default(),
        "services"
    ));
    let mut ep_changes = pin!(keelson_client::changes(
        endpoints,
        watcher::Config::default(),
        "endpoints"
    ));
    let mut svcs: BTreeMap<ObjectKey, Service> = BTreeMap::new();
    let mut eps: BTreeMap<ObjectKey, Endpoints> = BTreeMap::new();
    let (mut svc_synced, mut ep_synced) = (false, false);
    let mut state = State::new(mode, &options);
    // The map the last successful sync served, to find stale conntrack entries.
    let mut served = ServiceMap::new();
    let mut dirty = false;
    let mut next_check = tokio::time::Instant::now() + sync_period;
    loop {
        let ready = svc_synced && ep_synced;
        let wait = if ready && dirty {
            MIN_SYNC_INTERVAL
        } else {
            next_check.saturating_duration_since(tokio::time::Instant::now())
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(change) = svc_changes.next() => {
                match change {
                    Change::Applied(s) => { svcs.insert(ObjectKey::of(&s), s); }
                    Change::Deleted(k) => { svcs.remove(&k); }
                    Change::Synced => svc_synced = true,
                }
                dirty = true;
            }
            Some(change) = ep_changes.next() => {
                match change {
                    Change::Applied(e) => { eps.insert(ObjectKey::of(&e), e); }
                    Change::Deleted(k) => { eps.remove(&k); }
                    Change::Synced => ep_synced = true,
                }
                dirty = true;
            }
            _ = tokio::time::sleep(wait) => {
                if !ready {
                    continue;
                }
                if !dirty {
                    // The periodic check: rebuild a table that has gone.
                    next_check = tokio::time::Instant::now() + sync_period;
                    match nft.list_table(&config.table) {
                        Ok(Some(_)) => continue,
                        Ok(None) => {
                            tracing::warn!(table = %config.table, "the proxy's nftables table is gone; rebuilding it");
                            state.reset();
                        }
                        Err(e) => {
                            tracing::warn!("cannot check the proxy's nftables table: {e}");
                            continue;
                        }
                    }
                }
                let map = service_map(svcs.values(), eps.values());
                match state.sync(&map, &nft, &config).await {
                    Ok(()) => {
                        tracing::debug!(services = map.len(), "proxy rules synced");
                        dirty = false;
                        let stale = state.stale(&served, &map);
                        if options.flush_conntrack && !stale.is_empty() {
                            let netns = nft.netns.clone();
                            let done = tokio::task::spawn_blocking(move || {
                                conntrack::flush(netns.as_deref(), &stale)
                            })
                            .await;
                            match done {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => tracing::warn!("cannot delete stale UDP conntrack entries: {e}"),
                                Err(e) => tracing::warn!("the conntrack task failed: {e}"),
                            }
                        }
                        served = map;
                    }
                    Err(e) => {
                        tracing::warn!("proxy sync failed; a full sync follows: {e}");
                        state.reset();
                        dirty = true;
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }
    if cleanup_on_exit && let Err(e) = nft.delete_table(&config.table) {
        tracing::warn!("cannot remove the proxy's nftables table: {e}");
    }
}
