//! Forwarding of names outside the cluster domain to the upstream resolvers.
//!
//! The question goes out as the client sent it (same ID, same flags), over the transport the
//! client used: a truncated UDP answer reaches the client truncated, and the client retries
//! over TCP, which is forwarded over TCP. The upstreams are tried in order; the first that
//! answers in time wins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream has to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The upstream resolvers.
#[derive(Debug, Clone, Default)]
pub struct Forwarder {
    /// In order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// How long each has to answer.
    pub timeout: Duration,
}

impl Forwarder {
    /// A forwarder to `upstreams` with [`UPSTREAM_TIMEOUT`].
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            timeout: UPSTREAM_TIMEOUT,
        }
    }

    /// The raw answer of the first upstream that answers `query` (a raw DNS message), or
    /// `None` when none did.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let id = query.get(..2)?;
        for &upstream in &self.upstreams {
            let attempt = if tcp {
                tokio::time::timeout(self.timeout, ask_tcp(upstream, query)).await
            } else {
                tokio::time::timeout(self.timeout, ask_udp(upstream, query, id)).await
            };
            match attempt {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(e)) => tracing::debug!(%upstream, "upstream failed: {e}"),
                Err(_) => tracing::debug!(%upstream, "upstream timed out"),
            }
        }
        None
    }
}

async fn ask_udp(upstream: SocketAddr, query: &[u8], id: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram (a late answer to someone else) is not ours.
        if n >= 12 && buf.get(..2) == Some(id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut conn = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    conn.write_all(&framed).await?;
    let len = conn.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

/// The nameservers of a resolv.conf text, with port 53.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // An IPv6 address may carry a zone (`fe80::1%eth0`), which SocketAddr cannot hold.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver ::1\n\
                    nameserver fe80::1%eth0\noptions ndots:2\n";
        assert_eq!(
            nameservers(text),
            [
                "10.0.0.2:53"
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|_| unreachable!()),
                "[::1]:53".parse().unwrap_or_else(|_| unreachable!()),
            ]
        );
    }
}
