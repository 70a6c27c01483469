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

/// `t` without its fraction of a second: tickets, the store and people all work in
/// whole seconds, and a ticket that says `04:06:11Z` reads better than nine more digits.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
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

/// Whether `c` must never reach a terminal or a stored message: control characters
/// (C0, DEL, C1: escape sequences start with them) and the Unicode controls that reorder
/// or hide text (bidirectional overrides and isolates, zero-width marks), which make a
/// message read otherwise than it is.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Text that came from the network (a host's message, a DNS name), made safe to print and
/// store: every control character removed, tabs and line breaks turned into one space
/// each, plain spaces kept. A hostile host cannot move the cursor, recolour, retitle or
/// rewrite a user's terminal through it.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\n' | '\r' | '\t') {
            out.push(' ');
        } else if !unprintable(c) {
            out.push(c);
        }
    }
    out
}

/// [`printable`] for text of several lines made by this program (status, a report):
/// line breaks are kept, every other control character is removed.
pub fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every string (and key) of a JSON value made [`printable`], for the figures that come
/// with a refusal from the network.
pub fn printable_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(printable(s)),
        Value::Array(items) => Value::Array(items.iter().map(printable_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (printable(k), printable_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod printable_tests {
    use super::*;

    #[test]
    fn escape_sequences_and_controls_never_survive() {
        let hostile =
            "ok\u{1b}[2J\u{1b}]0;owned\u{7}\r\nnext\tline\u{9b}31m\u{7f}\u{202e}gnp.exe\u{0}";
        let safe = printable(hostile);
        assert_eq!(safe, "ok[2J]0;owned  next line31mgnp.exe");
        assert!(!safe.chars().any(unprintable));
        assert_eq!(
            printable("plain text, kept as is"),
            "plain text, kept as is"
        );
        assert_eq!(printable_lines("a\u{1b}[1m\nb\r\n"), "a[1m\nb \n");
        let v = serde_json::json!({ "m\u{1b}": ["x\u{1b}[0m", 3, { "k": "\u{9b}y" }] });
        assert_eq!(
            printable_json(&v),
            serde_json::json!({ "m": ["x[0m", 3, { "k": "y" }] })
        );
    }
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
