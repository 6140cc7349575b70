//! Reads, on their own connections: in WAL mode they see the last commit and never wait for
//! the writer. Each read runs in one read transaction so that its statements (revision checks
//! and rows) come from the same snapshot.

use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::schema::{COMPACT_REV, key_from_bytes, max_revision, open_reader, read_meta};
use crate::keys::{prefix_end, range_start};
use crate::{Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision};

/// Idle read connections beyond this many are closed rather than kept.
const MAX_IDLE_READERS: usize = 8;

/// Read connections, opened on demand and reused.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection. Blocking: call from `spawn_blocking`.
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = f(&mut conn);
        // A connection left inside a transaction (a bug or an interrupted read) would pin an
        // old snapshot forever; drop it instead of reusing it.
        if conn.is_autocommit()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}

/// The `[start, end)` byte range of keys under `prefix` after `start_after`. Keys are UTF-8,
/// which never contains 0xff, so `[0xff]` bounds every key when the prefix has no end.
fn key_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let start = range_start(prefix.as_bytes(), start_after.map(str::as_bytes));
    let end = prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0xff]);
    (start, end)
}

pub(super) fn get(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    let row = conn
        .prepare_cached(
            "SELECT l.created, l.rev, l.value FROM current c JOIN log l ON l.rev = c.rev \
             WHERE c.key = ?1",
        )?
        .query_row([key.as_bytes()], |row| {
            Ok((
                row.get::<_, Revision>(0)?,
                row.get::<_, Revision>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(created, rev, value)| KeyValue {
        key: key.to_string(),
        value: Bytes::from(value),
        create_revision: created,
        mod_revision: rev,
    }))
}

pub(super) fn count(conn: &mut Connection, prefix: &str) -> Result<usize> {
    let (start, end) = key_range(prefix, None);
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2")?
        .query_row(params![start, end], |row| row.get(0))?;
    usize::try_from(n).map_err(|_| Error::Other(format!("sqlite store: bad count {n}")))
}

pub(super) fn list(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let tx = conn.transaction()?;
    let current = max_revision(&tx)?;
    let revision = if opts.revision > 0 {
        opts.revision
    } else {
        current
    };
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    let compacted = read_meta(&tx, COMPACT_REV)?;
    if revision < compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }

    let (start, end) = key_range(prefix, opts.start_after.as_deref());
    // One row past the limit tells whether there is more.
    let sql_limit: i64 = if opts.limit == 0 {
        -1
    } else {
        i64::try_from(opts.limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1)
    };
    let mut items = if revision == current {
        collect_kvs(
            &tx,
            "SELECT c.key, l.created, l.rev, l.value FROM current c JOIN log l ON l.rev = c.rev \
             WHERE c.key >= ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3",
            params![start, end, sql_limit],
        )?
    } else {
        // The state at an older revision: each key's newest row at or before it, unless that
        // row is a deletion.
        collect_kvs(
            &tx,
            "SELECT l.key, l.created, l.rev, l.value FROM log l JOIN \
               (SELECT MAX(rev) AS rev FROM log WHERE key >= ?1 AND key < ?2 AND rev <= ?3 \
                GROUP BY key) m ON l.rev = m.rev \
             WHERE l.deleted = 0 ORDER BY l.key LIMIT ?4",
            params![start, end, revision, sql_limit],
        )?
    };
    let more = opts.limit > 0 && items.len() > opts.limit;
    if more {
        items.truncate(opts.limit);
    }
    Ok(ListResult {
        items,
        revision,
        more,
    })
}

/// Runs a query whose rows are (key, created, rev, value).
fn collect_kvs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<KeyValue>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        items.push(KeyValue {
            key: key_from_bytes(row.get(0)?)?,
            create_revision: row.get(1)?,
            mod_revision: row.get(2)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(3)?),
        });
    }
    Ok(items)
}

/// A page of the log for a watcher.
pub(super) struct History {
    pub(super) events: Vec<Event>,
    /// True when the page was cut at `limit` and more events may follow.
    pub(super) full: bool,
    /// The store's revision in the snapshot the page was read from.
    pub(super) revision: Revision,
    /// The compacted revision in that snapshot.
    pub(super) compacted: Revision,
}

/// Events for keys under `prefix` with revisions greater than `after`, oldest first.
pub(super) fn history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<History> {
    let tx = conn.transaction()?;
    let revision = max_revision(&tx)?;
    let compacted = read_meta(&tx, COMPACT_REV)?;
    if after + 1 < compacted {
        return Ok(History {
            events: Vec::new(),
            full: false,
            revision,
            compacted,
        });
    }
    let (start, end) = key_range(prefix, None);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut events = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT l.rev, l.key, l.created, l.deleted, l.value, p.rev, p.created, p.value \
             FROM log l LEFT JOIN log p ON p.rev = l.prev_rev \
             WHERE l.rev > ?1 AND l.key >= ?2 AND l.key < ?3 ORDER BY l.rev LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![after, start, end, limit])?;
        while let Some(row) = rows.next()? {
            let rev: Revision = row.get(0)?;
            let key = key_from_bytes(row.get(1)?)?;
            let created: Revision = row.get(2)?;
            let deleted: bool = row.get(3)?;
            let value = Bytes::from(row.get::<_, Vec<u8>>(4)?);
            let prev = match row.get::<_, Option<Revision>>(5)? {
                Some(prev_rev) => Some(KeyValue {
                    key: key.clone(),
                    create_revision: row.get(6)?,
                    mod_revision: prev_rev,
                    value: Bytes::from(row.get::<_, Vec<u8>>(7)?),
                }),
                None => None,
            };
            let event = if deleted {
                Event {
                    kind: EventKind::Deleted,
                    kv: KeyValue {
                        key,
                        // A deletion row carries no value; the event reports the last one.
                        value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                        create_revision: created,
                        mod_revision: rev,
                    },
                    prev,
                }
            } else {
                Event {
                    kind: if created == rev {
                        EventKind::Created
                    } else {
                        EventKind::Updated
                    },
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: created,
                        mod_revision: rev,
                    },
                    prev,
                }
            };
            events.push(event);
        }
    }
    let full = i64::try_from(events.len()).unwrap_or(i64::MAX) >= limit;
    Ok(History {
        events,
        full,
        revision,
        compacted,
    })
}
