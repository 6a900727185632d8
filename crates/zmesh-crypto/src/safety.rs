//! Safety numbers: a short string two users read to each other (or scan) to be sure that no
//! one sits between them.
//!
//! Both sides compute the same number from the two zmesh identity keys (the Ed25519 keys whose
//! SHA-256 is each user's address). Every session key is signed by, or bound to, those
//! identities (see [`crate::prekeys`]), so equal numbers mean each holds the other's real
//! identity key and no relay or directory swapped one in.
//!
//! Computation, as in the Zentalk specification:
//!
//! ```text
//! digest = SHA-512(VERSION as u16 big-endian ‖ min(ik_a, ik_b) ‖ max(ik_a, ik_b))
//! group i (i = 0..12) = (digest[5i..5i+5] read as a 40-bit big-endian integer) mod 100000
//! ```
//!
//! shown as twelve groups of five decimal digits (leading zeros kept), separated by spaces: 60
//! digits, about 199 bits. Keys are compared as byte strings for the sort, which makes the
//! number symmetric. 2^40 is about 1.1 × 10^7 times 10^5, so the modulo bias per group is
//! below 10^-7. Unlike Signal there is no iterated hashing: an attacker who wants a colliding
//! number must still find an identity key whose 60-digit number matches, a ~2^199 search.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::sign::PublicIdentity;

/// Version prefix of the hashed input; changing the computation means a new version.
pub const VERSION: u16 = 1;
/// Number of five-digit groups.
pub const GROUPS: usize = 12;

/// Twelve five-digit groups; [`Display`](fmt::Display) prints them space-separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyNumber([u32; GROUPS]);

impl SafetyNumber {
    /// The groups, each below 100000.
    pub fn groups(&self) -> &[u32; GROUPS] {
        &self.0
    }

    /// `true` if `text` shows this number, ignoring whitespace (as typed or read back).
    pub fn matches(&self, text: &str) -> bool {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        digits == self.to_string().replace(' ', "")
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{group:05}")?;
        }
        Ok(())
    }
}

/// The safety number of the conversation between the owners of `a` and `b` (either order).
pub fn safety_number(a: &PublicIdentity, b: &PublicIdentity) -> SafetyNumber {
    let (low, high) = if a.as_bytes() <= b.as_bytes() { (a, b) } else { (b, a) };
    let mut hash = Sha512::new();
    hash.update(VERSION.to_be_bytes());
    hash.update(low.as_bytes());
    hash.update(high.as_bytes());
    let digest = hash.finalize();
    let mut groups = [0_u32; GROUPS];
    for (group, chunk) in groups.iter_mut().zip(digest.chunks_exact(5)) {
        let value = chunk.iter().fold(0_u64, |acc, &byte| (acc << 8) | u64::from(byte));
        // value < 2^40, so value % 100000 < 100000 fits a u32.
        *group = (value % 100_000) as u32;
    }
    SafetyNumber(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningIdentity;
    use proptest::prelude::*;

    fn id(seed: u8) -> PublicIdentity {
        SigningIdentity::from_secret_bytes(&[seed; 32]).public()
    }

    #[test]
    fn symmetric() {
        assert_eq!(safety_number(&id(1), &id(2)), safety_number(&id(2), &id(1)));
    }

    #[test]
    fn format_is_twelve_groups_of_five_digits() {
        let text = safety_number(&id(1), &id(2)).to_string();
        let groups: Vec<&str> = text.split(' ').collect();
        assert_eq!(groups.len(), GROUPS);
        assert!(groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(text.len(), GROUPS * 6 - 1);
    }

    #[test]
    fn matches_the_spec_computation() {
        // Recomputed independently from the definition in the module documentation.
        let (a, b) = (id(7), id(8));
        let mut input = vec![0_u8, 1];
        let (lo, hi) = if a.as_bytes() < b.as_bytes() { (a, b) } else { (b, a) };
        input.extend_from_slice(lo.as_bytes());
        input.extend_from_slice(hi.as_bytes());
        let digest = Sha512::digest(&input);
        let expected: Vec<String> = (0..GROUPS)
            .map(|i| {
                let mut v = [0_u8; 8];
                v[3..].copy_from_slice(&digest[5 * i..5 * i + 5]);
                format!("{:05}", u64::from_be_bytes(v) % 100_000)
            })
            .collect();
        assert_eq!(safety_number(&a, &b).to_string(), expected.join(" "));
    }

    #[test]
    fn leading_zeros_are_kept() {
        let n = SafetyNumber([0, 7, 42, 99_999, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            n.to_string(),
            "00000 00007 00042 99999 00001 00002 00003 00004 00005 00006 00007 00008"
        );
    }

    #[test]
    fn matches_ignores_whitespace_only() {
        let n = safety_number(&id(1), &id(2));
        let text = n.to_string();
        assert!(n.matches(&text));
        assert!(n.matches(&text.replace(' ', "")));
        assert!(n.matches(&format!("  {}\n", text.replace(' ', "\t"))));
        let mut wrong = text.clone().into_bytes();
        wrong[0] = if wrong[0] == b'9' { b'8' } else { wrong[0] + 1 };
        assert!(!n.matches(&String::from_utf8(wrong).unwrap()));
        assert!(!n.matches(&text[..text.len() - 1]));
    }

    #[test]
    fn same_key_twice_is_defined() {
        let n = safety_number(&id(3), &id(3));
        assert_eq!(n.to_string().len(), GROUPS * 6 - 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn symmetric_and_sensitive_to_each_key(a: [u8; 32], b: [u8; 32], c: [u8; 32]) {
            let (a, b, c) = (
                SigningIdentity::from_secret_bytes(&a).public(),
                SigningIdentity::from_secret_bytes(&b).public(),
                SigningIdentity::from_secret_bytes(&c).public(),
            );
            let ab = safety_number(&a, &b);
            prop_assert_eq!(ab, safety_number(&b, &a));
            prop_assert!(ab.groups().iter().all(|&g| g < 100_000));
            if c != a && c != b {
                prop_assert_ne!(ab, safety_number(&a, &c));
                prop_assert_ne!(ab, safety_number(&c, &b));
            }
        }
    }
}
