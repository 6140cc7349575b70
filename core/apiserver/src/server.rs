//! Starting and running the API server: store, PKI, bootstrap objects, TLS listener, routing.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use keelson_store::Store;

use crate::admission::{AdmissionChain, NamespaceLifecycle};
use crate::auth::UserInfo;
use crate::pki::{Pki, PkiPaths};
use crate::request::{Route, parse_query};
use crate::response::{self, Body};
use crate::rest::{Call, MAX_BODY};
use crate::status::ApiError;
use crate::{ApiOptions, ApiServer, Error, Result, discovery};

/// Which store backend to use.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded store: one SQLite file.
    Sqlite { path: PathBuf },
    /// An etcd cluster.
    Etcd {
        servers: Vec<String>,
        prefix: String,
    },
}

/// Everything `keelson apiserver` needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port (tests).
    pub secure_port: u16,
    pub tls_sans: Vec<String>,
    pub write_kubeconfig: Option<PathBuf>,
    pub service_cluster_ip_range: Ipv4Net,
    pub service_node_port_range: (u16, u16),
    pub advertise_address: Option<IpAddr>,
    pub store: StoreConfig,
    pub bookmark_interval: Duration,
    /// A static token file (`token,user,uid[,"groups"]` per line) whose bearer tokens
    /// authenticate as the users named; agents join with one.
    pub token_auth_file: Option<PathBuf>,
}

impl Config {
    /// Defaults as documented for `keelson apiserver`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            store: StoreConfig::Sqlite {
                path: data_dir.join("state.db"),
            },
            data_dir,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            secure_port: 6443,
            tls_sans: Vec::new(),
            write_kubeconfig: None,
            service_cluster_ip_range: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24)
                .unwrap_or_default(),
            service_node_port_range: (30000, 32767),
            advertise_address: None,
            bookmark_interval: Duration::from_secs(60),
            token_auth_file: None,
        }
    }
}

/// A started API server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// URL clients use (`https://127.0.0.1:6443`).
    pub url: String,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    cache_task: tokio::task::JoinHandle<()>,
    compactor: keelson_store::Compactor,
}

impl RunningServer {
    /// Stops accepting connections and waits (bounded) for the server to wind down.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.cache_task.abort();
        self.compactor.stop().await;
    }

    /// Runs until `token` is cancelled.
    pub async fn run_until(self, token: CancellationToken) {
        token.cancelled().await;
        self.shutdown().await;
    }
}

async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    Ok(match &cfg.store {
        StoreConfig::Sqlite { path } => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Arc::new(keelson_store::SqliteStore::open(path)?)
        }
        StoreConfig::Etcd { servers, prefix } => {
            Arc::new(keelson_store::EtcdStore::connect(servers, prefix).await?)
        }
    })
}

fn default_advertise(cfg: &Config) -> IpAddr {
    if let Some(a) = cfg.advertise_address {
        return a;
    }
    if !cfg.bind_address.is_unspecified() {
        return cfg.bind_address;
    }
    // The address of the default route's interface (a UDP "connect" sends nothing), not
    // the first local address, which may be a pod bridge's.
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routed
        .or_else(|| crate::pki::host_addresses().into_iter().next())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Starts the API server: opens the store, makes or loads the PKI, writes the kubeconfig,
/// creates the built-in objects, binds the port. Returns once it is serving.
pub async fn start(cfg: Config) -> Result<RunningServer> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let mut sans = cfg.tls_sans.clone();
    if !cfg.bind_address.is_unspecified() {
        sans.push(cfg.bind_address.to_string());
    }
    if let Some(a) = cfg.advertise_address {
        sans.push(a.to_string());
    }
    let sans = crate::pki::default_sans(&sans);
    let pki = Pki::ensure(&PkiPaths::new(&cfg.data_dir), &sans)?;
    crate::rest::pod_stream::ensure_kubelet_client_cert(&PkiPaths::new(&cfg.data_dir), &pki)?;
    let tls = tls_config(&pki)?;

    let store = open_store(&cfg).await?;
    let addr = SocketAddr::new(cfg.bind_address, cfg.secure_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let advertise = default_advertise(&cfg);

    let alloc = Arc::new(
        crate::alloc::Allocator::load(
            store.clone(),
            cfg.service_cluster_ip_range,
            cfg.service_node_port_range,
        )
        .await?,
    );
    bootstrap(&store, &alloc, advertise, addr.port()).await?;
    let (cache, cache_task) = crate::watchcache::WatchCache::start(store.clone()).await?;
    // Old revisions are dropped on a schedule, keeping a window for watches that resume.
    let compactor =
        keelson_store::Compactor::spawn(store.clone(), keelson_store::CompactorConfig::default());

    let mut admission = AdmissionChain::default();
    admission.push(Arc::new(NamespaceLifecycle {
        store: store.clone(),
        cache: cache.clone(),
    }));
    let tokens = crate::auth::TokenAuthenticator::new(
        pki.sa_pub_pem.clone(),
        Arc::new(crate::auth::CachedObjects {
            store: store.clone(),
            cache: cache.clone(),
        }),
    );
    let static_tokens = match &cfg.token_auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("token auth file {}: {e}", path.display())))?;
            crate::auth::StaticTokens::parse(&path.display().to_string(), &text)
                .map_err(|e| Error::Config(e.to_string()))?
        }
        None => crate::auth::StaticTokens::default(),
    };
    let server = Arc::new(ApiServer {
        store,
        cache,
        alloc,
        admission,
        tokens,
        static_tokens,
        opts: ApiOptions {
            advertise,
            secure_port: addr.port(),
            bookmark_interval: cfg.bookmark_interval,
            data_dir: cfg.data_dir.clone(),
        },
    });

    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = format!("https://{host}:{}", addr.port());
    let kubeconfig = cfg.data_dir.join("kubeconfig.yaml");
    let kc = pki.admin_kubeconfig(&url);
    crate::pki::write_kubeconfig(&kubeconfig, &kc)?;
    if let Some(extra) = &cfg.write_kubeconfig {
        crate::pki::write_kubeconfig(extra, &kc)?;
    }

    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, tls, server, shutdown.clone()));
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(RunningServer {
        addr,
        url,
        kubeconfig,
        pki,
        shutdown,
        task,
        cache_task,
        compactor,
    })
}

fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_cert_pem.as_bytes()) {
        let c = c.map_err(|e| Error::Tls(format!("CA certificate: {e}")))?;
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("CA certificate: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("serving certificate: {e}")))?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("serving key: {e}")))?
        .ok_or_else(|| Error::Tls("serving key: no key in PEM".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<ApiServer>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| crate::pki::identity_from_cert(c.as_ref()))
                .map(|(name, groups)| UserInfo::from_cert(name, groups));
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let user = user.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(server, req, user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Stop accepting, let open requests finish for a bounded time; watches are cut.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

async fn handle(
    server: Arc<ApiServer>,
    req: Request<Incoming>,
    user: Option<UserInfo>,
) -> Response<Body> {
    let route = crate::request::route(req.uri().path());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match &route {
        Route::Healthz(_) => return response::text(200, "ok"),
        Route::Version => return response::json(200, &discovery::version()),
        _ => {}
    }
    // A client certificate identifies the user first; without one, a bearer token must.
    let user = match user {
        Some(user) => user,
        None => match authenticate_bearer(&server, req.headers()).await {
            Some(user) => user,
            None => return response::error(&ApiError::unauthorized()),
        },
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route {
        Route::Healthz(_) | Route::Version => unreachable_ok(),
        Route::Metrics => response::text(200, ""),
        Route::ApiVersions => {
            let addr = format!("{}:{}", server.opts.advertise, server.opts.secure_port);
            match discovery::wants_aggregated(accept.as_deref()) {
                Some(v) => aggregated_response(true, v),
                None => response::json(200, &discovery::api_versions(&addr)),
            }
        }
        Route::ApiGroups => match discovery::wants_aggregated(accept.as_deref()) {
            Some(v) => aggregated_response(false, v),
            None => response::json(200, &discovery::api_groups()),
        },
        Route::ApiGroup(g) => match discovery::api_group(&g) {
            Some(v) => response::json(200, &v),
            None => response::error(&ApiError::no_route()),
        },
        Route::ResourceList { group, version } => {
            match discovery::resource_list(&group, &version) {
                Some(v) => response::json(200, &v),
                None => response::error(&ApiError::no_route()),
            }
        }
        Route::OpenApiV2 => {
            // Kubernetes answers the `...spec.v2@v1.0+protobuf` Accept with this spelling: Go's
            // mime parser (client-go reads the response Content-Type) rejects the `@`.
            const GNOSTIC: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
            let json_ok = accept
                .as_deref()
                .is_none_or(|a| a.contains("application/json") || a.contains("*/*"));
            // kubectl 1.27/1.28 ask for the gnostic protobuf only and cannot read JSON here; a
            // generic protobuf Accept gets it too unless JSON is also acceptable.
            let gnostic = accept.as_deref().is_some_and(|a| {
                a.contains("proto-openapi.spec.v2") || (!json_ok && a.contains("protobuf"))
            });
            if gnostic {
                let mut resp =
                    response::json_bytes(200, keelson_api::gnostic::v2_document_protobuf());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(GNOSTIC),
                );
                resp
            } else if json_ok {
                response::json_bytes(200, keelson_api::openapi::v2_document_json())
            } else {
                response::error(&ApiError::not_acceptable("application/json"))
            }
        }
        Route::OpenApiV3Root => response::json(200, &keelson_api::openapi::v3_root()),
        Route::OpenApiV3(gv) => match keelson_api::openapi::v3_document_json(&gv) {
            Some(doc) => response::json_bytes(200, doc),
            None => response::error(&ApiError::no_route()),
        },
        Route::NotFound => response::error(&ApiError::no_route()),
        Route::Resource(p) if discovery::is_self_subject_review(&p) => {
            if method == Method::POST {
                response::json(201, &crate::auth::self_subject_review(&user))
            } else {
                response::error(&ApiError::method_not_allowed(method.as_str()))
            }
        }
        Route::Resource(p) => {
            let Some(info) = ApiServer::resource_info(&p.group, &p.version, &p.resource) else {
                return response::error(&ApiError::no_route());
            };
            if info.namespaced != p.namespace.is_some()
                && !(info.namespaced && p.name.is_none() && method == Method::GET)
            {
                // Namespaced kinds may be listed across namespaces; everything else must match
                // its scope.
                return response::error(&ApiError::no_route());
            }
            if crate::rest::pod_stream::handles(&p) {
                return server.pod_stream(p, req).await;
            }
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let query = parse_query(req.uri().query());
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let mut incoming = req.into_body();
            if declared.is_some_and(|n| n > MAX_BODY) {
                drain(&mut incoming).await;
                return response::error(&ApiError::too_large());
            }
            let body = match read_limited(&mut incoming).await {
                Ok(b) => b,
                Err(e) => return response::error(&e),
            };
            let mut call = Call {
                path: p,
                info,
                method: method.clone(),
                query,
                accept,
                content_type,
                body,
                user,
                warnings: Vec::new(),
            };
            if info.plural == "bindings" && info.group.is_empty() && method == Method::POST {
                let r = match crate::rest::write_parse_body(&call) {
                    Ok(b) => server.bind(&mut call, b).await,
                    Err(e) => Err(e),
                };
                return r.unwrap_or_else(|e| response::error(&e));
            }
            server.serve_resource(call).await
        }
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    resp
}

/// The user of the request's `Authorization: Bearer` token, or None (a 401) when there is no
/// token or it does not authenticate. Why a token failed is logged, never told to the client.
async fn authenticate_bearer(server: &ApiServer, headers: &http::HeaderMap) -> Option<UserInfo> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)?;
    if let Some(user) = server.static_tokens.authenticate(token) {
        return Some(user);
    }
    match server.tokens.authenticate(token).await {
        Ok(user) => Some(user),
        Err(e @ crate::auth::AuthError::Lookup { .. }) => {
            tracing::warn!(error = %e, "bearer token could not be checked");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "bearer token refused");
            None
        }
    }
}

/// Reads a request body of at most `MAX_BODY` bytes. A larger one is read to its end (up to a
/// bound) before the 413 goes out, so the client sees the answer instead of a reset connection.
async fn read_limited(body: &mut Incoming) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_BODY {
                drain(body).await;
                return Err(ApiError::too_large());
            }
        }
    }
    Ok(buf.freeze())
}

/// Discards what is left of a body, giving up after a bound so a client cannot make the server
/// read forever.
async fn drain(body: &mut Incoming) {
    let mut seen = 0usize;
    let bound = 4 * MAX_BODY;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(5), body.frame()).await
    {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > bound {
                break;
            }
        }
    }
}

fn unreachable_ok() -> Response<Body> {
    response::text(200, "ok")
}

fn aggregated_response(legacy: bool, version: &str) -> Response<Body> {
    let api_version = format!("apidiscovery.k8s.io/{version}");
    let doc = discovery::aggregated(legacy, &api_version);
    let mut resp = response::json(200, &doc);
    if let Ok(v) = http::HeaderValue::from_str(&format!(
        "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    )) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn new_meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": crate::rest::now_rfc3339(),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

async fn create_if_missing(store: &Arc<dyn Store>, key: &str, value: Value) -> Result<()> {
    let bytes = Bytes::from(serde_json::to_vec(&value).map_err(|e| Error::Config(e.to_string()))?);
    match store.create(key, bytes).await {
        Ok(_) | Err(keelson_store::Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Objects every cluster has from its first start: the system namespaces and the
/// `kubernetes` service with its endpoints.
async fn bootstrap(
    store: &Arc<dyn Store>,
    alloc: &crate::alloc::Allocator,
    advertise: IpAddr,
    port: u16,
) -> Result<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut meta = new_meta(ns, None);
        meta["labels"] = json!({"kubernetes.io/metadata.name": ns});
        create_if_missing(
            store,
            &format!("/registry/namespaces/{ns}"),
            json!({"kind": "Namespace", "apiVersion": "v1", "metadata": meta,
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        )
        .await?;
    }
    let ip = alloc
        .reserve_first_ip("default/kubernetes")
        .await
        .map_err(|e| Error::Config(e.message))?;
    let mut meta = new_meta("kubernetes", Some("default"));
    meta["labels"] = json!({"component": "apiserver", "provider": "kubernetes"});
    create_if_missing(
        store,
        "/registry/services/default/kubernetes",
        json!({"kind": "Service", "apiVersion": "v1", "metadata": meta,
               "spec": {"ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}],
                        "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()], "type": "ClusterIP",
                        "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                        "internalTrafficPolicy": "Cluster"},
               "status": {"loadBalancer": {}}}),
    )
    .await?;
    // The endpoints follow this server's address and port on every start.
    let key = "/registry/endpoints/default/kubernetes";
    let mut meta = new_meta("kubernetes", Some("default"));
    meta["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    let ep = json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": meta,
        "subsets": [{"addresses": [{"ip": advertise.to_string()}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    match store.get(key).await? {
        None => create_if_missing(store, key, ep).await?,
        Some(kv) => {
            let mut cur: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            if cur.get("subsets") != ep.get("subsets") {
                cur["subsets"] = ep["subsets"].clone();
                let bytes = Bytes::from(
                    serde_json::to_vec(&cur).map_err(|e| Error::Config(e.to_string()))?,
                );
                // Another API server may have just written it; either value is fine.
                let _ = store.update(key, bytes, kv.mod_revision).await;
            }
        }
    }
    // Give back addresses a crash left allocated to services that were never stored.
    let owners: HashSet<String> = store
        .list("/registry/services/", keelson_store::ListOptions::default())
        .await?
        .items
        .iter()
        .filter_map(|kv| {
            kv.key
                .strip_prefix("/registry/services/")
                .map(str::to_string)
        })
        .collect();
    let released = alloc.repair(&owners).await?;
    if released > 0 {
        tracing::info!(
            released,
            "released allocations of services that do not exist"
        );
    }
    Ok(())
}
