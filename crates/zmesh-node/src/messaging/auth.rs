//! A user's signed authorisation ([`UserAuth`]) of one operation on one target, checked the way
//! `zmesh_core::storage_auth` checks owners' storage requests: the purpose and target asked
//! for, a timestamp within [`CLOCK_SKEW_MS`] of this node's clock, a valid (not weak) owner
//! key, a strict Ed25519 signature, and a nonce not seen within the window.
//!
//! Nonces are remembered per owner key: a relay that sees a user's authorisation could
//! otherwise sign one of its own with the same nonce, get it checked first, and so have the
//! user's refused.

use std::collections::{BTreeSet, HashMap};

use zmesh_crypto::sign::{PublicIdentity, SigningIdentity};
use zmesh_wire::msg::{AuthPurpose, MsgStatus, UserAuth};

use super::CLOCK_SKEW_MS;

/// Nonces a checker remembers at most: one per authorisation accepted within the window.
pub const USER_REPLAY_CAPACITY: usize = 200_000;

/// Why an authorisation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("authorisation is for {got:?}, not {expected:?}")]
    WrongPurpose { expected: AuthPurpose, got: AuthPurpose },
    #[error("authorisation is for another target")]
    WrongTarget,
    #[error(
        "authorisation timestamp is {skew_ms} ms from this node's clock (window {CLOCK_SKEW_MS} ms)"
    )]
    Stale { skew_ms: u64 },
    #[error("authorisation nonce was already used")]
    Replayed,
    #[error("too many recent authorisations to remember another; try again shortly")]
    GuardFull,
    #[error("invalid or weak owner public key")]
    BadKey,
    #[error("bad owner signature")]
    BadSignature,
}

impl AuthFailure {
    /// Timing and reuse are `Replay`; everything that says "not this user's to ask" is
    /// `Unauthorized`.
    pub fn status(&self) -> MsgStatus {
        match self {
            AuthFailure::Stale { .. } | AuthFailure::Replayed | AuthFailure::GuardFull => {
                MsgStatus::Replay
            }
            AuthFailure::WrongPurpose { .. }
            | AuthFailure::WrongTarget
            | AuthFailure::BadKey
            | AuthFailure::BadSignature => MsgStatus::Unauthorized,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.status() {
            MsgStatus::Replay => "replay",
            _ => "unauthorized",
        }
    }
}

/// `(owner key, nonce)`.
type NonceKey = ([u8; 32], [u8; 16]);

/// Remembers the nonces of accepted authorisations until they could no longer pass the
/// timestamp check. Bounded: past `capacity` live nonces it refuses new authorisations rather
/// than grow; forgotten nonces are dropped in expiry order, so pruning costs only as much as
/// there is to drop.
#[derive(Debug)]
pub struct UserReplayGuard {
    seen: HashMap<NonceKey, u64>,
    by_expiry: BTreeSet<(u64, NonceKey)>,
    capacity: usize,
}

impl Default for UserReplayGuard {
    fn default() -> Self {
        UserReplayGuard::new(USER_REPLAY_CAPACITY)
    }
}

impl UserReplayGuard {
    pub fn new(capacity: usize) -> Self {
        UserReplayGuard { seen: HashMap::new(), by_expiry: BTreeSet::new(), capacity }
    }

    /// Drops the nonces whose authorisations can no longer pass the window at `now_ms`.
    fn prune(&mut self, now_ms: u64) {
        while let Some(&(forget_at, key)) = self.by_expiry.first() {
            if forget_at > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&key);
        }
    }

    /// Records the nonce of `auth`, which must already have passed the timestamp check.
    fn admit(&mut self, auth: &UserAuth, now_ms: u64) -> Result<(), AuthFailure> {
        self.prune(now_ms);
        let key = (auth.owner_key, auth.nonce);
        if self.seen.contains_key(&key) {
            return Err(AuthFailure::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthFailure::GuardFull);
        }
        // The authorisation passes the window while now ≤ timestamp + window; after that the
        // timestamp check alone refuses it, and the nonce may go.
        let forget_at = auth.timestamp_ms.saturating_add(CLOCK_SKEW_MS).saturating_add(1);
        self.seen.insert(key, forget_at);
        self.by_expiry.insert((forget_at, key));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Checks `auth` for `purpose` on `target` at `now_ms` and returns the owner's address
/// (SHA-256 of the owner key). Cheap checks first, the signature last; the nonce is recorded
/// only for an authorisation that passed everything else, so a refused one uses up nothing.
pub fn verify_user_auth(
    auth: &UserAuth,
    purpose: AuthPurpose,
    target: &[u8; 32],
    now_ms: u64,
    guard: &mut UserReplayGuard,
) -> Result<[u8; 32], AuthFailure> {
    if auth.purpose != purpose {
        return Err(AuthFailure::WrongPurpose { expected: purpose, got: auth.purpose });
    }
    if &auth.target != target {
        return Err(AuthFailure::WrongTarget);
    }
    let skew_ms = now_ms.abs_diff(auth.timestamp_ms);
    if skew_ms > CLOCK_SKEW_MS {
        return Err(AuthFailure::Stale { skew_ms });
    }
    let owner = PublicIdentity::from_bytes(&auth.owner_key).map_err(|_| AuthFailure::BadKey)?;
    owner.verify(&auth.signed_bytes(), &auth.signature).map_err(|_| AuthFailure::BadSignature)?;
    guard.admit(auth, now_ms)?;
    Ok(owner.address())
}

/// Builds and signs an authorisation (the user's side). `nonce` must be random and fresh.
pub fn sign_user_auth(
    identity: &SigningIdentity,
    purpose: AuthPurpose,
    target: &[u8; 32],
    now_ms: u64,
    nonce: [u8; 16],
) -> UserAuth {
    let mut auth = UserAuth {
        owner_key: *identity.public().as_bytes(),
        purpose,
        target: *target,
        timestamp_ms: now_ms,
        nonce,
        signature: [0; 64],
    };
    auth.signature = identity.sign(&auth.signed_bytes());
    auth
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const TARGET: [u8; 32] = [0x5A; 32];

    fn auth(id: &SigningIdentity, nonce: u8, at: u64) -> UserAuth {
        sign_user_auth(id, AuthPurpose::MailboxRead, &TARGET, at, [nonce; 16])
    }

    fn check(a: &UserAuth, now: u64, guard: &mut UserReplayGuard) -> Result<[u8; 32], AuthFailure> {
        verify_user_auth(a, AuthPurpose::MailboxRead, &TARGET, now, guard)
    }

    #[test]
    fn a_signed_auth_verifies_and_names_its_owner() {
        let alice = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();
        let address = check(&auth(&alice, 1, NOW), NOW + 10, &mut guard).unwrap();
        assert_eq!(address, alice.public().address());
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn wrong_purpose_or_target_is_unauthorized() {
        let alice = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();
        let a = auth(&alice, 1, NOW);
        let e =
            verify_user_auth(&a, AuthPurpose::MailboxAck, &TARGET, NOW, &mut guard).unwrap_err();
        assert!(matches!(e, AuthFailure::WrongPurpose { .. }));
        assert_eq!(e.status(), MsgStatus::Unauthorized);
        let e =
            verify_user_auth(&a, AuthPurpose::MailboxRead, &[0; 32], NOW, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::WrongTarget);
        assert_eq!(e.status(), MsgStatus::Unauthorized);
        // The refusals used up nothing: the same auth still passes once.
        assert!(guard.is_empty());
        check(&a, NOW, &mut guard).unwrap();
    }

    #[test]
    fn forged_and_altered_auths_are_refused() {
        let alice = SigningIdentity::generate();
        let mallory = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();

        // Mallory signs with her key but presents Alice's.
        let mut impostor = auth(&alice, 1, NOW);
        impostor.signature = mallory.sign(&impostor.signed_bytes());
        assert_eq!(check(&impostor, NOW, &mut guard), Err(AuthFailure::BadSignature));

        // A relay moves Alice's auth to another moment (a fresh nonce) without re-signing.
        let mut altered = auth(&alice, 2, NOW);
        altered.nonce = [3; 16];
        assert_eq!(check(&altered, NOW, &mut guard), Err(AuthFailure::BadSignature));

        let mut flipped = auth(&alice, 4, NOW);
        flipped.signature[10] ^= 1;
        let e = check(&flipped, NOW, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::BadSignature);
        assert_eq!(e.status(), MsgStatus::Unauthorized);
        assert!(guard.is_empty());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The neutral element (small order): any signature "verifies" under a lax check.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        let weak = UserAuth {
            owner_key: identity_point,
            purpose: AuthPurpose::MailboxRead,
            target: TARGET,
            timestamp_ms: NOW,
            nonce: [1; 16],
            signature: [0; 64],
        };
        let mut guard = UserReplayGuard::default();
        let e = check(&weak, NOW, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::BadKey);
        assert_eq!(e.status(), MsgStatus::Unauthorized);
        // The point of order 2 (y = -1).
        let mut order_two = [0xFF; 32];
        order_two[0] = 0xEC;
        order_two[31] = 0x7F;
        let weak = UserAuth { owner_key: order_two, ..weak };
        assert_eq!(check(&weak, NOW, &mut guard), Err(AuthFailure::BadKey));
        assert!(guard.is_empty());
    }

    #[test]
    fn a_replayed_auth_is_refused_until_it_is_stale_anyway() {
        let alice = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();
        let a = auth(&alice, 7, NOW);
        check(&a, NOW, &mut guard).unwrap();
        let e = check(&a, NOW + 1, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::Replayed);
        assert_eq!(e.status(), MsgStatus::Replay);
        // Still refused at the far edge of the window, as a replay...
        assert_eq!(check(&a, NOW + CLOCK_SKEW_MS, &mut guard), Err(AuthFailure::Replayed));
        // ...and past it as stale.
        assert!(matches!(
            check(&a, NOW + CLOCK_SKEW_MS + 1, &mut guard),
            Err(AuthFailure::Stale { .. })
        ));
        // By then the nonce is forgotten: the next admission drops it.
        let later = NOW + CLOCK_SKEW_MS + 1;
        check(&auth(&alice, 8, later), later, &mut guard).unwrap();
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn the_same_nonce_from_another_user_does_not_burn_it() {
        let alice = SigningIdentity::generate();
        let mallory = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();
        check(&auth(&mallory, 9, NOW), NOW, &mut guard).unwrap();
        check(&auth(&alice, 9, NOW), NOW, &mut guard).unwrap();
    }

    #[test]
    fn stale_auths_are_refused_both_ways() {
        let alice = SigningIdentity::generate();
        let mut guard = UserReplayGuard::default();
        let old = auth(&alice, 1, NOW - CLOCK_SKEW_MS - 1);
        let e = check(&old, NOW, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::Stale { skew_ms: CLOCK_SKEW_MS + 1 });
        assert_eq!(e.status(), MsgStatus::Replay);
        let future = auth(&alice, 2, NOW + CLOCK_SKEW_MS + 1);
        assert!(matches!(check(&future, NOW, &mut guard), Err(AuthFailure::Stale { .. })));
        // The edges of the window pass.
        check(&auth(&alice, 3, NOW - CLOCK_SKEW_MS), NOW, &mut guard).unwrap();
        check(&auth(&alice, 4, NOW + CLOCK_SKEW_MS), NOW, &mut guard).unwrap();
        // Timestamps near the ends of u64 neither overflow nor pass.
        let extreme = auth(&alice, 5, u64::MAX);
        assert!(matches!(check(&extreme, 0, &mut guard), Err(AuthFailure::Stale { .. })));
    }

    #[test]
    fn a_full_guard_refuses_rather_than_grows() {
        let alice = SigningIdentity::generate();
        let mut guard = UserReplayGuard::new(2);
        check(&auth(&alice, 1, NOW), NOW, &mut guard).unwrap();
        check(&auth(&alice, 2, NOW), NOW, &mut guard).unwrap();
        let e = check(&auth(&alice, 3, NOW), NOW, &mut guard).unwrap_err();
        assert_eq!(e, AuthFailure::GuardFull);
        assert_eq!(e.status(), MsgStatus::Replay);
        assert_eq!(guard.len(), 2);
        // Once the first two can no longer pass the window, their room is free again.
        let later = NOW + CLOCK_SKEW_MS + 1;
        check(&auth(&alice, 3, later), later, &mut guard).unwrap();
        assert_eq!(guard.len(), 1);
    }
}
