//! Offline mailboxes across real node processes: what a sender was told was queued survives
//! `kill -9` of the mailbox nodes and reaches the recipient once and in order; nothing readable
//! lands in any node's directory; tampered and expired messages are never handed up.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use common::{Devnet, get, run_node, signal, wait_for};
use nix::sys::signal::Signal;
use zmesh_client::mail::{Inbox, Mailer, SendStatus, Via};
use zmesh_client::messenger::Incoming;
use zmesh_client::{ClientError, Identity, Multiaddr, Relay};
use zmesh_core::mailbox::mailbox_key;
use zmesh_crypto::sign::SigningIdentity;
use zmesh_node::node::reports::LookupReport;

/// Devnets of 8–10 processes on two cores: run these tests one at a time.
static HEAVY: Mutex<()> = Mutex::new(());

fn settings(extra: &[&'static str]) -> Vec<&'static str> {
    let mut s = common::fast_keepalive_with(&[
        "messaging.request_timeout=3s",
        "messaging.gc_interval=1s",
        // One sender's 1,000 messages in seconds: far above a user's allowance of 100 a minute.
        "rate_limits.client_messages=1000000/1m",
        "rate_limits.client_messages_burst=10000",
    ]);
    s.extend_from_slice(extra);
    s
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A node's TCP address with its peer id.
fn relay_addr(devnet: &Devnet, i: usize) -> Multiaddr {
    let node = &devnet.nodes[i];
    let tcp = node.multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap();
    let addr: Multiaddr = tcp.parse().unwrap();
    if tcp.contains("/p2p/") {
        addr
    } else {
        format!("{tcp}/p2p/{}", node.peer_id).parse().unwrap()
    }
}

/// What a test's user received, in order.
#[derive(Default)]
struct Received {
    messages: Vec<(String, Via)>,
    rejected: usize,
}

impl Inbox for Received {
    fn message(&mut self, message: &Incoming, via: Via) -> zmesh_client::Result<()> {
        self.messages.push((message.text.clone(), via));
        Ok(())
    }

    fn rejected(&mut self, _id: &[u8; 16], _via: Via, _error: &ClientError) {
        self.rejected += 1;
    }
}

/// A user: a key, and messaging state in `dir`.
struct User {
    key: SigningIdentity,
    dir: std::path::PathBuf,
}

impl User {
    fn new(states: &tempfile::TempDir, name: &str) -> User {
        User { key: SigningIdentity::generate(), dir: states.path().join(name) }
    }

    /// The user's client, connected to node `i`.
    fn connect(&self, rt: &tokio::runtime::Runtime, devnet: &Devnet, i: usize) -> Mailer<Relay> {
        let relay = rt.block_on(Relay::connect(relay_addr(devnet, i))).unwrap();
        let key = SigningIdentity::from_secret_bytes(&self.key.secret_bytes());
        Mailer::open(relay, Identity::from_signing(key), &self.dir).unwrap()
    }
}

/// Devnet indices of the nodes nearest `address`'s mailbox key, nearest first.
fn mailbox_nodes(devnet: &Devnet, address: &[u8; 32]) -> Vec<usize> {
    let key = mailbox_key(address);
    let report: LookupReport = get(devnet.api(0), &format!("/v1/dht/closest/{key}")).unwrap();
    report
        .peers
        .iter()
        .filter_map(|p| devnet.nodes.iter().position(|n| n.peer_id == p.peer_id))
        .collect()
}

/// Drains `mailer`'s mailbox, logging in first as `zmesh inbox` does.
fn drain(rt: &tokio::runtime::Runtime, mailer: &mut Mailer<Relay>) -> Received {
    let mut received = Received::default();
    rt.block_on(async {
        mailer.login().await.unwrap();
        let report = mailer.sync(&mut received).await.unwrap();
        assert!(!report.stalled, "the sync stalled: {report:?}");
    });
    received
}

#[test]
fn queued_messages_survive_kill_9_of_every_mailbox_node() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let devnet = Devnet::start(10, &settings(&[]));
    devnet.explain("mailbox", || {
        let rt = runtime();
        let states = tempfile::tempdir().unwrap();
        let mut bob = User::new(&states, "bob").connect(&rt, &devnet, 1);
        rt.block_on(bob.publish_bundle()).unwrap();
        let nearest = mailbox_nodes(&devnet, &bob.address());
        // The three mailbox nodes; the sender's relay and the reader's are neither of them.
        let victims: Vec<usize> = nearest.iter().copied().filter(|&i| i != 0).take(3).collect();
        let relays: Vec<usize> = (1..10).filter(|i| !victims.contains(i)).collect();
        let mut alice = User::new(&states, "alice").connect(&rt, &devnet, relays[0]);

        const TOTAL: usize = 1000;
        let mut queued = Vec::new();
        let mut refused = 0;
        let mut restarted = Vec::new();
        for n in 0..TOTAL {
            if n == 300 {
                for &v in &victims {
                    signal(devnet.nodes[v].pid, Signal::SIGKILL);
                }
            }
            if n == 600 {
                restarted = victims.iter().map(|&v| run_node(&devnet.nodes[v].dir)).collect();
            }
            let text = format!("message {n:04}");
            match rt.block_on(alice.send(&bob.address(), &text)) {
                Ok(report) => {
                    assert_eq!(report.status, SendStatus::Queued, "bob is offline");
                    queued.push(text);
                }
                // Not acknowledged: the sender knows it was not delivered.
                Err(e @ ClientError::NotDelivered { .. }) => {
                    eprintln!("{text}: {e}");
                    refused += 1;
                }
                Err(e) => panic!("{text}: unexpected error {e}"),
            }
        }
        eprintln!("{} queued, {refused} refused while the mailbox nodes were down", queued.len());
        assert!(queued.len() >= TOTAL - 50, "most sends were queued: {}", queued.len());

        // Bob comes back at a third relay, after the mailbox nodes are back.
        let back = relays[1];
        for &v in &victims {
            wait_for("a restarted mailbox node", Duration::from_secs(30), || {
                std::fs::read_to_string(devnet.nodes[v].dir.join("node.json")).ok()
            });
        }
        std::thread::sleep(Duration::from_secs(3));
        bob.replace_relay(rt.block_on(Relay::connect(relay_addr(&devnet, back))).unwrap());
        let received = drain(&rt, &mut bob);
        let texts: Vec<&str> = received.messages.iter().map(|(t, _)| t.as_str()).collect();
        let unique: HashSet<&str> = texts.iter().copied().collect();
        assert_eq!(unique.len(), texts.len(), "no message twice");
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted, "in the order sent");
        for text in &queued {
            assert!(unique.contains(text.as_str()), "{text} was queued but never delivered");
        }
        assert_eq!(received.rejected, 0);
        // Messages queued during the outage sat on stand-in nodes; the read found them there
        // and copied them back to the restarted mailbox nodes.
        let stats: serde_json::Value = get(devnet.api(back), "/v1/messaging").unwrap();
        eprintln!("reader's relay: {stats}");
        assert!(stats["read_repairs"].as_u64().unwrap() > 0, "{stats}");
        // A second sync hands nothing up again (what the replicas still hold, acks spare
        // entries younger than the clock skew, is dropped by id).
        assert!(drain(&rt, &mut bob).messages.is_empty(), "nothing is delivered twice");
        for mut child in restarted {
            let _ = child.kill();
            let _ = child.wait();
        }
    });
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn nodes_keep_no_plaintext_or_sender_and_tampered_or_expired_messages_never_arrive() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let devnet = Devnet::start(6, &settings(&[]));
    let rt = runtime();
    let states = tempfile::tempdir().unwrap();
    let bob_user = User::new(&states, "bob");
    let mut bob = bob_user.connect(&rt, &devnet, 1);
    rt.block_on(bob.publish_bundle()).unwrap();
    let mut alice = User::new(&states, "alice").connect(&rt, &devnet, 2);
    rt.block_on(alice.publish_bundle()).unwrap();
    let marker = "PLAINTEXT-MARKER-7f3a9c";
    for n in 0..3 {
        let report = rt.block_on(alice.send(&bob.address(), &format!("{marker} {n}"))).unwrap();
        assert_eq!(report.status, SendStatus::Queued);
    }
    // A message altered on its way: the relay cannot tell, the recipient refuses it.
    let mut tampered = rt.block_on(alice.encrypt(&bob.address(), "tampered")).unwrap();
    let last = tampered.sealed.len() - 1;
    tampered.sealed[last] ^= 1;
    rt.block_on(alice.send_sealed(&bob.address(), &tampered)).unwrap();

    // Nothing in any node's directory (stores, logs) gives away the text or the sender.
    let alice_address = alice.address();
    let alice_key = rt.block_on(bob.identity_key(&alice_address)).unwrap();
    let needles: [(&str, Vec<u8>); 4] = [
        ("the plaintext", marker.as_bytes().to_vec()),
        ("the sender's address", alice_address.to_vec()),
        (
            "the sender's address in hex",
            alice_address.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes(),
        ),
        ("the sender's public key", alice_key.to_vec()),
    ];
    for node in &devnet.nodes {
        for (what, needle) in &needles {
            let found = files_containing(&node.dir, needle);
            assert!(found.is_empty(), "{what} found in {found:?}");
        }
    }
    let received = drain(&rt, &mut bob);
    let texts: Vec<&str> = received.messages.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(texts, [0, 1, 2].map(|n| format!("{marker} {n}")));
    assert_eq!(received.rejected, 1, "the tampered message is refused");

    // Queue two more, then move every node's expiry clock 31 days ahead: never delivered.
    for n in 0..2 {
        rt.block_on(alice.send(&bob.address(), &format!("old {n}"))).unwrap();
    }
    drop(alice);
    drop(bob);
    // Garbage collection is held off, so the read path itself must refuse them.
    let late = ["messaging.clock_offset=744h", "messaging.gc_interval=1h"];
    let devnet = devnet.restart(&settings(&late));
    let held = || -> u64 {
        (0..devnet.nodes.len())
            .filter_map(|i| get::<serde_json::Value>(devnet.api(i), "/v1/messaging").ok())
            .map(|r| r["mailbox_messages"].as_u64().unwrap())
            .sum()
    };
    assert!(held() >= 2, "the expired messages are still on disk");
    let mut bob = bob_user.connect(&rt, &devnet, 3);
    assert!(drain(&rt, &mut bob).messages.is_empty(), "a 31-day-old message is never delivered");
}

#[test]
fn a_full_mailbox_is_reported_to_the_sender_as_quota() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let devnet = Devnet::start(4, &settings(&["messaging.mailbox_max_messages=3"]));
    let rt = runtime();
    let states = tempfile::tempdir().unwrap();
    let mut bob = User::new(&states, "bob").connect(&rt, &devnet, 1);
    rt.block_on(bob.publish_bundle()).unwrap();
    let mut alice = User::new(&states, "alice").connect(&rt, &devnet, 2);
    for n in 0..3 {
        let report = rt.block_on(alice.send(&bob.address(), &format!("fits {n}"))).unwrap();
        assert_eq!(report.status, SendStatus::Queued);
    }
    match rt.block_on(alice.send(&bob.address(), "one too many")) {
        Err(e @ ClientError::MailboxFull { .. }) => {
            assert!(e.to_string().contains("full"), "{e}");
        }
        other => panic!("expected a full mailbox, got {other:?}"),
    }
    let texts: Vec<String> = drain(&rt, &mut bob).messages.into_iter().map(|(t, _)| t).collect();
    assert_eq!(texts, ["fits 0", "fits 1", "fits 2"]);
}
