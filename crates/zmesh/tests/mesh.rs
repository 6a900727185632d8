//! A mesh of real `zmesh node run` processes started by `zmesh devnet`: convergence, exact
//! closest-peer lookups, clean shutdown.

mod common;

use common::{Devnet, get, status};
use zmesh_node::node::reports::LookupReport;
use zmesh_types::Key256;

/// The `k` true closest node ids to `key`, computed from every node of the mesh.
fn true_closest(all: &[Key256], key: &Key256, k: usize) -> Vec<Key256> {
    let mut ids = all.to_vec();
    ids.sort_by(|a, b| key.cmp_distance(a, b));
    ids.truncate(k);
    ids
}

fn check_lookups(devnet: &Devnet, from: &[usize], keys: usize) -> Vec<u32> {
    let all: Vec<Key256> = devnet.nodes.iter().map(|n| n.node_id).collect();
    let mut rounds = Vec::new();
    for i in 0..keys {
        let key = Key256(rand::random());
        let expected = true_closest(&all, &key, 20);
        for &node in from {
            let report: LookupReport =
                get(devnet.api(node), &format!("/v1/dht/closest/{key}")).expect("lookup");
            let got: Vec<Key256> = report.peers.iter().map(|p| p.node_id).collect();
            assert_eq!(
                got, expected,
                "lookup {i} of {key} from node {node} is not the true 20 closest"
            );
            assert!(
                report.peers.iter().all(|p| !p.multiaddrs.is_empty()),
                "every result is dialable"
            );
            rounds.push(report.rounds);
        }
    }
    rounds.sort();
    rounds
}

#[test]
fn twenty_processes_converge_and_lookups_are_exact() {
    let devnet = Devnet::start(20, &[]);
    for i in 0..20 {
        let s = status(devnet.api(i));
        assert!(
            s.routing_table_size >= 15,
            "node {i} routing table has {} peers",
            s.routing_table_size
        );
        assert_eq!(s.node_id, devnet.nodes[i].node_id);
    }
    let rounds = check_lookups(&devnet, &[2, 9, 17], 50);
    println!(
        "20 nodes: 150 lookups exact; median rounds {}, max {}",
        rounds[rounds.len() / 2],
        rounds[rounds.len() - 1]
    );
    devnet.stop();
}

/// With more nodes than k, picking the 20 closest is a real selection, not "everyone".
#[test]
fn thirty_two_processes_lookups_pick_the_true_twenty() {
    let devnet = Devnet::start(32, &[]);
    let rounds = check_lookups(&devnet, &[0, 15, 31], 20);
    println!("32 nodes: 60 lookups exact; median rounds {}", rounds[rounds.len() / 2]);
    devnet.stop();
}

/// The devnet's upper end: 50 processes converge and all stop on Ctrl-C.
#[test]
fn fifty_processes_converge_and_stop_cleanly() {
    let devnet = Devnet::start(50, &[]);
    for i in [0, 24, 49] {
        assert!(status(devnet.api(i)).routing_table_size >= 15);
    }
    check_lookups(&devnet, &[7], 5);
    devnet.stop();
}

#[test]
fn api_errors_are_json() {
    let devnet = Devnet::start(1, &[]);
    let (code, body) = common::http_get(devnet.api(0), "/v1/dht/closest/xyz").expect("get");
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["error"].as_str().expect("error string").contains("64 hex"), "{body}");
    let (code, body) = common::http_get(devnet.api(0), "/v1/nothing").expect("get");
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""), "{body}");
    // A one-node mesh: the closest node to anything is the node itself.
    let key = Key256([7; 32]);
    let report: LookupReport =
        get(devnet.api(0), &format!("/v1/dht/closest/{key}")).expect("lookup");
    assert_eq!(report.peers.len(), 1);
    assert_eq!(report.peers[0].node_id, devnet.nodes[0].node_id);
    devnet.stop();
}
