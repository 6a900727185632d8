//! The zmesh handshake between real nodes: version negotiation and capability AND.

mod common;

use std::time::Duration;

use common::{Node, bootstrap_to, metric, peers, wait_for};

#[test]
fn no_common_major_is_refused_with_a_logged_reason() {
    let a = Node::start(&[]);
    let b = Node::start(&[r#"network.protocol_versions=["2.0"]"#, &bootstrap_to(&a.tcp_addr())]);
    wait_for("both sides to count a failed handshake", Duration::from_secs(30), || {
        let failed = r#"zmesh_handshakes_total{result="failed"}"#;
        (metric(a.api(), failed) >= 1.0 && metric(b.api(), failed) >= 1.0).then_some(())
    });
    // The server says why; the client says the server refused the version.
    wait_for("the reason in both logs", Duration::from_secs(10), || {
        (a.log().contains("no common protocol version: we speak 1.0, the peer speaks 2.0")
            && b.log()
                .contains("handshake failed, closing the connection: no common protocol version"))
        .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(peers(a.api()).peers.is_empty(), "a refused peer must not become active");
    assert!(peers(b.api()).peers.is_empty());
    assert_eq!(metric(a.api(), r#"zmesh_handshakes_total{result="ok"}"#), 0.0);
}

#[test]
fn common_major_picks_the_highest_minor_and_capabilities_are_anded() {
    let a = Node::start(&[]);
    // C speaks 1.3 (so also 1.0..1.2) and has PEX off: the connection runs 1.0 without PEX.
    let c = Node::start(&[
        r#"network.protocol_versions=["1.3"]"#,
        "pex.enabled=false",
        &bootstrap_to(&a.tcp_addr()),
    ]);
    let seen_by_a = wait_for("A to see C active", Duration::from_secs(30), || {
        peers(a.api()).peers.into_iter().find(|p| p.peer_id == c.info.peer_id)
    });
    let seen_by_c = wait_for("C to see A active", Duration::from_secs(30), || {
        peers(c.api()).peers.into_iter().find(|p| p.peer_id == a.info.peer_id)
    });
    for p in [&seen_by_a, &seen_by_c] {
        assert_eq!(p.version.as_deref(), Some("1.0"));
        assert_eq!(p.capabilities, 0xC0, "PEX|DHT|STORAGE AND DHT|STORAGE = DHT|STORAGE");
        assert_eq!(p.capability_names, vec!["DHT".to_string(), "STORAGE".to_string()]);
    }
    assert_eq!(common::status(a.api()).capabilities, 0xE0);
    assert_eq!(common::status(c.api()).capabilities, 0xC0);
}
