//! Watchers: history from the log, then live events from the writer's broadcast channel.
//!
//! A watcher subscribes to the channel *before* it reads the log, and the writer publishes an
//! event only after committing it, so every event newer than the log snapshot is still queued
//! on the channel: switching from log to channel loses nothing. Events the snapshot already
//! covered are skipped by revision. When the watcher falls so far behind that the channel drops
//! events for it, it goes back to the log from the last revision it has seen.

use std::collections::VecDeque;

use tokio::sync::broadcast;

use super::SqliteStore;
use super::read;
use crate::{Error, Event, Result, Revision, WatchStream};

/// Events read from the log per query while catching up.
const HISTORY_PAGE: usize = 1_000;

struct Watcher {
    store: SqliteStore,
    prefix: String,
    live: broadcast::Receiver<Event>,
    /// Every revision up to this one has been delivered or was not under `prefix`.
    seen: Revision,
    /// True while events come from the log rather than the channel.
    catching_up: bool,
    buffer: VecDeque<Event>,
    done: bool,
}

pub(super) async fn watch(
    store: SqliteStore,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    let live = store.inner.events.subscribe();
    let mut watcher = Watcher {
        store,
        prefix: prefix.to_string(),
        live,
        seen: after.max(0),
        catching_up: true,
        buffer: VecDeque::new(),
        done: false,
    };
    // Reading the first page here reports a compacted start revision to the caller at once.
    watcher.catch_up_page().await?;
    Ok(Box::pin(futures::stream::unfold(
        watcher,
        |mut watcher| async move {
            let item = watcher.next().await?;
            Some((item, watcher))
        },
    )))
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if self.catching_up {
                if let Err(e) = self.catch_up_page().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    let revision = event.revision();
                    if revision <= self.seen {
                        continue;
                    }
                    if revision != self.seen + 1 {
                        // Revisions are dense and published in order, so a hole means an event
                        // never reached this receiver. The log still has it.
                        self.catching_up = true;
                        continue;
                    }
                    self.seen = revision;
                    if event.kv.key.starts_with(&self.prefix) {
                        return Some(Ok(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return Some(Err(Error::Closed));
                }
            }
        }
    }

    async fn catch_up_page(&mut self) -> Result<()> {
        let prefix = self.prefix.clone();
        let after = self.seen;
        let page = self
            .store
            .read(move |conn| read::history(conn, &prefix, after, HISTORY_PAGE))
            .await?;
        if after + 1 < page.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: page.compacted,
            });
        }
        match page.events.last() {
            Some(last) if page.full => self.seen = last.revision(),
            _ => {
                // Everything up to the snapshot's revision has been read; the channel holds
                // whatever came after it.
                self.seen = self.seen.max(page.revision);
                self.catching_up = false;
            }
        }
        self.buffer.extend(page.events);
        Ok(())
    }
}
