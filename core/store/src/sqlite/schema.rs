//! The on-disk layout.
//!
//! `log` is the append-only revision log: one row per successful write, `rev` being the write's
//! revision. A deletion is a row with `deleted = 1` and an empty value; the deleted value stays in
//! the row `prev_rev` points at. `prev_rev` links each update and deletion to the key's previous
//! row, which gives watch events their previous value and tells compaction which rows a later
//! write has superseded. Creations have `prev_rev = 0`.
//!
//! `current` maps each live key to the log row holding its latest value, so that get, list and
//! count at the latest revision never scan history.
//!
//! Keys are stored as BLOBs so that comparisons are plain `memcmp` over the UTF-8 bytes, the
//! same order as Rust's `str` and etcd's byte order.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Error, Result, Revision};

const SCHEMA_VERSION: i64 = 1;

/// Meta row: compactions up to this revision are visible (list/watch below it fail).
pub(super) const COMPACT_REV: &str = "compact_rev";
/// Meta row: rows superseded before this revision have been deleted. Trails `compact_rev`
/// while a compaction is being applied in chunks, and after a crash in the middle of one.
pub(super) const COMPACTED_THROUGH: &str = "compacted_through";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev      INTEGER PRIMARY KEY,
    key      BLOB    NOT NULL,
    created  INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted  INTEGER NOT NULL,
    value    BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

fn open_flags() -> OpenFlags {
    // Each connection is used by one thread at a time, so SQLite's own mutexes are not needed.
    OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Opens the writer's connection and creates or checks the schema.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, open_flags())?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Other(format!(
            "sqlite store {}: cannot switch to WAL mode (journal mode is {mode})",
            path.display()
        )));
    }
    // FULL makes every commit durable against power loss, not only against a crash of this
    // process; group commit keeps the cost to one fsync per batch.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    conn.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?1), (?2, 0), (?3, 0)",
        rusqlite::params![SCHEMA_VERSION, COMPACT_REV, COMPACTED_THROUGH],
    )?;
    let version = read_meta(&conn, "schema_version")?;
    if version != SCHEMA_VERSION {
        return Err(Error::Other(format!(
            "sqlite store {}: schema version {version} is not supported (expected {SCHEMA_VERSION})",
            path.display()
        )));
    }
    Ok(conn)
}

/// Opens a connection for reads. It never writes, but must be read-write to use the WAL index.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, open_flags())?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

pub(super) fn read_meta(conn: &Connection, name: &str) -> Result<i64> {
    let value = conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    Ok(value.unwrap_or(0))
}

pub(super) fn write_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
        .execute(rusqlite::params![name, value])?;
    Ok(())
}

/// The revision of the last write visible to `conn`.
pub(super) fn max_revision(conn: &Connection) -> Result<Revision> {
    // Compaction never deletes the row of the newest revision, so MAX(rev) is the store's
    // revision even after compaction.
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(rev), 0) FROM log")?
        .query_row([], |row| row.get(0))?)
}

/// Turns a stored key back into a string. Keys are written from `&str`, so a failure means the
/// file was modified by something else.
pub(super) fn key_from_bytes(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| Error::Other(format!("sqlite store holds a key that is not utf-8: {e}")))
}
