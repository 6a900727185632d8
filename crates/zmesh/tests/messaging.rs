//! End-to-end messages across real node processes, driven through the CLI: `zmesh send` to a
//! recipient following on the same relay (direct), on another relay (federated), and offline
//! (mailbox, drained through a third relay).

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::follow::Follower;
use common::{BIN, Devnet};
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";
const MESSAGES: usize = 20;
/// Fast dead-peer detection and short relay timeouts, so a slow path shows up quickly.
const SETTINGS: [&str; 4] = [
    "keepalive.ping_interval=1s",
    "keepalive.ping_jitter=100ms",
    "keepalive.pong_timeout=500ms",
    "messaging.request_timeout=3s",
];

struct User {
    identity: PathBuf,
    address: String,
}

impl User {
    fn new(dir: &Path, name: &str) -> User {
        let identity = dir.join(name);
        let mut user = User { identity, address: String::new() };
        let out = user.run(&["id", "new"]);
        assert!(out.status.success(), "id new: {}", String::from_utf8_lossy(&out.stderr));
        let out = user.run(&["id", "show", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        user.address = doc["address"].as_str().unwrap().to_owned();
        user
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--identity").arg(&self.identity).env("ZMESH_PASSPHRASE", PASSPHRASE);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run zmesh")
    }

    /// Sends `text` through `relay`; the status word and the message id.
    fn send(&self, to: &User, text: &str, relay: &str) -> (String, String) {
        let out = self.run(&["send", &to.address, text, "--json", "--relay", relay]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "send {text:?} failed: {stderr}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["to"], to.address.as_str());
        (doc["status"].as_str().unwrap().to_owned(), doc["id"].as_str().unwrap().to_owned())
    }

    /// Sends `n` numbered messages, one process each; returns their texts and ids.
    fn send_many(&self, to: &User, tag: &str, relay: &str, expect: &str) -> Vec<(String, String)> {
        (0..MESSAGES)
            .map(|i| {
                let text = format!("{tag} #{i}: ünïcode ✓ \"quoted\"");
                let (status, id) = self.send(to, &text, relay);
                assert_eq!(status, expect, "message {i} of {tag}");
                (text, id)
            })
            .collect()
    }

    fn inbox(&self, relay: &str) -> (Vec<Value>, String) {
        let out = self.run(&["inbox", "--json", "--relay", relay]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "inbox failed: {stderr}");
        let lines = String::from_utf8(out.stdout).unwrap();
        (lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), stderr)
    }
}

/// A running `zmesh inbox --follow --json`, its output collected as it comes.
/// Each sent message arrived once, in order, with its text, id and sender.
fn check(received: &[Value], sent: &[(String, String)], from: &User, via: &[&str]) {
    assert_eq!(received.len(), sent.len());
    for (got, (text, id)) in received.iter().zip(sent) {
        assert_eq!(got["text"], text.as_str(), "{got}");
        assert_eq!(got["id"], id.as_str(), "{got}");
        assert_eq!(got["from"], from.address.as_str(), "{got}");
        assert!(got["sent_at"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "{got}");
        assert!(via.contains(&got["via"].as_str().unwrap()), "{got}");
    }
}

/// A node's TCP address with its peer id, for `--relay`.
fn relay(devnet: &Devnet, i: usize) -> String {
    let node = &devnet.nodes[i];
    let tcp = node.multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap();
    if tcp.contains("/p2p/") { tcp.clone() } else { format!("{tcp}/p2p/{}", node.peer_id) }
}

#[test]
fn messages_arrive_once_and_in_order_directly_federated_and_from_the_mailbox() {
    let devnet = Devnet::start(5, &SETTINGS);
    let dir = tempfile::tempdir().unwrap();
    let alice = User::new(dir.path(), "alice");
    let bob = User::new(dir.path(), "bob");
    let (r1, r2, r3) = (relay(&devnet, 0), relay(&devnet, 1), relay(&devnet, 2));
    devnet.explain("messag", || {
        // Nobody can write to Bob before he has published his keys.
        let out = alice.run(&["send", &bob.address, "too early", "--relay", &r1]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no prekey bundle published"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

        // 1. Bob follows on the relay Alice sends through.
        let started = Instant::now();
        let follower = Follower::spawn(
            bob.command(&["inbox", "--follow", "--json", "--resync", "1s", "--relay", &r1]),
        );
        let sent = alice.send_many(&bob, "direct", &r1, "delivered");
        check(&follower.take(MESSAGES, Duration::from_secs(60)), &sent, &alice, &["live"]);
        follower.stop();
        eprintln!("direct: {:?}", started.elapsed());

        // 2. Bob follows on another relay: Alice's relay forwards to his.
        let started = Instant::now();
        let follower = Follower::spawn(
            bob.command(&["inbox", "--follow", "--json", "--resync", "1s", "--relay", &r2]),
        );
        let sent = alice.send_many(&bob, "federated", &r1, "delivered");
        check(&follower.take(MESSAGES, Duration::from_secs(60)), &sent, &alice, &["live"]);
        follower.stop();
        eprintln!("federated: {:?}", started.elapsed());

        // 3. Bob is offline: his mailbox keeps the messages until he asks through a third relay.
        let started = Instant::now();
        let sent = alice.send_many(&bob, "offline", &r1, "queued");
        let (received, summary) = bob.inbox(&r3);
        check(&received, &sent, &alice, &["mailbox"]);
        assert!(summary.contains(&format!("{MESSAGES} messages")), "{summary}");
        let (again, summary) = bob.inbox(&r3);
        assert!(again.is_empty(), "{again:?}");
        assert!(summary.contains("0 messages"), "{summary}");
        eprintln!("offline: {:?}", started.elapsed());

        // Both sides compute the same safety number, from what they already know.
        let number = |user: &User, other: &User| {
            let out = user.run(&["safety-number", &other.address]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let theirs = number(&bob, &alice);
        assert_eq!(number(&alice, &bob), theirs);
        assert_eq!(theirs.split(' ').count(), 12, "{theirs}");
    });
    devnet.stop();
}
