//! The durable mailbox on a real file: appending a 1 KiB sealed message (one fsync'd commit
//! each) and reading a batch of 100, next to the baseline every durable append pays, a plain
//! write of 1 KiB plus `fsync` of a small file through std, measured in the same run.

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zmesh_store::{Cursor, MailboxEntry, MailboxLimits, MailboxStore};
use zmesh_types::Key256;

const BODY: usize = 1024;
const MAILBOX: Key256 = Key256([0x42; 32]);
const T0: u64 = 1_700_000_000_000;
const EXPIRES: u64 = T0 + 30 * 24 * 3600 * 1000;

/// Limits that never refuse, so the store can grow for as long as the bench runs.
const UNLIMITED: MailboxLimits = MailboxLimits {
    max_messages_per_mailbox: u64::MAX,
    max_bytes_per_mailbox: u64::MAX,
    max_total_bytes: u64::MAX,
    max_body_len: BODY as u64,
};

/// Entry `n`: a distinct id, orders in runs of 16 so ties occur as in real traffic.
fn entry(n: u64) -> MailboxEntry {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    MailboxEntry { id, order: T0 + n / 16, expires_at_ms: EXPIRES, body: vec![n as u8; BODY] }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("mailbox");
    g.sample_size(30);

    g.throughput(Throughput::Elements(1));
    let mut file = File::create(dir.path().join("baseline")).expect("baseline file");
    let block = [7u8; BODY];
    g.bench_function("std_write_1k_fsync", |b| {
        b.iter(|| {
            file.seek(SeekFrom::Start(0)).expect("seek");
            file.write_all(black_box(&block)).expect("write");
            file.sync_data().expect("fsync");
        })
    });

    let store = MailboxStore::open(&dir.path().join("append.redb"), UNLIMITED).expect("open");
    let mut n = 0u64;
    g.bench_function("append_1k_fsync", |b| {
        b.iter(|| {
            n += 1;
            let appended = store.append(&MAILBOX, &entry(n), T0).expect("append");
            black_box(appended)
        })
    });

    let store = MailboxStore::open(&dir.path().join("read.redb"), UNLIMITED).expect("open");
    for n in 0..1000 {
        store.append(&MAILBOX, &entry(n), T0).expect("append");
    }
    let after: Option<Cursor> = Some(entry(450).cursor());
    g.throughput(Throughput::Elements(100));
    g.bench_function("read_100x1k", |b| {
        b.iter(|| {
            let batch = store.read(&MAILBOX, black_box(after), 100, u64::MAX, T0).expect("read");
            assert_eq!(batch.entries.len(), 100);
            batch
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
