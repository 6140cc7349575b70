//! One probe attempt (exec in the container, an HTTP GET, a TCP connect), and the kill a
//! failed liveness or startup probe leads to.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::KillRequest;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Action, HttpGet, ProbeSpec};
use crate::containerd::RpcExt as _;
use crate::runtime::{self, ContainerId, ContainerState, Runtime};

/// Probe output kept for results and events, as Kubernetes' probers limit it (10 KiB).
pub const MAX_OUTPUT: usize = 10 * 1024;
/// Redirects an httpGet probe follows (Go's HTTP client's limit).
const MAX_REDIRECTS: usize = 10;
/// The User-Agent of httpGet probes: `kube-probe/<major>.<minor>` of the API version served.
const USER_AGENT: &str = "kube-probe/1.33";
/// Extra time an exec probe gets beyond its timeout before the kubelet stops waiting.
const EXEC_SLACK: Duration = Duration::from_secs(5);
/// How long a killed container may take to exit after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const SIGTERM: u32 = 15;
const SIGKILL: u32 = 9;

/// What one probe attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success(String),
    /// A success with a note (an httpGet probe that stopped at a redirect to another host).
    Warning(String),
    Failure(String),
    /// The probe could not run; the attempt does not count.
    Error(String),
}

/// Where a pod's probes reach its containers.
pub(super) struct Env {
    pub runtime: Runtime,
    pub net: Net,
}

/// Where network probes go.
pub(super) struct Net {
    /// The sandbox's pid: network probes dial from its network namespace.
    pub sandbox_pid: Option<u32>,
    pub pod_ip: Option<IpAddr>,
}

impl Net {
    /// The address a probe without `host` dials.
    fn default_host(&self) -> String {
        self.pod_ip
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .to_string()
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Runs one attempt of `spec` against container `id`.
pub(super) async fn run(spec: &ProbeSpec, env: &Arc<Env>, id: &ContainerId) -> Outcome {
    match &spec.action {
        Action::Exec(command) => exec(&env.runtime, id, command, spec.timeout).await,
        Action::Http(get) => http(get, &env.net, spec.timeout).await,
        Action::Tcp { host, port } => tcp(host.as_deref(), *port, &env.net, spec.timeout).await,
        Action::Invalid(why) => Outcome::Error(why.clone()),
    }
}

async fn exec(rt: &Runtime, id: &ContainerId, command: &[String], timeout: Duration) -> Outcome {
    let timed_out = || Outcome::Failure(format!("command {:?} timed out", command.join(" ")));
    let call = rt.exec_sync(id, command.to_vec(), timeout);
    match tokio::time::timeout(timeout + EXEC_SLACK, call).await {
        Err(_) => timed_out(),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let text = truncate(text);
            if out.exit_code == 0 {
                Outcome::Success(text)
            } else {
                Outcome::Failure(text)
            }
        }
        Ok(Err(runtime::Error::Exec { reason, .. })) if reason.starts_with("command timed out") => {
            timed_out()
        }
        Ok(Err(e)) => Outcome::Error(e.to_string()),
    }
}

/// A tcpSocket probe: success when the connection is made.
async fn tcp(host: Option<&str>, port: u16, net: &Net, timeout: Duration) -> Outcome {
    let host = host.map_or_else(|| net.default_host(), str::to_string);
    match dial(net.sandbox_pid, &host, port, timeout).await {
        Ok(_) => Outcome::Success(String::new()),
        Err(e) => Outcome::Failure(format!(
            "dial tcp {}: {}",
            join_host_port(&host, port),
            io_text(&e)
        )),
    }
}

fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut => "i/o timeout".into(),
        io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        _ => e.to_string(),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to `host:port` from the network namespace of process `pid`. The thread that
/// enters the namespace is a fresh one and ends with the dial; the socket stays in the
/// namespace it was made in.
async fn dial(pid: Option<u32>, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let Some(pid) = pid else {
        return Err(io::Error::other("the pod sandbox is not running"));
    };
    let host = host.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("probe-dial".into())
        .spawn(move || {
            let connect = || -> io::Result<std::net::TcpStream> {
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                let addr: SocketAddr = (host.as_str(), port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| io::Error::other(format!("lookup {host}: no such host")))?;
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            };
            let _ = tx.send(connect());
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the dialing thread ended"))??;
    TcpStream::from_std(stream)
}

/// An httpGet probe: Kubernetes' rules for status codes and redirects (followed while they
/// stay on the same host; one to another host ends the probe with a warning).
async fn http(get: &HttpGet, net: &Net, timeout: Duration) -> Outcome {
    let host = get.host.clone().unwrap_or_else(|| net.default_host());
    let scheme = if get.https { "https" } else { "http" };
    let path = if get.path.starts_with('/') {
        get.path.clone()
    } else {
        format!("/{}", get.path)
    };
    let mut url = Url {
        https: get.https,
        host: host.clone(),
        port: get.port,
        path,
    };
    let first = format!("{scheme}://{}{}", join_host_port(&host, get.port), url.path);
    let attempt = async {
        for _ in 0..=MAX_REDIRECTS {
            let reply = match request(&url, &get.headers, net.sandbox_pid, timeout).await {
                Ok(r) => r,
                Err(e) => return Outcome::Failure(format!("Get {:?}: {e}", url.to_string())),
            };
            let code = reply.status;
            if matches!(code, 301 | 302 | 303 | 307 | 308)
                && let Some(next) = reply.location.as_deref().and_then(|l| url.join(l))
            {
                if next.host != url.host {
                    return Outcome::Warning(format!(
                        "Probe terminated redirects, Response body: {}",
                        reply.body
                    ));
                }
                url = next;
                continue;
            }
            return if (200..400).contains(&code) {
                if code >= 300 {
                    Outcome::Warning(format!(
                        "Probe terminated redirects, Response body: {}",
                        reply.body
                    ))
                } else {
                    Outcome::Success(reply.body)
                }
            } else {
                Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        Outcome::Failure(format!(
            "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
            url.to_string()
        ))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(o) => o,
        Err(_) => Outcome::Failure(format!(
            "Get {first:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// An http(s) URL with an explicit port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(
            f,
            "{scheme}://{}{}",
            join_host_port(&self.host, self.port),
            self.path
        )
    }
}

impl Url {
    /// The target of a `Location` header, absolute or relative to this URL.
    fn join(&self, location: &str) -> Option<Url> {
        let location = location.trim();
        for (prefix, https) in [("http://", false), ("https://", true)] {
            if location.len() >= prefix.len()
                && location[..prefix.len()].eq_ignore_ascii_case(prefix)
            {
                let rest = &location[prefix.len()..];
                let (authority, path) = match rest.find(['/', '?']) {
                    Some(i) => (&rest[..i], rest[i..].to_string()),
                    None => (rest, "/".to_string()),
                };
                let default_port = if https { 443 } else { 80 };
                let (host, port) = split_authority(authority, default_port)?;
                let path = if path.starts_with('?') {
                    format!("/{path}")
                } else {
                    path
                };
                return Some(Url {
                    https,
                    host,
                    port,
                    path,
                });
            }
        }
        if location.starts_with("//") {
            return self.join(&format!(
                "{}:{location}",
                if self.https { "https" } else { "http" }
            ));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let current = self.path.split('?').next().unwrap_or("/");
            let dir = &current[..current.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Some(Url {
            path,
            ..self.clone()
        })
    }
}

fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

struct Reply {
    status: u16,
    location: Option<String>,
    body: String,
}

/// One GET over a connection made in the pod's network namespace.
async fn request(
    url: &Url,
    headers: &[(String, String)],
    pid: Option<u32>,
    timeout: Duration,
) -> Result<Reply, String> {
    let stream = dial(pid, &url.host, url.port, timeout).await.map_err(|e| {
        format!(
            "dial tcp {}: {}",
            join_host_port(&url.host, url.port),
            io_text(&e)
        )
    })?;
    let mut builder = http::Request::get(url.path.as_str());
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        builder = builder.header(http::header::HOST, join_host_port(&url.host, url.port));
    }
    if !has("user-agent") {
        builder = builder.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !has("accept") {
        builder = builder.header(http::header::ACCEPT, "*/*");
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let req = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    if url.https {
        let tls = tls_connector();
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("invalid server name {:?}: {e}", url.host))?;
        let stream = tls
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls handshake: {e}"))?;
        exchange(stream, req).await
    } else {
        exchange(stream, req).await
    }
}

async fn exchange<S>(io: S, req: http::Request<Empty<Bytes>>) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let outcome = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while bytes.len() < MAX_OUTPUT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        bytes.extend_from_slice(data);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => break,
            }
        }
        bytes.truncate(MAX_OUTPUT);
        Ok(Reply {
            status,
            location,
            body: truncate(String::from_utf8_lossy(&bytes).into_owned()),
        })
    }
    .await;
    conn.abort();
    outcome
}

/// HTTPS probes do not verify the server's certificate, as Kubernetes' do not.
fn tls_connector() -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(keelson_api::tls::AnyServerCert(
                    provider,
                )))
                .with_no_client_auth()
        });
    match config {
        Ok(c) => tokio_rustls::TlsConnector::from(Arc::new(c)),
        // The ring provider supports the default versions; this is unreachable in practice.
        Err(_) => tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(keelson_api::tls::AnyServerCert(
                    Arc::new(rustls::crypto::ring::default_provider()),
                )))
                .with_no_client_auth(),
        )),
    }
}

/// Stops container `id` as a failed liveness or startup probe asks: SIGTERM, SIGKILL after
/// `grace`. The container stays (exited) so that its exit is seen and it is restarted per
/// restartPolicy like any other exit.
pub async fn kill(rt: &Runtime, id: &ContainerId, grace: Duration) -> runtime::Result<()> {
    let cd = rt.containerd();
    let signal = |signal: u32| {
        let req = cd.request(
            KillRequest {
                container_id: id.0.clone(),
                exec_id: String::new(),
                signal,
                all: false,
            },
            None,
        );
        async move {
            match cd.tasks().kill(req).await.rpc("kill task") {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(source) => Err(runtime::Error::Containerd {
                    container: id.0.clone(),
                    source,
                }),
            }
        }
    };
    let exited = || async {
        loop {
            match rt.container_status(id).await {
                Ok(s) if s.state == ContainerState::Running => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    signal(SIGTERM).await?;
    if tokio::time::timeout(grace, exited()).await.is_ok() {
        return Ok(());
    }
    signal(SIGKILL).await?;
    if tokio::time::timeout(KILL_TIMEOUT, exited()).await.is_err() {
        return Err(runtime::Error::Start {
            container: id.0.clone(),
            reason: format!("still running {}s after SIGKILL", KILL_TIMEOUT.as_secs()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn url(path: &str) -> Url {
        Url {
            https: false,
            host: "10.0.0.5".into(),
            port: 8080,
            path: path.into(),
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_probe_url() {
        let base = url("/a/b?x=1");
        assert_eq!(base.join("/healthz").unwrap(), url("/healthz"));
        assert_eq!(base.join("c").unwrap(), url("/a/c"));
        assert_eq!(base.join("http://10.0.0.5:8080/ok").unwrap(), url("/ok"));
        let other = base.join("https://example.com/x").unwrap();
        assert_eq!(
            (other.host.as_str(), other.port, other.https),
            ("example.com", 443, true)
        );
        let v6 = base.join("http://[fd00::1]:81").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.path.as_str()),
            ("fd00::1", 81, "/")
        );
        assert_eq!(v6.to_string(), "http://[fd00::1]:81/");
    }

    #[test]
    fn output_is_cut_at_the_limit_on_a_char_boundary() {
        let long = "é".repeat(MAX_OUTPUT);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_OUTPUT && cut.len() >= MAX_OUTPUT - 1);
        assert_eq!(truncate("short".into()), "short");
    }

    /// Answers HTTP requests on `listener` (over TLS with `tls`) by path.
    async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).to_lowercase();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, extra) = match path.as_str() {
                "/ok" => ("200 OK", String::new()),
                "/redirect" => ("302 Found", "Location: /ok\r\n".into()),
                "/away" => ("302 Found", "Location: http://example.invalid/x\r\n".into()),
                "/loop" => ("302 Found", "Location: /loop\r\n".into()),
                "/headers"
                    if req.contains("x-probe: yes") && req.contains("user-agent: kube-probe/") =>
                {
                    ("200 OK", String::new())
                }
                "/headers" => ("400 Bad Request", String::new()),
                _ => ("404 Not Found", String::new()),
            };
            let body = format!("path {path}");
            let reply = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            answer(s).await;
                        }
                    }
                    None => answer(stream).await,
                }
            });
        }
    }

    fn get(https: bool, port: u16, path: &str) -> HttpGet {
        HttpGet {
            https,
            host: Some("127.0.0.1".into()),
            path: path.into(),
            port,
            headers: vec![("X-Probe".into(), "yes".into())],
        }
    }

    /// Probes dial from the test's own network namespace (entering it needs root, as the
    /// kubelet does).
    fn net() -> Net {
        Net {
            sandbox_pid: Some(std::process::id()),
            pod_ip: None,
        }
    }

    #[tokio::test]
    async fn http_probes_follow_kubernetes_rules_over_http_and_https() {
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_port = plain.local_addr().unwrap().port();
        tokio::spawn(serve(plain, None));
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        let secure = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let secure_port = secure.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tokio::spawn(serve(secure, Some(acceptor)));
        let env = net();
        let t = Duration::from_secs(2);

        for (https, port) in [(false, plain_port), (true, secure_port)] {
            let ok = http(&get(https, port, "/ok"), &env, t).await;
            assert_eq!(ok, Outcome::Success("path /ok".into()), "https={https}");
            let redirected = http(&get(https, port, "/redirect"), &env, t).await;
            assert_eq!(
                redirected,
                Outcome::Success("path /ok".into()),
                "https={https}"
            );
            let headers = http(&get(https, port, "/headers"), &env, t).await;
            assert_eq!(
                headers,
                Outcome::Success("path /headers".into()),
                "https={https}"
            );
            let missing = http(&get(https, port, "/missing"), &env, t).await;
            assert_eq!(
                missing,
                Outcome::Failure("HTTP probe failed with statuscode: 404".into())
            );
        }
        let away = http(&get(false, plain_port, "/away"), &env, t).await;
        assert_eq!(
            away,
            Outcome::Warning("Probe terminated redirects, Response body: path /away".into())
        );
        let looping = http(&get(false, plain_port, "/loop"), &env, t).await;
        assert!(
            matches!(&looping, Outcome::Failure(m) if m.contains("stopped after 10 redirects")),
            "{looping:?}"
        );

        // Nothing listens: refused, as a dial error.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = http(&get(false, closed_port, "/"), &env, t).await;
        assert!(
            matches!(&refused, Outcome::Failure(m) if m.contains("connection refused") && m.starts_with("Get \"http://127.0.0.1:")),
            "{refused:?}"
        );
        assert_eq!(
            tcp(None, plain_port, &env, t).await,
            Outcome::Success(String::new())
        );
        assert_eq!(
            tcp(None, closed_port, &env, t).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn a_dial_without_a_sandbox_fails_plainly() {
        let err = dial(None, "127.0.0.1", 80, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sandbox"), "{err}");
    }
}
