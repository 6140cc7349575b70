//! The single writer: owns the only connection that writes and group-commits.
//!
//! Every write waits for an fsync, so the fsync rate would cap the write rate if each request
//! had its own transaction. Instead the writer takes everything queued on its channel, applies
//! it in one transaction (each request still gets its own revision, and a request that fails
//! its precondition does not disturb the others), commits once, publishes the events to
//! watchers and only then answers the callers.
//!
//! Compaction runs on this thread too, in chunks between write batches, so that it neither
//! races the revision counter nor holds the write lock for long.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::schema::{COMPACT_REV, COMPACTED_THROUGH, max_revision, read_meta, write_meta};
use crate::{Error, Event, EventKind, KeyValue, Result, Revision};

/// Revisions whose superseded rows one compaction chunk deletes in one transaction.
const COMPACTION_CHUNK: Revision = 2_000;

pub(super) enum Command {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

pub(super) struct Writer {
    conn: Connection,
    /// Revision of the last committed write.
    revision: Revision,
    /// `revision`, published for `current_revision` without a query.
    shared_revision: Arc<AtomicI64>,
    events: broadcast::Sender<Event>,
    max_batch: usize,
    compact_rev: Revision,
    compacted_through: Revision,
    /// Callers of `compact`, answered once rows before their revision are gone.
    compact_waiters: Vec<(Revision, oneshot::Sender<Result<()>>)>,
    /// Set when a compaction chunk failed, so that the loop does not spin on a broken file;
    /// the next `compact` call retries.
    compaction_stalled: bool,
}

struct Batch {
    ops: Vec<WriteOp>,
    replies: Vec<oneshot::Sender<Result<KeyValue>>>,
}

/// What a batch produced, applied to the writer's state only once the commit succeeded.
struct Applied {
    results: Vec<Result<KeyValue>>,
    events: Vec<Event>,
    revision: Revision,
}

/// The key's latest row, read while applying a write.
struct Latest {
    created: Revision,
    rev: Revision,
    value: Vec<u8>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared_revision: Arc<AtomicI64>,
        events: broadcast::Sender<Event>,
        max_batch: usize,
    ) -> Result<Self> {
        let revision = max_revision(&conn)?;
        let compact_rev = read_meta(&conn, COMPACT_REV)?;
        let compacted_through = read_meta(&conn, COMPACTED_THROUGH)?;
        shared_revision.store(revision, Ordering::SeqCst);
        Ok(Self {
            conn,
            revision,
            shared_revision,
            events,
            max_batch: max_batch.max(1),
            compact_rev,
            compacted_through,
            compact_waiters: Vec::new(),
            compaction_stalled: false,
        })
    }

    /// Serves commands until every sender is gone. A compaction interrupted here (or by a crash)
    /// resumes the next time the store is opened.
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let compacting = self.compacted_through < self.compact_rev && !self.compaction_stalled;
            let first = if compacting {
                match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.blocking_recv() {
                    Some(cmd) => Some(cmd),
                    None => break,
                }
            };

            let mut batch = Batch {
                ops: Vec::new(),
                replies: Vec::new(),
            };
            let mut compactions = Vec::new();
            let mut next = first;
            while let Some(cmd) = next {
                match cmd {
                    Command::Write { op, reply } => {
                        batch.ops.push(op);
                        batch.replies.push(reply);
                    }
                    Command::Compact { revision, reply } => compactions.push((revision, reply)),
                }
                next = if batch.ops.len() < self.max_batch {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }

            if !batch.ops.is_empty() {
                self.commit(batch);
            }
            for (revision, reply) in compactions {
                self.start_compaction(revision, reply);
            }
            if self.compacted_through < self.compact_rev && !self.compaction_stalled {
                self.compact_chunk();
            }
        }
    }

    fn commit(&mut self, batch: Batch) {
        match self.apply(&batch.ops) {
            Ok(applied) => self.finish(applied, batch.replies),
            Err(e) => {
                // Something below the request level failed (disk full, I/O error, a value too
                // big for SQLite). Retry one request per transaction so that only the requests
                // that really fail get the error.
                tracing::warn!(error = %e, size = batch.ops.len(), "sqlite store: batch commit failed; retrying requests one by one");
                for (op, reply) in batch.ops.into_iter().zip(batch.replies) {
                    match self.apply(std::slice::from_ref(&op)) {
                        Ok(applied) => self.finish(applied, vec![reply]),
                        Err(e) => {
                            let _ = reply.send(Err(Error::Sqlite(e)));
                        }
                    }
                }
            }
        }
    }

    /// Runs `ops` in one transaction and commits it. On error nothing was written and the
    /// writer's state is unchanged.
    fn apply(&mut self, ops: &[WriteOp]) -> rusqlite::Result<Applied> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut revision = self.revision;
        let mut results = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match apply_one(&tx, revision + 1, op)? {
                Ok(event) => {
                    revision += 1;
                    // The event's kv is exactly what the caller gets back, including for a
                    // deletion (the last value, at the deletion's revision).
                    results.push(Ok(event.kv.clone()));
                    events.push(event);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        tx.commit()?;
        Ok(Applied {
            results,
            events,
            revision,
        })
    }

    fn finish(&mut self, applied: Applied, replies: Vec<oneshot::Sender<Result<KeyValue>>>) {
        self.revision = applied.revision;
        self.shared_revision
            .store(applied.revision, Ordering::SeqCst);
        // Publish before answering: a caller that gets revision R back and then watches from
        // R - 1 must find the event either in the log or on the channel, and watchers rely on
        // publication happening after the commit.
        for event in applied.events {
            // An error only means that nobody is watching right now.
            let _ = self.events.send(event);
        }
        for (result, reply) in applied.results.into_iter().zip(replies) {
            let _ = reply.send(result);
        }
    }

    fn start_compaction(&mut self, revision: Revision, reply: oneshot::Sender<Result<()>>) {
        if revision > self.revision {
            let _ = reply.send(Err(Error::FutureRevision {
                requested: revision,
                current: self.revision,
            }));
            return;
        }
        if revision > self.compact_rev {
            // Readers learn about the compaction from this row before any row is deleted, so
            // they never see a half-compacted revision as valid.
            if let Err(e) = write_meta(&self.conn, COMPACT_REV, revision) {
                let _ = reply.send(Err(Error::Sqlite(e)));
                return;
            }
            self.compact_rev = revision;
        }
        self.compaction_stalled = false;
        self.compact_waiters.push((revision, reply));
        self.answer_compaction_waiters();
    }

    /// Deletes the rows that writes in the next chunk of revisions superseded. A row is
    /// superseded when a later write to its key happened before the compaction revision: it is
    /// then neither the state at any revision still listable nor the previous value of any
    /// event still watchable. Deletions before the compaction revision go as well, together
    /// with the value they point at.
    fn compact_chunk(&mut self) {
        let lo = self.compacted_through;
        let hi = (lo + COMPACTION_CHUNK).min(self.compact_rev);
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM log WHERE rev IN \
                 (SELECT prev_rev FROM log WHERE rev >= ?1 AND rev < ?2 AND prev_rev > 0)",
                params![lo, hi],
            )?;
            tx.execute(
                "DELETE FROM log WHERE rev >= ?1 AND rev < ?2 AND deleted = 1",
                params![lo, hi],
            )?;
            write_meta(&tx, COMPACTED_THROUGH, hi)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                self.compacted_through = hi;
                self.answer_compaction_waiters();
            }
            Err(e) => {
                tracing::warn!(error = %e, "sqlite store: compaction failed");
                self.compaction_stalled = true;
                for (_, reply) in self.compact_waiters.drain(..) {
                    let _ = reply.send(Err(Error::Other(format!("compaction failed: {e}"))));
                }
            }
        }
    }

    fn answer_compaction_waiters(&mut self) {
        let through = self.compacted_through;
        let (done, waiting): (Vec<_>, Vec<_>) = self
            .compact_waiters
            .drain(..)
            .partition(|(revision, _)| *revision <= through);
        self.compact_waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }
}

/// Applies one write at `revision`. The outer error aborts the batch; the inner one is the
/// request's own outcome (a failed precondition), which leaves the transaction untouched.
fn apply_one(
    tx: &Transaction<'_>,
    revision: Revision,
    op: &WriteOp,
) -> rusqlite::Result<Result<Event>> {
    match op {
        WriteOp::Create { key, value } => {
            if latest(tx, key)?.is_some() {
                return Ok(Err(Error::AlreadyExists(key.clone())));
            }
            insert_log(tx, revision, key, revision, 0, false, value)?;
            tx.prepare_cached("INSERT INTO current (key, rev) VALUES (?1, ?2)")?
                .execute(params![key.as_bytes(), revision])?;
            Ok(Ok(Event {
                kind: EventKind::Created,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                },
                prev: None,
            }))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let Some(old) = latest(tx, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if old.rev != *expected {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    actual: old.rev,
                }));
            }
            insert_log(tx, revision, key, old.created, old.rev, false, value)?;
            tx.prepare_cached("UPDATE current SET rev = ?2 WHERE key = ?1")?
                .execute(params![key.as_bytes(), revision])?;
            let prev = old.into_key_value(key);
            Ok(Ok(Event {
                kind: EventKind::Updated,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: prev.create_revision,
                    mod_revision: revision,
                },
                prev: Some(prev),
            }))
        }
        WriteOp::Delete { key, expected } => {
            let Some(old) = latest(tx, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if let Some(expected) = expected
                && old.rev != *expected
            {
                return Ok(Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    actual: old.rev,
                }));
            }
            insert_log(tx, revision, key, old.created, old.rev, true, &[])?;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            let prev = old.into_key_value(key);
            Ok(Ok(Event {
                kind: EventKind::Deleted,
                kv: KeyValue {
                    mod_revision: revision,
                    ..prev.clone()
                },
                prev: Some(prev),
            }))
        }
    }
}

impl Latest {
    fn into_key_value(self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Bytes::from(self.value),
            create_revision: self.created,
            mod_revision: self.rev,
        }
    }
}

fn latest(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<Latest>> {
    tx.prepare_cached(
        "SELECT l.created, l.rev, l.value FROM current c JOIN log l ON l.rev = c.rev \
         WHERE c.key = ?1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(Latest {
            created: row.get(0)?,
            rev: row.get(1)?,
            value: row.get(2)?,
        })
    })
    .optional()
}

fn insert_log(
    tx: &Transaction<'_>,
    revision: Revision,
    key: &str,
    created: Revision,
    prev_rev: Revision,
    deleted: bool,
    value: &[u8],
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (rev, key, created, prev_rev, deleted, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key.as_bytes(),
        created,
        prev_rev,
        deleted,
        value
    ])?;
    Ok(())
}
