//! Which AES-256-GCM implementation should `envelope` use? Seals and opens 1 MiB with each
//! candidate, beside a plain copy of the same 1 MiB as the floor.
//!
//! Every iteration copies the input into a work buffer and then seals or opens it in place, so
//! each AEAD number includes exactly one memcpy, which the `memcpy` row measures alone.

// A benchmark that cannot seal or open its own input should stop loudly.
#![allow(clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const LEN: usize = 1 << 20;
const KEY: [u8; 32] = [7; 32];
const NONCE: [u8; 12] = [9; 12];
const AAD: &[u8] = b"bench aad";

fn ring_key() -> ring::aead::LessSafeKey {
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).unwrap();
    ring::aead::LessSafeKey::new(unbound)
}

fn aws_key() -> aws_lc_rs::aead::LessSafeKey {
    let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &KEY).unwrap();
    aws_lc_rs::aead::LessSafeKey::new(unbound)
}

fn rc_key() -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    aes_gcm::Aes256Gcm::new_from_slice(&KEY).unwrap()
}

fn aead(c: &mut Criterion) {
    let plaintext = vec![0x5a_u8; LEN];
    let mut group = c.benchmark_group("aes256gcm_1MiB");
    group.throughput(Throughput::Bytes(LEN as u64));

    let mut buf = vec![0_u8; LEN];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&plaintext));
            black_box(&buf);
        })
    });

    // ring
    let key = ring_key();
    group.bench_function(BenchmarkId::new("seal", "ring"), |b| {
        b.iter(|| {
            buf.copy_from_slice(&plaintext);
            let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
            let tag = key
                .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(AAD), &mut buf)
                .unwrap();
            black_box(&tag);
        })
    });
    let mut sealed = plaintext.clone();
    let tag = key
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(NONCE),
            ring::aead::Aad::from(AAD),
            &mut sealed,
        )
        .unwrap();
    sealed.extend_from_slice(tag.as_ref());
    let mut obuf = vec![0_u8; sealed.len()];
    group.bench_function(BenchmarkId::new("open", "ring"), |b| {
        b.iter(|| {
            obuf.copy_from_slice(&sealed);
            let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
            let pt = key.open_in_place(nonce, ring::aead::Aad::from(AAD), &mut obuf).unwrap();
            black_box(pt.len());
        })
    });

    // aws-lc-rs
    let key = aws_key();
    group.bench_function(BenchmarkId::new("seal", "aws-lc-rs"), |b| {
        b.iter(|| {
            buf.copy_from_slice(&plaintext);
            let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
            let tag = key
                .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(AAD), &mut buf)
                .unwrap();
            black_box(&tag);
        })
    });
    group.bench_function(BenchmarkId::new("open", "aws-lc-rs"), |b| {
        b.iter(|| {
            obuf.copy_from_slice(&sealed);
            let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
            let pt = key.open_in_place(nonce, aws_lc_rs::aead::Aad::from(AAD), &mut obuf).unwrap();
            black_box(pt.len());
        })
    });

    // RustCrypto aes-gcm
    {
        use aes_gcm::aead::AeadInOut;
        let cipher = rc_key();
        let nonce = aes_gcm::Nonce::from(NONCE);
        group.bench_function(BenchmarkId::new("seal", "aes-gcm"), |b| {
            b.iter(|| {
                buf.copy_from_slice(&plaintext);
                let tag =
                    cipher.encrypt_inout_detached(&nonce, AAD, buf.as_mut_slice().into()).unwrap();
                black_box(&tag);
            })
        });
        let (ct, tag) = sealed.split_at(LEN);
        let tag = aes_gcm::Tag::try_from(tag).unwrap();
        group.bench_function(BenchmarkId::new("open", "aes-gcm"), |b| {
            b.iter(|| {
                buf.copy_from_slice(ct);
                cipher
                    .decrypt_inout_detached(&nonce, AAD, buf.as_mut_slice().into(), &tag)
                    .unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, aead);
criterion_main!(benches);
