//! UDP in userspace mode: one socket per service port, and a session per client address, as
//! the book's proxy keeps them. A session has its own socket connected to the endpoint the
//! balancer chose; replies coming back on it are sent to the client from the address the
//! client's datagram was redirected to (`IP_PKTINFO`), so conntrack matches them to the
//! redirected flow and the client sees them come from the cluster IP. A session ends after
//! the idle timeout passes with no datagram either way (kube-proxy's `udpIdleTimeout`,
//! 250 ms by default), when its endpoint goes, or when the endpoint refuses (ICMP port
//! unreachable).

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::Balancer;
use crate::model::Endpoint;

/// kube-proxy's default `udpIdleTimeout`.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_millis(250);

/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// One client's session.
struct Session {
    id: u64,
    endpoint: Endpoint,
    upstream: Arc<UdpSocket>,
    /// When the client last sent something, for the idle timeout.
    last_sent: Arc<Mutex<Instant>>,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sessions of one UDP service port, by client address.
#[derive(Default)]
pub(super) struct Sessions {
    by_client: Mutex<HashMap<SocketAddrV4, Session>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// Ends the sessions whose endpoint is not in `endpoints`.
    pub(super) fn keep_endpoints(&self, endpoints: &[Endpoint]) {
        if let Ok(mut map) = self.by_client.lock() {
            map.retain(|_, s| endpoints.contains(&s.endpoint));
        }
    }

    /// How many sessions are open.
    pub(super) fn len(&self) -> usize {
        self.by_client.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn remove(&self, client: SocketAddrV4, id: u64) {
        if let Ok(mut map) = self.by_client.lock()
            && map.get(&client).is_some_and(|s| s.id == id)
        {
            map.remove(&client);
        }
    }
}

/// Binds the service port's socket (any address, an ephemeral port) with `IP_PKTINFO` on.
pub(super) async fn bind() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    Ok(socket)
}

/// Relays datagrams of `socket` until the task is aborted.
pub(super) async fn serve(
    socket: UdpSocket,
    balancer: Arc<Mutex<Balancer>>,
    sessions: Arc<Sessions>,
    idle: Duration,
    service: String,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client, local) = match recv_with_destination(&socket, &mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%service, "udp receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let upstream = match session_for(&socket, &balancer, &sessions, client, local, idle).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                tracing::debug!(%service, %client, "no endpoint for a udp client");
                continue;
            }
            Err(e) => {
                tracing::debug!(%service, %client, "cannot open a udp session: {e}");
                continue;
            }
        };
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!(%service, %client, "udp send to the endpoint failed: {e}");
        }
    }
}

/// The client's session's upstream socket, opening a session (an endpoint from the
/// balancer) for a new client; `None` without endpoints.
async fn session_for(
    socket: &Arc<UdpSocket>,
    balancer: &Mutex<Balancer>,
    sessions: &Arc<Sessions>,
    client: SocketAddrV4,
    local: Option<Ipv4Addr>,
    idle: Duration,
) -> io::Result<Option<Arc<UdpSocket>>> {
    if let Ok(map) = sessions.by_client.lock()
        && let Some(s) = map.get(&client)
    {
        if let Ok(mut last) = s.last_sent.lock() {
            *last = Instant::now();
        }
        return Ok(Some(s.upstream.clone()));
    }
    let pick = balancer
        .lock()
        .ok()
        .and_then(|mut b| b.pick((*client.ip()).into(), &[], Instant::now()));
    let Some(endpoint) = pick else {
        return Ok(None);
    };
    let upstream = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?;
    upstream.connect((endpoint.ip, endpoint.port)).await?;
    let upstream = Arc::new(upstream);
    let last_sent = Arc::new(Mutex::new(Instant::now()));
    let id = sessions.next_id.fetch_add(1, Ordering::Relaxed);
    let task = tokio::spawn(replies(
        socket.clone(),
        upstream.clone(),
        last_sent.clone(),
        Reply {
            client,
            local,
            idle,
            id,
        },
        Arc::downgrade(sessions),
    ));
    if let Ok(mut map) = sessions.by_client.lock() {
        map.insert(
            client,
            Session {
                id,
                endpoint,
                upstream: upstream.clone(),
                last_sent,
                task,
            },
        );
    }
    Ok(Some(upstream))
}

/// Where a session's replies go.
struct Reply {
    client: SocketAddrV4,
    /// The address the client's datagrams were sent to after redirection; replies leave from
    /// it.
    local: Option<Ipv4Addr>,
    idle: Duration,
    id: u64,
}

/// Copies the endpoint's replies to the client until the session has been idle for
/// `reply.idle`, then closes it.
async fn replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    last_sent: Arc<Mutex<Instant>>,
    reply: Reply,
    sessions: std::sync::Weak<Sessions>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut last_received = Instant::now();
    loop {
        let last = last_sent
            .lock()
            .map(|t| (*t).max(last_received))
            .unwrap_or(last_received);
        let deadline = tokio::time::Instant::from_std(last + reply.idle);
        tokio::select! {
            got = upstream.recv(&mut buf) => match got {
                Ok(n) => {
                    last_received = Instant::now();
                    if let Err(e) = send_from(&socket, &buf[..n], reply.client, reply.local).await {
                        tracing::debug!(client = %reply.client, "udp reply failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::debug!(client = %reply.client, "udp session ends: {e}");
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let sent = last_sent.lock().map(|t| *t).unwrap_or(last_received);
                if sent.max(last_received) + reply.idle <= Instant::now() {
                    break;
                }
            }
        }
    }
    if let Some(sessions) = sessions.upgrade() {
        sessions.remove(reply.client, reply.id);
    }
}

/// Receives a datagram: its length, sender, and the (header) destination address it was
/// sent to.
async fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddrV4, Option<Ipv4Addr>)> {
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
            let msg = recvmsg::<SockaddrIn>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let mut local = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                    local = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                }
            }
            let from = msg
                .address
                .map(SocketAddrV4::from)
                .ok_or_else(|| io::Error::other("a datagram without a sender"))?;
            Ok((msg.bytes, from, local))
        })
        .await
}

/// Sends `data` to `to`, from `from` when given.
async fn send_from(
    socket: &UdpSocket,
    data: &[u8],
    to: SocketAddrV4,
    from: Option<Ipv4Addr>,
) -> io::Result<()> {
    let dest = SockaddrIn::from(to);
    let info = from.map(|ip| libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    });
    socket
        .async_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(data)];
            let cmsgs: Vec<ControlMessage<'_>> =
                info.iter().map(ControlMessage::Ipv4PacketInfo).collect();
            sendmsg(
                socket.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::empty(),
                Some(&dest),
            )
            .map_err(io::Error::from)
        })
        .await
        .map(|_| ())
}
