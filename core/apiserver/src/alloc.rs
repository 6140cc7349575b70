//! Service cluster IPs and node ports. Each allocation is a key in the store created only if
//! absent, so two API servers on one etcd never hand out the same address, and allocations
//! survive restarts without a separate bitmap.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipnet::Ipv4Net;
use rand::Rng;

use keelson_store::{ListOptions, Store};

use crate::status::{ApiError, ApiResult};

const IP_PREFIX: &str = "/keelson/allocations/serviceips/";
const PORT_PREFIX: &str = "/keelson/allocations/nodeports/";

/// What went wrong with a requested IP or port; the caller turns it into a 422 naming the field.
#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    OutOfRange(String),
    Taken,
    Exhausted,
}

pub struct Allocator {
    store: Arc<dyn Store>,
    net: Ipv4Net,
    ports: (u16, u16),
    used_ips: Mutex<HashSet<Ipv4Addr>>,
    used_ports: Mutex<HashSet<u16>>,
}

impl Allocator {
    /// Loads the existing allocations. `net` is `--service-cluster-ip-range`, `ports` the
    /// inclusive `--service-node-port-range`.
    pub async fn load(
        store: Arc<dyn Store>,
        net: Ipv4Net,
        ports: (u16, u16),
    ) -> Result<Self, keelson_store::Error> {
        let mut used_ips = HashSet::new();
        for kv in store.list(IP_PREFIX, ListOptions::default()).await?.items {
            if let Ok(ip) = kv.key[IP_PREFIX.len()..].parse() {
                used_ips.insert(ip);
            }
        }
        let mut used_ports = HashSet::new();
        for kv in store.list(PORT_PREFIX, ListOptions::default()).await?.items {
            if let Ok(p) = kv.key[PORT_PREFIX.len()..].parse() {
                used_ports.insert(p);
            }
        }
        Ok(Self {
            store,
            net,
            ports,
            used_ips: Mutex::new(used_ips),
            used_ports: Mutex::new(used_ports),
        })
    }

    pub fn network(&self) -> Ipv4Net {
        self.net
    }

    /// The first usable address of the range: Kubernetes gives it to the `kubernetes` service.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net.network()) + 1)
    }

    fn ip_range(&self) -> (u32, u32) {
        let base = u32::from(self.net.network());
        let bcast = u32::from(self.net.broadcast());
        // Network and broadcast addresses are never handed out.
        (base + 1, bcast.saturating_sub(1).max(base + 1))
    }

    /// Claims `ip` (a requested address) or a free one. `owner` is "ns/name".
    pub async fn allocate_ip(
        &self,
        requested: Option<&str>,
        owner: &str,
    ) -> Result<Ipv4Addr, AllocError> {
        if let Some(req) = requested {
            let ip: Ipv4Addr = req.parse().map_err(|_| {
                AllocError::OutOfRange(format!("{req} is not a valid IPv4 address"))
            })?;
            let (lo, hi) = self.ip_range();
            let n = u32::from(ip);
            if n < lo || n > hi {
                return Err(AllocError::OutOfRange(format!(
                    "provided IP is not in the valid range. The range of valid IPs is {}",
                    self.net
                )));
            }
            return if self.claim(IP_PREFIX, &ip.to_string(), owner).await? {
                lock(&self.used_ips).insert(ip);
                Ok(ip)
            } else {
                Err(AllocError::Taken)
            };
        }
        let (lo, hi) = self.ip_range();
        let first = self.first_ip();
        self.claim_free(
            IP_PREFIX,
            &self.used_ips,
            || Ipv4Addr::from(rand::rng().random_range(lo..=hi)),
            (lo..=hi).map(Ipv4Addr::from),
            // The first address is kept for the `kubernetes` service.
            |ip| ip == first,
            owner,
        )
        .await
    }

    pub async fn allocate_port(
        &self,
        requested: Option<u16>,
        owner: &str,
    ) -> Result<u16, AllocError> {
        let (lo, hi) = self.ports;
        if let Some(p) = requested {
            if p < lo || p > hi {
                return Err(AllocError::OutOfRange(format!(
                    "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                )));
            }
            return if self.claim(PORT_PREFIX, &p.to_string(), owner).await? {
                lock(&self.used_ports).insert(p);
                Ok(p)
            } else {
                Err(AllocError::Taken)
            };
        }
        self.claim_free(
            PORT_PREFIX,
            &self.used_ports,
            || rand::rng().random_range(lo..=hi),
            lo..=hi,
            |_| false,
            owner,
        )
        .await
    }

    /// Claims a free id: random probes first (cheap while the range is mostly free), then one
    /// sweep of the whole range. Ids found taken are remembered so they are not tried again.
    async fn claim_free<T: Copy + Eq + std::hash::Hash + std::fmt::Display>(
        &self,
        prefix: &str,
        used: &Mutex<HashSet<T>>,
        random: impl Fn() -> T,
        sweep: impl Iterator<Item = T>,
        reserved: impl Fn(T) -> bool,
        owner: &str,
    ) -> Result<T, AllocError> {
        for candidate in (0..64).map(|_| random()).chain(sweep) {
            if reserved(candidate) || lock(used).contains(&candidate) {
                continue;
            }
            let won = self.claim(prefix, &candidate.to_string(), owner).await?;
            lock(used).insert(candidate);
            if won {
                return Ok(candidate);
            }
        }
        Err(AllocError::Exhausted)
    }

    /// Claims the `kubernetes` service's address (idempotent).
    pub async fn reserve_first_ip(&self, owner: &str) -> ApiResult<Ipv4Addr> {
        let ip = self.first_ip();
        self.claim(IP_PREFIX, &ip.to_string(), owner)
            .await
            .map_err(|e| ApiError::internal(format!("allocate {ip}: {e:?}")))?;
        lock(&self.used_ips).insert(ip);
        Ok(ip)
    }

    pub async fn release_ip(&self, ip: &str) {
        if let Ok(addr) = ip.parse::<Ipv4Addr>() {
            self.release(IP_PREFIX, ip).await;
            lock(&self.used_ips).remove(&addr);
        }
    }

    pub async fn release_port(&self, port: u16) {
        self.release(PORT_PREFIX, &port.to_string()).await;
        lock(&self.used_ports).remove(&port);
    }

    async fn claim(&self, prefix: &str, id: &str, owner: &str) -> Result<bool, AllocError> {
        match self
            .store
            .create(&format!("{prefix}{id}"), Bytes::from(owner.to_string()))
            .await
        {
            Ok(_) => Ok(true),
            Err(keelson_store::Error::AlreadyExists(_)) => Ok(false),
            Err(e) => {
                tracing::error!(error = %e, "allocation store error");
                Err(AllocError::Exhausted)
            }
        }
    }

    async fn release(&self, prefix: &str, id: &str) {
        match self.store.delete(&format!("{prefix}{id}"), None).await {
            Ok(_) | Err(keelson_store::Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, id, "could not release allocation"),
        }
    }

    /// Releases allocations whose owner no longer exists (left behind by a crash between
    /// allocating and storing the service). `owners` holds the "ns/name" of every service.
    pub async fn repair(&self, owners: &HashSet<String>) -> Result<usize, keelson_store::Error> {
        let mut released = 0;
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            for kv in self.store.list(prefix, ListOptions::default()).await?.items {
                let owner = String::from_utf8_lossy(&kv.value).to_string();
                if owner == "default/kubernetes" || owners.contains(&owner) {
                    continue;
                }
                let id = &kv.key[prefix.len()..];
                if prefix == IP_PREFIX {
                    self.release_ip(id).await;
                } else if let Ok(p) = id.parse() {
                    self.release_port(p).await;
                }
                released += 1;
            }
        }
        Ok(released)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
