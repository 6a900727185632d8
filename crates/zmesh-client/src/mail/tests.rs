use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_node::clock::unix_ms;
use zmesh_node::messaging::auth::{UserReplayGuard, verify_user_auth};
use zmesh_node::messaging::records::{PresenceValue, verify_record};
use zmesh_wire::msg::{Cursor, Envelope, MsgOutcome};

use super::*;
use crate::ErrorKind;
use crate::relay::Delivery;

/// An in-memory relay that keeps the contract of `/zmesh/msg/1.0`: it checks every signature
/// and nonce the way nodes do, keeps records and mailboxes, and answers sends with `Queued`.
#[derive(Clone)]
struct FakeRelay {
    peer: PeerId,
    addr: Multiaddr,
    state: Arc<Mutex<Fake>>,
}

/// One user's mailbox, by position.
type Mailbox = BTreeMap<(u64, [u8; 16]), Envelope>;

struct Fake {
    records: HashMap<(u8, [u8; 32]), SignedRecord>,
    mailboxes: HashMap<[u8; 32], Mailbox>,
    guard: UserReplayGuard,
    logins: Vec<[u8; 32]>,
    next_order: u64,
    /// Most messages per batch, whatever the client asks for (so syncs take several).
    batch_max: usize,
    /// Messages a mailbox holds before sends are refused with `Quota`.
    quota: usize,
    /// Answers every request with this instead, when set.
    refuse: Option<MsgOutcome>,
    /// Session tokens shown in `Resume` requests.
    resumes: Vec<[u8; 32]>,
    /// The answer to `Resume` instead of restoring the session, when set.
    resume_answer: Option<MsgMessage>,
}

impl FakeRelay {
    fn new() -> FakeRelay {
        let peer = PeerId::random();
        FakeRelay {
            peer,
            addr: format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}").parse().unwrap(),
            state: Arc::new(Mutex::new(Fake {
                records: HashMap::new(),
                mailboxes: HashMap::new(),
                guard: UserReplayGuard::default(),
                logins: Vec::new(),
                next_order: 1,
                batch_max: 2,
                quota: 1000,
                refuse: None,
                resumes: Vec::new(),
                resume_answer: None,
            })),
        }
    }

    /// Another relay in front of the same records and mailboxes.
    fn elsewhere(&self) -> FakeRelay {
        let peer = PeerId::random();
        FakeRelay {
            peer,
            addr: format!("/ip4/127.0.0.1/tcp/4002/p2p/{peer}").parse().unwrap(),
            state: self.state.clone(),
        }
    }

    fn fake(&self) -> std::sync::MutexGuard<'_, Fake> {
        self.state.lock().unwrap()
    }

    fn mailbox(&self, address: &[u8; 32]) -> Vec<Envelope> {
        self.fake()
            .mailboxes
            .get(address)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn handle(&self, request: MsgMessage) -> MsgMessage {
        let now = unix_ms();
        let mut fake = self.fake();
        if let Some(outcome) = fake.refuse.clone() {
            return MsgMessage::Result { outcome };
        }
        let fail = |status: MsgStatus, detail: String| MsgMessage::Result {
            outcome: MsgOutcome::new(status, detail),
        };
        match request {
            MsgMessage::Login { auth } => {
                let target = Key256::hash(&self.peer.to_bytes()).0;
                match verify_user_auth(&auth, AuthPurpose::Login, &target, now, &mut fake.guard) {
                    Ok(address) => {
                        fake.logins.push(address);
                        MsgMessage::LoggedIn { outcome: MsgOutcome::ok(), session_token: [7; 32] }
                    }
                    Err(e) => MsgMessage::LoggedIn {
                        outcome: MsgOutcome::new(e.status(), e.to_string()),
                        session_token: [0; 32],
                    },
                }
            }
            MsgMessage::Resume { session_token } => {
                fake.resumes.push(session_token);
                fake.resume_answer
                    .clone()
                    .unwrap_or(MsgMessage::LoggedIn { outcome: MsgOutcome::ok(), session_token })
            }
            MsgMessage::PublishRecord { record } => match verify_record(&record, now) {
                Ok(v) => {
                    fake.records.insert((record.kind.code(), v.address), record);
                    MsgMessage::Result { outcome: MsgOutcome::ok() }
                }
                Err(e) => fail(e.status(), e.to_string()),
            },
            MsgMessage::FetchRecord { kind, owner_address } => {
                match fake.records.get(&(kind.code(), owner_address)) {
                    Some(r) => {
                        MsgMessage::Record { outcome: MsgOutcome::ok(), record: Some(r.clone()) }
                    }
                    None => MsgMessage::Record {
                        outcome: MsgOutcome::new(MsgStatus::NotFound, "no such record"),
                        record: None,
                    },
                }
            }
            MsgMessage::Send { recipient, id, sealed } => {
                let order = fake.next_order;
                fake.next_order += 1;
                let quota = fake.quota;
                let mailbox = fake.mailboxes.entry(recipient).or_default();
                if mailbox.len() >= quota {
                    let outcome = MsgOutcome::new(MsgStatus::Quota, "1000 messages");
                    return MsgMessage::Sent { id, outcome };
                }
                if !mailbox.values().any(|e| e.id == id) {
                    let envelope = Envelope { id, order, expires_at_ms: now + 60_000, sealed };
                    mailbox.insert((order, id), envelope);
                }
                MsgMessage::Sent { id, outcome: MsgOutcome::new(MsgStatus::Queued, "") }
            }
            MsgMessage::Sync { auth, after, max_messages } => {
                let owner = Key256::hash(&auth.owner_key).0;
                let target = mailbox_key(&owner).0;
                let purpose = AuthPurpose::MailboxRead;
                if let Err(e) = verify_user_auth(&auth, purpose, &target, now, &mut fake.guard) {
                    return fail(e.status(), e.to_string());
                }
                let max = fake.batch_max.min(usize::from(max_messages));
                let after = after.map(|c| (c.order, c.id));
                let all: Vec<Envelope> = fake
                    .mailboxes
                    .get(&owner)
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| Some(**k) > after)
                            .map(|(_, e)| e.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let has_more = all.len() > max;
                let messages: Vec<Envelope> = all.into_iter().take(max).collect();
                let next_cursor = messages.last().map(Envelope::cursor);
                MsgMessage::Batch { messages, has_more, next_cursor }
            }
            MsgMessage::Ack { auth, upto } => {
                let owner = Key256::hash(&auth.owner_key).0;
                let target = mailbox_key(&owner).0;
                let purpose = AuthPurpose::MailboxAck;
                if let Err(e) = verify_user_auth(&auth, purpose, &target, now, &mut fake.guard) {
                    return fail(e.status(), e.to_string());
                }
                if let Some(m) = fake.mailboxes.get_mut(&owner) {
                    m.retain(|k, _| *k > (upto.order, upto.id));
                }
                MsgMessage::Result { outcome: MsgOutcome::ok() }
            }
            other => fail(MsgStatus::BadRequest, format!("unexpected {:#x}", other.type_code())),
        }
    }
}

impl MsgRelay for FakeRelay {
    fn request(&self, request: MsgMessage) -> impl Future<Output = Result<MsgMessage>> + Send {
        std::future::ready(Ok(self.handle(request)))
    }

    fn peer_id(&self) -> PeerId {
        self.peer
    }

    fn addr(&self) -> Multiaddr {
        self.addr.clone()
    }
}

struct User {
    mailer: Mailer<FakeRelay>,
    _dir: tempfile::TempDir,
}

impl User {
    fn new(relay: &FakeRelay) -> User {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::from_signing(SigningIdentity::generate());
        let mailer = Mailer::open(relay.clone(), identity, &dir.path().join("e2e")).unwrap();
        User { mailer, _dir: dir }
    }

    fn address(&self) -> [u8; 32] {
        self.mailer.address()
    }

    /// Logged in with its bundle and presence published, as `zmesh inbox` starts.
    async fn online(relay: &FakeRelay) -> User {
        let mut user = User::new(relay);
        user.mailer.login().await.unwrap();
        user.mailer.publish_bundle().await.unwrap();
        user.mailer.publish_presence().await.unwrap();
        user
    }
}

/// Collects what reaches the inbox; fails on message number `fail_at` (0-based) when set.
#[derive(Default)]
struct Collected {
    messages: Vec<(String, Via)>,
    rejected: Vec<[u8; 16]>,
    warnings: Vec<String>,
    fail_at: Option<usize>,
}

impl Collected {
    fn texts(&self) -> Vec<&str> {
        self.messages.iter().map(|(t, _)| t.as_str()).collect()
    }
}

impl Inbox for Collected {
    fn message(&mut self, message: &Incoming, via: Via) -> Result<()> {
        if self.fail_at == Some(self.messages.len()) {
            return Err(ClientError::io("writing", std::io::Error::other("broken pipe")));
        }
        assert!(!message.duplicate);
        self.messages.push((message.text.clone(), via));
        Ok(())
    }

    fn rejected(&mut self, id: &[u8; 16], _via: Via, _error: &ClientError) {
        self.rejected.push(*id);
    }

    fn warning(&mut self, error: &ClientError) {
        self.warnings.push(error.to_string());
    }
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

async fn send_all(from: &mut User, to: &User, texts: &[String]) -> Vec<SendReport> {
    let mut reports = Vec::new();
    for text in texts {
        reports.push(from.mailer.send(&to.address(), text).await.unwrap());
    }
    reports
}

#[tokio::test]
async fn queued_messages_come_out_of_the_mailbox_once_and_in_order() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let sent = texts("hello bob", 5);
    let reports = send_all(&mut alice, &bob, &sent).await;
    assert!(reports.iter().all(|r| r.status == SendStatus::Queued));
    assert_eq!(relay.mailbox(&bob.address()).len(), 5);

    let mut inbox = Collected::default();
    let report = bob.mailer.sync(&mut inbox).await.unwrap();
    assert_eq!(inbox.texts(), sent);
    assert!(inbox.messages.iter().all(|(_, via)| *via == Via::Mailbox));
    assert_eq!(report.tally, Tally { messages: 5, duplicates: 0, rejected: 0 });
    assert_eq!(report.batches, 3, "two per batch, the last one short");
    assert!(!report.stalled);
    assert!(relay.mailbox(&bob.address()).is_empty(), "every batch was acknowledged");

    let again = bob.mailer.sync(&mut inbox).await.unwrap();
    assert_eq!(again.tally, Tally::default());
    assert_eq!(inbox.messages.len(), 5);
}

#[tokio::test]
async fn a_message_to_someone_without_a_bundle_says_what_is_missing() {
    let relay = FakeRelay::new();
    let bob = User::new(&relay);
    let mut alice = User::new(&relay);
    let e = alice.mailer.send(&bob.address(), "hi").await.unwrap_err();
    assert!(matches!(e, ClientError::NoBundle { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let text = e.to_string();
    assert!(text.contains(&hex::encode(bob.address())), "{text}");
    assert!(text.contains("has that user run `zmesh inbox` once?"), "{text}");
}

#[tokio::test]
async fn a_full_mailbox_is_reported_and_nothing_is_stored() {
    let relay = FakeRelay::new();
    let bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    relay.fake().quota = 1;
    alice.mailer.send(&bob.address(), "one").await.unwrap();
    let e = alice.mailer.send(&bob.address(), "two").await.unwrap_err();
    assert!(matches!(e, ClientError::MailboxFull { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.to_string().contains("mailbox of"), "{e}");
    assert_eq!(relay.mailbox(&bob.address()).len(), 1);
}

#[test]
fn send_answers_become_reports_or_errors() {
    let to = [3; 32];
    let id = [9; 16];
    let sent =
        |status, detail: &str| MsgMessage::Sent { id, outcome: MsgOutcome::new(status, detail) };
    assert_eq!(
        send_outcome(&to, id, sent(MsgStatus::Delivered, "")).unwrap(),
        SendReport { id, status: SendStatus::Delivered }
    );
    assert_eq!(
        send_outcome(&to, id, sent(MsgStatus::Queued, "")).unwrap().status,
        SendStatus::Queued
    );
    let e = send_outcome(&to, id, sent(MsgStatus::NoRoute, "2 of 3 replicas down")).unwrap_err();
    assert!(matches!(e, ClientError::NotDelivered { status: MsgStatus::NoRoute, .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.to_string().starts_with("not delivered to "), "{e}");
    assert!(e.to_string().ends_with("(2 of 3 replicas down)"), "{e}");
    let e = send_outcome(&to, id, sent(MsgStatus::Unauthorized, "")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused);
    // An answer about another message, or of the wrong kind, is a protocol error.
    let other = MsgMessage::Sent { id: [1; 16], outcome: MsgOutcome::new(MsgStatus::Queued, "") };
    assert_eq!(send_outcome(&to, id, other).unwrap_err().kind(), ErrorKind::Protocol);
    let ok = MsgMessage::Result { outcome: MsgOutcome::ok() };
    assert_eq!(send_outcome(&to, id, ok).unwrap_err().kind(), ErrorKind::Protocol);
    // A request refused before it was understood.
    let bad = MsgMessage::Result { outcome: MsgOutcome::new(MsgStatus::BadRequest, "garbled") };
    let e = send_outcome(&to, id, bad).unwrap_err();
    assert!(matches!(e, ClientError::NotDelivered { status: MsgStatus::BadRequest, .. }), "{e}");
}

#[tokio::test]
async fn an_altered_message_is_skipped_and_passed() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    send_all(&mut alice, &bob, &texts("m", 3)).await;
    let tampered_id = {
        let mut fake = relay.fake();
        let mailbox = fake.mailboxes.get_mut(&bob.address()).unwrap();
        let middle = mailbox.values_mut().nth(1).unwrap();
        let last = middle.sealed.len() - 1;
        middle.sealed[last] ^= 1;
        middle.id
    };
    let mut inbox = Collected::default();
    let report = bob.mailer.sync(&mut inbox).await.unwrap();
    assert_eq!(inbox.texts(), ["m 0", "m 2"]);
    assert_eq!(inbox.rejected, [tampered_id]);
    assert_eq!(report.tally.rejected, 1);
    assert!(relay.mailbox(&bob.address()).is_empty(), "the cursor moved past it");
}

#[tokio::test]
async fn a_copy_in_the_mailbox_is_handed_up_once() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    send_all(&mut alice, &bob, &texts("m", 2)).await;
    {
        // The first message again, under a later order (a retry through another relay).
        let mut fake = relay.fake();
        let mailbox = fake.mailboxes.get_mut(&bob.address()).unwrap();
        let copy = Envelope { order: 99, ..mailbox.values().next().unwrap().clone() };
        mailbox.insert((99, copy.id), copy);
    }
    let mut inbox = Collected::default();
    let report = bob.mailer.sync(&mut inbox).await.unwrap();
    assert_eq!(inbox.texts(), ["m 0", "m 1"]);
    assert_eq!(report.tally.duplicates, 1);
    assert!(relay.mailbox(&bob.address()).is_empty());
}

#[tokio::test]
async fn a_failing_inbox_stops_the_sync_before_the_ack() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    send_all(&mut alice, &bob, &texts("m", 4)).await;
    let mut inbox = Collected { fail_at: Some(3), ..Collected::default() };
    let e = bob.mailer.sync(&mut inbox).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(inbox.texts(), ["m 0", "m 1", "m 2"]);
    // The first batch (two messages) was acknowledged, the second was not.
    let left: Vec<_> = relay.mailbox(&bob.address()).iter().map(|e| e.order).collect();
    assert_eq!(left.len(), 2);
}

/// Alice's messages to Bob as a relay would push them, in order.
async fn envelopes(relay: &FakeRelay, alice: &mut User, bob: &User, n: usize) -> Vec<Envelope> {
    send_all(alice, bob, &texts("live", n)).await;
    let pushed = relay.mailbox(&bob.address());
    relay.fake().mailboxes.clear();
    pushed
}

#[tokio::test]
async fn a_live_delivery_is_answered_with_the_last_message_taken() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let pushed = envelopes(&relay, &mut alice, &bob, 3).await;
    let mut inbox = Collected::default();
    let (delivery, answer) = Delivery::new(pushed.clone());
    let tally = bob.mailer.take_delivery(delivery, &mut inbox).unwrap();
    assert_eq!(tally.messages, 3);
    assert_eq!(inbox.texts(), ["live 0", "live 1", "live 2"]);
    assert!(inbox.messages.iter().all(|(_, via)| *via == Via::Live));
    assert_eq!(
        answer.await.unwrap(),
        MsgMessage::Delivered { upto: Some(pushed[2].cursor()), count: 3 }
    );

    // The relay fell back to the mailbox as well (say the answer was lost): no second copy.
    relay
        .fake()
        .mailboxes
        .insert(bob.address(), pushed.iter().map(|e| ((e.order, e.id), e.clone())).collect());
    let report = bob.mailer.sync(&mut inbox).await.unwrap();
    assert_eq!(report.tally, Tally { messages: 0, duplicates: 3, rejected: 0 });
    assert_eq!(inbox.messages.len(), 3);
    assert!(relay.mailbox(&bob.address()).is_empty(), "acknowledged all the same");

    // Pushed again: taken (so the relay stops), not handed up.
    let (delivery, answer) = Delivery::new(pushed.clone());
    let tally = bob.mailer.take_delivery(delivery, &mut inbox).unwrap();
    assert_eq!(tally, Tally { messages: 0, duplicates: 3, rejected: 0 });
    assert_eq!(
        answer.await.unwrap(),
        MsgMessage::Delivered { upto: Some(pushed[2].cursor()), count: 3 }
    );
}

#[tokio::test]
async fn a_delivery_the_inbox_cannot_finish_is_answered_for_what_it_took() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let pushed = envelopes(&relay, &mut alice, &bob, 3).await;
    let mut inbox = Collected { fail_at: Some(1), ..Collected::default() };
    let (delivery, answer) = Delivery::new(pushed.clone());
    bob.mailer.take_delivery(delivery, &mut inbox).unwrap_err();
    assert_eq!(
        answer.await.unwrap(),
        MsgMessage::Delivered { upto: Some(pushed[0].cursor()), count: 1 }
    );

    // The third was never opened; failing on it, nothing is taken.
    let mut inbox = Collected { fail_at: Some(0), ..Collected::default() };
    let (delivery, answer) = Delivery::new(pushed[2..].to_vec());
    bob.mailer.take_delivery(delivery, &mut inbox).unwrap_err();
    assert_eq!(answer.await.unwrap(), MsgMessage::Delivered { upto: None, count: 0 });
}

#[tokio::test]
async fn presence_points_at_the_relay_and_verifies() {
    let relay = FakeRelay::new();
    let bob = User::online(&relay).await;
    let record = relay.fake().records[&(RecordKind::Presence.code(), bob.address())].clone();
    let now = unix_ms();
    assert_eq!(verify_record(&record, now).unwrap().address, bob.address());
    assert!(record.expires_at_ms <= now + PRESENCE_MAX_LIFETIME_MS);
    let value = PresenceValue::from_bytes(&record.value).unwrap();
    assert_eq!(PeerId::from_bytes(&value.relay.peer_id).unwrap(), relay.peer);
    let addr = Multiaddr::try_from(value.relay.addrs[0].clone()).unwrap();
    assert_eq!(addr.to_string(), "/ip4/127.0.0.1/tcp/4001");
    assert_eq!(relay.fake().logins, [bob.address()], "the login names the user");
}

#[tokio::test]
async fn refusals_name_the_request_and_the_status() {
    let relay = FakeRelay::new();
    let mut bob = User::new(&relay);
    relay.fake().refuse = Some(MsgOutcome::new(MsgStatus::Replay, "nonce seen"));
    let e = bob.mailer.login().await.unwrap_err();
    assert!(matches!(e, ClientError::MsgRefused { request: "login", .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Refused);
    assert!(e.to_string().contains("nonce seen"), "{e}");
    let e = bob.mailer.sync(&mut Collected::default()).await.unwrap_err();
    assert!(matches!(e, ClientError::MsgRefused { request: "mailbox sync", .. }), "{e}");
    relay.fake().refuse = Some(MsgOutcome::new(MsgStatus::Internal, "disk"));
    let e = bob.mailer.publish_presence().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn the_identity_key_of_a_contact_or_from_its_bundle() {
    let relay = FakeRelay::new();
    let bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let bob_key = *bob.mailer.identity.signing().public().as_bytes();
    assert_eq!(alice.mailer.identity_key(&bob.address()).await.unwrap(), bob_key);
    let e = alice.mailer.identity_key(&alice.address()).await.unwrap_err();
    assert!(matches!(e, ClientError::NoBundle { .. }), "{e}");
    alice.mailer.send(&bob.address(), "hi").await.unwrap();
    relay.fake().records.clear();
    assert_eq!(alice.mailer.identity_key(&bob.address()).await.unwrap(), bob_key, "a contact");
}

#[tokio::test]
async fn following_takes_pushes_and_picks_up_the_mailbox() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let pushed = envelopes(&relay, &mut alice, &bob, 2).await;
    let (tx, mut rx) = mpsc::channel(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let options = FollowOptions {
        resync: Duration::from_millis(20),
        presence_refresh: Duration::from_millis(30),
    };
    let mut inbox = Collected::default();
    let bob_address = bob.address();
    let driver = async {
        let (delivery, answer) = Delivery::new(pushed.clone());
        tx.send(delivery).await.unwrap();
        let answer = answer.await.unwrap();
        // One that went to the mailbox while the login was on its way.
        let late = alice.mailer.send(&bob_address, "from the mailbox").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !relay.mailbox(&bob_address).is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        stop.send(()).unwrap();
        (answer, late)
    };
    let shutdown = async {
        let _ = stopped.await;
    };
    let (result, (answer, _late)) =
        tokio::join!(bob.mailer.follow(&mut rx, &mut inbox, options, shutdown), driver);
    let tally = result.unwrap();
    assert_eq!(answer, MsgMessage::Delivered { upto: Some(pushed[1].cursor()), count: 2 });
    assert_eq!(inbox.texts(), ["live 0", "live 1", "from the mailbox"]);
    assert_eq!(inbox.messages[2].1, Via::Mailbox);
    assert_eq!(tally.messages, 3);
    assert!(inbox.warnings.is_empty(), "{:?}", inbox.warnings);
}

#[tokio::test]
async fn following_ends_with_the_connection_and_shrugs_off_refusals() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let (tx, mut rx) = mpsc::channel::<Delivery>(1);
    let options = FollowOptions {
        resync: Duration::from_millis(10),
        presence_refresh: Duration::from_secs(3600),
    };
    relay.fake().refuse = Some(MsgOutcome::new(MsgStatus::Internal, "replicas busy"));
    let mut inbox = Collected::default();
    let driver = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(tx);
    };
    let (result, ()) = tokio::join!(
        bob.mailer.follow(&mut rx, &mut inbox, options, std::future::pending()),
        driver
    );
    let e = result.unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e}");
    assert!(!inbox.warnings.is_empty(), "the refused re-syncs were reported");
    assert!(inbox.warnings[0].contains("replicas busy"), "{:?}", inbox.warnings);
}

#[tokio::test]
async fn a_rejoin_resumes_the_session_at_the_relay_that_issued_it_and_syncs() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let mut alice = User::new(&relay);
    let away = texts("while away", 3);
    send_all(&mut alice, &bob, &away).await;
    let mut inbox = Collected::default();
    let (how, report) = bob.mailer.rejoin(&mut inbox).await.unwrap();
    assert_eq!(how, Rejoined::Resumed);
    assert_eq!(report.tally.messages, 3);
    assert_eq!(inbox.texts(), away);
    assert_eq!(relay.fake().resumes, [[7; 32]], "the token of the login");
    assert_eq!(relay.fake().logins.len(), 1, "no second login");
}

#[tokio::test]
async fn another_relay_never_sees_the_token_and_gets_a_fresh_login_and_presence() {
    let relay = FakeRelay::new();
    let mut bob = User::online(&relay).await;
    let other = relay.elsewhere();
    bob.mailer.replace_relay(other.clone());
    let (how, _) = bob.mailer.rejoin(&mut Collected::default()).await.unwrap();
    assert_eq!(how, Rejoined::LoggedIn);
    assert!(other.fake().resumes.is_empty(), "whoever holds the token can take the session");
    assert_eq!(other.fake().logins.len(), 2);
    let record = other.fake().records[&(RecordKind::Presence.code(), bob.address())].clone();
    let value = PresenceValue::from_bytes(&record.value).unwrap();
    assert_eq!(PeerId::from_bytes(&value.relay.peer_id).unwrap(), other.peer);
}

#[tokio::test]
async fn a_session_the_relay_no_longer_has_means_a_fresh_login() {
    let not_found = MsgMessage::LoggedIn {
        outcome: MsgOutcome::new(MsgStatus::NotFound, "no session with this token"),
        session_token: [0; 32],
    };
    // A relay that forgot the session, and one that does not know Resume at all.
    let unknown = MsgMessage::Result { outcome: MsgOutcome::new(MsgStatus::BadRequest, "?") };
    for answer in [not_found, unknown] {
        let relay = FakeRelay::new();
        let mut bob = User::online(&relay).await;
        relay.fake().resume_answer = Some(answer);
        let (how, _) = bob.mailer.rejoin(&mut Collected::default()).await.unwrap();
        assert_eq!(how, Rejoined::LoggedIn);
        assert_eq!(relay.fake().resumes.len(), 1);
        assert_eq!(relay.fake().logins.len(), 2);
    }
}

#[test]
fn addresses_are_64_hex_characters() {
    let hex = "ab".repeat(32);
    assert_eq!(parse_address(&hex).unwrap(), [0xAB; 32]);
    assert_eq!(parse_address(&hex.to_uppercase()).unwrap(), [0xAB; 32]);
    for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
        let e = parse_address(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("64 hex characters"), "{e}");
    }
}

#[test]
fn cursors_and_positions_convert_both_ways() {
    let c = Cursor { order: 5, id: [6; 16] };
    assert_eq!(to_cursor(to_position(c)), c);
}
