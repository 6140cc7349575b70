//! The embedded backend: one SQLite file in WAL mode, designed after kine.
//!
//! - Writes go to one writer thread that group-commits (see `writer`).
//! - Reads run on pooled read connections through `spawn_blocking`.
//! - Watchers read history from the log and then follow the writer's in-process broadcast of
//!   committed events (see `watch`).
//!
//! Only one process may open a store file at a time: the revision counter lives in the writer.
//! A `<file>.lock` beside the database enforces that.

mod read;
mod schema;
mod watch;
mod writer;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::compactor::{Compactor, CompactorConfig};
use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream,
};
use writer::{Command, WriteOp, Writer};

/// Tuning for [`SqliteStore`]. The defaults suit the API server.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Committed events kept in memory for live watchers. A watcher that falls further behind
    /// than this re-reads the log, which is correct but slower. Default 4,096.
    pub watch_buffer: usize,
    /// Most write requests committed in one transaction. Default 1,024.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            watch_buffer: 4_096,
            max_batch: 1_024,
        }
    }
}

/// The embedded SQLite store. Cheap to clone; all clones share one writer.
///
/// Dropping the last clone (including those held by watch streams) stops the writer after its
/// current batch and waits for it, which blocks briefly.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    revision: Arc<AtomicI64>,
    readers: read::ReadPool,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in the SQLite file at `path` with default options.
    ///
    /// Synchronous: it creates the schema and starts the writer thread, which takes
    /// milliseconds, so calling it from async code is fine. It needs no runtime, but the
    /// store's methods must be called within a tokio runtime. Resumes a compaction that a
    /// crash interrupted.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Like [`SqliteStore::open`], with explicit options.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        // Readers open their own connections to the same file, so the database must be a
        // real file: an in-memory database would be a different one per connection.
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Err(Error::Other(
                "the sqlite store needs a file path, not an in-memory database".to_string(),
            ));
        }
        let lock = lock_store(path)?;
        let conn = schema::open_writer(path)?;
        let (events, _) = broadcast::channel(options.watch_buffer.max(1));
        let revision = Arc::new(AtomicI64::new(0));
        let writer = Writer::new(
            conn,
            Arc::clone(&revision),
            events.clone(),
            options.max_batch,
        )?;
        let (commands, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        let thread = std::thread::Builder::new()
            .name("keelson-store-writer".to_string())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Other(format!("cannot start the sqlite writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                commands,
                events,
                revision,
                readers: read::ReadPool::new(path.to_path_buf()),
                writer: Some(thread),
                _lock: lock,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Starts compacting this store in the background; see [`CompactorConfig`] for the policy.
    /// Must be called within a tokio runtime. Compaction stops when the handle is dropped.
    pub fn spawn_compactor(&self, config: CompactorConfig) -> Compactor {
        Compactor::spawn(Arc::new(self.clone()), config)
    }

    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Write { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.readers.with(f))
            .await
            .map_err(|e| Error::Other(format!("sqlite read task failed: {e}")))?
    }
}

/// Takes the store's lock file, so that a second process (or a second `open` in this one)
/// fails instead of running a second writer with its own revision counter.
fn lock_store(path: &Path) -> Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Other(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Other(format!(
            "sqlite store {} is already open (locked through {})",
            path.display(),
            lock_path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(Error::Other(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel is what stops the writer; swap in a sender whose receiver is
        // already gone, since fields are only dropped after this function.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(thread) = self.writer.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "sqlite store writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |conn| read::get(conn, &key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.read(move |conn| read::list(conn, &prefix, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let prefix = prefix.to_string();
        self.read(move |conn| read::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(WriteOp::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::watch(self.clone(), prefix, after).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Compact { revision, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.revision.load(Ordering::SeqCst))
    }
}
