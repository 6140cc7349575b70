//! Behaviour specific to the SQLite backend: restarts, the file lock, group commit, physical
//! compaction and the background compactor. The shared semantics are in `conformance.rs`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use keelson_store::{
    CompactorConfig, Error, Event, KeyValue, ListOptions, Revision, SqliteOptions, SqliteStore,
    Store,
};
use tokio::task::JoinSet;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn at(revision: Revision) -> ListOptions {
    ListOptions {
        revision,
        ..ListOptions::default()
    }
}

/// Polls `check` until it holds, failing the test after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn take(stream: &mut keelson_store::WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("watch timed out")
            .expect("watch ended");
        out.push(item.unwrap());
    }
    out
}

/// Rows in the revision log, read behind the store's back: the only way to see that
/// compaction really frees space.
fn log_rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0))
        .unwrap()
}

/// A deterministic mix of creates, updates and deletes over a few keys; returns what the
/// state of the prefix was at each revision.
async fn write_history(store: &SqliteStore, ops: usize) -> BTreeMap<Revision, Vec<KeyValue>> {
    let mut live: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut states = BTreeMap::new();
    let mut seed: u64 = 7;
    for i in 0..ops {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("/registry/hist/k{}", (seed >> 33) % 12);
        let value = b(&format!("op{i}"));
        let kv = match live.get(&key) {
            None => store.create(&key, value).await.unwrap(),
            Some(current) if (seed >> 20).is_multiple_of(4) => {
                let deleted = store
                    .delete(&key, Some(current.mod_revision))
                    .await
                    .unwrap();
                live.remove(&key);
                states.insert(deleted.mod_revision, live.values().cloned().collect());
                continue;
            }
            Some(current) => store
                .update(&key, value, current.mod_revision)
                .await
                .unwrap(),
        };
        live.insert(key, kv.clone());
        states.insert(kv.mod_revision, live.values().cloned().collect());
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_state_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (current, latest, events) = {
        let store = SqliteStore::open(&path).unwrap();
        let states = write_history(&store, 60).await;
        store.compact(20).await.unwrap();
        let current = store.current_revision().await.unwrap();
        assert_eq!(current, *states.keys().last().unwrap());
        let latest = store
            .list("/registry/hist/", ListOptions::default())
            .await
            .unwrap();
        let mut watch = store.watch("/registry/hist/", 19).await.unwrap();
        let events = take(&mut watch, usize::try_from(current - 19).unwrap()).await;
        (current, latest, events)
    };

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), current);
    let again = store
        .list("/registry/hist/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(again.items, latest.items);
    assert_eq!(again.revision, current);
    assert!(matches!(
        store.list("/registry/hist/", at(19)).await,
        Err(Error::Compacted { compacted: 20, .. })
    ));
    let mut watch = store.watch("/registry/hist/", 19).await.unwrap();
    assert_eq!(take(&mut watch, events.len()).await, events);
    let next = store.create("/registry/other", b("x")).await.unwrap();
    assert_eq!(next.mod_revision, current + 1);
}

#[tokio::test]
async fn second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let first = SqliteStore::open(&path).unwrap();
    match SqliteStore::open(&path) {
        Err(Error::Other(message)) => assert!(message.contains("already open"), "{message}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second writer on the same file must be refused"),
    }
    drop(first);
    SqliteStore::open(&path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_do_not_disturb_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    for i in 0..32 {
        store
            .create(&format!("/registry/iso/k{i:02}"), b("old"))
            .await
            .unwrap();
    }
    let before = store.current_revision().await.unwrap();

    let mut tasks = JoinSet::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .create(&format!("/registry/iso/k{i:02}"), b("new"))
                .await
        });
    }
    for i in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .update(&format!("/registry/iso/k{i:02}"), b("stale"), 1_000_000)
                .await
        });
    }
    let (mut created, mut exists, mut conflicts) = (Vec::new(), 0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(kv) => created.push(kv.mod_revision),
            Err(Error::AlreadyExists(_)) => exists += 1,
            Err(Error::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((created.len(), exists, conflicts), (32, 32, 16));
    // Successful writes get consecutive revisions; failed ones consume none.
    created.sort_unstable();
    assert_eq!(created, ((before + 1)..=(before + 32)).collect::<Vec<_>>());
    assert_eq!(store.current_revision().await.unwrap(), before + 32);
    assert_eq!(store.count("/registry/iso/").await.unwrap(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_listable_revision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let states = write_history(&store, 400).await;
    let current = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/hist/", 0).await.unwrap();
    let events = take(&mut watch, usize::try_from(current).unwrap()).await;
    let rows_before = log_rows(&path);
    assert_eq!(rows_before, current);

    let compact_to: Revision = 250;
    store.compact(compact_to).await.unwrap();

    for (&revision, state) in &states {
        let listed = store.list("/registry/hist/", at(revision)).await;
        if revision < compact_to {
            assert!(
                matches!(listed, Err(Error::Compacted { requested, compacted })
                    if requested == revision && compacted == compact_to),
                "list at {revision}: {listed:?}"
            );
        } else {
            assert_eq!(&listed.unwrap().items, state, "list at {revision}");
        }
    }
    // The history still watchable is untouched, previous values included.
    let mut watch = store
        .watch("/registry/hist/", compact_to - 1)
        .await
        .unwrap();
    let kept = take(
        &mut watch,
        usize::try_from(current - compact_to + 1).unwrap(),
    )
    .await;
    assert_eq!(kept, events[usize::try_from(compact_to - 1).unwrap()..]);

    // What must survive: every row from the compacted revision on, plus the value each live
    // key had just before it, when nothing deleted it.
    let expected_rows =
        (current - compact_to + 1) + i64::try_from(states[&(compact_to - 1)].len()).unwrap();
    assert_eq!(log_rows(&path), expected_rows);
    assert!(expected_rows < rows_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_compaction_resumes_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (states, current) = {
        let store = SqliteStore::open(&path).unwrap();
        let states = write_history(&store, 300).await;
        (states, store.current_revision().await.unwrap())
    };
    // As if the process died right after recording a compaction, before deleting anything.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE meta SET value = 200 WHERE name = 'compact_rev'", [])
            .unwrap();
    }
    assert_eq!(log_rows(&path), current);

    let store = SqliteStore::open(&path).unwrap();
    assert!(matches!(
        store.list("/registry/hist/", at(199)).await,
        Err(Error::Compacted { compacted: 200, .. })
    ));
    let expected_rows = (current - 200 + 1) + i64::try_from(states[&199].len()).unwrap();
    eventually("the compaction to resume", Duration::from_secs(20), || {
        let path = path.clone();
        async move { log_rows(&path) == expected_rows }
    })
    .await;
    for (&revision, state) in states.range(200..) {
        let listed = store.list("/registry/hist/", at(revision)).await.unwrap();
        assert_eq!(&listed.items, state, "list at {revision}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_hits_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        watch_buffer: 4,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).unwrap();
    let key = "/registry/lag/k";
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/lag/", start).await.unwrap();
    let mut kv = store.create(key, b("0")).await.unwrap();
    let first = take(&mut watch, 1).await;
    assert_eq!(first[0].kv, kv);

    // The watcher does not read while 50 writes overflow its buffer and get compacted away.
    for i in 1..=50 {
        kv = store
            .update(key, b(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    store.compact(kv.mod_revision).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
        Ok(Some(Err(Error::Compacted {
            requested,
            compacted,
        }))) => {
            assert_eq!(requested, first[0].revision());
            assert_eq!(compacted, kv.mod_revision);
        }
        other => panic!("the lagging watcher should report compaction, got {other:?}"),
    }
    assert!(
        watch.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compactor_keeps_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    let compactor = store.spawn_compactor(CompactorConfig {
        interval: Duration::from_millis(20),
        keep: 5,
    });
    let key = "/registry/bg/k";
    let mut kv = store.create(key, b("0")).await.unwrap();
    for i in 1..=30 {
        kv = store
            .update(key, b(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    let current = kv.mod_revision;
    // It compacts up to, and never past, `keep` revisions behind the current one.
    eventually("the compactor to catch up", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            match store.list("/registry/bg/", at(current - 6)).await {
                Err(Error::Compacted { compacted, .. }) => {
                    assert!(compacted <= current - 5, "compacted too far: {compacted}");
                    compacted == current - 5
                }
                _ => false,
            }
        }
    })
    .await;
    assert_eq!(
        store
            .list("/registry/bg/", at(current - 5))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    compactor.stop().await;
}
