//! One 1 KiB message through the whole sending and receiving path of an established session:
//! Olm encrypt + sealed-sender seal, and open (with the sender certificate check) + Olm decrypt,
//! beside a plain copy of the same 1 KiB as the floor.

// A benchmark that cannot run its own exchange should stop loudly.
#![allow(clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zmesh_crypto::olm::{E2eAccount, E2eSession};
use zmesh_crypto::sealed::{self, SealedContent};
use zmesh_crypto::sign::SigningIdentity;

const LEN: usize = 1024;

struct Side {
    cert: zmesh_crypto::prekeys::SenderCertificate,
    account: E2eAccount,
    session: E2eSession,
}

/// Alice and Bob with a session in which both have sent, so messages are normal ones.
fn pair() -> (Side, Side) {
    let (alice_id, bob_id) = (
        SigningIdentity::from_secret_bytes(&[1; 32]),
        SigningIdentity::from_secret_bytes(&[2; 32]),
    );
    let alice = E2eAccount::new();
    let mut bob = E2eAccount::new();
    bob.generate_one_time_keys(1);
    let mut bundle = bob.prekey_bundle(&bob_id, 0).unwrap();
    let mut a = E2eSession::outbound(&alice, &mut bundle, &bob_id.public().address()).unwrap();
    let alice_cert = alice.sender_certificate(&alice_id);
    let (mut b, _) =
        E2eSession::inbound(&mut bob, &alice_cert, &a.encrypt(b"hello").unwrap()).unwrap();
    a.decrypt(&b.encrypt(b"hi").unwrap()).unwrap();
    let bob_cert = bob.sender_certificate(&bob_id);
    (
        Side { cert: alice_cert, account: alice, session: a },
        Side { cert: bob_cert, account: bob, session: b },
    )
}

fn send(from: &mut Side, to_sealing_key: &[u8; 32], text: &[u8]) -> Vec<u8> {
    let content = SealedContent {
        sender: from.cert,
        message_id: [9; 16],
        sent_at_ms: 1_700_000_000_000,
        ciphertext: from.session.encrypt(text).unwrap(),
    };
    sealed::seal(&content, to_sealing_key).unwrap()
}

fn bench(c: &mut Criterion) {
    let text = vec![0x5a_u8; LEN];
    let (mut alice, bob) = pair();
    let bob_key = bob.account.sealing_key();
    let mut group = c.benchmark_group("messaging_1KiB");
    group.throughput(Throughput::Bytes(LEN as u64));

    let mut buf = vec![0_u8; LEN];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&text));
            black_box(&buf);
        })
    });
    group.bench_function("encrypt+seal", |b| {
        b.iter(|| send(&mut alice, black_box(&bob_key), black_box(&text)))
    });
    // Each Olm message decrypts once, so fresh ones are made outside the timed part, in order,
    // by a new pair (the first one's sending chain is far past the receiver's skip limit).
    let (mut alice, mut bob) = pair();
    let bob_key = bob.account.sealing_key();
    group.bench_function("open+decrypt", |b| {
        b.iter_batched(
            || send(&mut alice, &bob_key, &text),
            |sealed| {
                let content = sealed::open(black_box(&sealed), &bob.account).unwrap();
                bob.session.decrypt(&content.ciphertext).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
