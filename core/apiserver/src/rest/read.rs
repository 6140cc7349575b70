//! GET, LIST and WATCH.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use keelson_store::ListOptions;

use super::{Call, Filter, list_prefix, object_key, partial_metadata, resource_id};
use crate::ApiServer;
use crate::request::Output;
use crate::response::{self, Body};
use crate::status::{ApiError, ApiResult};
use crate::watchcache::{
    CacheEvent, CachedObject, WatchEventType, WatchStart, set_resource_version,
};

/// How long a LIST or WATCH waits for the cache to reach a requested resourceVersion.
const CACHE_WAIT: Duration = Duration::from_secs(3);

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, last_key: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: last_key.to_string(),
    };
    let raw = serde_json::to_vec(&t).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(s: &str) -> ApiResult<i64> {
    s.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {s}")))
}

impl ApiServer {
    pub(crate) async fn get(&self, call: &Call) -> ApiResult<Response<Body>> {
        let name = call.name().unwrap_or_default();
        let key = object_key(call.info, call.namespace(), name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(call.info.group, call.info.plural, name))?;
        let obj = CachedObject::from_kv(&kv)
            .ok_or_else(|| ApiError::internal(format!("stored object {key} is not valid JSON")))?;
        self.render_one(call, 200, &obj.value)
    }

    pub(crate) async fn list(&self, call: &Call) -> ApiResult<Response<Body>> {
        let filter = Filter::from_call(call)?;
        let output = crate::request::negotiate(call.accept.as_deref())
            .ok_or_else(|| ApiError::not_acceptable("application/json, application/yaml"))?;
        let limit: usize = match call.q("limit") {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
            None => 0,
        };
        let rv = call.q("resourceVersion");
        let exact = call.q("resourceVersionMatch") == Some("Exact");
        let cont = call.q("continue");
        if cont.is_some() && rv.is_some() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }

        // Paged and exact lists read the store at a fixed revision; everything else is served
        // from the watch cache once it has caught up.
        let from_store = cont.is_some() || exact || (limit > 0 && rv != Some("0"));
        let (items, revision, next) = if from_store {
            let (revision, start_after) = match cont {
                Some(c) => {
                    let t = decode_continue(c)?;
                    (t.rv, Some(t.start))
                }
                None => match rv {
                    Some(r) => (parse_rv(r)?, None),
                    None => (0, None),
                },
            };
            self.list_from_store(call, &filter, revision, start_after, limit)
                .await?
        } else {
            match rv {
                None => {
                    let current = self.store.current_revision().await?;
                    self.cache.wait_for(current, CACHE_WAIT).await?;
                }
                Some("0") => {}
                Some(r) => {
                    let r = parse_rv(r)?;
                    self.cache.wait_for(r, CACHE_WAIT).await?;
                }
            }
            let (objs, revision) = self
                .cache
                .list(&resource_id(call.info), filter.namespace.as_deref());
            let items: Vec<Arc<CachedObject>> =
                objs.into_iter().filter(|o| filter.matches(o)).collect();
            (items, revision, None)
        };

        let mut meta = json!({ "resourceVersion": revision.to_string() });
        if let Some(n) = &next {
            meta["continue"] = json!(n);
        }
        match output {
            Output::Object => {
                let head = json!({
                    "kind": call.info.list_kind(),
                    "apiVersion": call.info.api_version(),
                    "metadata": meta,
                });
                if crate::request::wants_yaml(call.accept.as_deref()) {
                    let mut v = head;
                    v["items"] = Value::Array(items.iter().map(|o| o.value.clone()).collect());
                    return Ok(response::yaml(200, &v));
                }
                // Items are spliced in as the bytes the cache already holds: a list of ten
                // thousand pods is then a memcpy, not ten thousand re-encodings.
                let mut head_bytes =
                    serde_json::to_vec(&head).map_err(|e| ApiError::internal(e.to_string()))?;
                head_bytes.pop(); // the closing brace
                let total: usize = items.iter().map(|o| o.raw.len() + 1).sum();
                let mut buf = BytesMut::with_capacity(head_bytes.len() + total + 16);
                buf.put_slice(&head_bytes);
                buf.put_slice(b",\"items\":[");
                for (i, o) in items.iter().enumerate() {
                    if i > 0 {
                        buf.put_u8(b',');
                    }
                    buf.put_slice(&o.raw);
                }
                buf.put_slice(b"]}");
                Ok(response::json_bytes(200, buf.freeze()))
            }
            Output::Table => {
                let t = super::table(
                    call.info,
                    call.include_object(),
                    items.iter().map(|o| &o.value),
                    meta,
                    true,
                );
                Ok(response::json(200, &t))
            }
            Output::PartialMetadata => {
                let v = json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                    "items": items.iter().map(|o| partial_metadata(&o.value)).collect::<Vec<_>>(),
                });
                Ok(response::json(200, &v))
            }
        }
    }

    async fn list_from_store(
        &self,
        call: &Call,
        filter: &Filter,
        revision: i64,
        mut start_after: Option<String>,
        limit: usize,
    ) -> ApiResult<(Vec<Arc<CachedObject>>, i64, Option<String>)> {
        let prefix = list_prefix(call.info, filter.namespace.as_deref());
        let mut out = Vec::new();
        let mut at = revision;
        loop {
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions {
                        revision: at,
                        start_after: start_after.clone(),
                        limit: if limit == 0 { 0 } else { limit.max(64) },
                    },
                )
                .await
                .map_err(|e| match e {
                    keelson_store::Error::Compacted { .. } if start_after.is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => other.into(),
                })?;
            at = page.revision;
            let n = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let Some(obj) = CachedObject::from_kv(kv) else {
                    continue;
                };
                if filter.matches(&obj) {
                    out.push(Arc::new(obj));
                    if limit > 0 && out.len() == limit {
                        let more = i + 1 < n || page.more;
                        let token = more.then(|| encode_continue(at, &kv.key));
                        return Ok((out, at, token));
                    }
                }
            }
            if !page.more || n == 0 {
                return Ok((out, at, None));
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    pub(crate) async fn watch(&self, call: &Call) -> ApiResult<Response<Body>> {
        let filter = Filter::from_call(call)?;
        let output = crate::request::negotiate(call.accept.as_deref())
            .ok_or_else(|| ApiError::not_acceptable("application/json"))?;
        let rv = call.q("resourceVersion");
        let send_initial = call.q("sendInitialEvents") == Some("true");
        let start = match rv {
            None | Some("0") => WatchStart::Snapshot,
            Some(r) if send_initial => {
                let r = parse_rv(r)?;
                self.cache.wait_for(r, CACHE_WAIT).await?;
                WatchStart::Snapshot
            }
            Some(r) => {
                let r = parse_rv(r)?;
                self.cache.wait_for(r, CACHE_WAIT).await?;
                WatchStart::After(r)
            }
        };
        let bookmarks = call.q("allowWatchBookmarks") == Some("true");
        let timeout = match call.q("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?,
            ),
            // Long watches are spread over 30 to 60 minutes, as in Kubernetes, so that clients
            // reconnect at different times.
            None => Duration::from_secs(1800 + rand::random_range(0..1800)),
        };

        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
        let sub = match self.cache.subscribe(&resource_id(call.info), start) {
            Ok(s) => Some(s),
            Err(e) if e.code == 410 => {
                // Kubernetes answers an expired watch with 200 and an ERROR event.
                let line = event_line("ERROR", &e.to_status());
                let _ = tx.try_send(Ok(Frame::data(line)));
                None
            }
            Err(e) => return Err(e),
        };

        if let Some(sub) = sub {
            let w = Watcher {
                filter,
                output,
                call_info: call.info,
                include: call.include_object().to_string(),
                bookmarks,
                send_initial: send_initial && bookmarks,
                bookmark_every: self.opts.bookmark_interval,
                cache: self.cache.clone(),
                server: self.clone_for_tables(call),
            };
            tokio::spawn(w.run(sub, tx, timeout));
        }

        let body = StreamBody::new(ReceiverStream::new(rx)).boxed_unsync();
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(resp)
    }

    fn clone_for_tables(&self, call: &Call) -> TableCtx {
        TableCtx {
            info: call.info,
            include: call.include_object().to_string(),
        }
    }
}

/// What a watch needs to print table rows without holding the request.
struct TableCtx {
    info: &'static keelson_api::registry::ResourceInfo,
    include: String,
}

struct Watcher {
    filter: Filter,
    output: Output,
    call_info: &'static keelson_api::registry::ResourceInfo,
    include: String,
    bookmarks: bool,
    send_initial: bool,
    bookmark_every: Duration,
    cache: Arc<crate::watchcache::WatchCache>,
    server: TableCtx,
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let v = json!({"type": kind, "object": object});
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

impl Watcher {
    /// Turns a cache event into what this watcher should see, if anything.
    fn translate(&self, ev: &CacheEvent) -> Option<WatchEventType> {
        let now = self.filter.matches(&ev.object);
        match ev.kind {
            WatchEventType::Added => now.then_some(WatchEventType::Added),
            WatchEventType::Deleted => {
                let was = ev.prev.as_ref().map_or(now, |p| self.filter.matches(p));
                was.then_some(WatchEventType::Deleted)
            }
            WatchEventType::Modified => {
                let was = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
                match (was, now) {
                    (true, true) => Some(WatchEventType::Modified),
                    (false, true) => Some(WatchEventType::Added),
                    (true, false) => Some(WatchEventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    fn encode(&self, kind: WatchEventType, obj: &CachedObject, headers: bool) -> Bytes {
        match self.output {
            Output::Object => {
                let mut b = BytesMut::with_capacity(obj.raw.len() + 32);
                b.put_slice(b"{\"type\":\"");
                b.put_slice(kind.as_str().as_bytes());
                b.put_slice(b"\",\"object\":");
                b.put_slice(&obj.raw);
                b.put_slice(b"}\n");
                b.freeze()
            }
            Output::PartialMetadata => event_line(kind.as_str(), &partial_metadata(&obj.value)),
            Output::Table => {
                let t = table_for(&self.server, &obj.value, headers);
                event_line(kind.as_str(), &t)
            }
        }
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({
            "kind": self.call_info.kind,
            "apiVersion": self.call_info.api_version(),
            "metadata": meta,
        });
        event_line("BOOKMARK", &obj)
    }

    async fn run(
        self,
        sub: crate::watchcache::Subscription,
        tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
        timeout: Duration,
    ) {
        let _ = &self.include;
        let mut headers = true;
        let mut last_rev = sub.revision;
        for ev in &sub.initial {
            if let Some(kind) = self.translate(ev) {
                let line = self.encode(kind, &ev.object, headers);
                headers = false;
                if tx.send(Ok(Frame::data(line))).await.is_err() {
                    return;
                }
            }
            last_rev = last_rev.max(ev.revision());
        }
        if self.send_initial {
            let line = self.bookmark(sub.revision, true);
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
        let mut rx = sub.rx;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(self.bookmark_every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if self.bookmarks => {
                    // Read the revision first, then drain what is queued: every event up to
                    // that revision was queued before it was published, so the bookmark never
                    // runs ahead of an event this watcher has not sent.
                    let rev = self.cache.revision();
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if ev.revision() <= last_rev { continue; }
                                last_rev = ev.revision();
                                if let Some(kind) = self.translate(&ev) {
                                    let line = self.encode(kind, &ev.object, headers);
                                    headers = false;
                                    if tx.send(Ok(Frame::data(line))).await.is_err() { return; }
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    let rev = rev.max(last_rev);
                    if tx.send(Ok(Frame::data(self.bookmark(rev, false)))).await.is_err() { return; }
                }
                ev = rx.recv() => {
                    match ev {
                        Ok(ev) => {
                            // Initial history and live events can overlap by a few revisions.
                            if ev.revision() <= last_rev { continue; }
                            last_rev = ev.revision();
                            if let Some(kind) = self.translate(&ev) {
                                let line = self.encode(kind, &ev.object, headers);
                                headers = false;
                                if tx.send(Ok(Frame::data(line))).await.is_err() { return; }
                            }
                        }
                        // A watcher that falls this far behind is closed; the client resumes
                        // from the last resourceVersion it saw.
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

fn table_for(ctx: &TableCtx, value: &Value, headers: bool) -> Value {
    let mut meta = json!({});
    if let Some(rv) = value.pointer("/metadata/resourceVersion") {
        meta["resourceVersion"] = rv.clone();
    }
    super::table(
        ctx.info,
        &ctx.include,
        std::iter::once(value),
        meta,
        headers,
    )
}

/// Injects `resourceVersion` into an object about to be returned.
pub fn with_rv(mut v: Value, rev: i64) -> Value {
    set_resource_version(&mut v, rev);
    v
}
