//! Losing the relay mid-conversation, across real node processes: a follower whose relay is
//! killed comes back with backoff and prints every message once and in order; a sender whose
//! relay is killed sends what was unanswered again under the same ids, and the recipient gets
//! each message once and in order. And being held back rather than lost: a sender over its
//! relay's rate limit waits as told, is never cut off, and every message gets through once.

// In tests a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::follow::Follower;
use common::{BIN, Devnet, metric, signal, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;
use zmesh_client::mail::{Inbox, Mailer, SendStatus, Via};
use zmesh_client::messenger::Incoming;
use zmesh_client::reconnect::{ReconnectPolicy, ReconnectingRelay, RelayDial};
use zmesh_client::{ClientError, Identity, Multiaddr, ReconnectAttempt, Relay};
use zmesh_crypto::sign::SigningIdentity;

/// Two devnets at once are too much for two cores: one test at a time.
static HEAVY: Mutex<()> = Mutex::new(());

const PASSPHRASE: &str = "correct horse battery staple";
const MESSAGES: usize = 100;
/// Fast dead-peer detection and short relay timeouts. The per-connection rate limits are off:
/// they would stretch a hundred messages over a minute, and are not what is tested here.
const SETTINGS: [&str; 5] = [
    "keepalive.ping_interval=1s",
    "keepalive.ping_jitter=100ms",
    "keepalive.pong_timeout=500ms",
    "messaging.request_timeout=3s",
    "rate_limits.enabled=false",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A node's TCP address with its peer id.
fn relay_addr(devnet: &Devnet, i: usize) -> Multiaddr {
    let node = &devnet.nodes[i];
    let tcp = node.multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap();
    if tcp.contains("/p2p/") { tcp.parse() } else { format!("{tcp}/p2p/{}", node.peer_id).parse() }
        .unwrap()
}

/// Runs node `i` again after a kill, on the TCP port it had: clients that know only that
/// address can come back to it.
fn restart_on_same_port(devnet: &Devnet, i: usize) -> Child {
    let node = &devnet.nodes[i];
    let tcp = node.multiaddrs.iter().find(|a| a.contains("/tcp/")).unwrap();
    let tcp = tcp.split("/p2p/").next().unwrap();
    let listen = format!(r#"network.listen=["{tcp}", "/ip4/127.0.0.1/udp/0/quic-v1"]"#);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("node.log"));
    let log = log.unwrap();
    Command::new(BIN)
        .args(["node", "run", "--dir"])
        .arg(&node.dir)
        .args(["--set", &listen])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// An in-process user: a key and messaging state in `dir`.
struct User {
    key: SigningIdentity,
    dir: std::path::PathBuf,
}

impl User {
    fn new(states: &Path, name: &str) -> User {
        User { key: SigningIdentity::generate(), dir: states.join(name) }
    }

    fn identity(&self) -> Identity {
        Identity::from_signing(SigningIdentity::from_secret_bytes(&self.key.secret_bytes()))
    }

    fn mailer<R: zmesh_client::MsgRelay>(&self, relay: R) -> Mailer<R> {
        Mailer::open(relay, self.identity(), &self.dir).unwrap()
    }
}

fn text(n: usize) -> String {
    format!("message {n:03}")
}

/// What an in-process user received, in order.
#[derive(Default)]
struct Received(Vec<(String, [u8; 16])>);

impl Inbox for Received {
    fn message(&mut self, message: &Incoming, _via: Via) -> zmesh_client::Result<()> {
        self.0.push((message.text.clone(), message.id));
        Ok(())
    }

    fn rejected(&mut self, id: &[u8; 16], _via: Via, error: &ClientError) {
        panic!("message {} rejected: {error}", hex(id));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `zmesh inbox --follow --json` for a new identity, its output collected as it comes.
/// A new identity for Bob in `dir`, following on `relay`: the process and Bob's address.
fn follow_as_new_user(dir: &Path, relay: &Multiaddr) -> (Follower, [u8; 32]) {
    let identity = dir.join("bob.id");
    let zmesh = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--identity").arg(&identity).env("ZMESH_PASSPHRASE", PASSPHRASE);
        cmd
    };
    let out = zmesh(&["id", "new"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = zmesh(&["id", "show", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = zmesh_client::mail::parse_address(doc["address"].as_str().unwrap()).unwrap();
    let relay = relay.to_string();
    let inbox = zmesh(&["inbox", "--follow", "--json", "--resync", "1s", "--relay", &relay]);
    (Follower::spawn(inbox), address)
}

#[test]
fn a_follower_whose_relay_is_killed_comes_back_and_prints_every_message_once_in_order() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let devnet = Devnet::start(5, &SETTINGS);
    let (bob_relay, alice_relay) = (1, 2);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut restarted = None;
    devnet.explain("messag", || {
        let (bob, bob_address) = follow_as_new_user(dir.path(), &relay_addr(&devnet, bob_relay));
        let alice = User::new(dir.path(), "alice");
        let mut alice =
            alice.mailer(rt.block_on(Relay::connect(relay_addr(&devnet, alice_relay))).unwrap());
        let mut killed_at = None;
        for n in 0..MESSAGES {
            if n == 30 {
                signal(devnet.nodes[bob_relay].pid, Signal::SIGKILL);
                killed_at = Some(Instant::now());
            }
            // Back twenty messages and at least three seconds later, while the follower is
            // backing off.
            if n == 50 {
                let down = killed_at.unwrap().elapsed();
                std::thread::sleep(Duration::from_secs(3).saturating_sub(down));
                restarted = Some(restart_on_same_port(&devnet, bob_relay));
            }
            let report = rt.block_on(alice.send(&bob_address, &text(n))).unwrap();
            match n {
                0..30 => assert_eq!(report.status, SendStatus::Delivered, "message {n}"),
                // The follower's relay is down: into the mailbox.
                30..50 => assert_eq!(report.status, SendStatus::Queued, "message {n}"),
                _ => {}
            }
            // Paced like a conversation, so that messages keep coming after the follower is back.
            std::thread::sleep(Duration::from_millis(100));
        }
        let printed = bob.take(MESSAGES, Duration::from_secs(40));
        let texts: Vec<&str> = printed.iter().map(|m| m["text"].as_str().unwrap()).collect();
        let expected: Vec<String> = (0..MESSAGES).map(text).collect();
        assert_eq!(texts, expected, "every message once, in order");
        // "reconnecting to ADDR in 2.2 s (attempt 2)": 1 s, then 2 s, each ±25 %.
        let stderr = bob.stderr();
        let delays: Vec<f64> = stderr
            .lines()
            .filter(|l| l.starts_with("reconnecting to "))
            .map(|l| l.split(" in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(delays.len() >= 2, "backed off and tried again: {stderr}");
        assert!((1.0..=1.3).contains(&delays[0]), "{stderr}");
        assert!((1.5..=2.5).contains(&delays[1]), "{stderr}");
        assert!(stderr.contains("following again at"), "{stderr}");
        let live = printed[30..].iter().filter(|m| m["via"] == "live").count();
        eprintln!(
            "follower: delays {delays:?} s, {live} of the last 70 messages live; {:?}",
            started.elapsed()
        );
        bob.stop();
    });
    if let Some(mut child) = restarted {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_sender_whose_relay_is_killed_sends_the_unanswered_again_and_each_arrives_once() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let devnet = Devnet::start(5, &SETTINGS);
    let (alice_relay, alternate, bob_relay) = (1, 2, 3);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let bob = User::new(dir.path(), "bob");
    let mut restarted = None;
    devnet.explain("messag", || {
        // Bob publishes his keys and goes offline.
        let bob_address = {
            let relay = rt.block_on(Relay::connect(relay_addr(&devnet, bob_relay))).unwrap();
            let mut mailer = bob.mailer(relay);
            rt.block_on(mailer.publish_bundle()).unwrap();
            mailer.address()
        };

        // Alice's client knows an alternate relay, as `--relay A --relay C` gives it.
        let endpoints = vec![relay_addr(&devnet, alice_relay), relay_addr(&devnet, alternate)];
        let first = rt.block_on(Relay::connect(endpoints[0].clone())).unwrap();
        let attempts: Arc<Mutex<Vec<ReconnectAttempt>>> = Arc::default();
        let log = attempts.clone();
        let relay =
            ReconnectingRelay::new(RelayDial, first, endpoints, 0, ReconnectPolicy::default())
                .with_observer(move |a| log.lock().unwrap().push(a.clone()));
        let mut alice = User::new(dir.path(), "alice").mailer(relay.clone());
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        let sending = rt.spawn(async move {
            let mut ids = Vec::new();
            for n in 0..MESSAGES {
                let report = alice.send(&bob_address, &text(n)).await.unwrap();
                assert_eq!(report.status, SendStatus::Queued, "message {n}");
                ids.push(report.id);
                count.fetch_add(1, Ordering::Release);
            }
            ids
        });
        // Killed while sending: one request is in flight or about to go.
        wait_for("30 answers", Duration::from_secs(30), || {
            (answered.load(Ordering::Acquire) >= 30).then_some(())
        });
        signal(devnet.nodes[alice_relay].pid, Signal::SIGKILL);
        let at_kill = answered.load(Ordering::Acquire);
        // Back after the first attempt (about 1 s) failed; by then the client moved on.
        std::thread::sleep(Duration::from_secs(2));
        restarted = Some(restart_on_same_port(&devnet, alice_relay));
        let ids =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), sending).await });
        let ids = ids.expect("all sent within a minute").unwrap();
        assert!(at_kill < MESSAGES, "the kill came mid-stream");
        assert_eq!(relay.generation(), 1, "one reconnection");
        let attempts = attempts.lock().unwrap().clone();
        let tried: Vec<&Multiaddr> = attempts.iter().map(|a| &a.addr).collect();
        assert_eq!(tried, [&relay_addr(&devnet, alice_relay), &relay_addr(&devnet, alternate)]);
        assert!(attempts[0].delay >= Duration::from_secs(1), "{attempts:?}");
        assert!(attempts[1].delay >= Duration::from_millis(1500), "{attempts:?}");
        assert_eq!(zmesh_client::MsgRelay::addr(&relay), relay_addr(&devnet, alternate));

        // Bob comes back: each message once, in order, under the id it was sent with.
        let relay = rt.block_on(Relay::connect(relay_addr(&devnet, bob_relay))).unwrap();
        let mut mailer = bob.mailer(relay);
        let mut received = Received::default();
        rt.block_on(async {
            mailer.login().await.unwrap();
            let report = mailer.sync(&mut received).await.unwrap();
            assert!(!report.stalled, "{report:?}");
        });
        let texts: Vec<&str> = received.0.iter().map(|(t, _)| t.as_str()).collect();
        let expected: Vec<String> = (0..MESSAGES).map(text).collect();
        assert_eq!(texts, expected, "every message once, in order");
        let got_ids: Vec<[u8; 16]> = received.0.iter().map(|(_, id)| *id).collect();
        assert_eq!(got_ids, ids);
        eprintln!(
            "sender: killed after {at_kill} answers, {} reconnection attempts; {:?}",
            attempts.len(),
            started.elapsed()
        );
    });
    if let Some(mut child) = restarted {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_sender_over_its_rate_limit_waits_as_told_and_every_message_gets_through_once() {
    let _heavy = HEAVY.lock().unwrap_or_else(|p| p.into_inner());
    // The seed's limits: 100 messages a minute, 20 at once.
    let devnet = Devnet::start(3, &SETTINGS[..4]);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    devnet.explain("messag", || {
        let bob = User::new(dir.path(), "bob");
        let mut bob = bob.mailer(rt.block_on(Relay::connect(relay_addr(&devnet, 2))).unwrap());
        rt.block_on(bob.publish_bundle()).unwrap();
        let alice = User::new(dir.path(), "alice");
        let mut alice = alice.mailer(rt.block_on(Relay::connect(relay_addr(&devnet, 1))).unwrap());
        let to = bob.address();

        // 25 sent at once: the relay takes 20, throttles the rest, and the client sends those
        // again one at a time as the relay's bucket refills (one every 0.6 s). (More than 30 at
        // once would be cut off: the relay counts each request that arrives after its first
        // refusal as ignoring it, even one sent before that refusal reached the client.)
        const BURST: usize = 25;
        let started = Instant::now();
        let outgoing: Vec<_> =
            (0..BURST).map(|n| rt.block_on(alice.encrypt(&to, &text(n))).unwrap()).collect();
        let sends = outgoing.iter().map(|o| alice.send_sealed(&to, o));
        let reports = rt.block_on(futures::future::join_all(sends));
        let took = started.elapsed();
        for report in &reports {
            assert_eq!(report.as_ref().unwrap().status, SendStatus::Queued);
        }
        let api = devnet.api(1);
        let throttled = metric(api, r#"zmesh_throttled_total{reason="rate_limit"}"#);
        assert!(throttled >= 5.0, "the relay held some back: {throttled}");
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert_eq!(metric(api, "zmesh_peers_banned_total"), 0.0, "a client that waits is kept");

        let mut received = Received::default();
        rt.block_on(async {
            bob.login().await.unwrap();
            bob.sync(&mut received).await.unwrap();
        });
        let mut ids: Vec<[u8; 16]> = received.0.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        let mut sent: Vec<[u8; 16]> = outgoing.iter().map(|o| o.id).collect();
        sent.sort_unstable();
        assert_eq!(ids, sent, "each message once");
        eprintln!("rate limit: {BURST} messages in {took:?}, {throttled} throttled answers");
    });
}
