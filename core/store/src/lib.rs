//! Keelson's store: a revisioned key-value store with the semantics the API server needs
//! (the subset of etcd's model that Kubernetes relies on).
//!
//! Every successful write gets a new, strictly increasing cluster-wide *revision*. A key's
//! `mod_revision` is the revision of its last write and is what the API server exposes as
//! `metadata.resourceVersion`. Watches deliver every change after a given revision, in order
//! and without gaps, until history before that revision is compacted away.
//!
//! Two backends implement [`Store`]:
//! - [`SqliteStore`], the default: one SQLite file, no server. Writes are group-committed by
//!   one writer thread; watchers are fed in-process.
//! - [`EtcdStore`], for several API servers sharing one replicated etcd.
//!
//! Both pass the same conformance suite (`tests/conformance.rs`). Where they differ it is
//! because etcd is shared: etcd's first write is revision 2 and its revisions count writes from
//! every client, and a watch event at exactly the compacted revision may lack its previous value
//! on etcd. [`Compactor`] trims history in the background for either backend.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

mod compactor;
mod etcd;
mod keys;
mod sqlite;

pub use compactor::{Compactor, CompactorConfig};
pub use etcd::EtcdStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// A store revision. Revisions start at 1; 0 means "none" / "latest" depending on context.
pub type Revision = i64;

/// One key and its current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision at which the key was created (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key. For a deletion event, the revision of the deletion.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change. For `Deleted`, the last value the key held, with
    /// `mod_revision` set to the revision of the deletion.
    pub kv: KeyValue,
    /// The key before the change, when it existed (`Updated`, `Deleted`).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// List as of this revision; 0 lists the latest state.
    pub revision: Revision,
    /// Only keys strictly greater than this one (for paging with `continue`).
    pub start_after: Option<String>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
}

/// Result of [`Store::list`].
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the list reflects (the store's revision when `ListOptions::revision` was 0).
    pub revision: Revision,
    /// True when `limit` cut the list short.
    pub more: bool,
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    /// The compare-and-swap precondition failed: the key changed since the expected revision.
    #[error("key {key:?} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        /// The key's current mod revision (0 if the key no longer exists).
        actual: Revision,
    },
    /// The requested revision is older than the oldest revision still kept. For a list,
    /// `requested` is the list's revision; for a watch, the last revision the watch had
    /// reached (its `after` when it fails at once), whose successor is gone.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("store is closed")]
    Closed,
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A revisioned key-value store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Number of keys starting with `prefix` at the latest revision.
    async fn count(&self, prefix: &str) -> Result<usize>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces `key` if its mod revision is still `expected`; otherwise [`Error::Conflict`]
    /// ([`Error::NotFound`] if the key does not exist).
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, optionally only if its mod revision is still `expected`. Returns the
    /// deleted value with `mod_revision` set to the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in revision
    /// order, then live changes. [`Error::Compacted`] when history after `after` is gone,
    /// either at once or later in the stream if the watcher falls behind a compaction.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Discards history before `revision` (the latest state is always kept). Afterwards a
    /// list at a revision below `revision`, or a watch that needs an event below it, fails with
    /// [`Error::Compacted`]. Compacting to an already compacted revision does nothing; to a
    /// revision past the current one fails with [`Error::FutureRevision`]. Returns once the
    /// discarded history is gone.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;
}
