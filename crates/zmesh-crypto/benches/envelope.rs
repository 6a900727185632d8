//! `envelope::seal` / `envelope::open` of 1 MiB through the public API (HKDF, allocation and
//! AES-256-GCM), beside a plain copy of the same 1 MiB as the floor.

// A benchmark that cannot seal or open its own input should stop loudly.
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zmesh_crypto::envelope;

const LEN: usize = 1 << 20;
const SECRET: [u8; 32] = [7; 32];

fn bench(c: &mut Criterion) {
    let plaintext = vec![0x5a_u8; LEN];
    let blob = envelope::seal(&SECRET, b"bench", b"aad", &plaintext);
    let mut group = c.benchmark_group("envelope_1MiB");
    group.throughput(Throughput::Bytes(LEN as u64));

    let mut buf = vec![0_u8; LEN];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&plaintext));
            black_box(&buf);
        })
    });
    group.bench_function("seal", |b| {
        b.iter(|| envelope::seal(&SECRET, b"bench", b"aad", black_box(&plaintext)))
    });
    group.bench_function("open", |b| {
        b.iter(|| envelope::open(&SECRET, b"bench", b"aad", black_box(&blob)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
