//! Peer exchange between real processes: a node that knows one peer and runs no DHT learns the
//! rest of the mesh through PEX alone, verifies each before use, and never hears of a peer that
//! opted out.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Devnet, Node, bootstrap_to, metric, peers, wait_for};

#[test]
fn a_node_learns_the_mesh_through_pex_but_never_a_private_peer() {
    let fast = ["pex.min_uptime=0s", "pex.min_request_interval=1s", "pex.interval=1s"];
    let devnet = Devnet::start(8, &fast);
    let seed_addr =
        devnet.nodes[0].multiaddrs.iter().find(|a| a.contains("/tcp/")).expect("tcp").clone();

    // A private node joins the mesh (DHT and all) but asks not to be shared. It runs no PEX of
    // its own, so it cannot find the learner and connect to it: any sighting would be a share.
    let mut private_args = fast.to_vec();
    let boot = bootstrap_to(&seed_addr);
    private_args.extend(["pex.private=true", "pex.enabled=false", boot.as_str()]);
    let private = Node::start(&private_args);
    wait_for("every devnet node to know the private node", Duration::from_secs(30), || {
        (0..8)
            .all(|i| {
                peers(devnet.api(i))
                    .peers
                    .iter()
                    .any(|p| p.peer_id == private.info.peer_id && p.pex_private)
            })
            .then_some(())
    });

    // The learner knows only the seed and has no DHT: PEX is its only way to find others. It
    // answers each peer at most once an hour, while the devnet nodes ask every second.
    let mut learner_args = fast.to_vec();
    learner_args.extend(["dht.enabled=false", "pex.min_request_interval=1h", boot.as_str()]);
    let learner = Node::start(&learner_args);
    let expected: HashSet<String> = devnet.nodes.iter().map(|n| n.peer_id.clone()).collect();
    wait_for("the learner to know all 8 devnet nodes", Duration::from_secs(30), || {
        let known: HashSet<String> =
            peers(learner.api()).peers.into_iter().map(|p| p.peer_id).collect();
        expected.is_subset(&known).then_some(())
    });
    // Keep exchanging a few more rounds: the private node must still never show up.
    std::thread::sleep(Duration::from_secs(3));
    let report = peers(learner.api());
    assert!(
        report.peers.iter().all(|p| p.peer_id != private.info.peer_id),
        "the private node was shared"
    );
    assert_eq!(report.peers.len(), 8);
    let learned = metric(learner.api(), "zmesh_pex_peers_learned_total");
    assert_eq!(learned, 7.0, "7 peers learned and verified through PEX (the seed was configured)");
    let via_pex =
        report.peers.iter().filter(|p| p.source == zmesh_node::peers::PeerSource::Pex).count();
    assert_eq!(via_pex, 7);
    // Each peer's first request was answered; asking again within the interval is refused.
    let answered = metric(learner.api(), r#"zmesh_pex_requests_total{result="answered"}"#);
    let refused = metric(learner.api(), r#"zmesh_pex_requests_total{result="refused_rate_limit"}"#);
    assert!((1.0..=8.0).contains(&answered), "at most one answer per peer, got {answered}");
    assert!(refused >= 8.0, "repeat requests within the interval are refused, got {refused}");
    devnet.stop();
}
