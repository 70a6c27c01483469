//! The cloned-image rule: one client id asking from two machines within a day.
//!
//! A disk image cloned after its setup key was installed carries the client id to every
//! copy, so the copies count as one machine. The host keeps, per client, the latest
//! [`Sighting`] (machine name and fingerprint reduced to hashes by the caller) and asks
//! [`judge`] about each new request.

/// Two machines using one client id within this long are flagged.
pub const CLONE_WINDOW_SECS: i64 = 86_400;

/// What differed between the two requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneReason {
    /// The machine names differ.
    MachineName,
    /// The names match but the machine fingerprints differ.
    MachineFingerprint,
}

impl CloneReason {
    /// The stable form stored with the flag.
    pub fn as_str(self) -> &'static str {
        match self {
            CloneReason::MachineName => "machine-name",
            CloneReason::MachineFingerprint => "machine-fingerprint",
        }
    }
}

/// The latest request of a client, as hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// When (Unix seconds).
    pub at: i64,
    /// Hash of the machine name (case-folded by the caller).
    pub name: u64,
    /// Hash of the machine fingerprint; 0 when the client sent none.
    pub fingerprint: u64,
    /// When a flag was last raised for this client (`i64::MIN`: never), so a pair of
    /// clones asking in turn raises one flag a day, not one per request.
    pub reported: i64,
}

impl Sighting {
    /// The first sighting of a client.
    pub fn first(at: i64, name: u64, fingerprint: u64) -> Sighting {
        Sighting {
            at,
            name,
            fingerprint,
            reported: i64::MIN,
        }
    }
}

/// Updates `seen` with a request from machine `name` / `fingerprint` at `at`, and says
/// why the client is flagged, when it is: another machine used this client id less than
/// a day before, and no flag was raised for the client in the last day.
pub fn judge(seen: &mut Sighting, name: u64, fingerprint: u64, at: i64) -> Option<CloneReason> {
    let window = CLONE_WINDOW_SECS.unsigned_abs();
    let recent = at.abs_diff(seen.at) < window;
    let reason = if seen.name != name {
        Some(CloneReason::MachineName)
    } else if seen.fingerprint != 0 && fingerprint != 0 && seen.fingerprint != fingerprint {
        Some(CloneReason::MachineFingerprint)
    } else {
        None
    };
    // A late request (older than the latest) does not replace it.
    if at >= seen.at {
        seen.at = at;
        seen.name = name;
        if fingerprint != 0 {
            seen.fingerprint = fingerprint;
        }
    }
    let quiet = seen.reported != i64::MIN && at.abs_diff(seen.reported) < window;
    match reason {
        Some(r) if recent && !quiet => {
            seen.reported = at;
            Some(r)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = CLONE_WINDOW_SECS;

    #[test]
    fn another_machine_within_a_day_is_flagged_once_a_day() {
        let mut seen = Sighting::first(0, 1, 0);
        assert_eq!(judge(&mut seen, 1, 0, 10), None);
        assert_eq!(judge(&mut seen, 2, 0, 20), Some(CloneReason::MachineName));
        // The pair keeps alternating: no new flag within the day.
        assert_eq!(judge(&mut seen, 1, 0, 30), None);
        assert_eq!(
            judge(&mut seen, 2, 0, 20 + DAY),
            Some(CloneReason::MachineName)
        );
    }

    #[test]
    fn a_day_apart_or_same_machine_is_not_flagged() {
        let mut seen = Sighting::first(0, 1, 7);
        assert_eq!(judge(&mut seen, 2, 7, DAY), None, "renamed a day later");
        assert_eq!(judge(&mut seen, 2, 0, DAY + 5), None, "no fingerprint sent");
        assert_eq!(
            judge(&mut seen, 2, 9, DAY + 6),
            Some(CloneReason::MachineFingerprint)
        );
    }
}
