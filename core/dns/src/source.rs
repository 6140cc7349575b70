//! The watch loop: Services and Endpoints from the API server, turned into a fresh [`Zone`]
//! whenever either changes.
//!
//! Changes are gathered for [`MIN_SYNC_INTERVAL`] before the zone is rebuilt, so a burst of
//! endpoint updates costs one rebuild; a change is served well within a second.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use keelson_client::{Change, ObjectKey};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use crate::zone::Zone;

/// How long changes are gathered before the zone is rebuilt.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// Keeps `zone` in step with the cluster's Services and Endpoints until `shutdown` turns
/// true. The zone stays `None` until both have been listed once.
pub async fn run(
    client: kube::Client,
    domain: Name,
    ttl: u32,
    zone: watch::Sender<Option<Arc<Zone>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut svc_changes = pin!(keelson_client::changes(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        "services"
    ));
    let mut ep_changes = pin!(keelson_client::changes(
        Api::<Endpoints>::all(client),
        watcher::Config::default(),
        "endpoints"
    ));
    let mut svcs: BTreeMap<ObjectKey, Service> = BTreeMap::new();
    let mut eps: BTreeMap<ObjectKey, Endpoints> = BTreeMap::new();
    let (mut svc_synced, mut ep_synced) = (false, false);
    let mut dirty = false;
    loop {
        let ready = svc_synced && ep_synced;
        let wait = if ready && dirty {
            MIN_SYNC_INTERVAL
        } else {
            Duration::from_secs(3600)
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
            _ = tokio::time::sleep(wait), if ready && dirty => {
                let built = Zone::build(&domain, ttl, svcs.values(), eps.values());
                tracing::debug!(names = built.len(), "DNS records rebuilt");
                zone.send_replace(Some(Arc::new(built)));
                dirty = false;
            }
        }
    }
}
