//! UDP in userspace mode, without the kernel's redirect: datagrams sent straight to a UDP
//! service port's listener reach endpoints (echo servers on loopback) per client session,
//! round robin across clients, pinned per client IP with ClientIP affinity; a session ends
//! after the idle timeout or when its endpoint goes; replies come from the listener's
//! address. Needs no root.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use keelson_proxy::model::{Endpoint, Protocol, ServiceMap, ServicePort, ServicePortName};
use keelson_proxy::userspace::Portals;
use tokio::net::UdpSocket;

/// A UDP server on loopback answering every datagram with `tag`.
async fn echo(tag: &'static str) -> Endpoint {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(tag.as_bytes(), from).await;
        }
    });
    Endpoint {
        ip: Ipv4Addr::LOCALHOST,
        port,
    }
}

fn name() -> ServicePortName {
    ServicePortName {
        namespace: "kube-system".into(),
        name: "dns".into(),
        port: "dns".into(),
        protocol: Protocol::Udp,
    }
}

fn services(endpoints: &[Endpoint], affinity: Option<u32>) -> ServiceMap {
    let sp = ServicePort {
        name: name(),
        cluster_ip: Ipv4Addr::new(10, 96, 0, 10),
        port: 53,
        node_port: None,
        external_ips: vec![],
        affinity_timeout: affinity,
        endpoints: endpoints.to_vec(),
    };
    [(sp.name.clone(), sp)].into_iter().collect()
}

/// A client socket connected to the listener: it only accepts datagrams from the listener's
/// own address, as a resolver does from the server it asked.
async fn client(listener: u16) -> UdpSocket {
    let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    c.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, listener)))
        .await
        .unwrap();
    c
}

async fn ask(c: &UdpSocket) -> String {
    c.send(b"who").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), c.recv(&mut buf))
        .await
        .expect("no reply within 2s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn sessions_take_turns_stay_while_busy_and_end_when_idle() {
    let (a, b) = (echo("a").await, echo("b").await);
    let idle = Duration::from_millis(200);
    let mut portals = Portals::new(idle);
    let ports = portals.sync(&services(&[a, b], None)).await.unwrap();
    let port = ports[&name()];

    // Clients take turns; each keeps its endpoint while it talks.
    let c1 = client(port).await;
    let c2 = client(port).await;
    let first = ask(&c1).await;
    let second = ask(&c2).await;
    assert_ne!(first, second, "two clients, two endpoints");
    for _ in 0..5 {
        assert_eq!(ask(&c1).await, first);
        assert_eq!(ask(&c2).await, second);
        tokio::time::sleep(idle / 4).await;
    }
    assert_eq!(portals.udp_sessions(&name()), 2);

    // Idle past the timeout: the sessions close, and the next datagram opens a new one.
    tokio::time::sleep(idle * 3).await;
    assert_eq!(portals.udp_sessions(&name()), 0, "idle sessions stay open");
    let again = ask(&c1).await;
    assert!(again == "a" || again == "b");
    assert_eq!(portals.udp_sessions(&name()), 1);

    // The session's endpoint goes: its session ends and the client moves to the other.
    let kept = if again == "a" { b } else { a };
    portals.sync(&services(&[kept], None)).await.unwrap();
    assert_eq!(portals.udp_sessions(&name()), 0);
    let moved = ask(&c1).await;
    assert_ne!(moved, again, "the removed endpoint still answers");

    // No endpoints: the listener closes.
    let ports = portals.sync(&services(&[], None)).await.unwrap();
    assert!(ports.is_empty());
}

#[tokio::test]
async fn client_ip_affinity_pins_every_port_of_a_client_to_one_endpoint() {
    let (a, b) = (echo("a").await, echo("b").await);
    let mut portals = Portals::new(Duration::from_millis(100));
    let ports = portals
        .sync(&services(&[a, b], Some(10_800)))
        .await
        .unwrap();
    let port = ports[&name()];
    let mut answers = Vec::new();
    for _ in 0..6 {
        // A new source port each time, and sessions left to expire: only affinity pins.
        let c = client(port).await;
        answers.push(ask(&c).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(answers.iter().all(|x| *x == answers[0]), "{answers:?}");
}
