use std::fs;
use std::os::unix::fs::PermissionsExt;

use zmesh_crypto::sign::SigningIdentity;
use zmesh_wire::msg::RecordKind;

use super::*;
use crate::ErrorKind;

const NOW: u64 = 1_700_000_000_000;

struct User {
    identity: Identity,
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User {
            identity: Identity::from_signing(SigningIdentity::generate()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        default_dir(&self.dir.path().join("identity"))
    }

    /// Opens the state afresh from disk, as a new process would.
    fn open(&self) -> Messenger {
        Messenger::open(&self.identity, &self.state_dir()).unwrap()
    }

    fn address(&self) -> [u8; 32] {
        self.identity.address().0
    }

    fn public_key(&self) -> [u8; 32] {
        *self.identity.signing().public().as_bytes()
    }

    /// A bundle as a sender gets it: published, fetched, checked.
    fn bundle(&self) -> PrekeyBundle {
        let record = self.open().bundle_record(NOW).unwrap();
        bundle_from_record(&record, &self.address(), NOW + 1).unwrap()
    }
}

fn send(from: &User, to: &User, text: &str, bundle: Option<PrekeyBundle>) -> Outgoing {
    from.open().encrypt(&to.address(), bundle, text, NOW).unwrap()
}

fn receive(to: &User, from: &User, out: &Outgoing, text: &str) {
    let got = to.open().decrypt(&out.sealed).unwrap();
    assert_eq!(got.id, out.id);
    assert_eq!(got.from, from.address());
    assert_eq!(got.text, text);
    assert_eq!(got.sent_at_ms, NOW);
    assert!(!got.duplicate);
}

/// Alice starts with Bob's bundle; Bob answers over the session.
fn pair() -> (User, User) {
    let (alice, bob) = (User::new(), User::new());
    let first = send(&alice, &bob, "hello bob", Some(bob.bundle()));
    receive(&bob, &alice, &first, "hello bob");
    let reply = send(&bob, &alice, "hello alice", None);
    receive(&alice, &bob, &reply, "hello alice");
    (alice, bob)
}

#[test]
fn twenty_messages_each_way_across_reopens() {
    let (alice, bob) = pair();
    for i in 0..20 {
        let text = format!("alice to bob #{i}");
        let m = send(&alice, &bob, &text, None);
        receive(&bob, &alice, &m, &text);
        let text = format!("bob to alice #{i} ✓");
        let m = send(&bob, &alice, &text, None);
        receive(&alice, &bob, &m, &text);
    }
    // Several in a row one way, delivered out of order.
    let msgs: Vec<_> =
        (0..5).map(|i| (i, send(&bob, &alice, &format!("burst {i}"), None))).collect();
    for (i, m) in msgs.iter().rev() {
        receive(&alice, &bob, m, &format!("burst {i}"));
    }
    assert_eq!(alice.open().contacts(), vec![bob.address()]);
}

#[test]
fn without_session_or_bundle_the_error_says_what_to_do() {
    let (alice, bob) = (User::new(), User::new());
    let e = alice.open().encrypt(&bob.address(), None, "hi", NOW).unwrap_err();
    assert!(matches!(e, ClientError::NoSession { .. }), "{e}");
    assert!(e.to_string().contains("fetch the recipient's prekey bundle first"));
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn a_bundle_for_another_address_is_refused() {
    let (alice, bob, carol) = (User::new(), User::new(), User::new());
    let e = alice.open().encrypt(&carol.address(), Some(bob.bundle()), "hi", NOW).unwrap_err();
    assert!(matches!(e, ClientError::BadBundle { .. }), "{e}");
    // And nothing was kept for Carol.
    assert!(alice.open().contact_identity(&carol.address()).is_none());

    let record = bob.open().bundle_record(NOW).unwrap();
    assert!(bundle_from_record(&record, &carol.address(), NOW).is_err());
    assert!(bundle_from_record(&record, &bob.address(), NOW + BUNDLE_TTL_MS).is_err());
    let mut forged = record.clone();
    forged.value[40] ^= 1;
    assert!(bundle_from_record(&forged, &bob.address(), NOW).is_err());
    let mut resigned = record.clone();
    resigned.kind = RecordKind::Presence;
    assert!(bundle_from_record(&resigned, &bob.address(), NOW).is_err());
}

#[test]
fn bundle_records_are_signed_and_carry_fresh_keys() {
    let bob = User::new();
    let mut m = bob.open();
    let record = m.bundle_record(NOW).unwrap();
    assert_eq!(record.kind, RecordKind::Bundle);
    assert_eq!(record.owner_key, bob.public_key());
    assert_eq!(record.version, NOW);
    assert_eq!(record.expires_at_ms, NOW + BUNDLE_TTL_MS);
    bob.identity.signing().public().verify(&record.signed_bytes(), &record.signature).unwrap();
    let first = bundle_from_record(&record, &bob.address(), NOW).unwrap();
    assert_eq!(first.one_time_keys().len(), MIN_UNPUBLISHED_KEYS);
    assert_eq!(first.device_keys(), &m.device_keys());
    // Published keys are saved: a fresh handle publishes new ones.
    let second =
        bundle_from_record(&bob.open().bundle_record(NOW + 1).unwrap(), &bob.address(), NOW)
            .unwrap();
    assert_eq!(second.one_time_keys().len(), MIN_UNPUBLISHED_KEYS);
    assert!(second.one_time_keys().iter().all(|k| !first.one_time_keys().contains(k)));
}

#[test]
fn a_tampered_message_is_rejected_and_the_session_survives() {
    let (alice, bob) = pair();
    let m = send(&alice, &bob, "intact", None);
    let mut bob_m = bob.open();
    for i in [40, m.sealed.len() / 2, m.sealed.len() - 1] {
        let mut bad = m.sealed.clone();
        bad[i] ^= 0x20;
        let e = bob_m.decrypt(&bad).unwrap_err();
        assert!(matches!(e, ClientError::NotForThisIdentity), "{e}");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
    let mut bad = m.sealed.clone();
    bad[0] = 9;
    assert!(matches!(bob_m.decrypt(&bad), Err(ClientError::MalformedMessage(_))));
    assert!(bob_m.decrypt(&m.sealed[..m.sealed.len() - 1]).is_err());
    receive(&bob, &alice, &m, "intact");
    let reply = send(&bob, &alice, "still fine", None);
    receive(&alice, &bob, &reply, "still fine");
}

#[test]
fn garbage_never_panics() {
    let bob = User::new();
    let mut m = bob.open();
    for len in [0, 1, 255, 256, 512, 1000, 4096] {
        for fill in [0_u8, 0xff, 0x5a] {
            assert!(m.decrypt(&vec![fill; len]).is_err());
        }
    }
}

#[test]
fn a_message_for_someone_else_does_not_open() {
    let (alice, bob) = pair();
    let carol = User::new();
    let m = send(&alice, &bob, "for bob only", None);
    let e = carol.open().decrypt(&m.sealed).unwrap_err();
    assert!(matches!(e, ClientError::NotForThisIdentity), "{e}");
    // Alice cannot open her own message to Bob either.
    assert!(alice.open().decrypt(&m.sealed).is_err());
    receive(&bob, &alice, &m, "for bob only");
}

#[test]
fn duplicate_delivery_is_flagged() {
    let (alice, bob) = (User::new(), User::new());
    // The first (pre-key) message and a later one, each delivered twice.
    let first = send(&alice, &bob, "first", Some(bob.bundle()));
    receive(&bob, &alice, &first, "first");
    let again = bob.open().decrypt(&first.sealed).unwrap();
    assert!(again.duplicate);
    assert_eq!((again.id, again.from, again.text.as_str()), (first.id, alice.address(), ""));
    let second = send(&alice, &bob, "second", None);
    receive(&bob, &alice, &second, "second");
    let again = bob.open().decrypt(&second.sealed).unwrap();
    assert!(again.duplicate && again.text.is_empty());
    // The conversation goes on.
    let reply = send(&bob, &alice, "got both", None);
    receive(&alice, &bob, &reply, "got both");
}

#[test]
fn safety_numbers_agree_and_depend_on_the_keys() {
    let (alice, bob) = pair();
    let carol = User::new();
    let (a, b) = (alice.open(), bob.open());
    assert_eq!(a.contact_identity(&bob.address()), Some(bob.public_key()));
    assert_eq!(b.contact_identity(&alice.address()), Some(alice.public_key()));
    assert_eq!(a.contact_identity(&carol.address()), None);
    let from_alice = a.safety_number(&bob.public_key()).unwrap();
    let from_bob = b.safety_number(&alice.public_key()).unwrap();
    assert_eq!(from_alice, from_bob);
    assert_eq!(from_alice.len(), 12 * 6 - 1);
    assert_ne!(a.safety_number(&carol.public_key()).unwrap(), from_alice);
    let e = a.safety_number(&[0; 32]).unwrap_err();
    assert!(matches!(e, ClientError::BadIdentityKey(_)), "{e}");
}

#[test]
fn another_identity_cannot_open_the_state() {
    let (alice, bob) = (User::new(), User::new());
    drop(alice.open());
    let e = Messenger::open(&bob.identity, &alice.state_dir()).unwrap_err();
    assert!(matches!(e, ClientError::ForeignMessagingState { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Identity);
    assert!(e.to_string().contains("another identity"));
    // The owner still can.
    drop(alice.open());
}

#[test]
fn a_damaged_state_file_is_a_clear_error() {
    let alice = User::new();
    drop(alice.open());
    let path = alice.state_dir().join("state");
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(10);
    fs::write(&path, &bytes).unwrap();
    let e = Messenger::open(&alice.identity, &alice.state_dir()).unwrap_err();
    assert!(matches!(e, ClientError::CorruptMessagingState { .. }), "{e}");
}

#[test]
fn files_are_private_and_hold_no_plaintext() {
    const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";
    let (alice, bob) = pair();
    let m = send(&alice, &bob, MARKER, None);
    assert!(!m.sealed.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
    receive(&bob, &alice, &m, MARKER);
    let reply = send(&bob, &alice, MARKER, None);
    receive(&alice, &bob, &reply, MARKER);
    for user in [&alice, &bob] {
        let dir = user.state_dir();
        let dir_mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            names.push(entry.file_name().into_string().unwrap());
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{:?}", entry.path());
            let bytes = fs::read(entry.path()).unwrap();
            assert!(!bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
            assert!(!bytes.windows(32).any(|w| w == user.address()));
        }
        names.sort();
        assert_eq!(names, ["lock", "state"]);
    }
}

#[test]
fn both_sides_starting_at_once_still_converge() {
    let (alice, bob) = (User::new(), User::new());
    let from_alice = send(&alice, &bob, "hi from alice", Some(bob.bundle()));
    let from_bob = send(&bob, &alice, "hi from bob", Some(alice.bundle()));
    receive(&bob, &alice, &from_alice, "hi from alice");
    receive(&alice, &bob, &from_bob, "hi from bob");
    for i in 0..4 {
        let m = send(&alice, &bob, &format!("a{i}"), None);
        receive(&bob, &alice, &m, &format!("a{i}"));
        let m = send(&bob, &alice, &format!("b{i}"), None);
        receive(&alice, &bob, &m, &format!("b{i}"));
    }
}

#[test]
fn two_handles_on_one_directory_share_the_state() {
    // Like `zmesh inbox --follow` and `zmesh send` running at once.
    let (alice, bob) = pair();
    let mut inbox = bob.open();
    let mut sender = bob.open();
    for i in 0..3 {
        let m = send(&alice, &bob, &format!("q{i}"), None);
        assert_eq!(inbox.decrypt(&m.sealed).unwrap().text, format!("q{i}"));
        let r = sender.encrypt(&alice.address(), None, &format!("r{i}"), NOW).unwrap();
        receive(&alice, &bob, &r, &format!("r{i}"));
    }
}

#[test]
fn a_new_device_bundle_starts_a_new_session() {
    let (alice, bob) = pair();
    // Bob loses his state and starts over on the same identity.
    fs::remove_dir_all(bob.state_dir()).unwrap();
    let stale = send(&alice, &bob, "lost", None);
    assert!(bob.open().decrypt(&stale.sealed).is_err());
    let fresh = send(&alice, &bob, "again", Some(bob.bundle()));
    receive(&bob, &alice, &fresh, "again");
    let reply = send(&bob, &alice, "back", None);
    receive(&alice, &bob, &reply, "back");
}

#[test]
fn limits_and_self_messages_are_refused() {
    let (alice, bob) = pair();
    let mut m = alice.open();
    let long = "x".repeat(MAX_TEXT_LEN + 1);
    let e = m.encrypt(&bob.address(), None, &long, NOW).unwrap_err();
    assert!(matches!(e, ClientError::TextTooLong { .. }), "{e}");
    let longest = "y".repeat(MAX_TEXT_LEN);
    let out = m.encrypt(&bob.address(), None, &longest, NOW).unwrap();
    assert_eq!(bob.open().decrypt(&out.sealed).unwrap().text, longest);
    let e = m.encrypt(&alice.address(), Some(alice.bundle()), "me", NOW).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage);
}
