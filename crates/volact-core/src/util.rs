//! Small time helpers shared by the crates of volact.

use jiff::{SignedDuration, Timestamp};

/// `t + d`, saturating at the ends of jiff's range instead of failing: a far-future
/// deadline is as good as the largest one.
pub fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Unix seconds `t` as a `u32`, for tables of millions of entries kept in memory (the
/// count, the cloned-image tracker): exact from 1970 to 2106, clamped outside, which only
/// a wildly wrong clock meets.
pub fn unix_u32(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// A duration of whole days.
pub(crate) fn days(n: u32) -> SignedDuration {
    SignedDuration::from_hours(i64::from(n) * 24)
}

/// Human form of a duration for messages, e.g. `4h 30m`.
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().unsigned_abs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if seconds > 0 || parts.is_empty() {
        parts.push(format!("{seconds}s"));
    }
    let sign = if d.is_negative() { "-" } else { "" };
    format!("{sign}{}", parts.join(" "))
}

/// The fingerprint a client sends for its machine: SHA-256 of a fixed label and the
/// machine's id (e.g. `/etc/machine-id`), as 32 hex digits. Hashed so the raw id, which
/// other software may use as a secret, never leaves the machine.
pub fn machine_fingerprint(machine_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"volact machine fingerprint v1\0")
        .chain_update(machine_id.trim().as_bytes())
        .finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod fingerprint_tests {
    #[test]
    fn fingerprints_are_stable_hex_and_differ_per_machine() {
        let a = super::machine_fingerprint("0123456789abcdef0123456789abcdef\n");
        assert_eq!(
            a,
            super::machine_fingerprint("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            a,
            super::machine_fingerprint("fedcba9876543210fedcba9876543210")
        );
    }
}
