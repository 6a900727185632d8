//! Hostile peers against a real node: a peer flooding requests is limited, then disconnected and
//! banned, while well-behaved peers on the same node are served as before and miss no PONG;
//! malformed frames close only the stream that carried them.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::raw::{RawPeer, prefix};
use common::{Node, metric, wait_for};
use futures::future::join_all;
use libp2p::{Multiaddr, identity};
use zmesh_core::keepalive::KeepAliveConfig;
use zmesh_wire::encode_frame;
use zmesh_wire::msg::{MsgMessage, MsgOutcome, MsgStatus};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A keep-alive that notices a single late PONG: PING every 200 ms, dead after one miss of
/// 300 ms.
const STRICT: KeepAliveConfig = KeepAliveConfig {
    interval: Duration::from_millis(200),
    jitter: Duration::from_millis(20),
    pong_timeout: Duration::from_millis(300),
    max_missed: 1,
};

fn send(n: u32) -> MsgMessage {
    let mut recipient = [0x42; 32];
    recipient[..4].copy_from_slice(&n.to_be_bytes());
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    MsgMessage::Send { recipient, id, sealed: vec![0xAB; 1024] }
}

fn queued(answer: &Result<MsgMessage, String>) -> bool {
    matches!(answer, Ok(MsgMessage::Sent { outcome, .. }) if outcome.status == MsgStatus::Queued)
}

fn node() -> Node {
    Node::start(&["keepalive.ping_interval=1s", "keepalive.pong_timeout=500ms"])
}

#[test]
fn a_flooding_peer_is_limited_then_banned_while_others_are_served() {
    let node = node();
    let addr: Multiaddr = node.tcp_addr().parse().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let good_a = RawPeer::connect(&addr, identity::Keypair::generate_ed25519(), STRICT).await;
        let good_b = RawPeer::connect(&addr, identity::Keypair::generate_ed25519(), STRICT).await;
        let (good_a, good_b) = (good_a.unwrap(), good_b.unwrap());
        let flooder_key = identity::Keypair::generate_ed25519();
        let flooder =
            RawPeer::connect(&addr, flooder_key.clone(), KeepAliveConfig::default()).await.unwrap();

        // The allowance is 20 at once and 100 a minute: the flooder sends 1,200 as fast as it
        // can, ten times what it may send in its first minute, and ignores every retry-after.
        let flooder = &flooder;
        let flood = async move {
            // 10 in flight at a time, each wave as soon as the last is answered, until the
            // node cuts it off (10 s at most).
            let mut answers = Vec::new();
            let started = tokio::time::Instant::now();
            for wave in 0u32.. {
                let sends = (0..10).map(|n| async move { flooder.msg(&send(wave * 10 + n)).await });
                answers.extend(join_all(sends).await);
                let cut = answers.iter().any(|a| a.is_err());
                if cut || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            answers
        };
        // Meanwhile each well-behaved peer sends 10 messages, 300 ms apart (within its burst).
        async fn steady(peer: &RawPeer, base: u32) -> Vec<Result<MsgMessage, String>> {
            let mut answers = Vec::new();
            for n in 0..10 {
                answers.push(peer.msg(&send(base + n)).await);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            answers
        }
        let (flood, a, b) = tokio::join!(flood, steady(&good_a, 10_000), steady(&good_b, 20_000));

        let accepted = flood.iter().filter(|r| queued(r)).count();
        let throttled = flood
            .iter()
            .filter(
                |r| matches!(r, Ok(MsgMessage::Throttled { flow }) if flow.reason.to_byte() == 2),
            )
            .count();
        let cut_off = flood.iter().filter(|r| r.is_err()).count();
        eprintln!("flood: {accepted} accepted, {throttled} throttled, {cut_off} cut off");
        assert!(flood.len() >= 1200, "ten times the allowance was sent: {}", flood.len());
        assert!(accepted <= 25, "only the burst gets through: {accepted}");
        assert!(throttled >= 10, "over the limit, THROTTLED with RATE_LIMIT: {throttled}");
        wait_for("the flooder to be disconnected", Duration::from_secs(5), || {
            flooder.stats().closed.map(|_| ())
        });
        assert!(flooder.stats().flow_controls > 0, "FLOW_CONTROL on the control stream");
        // Banned: the same peer cannot come back for now.
        let again = RawPeer::connect(&addr, flooder_key, KeepAliveConfig::default()).await;
        assert!(again.is_err(), "a banned peer is refused");

        for (name, answers, peer) in [("A", a, &good_a), ("B", b, &good_b)] {
            assert!(answers.iter().all(queued), "{name}: every message queued: {answers:?}");
            let stats = peer.stats();
            assert!(!stats.dead && stats.closed.is_none(), "{name}: still connected: {stats:?}");
            assert!(stats.pongs >= 10, "{name}: PONGs kept coming: {stats:?}");
            assert!(stats.max_rtt < STRICT.pong_timeout, "{name}: no PONG late: {stats:?}");
        }
    });
    assert_eq!(metric(node.api(), "zmesh_peers_banned_total"), 1.0);
    assert!(node.log().contains("disconnecting and banning"), "{}", node.log());
}

#[test]
fn malformed_frames_close_only_their_stream_and_are_logged() {
    let node = node();
    let addr: Multiaddr = node.tcp_addr().parse().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let good = RawPeer::connect(&addr, identity::Keypair::generate_ed25519(), STRICT).await;
        let good = good.unwrap();
        let mut truncated = prefix(100);
        truncated.extend_from_slice(&[0x63; 10]);
        let cases: [(&str, Vec<u8>); 4] = [
            ("a truncated frame", truncated),
            ("an oversized frame", prefix(u32::MAX)),
            ("an unknown message type", vec![0, 0, 0, 3, 0xEE, 1, 2]),
            ("garbage", b"GET / HTTP/1.1\r\nHost: zmesh\r\n\r\n".to_vec()),
        ];
        for (n, (what, bytes)) in cases.into_iter().enumerate() {
            let bad = RawPeer::connect(&addr, identity::Keypair::generate_ed25519(), STRICT).await;
            let bad = bad.unwrap();
            let answer = bad.request(bytes).await;
            assert!(answer.as_ref().is_ok_and(|a| a.is_empty()) || answer.is_err(), "{what}: {answer:?}");
            // Only that request's stream closed: the same connection still works.
            assert!(queued(&bad.msg(&send(1000 + n as u32)).await), "{what}: the connection");
            assert!(bad.stats().closed.is_none(), "{what}: {:?}", bad.stats());
            // Everyone else is served as before.
            assert!(queued(&good.msg(&send(n as u32)).await), "after {what}");
        }
        // A well-formed answer sent as a request is refused in kind; the connection stays.
        let confused = RawPeer::connect(&addr, identity::Keypair::generate_ed25519(), STRICT).await;
        let confused = confused.unwrap();
        let answer = confused
            .msg(&MsgMessage::Result { outcome: MsgOutcome::new(MsgStatus::Ok, "hi") })
            .await
            .unwrap();
        assert!(
            matches!(&answer, MsgMessage::Result { outcome } if outcome.status == MsgStatus::BadRequest),
            "{answer:?}"
        );
        assert!(queued(&confused.msg(&send(99)).await));
        assert!(confused.stats().closed.is_none());

        // Bytes that are not even a Noise handshake: the connection is dropped.
        let tcp = node.tcp_addr();
        let port: u16 = tcp.split('/').nth(4).unwrap().parse().unwrap();
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = raw.write_all(&encode_frame(&send(1)));
        let _ = raw.write_all(&[0xFF; 4096]);
        drop(raw);
        assert!(queued(&good.msg(&send(100)).await), "after raw garbage");
        let stats = good.stats();
        assert!(!stats.dead && stats.closed.is_none(), "{stats:?}");
    });
    // The gauge is refreshed every 250 ms.
    wait_for("malformed requests counted", Duration::from_secs(5), || {
        (metric(node.api(), "zmesh_malformed_requests_total") >= 4.0).then_some(())
    });
    let log = node.log();
    for reason in ["frame cut short", "exceeds the limit", "unknown message type"] {
        assert!(log.contains(reason), "the log says {reason:?}:\n{log}");
    }
}

#[test]
fn nothing_is_answered_before_the_handshake() {
    let node = node();
    let addr: Multiaddr = node.tcp_addr().parse().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let early = RawPeer::connect_without_handshake(&addr).await.unwrap();
        // A small request whose answer could be large: no answer at all.
        let fetch = MsgMessage::FetchRecord {
            kind: zmesh_wire::msg::RecordKind::Bundle,
            owner_address: [7; 32],
        };
        let answer = early.request(encode_frame(&fetch)).await;
        assert!(answer.as_ref().is_ok_and(|a| a.is_empty()) || answer.is_err(), "{answer:?}");
    });
    wait_for("the early request counted", Duration::from_secs(5), || {
        let series = r#"zmesh_requests_before_handshake_total{protocol="msg"}"#;
        (metric(node.api(), series) >= 1.0).then_some(())
    });
}

#[test]
fn a_sender_to_a_stopped_relay_holds_a_bounded_backlog_and_resumes() {
    // One sender's thousands of messages: the relay's allowance is raised for this load.
    let node = Node::start(&[
        "rate_limits.client_messages=100000000/1m",
        "rate_limits.client_messages_burst=1000000",
    ]);
    let addr: Multiaddr = node.tcp_addr().parse().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let relay = zmesh_client::Relay::connect(addr).await.unwrap();
        // The relay stops reading: its process is stopped.
        common::signal(node.child.id(), nix::sys::signal::Signal::SIGSTOP);
        let sends = (0..3000u32).map(|n| {
            let relay = relay.clone();
            tokio::spawn(async move { zmesh_client::MsgRelay::request(&relay, send(n)).await })
        });
        let sends: Vec<_> = sends.collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (queued, in_flight) = relay.backlog();
        eprintln!("relay stopped: {queued} queued, {in_flight} in flight");
        assert_eq!(in_flight, zmesh_client::relay::MAX_OPEN_REQUESTS, "the window is full");
        assert!(
            queued > 2000 && queued <= zmesh_client::relay::MSG_QUEUE,
            "held locally: {queued}"
        );
        common::signal(node.child.id(), nix::sys::signal::Signal::SIGCONT);
        let mut answered = 0;
        for send in sends {
            let answer = send.await.unwrap();
            assert!(queued_answer(&answer), "{answer:?}");
            answered += 1;
        }
        assert_eq!(answered, 3000);
        assert_eq!(relay.backlog(), (0, 0));
    });
}

fn queued_answer(answer: &zmesh_client::Result<MsgMessage>) -> bool {
    matches!(answer, Ok(MsgMessage::Sent { outcome, .. }) if outcome.status == MsgStatus::Queued)
}
