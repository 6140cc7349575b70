//! `pods/log` and `pods/exec`: checked against the pod here, then proxied to the kubelet of
//! the pod's node (its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`), as
//! Kubernetes' API server does. Logs stream through unbuffered; an exec's upgraded
//! connection (WebSocket, `v5.channel.k8s.io`) is copied byte for byte both ways.
//!
//! The API server connects to kubelets over TLS with a client certificate the cluster CA
//! signed (`pki/apiserver-kubelet-client.crt`, made on first start). It verifies the
//! kubelet's serving certificate only when `pki/kubelet-ca.crt` exists in its data dir (the
//! CA that signed the kubelets' certificates); otherwise any serving certificate is taken, as
//! Kubernetes does without `--kubelet-certificate-authority`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::ApiServer;
use crate::pki::{Pki, PkiPaths};
use crate::request::ResourcePath;
use crate::response::{self, Body};
use crate::status::{ApiError, ApiResult};

const CLIENT_CERT: &str = "apiserver-kubelet-client.crt";
const CLIENT_KEY: &str = "apiserver-kubelet-client.key";
/// The CA kubelet serving certificates are checked against, when present.
const KUBELET_CA: &str = "kubelet-ca.crt";
/// The identity the API server shows kubelets.
const CLIENT_USER: &str = "kube-apiserver-kubelet-client";
const CLIENT_GROUP: &str = "system:masters";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest error body read from a kubelet.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Makes the API server's kubelet client certificate when it is missing.
pub fn ensure_kubelet_client_cert(paths: &PkiPaths, pki: &Pki) -> crate::Result<()> {
    let cert = paths.dir.join(CLIENT_CERT);
    let key = paths.dir.join(CLIENT_KEY);
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let (cert_pem, key_pem) = pki.issue_client_cert(CLIENT_USER, &[CLIENT_GROUP])?;
    write(&key, &key_pem, 0o600)?;
    write(&cert, &cert_pem, 0o644)
}

fn write(path: &Path, contents: &str, mode: u32) -> crate::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |e: std::io::Error| crate::Error::Pki(format!("write {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Whether the request is one of ours: `pods/{name}/log` or `pods/{name}/exec`.
pub fn handles(path: &ResourcePath) -> bool {
    path.group.is_empty()
        && path.resource == "pods"
        && path.name.is_some()
        && matches!(path.subresource.as_deref(), Some("log" | "exec"))
}

/// A data dir and the kubelet TLS client configuration loaded from it.
type CachedTls = (PathBuf, Arc<rustls::ClientConfig>);

/// The TLS client configuration for kubelets, loaded once per data dir.
fn kubelet_tls(data_dir: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: Mutex<Option<CachedTls>> = Mutex::new(None);
    let mut guard = CONFIG
        .lock()
        .map_err(|_| "kubelet TLS config lock poisoned")?;
    if let Some((dir, config)) = guard.as_ref()
        && dir == data_dir
    {
        return Ok(config.clone());
    }
    let config = Arc::new(build_kubelet_tls(data_dir)?);
    *guard = Some((data_dir.to_path_buf(), config.clone()));
    Ok(config)
}

fn build_kubelet_tls(data_dir: &Path) -> Result<rustls::ClientConfig, String> {
    let dir = PkiPaths::new(data_dir).dir;
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| format!("read {}: {e}", dir.join(name).display()))
    };
    let cert_pem = read(CLIENT_CERT)?;
    let key_pem = read(CLIENT_KEY)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("kubelet client key: {e}"))?
        .ok_or("kubelet client key: no key in PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let ca = dir.join(KUBELET_CA);
    let builder = if ca.exists() {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut read(KUBELET_CA)?.as_slice()) {
            let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(keelson_api::tls::AnyServerCert(provider)))
    };
    let mut config = builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The query's pairs, percent-decoded, repeated keys kept.
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request is for: the one asked for, or the pod's only (or annotated
/// default) container; Kubernetes' messages otherwise.
pub fn pick_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names(pod.pointer("/spec/containers"));
    let init = names(pod.pointer("/spec/initContainers"));
    let ephemeral = names(pod.pointer("/spec/ephemeralContainers"));
    match asked {
        Some(name) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|c| c == name)
            {
                Ok(name.to_string())
            } else {
                let mut valid = containers.clone();
                valid.extend(init.iter().cloned());
                Err(ApiError::bad_request(format!(
                    "container {name} is not valid for pod {pod_name}"
                )))
            }
        }
        None => {
            if containers.len() == 1 {
                return Ok(containers[0].clone());
            }
            if let Some(d) = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|d| containers.iter().any(|c| c == d))
            {
                return Ok(d.to_string());
            }
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Whether the container has logs to read, from the pod's status, with the kubelet's
/// messages when it has none.
pub fn check_log_status(pod: &Value, container: &str, previous: bool) -> ApiResult<()> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod["status"][k].as_array())
    .flatten()
    .find(|s| s["name"] == container);
    let bad = |what: String| {
        Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{pod_name}\" {what}"
        )))
    };
    let Some(status) = status else {
        return bad("is waiting to start: ContainerCreating".into());
    };
    let last_terminated = &status["lastState"]["terminated"];
    let state = &status["state"];
    if previous {
        if last_terminated.is_object() {
            return Ok(());
        }
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
        )));
    }
    if state["running"].is_object()
        || state["terminated"].is_object()
        || last_terminated.is_object()
    {
        return Ok(());
    }
    if let Some(waiting) = state["waiting"].as_object() {
        let reason = waiting
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return match reason {
            "ErrImagePull" => bad("is waiting to start: image can't be pulled".into()),
            "ImagePullBackOff" => {
                bad("is waiting to start: trying and failing to pull image".into())
            }
            _ => bad(format!("is waiting to start: {reason}")),
        };
    }
    bad("is waiting to start - no logs yet".into())
}

/// The kubelet's address for the pod's node: InternalIP and the kubelet port it reports.
fn kubelet_address(node: &Value) -> ApiResult<(IpAddr, u16)> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let ip = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::service_unavailable(format!("node {name} has no InternalIP address"))
        })?;
    // Kubernetes' DaemonEndpoint spells its one field `Port`.
    let endpoint = &node["status"]["daemonEndpoints"]["kubeletEndpoint"];
    let port = endpoint["Port"]
        .as_u64()
        .or_else(|| endpoint["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Ok((ip, port))
}

/// Log query parameters passed on to the kubelet, checked.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "timestamps",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
    "previous",
];

fn check_log_query(q: &[(String, String)]) -> ApiResult<()> {
    for (k, v) in q {
        match k.as_str() {
            "tailLines" | "limitBytes" | "sinceSeconds" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for {k}")))?;
                if (k == "limitBytes" || k == "sinceSeconds") && n < 1 {
                    return Err(ApiError::invalid_log_option(k));
                }
            }
            "sinceTime" => {
                v.parse::<jiff::Timestamp>().map_err(|_| {
                    ApiError::bad_request(format!("invalid value {v:?} for sinceTime"))
                })?;
            }
            _ => {}
        }
    }
    if first(q, "sinceSeconds").is_some() && first(q, "sinceTime").is_some() {
        return Err(ApiError::bad_request(
            "PodLogOptions \"\" is invalid: sinceSeconds: Forbidden: at most one of sinceTime or sinceSeconds may be specified",
        ));
    }
    Ok(())
}

impl ApiError {
    fn invalid_log_option(field: &str) -> Self {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "PodLogOptions \"\" is invalid: {field}: Invalid value: must be greater than 0"
            ),
        )
    }
}

/// A TLS connection to a kubelet, ready for one HTTP/1.1 request.
async fn connect(
    data_dir: &Path,
    ip: IpAddr,
    port: u16,
) -> ApiResult<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let unavailable = |what: String| {
        ApiError::service_unavailable(format!("error dialing the kubelet at {ip}:{port}: {what}"))
    };
    let tls = kubelet_tls(data_dir).map_err(ApiError::internal)?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((ip, port)))
        .await
        .map_err(|_| unavailable("timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::IpAddress(ip.into());
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| unavailable("TLS handshake timed out".into()))?
    .map_err(|e| unavailable(format!("TLS: {e}")))?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("kubelet connection: {e}");
        }
    });
    Ok(send)
}

/// A kubelet's error answer as the API server's error (Kubernetes' generic response check:
/// the kubelet's text becomes the message).
async fn kubelet_error(resp: Response<Incoming>, what: &str, name: &str) -> ApiError {
    let code = resp.status().as_u16();
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body.extend_from_slice(d);
                }
                if body.len() > MAX_ERROR_BODY {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        format!("the kubelet answered {code} for {what} {name}")
    } else {
        text
    };
    match code {
        400 => ApiError::bad_request(message),
        401 | 403 => ApiError::new(code, "Forbidden", message),
        404 => ApiError::new(404, "NotFound", message),
        _ => ApiError::internal(message),
    }
}

impl ApiServer {
    /// `pods/{name}/log` and `pods/{name}/exec`, with the whole request (exec upgrades it).
    pub(crate) async fn pod_stream(
        &self,
        path: ResourcePath,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let result = match path.subresource.as_deref() {
            Some("log") if req.method() == Method::GET => self.pod_log(&path, req).await,
            Some("exec") if matches!(*req.method(), Method::GET | Method::POST) => {
                self.pod_exec(&path, req).await
            }
            _ => Err(ApiError::method_not_allowed(req.method().as_str())),
        };
        result.unwrap_or_else(|e| response::error(&e))
    }

    async fn stored(&self, plural: &str, ns: Option<&str>, name: &str) -> ApiResult<Option<Value>> {
        let info = keelson_api::registry::lookup("", "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("no resource {plural}")))?;
        let key = super::object_key(info, ns, name);
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(None);
        };
        crate::watchcache::CachedObject::from_kv(&kv)
            .map(|o| Some(o.value))
            .ok_or_else(|| ApiError::internal(format!("stored object {key} is not valid JSON")))
    }

    /// The pod, its node's kubelet address.
    async fn pod_and_kubelet(&self, path: &ResourcePath) -> ApiResult<(Value, IpAddr, u16)> {
        let name = path.name.as_deref().unwrap_or_default();
        let pod = self
            .stored("pods", path.namespace.as_deref(), name)
            .await?
            .ok_or_else(|| ApiError::not_found("", "pods", name))?;
        let node_name = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?
            .to_string();
        let node = self
            .stored("nodes", None, &node_name)
            .await?
            .ok_or_else(|| ApiError::not_found("", "nodes", &node_name))?;
        let (ip, port) = kubelet_address(&node)?;
        Ok((pod, ip, port))
    }

    async fn pod_log(
        &self,
        path: &ResourcePath,
        req: Request<Incoming>,
    ) -> ApiResult<Response<Body>> {
        let q = query_pairs(req.uri().query());
        check_log_query(&q)?;
        let name = path.name.as_deref().unwrap_or_default();
        let ns = path.namespace.as_deref().unwrap_or("default");
        let (pod, ip, port) = self.pod_and_kubelet(path).await?;
        let container = pick_container(&pod, first(&q, "container"))?;
        let previous = first(&q, "previous").is_some_and(|v| v == "true" || v == "1");
        check_log_status(&pod, &container, previous)?;
        let forwarded: Vec<String> = q
            .iter()
            .filter(|(k, _)| LOG_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let uri = format!(
            "/containerLogs/{}/{}/{}?{}",
            encode(ns),
            encode(name),
            encode(&container),
            forwarded.join("&")
        );
        let mut send = connect(&self.opts.data_dir, ip, port).await?;
        let upstream = Request::get(uri)
            .header(header::HOST, format!("{ip}:{port}"))
            .body(Empty::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = send
            .send_request(upstream)
            .await
            .map_err(|e| ApiError::service_unavailable(format!("kubelet request: {e}")))?;
        if resp.status() != StatusCode::OK {
            return Err(kubelet_error(resp, "pods/log", name).await);
        }
        // Streamed as it comes: each kubelet frame is passed on at once.
        let body = resp
            .into_body()
            .map_err(std::io::Error::other)
            .boxed_unsync();
        let mut out = Response::new(body);
        out.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        out.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        Ok(out)
    }

    async fn pod_exec(
        &self,
        path: &ResourcePath,
        mut req: Request<Incoming>,
    ) -> ApiResult<Response<Body>> {
        let q = query_pairs(req.uri().query());
        let name = path.name.as_deref().unwrap_or_default().to_string();
        let ns = path.namespace.as_deref().unwrap_or("default").to_string();
        let (pod, ip, port) = self.pod_and_kubelet(path).await?;
        let container = pick_container(&pod, first(&q, "container"))?;
        if !q.iter().any(|(k, _)| k == "command") {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        let flag = |k: &str| first(&q, k).is_some_and(|v| v == "true" || v == "1");
        if !flag("stdin") && !flag("stdout") && !flag("stderr") {
            return Err(ApiError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        if let Some(phase @ ("Succeeded" | "Failed")) =
            pod.pointer("/status/phase").and_then(Value::as_str)
        {
            return Err(ApiError::bad_request(format!(
                "cannot exec into a container in a completed pod; current phase is {phase}"
            )));
        }
        let forwarded: Vec<String> = q
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "command" | "stdin" | "stdout" | "stderr" | "tty"
                )
            })
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let uri = format!(
            "/exec/{}/{}/{}?{}",
            encode(&ns),
            encode(&name),
            encode(&container),
            forwarded.join("&")
        );
        let mut send = connect(&self.opts.data_dir, ip, port).await?;
        let mut upstream = Request::builder()
            .method(req.method().clone())
            .uri(uri)
            .header(header::HOST, format!("{ip}:{port}"));
        for (k, v) in req.headers() {
            // The client's credentials are for this server, not the kubelet.
            if k == header::AUTHORIZATION || k == header::HOST || k == header::CONTENT_LENGTH {
                continue;
            }
            upstream = upstream.header(k, v);
        }
        let upstream = upstream
            .body(Empty::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut resp = send
            .send_request(upstream)
            .await
            .map_err(|e| ApiError::service_unavailable(format!("kubelet request: {e}")))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(kubelet_error(resp, "pods/exec", &name).await);
        }
        let mut out = Response::new(response::empty());
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = resp.headers().clone();
        let backend = hyper::upgrade::on(&mut resp);
        let client = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let (backend, client) = match tokio::join!(backend, client) {
                (Ok(b), Ok(c)) => (b, c),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!("exec upgrade failed: {e}");
                    return;
                }
            };
            let mut backend = TokioIo::new(backend);
            let mut client = TokioIo::new(client);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!("exec stream ended: {e}");
            }
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str]) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
        })
    }

    #[test]
    fn containers_are_picked_as_kubernetes_does() {
        assert_eq!(pick_container(&pod(&["a"]), None).expect("only"), "a");
        let err = pick_container(&pod(&["a", "b"]), None).expect_err("two");
        assert_eq!(
            err.message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        assert_eq!(err.code, 400);
        assert_eq!(
            pick_container(&pod(&["a", "b"]), Some("b")).expect("b"),
            "b"
        );
        let bad = pick_container(&pod(&["a"]), Some("x")).expect_err("x");
        assert_eq!(bad.message, "container x is not valid for pod web");
    }

    #[test]
    fn log_status_messages() {
        let mut p = pod(&["a"]);
        let err = check_log_status(&p, "a", false).expect_err("no status");
        assert_eq!(
            err.message,
            "container \"a\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        p["status"] = json!({"containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]});
        let err = check_log_status(&p, "a", false).expect_err("waiting");
        assert!(
            err.message.ends_with("trying and failing to pull image"),
            "{}",
            err.message
        );
        p["status"] = json!({"containerStatuses": [{"name": "a", "state": {"running": {}}}]});
        check_log_status(&p, "a", false).expect("running");
        let err = check_log_status(&p, "a", true).expect_err("no previous");
        assert_eq!(
            err.message,
            "previous terminated container \"a\" in pod \"web\" not found"
        );
        p["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 1}});
        check_log_status(&p, "a", true).expect("previous");
    }

    #[test]
    fn kubelet_addresses() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "10.0.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(
            kubelet_address(&node).expect("address"),
            ("10.0.0.2".parse().expect("ip"), 12345)
        );
        assert!(kubelet_address(&json!({"metadata": {"name": "n"}})).is_err());
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some(
            "command=sh&command=-c&command=echo%20hi&container=a+b",
        ));
        assert_eq!(first(&q, "container"), Some("a b"));
        assert_eq!(encode("echo hi;"), "echo%20hi%3B");
        assert!(check_log_query(&query_pairs(Some("limitBytes=0"))).is_err());
        assert!(check_log_query(&query_pairs(Some("tailLines=x"))).is_err());
        check_log_query(&query_pairs(Some("tailLines=-1&follow=true"))).expect("ok");
    }
}
