//! The DNS server: answers the cluster's names from the current [`Zone`] and forwards the
//! rest, over UDP and TCP on one address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::Error;
use crate::forward::Forwarder;
use crate::zone::{Answer, Zone};

/// How long a TCP client may stay idle before its connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers questions: the cluster's from the zone, others through the forwarder.
pub struct Handler {
    /// The current records; `None` until the first complete list of Services and Endpoints,
    /// during which the cluster's names fail (SERVFAIL) rather than not exist.
    zone: watch::Receiver<Option<Arc<Zone>>>,
    domain: Name,
    forwarder: Forwarder,
    /// Turns the order of multi-record answers (a headless Service's addresses), so that
    /// clients taking the first address spread over all of them.
    rotation: AtomicUsize,
}

impl Handler {
    /// A handler for `domain` reading the zone from `zone`.
    pub fn new(
        domain: &Name,
        zone: watch::Receiver<Option<Arc<Zone>>>,
        forwarder: Forwarder,
    ) -> Handler {
        let mut domain = domain.to_lowercase();
        domain.set_fqdn(true);
        Handler {
            zone,
            domain,
            forwarder,
            rotation: AtomicUsize::new(0),
        }
    }

    async fn send<R: ResponseHandler>(
        request: &Request,
        mut handle: R,
        metadata: Metadata,
        answers: &[Record],
        soa: Option<&Record>,
        additionals: &[Record],
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, 4096));
            e
        });
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(metadata, answers, [], soa, additionals);
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("cannot send a DNS response: {e}");
                let mut h = hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                };
                h.metadata.response_code = ResponseCode::ServFail;
                h.into()
            }
        }
    }

    async fn error<R: ResponseHandler>(
        request: &Request,
        handle: R,
        code: ResponseCode,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = code;
        metadata.recursion_available = true;
        Self::send(request, handle, metadata, &[], None, &[]).await
    }

    async fn forward<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        let tcp = request.protocol() == Protocol::Tcp;
        let Some(raw) = self.forwarder.forward(request.as_slice(), tcp).await else {
            return Self::error(request, handle, ResponseCode::ServFail).await;
        };
        let Ok(upstream) = Message::from_vec(&raw) else {
            return Self::error(request, handle, ResponseCode::ServFail).await;
        };
        let mut metadata = upstream.metadata;
        metadata.id = request.metadata.id;
        let mut handle = handle;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &upstream.edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            &upstream.answers,
            &upstream.authorities,
            [],
            &upstream.additionals,
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("cannot send a forwarded DNS response: {e}");
                hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return Self::error(request, handle, ResponseCode::NotImp).await;
        }
        let [query] = request.queries.queries() else {
            return Self::error(request, handle, ResponseCode::FormErr).await;
        };
        let name = Name::from(query.name().clone());
        let current = self.zone.borrow().clone();
        let Some(zone) = current else {
            if self.domain.zone_of(&name.to_lowercase()) {
                return Self::error(request, handle, ResponseCode::ServFail).await;
            }
            return self.forward(request, handle).await;
        };
        let answer = zone.answer(&name, query.query_type());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        match answer {
            Answer::Records {
                mut answers,
                additionals,
            } => {
                if answers.len() > 1 {
                    let turn = self.rotation.fetch_add(1, Ordering::Relaxed);
                    let by = turn % answers.len();
                    answers.rotate_left(by);
                }
                Self::send(request, handle, metadata, &answers, None, &additionals).await
            }
            Answer::NoData => {
                Self::send(request, handle, metadata, &[], Some(zone.soa()), &[]).await
            }
            Answer::NxDomain => {
                metadata.response_code = ResponseCode::NXDomain;
                Self::send(request, handle, metadata, &[], Some(zone.soa()), &[]).await
            }
            Answer::NotOurs => self.forward(request, handle).await,
        }
    }
}

/// A DNS server bound to one address over UDP and TCP.
pub struct DnsServer {
    server: Server<Handler>,
    addr: SocketAddr,
}

impl DnsServer {
    /// Binds `listen` (UDP and TCP; port 0 picks one port free for both) and starts serving.
    pub async fn bind(listen: SocketAddr, handler: Handler) -> Result<DnsServer, Error> {
        let bind_err = |e: std::io::Error| Error::Bind {
            addr: listen,
            source: e,
        };
        // With port 0 the UDP port is chosen first and TCP must take the same one; another
        // program may hold it over TCP, so a few ports are tried.
        let mut last = None;
        for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
            let udp = UdpSocket::bind(listen).await.map_err(bind_err)?;
            let addr = udp.local_addr().map_err(bind_err)?;
            match TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let mut server = Server::new(handler);
                    server.register_socket(udp);
                    server.register_listener(tcp, TCP_TIMEOUT, 64);
                    return Ok(DnsServer { server, addr });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(bind_err(last.unwrap_or_else(|| {
            std::io::Error::other("no port free for both UDP and TCP")
        })))
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let token = self.server.shutdown_token().clone();
        tokio::select! {
            r = self.server.block_until_done() => {
                if let Err(e) = r {
                    tracing::warn!("the DNS server stopped: {e}");
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s) => {}
        }
        token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server.block_until_done()).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;
    use k8s_openapi::api::core::v1::{Endpoints, Service};

    use super::*;
    use crate::client::query;
    use crate::zone::DEFAULT_TTL;

    const WAIT: Duration = Duration::from_secs(3);

    fn service(ns: &str, name: &str, ip: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]},
        }))
        .unwrap()
    }

    fn headless_endpoints(ns: &str, name: &str, ips: &[&str]) -> Endpoints {
        let addresses: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}],
        }))
        .unwrap()
    }

    /// A server for `domain` on a loopback port with `services`, forwarding to `upstreams`.
    async fn start(
        domain: &str,
        services: &[Service],
        endpoints: &[Endpoints],
        upstreams: Vec<SocketAddr>,
    ) -> (
        SocketAddr,
        watch::Sender<Option<Arc<Zone>>>,
        watch::Sender<bool>,
    ) {
        let domain = Name::from_ascii(domain).unwrap();
        let zone = Zone::build(&domain, DEFAULT_TTL, services, endpoints);
        let (zone_tx, zone_rx) = watch::channel(Some(Arc::new(zone)));
        let mut forwarder = Forwarder::new(upstreams);
        forwarder.timeout = Duration::from_millis(500);
        let handler = Handler::new(&domain, zone_rx, forwarder);
        let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), handler)
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(server.run(shutdown));
        (addr, zone_tx, stop)
    }

    fn rdata(m: &Message) -> Vec<String> {
        let mut out: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn answers_the_cluster_names_over_udp_and_tcp() {
        let svcs = [
            service("default", "redis-master", "10.0.0.11"),
            service("default", "db", "None"),
        ];
        let eps = [headless_endpoints(
            "default",
            "db",
            &["10.1.0.5", "10.1.0.6"],
        )];
        let (addr, zone, _stop) = start("cluster.local", &svcs, &eps, Vec::new()).await;
        for tcp in [false, true] {
            let m = query(
                addr,
                "redis-master.default.svc.cluster.local.",
                RecordType::A,
                tcp,
                WAIT,
            )
            .await
            .unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            assert_eq!(rdata(&m), ["10.0.0.11"], "tcp={tcp}");
            assert_eq!(m.answers[0].ttl, DEFAULT_TTL);
            let m = query(
                addr,
                "db.default.svc.cluster.local.",
                RecordType::A,
                tcp,
                WAIT,
            )
            .await
            .unwrap();
            assert_eq!(rdata(&m), ["10.1.0.5", "10.1.0.6"], "tcp={tcp}");
        }
        // Successive answers start at different addresses.
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let m = query(
                addr,
                "db.default.svc.cluster.local.",
                RecordType::A,
                false,
                WAIT,
            )
            .await
            .unwrap();
            firsts.insert(m.answers[0].data.to_string());
        }
        assert_eq!(firsts.len(), 2, "{firsts:?}");
        let m = query(
            addr,
            "_http._tcp.redis-master.default.svc.cluster.local.",
            RecordType::SRV,
            false,
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(
            rdata(&m),
            ["10 100 80 redis-master.default.svc.cluster.local."]
        );
        assert_eq!(m.additionals.len(), 1, "{m:?}");

        // Unknown: NXDOMAIN with the SOA; an existing name without the type: NOERROR, empty.
        let m = query(
            addr,
            "nope.default.svc.cluster.local.",
            RecordType::A,
            false,
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        let m = query(
            addr,
            "redis-master.default.svc.cluster.local.",
            RecordType::AAAA,
            false,
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);

        // A new zone is served at once.
        let domain = Name::from_ascii("cluster.local").unwrap();
        let moved = [service("default", "redis-master", "10.0.0.12")];
        zone.send_replace(Some(Arc::new(Zone::build(
            &domain,
            DEFAULT_TTL,
            &moved,
            &[],
        ))));
        let m = query(
            addr,
            "redis-master.default.svc.cluster.local.",
            RecordType::A,
            false,
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(rdata(&m), ["10.0.0.12"]);

        // Before the first list the cluster's names fail rather than not exist.
        zone.send_replace(None);
        let m = query(
            addr,
            "db.default.svc.cluster.local.",
            RecordType::A,
            false,
            WAIT,
        )
        .await
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn other_names_are_forwarded_to_the_upstreams_in_order() {
        // The upstream: another server, authoritative for its own domain.
        let (upstream, _z, _s) = start(
            "upstream.test",
            &[service("ext", "www", "192.0.2.7")],
            &[],
            Vec::new(),
        )
        .await;
        // A dead upstream first: the next one answers.
        let dead = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let (addr, _zone, _stop) = start("cluster.local", &[], &[], vec![dead, upstream]).await;
        for tcp in [false, true] {
            let m = query(addr, "www.ext.svc.upstream.test.", RecordType::A, tcp, WAIT)
                .await
                .unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "tcp={tcp}");
            assert_eq!(rdata(&m), ["192.0.2.7"], "tcp={tcp}");
            // Not ours: the upstream's authority, passed through.
            assert!(m.metadata.authoritative);
            let m = query(
                addr,
                "nope.ext.svc.upstream.test.",
                RecordType::A,
                tcp,
                WAIT,
            )
            .await
            .unwrap();
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NXDomain,
                "tcp={tcp}"
            );
        }
        // No upstream answers: SERVFAIL.
        let (lonely, _z2, _s2) = start("cluster.local", &[], &[], vec![dead]).await;
        let m = query(lonely, "www.example.", RecordType::A, false, WAIT)
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
}
