//! The etcd backend, for API servers that share one replicated store.
//!
//! The store's model is etcd's, so operations map one to one: conditional writes are single
//! transactions whose compare decides and whose `else` branch reads the key to tell "missing"
//! from "changed"; watches are etcd watches from `after + 1` with previous values.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions,
};

use crate::keys::{prefix_end, range_start};
use crate::{
    Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store,
    WatchStream,
};

/// gRPC messages can carry a whole LIST of a large cluster; tonic's 4 MiB default cannot.
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// How long `connect` waits for etcd to answer before giving up.
/// Connections for reads and writes (watches have their own).
const KV_CONNECTIONS: usize = 4;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a compacted list waits to learn the compacted revision.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A store in etcd (v3 API; etcd 3.4 and later).
///
/// `namespace` is prepended to every key on the wire and stripped from every key returned, so
/// that several clusters (or test runs) can share one etcd. Keys given to the store already
/// carry their own `/registry/...` prefix, so the usual namespace is empty. Note that etcd's
/// revisions and compaction are global to the etcd cluster, not per namespace.
#[derive(Clone)]
pub struct EtcdStore {
    /// A few connections used in turn: requests from many API clients otherwise queue on one
    /// HTTP/2 connection's flow-control window and one server-side stream handler.
    kv: std::sync::Arc<[KvClient]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    watch: WatchClient,
    namespace: Vec<u8>,
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`) and checks that it
    /// answers, so that a wrong address fails here rather than on the first request.
    pub async fn connect(endpoints: &[String], namespace: &str) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        // Watches get their own connection: HTTP/2 flow control is shared by all streams on a
        // connection, so a watch stream its consumer has stopped reading could otherwise hold
        // back reads and writes.
        let mut kv = Vec::with_capacity(KV_CONNECTIONS);
        for _ in 0..KV_CONNECTIONS {
            let c = Client::connect(endpoints, Some(options.clone())).await?;
            kv.push(c.kv_client().max_decoding_message_size(MAX_MESSAGE));
        }
        let watch = Client::connect(endpoints, Some(options)).await?;
        let store = Self {
            kv: kv.into(),
            next: Default::default(),
            watch: watch.watch_client().max_decoding_message_size(MAX_MESSAGE),
            namespace: namespace.as_bytes().to_vec(),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, store.current_revision())
            .await
            .map_err(|_| {
                Error::Other(format!(
                    "etcd at {} did not answer within {CONNECT_TIMEOUT:?}",
                    endpoints.join(",")
                ))
            })??;
        Ok(store)
    }

    /// The next KV connection, in turn.
    fn kv(&self) -> KvClient {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.kv[i % self.kv.len()].clone()
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = self.namespace.clone();
        full.extend_from_slice(key.as_bytes());
        full
    }

    fn strip(&self, key: &[u8]) -> Result<String> {
        let key = key.strip_prefix(self.namespace.as_slice()).ok_or_else(|| {
            Error::Other(format!(
                "etcd returned key {:?} outside the store's namespace",
                String::from_utf8_lossy(key)
            ))
        })?;
        String::from_utf8(key.to_vec())
            .map_err(|e| Error::Other(format!("etcd holds a key that is not utf-8: {e}")))
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// `[start, end)` on the wire for keys under `prefix` after `start_after`, in etcd's
    /// encoding: an empty key is not allowed, and an end of `[0]` means "no upper bound".
    fn range(&self, prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
        let full_prefix = self.full_key(prefix);
        let start_after = start_after.map(|k| self.full_key(k));
        let mut start = range_start(&full_prefix, start_after.as_deref());
        if start.is_empty() {
            start = vec![0];
        }
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        (start, end)
    }

    /// The etcd cluster's compacted revision, learnt from a watch at revision 1, which etcd
    /// refuses with the compacted revision. Only used after etcd reported a compaction.
    async fn compacted_revision(&self) -> Option<Revision> {
        let probe = async {
            let options = WatchOptions::new().with_start_revision(1);
            let mut stream = self
                .watch
                .clone()
                .watch(self.full_key("\0compaction-probe"), Some(options))
                .await
                .ok()?;
            while let Ok(Some(resp)) = stream.message().await {
                if resp.compact_revision() > 0 {
                    return Some(resp.compact_revision());
                }
                if resp.canceled() {
                    return None;
                }
            }
            None
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()
    }

    /// Maps etcd's revision errors to the store's.
    async fn revision_error(&self, e: etcd_client::Error, requested: Revision) -> Error {
        match &e {
            _ if is_compacted(&e) => {
                let compacted = self
                    .compacted_revision()
                    .await
                    .unwrap_or(requested.saturating_add(1));
                Error::Compacted {
                    requested,
                    compacted,
                }
            }
            etcd_client::Error::GRpcStatus(status)
                if status
                    .message()
                    .contains("required revision is a future revision") =>
            {
                match self.current_revision().await {
                    Ok(current) => Error::FutureRevision { requested, current },
                    Err(_) => Error::Etcd(e),
                }
            }
            _ => Error::Etcd(e),
        }
    }

    /// For a transaction whose compare failed and whose `else` branch read the key: the key's
    /// current state, if it exists.
    fn failed_txn_current(&self, resp: &TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.convert(kv)).transpose();
            }
        }
        Ok(None)
    }
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.message().contains("required revision has been compacted"))
}

fn header_revision(resp: &TxnResponse) -> Result<Revision> {
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Other("etcd response has no header".to_string()))
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.kv().get(self.full_key(key), None).await?;
        resp.kvs().first().map(|kv| self.convert(kv)).transpose()
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let (start, end) = self.range(prefix, opts.start_after.as_deref());
        let mut get = GetOptions::new().with_range(end);
        if opts.revision > 0 {
            get = get.with_revision(opts.revision);
        }
        if opts.limit > 0 {
            get = get.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        let resp = match self.kv().get(start, Some(get)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.revision_error(e, opts.revision).await),
        };
        let items = resp
            .kvs()
            .iter()
            .map(|kv| self.convert(kv))
            .collect::<Result<Vec<_>>>()?;
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            resp.header().map(|h| h.revision()).unwrap_or_default()
        };
        Ok(ListResult {
            items,
            revision,
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let (start, end) = self.range(prefix, None);
        let resp = self
            .kv()
            .get(
                start,
                Some(GetOptions::new().with_range(end).with_count_only()),
            )
            .await?;
        usize::try_from(resp.count())
            .map_err(|_| Error::Other(format!("etcd returned a bad count {}", resp.count())))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let resp = self.kv().txn(txn).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let revision = header_revision(&resp)?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let full = self.full_key(key);
        // `mod_revision == 0` also holds for a missing key, hence the version check.
        let txn = Txn::new()
            .when([
                Compare::version(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.kv().txn(txn).await?;
        if !resp.succeeded() {
            return Err(match self.failed_txn_current(&resp)? {
                None => Error::NotFound(key.to_string()),
                Some(current) => Error::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: current.mod_revision,
                },
            });
        }
        let revision = header_revision(&resp)?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| Error::Other("etcd put returned no previous value".to_string()))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.kv().txn(txn).await?;
        if !resp.succeeded() {
            return Err(match (self.failed_txn_current(&resp)?, expected) {
                (Some(current), Some(expected)) => Error::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: current.mod_revision,
                },
                _ => Error::NotFound(key.to_string()),
            });
        }
        let revision = header_revision(&resp)?;
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| Error::NotFound(key.to_string()))?;
        Ok(KeyValue {
            mod_revision: revision,
            ..self.convert(&prev)?
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let after = after.max(0);
        let (start, end) = self.range(prefix, None);
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after + 1)
            .with_prev_key();
        let stream = self.watch.clone().watch(start, Some(options)).await?;
        let watcher = Watcher {
            store: self.clone(),
            stream,
            seen: after,
            buffer: VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            |mut watcher| async move {
                let item = watcher.next().await?;
                Some((item, watcher))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let options = CompactionOptions::new().with_physical();
        match self.kv().compact(revision, Some(options)).await {
            Ok(_) => Ok(()),
            // Compacting to a revision already compacted is a no-op, as on SQLite.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .kv()
            .get(vec![0], Some(GetOptions::new().with_count_only()))
            .await?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Other("etcd response has no header".to_string()))
    }
}

struct Watcher {
    store: EtcdStore,
    stream: etcd_client::WatchStream,
    /// The last revision delivered.
    seen: Revision,
    buffer: VecDeque<Event>,
    done: bool,
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
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.done = true;
                    return Some(Err(Error::Other(
                        "etcd closed the watch stream".to_string(),
                    )));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::Etcd(e)));
                }
            };
            if resp.compact_revision() > 0 {
                self.done = true;
                return Some(Err(Error::Compacted {
                    requested: self.seen,
                    compacted: resp.compact_revision(),
                }));
            }
            if resp.canceled() {
                self.done = true;
                return Some(Err(Error::Other(format!(
                    "etcd canceled the watch: {}",
                    resp.cancel_reason()
                ))));
            }
            for event in resp.events() {
                match self.convert(event) {
                    Ok(Some(event)) => {
                        self.seen = event.revision();
                        self.buffer.push_back(event);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.done = true;
                        self.buffer.clear();
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Option<Event>> {
        let Some(kv) = event.kv() else {
            return Ok(None);
        };
        // etcd resends nothing on its own, but a duplicate would break the no-repeat promise.
        if kv.mod_revision() <= self.seen {
            return Ok(None);
        }
        let prev = event.prev_kv().map(|p| self.store.convert(p)).transpose()?;
        let event = match event.event_type() {
            EventType::Put => Event {
                kind: if kv.create_revision() == kv.mod_revision() {
                    EventKind::Created
                } else {
                    EventKind::Updated
                },
                kv: self.store.convert(kv)?,
                prev,
            },
            EventType::Delete => Event {
                kind: EventKind::Deleted,
                // etcd's deletion carries only the key; the store reports the last value.
                kv: KeyValue {
                    key: self.store.strip(kv.key())?,
                    value: prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                    create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(0),
                    mod_revision: kv.mod_revision(),
                },
                prev,
            },
        };
        Ok(Some(event))
    }
}
