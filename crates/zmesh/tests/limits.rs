//! Connection limits against a real node: clients that try to exceed them are refused, the node
//! counts and logs each refusal, and keeps what the limits allow.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{Node, metric, status, wait_for};
use futures::StreamExt;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::dummy;
use libp2p::{Multiaddr, Swarm, SwarmBuilder, noise, tcp, yamux};

// Clients never open the control stream, so give the node time before it drops them for that.
const PATIENT: &str = "network.handshake_timeout=60s";

fn client() -> Swarm<dummy::Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("tcp")
        .with_behaviour(|_| dummy::Behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

/// Dials `addr` `times` times from one identity and keeps driving the swarm in the background.
fn dial(addr: &Multiaddr, times: usize) -> tokio::task::JoinHandle<()> {
    let mut swarm = client();
    for _ in 0..times {
        swarm.dial(DialOpts::unknown_peer_id().address(addr.clone()).build()).expect("dial");
    }
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    })
}

fn tcp_addr(node: &Node) -> Multiaddr {
    let full: Multiaddr = node.tcp_addr().parse().expect("multiaddr");
    full.into_iter().filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_))).collect()
}

/// Waits until the node holds exactly `expected` connections and has refused `refused` by `limit`.
fn settles_at(node: &Node, expected: u32, limit: &str, refused: f64) {
    let series = format!("zmesh_connections_denied_total{{limit=\"{limit}\"}}");
    wait_for(
        &format!("{expected} connections and {refused} refused by {limit}"),
        Duration::from_secs(20),
        || {
            (status(node.api()).connections == expected && metric(node.api(), &series) == refused)
                .then_some(())
        },
    );
    // And it stays there.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(node.api()).connections, expected);
    assert!(node.log().contains("refused connection with"), "refusals are logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_gets_at_most_three_connections() {
    let node = Node::start(&[PATIENT]);
    let _client = dial(&tcp_addr(&node), 5);
    tokio::task::spawn_blocking(move || {
        settles_at(&node, 3, "per_peer", 2.0);
        assert!(node.log().contains("peer already has 3 connections (limits.max_per_peer)"));
    })
    .await
    .expect("check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ip_gets_at_most_five_inbound_connections() {
    let node = Node::start(&[PATIENT]);
    let addr = tcp_addr(&node);
    let _clients: Vec<_> = (0..7).map(|_| dial(&addr, 1)).collect();
    tokio::task::spawn_blocking(move || {
        settles_at(&node, 5, "per_ip", 2.0);
        assert!(node.log().contains("127.0.0.1 already has 5 inbound connections"));
    })
    .await
    .expect("check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connections_are_capped() {
    let node = Node::start(&[PATIENT, "limits.max_total=4", "limits.max_per_ip=100"]);
    let addr = tcp_addr(&node);
    let _clients: Vec<_> = (0..6).map(|_| dial(&addr, 1)).collect();
    tokio::task::spawn_blocking(move || settles_at(&node, 4, "total", 2.0)).await.expect("check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_connections_are_capped_and_released() {
    let node = Node::start(&[PATIENT, "limits.max_pending=3"]);
    let addr = tcp_addr(&node);
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("tcp port");
    let node = tokio::task::spawn_blocking(move || {
        // Raw sockets that never start Noise stay pending.
        let stalled: Vec<TcpStream> =
            (0..6).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
        wait_for("3 pending refusals", Duration::from_secs(20), || {
            (metric(node.api(), r#"zmesh_connections_denied_total{limit="pending"}"#) >= 3.0)
                .then_some(())
        });
        drop(stalled);
        node
    })
    .await
    .expect("stall");
    // Once the stalled sockets are gone, a real client gets in.
    let _client = dial(&addr, 1);
    tokio::task::spawn_blocking(move || {
        wait_for("a real client to connect", Duration::from_secs(20), || {
            (status(node.api()).connections == 1).then_some(())
        });
    })
    .await
    .expect("check");
}
