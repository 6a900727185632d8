//! Dead-peer detection between real processes: a killed node is dropped by its peers within
//! three PING intervals; a frozen one (SIGSTOP: sockets open, no answers) is caught by
//! keep-alive alone.

mod common;

use std::time::{Duration, Instant};

use common::{Devnet, metric, peers, signal, status, wait_for};
use nix::sys::signal::Signal;

const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Every survivor dropped the victim from its active peers and recorded it as dead.
fn declared_dead_by_all(devnet: &Devnet, survivors: &[usize], victim: usize) -> bool {
    let id = &devnet.nodes[victim].peer_id;
    survivors.iter().all(|&i| {
        let report = peers(devnet.api(i));
        report.peers.iter().all(|p| &p.peer_id != id)
            && report.dead.iter().any(|d| &d.peer_id == id)
    })
}

#[test]
fn killed_and_frozen_peers_are_declared_dead() {
    let devnet = Devnet::start(
        5,
        &[
            "keepalive.ping_interval=1s",
            "keepalive.ping_jitter=200ms",
            "keepalive.pong_timeout=300ms",
        ],
    );
    for i in 0..5 {
        wait_for("RTT measured on every peer", Duration::from_secs(10), || {
            let p = peers(devnet.api(i)).peers;
            (p.len() == 4 && p.iter().all(|p| p.rtt_ms.is_some() && p.quality.is_some()))
                .then_some(())
        });
    }

    // kill -9: the connection drops, the redial fails, the peer is dead.
    let killed = 4;
    let t = Instant::now();
    signal(devnet.nodes[killed].pid, Signal::SIGKILL);
    wait_for("the killed node to be dropped", PING_INTERVAL * 3, || {
        declared_dead_by_all(&devnet, &[0, 1, 2, 3], killed).then_some(())
    });
    println!("kill -9 detected by all peers in {:?}", t.elapsed());
    for i in 0..4 {
        assert_eq!(status(devnet.api(i)).routing_table_size, 3, "dead peer left the routing table");
    }

    // SIGSTOP: the socket stays open, only missed PONGs tell.
    let frozen = 3;
    let t = Instant::now();
    signal(devnet.nodes[frozen].pid, Signal::SIGSTOP);
    wait_for("the frozen node to be dropped", PING_INTERVAL * 3, || {
        declared_dead_by_all(&devnet, &[0, 1, 2], frozen).then_some(())
    });
    println!("frozen peer detected by keep-alive in {:?}", t.elapsed());
    for i in 0..3 {
        let report = peers(devnet.api(i));
        let dead = report
            .dead
            .iter()
            .find(|d| d.peer_id == devnet.nodes[frozen].peer_id)
            .expect("recorded");
        assert!(dead.reason.contains("PINGs in a row went unanswered"), "reason: {}", dead.reason);
        assert!(metric(devnet.api(i), r#"zmesh_peers_dead_total{reason="keepalive"}"#) >= 1.0);
        assert_eq!(status(devnet.api(i)).routing_table_size, 2);
    }
    signal(devnet.nodes[frozen].pid, Signal::SIGKILL);
    devnet.stop();
}
