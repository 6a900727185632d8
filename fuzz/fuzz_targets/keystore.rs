//! Fuzzes `keystore::open_with_passphrase` on arbitrary bytes: it must return an error, never
//! panic, and never allocate beyond the parameter bounds (libFuzzer's RSS limit catches that).
//!
//! Inputs whose stored Argon2 parameters are within bounds but expensive are skipped, so the
//! fuzzer spends its time on parsing and rejection rather than on legitimate Argon2 work; the
//! bounds themselves are unit-tested in the crate.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zmesh_crypto::keystore;

/// Largest m_cost × t_cost (KiB × passes) run per input: 256 KiB of Argon2 memory traffic, so
/// fuzz time goes to parsing and rejection (the parameter bounds themselves are unit-tested).
const FUZZ_WORK_KIB: u64 = 256;

fn param(data: &[u8], at: usize) -> u64 {
    data.get(at..at + 4).map_or(0, |b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
}

fuzz_target!(|data: &[u8]| {
    let (m, t) = (param(data, 5), param(data, 9));
    let in_bounds =
        m <= u64::from(keystore::MAX_M_COST_KIB) && t <= u64::from(keystore::MAX_T_COST);
    if in_bounds && m * t > FUZZ_WORK_KIB {
        return;
    }
    // Random bytes essentially never carry a valid tag, so anything that opens is a bug.
    if let Ok(secret) = keystore::open_with_passphrase(b"fuzz", data) {
        panic!("forged keystore opened to {} bytes", secret.len());
    }
});
