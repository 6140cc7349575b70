//! A minimal stub client: one question to one server over UDP or TCP, for checks and tests.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::Error;

/// Asks `server` for `name` `rtype` (recursion desired) and returns its answer.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
    timeout: Duration,
) -> Result<Message, Error> {
    let name = Name::from_ascii(name).map_err(|e| Error::Query(e.to_string()))?;
    let mut msg = Message::query();
    msg.metadata.id = rand_id();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, rtype));
    let bytes = msg.to_vec().map_err(|e| Error::Query(e.to_string()))?;
    let io = |e: std::io::Error| Error::Query(format!("{server}: {e}"));
    let exchange = async {
        let raw = if tcp {
            let mut conn = TcpStream::connect(server).await.map_err(io)?;
            let len = u16::try_from(bytes.len()).map_err(|e| Error::Query(e.to_string()))?;
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            conn.write_all(&framed).await.map_err(io)?;
            let len = conn.read_u16().await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(len)];
            conn.read_exact(&mut buf).await.map_err(io)?;
            buf
        } else {
            let local: SocketAddr = if server.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(local).await.map_err(io)?;
            socket.connect(server).await.map_err(io)?;
            socket.send(&bytes).await.map_err(io)?;
            let mut buf = vec![0u8; 65_535];
            let n = socket.recv(&mut buf).await.map_err(io)?;
            buf.truncate(n);
            buf
        };
        Message::from_vec(&raw).map_err(|e| Error::Query(e.to_string()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Query(format!("{server}: no answer in {timeout:?}")))?
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id()) as u16
}
