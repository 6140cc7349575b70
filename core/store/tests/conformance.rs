//! One behaviour, two backends: every case here runs against SQLite (with the default watch
//! buffer and with a tiny one, which forces watchers through the lagged-watcher path) and
//! against a real etcd started for the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use keelson_store::{
    Error, EtcdStore, Event, EventKind, KeyValue, ListOptions, Revision, SqliteOptions,
    SqliteStore, Store, WatchStream,
};
use keelson_testsupport::{ChildGuard, Etcd};
use tokio::task::JoinSet;

/// Where a test's store lives. Tests open the store themselves so that the durability test
/// can hand the same location to a child process first.
enum Target {
    Sqlite {
        dir: tempfile::TempDir,
        options: SqliteOptions,
    },
    Etcd {
        etcd: Etcd,
        namespace: String,
    },
}

impl Target {
    fn sqlite(watch_buffer: usize) -> Self {
        Target::Sqlite {
            dir: tempfile::tempdir().unwrap(),
            options: SqliteOptions {
                watch_buffer,
                ..SqliteOptions::default()
            },
        }
    }

    async fn etcd() -> Self {
        let etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
        // A namespace makes the store strip and add a prefix on every key.
        Target::Etcd {
            etcd,
            namespace: "/conformance".to_string(),
        }
    }

    fn sqlite_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("store.db")
    }

    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Target::Sqlite { dir, options } => {
                Arc::new(SqliteStore::open_with(&Self::sqlite_path(dir), options.clone()).unwrap())
            }
            Target::Etcd { etcd, namespace } => {
                Arc::new(connect_etcd(&etcd.endpoint, namespace).await)
            }
        }
    }

    /// Tells a child process (see `child_writer_entry`) how to open the same store.
    fn child_spec(&self) -> String {
        match self {
            Target::Sqlite { dir, .. } => {
                format!("sqlite\t{}", Self::sqlite_path(dir).display())
            }
            Target::Etcd { etcd, namespace } => format!("etcd\t{}\t{namespace}", etcd.endpoint),
        }
    }
}

/// etcd accepts connections a moment before it has elected itself leader.
async fn connect_etcd(endpoint: &str, namespace: &str) -> EtcdStore {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdStore::connect(&[endpoint.to_string()], namespace).await {
            Ok(store) => return store,
            Err(e) if Instant::now() < deadline => {
                eprintln!("etcd not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd at {endpoint} never became ready: {e}"),
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: b(value),
        create_revision,
        mod_revision,
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

fn at(revision: Revision) -> ListOptions {
    ListOptions {
        revision,
        ..ListOptions::default()
    }
}

/// The next `n` events, failing the test on an error, the end of the stream or a timeout.
async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            Ok(Some(Err(e))) => panic!("watch failed after {} of {n} events: {e}", out.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", out.len()),
            Err(_) => panic!("timed out after {} of {n} events", out.len()),
        }
    }
    out
}

/// Writes `key` and checks that it is the very next event on `stream`: proof that nothing
/// unexpected (a duplicate, a foreign key) was queued before it.
async fn expect_marker(store: &dyn Store, streams: &mut [&mut WatchStream], key: &str) {
    let marker = store.create(key, b("marker")).await.unwrap();
    for stream in streams.iter_mut() {
        let event = next_events(stream, 1).await.remove(0);
        assert_eq!(event.kv, marker, "expected the marker, got {event:?}");
    }
}

/// The error a watch from `after` fails with, whether at once or as its first item.
async fn watch_error(store: &dyn Store, prefix: &str, after: Revision) -> Error {
    match store.watch(prefix, after).await {
        Err(e) => e,
        Ok(mut stream) => {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Some(Err(e))) => e,
                other => panic!("watch from {after} should fail, got {other:?}"),
            }
        }
    }
}

mod cases {
    use super::*;

    pub async fn create_conflicts(t: &Target) {
        let store = t.open().await;
        let key = "/registry/pods/default/nginx";
        let created = store.create(key, b("v1")).await.unwrap();
        assert!(created.mod_revision > 0);
        assert_eq!(
            created,
            kv(key, "v1", created.mod_revision, created.mod_revision)
        );
        assert_eq!(
            store.current_revision().await.unwrap(),
            created.mod_revision
        );

        match store.create(key, b("v2")).await {
            Err(Error::AlreadyExists(k)) => assert_eq!(k, key),
            other => panic!("second create should fail with AlreadyExists, got {other:?}"),
        }
        // A failed write neither changes the key nor consumes a revision.
        assert_eq!(store.get(key).await.unwrap(), Some(created.clone()));
        assert_eq!(
            store.current_revision().await.unwrap(),
            created.mod_revision
        );

        let deleted = store.delete(key, None).await.unwrap();
        let again = store.create(key, b("v3")).await.unwrap();
        assert_eq!(again.create_revision, again.mod_revision);
        assert!(again.create_revision > deleted.mod_revision);
        assert_eq!(store.get(key).await.unwrap(), Some(again));
    }

    pub async fn update_compare_and_swap(t: &Target) {
        let store = t.open().await;
        let key = "/registry/configmaps/default/cm";
        let v1 = store.create(key, b("v1")).await.unwrap();
        let v2 = store.update(key, b("v2"), v1.mod_revision).await.unwrap();
        assert!(v2.mod_revision > v1.mod_revision);
        assert_eq!(v2, kv(key, "v2", v1.mod_revision, v2.mod_revision));
        assert_eq!(store.get(key).await.unwrap(), Some(v2.clone()));

        match store.update(key, b("stale"), v1.mod_revision).await {
            Err(Error::Conflict {
                key: k,
                expected,
                actual,
            }) => {
                assert_eq!(k, key);
                assert_eq!(expected, v1.mod_revision);
                assert_eq!(actual, v2.mod_revision);
            }
            other => panic!("stale update should conflict, got {other:?}"),
        }
        match store.update(key, b("zero"), 0).await {
            Err(Error::Conflict { actual, .. }) => assert_eq!(actual, v2.mod_revision),
            other => panic!("update expecting revision 0 should conflict, got {other:?}"),
        }
        assert_eq!(store.get(key).await.unwrap(), Some(v2.clone()));
        assert_eq!(store.current_revision().await.unwrap(), v2.mod_revision);

        let v3 = store.update(key, b("v3"), v2.mod_revision).await.unwrap();
        assert_eq!(v3.create_revision, v1.mod_revision);
    }

    pub async fn missing_keys(t: &Target) {
        let store = t.open().await;
        let key = "/registry/secrets/default/nope";
        assert_eq!(store.get(key).await.unwrap(), None);
        assert!(matches!(
            store.update(key, b("x"), 5).await,
            Err(Error::NotFound(k)) if k == key
        ));
        assert!(matches!(
            store.update(key, b("x"), 0).await,
            Err(Error::NotFound(k)) if k == key
        ));
        assert!(matches!(store.delete(key, None).await, Err(Error::NotFound(k)) if k == key));
        assert!(matches!(store.delete(key, Some(5)).await, Err(Error::NotFound(k)) if k == key));
        // Nothing above was a write.
        assert_eq!(store.get(key).await.unwrap(), None);

        // A deleted key is missing too.
        let created = store.create(key, b("x")).await.unwrap();
        store.delete(key, Some(created.mod_revision)).await.unwrap();
        let before = store.current_revision().await.unwrap();
        assert!(matches!(
            store.update(key, b("y"), created.mod_revision).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            store.delete(key, None).await,
            Err(Error::NotFound(_))
        ));
        assert_eq!(store.current_revision().await.unwrap(), before);
    }

    pub async fn delete_with_stale_revision(t: &Target) {
        let store = t.open().await;
        let key = "/registry/services/default/web";
        let v1 = store.create(key, b("v1")).await.unwrap();
        let v2 = store.update(key, b("v2"), v1.mod_revision).await.unwrap();
        match store.delete(key, Some(v1.mod_revision)).await {
            Err(Error::Conflict {
                expected, actual, ..
            }) => {
                assert_eq!(expected, v1.mod_revision);
                assert_eq!(actual, v2.mod_revision);
            }
            other => panic!("stale delete should conflict, got {other:?}"),
        }
        assert_eq!(store.get(key).await.unwrap(), Some(v2.clone()));

        let deleted = store.delete(key, Some(v2.mod_revision)).await.unwrap();
        assert!(deleted.mod_revision > v2.mod_revision);
        assert_eq!(
            deleted,
            kv(key, "v2", v1.mod_revision, deleted.mod_revision)
        );
        assert_eq!(store.get(key).await.unwrap(), None);
        assert_eq!(
            store.current_revision().await.unwrap(),
            deleted.mod_revision
        );

        let other = "/registry/services/default/db";
        let created = store.create(other, b("db")).await.unwrap();
        let deleted = store.delete(other, None).await.unwrap();
        assert_eq!(deleted.value, b("db"));
        assert_eq!(deleted.create_revision, created.mod_revision);
        assert!(deleted.mod_revision > created.mod_revision);
    }

    pub async fn list_by_prefix(t: &Target) {
        let store = t.open().await;
        let all = [
            "/registry/pod",
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/kube-system/c",
            "/registry/pods2/default/x",
            "/registry/a_b/x",
            "/registry/aXb/x",
            "/registry/a%b/y",
            "/registry/a%c/y",
        ];
        // Created out of order: lists come back in key order regardless.
        for key in all.iter().rev() {
            store.create(key, b(key)).await.unwrap();
        }
        let gone = store
            .create("/registry/pods/default/gone", b("x"))
            .await
            .unwrap();
        store
            .delete("/registry/pods/default/gone", Some(gone.mod_revision))
            .await
            .unwrap();

        let pods = store
            .list("/registry/pods/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(
            keys(&pods.items),
            [
                "/registry/pods/default/a",
                "/registry/pods/default/b",
                "/registry/pods/kube-system/c"
            ]
        );
        assert!(!pods.more);
        assert_eq!(pods.revision, store.current_revision().await.unwrap());
        assert_eq!(pods.items[0].value, b("/registry/pods/default/a"));
        assert_eq!(store.count("/registry/pods/").await.unwrap(), 3);

        // Prefixes are plain bytes: no implicit slash, no wildcards.
        let loose = store
            .list("/registry/pods", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(loose.items.len(), 4);
        assert_eq!(loose.items[3].key, "/registry/pods2/default/x");
        assert_eq!(store.count("/registry/pods").await.unwrap(), 4);
        let underscore = store
            .list("/registry/a_b/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(keys(&underscore.items), ["/registry/a_b/x"]);
        let percent = store
            .list("/registry/a%b", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(keys(&percent.items), ["/registry/a%b/y"]);
        assert_eq!(store.count("/registry/a%").await.unwrap(), 2);
        assert_eq!(
            store
                .list("/registry/pods/default/a", ListOptions::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(store.count("/registry/none/").await.unwrap(), 0);

        let everything = store.list("", ListOptions::default()).await.unwrap();
        let mut sorted = all.to_vec();
        sorted.sort();
        assert_eq!(keys(&everything.items), sorted);
        assert_eq!(store.count("").await.unwrap(), all.len());
    }

    pub async fn list_at_earlier_revision(t: &Target) {
        let store = t.open().await;
        let (a, b_key, c) = ("/registry/x/a", "/registry/x/b", "/registry/x/c");
        let r1 = store.create(a, b("a1")).await.unwrap().mod_revision;
        let r2 = store.create(b_key, b("b1")).await.unwrap().mod_revision;
        let r3 = store.update(a, b("a2"), r1).await.unwrap().mod_revision;
        let r4 = store.delete(b_key, Some(r2)).await.unwrap().mod_revision;
        let r5 = store.create(c, b("c1")).await.unwrap().mod_revision;
        // Writes elsewhere must not disturb the prefix's history.
        store.create("/registry/y/a", b("y")).await.unwrap();

        let list = |revision| {
            let store = store.clone();
            async move { store.list("/registry/x/", at(revision)).await.unwrap() }
        };
        let s1 = list(r1).await;
        assert_eq!(s1.items, [kv(a, "a1", r1, r1)]);
        assert_eq!(s1.revision, r1);
        assert_eq!(
            list(r2).await.items,
            [kv(a, "a1", r1, r1), kv(b_key, "b1", r2, r2)]
        );
        assert_eq!(
            list(r3).await.items,
            [kv(a, "a2", r1, r3), kv(b_key, "b1", r2, r2)]
        );
        assert_eq!(list(r4).await.items, [kv(a, "a2", r1, r3)]);
        assert_eq!(
            list(r5).await.items,
            [kv(a, "a2", r1, r3), kv(c, "c1", r5, r5)]
        );
        let latest = store
            .list("/registry/x/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(latest.items, list(r5).await.items);
        assert_eq!(latest.revision, store.current_revision().await.unwrap());

        // Paging at an old revision.
        let page = store
            .list(
                "/registry/x/",
                ListOptions {
                    revision: r3,
                    limit: 1,
                    start_after: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items, [kv(a, "a2", r1, r3)]);
        assert!(page.more);
        let rest = store
            .list(
                "/registry/x/",
                ListOptions {
                    revision: r3,
                    limit: 1,
                    start_after: Some(a.to_string()),
                },
            )
            .await
            .unwrap();
        assert_eq!(rest.items, [kv(b_key, "b1", r2, r2)]);
        assert!(!rest.more);
    }

    pub async fn list_paging(t: &Target) {
        let store = t.open().await;
        let prefix = "/registry/page/";
        let mut expected = Vec::new();
        for i in 0..25 {
            let key = format!("{prefix}k{i:02}");
            store.create(&key, b("v")).await.unwrap();
            expected.push(key);
        }
        store.create("/registry/page2/k00", b("v")).await.unwrap();
        store.create("/registry/pag", b("v")).await.unwrap();

        let first = store
            .list(
                prefix,
                ListOptions {
                    limit: 10,
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(first.items.len(), 10);
        assert!(first.more);
        let snapshot = first.revision;

        // Changes after the first page must not show in the following pages.
        store
            .create(&format!("{prefix}k05a"), b("new"))
            .await
            .unwrap();
        store.delete(&format!("{prefix}k15"), None).await.unwrap();

        let mut seen: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
        let mut pages = vec![(first.items.len(), first.more)];
        let mut more = first.more;
        while more {
            let page = store
                .list(
                    prefix,
                    ListOptions {
                        revision: snapshot,
                        limit: 10,
                        start_after: seen.last().cloned(),
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.revision, snapshot);
            pages.push((page.items.len(), page.more));
            seen.extend(page.items.iter().map(|kv| kv.key.clone()));
            more = page.more;
        }
        assert_eq!(pages, [(10, true), (10, true), (5, false)]);
        assert_eq!(seen, expected);

        // A limit that exactly fits is not "more".
        let exact = store
            .list(
                prefix,
                ListOptions {
                    revision: snapshot,
                    limit: 5,
                    start_after: Some(format!("{prefix}k19")),
                },
            )
            .await
            .unwrap();
        assert_eq!(exact.items.len(), 5);
        assert!(!exact.more);
        let past_end = store
            .list(
                prefix,
                ListOptions {
                    revision: 0,
                    limit: 5,
                    start_after: Some(format!("{prefix}zzz")),
                },
            )
            .await
            .unwrap();
        assert!(past_end.items.is_empty());
        assert!(!past_end.more);
        let beyond_prefix = store
            .list(
                prefix,
                ListOptions {
                    start_after: Some("/registry/zzz".to_string()),
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(beyond_prefix.items.is_empty());
        let before_prefix = store
            .list(
                prefix,
                ListOptions {
                    start_after: Some("/registry/a".to_string()),
                    limit: 3,
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            keys(&before_prefix.items),
            [&expected[0], &expected[1], &expected[2]]
        );
        // The latest state has the changes.
        let latest = store.list(prefix, ListOptions::default()).await.unwrap();
        assert_eq!(latest.items.len(), 25);
        assert!(latest.items.iter().any(|kv| kv.key.ends_with("k05a")));
        assert!(!latest.items.iter().any(|kv| kv.key.ends_with("k15")));
    }

    pub async fn watch_events(t: &Target) {
        let store = t.open().await;
        let prefix = "/registry/w/";
        let key = "/registry/w/a";
        let start = store.current_revision().await.unwrap();
        let mut stream = store.watch(prefix, start).await.unwrap();

        let r1 = store.create(key, b("v1")).await.unwrap().mod_revision;
        store.create("/registry/w2/a", b("sibling")).await.unwrap();
        store.create("/registry/w", b("parent")).await.unwrap();
        let r2 = store.update(key, b("v2"), r1).await.unwrap().mod_revision;
        let r3 = store.delete(key, Some(r2)).await.unwrap().mod_revision;

        let events = next_events(&mut stream, 3).await;
        assert_eq!(
            events[0],
            Event {
                kind: EventKind::Created,
                kv: kv(key, "v1", r1, r1),
                prev: None,
            }
        );
        assert_eq!(
            events[1],
            Event {
                kind: EventKind::Updated,
                kv: kv(key, "v2", r1, r2),
                prev: Some(kv(key, "v1", r1, r1)),
            }
        );
        assert_eq!(
            events[2],
            Event {
                kind: EventKind::Deleted,
                kv: kv(key, "v2", r1, r3),
                prev: Some(kv(key, "v2", r1, r2)),
            }
        );
        assert_eq!(events[2].revision(), r3);
        expect_marker(&*store, &mut [&mut stream], "/registry/w/zz-marker").await;
    }

    pub async fn watch_replays_history_then_live(t: &Target) {
        let store = t.open().await;
        let prefix = "/registry/h/";
        let start = store.current_revision().await.unwrap();
        let mut revisions = Vec::new();
        for i in 0..5 {
            let key = format!("{prefix}k{i}");
            revisions.push(store.create(&key, b("1")).await.unwrap().mod_revision);
            store
                .create(&format!("/registry/hx/k{i}"), b("x"))
                .await
                .unwrap();
        }
        for i in 0..5 {
            let key = format!("{prefix}k{i}");
            let r = store.update(&key, b("2"), revisions[i]).await.unwrap();
            revisions.push(r.mod_revision);
        }
        let middle = revisions[4];
        let mut from_start = store.watch(prefix, start).await.unwrap();
        let mut from_middle = store.watch(prefix, middle).await.unwrap();
        let mut from_now = store
            .watch(prefix, store.current_revision().await.unwrap())
            .await
            .unwrap();

        for i in 0..5 {
            let key = format!("{prefix}k{i}");
            let r = store.delete(&key, None).await.unwrap();
            revisions.push(r.mod_revision);
        }

        let all = next_events(&mut from_start, 15).await;
        assert_eq!(
            all.iter().map(Event::revision).collect::<Vec<_>>(),
            revisions
        );
        let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
        assert_eq!(&kinds[..5], [EventKind::Created; 5]);
        assert_eq!(&kinds[5..10], [EventKind::Updated; 5]);
        assert_eq!(&kinds[10..], [EventKind::Deleted; 5]);
        assert_eq!(all[5].prev.as_ref().unwrap().value, b("1"));
        assert_eq!(all[10].kv.value, b("2"));

        let later = next_events(&mut from_middle, 10).await;
        assert_eq!(
            later.iter().map(Event::revision).collect::<Vec<_>>(),
            revisions[5..]
        );
        let live = next_events(&mut from_now, 5).await;
        assert_eq!(
            live.iter().map(Event::revision).collect::<Vec<_>>(),
            revisions[10..]
        );
        expect_marker(
            &*store,
            &mut [&mut from_start, &mut from_middle, &mut from_now],
            "/registry/h/zz-marker",
        )
        .await;
    }

    /// One write as the writer saw it; a watcher must report exactly this.
    type Record = (Revision, String, EventKind, Bytes);

    fn record(kind: EventKind, kv: &KeyValue) -> Record {
        (kv.mod_revision, kv.key.clone(), kind, kv.value.clone())
    }

    pub async fn concurrent_writers_and_watchers(t: &Target) {
        const WRITERS: usize = 8;
        const OPS: usize = 200;
        let store = t.open().await;
        let prefix = "/registry/conc/";
        let done_key = "/registry/conc/~done";
        let start = store.current_revision().await.unwrap();

        // Polled while the writes happen.
        let live = store.watch(prefix, start).await.unwrap();
        let collector = tokio::spawn(async move {
            let mut live = live;
            let mut events = Vec::new();
            loop {
                let event = next_events(&mut live, 1).await.remove(0);
                if event.kv.key == done_key {
                    return events;
                }
                events.push(event);
            }
        });
        // Not polled until every write is done, so it falls behind.
        let mut stalled = store.watch(prefix, start).await.unwrap();

        let shared = format!("{prefix}shared");
        store.create(&shared, b("0")).await.unwrap();
        let mut writers = JoinSet::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let shared = shared.clone();
            writers.spawn(async move {
                let mut records = Vec::new();
                let mut current: Option<KeyValue> = None;
                for i in 0..OPS {
                    let key = format!("/registry/conc/w{w}/k{:03}", i / 4);
                    let value = b(&format!("w{w}-op{i}"));
                    let (kind, kv) = match i % 4 {
                        0 => (EventKind::Created, store.create(&key, value).await.unwrap()),
                        1 | 2 => {
                            let expected = current.as_ref().unwrap().mod_revision;
                            let kv = store.update(&key, value, expected).await.unwrap();
                            (EventKind::Updated, kv)
                        }
                        _ => {
                            let expected = current.as_ref().unwrap().mod_revision;
                            let kv = store.delete(&key, Some(expected)).await.unwrap();
                            (EventKind::Deleted, kv)
                        }
                    };
                    records.push(record(kind, &kv));
                    current = Some(kv);
                    if i % 7 == 0 {
                        // Outside the watched prefix.
                        store
                            .create(&format!("/registry/concx/w{w}-{i}"), b("x"))
                            .await
                            .unwrap();
                    }
                    if i % 10 == 0 {
                        // Contended compare-and-swap: conflicts write nothing.
                        let seen = store.get(&shared).await.unwrap().unwrap();
                        match store
                            .update(&shared, b(&format!("w{w}-{i}")), seen.mod_revision)
                            .await
                        {
                            Ok(kv) => records.push(record(EventKind::Updated, &kv)),
                            Err(Error::Conflict { .. }) => {}
                            Err(e) => panic!("unexpected error on shared key: {e}"),
                        }
                    }
                }
                records
            });
        }
        let mut expected: Vec<Record> = Vec::new();
        while let Some(records) = writers.join_next().await {
            expected.extend(records.unwrap());
        }
        expected.sort_by_key(|r| r.0);
        let revisions: Vec<Revision> = expected.iter().map(|r| r.0).collect();
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "two writes got the same revision"
        );
        assert!(expected.len() >= WRITERS * OPS);
        store.create(done_key, b("done")).await.unwrap();

        let check = |name: &str, events: &[Event]| {
            let got: Vec<Record> = events.iter().map(|e| record(e.kind, &e.kv)).collect();
            assert!(
                events.windows(2).all(|w| w[0].revision() < w[1].revision()),
                "{name}: events out of order or repeated"
            );
            assert_eq!(got.len(), expected.len(), "{name}: wrong number of events");
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g, e, "{name}: event differs from the write");
            }
            for event in events {
                if event.kind != EventKind::Created {
                    let prev = event
                        .prev
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: no previous value in {event:?}"));
                    assert_eq!(prev.key, event.kv.key);
                    assert!(prev.mod_revision < event.revision());
                }
            }
        };

        let live_events = collector.await.unwrap();
        // The first event is the creation of the shared key, written before the writers ran.
        assert_eq!(live_events[0].kv.key, shared);
        check("live", &live_events[1..]);
        // The other watchers see the end marker too; the live one stopped at it.
        let mut stalled_events = next_events(&mut stalled, live_events.len() + 1).await;
        assert_eq!(stalled_events.pop().unwrap().kv.key, done_key);
        check("stalled", &stalled_events[1..]);
        let mut replay = store.watch(prefix, start).await.unwrap();
        let mut replayed = next_events(&mut replay, live_events.len() + 1).await;
        assert_eq!(replayed.pop().unwrap().kv.key, done_key);
        check("replayed", &replayed[1..]);
        assert_eq!(live_events, stalled_events);
        assert_eq!(live_events, replayed);
        expect_marker(
            &*store,
            &mut [&mut stalled, &mut replay],
            "/registry/conc/~marker",
        )
        .await;
    }

    pub async fn compaction(t: &Target) {
        let store = t.open().await;
        let prefix = "/registry/cmp/";
        let (k1, k2, k3) = ("/registry/cmp/k1", "/registry/cmp/k2", "/registry/cmp/k3");
        let r1 = store.create(k1, b("v1")).await.unwrap().mod_revision;
        let r2 = store.update(k1, b("v2"), r1).await.unwrap().mod_revision;
        let r3 = store.create(k2, b("k2")).await.unwrap().mod_revision;
        let r4 = store.delete(k2, Some(r3)).await.unwrap().mod_revision;
        let r5 = store.update(k1, b("v3"), r2).await.unwrap().mod_revision;
        let r6 = store.create(k3, b("k3")).await.unwrap().mod_revision;

        store.compact(r5).await.unwrap();

        match store.list(prefix, at(r4)).await {
            Err(Error::Compacted {
                requested,
                compacted,
            }) => assert_eq!((requested, compacted), (r4, r5)),
            other => panic!("list below the compacted revision should fail, got {other:?}"),
        }
        assert!(matches!(
            store.list(prefix, at(r1)).await,
            Err(Error::Compacted { .. })
        ));
        assert_eq!(
            store.list(prefix, at(r5)).await.unwrap().items,
            [kv(k1, "v3", r1, r5)]
        );
        assert_eq!(
            store.list(prefix, at(r6)).await.unwrap().items,
            [kv(k1, "v3", r1, r5), kv(k3, "k3", r6, r6)]
        );
        assert_eq!(
            store
                .list(prefix, ListOptions::default())
                .await
                .unwrap()
                .items,
            [kv(k1, "v3", r1, r5), kv(k3, "k3", r6, r6)]
        );
        assert_eq!(store.get(k1).await.unwrap(), Some(kv(k1, "v3", r1, r5)));

        // Watching after r3 needs r4, which is gone; after r4 needs r5 onwards, which is kept.
        match watch_error(&*store, prefix, r3).await {
            Error::Compacted {
                requested,
                compacted,
            } => assert_eq!((requested, compacted), (r3, r5)),
            other => panic!("watch from a compacted revision should fail, got {other:?}"),
        }
        let mut stream = store.watch(prefix, r4).await.unwrap();
        let events = next_events(&mut stream, 2).await;
        assert_eq!(events[0].kind, EventKind::Updated);
        assert_eq!(events[0].kv, kv(k1, "v3", r1, r5));
        // etcd drops the previous value of the event at the compacted revision itself.
        if let Some(prev) = &events[0].prev {
            assert_eq!(prev, &kv(k1, "v2", r1, r2));
        }
        assert_eq!(events[1].kv, kv(k3, "k3", r6, r6));

        // Compacting again to an older or equal revision is a no-op.
        store.compact(r3).await.unwrap();
        store.compact(r5).await.unwrap();
        assert_eq!(store.list(prefix, at(r5)).await.unwrap().items.len(), 1);

        let current = store.current_revision().await.unwrap();
        match store.compact(current + 10).await {
            Err(Error::FutureRevision { requested, .. }) => assert_eq!(requested, current + 10),
            other => panic!("compacting the future should fail, got {other:?}"),
        }

        // Writes go on after compaction, with revisions still increasing.
        let r7 = store.update(k1, b("v4"), r5).await.unwrap().mod_revision;
        assert!(r7 > r6);
        let after = next_events(&mut stream, 1).await;
        assert_eq!(after[0].kv, kv(k1, "v4", r1, r7));
        assert_eq!(after[0].prev, Some(kv(k1, "v3", r1, r5)));

        // Compact everything: the latest state survives, and watching from the compacted
        // revision minus one still works.
        store.compact(r7).await.unwrap();
        assert_eq!(
            store
                .list(prefix, ListOptions::default())
                .await
                .unwrap()
                .items,
            [kv(k1, "v4", r1, r7), kv(k3, "k3", r6, r6)]
        );
        let mut tail = store.watch(prefix, r7 - 1).await.unwrap();
        assert_eq!(next_events(&mut tail, 1).await[0].revision(), r7);
        assert!(matches!(
            watch_error(&*store, prefix, r7 - 2).await,
            Error::Compacted { compacted, .. } if compacted == r7
        ));
    }

    pub async fn future_revision(t: &Target) {
        let store = t.open().await;
        let prefix = "/registry/future/";
        store.create("/registry/future/a", b("a")).await.unwrap();
        let current = store.current_revision().await.unwrap();
        match store.list(prefix, at(current + 100)).await {
            Err(Error::FutureRevision {
                requested,
                current: c,
            }) => assert_eq!((requested, c), (current + 100, current)),
            other => panic!("list in the future should fail, got {other:?}"),
        }
        assert_eq!(
            store.list(prefix, at(current)).await.unwrap().items.len(),
            1
        );

        // Watching from a future revision waits for it.
        let mut stream = store.watch(prefix, current + 2).await.unwrap();
        store.create("/registry/future/b", b("b")).await.unwrap();
        store.create("/registry/future/c", b("c")).await.unwrap();
        let d = store.create("/registry/future/d", b("d")).await.unwrap();
        assert_eq!(d.mod_revision, current + 3);
        let events = next_events(&mut stream, 1).await;
        assert_eq!(events[0].kv, d);
    }

    pub async fn durability_after_sigkill(t: &Target) {
        const ACKS: usize = 400;
        let spec = t.child_spec();
        let acks = tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args([
                "child_writer_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
            let mut child = ChildGuard::spawn("store writer", &mut cmd).unwrap();
            let stdout = child.child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut acks = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while acks.len() < ACKS {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = rx
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("writer acknowledged only {} keys", acks.len()));
                if let Some((key, revision)) = parse_ack(&line) {
                    acks.insert(key, revision);
                }
            }
            child.kill();
            // Acknowledgements already in the pipe were printed after the store answered:
            // they count as much as the ones read before the kill.
            reader.join().unwrap();
            acks.extend(rx.try_iter().filter_map(|line| parse_ack(&line)));
            acks
        })
        .await
        .unwrap();

        let store = t.open().await;
        for (key, revision) in &acks {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged key {key} is lost"));
            assert_eq!(kv.mod_revision, *revision, "{key} has the wrong revision");
            assert_eq!(kv.value, b(&format!("value of {key}")));
        }
        let newest = acks.values().copied().max().unwrap();
        let next = store
            .create("/registry/durable/after", b("x"))
            .await
            .unwrap();
        assert!(next.mod_revision > newest);
    }
}

const CHILD_ENV: &str = "KEELSON_STORE_TEST_CHILD";

fn parse_ack(line: &str) -> Option<(String, Revision)> {
    // "ACK <key> <revision> ." The trailing dot proves the line is complete.
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ACK"), Some(key), Some(revision), Some(".")) => {
            Some((key.to_string(), revision.parse().ok()?))
        }
        _ => None,
    }
}

/// Not a test on its own: the durability cases run this test binary again with `CHILD_ENV`
/// set, and this entry point then writes keys until it is killed, printing an
/// acknowledgement for every write the store confirmed.
#[test]
fn child_writer_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let parts: Vec<&str> = spec.split('\t').collect();
        let store: Arc<dyn Store> = match parts.as_slice() {
            ["sqlite", path] => Arc::new(SqliteStore::open(std::path::Path::new(path)).unwrap()),
            ["etcd", endpoint, namespace] => Arc::new(connect_etcd(endpoint, namespace).await),
            _ => panic!("bad {CHILD_ENV}: {spec}"),
        };
        let mut tasks = JoinSet::new();
        for task in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                // Bounded, in case the parent dies without killing us.
                for i in 0..20_000 {
                    let key = format!("/registry/durable/t{task}-{i:05}");
                    let kv = store
                        .create(&key, b(&format!("value of {key}")))
                        .await
                        .unwrap();
                    println!("ACK {key} {} .", kv.mod_revision);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(&Target::sqlite(SqliteOptions::default().watch_buffer)).await;
                }
            )*
        }

        /// A watch buffer of 4 events: every watcher keeps falling behind the writer and has
        /// to recover from the log.
        mod sqlite_small_buffer {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(&Target::sqlite(4)).await;
                }
            )*
        }

        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    cases::$case(&Target::etcd().await).await;
                }
            )*
        }
    };
}

conformance!(
    create_conflicts,
    update_compare_and_swap,
    missing_keys,
    delete_with_stale_revision,
    list_by_prefix,
    list_at_earlier_revision,
    list_paging,
    watch_events,
    watch_replays_history_then_live,
    concurrent_writers_and_watchers,
    compaction,
    future_revision,
    durability_after_sigkill,
);
