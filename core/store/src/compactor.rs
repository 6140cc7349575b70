//! Periodic compaction, for either backend.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Revision, Store};

/// How much history the background compactor keeps.
///
/// Each tick compacts to the *older* of two revisions: the store's revision at the previous
/// tick, and the current revision minus `keep`. So history always spans at least one full
/// interval (like the Kubernetes API server, which compacts etcd every 5 minutes to the
/// revision it saw 5 minutes earlier) and at least `keep` revisions, so that a burst of writes
/// does not send every watcher that blinked back to a full relist.
#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// Time between compactions. Default 5 minutes.
    pub interval: Duration,
    /// Revisions always kept behind the current one. Default 10,000.
    pub keep: Revision,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5 * 60),
            keep: 10_000,
        }
    }
}

/// A running background compactor; dropping it stops the compaction loop.
pub struct Compactor {
    task: JoinHandle<()>,
}

impl Compactor {
    /// Starts compacting `store` on the current tokio runtime.
    pub fn spawn<S: Store + ?Sized>(store: Arc<S>, config: CompactorConfig) -> Self {
        Self {
            task: tokio::spawn(run(store, config)),
        }
    }

    /// Stops the compactor and waits until it has stopped (a compaction in progress is
    /// abandoned; the store finishes or resumes it on its own).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<S: Store + ?Sized>(store: Arc<S>, config: CompactorConfig) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: Option<Revision> = None;
    let mut compacted: Revision = 0;
    loop {
        ticker.tick().await;
        let current = match store.current_revision().await {
            Ok(revision) => revision,
            Err(e) => {
                tracing::warn!(error = %e, "compactor: cannot read the current revision");
                continue;
            }
        };
        if let Some(previous) = previous {
            let target = previous.min(current - config.keep.max(0));
            if target > compacted {
                match store.compact(target).await {
                    Ok(()) => {
                        tracing::debug!(revision = target, "compactor: compacted");
                        compacted = target;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, revision = target, "compactor: compaction failed")
                    }
                }
            }
        }
        previous = Some(current);
    }
}
