//! Throughput of the storage erasure code on a 1 MiB chunk, next to a plain copy of the same
//! bytes measured in the same run as a baseline.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use zmesh_core::erasure;
use zmesh_types::Key256;
use zmesh_types::constants::{DATA_SHARDS, PARITY_SHARDS};
use zmesh_wire::shard::{Shard, shard_len};

const LEN: usize = 1024 * 1024;
const KEY: Key256 = Key256([0x42; 32]);

/// Pseudo-random bytes (xorshift): incompressible enough, and no extra dependency.
fn random_chunk(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bench(c: &mut Criterion) {
    let chunk = random_chunk(LEN);
    let shards = erasure::encode(KEY, &chunk).expect("encode");
    let data_only: Vec<Shard> = shards[..DATA_SHARDS].to_vec();
    // Five data shards lost: decode from data 5..10 and all five parity shards.
    let half_lost: Vec<Shard> = shards[PARITY_SHARDS..].to_vec();
    let originals: Vec<Vec<u8>> = chunk
        .chunks(shard_len(LEN))
        .map(|s| {
            let mut s = s.to_vec();
            s.resize(shard_len(LEN), 0);
            s
        })
        .collect();
    assert_eq!(originals.len(), DATA_SHARDS);

    let mut g = c.benchmark_group("erasure");
    g.throughput(Throughput::Bytes(LEN as u64));
    let mut dst = vec![0u8; LEN];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&chunk));
            black_box(&dst);
        })
    });
    g.bench_function("encode", |b| b.iter(|| erasure::encode(KEY, black_box(&chunk))));
    g.bench_function("encode_rs_only", |b| {
        b.iter(|| reed_solomon_simd::encode(DATA_SHARDS, PARITY_SHARDS, black_box(&originals)))
    });
    // What the checksums cost: SHA-256 of the same 1 MiB (encode hashes 1.5 MiB, decode 1 MiB).
    g.bench_function("sha256", |b| b.iter(|| Key256::hash(black_box(&chunk))));
    g.bench_function("reconstruct_5_rs_only", |b| {
        b.iter(|| {
            reed_solomon_simd::decode(
                DATA_SHARDS,
                PARITY_SHARDS,
                half_lost[..PARITY_SHARDS].iter().map(|s| (usize::from(s.header.index), &s.data)),
                half_lost[PARITY_SHARDS..]
                    .iter()
                    .map(|s| (usize::from(s.header.index) - DATA_SHARDS, &s.data)),
            )
            .expect("decode")
        })
    });
    g.bench_function("reconstruct_5", |b| {
        b.iter_batched(
            || half_lost.clone(),
            |s| erasure::decode(KEY, s).expect("decode"),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode_fast_path", |b| {
        b.iter_batched(
            || data_only.clone(),
            |s| erasure::decode(KEY, s).expect("decode"),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
