//! `keelson bench api`: API server throughput and latency, measured side by side with raw etcd
//! in the same run. Prints figures and ratios; it asserts nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Args, Debug)]
pub struct BenchApiArgs {
    /// Objects created per backend.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Watchers for the watch fan-out measurement.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// Skip the etcd runs.
    #[arg(long)]
    pub no_etcd: bool,
}

/// One HTTPS/2 connection to the API server with the admin client certificate.
#[derive(Clone)]
struct Conn {
    send: http2::SendRequest<Full<Bytes>>,
    authority: String,
}

async fn connect(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Conn> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(conn);
    Ok(Conn {
        send,
        authority: format!("127.0.0.1:{}", addr.port()),
    })
}

impl Conn {
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn client_tls(pki: &keelson_apiserver::pki::Pki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut pki.admin_cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut pki.admin_key_pem.as_bytes())?.context("admin key")?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

fn pod_json(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .unwrap_or_default()
}

pub(crate) struct Latencies(pub(crate) Vec<Duration>);

impl Latencies {
    /// The `p` quantile (0.0 to 1.0), nearest rank; zero when there are no samples.
    pub(crate) fn pct(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct CreateResult {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `total` operations spread over `workers` concurrent tasks (task `c` runs `op(c, i)`
/// for its share of `i`) and reports the rate and latency percentiles.
async fn measure<W, F, Fut>(workers: Vec<W>, total: usize, op: F) -> anyhow::Result<CreateResult>
where
    W: Send + 'static,
    F: Fn(&mut W, usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let n_workers = workers.len().max(1);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, mut w) in workers.into_iter().enumerate() {
        let op = op.clone();
        let n = total / n_workers + usize::from(c < total % n_workers);
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                op(&mut w, c, i).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let elapsed = start.elapsed();
    let mut l = Latencies(all);
    Ok(CreateResult {
        per_sec: total as f64 / elapsed.as_secs_f64(),
        p50: l.pct(0.5),
        p99: l.pct(0.99),
    })
}

/// `total` pod creates spread over the connections, one client per connection.
async fn create_load(
    conns: &[Conn],
    total: usize,
    path: &str,
    prefix: &str,
) -> anyhow::Result<CreateResult> {
    let path = Arc::new(path.to_string());
    let prefix = Arc::new(prefix.to_string());
    measure(conns.to_vec(), total, move |conn: &mut Conn, c, i| {
        let path = path.clone();
        let body = pod_json(&format!("{prefix}-{c}-{i}"));
        let mut conn = conn.clone();
        async move {
            let (status, resp) = conn.request(Method::POST, &path, Some(body)).await?;
            if status != 201 {
                bail!(
                    "create returned {status}: {}",
                    String::from_utf8_lossy(&resp)
                );
            }
            Ok(())
        }
    })
    .await
}

struct PrivateEtcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd() -> anyhow::Result<PrivateEtcd> {
    let bin = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("etcd is not installed (Debian package etcd-server); use --no-etcd")?;
    let dir = tempfile::tempdir()?;
    let (cp, pp) = (free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let child = Command::new(bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("bench={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", cp)).is_err() {
        if Instant::now() > deadline {
            bail!("etcd did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(PrivateEtcd {
        child,
        endpoint,
        _dir: dir,
    })
}

/// Raw etcd puts with the same client pattern: `clients` tasks, `total` puts of a pod-sized
/// value, each a create-if-absent transaction as the API server's creates are.
async fn raw_etcd(endpoint: &str, clients: usize, total: usize) -> anyhow::Result<CreateResult> {
    let value = Arc::new(pod_json("raw-etcd-value-of-similar-size"));
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(etcd_client::Client::connect([endpoint], None).await?);
    }
    measure(
        conns,
        total,
        move |client: &mut etcd_client::Client, c, i| {
            let key = format!("/raw/pods/bench/p-{c}-{i}");
            let txn = etcd_client::Txn::new()
                .when([etcd_client::Compare::create_revision(
                    key.clone(),
                    etcd_client::CompareOp::Equal,
                    0,
                )])
                .and_then([etcd_client::TxnOp::put(key, value.as_slice(), None)]);
            let mut client = client.clone();
            async move {
                client.txn(txn).await?;
                Ok(())
            }
        },
    )
    .await
}

struct BackendResult {
    name: String,
    create: CreateResult,
    list: Duration,
    list_items: usize,
    watch_p50: Duration,
    watch_max: Duration,
}

async fn run_backend(
    name: &str,
    store: keelson_apiserver::StoreConfig,
    args: &BenchApiArgs,
) -> anyhow::Result<BackendResult> {
    let dir = tempfile::tempdir()?;
    let mut cfg = keelson_apiserver::Config::new(dir.path().to_path_buf());
    cfg.bind_address = "127.0.0.1".parse()?;
    cfg.secure_port = 0;
    if let keelson_apiserver::StoreConfig::Etcd { .. } = &store {
        cfg.store = store;
    } else {
        cfg.store = keelson_apiserver::StoreConfig::Sqlite {
            path: dir.path().join("state.db"),
        };
    }
    let server = keelson_apiserver::start(cfg).await?;
    let tls = client_tls(&server.pki)?;
    let mut conns = Vec::new();
    for _ in 0..args.clients {
        conns.push(connect(server.addr, tls.clone()).await?);
    }
    let path = "/api/v1/namespaces/default/pods";
    // Warm up connections and caches.
    create_load(&conns, args.clients * 4, path, "warm").await?;
    let create = create_load(&conns, args.objects, path, "bench").await?;

    // LIST every pod, a few times; report the median.
    let mut lists = Vec::new();
    let mut items = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let (status, body) = conns[0].clone().request(Method::GET, path, None).await?;
        lists.push(t.elapsed());
        if status != 200 {
            bail!("list returned {status}");
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        items = v["items"].as_array().map_or(0, Vec::len);
    }
    let list = Latencies(lists).pct(0.5);

    // Fan-out: many watchers, one event, time until each watcher has it.
    let (watch_p50, watch_max) = watch_fanout(server.addr, tls.clone(), args.watchers).await?;
    server.shutdown().await;
    Ok(BackendResult {
        name: name.to_string(),
        create,
        list,
        list_items: items,
        watch_p50,
        watch_max,
    })
}

async fn watch_fanout(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    watchers: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let per_conn = 50;
    let nconns = watchers.div_ceil(per_conn);
    let mut conns = Vec::new();
    for _ in 0..nconns {
        conns.push(connect(addr, tls.clone()).await?);
    }
    let (mut c0, _) = (conns[0].clone(), ());
    let (_, body) = c0
        .request(Method::GET, "/api/v1/namespaces/default/configmaps", None)
        .await?;
    let rv = serde_json::from_slice::<serde_json::Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for i in 0..watchers {
        let mut conn = conns[i / per_conn].clone();
        let tx = tx.clone();
        let ready = ready.clone();
        let rv = rv.clone();
        tokio::spawn(async move {
            let req = Request::builder()
                .uri(format!(
                    "https://{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
                    conn.authority
                ))
                .body(Full::new(Bytes::new()));
            let Ok(req) = req else { return };
            if conn.send.ready().await.is_err() {
                return;
            }
            let resp = conn.send.send_request(req).await;
            ready.wait().await;
            let Ok(resp) = resp else { return };
            let mut body = resp.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
    }
    drop(tx);
    ready.wait().await;
    // Give the streams a moment to be registered server-side.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fanout"}});
    let (status, _) = c0
        .request(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(serde_json::to_vec(&cm)?),
        )
        .await?;
    if status != 201 {
        bail!("create configmap returned {status}");
    }
    let mut delays = Vec::new();
    while delays.len() < watchers {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(t)) => delays.push(t.saturating_duration_since(t0)),
            _ => break,
        }
    }
    if delays.len() < watchers {
        bail!("only {} of {watchers} watchers saw the event", delays.len());
    }
    let mut l = Latencies(delays);
    Ok((l.pct(0.5), l.pct(1.0)))
}

pub async fn run(args: BenchApiArgs) -> anyhow::Result<()> {
    println!(
        "keelson bench api: {} creates with {} clients, LIST of all pods, {} watchers",
        args.objects, args.clients, args.watchers
    );
    let mut results = vec![
        run_backend(
            "sqlite (embedded)",
            keelson_apiserver::StoreConfig::Sqlite {
                path: Default::default(),
            },
            &args,
        )
        .await?,
    ];
    let mut raw = None;
    if !args.no_etcd {
        let etcd = start_etcd()?;
        results.push(
            run_backend(
                "etcd",
                keelson_apiserver::StoreConfig::Etcd {
                    servers: vec![etcd.endpoint.clone()],
                    prefix: String::new(),
                },
                &args,
            )
            .await?,
        );
        raw = Some(raw_etcd(&etcd.endpoint, args.clients, args.objects).await?);
    }
    println!();
    println!(
        "{:<18} {:>12} {:>10} {:>10} {:>14} {:>14} {:>14}",
        "backend", "creates/s", "p50 ms", "p99 ms", "LIST ms", "watch p50 ms", "watch max ms"
    );
    for r in &results {
        println!(
            "{:<18} {:>12.0} {:>10.2} {:>10.2} {:>9.1} ({:>5}) {:>14.2} {:>14.2}",
            r.name,
            r.create.per_sec,
            ms(r.create.p50),
            ms(r.create.p99),
            ms(r.list),
            r.list_items,
            ms(r.watch_p50),
            ms(r.watch_max)
        );
    }
    if let Some(raw) = &raw {
        println!(
            "{:<18} {:>12.0} {:>10.2} {:>10.2}",
            "raw etcd txn-put",
            raw.per_sec,
            ms(raw.p50),
            ms(raw.p99)
        );
        if let Some(e) = results.iter().find(|r| r.name == "etcd") {
            println!();
            println!(
                "API create on etcd / raw etcd puts: {:.0}% (target >= 70%)",
                100.0 * e.create.per_sec / raw.per_sec
            );
        }
    }
    let s = &results[0];
    println!(
        "embedded store: {:.0} creates/s (target >= 3000), p99 {:.1} ms (target <= 50), LIST {} pods {:.0} ms (target <= 200)",
        s.create.per_sec,
        ms(s.create.p99),
        s.list_items,
        ms(s.list)
    );
    Ok(())
}
