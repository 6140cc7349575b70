//! The client side of the OCI distribution API, as much of it as a pull needs: manifests by
//! tag or digest, blobs by digest, and the registries' token dance (a `401` with a
//! `WWW-Authenticate: Bearer realm=...` challenge, answered by fetching a token from the
//! realm, with the pull secret's credentials when there are some).
//!
//! HTTPS with the system's roots by default; plain HTTP only for the registries named
//! insecure.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};

use super::{Credential, PullError};
use crate::containerd::error_chain;

/// Docker Hub's API endpoint; references name it `docker.io`.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may go without a byte (a stalled pull fails instead of hanging).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest token response read.
const MAX_TOKEN: usize = 1 << 20;

/// An HTTP client for one pull (its connections are reused across the pull's requests; a
/// client is not shared further, as its pooled connections belong to the tokio runtime that
/// made them): rustls with ring and the platform's verifier.
pub(super) fn http_client() -> Result<reqwest::Client, PullError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| PullError::Client {
            detail: format!("cannot set up TLS: {e}"),
        })?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("keelson-kubelet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Client {
            detail: error_chain(&e),
        })
}

/// One repository of one registry, with the authorization obtained for it.
pub(super) struct Repository {
    http: reqwest::Client,
    /// `https://host` or `http://host`.
    base: String,
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    host: String,
    name: String,
    credential: Option<Credential>,
    authorization: Option<HeaderValue>,
}

impl Repository {
    pub(super) fn new(
        http: reqwest::Client,
        host: &str,
        name: &str,
        insecure: bool,
        credential: Option<Credential>,
    ) -> Self {
        let api_host = if host == "docker.io" {
            DOCKER_HUB_API
        } else {
            host
        };
        let scheme = if insecure { "http" } else { "https" };
        Self {
            http,
            base: format!("{scheme}://{api_host}"),
            host: host.to_string(),
            name: name.to_string(),
            credential,
            authorization: None,
        }
    }

    pub(super) fn manifest_url(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base, self.name)
    }

    pub(super) fn blob_url(&self, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base, self.name)
    }

    /// GETs `url`, answering one authorization challenge on the way. Returns any response
    /// but 401, which becomes [`PullError::Unauthorized`].
    pub(super) async fn get(
        &mut self,
        url: &str,
        accept: &[&str],
    ) -> Result<reqwest::Response, PullError> {
        let mut challenged = false;
        loop {
            let mut request = self.http.get(url);
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some(auth) = &self.authorization {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(&self.host, url, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if challenged || challenge.is_empty() {
                let message = error_message(response).await;
                return Err(PullError::Unauthorized {
                    detail: format!("GET {url}: 401 Unauthorized{message}"),
                });
            }
            challenged = true;
            self.authorize(&challenge).await?;
        }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the credential, or a Bearer token
    /// from the realm.
    async fn authorize(&mut self, challenge: &str) -> Result<(), PullError> {
        let (scheme, params) = parse_challenge(challenge);
        let basic = self.credential.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let header = |value: String| {
            HeaderValue::from_str(&value).map_err(|_| PullError::Unauthorized {
                detail: "the registry's credentials are not a valid header value".into(),
            })
        };
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(basic) = basic else {
                return Err(PullError::Unauthorized {
                    detail: format!(
                        "{} asks for a user name and password, and no pull secret has any for it",
                        self.host
                    ),
                });
            };
            self.authorization = Some(header(basic)?);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(PullError::Unauthorized {
                detail: format!(
                    "unsupported authorization scheme {scheme:?} from {}",
                    self.host
                ),
            });
        }
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut query: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .cloned()
            .collect();
        if !query.iter().any(|(k, _)| k == "scope") {
            query.push(("scope".into(), format!("repository:{}:pull", self.name)));
        }
        let url = reqwest::Url::parse_with_params(&realm, &query).map_err(|e| {
            PullError::Unauthorized {
                detail: format!(
                    "the token realm {realm:?} of {} is not a URL: {e}",
                    self.host
                ),
            }
        })?;
        let mut request = self.http.get(url.clone());
        if let Some(basic) = basic {
            request = request.header(AUTHORIZATION, header(basic)?);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(url.host_str().unwrap_or_default(), url.as_str(), &e))?;
        let status = response.status();
        if !status.is_success() {
            let message = error_message(response).await;
            return Err(PullError::Unauthorized {
                detail: format!("fetching a token from {realm}: {status}{message}"),
            });
        }
        let body = read_limited(response, MAX_TOKEN, url.as_str()).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let token: Token = serde_json::from_slice(&body).map_err(|e| PullError::Unauthorized {
            detail: format!("the token from {realm} is not JSON: {e}"),
        })?;
        let token = if token.token.is_empty() {
            token.access_token
        } else {
            token.token
        };
        if token.is_empty() {
            return Err(PullError::Unauthorized {
                detail: format!("{realm} answered without a token"),
            });
        }
        self.authorization = Some(header(format!("Bearer {token}"))?);
        Ok(())
    }
}

/// The media type a response says its body has, without parameters.
pub(super) fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Reads a whole (small) body, refusing one longer than `limit`.
pub(super) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    url: &str,
) -> Result<Vec<u8>, PullError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| PullError::Read {
        url: url.to_string(),
        detail: error_chain(&e),
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(PullError::Read {
                url: url.to_string(),
                detail: format!("the response is larger than {limit} bytes"),
            });
        }
    }
    Ok(body)
}

/// The first message of a registry's JSON error body (`{"errors": [{"code", "message"}]}`),
/// as `: CODE: message`, or "".
pub(super) async fn error_message(response: reqwest::Response) -> String {
    let Ok(body) = read_limited(response, 64 << 10, "").await else {
        return String::new();
    };
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e
            .errors
            .first()
            .map(|e| format!(": {}: {}", e.code, e.message))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Says what went wrong with a request that got no response, in the terms an operator
/// acts on: connection refused, a name that does not resolve, a TLS failure.
pub(super) fn transport_error(host: &str, url: &str, err: &reqwest::Error) -> PullError {
    let chain = error_chain(err);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(tls) = rustls_error(e) {
            let hint = if matches!(tls, rustls::Error::InvalidMessage(_)) {
                format!(" (if {host} serves plain HTTP, name it with --insecure-registry {host})")
            } else {
                String::new()
            };
            return PullError::Tls {
                url: url.to_string(),
                detail: format!("{tls}{hint}"),
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return PullError::Connect {
                url: url.to_string(),
                detail: format!("connection refused by {host}"),
            };
        }
        source = e.source();
    }
    // The connector's errors are boxed on their way up and do not always downcast: their
    // text tells as much.
    let tls_words = [
        "corrupt message",
        "InvalidContentType",
        "certificate",
        "HandshakeFailure",
    ];
    if tls_words.iter().any(|w| chain.contains(w)) {
        let plain = chain.contains("corrupt message") || chain.contains("InvalidContentType");
        let hint = if plain {
            format!(" (if {host} serves plain HTTP, name it with --insecure-registry {host})")
        } else {
            String::new()
        };
        return PullError::Tls {
            url: url.to_string(),
            detail: format!("{}{hint}", last_cause(&chain)),
        };
    }
    if chain.contains("Connection refused") || chain.contains("connection refused") {
        return PullError::Connect {
            url: url.to_string(),
            detail: format!("connection refused by {host}"),
        };
    }
    let detail = if chain.contains("dns error") || chain.contains("failed to lookup address") {
        format!("cannot resolve {}: {chain}", host_only(host))
    } else if err.is_timeout() {
        format!("timed out: {chain}")
    } else {
        chain
    };
    PullError::Connect {
        url: url.to_string(),
        detail,
    }
}

/// The innermost cause of an error chain joined by ": ".
fn last_cause(chain: &str) -> &str {
    chain.rsplit(": ").next().unwrap_or(chain)
}

fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn host_only(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Splits `Bearer realm="https://auth",service="registry",scope="repository:a:pull"`
/// into its scheme and parameters (quoted values may hold commas).
fn parse_challenge(challenge: &str) -> (String, Vec<(String, String)>) {
    let challenge = challenge.trim();
    let (scheme, rest) = challenge
        .split_once(char::is_whitespace)
        .unwrap_or((challenge, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.push((key, value));
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                (
                    "scope".into(),
                    "repository:library/busybox:pull,push".into()
                ),
            ]
        );
        let (scheme, params) = parse_challenge("Basic realm=Registry, charset=\"UTF-8\"");
        assert_eq!(scheme, "Basic");
        assert_eq!(
            params,
            vec![
                ("realm".into(), "Registry".into()),
                ("charset".into(), "UTF-8".into())
            ]
        );
        assert_eq!(parse_challenge("Bearer").1, vec![]);
    }

    /// A one-thread HTTP server answering each request with `reply(request head)`; returns
    /// its address and the request heads it saw.
    fn serve(
        reply: impl Fn(&str, &str) -> String + Send + 'static,
    ) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let me = addr.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                log.lock().expect("log").push(head.clone());
                let _ = stream.write_all(reply(&me, &head).as_bytes());
            }
        });
        (addr, seen)
    }

    fn response(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn bearer_challenges_are_answered_with_a_token_from_the_realm() {
        let (addr, seen) = serve(|me, head| {
            if head.starts_with("GET /token?") {
                // The pull secret's credentials go to the realm, Basic.
                let basic = base64::engine::general_purpose::STANDARD.encode("amy:pw");
                if head.contains(&format!("authorization: Basic {basic}")) {
                    response("200 OK", "", r#"{"token": "t0k"}"#)
                } else {
                    response("401 Unauthorized", "", "")
                }
            } else if head.contains("authorization: Bearer t0k") {
                response("200 OK", "Content-Type: text/plain\r\n", "manifest")
            } else {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"fake\"\r\n"
                );
                response(
                    "401 Unauthorized",
                    &challenge,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
            }
        });
        let http = http_client().expect("client");
        let credential = Credential {
            registry: addr.clone(),
            username: "amy".into(),
            password: "pw".into(),
        };
        let mut repo = Repository::new(http.clone(), &addr, "team/app", true, Some(credential));
        let url = repo.manifest_url("v1");
        let reply = repo.get(&url, &["x"]).await.expect("authorized");
        assert_eq!(reply.status(), StatusCode::OK);
        let heads = seen.lock().expect("log").clone();
        assert_eq!(heads.len(), 3, "{heads:#?}");
        assert!(
            heads[1].starts_with("GET /token?service=fake&scope=repository%3Ateam%2Fapp%3Apull "),
            "{heads:#?}"
        );
        // The token is kept for the next request.
        repo.get(&url, &[]).await.expect("authorized again");
        assert_eq!(seen.lock().expect("log").len(), 4);

        // Without credentials the realm refuses, and the error says so.
        let mut anonymous = Repository::new(http, &addr, "team/app", true, None);
        let err = anonymous.get(&url, &[]).await.expect_err("refused");
        assert!(
            matches!(&err, PullError::Unauthorized { detail } if detail.contains("401")),
            "{err}"
        );
    }

    #[test]
    fn docker_hub_is_reached_at_its_api_host() {
        let http = http_client().expect("client");
        let hub = Repository::new(http.clone(), "docker.io", "library/busybox", false, None);
        assert_eq!(
            hub.manifest_url("latest"),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
        let local = Repository::new(http, "127.0.0.1:5000", "app", true, None);
        assert_eq!(
            local.blob_url("sha256:ab"),
            "http://127.0.0.1:5000/v2/app/blobs/sha256:ab"
        );
    }
}
