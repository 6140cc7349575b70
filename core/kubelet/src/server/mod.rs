//! The kubelet's HTTPS server (port 10250): `/healthz`, `/pods`, `/containerLogs/{ns}/{pod}/
//! {container}`, `/exec/{ns}/{pod}/{container}` (WebSocket, the channel protocol kubectl
//! speaks) and `/stats/summary`. The API server proxies `pods/log` and `pods/exec` here.
//!
//! With a client CA, every client must present a certificate it signed; without one, as the
//! kubelet of Kubernetes v1.x with anonymous auth on, any client is served.

pub mod exec;
pub mod logs;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use keelson_api::k8s_openapi::api::core::v1::Pod;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::runtime::{ContainerId, ContainerState, Kind, PodContainer, Runtime};
use crate::stats::StatsProvider;

pub use tls::TlsFiles;

/// The kubelet's default server port.
pub const DEFAULT_PORT: u16 = 10250;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubelet server tls: {0}")]
    Tls(String),
    #[error("kubelet server cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the server listens and how it does TLS.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub address: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    pub tls: TlsFiles,
    pub node_name: String,
    /// The node's addresses, for a self-signed certificate's names.
    pub node_ips: Vec<IpAddr>,
}

impl ServerConfig {
    pub fn new(node_name: impl Into<String>, root_dir: impl Into<PathBuf>) -> Self {
        Self {
            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            tls: TlsFiles {
                self_signed_dir: root_dir.into().join("pki"),
                ..Default::default()
            },
            node_name: node_name.into(),
            node_ips: Vec::new(),
        }
    }
}

/// What the handlers share.
struct Shared {
    node_name: String,
    client: kube::Client,
    runtime: Option<Runtime>,
    stats: StatsProvider,
}

/// The server, bound and ready to run.
pub struct KubeletServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
}

impl KubeletServer {
    /// Loads (or makes) the certificates and binds the port.
    pub async fn bind(
        config: ServerConfig,
        client: kube::Client,
        runtime: Option<Runtime>,
    ) -> Result<Self> {
        let tls = tls::server_config(&config.tls, &config.node_name, &config.node_ips)?;
        let addr = SocketAddr::new(config.address, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let stats = StatsProvider::new(runtime.clone());
        Ok(Self {
            listener,
            tls,
            shared: Arc::new(Shared {
                node_name: config.node_name,
                client,
                runtime,
                stats,
            }),
        })
    }

    /// Binds the server of the node `node` describes, with a runtime of its own on
    /// `containerd` (none: logs, exec and container stats answer 503). A server that cannot
    /// start is logged and `None`: the kubelet runs its pods without it.
    pub async fn bind_for_node(
        mut config: ServerConfig,
        node: &crate::node::NodeConfig,
        client: kube::Client,
        containerd: Option<crate::Containerd>,
        log_root: PathBuf,
    ) -> Option<Self> {
        let host = crate::node::HostInfo::gather();
        config.node_name = node
            .node_name
            .clone()
            .unwrap_or_else(|| host.hostname.clone());
        config.node_ips = node.node_ip.or(host.ip).into_iter().collect();
        let runtime = match containerd {
            Some(cd) => match Runtime::new(cd, log_root).await {
                Ok(rt) => Some(rt),
                Err(e) => {
                    tracing::error!("kubelet server: no container runtime: {e}");
                    None
                }
            },
            None => None,
        };
        match Self::bind(config, client, runtime).await {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::error!("{e}; running without the kubelet server");
                None
            }
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` turns true; open streams are cut then.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Some(addr) = self.local_addr() {
            tracing::info!(%addr, "kubelet server listening");
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = stopped(&mut shutdown) => break,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("kubelet server accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let shared = self.shared.clone();
            connections.spawn(async move {
                let stream =
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "kubelet server TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => return,
                    };
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, "kubelet server connection: {e}");
                }
            });
            // Reap finished connections.
            while connections.try_join_next().is_some() {}
        }
        connections.shutdown().await;
    }
}

/// Returns once `shutdown` is true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The query's pairs, percent-decoded, in order (repeated keys kept).
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let resp = match (&method, parts.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["pods"]) => pods(&shared).await,
        (&Method::GET, ["stats", "summary"]) => match shared.stats.summary(&shared.node_name).await
        {
            Ok(summary) => json(&summary),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(&shared, ns, pod, container, req.uri().query()).await
        }
        (&Method::GET | &Method::POST, ["exec", ns, pod, container]) => {
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            exec(&shared, &ns, &pod, &container, req).await
        }
        (_, ["healthz" | "pods" | "containerLogs" | "exec", ..] | ["stats", "summary"]) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "kubelet server request");
    resp
}

/// The pods bound to this node, from the API server, as a PodList.
async fn pods(shared: &Shared) -> Response<Body> {
    let api: kube::Api<Pod> = kube::Api::all(shared.client.clone());
    let lp =
        kube::api::ListParams::default().fields(&format!("spec.nodeName={}", shared.node_name));
    match api.list(&lp).await {
        Ok(list) => json(&serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": list.items,
        })),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot list the node's pods: {e}"),
        ),
    }
}

fn runtime(shared: &Shared) -> Result<&Runtime, Failure> {
    shared.runtime.as_ref().ok_or_else(|| {
        Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the container runtime is not available".into(),
        )
    })
}

/// A failed request: the status and the text the kubelet answers with.
struct Failure(StatusCode, String);

impl Failure {
    fn response(self) -> Response<Body> {
        text(self.0, self.1)
    }
}

/// The app container `ns/pod/container` in containerd, a running one first.
async fn find_container(
    rt: &Runtime,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Option<PodContainer>, Failure> {
    let all = rt
        .list_pod_containers()
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut found: Vec<PodContainer> = all
        .into_iter()
        .filter(|c| {
            c.kind == Kind::Container
                && c.pod_namespace == ns
                && c.pod_name == pod
                && c.container_name == container
        })
        .collect();
    if found.len() > 1 {
        for (i, c) in found.iter().enumerate() {
            let id = ContainerId(c.id.clone());
            if rt
                .container_status(&id)
                .await
                .is_ok_and(|s| s.state == ContainerState::Running)
            {
                return Ok(Some(found.swap_remove(i)));
            }
        }
    }
    Ok(found.into_iter().next())
}

fn pod_stub(ns: &str, name: &str, uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            uid: Some(uid.to_string()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The log file of `ns/pod/container`: by the container's pod uid when containerd has it,
/// otherwise the newest log directory of a pod of that name.
async fn log_file(
    rt: &Runtime,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Option<(PathBuf, Option<ContainerId>)>, Failure> {
    if let Some(c) = find_container(rt, ns, pod, container).await? {
        let path = rt
            .log_path(&pod_stub(ns, pod, &c.pod_uid), container)
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        return Ok(Some((path, Some(ContainerId(c.id)))));
    }
    let probe = rt
        .log_path(&pod_stub(ns, pod, "x"), container)
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(root) = probe.parent().and_then(|p| p.parent()) else {
        return Ok(None);
    };
    let prefix = format!("{ns}_{pod}_");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    Ok(newest.map(|(_, dir)| (dir.join(format!("{container}.log")), None)))
}

struct ContainerAlive {
    rt: Runtime,
    id: Option<ContainerId>,
}

impl logs::Liveness for ContainerAlive {
    async fn running(&mut self) -> bool {
        match &self.id {
            Some(id) => self
                .rt
                .container_status(id)
                .await
                .is_ok_and(|s| s.state == ContainerState::Running),
            None => false,
        }
    }
}

async fn container_logs(
    shared: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> Response<Body> {
    let rt = match runtime(shared) {
        Ok(rt) => rt,
        Err(f) => return f.response(),
    };
    let opts = match logs::LogOptions::from_query(&parse_query(query)) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let (path, id) = match log_file(rt, ns, pod, container).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("container {container:?} in pod {pod:?} is not available"),
            );
        }
        Err(f) => return f.response(),
    };
    let (path, id) = if opts.previous {
        let previous = logs::previous_path(&path);
        if !previous.exists() {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        (previous, None)
    } else {
        (path, id)
    };
    let (tx, rx) = mpsc::channel(16);
    let alive = ContainerAlive { rt: rt.clone(), id };
    tokio::spawn(logs::stream(path, opts, alive, tx));
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx).map_ok_frame());
    let mut resp = Response::new(body.boxed_unsync());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Turns a stream of byte chunks into body frames.
trait MapOkFrame {
    fn map_ok_frame(
        self,
    ) -> impl futures::Stream<Item = std::io::Result<Frame<Bytes>>> + Send + 'static;
}

impl<S> MapOkFrame for S
where
    S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    fn map_ok_frame(
        self,
    ) -> impl futures::Stream<Item = std::io::Result<Frame<Bytes>>> + Send + 'static {
        use futures::StreamExt as _;
        self.map(|r| r.map(Frame::data))
    }
}

/// Whether the request asks for a WebSocket upgrade.
fn is_websocket(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

async fn exec(
    shared: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let rt = match runtime(shared) {
        Ok(rt) => rt.clone(),
        Err(f) => return f.response(),
    };
    let request = match exec::request_from_query(&parse_query(req.uri().query())) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let found = match find_container(&rt, ns, pod, container).await {
        Ok(Some(c)) => ContainerId(c.id),
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("container {container:?} in pod {pod:?} not found"),
            );
        }
        Err(f) => return f.response(),
    };
    if !is_websocket(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported",
        );
    }
    let offered = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let Some(protocol) = exec::negotiate(&offered) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "none of the offered subprotocols ({offered}) is supported: use {} or {}",
                exec::PROTOCOL_V5,
                exec::PROTOCOL_V4
            ),
        );
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("exec upgrade failed: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let start = async |request: crate::runtime::ExecRequest| {
            rt.exec(&found, &request).await.map_err(|e| match e {
                crate::runtime::Error::Exec { reason, .. } => reason,
                other => other.to_string(),
            })
        };
        exec::serve(ws, protocol, request, start).await;
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = parse_query(Some(
            "command=sh&command=-c&command=echo%20hi%3B+exit%203&tty=1&x",
        ));
        assert_eq!(
            q,
            [
                ("command".to_string(), "sh".to_string()),
                ("command".into(), "-c".into()),
                ("command".into(), "echo hi; exit 3".into()),
                ("tty".into(), "1".into()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(parse_query(Some("a=100%&b=%zz"))[1].1, "%zz");
    }
}
