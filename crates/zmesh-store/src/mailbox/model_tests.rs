//! Random sequences of appends, acks, removals, GC and clock ticks against a plain model: the
//! store must answer alike, read in cursor order, and keep its counters equal to a recount.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{assert_consistent, entry};
use super::*;

const T0: u64 = 1_000_000;
const O: u64 = MAILBOX_ENTRY_OVERHEAD;

const LIMITS: MailboxLimits = MailboxLimits {
    max_messages_per_mailbox: 4,
    max_bytes_per_mailbox: 3 * O + 60,
    max_total_bytes: 7 * O + 100,
    max_body_len: 40,
};

#[derive(Debug, Clone)]
enum Op {
    Append { m: u8, order: u64, id: u8, ttl: u64, len: usize },
    Ack { m: u8, order: u64, id: u8 },
    RemoveId { m: u8, id: u8 },
    Gc,
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3u8, 0..4u64, 0..6u8, 1..40u64, 0..50usize)
            .prop_map(|(m, order, id, ttl, len)| Op::Append { m, order, id, ttl, len }),
        1 => (0..3u8, 0..4u64, 0..6u8).prop_map(|(m, order, id)| Op::Ack { m, order, id }),
        1 => (0..3u8, 0..6u8).prop_map(|(m, id)| Op::RemoveId { m, id }),
        1 => Just(Op::Gc),
        1 => (0..20u64).prop_map(Op::Tick),
    ]
}

fn mb(m: u8) -> Key256 {
    Key256([m; 32])
}

fn cursor(order: u64, id: u8) -> Cursor {
    Cursor { order: T0 + order, id: [id; 16] }
}

/// Every entry the store holds, expired ones included: `(mailbox, cursor) -> (expiry, body len)`.
#[derive(Debug, Clone, Default)]
struct Model {
    entries: BTreeMap<(u8, Cursor), (u64, usize)>,
}

impl Model {
    fn size(len: usize) -> u64 {
        O + len as u64
    }

    fn counts(&self, m: Option<u8>, live_at: Option<u64>) -> (u64, u64) {
        let mut out = (0, 0);
        for ((mm, _), (exp, len)) in &self.entries {
            if m.is_none_or(|m| m == *mm) && live_at.is_none_or(|now| *exp > now) {
                out = (out.0 + 1, out.1 + Self::size(*len));
            }
        }
        out
    }

    fn fits(&self, m: u8, size: u64) -> bool {
        let (messages, bytes) = self.counts(Some(m), None);
        messages < LIMITS.max_messages_per_mailbox
            && bytes + size <= LIMITS.max_bytes_per_mailbox
            && self.counts(None, None).1 + size <= LIMITS.max_total_bytes
    }

    /// Removes what `doomed` selects; returns (removed, bytes).
    fn remove(&mut self, mut doomed: impl FnMut(&(u8, Cursor), &(u64, usize)) -> bool) -> Vec<u64> {
        let mut gone = Vec::new();
        self.entries.retain(|k, v| {
            let d = doomed(k, v);
            if d {
                gone.push(v.0);
            }
            !d
        });
        gone
    }

    /// The model's answer: `Ok(duplicate, cursor)` or an error kind.
    fn append(
        &mut self,
        m: u8,
        e: &MailboxEntry,
        now: u64,
    ) -> Result<(bool, Cursor), &'static str> {
        if e.body.len() as u64 > LIMITS.max_body_len {
            return Err("too_large");
        }
        if e.expires_at_ms <= now {
            return Err("expired");
        }
        let before = self.clone();
        let stored = self.entries.iter().find(|((mm, c), _)| *mm == m && c.id == e.id);
        if let Some((&key, &(exp, _))) = stored {
            if exp > now {
                return Ok((true, key.1));
            }
            self.entries.remove(&key);
        }
        let size = Self::size(e.body.len());
        if !self.fits(m, size) {
            self.remove(|_, (exp, _)| *exp <= now);
            if !self.fits(m, size) {
                *self = before;
                return Err("quota");
            }
        }
        self.entries.insert((m, e.cursor()), (e.expires_at_ms, e.body.len()));
        Ok((false, e.cursor()))
    }
}

fn check(store: &MailboxStore, model: &Model, now: u64) {
    assert_consistent(store);
    let totals = store.totals().unwrap();
    assert_eq!((totals.messages, totals.bytes), model.counts(None, None));
    for m in 0..3u8 {
        let want: Vec<MailboxEntry> = model
            .entries
            .iter()
            .filter(|((mm, _), (exp, _))| *mm == m && *exp > now)
            .map(|((_, c), (exp, len))| entry(c.id, c.order, *exp, *len))
            .collect();
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let batch = store.read(&mb(m), after, 2, u64::MAX, now).unwrap();
            got.extend(batch.entries);
            after = batch.next_cursor;
            if !batch.has_more {
                break;
            }
        }
        assert!(got.windows(2).all(|w| w[0].cursor() < w[1].cursor()));
        assert_eq!(got, want);
        let (messages, bytes) = model.counts(Some(m), Some(now));
        assert_eq!(store.usage(&mb(m), now).unwrap(), MailboxUsage { messages, bytes });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let store = MailboxStore::open_in_memory(LIMITS).unwrap();
        let mut model = Model::default();
        let mut now = T0;
        for op in ops {
            match op {
                Op::Append { m, order, id, ttl, len } => {
                    let e = entry([id; 16], T0 + order, now + ttl, len);
                    let got = store.append(&mb(m), &e, now).map(|a| (a.duplicate, a.cursor));
                    let want = model.append(m, &e, now);
                    prop_assert_eq!(got.map_err(|err| err.kind()), want);
                }
                Op::Ack { m, order, id } => {
                    let upto = cursor(order, id);
                    let gone = model.remove(|(mm, c), _| *mm == m && *c <= upto);
                    let live = gone.iter().filter(|exp| **exp > now).count() as u64;
                    prop_assert_eq!(store.ack(&mb(m), upto, now).unwrap(), live);
                }
                Op::RemoveId { m, id } => {
                    let gone = model.remove(|(mm, c), _| *mm == m && c.id == [id; 16]);
                    prop_assert_eq!(store.remove_ids(&mb(m), &[[id; 16]]).unwrap(), gone.len() as u64);
                }
                Op::Gc => {
                    let before = model.counts(None, None);
                    let gone = model.remove(|_, (exp, _)| *exp <= now);
                    let freed = before.1 - model.counts(None, None).1;
                    let report = store.gc(now).unwrap();
                    prop_assert_eq!(report, MailboxGc { removed: gone.len() as u64, bytes_freed: freed });
                }
                Op::Tick(dt) => now += dt,
            }
            check(&store, &model, now);
        }
    }
}
