//! The guestbook's frontend: the page at `/` and the book's `guestbook.php` API, writing to
//! the redis master and reading from the redis slaves.
//!
//! - `GET /guestbook.php?cmd=set&key=K&value=V` sets `K` on the master: `{"message": "Updated"}`
//! - `GET /guestbook.php?cmd=get&key=K` reads `K` from a slave: `{"data": "V"}` (`""` when unset)
//!
//! As in the book's PHP app, `GET_HOSTS_FROM=env` takes the hosts from the service variables
//! (`REDIS_MASTER_SERVICE_HOST`/`_PORT`, `REDIS_SLAVE_SERVICE_HOST`/`_PORT`); anything else
//! uses the DNS names `redis-master` and `redis-slave`, port 6379.
//!
//! usage: guestbook-frontend [--listen ADDR]   (default 0.0.0.0:80)

mod http;
mod resp;

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("index.html");

/// How long a client has to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one redis role is reached, or why it cannot be.
type Endpoint = Result<(String, u16), String>;

struct Hosts {
    master: Endpoint,
    slave: Endpoint,
}

impl Hosts {
    /// The hosts as the environment says, looked up with `var`.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> Hosts {
        let from_env = var("GET_HOSTS_FROM").as_deref() == Some("env");
        let endpoint = |service: &str, dns: &str| -> Endpoint {
            if !from_env {
                return Ok((dns.to_string(), 6379));
            }
            let host_var = format!("{service}_SERVICE_HOST");
            let port_var = format!("{service}_SERVICE_PORT");
            let host = var(&host_var)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("GET_HOSTS_FROM=env but {host_var} is not set"))?;
            let port = match var(&port_var).filter(|p| !p.is_empty()) {
                None => 6379,
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("{port_var}={p:?} is not a port"))?,
            };
            Ok((host, port))
        };
        Hosts {
            master: endpoint("REDIS_MASTER", "redis-master"),
            slave: endpoint("REDIS_SLAVE", "redis-slave"),
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = "0.0.0.0:80".to_string();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: guestbook-frontend [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let hosts = Arc::new(Hosts::from_env(|k| std::env::var(k).ok()));
    for (role, endpoint) in [("master", &hosts.master), ("slave", &hosts.slave)] {
        match endpoint {
            Ok((host, port)) => eprintln!("guestbook-frontend: redis {role} at {host}:{port}"),
            Err(why) => eprintln!("guestbook-frontend: no redis {role}: {why}"),
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("guestbook-frontend: listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("guestbook-frontend: listening on {listen}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let hosts = Arc::clone(&hosts);
                std::thread::spawn(move || serve(stream, &hosts));
            }
            Err(e) => eprintln!("guestbook-frontend: accept: {e}"),
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(stream: TcpStream, hosts: &Hosts) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let request = match http::read_request(&mut BufReader::new(stream)) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let body = format!("{{\"error\": {}}}", http::json_string(&e.to_string()));
            let _ = http::respond(&mut writer, 400, JSON, body.as_bytes(), false);
            return;
        }
    };
    let head_only = request.method == "HEAD";
    let (status, content_type, body) = route(&request, hosts);
    let _ = http::respond(
        &mut writer,
        status,
        content_type,
        body.as_bytes(),
        head_only,
    );
}

const JSON: &str = "application/json";

fn route(request: &http::Request, hosts: &Hosts) -> (u16, &'static str, String) {
    if request.method != "GET" && request.method != "HEAD" {
        return (405, JSON, error_body("only GET is served"));
    }
    match request.path.as_str() {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_string()),
        "/guestbook.php" => {
            let (status, body) = api(request, hosts);
            (status, JSON, body)
        }
        _ => (404, JSON, error_body("not found")),
    }
}

fn error_body(message: &str) -> String {
    format!("{{\"error\": {}}}", http::json_string(message))
}

/// The book's `guestbook.php`.
fn api(request: &http::Request, hosts: &Hosts) -> (u16, String) {
    let Some(key) = request.param("key") else {
        return (400, error_body("key is required"));
    };
    match request.param("cmd") {
        Some("set") => {
            let Some(value) = request.param("value") else {
                return (400, error_body("cmd=set needs a value"));
            };
            let done = redis(&hosts.master, &[b"SET", key.as_bytes(), value.as_bytes()]);
            match done {
                Ok(_) => (200, r#"{"message": "Updated"}"#.to_string()),
                Err(why) => failure("master", &why),
            }
        }
        Some("get") => match redis(&hosts.slave, &[b"GET", key.as_bytes()]) {
            Ok(resp::Reply::Bulk(value)) => {
                let text = String::from_utf8_lossy(value.as_deref().unwrap_or_default());
                (200, format!("{{\"data\": {}}}", http::json_string(&text)))
            }
            Ok(other) => failure("slave", &format!("unexpected reply {other:?}")),
            Err(why) => failure("slave", &why),
        },
        _ => (400, error_body("cmd must be set or get")),
    }
}

fn redis(endpoint: &Endpoint, args: &[&[u8]]) -> Result<resp::Reply, String> {
    let (host, port) = endpoint.as_ref().map_err(Clone::clone)?;
    resp::command(host, *port, args).map_err(|e| format!("{host}:{port}: {e}"))
}

fn failure(role: &str, why: &str) -> (u16, String) {
    eprintln!("guestbook-frontend: redis {role}: {why}");
    (500, error_body(&format!("redis {role}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(vars: &[(&str, &str)]) -> Hosts {
        Hosts::from_env(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn hosts_from_dns_by_default() {
        let h = hosts(&[("REDIS_MASTER_SERVICE_HOST", "10.0.0.1")]);
        assert_eq!(h.master, Ok(("redis-master".into(), 6379)));
        assert_eq!(h.slave, Ok(("redis-slave".into(), 6379)));
    }

    #[test]
    fn hosts_from_service_variables() {
        let h = hosts(&[
            ("GET_HOSTS_FROM", "env"),
            ("REDIS_MASTER_SERVICE_HOST", "10.0.0.1"),
            ("REDIS_SLAVE_SERVICE_HOST", "10.0.0.2"),
            ("REDIS_SLAVE_SERVICE_PORT", "6380"),
        ]);
        assert_eq!(h.master, Ok(("10.0.0.1".into(), 6379)));
        assert_eq!(h.slave, Ok(("10.0.0.2".into(), 6380)));
        let h = hosts(&[
            ("GET_HOSTS_FROM", "env"),
            ("REDIS_MASTER_SERVICE_PORT", "x"),
        ]);
        assert!(h.master.is_err() && h.slave.is_err());
    }

    #[test]
    fn routes_and_validates_without_redis() {
        let h = hosts(&[("GET_HOSTS_FROM", "env")]);
        let get = |line: &str| {
            let r = http::parse_request_line(line).expect("valid line");
            let (status, _, body) = route(&r, &h);
            (status, body)
        };
        assert_eq!(get("GET / HTTP/1.1").0, 200);
        assert_eq!(get("GET /nope HTTP/1.1").0, 404);
        assert_eq!(get("POST / HTTP/1.1").0, 405);
        assert_eq!(get("GET /guestbook.php?cmd=get HTTP/1.1").0, 400);
        assert_eq!(get("GET /guestbook.php?cmd=del&key=k HTTP/1.1").0, 400);
        assert_eq!(get("GET /guestbook.php?cmd=set&key=k HTTP/1.1").0, 400);
        let (status, body) = get("GET /guestbook.php?cmd=get&key=messages HTTP/1.1");
        assert_eq!(status, 500);
        assert!(
            body.contains("REDIS_SLAVE_SERVICE_HOST is not set"),
            "{body}"
        );
    }
}
