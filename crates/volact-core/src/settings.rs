//! The host's intervals and limits, with the ranges of the design's behaviour table.

use crate::util::human;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use volact_proto::{ApiError, ErrorCode, HostIntervals};

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The host's intervals. Clients use the host's values once they have heard from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Clients renew this long after a ticket is issued (default 7 days).
    pub renew_interval: SignedDuration,
    /// Clients retry this long after a "not yet" (default 2 hours).
    pub retry_interval: SignedDuration,
    /// Tickets are valid this long from issue (default 180 days).
    pub ticket_validity: SignedDuration,
    /// A client counts this long after its last request (default 30 days).
    pub count_window: SignedDuration,
    /// Largest accepted clock difference between client and host (default 4 hours).
    pub max_clock_skew: SignedDuration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            renew_interval: SignedDuration::from_secs(7 * DAY),
            retry_interval: SignedDuration::from_secs(2 * HOUR),
            ticket_validity: SignedDuration::from_secs(180 * DAY),
            count_window: SignedDuration::from_secs(30 * DAY),
            max_clock_skew: SignedDuration::from_secs(4 * HOUR),
        }
    }
}

/// One setting's name and allowed range, in seconds.
pub struct Range {
    /// Setting name as in the configuration file.
    pub name: &'static str,
    /// Smallest allowed value.
    pub min: i64,
    /// Largest allowed value.
    pub max: i64,
}

/// The allowed ranges, in the order of [`Settings`]'s fields.
pub const RANGES: [Range; 5] = [
    Range {
        name: "renew_interval",
        min: 15 * MINUTE,
        max: 30 * DAY,
    },
    Range {
        name: "retry_interval",
        min: 15 * MINUTE,
        max: 30 * DAY,
    },
    Range {
        name: "ticket_validity",
        min: DAY,
        max: 3650 * DAY,
    },
    Range {
        name: "count_window",
        min: DAY,
        max: 365 * DAY,
    },
    Range {
        name: "max_clock_skew",
        min: MINUTE,
        max: 48 * HOUR,
    },
];

impl Settings {
    fn values(&self) -> [SignedDuration; 5] {
        [
            self.renew_interval,
            self.retry_interval,
            self.ticket_validity,
            self.count_window,
            self.max_clock_skew,
        ]
    }

    /// Refuses any value outside its range, naming the setting and the range.
    pub fn validate(&self) -> Result<(), ApiError> {
        for (value, range) in self.values().iter().zip(RANGES.iter()) {
            let secs = value.as_secs();
            if secs < range.min || secs > range.max {
                return Err(ApiError::with_details(
                    ErrorCode::BadRequest,
                    format!(
                        "{} is {}; it must be from {} to {}",
                        range.name,
                        human(*value),
                        human(SignedDuration::from_secs(range.min)),
                        human(SignedDuration::from_secs(range.max))
                    ),
                    serde_json::json!({ "setting": range.name, "value_secs": secs, "min_secs": range.min, "max_secs": range.max }),
                ));
            }
        }
        if self.renew_interval >= self.ticket_validity {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "renew_interval ({}) must be shorter than ticket_validity ({}), or tickets would lapse before renewal",
                    human(self.renew_interval),
                    human(self.ticket_validity)
                ),
            ));
        }
        Ok(())
    }

    /// The intervals as sent on the wire.
    pub fn intervals(&self) -> HostIntervals {
        let secs = |d: SignedDuration| d.as_secs().max(0).unsigned_abs();
        HostIntervals {
            renew_interval_secs: secs(self.renew_interval),
            retry_interval_secs: secs(self.retry_interval),
            ticket_validity_secs: secs(self.ticket_validity),
            count_window_secs: secs(self.count_window),
            max_clock_skew_secs: secs(self.max_clock_skew),
        }
    }

    /// Settings from the wire form, each held to its range: the intervals in an answer
    /// are not signed, and a broken host must not make a client retry every second or
    /// never.
    pub fn from_intervals_clamped(i: &HostIntervals) -> Settings {
        let s = Settings::from_intervals(i);
        let clamp = |d: SignedDuration, r: &Range| {
            SignedDuration::from_secs(d.as_secs().clamp(r.min, r.max))
        };
        let [renew, retry, validity, window, skew] = &RANGES;
        Settings {
            renew_interval: clamp(s.renew_interval, renew),
            retry_interval: clamp(s.retry_interval, retry),
            ticket_validity: clamp(s.ticket_validity, validity),
            count_window: clamp(s.count_window, window),
            max_clock_skew: clamp(s.max_clock_skew, skew),
        }
    }

    /// Settings from the wire form (a client's view of its host).
    pub fn from_intervals(i: &HostIntervals) -> Settings {
        let d = |s: u64| SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX));
        Settings {
            renew_interval: d(i.renew_interval_secs),
            retry_interval: d(i.retry_interval_secs),
            ticket_validity: d(i.ticket_validity_secs),
            count_window: d(i.count_window_secs),
            max_clock_skew: d(i.max_clock_skew_secs),
        }
    }
}

/// Parses a duration written as `7d`, `2h`, `90m`, `30s`, `1d 12h` or ISO 8601 (`P7D`).
pub fn parse_duration(text: &str) -> Result<SignedDuration, ApiError> {
    let refuse = || {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("`{text}` is not a duration; write it like 7d, 2h, 90m or 1d 12h"),
        )
    };
    let span: jiff::Span = text.trim().parse().map_err(|_| refuse())?;
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| refuse())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ranges_enforced() {
        assert!(Settings::default().validate().is_ok());
        let s = Settings {
            max_clock_skew: SignedDuration::from_hours(49),
            ..Settings::default()
        };
        let e = s.validate().unwrap_err();
        assert!(
            e.message.contains("max_clock_skew") && e.message.contains("2d"),
            "{}",
            e.message
        );
        let s = Settings {
            renew_interval: SignedDuration::from_mins(5),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            SignedDuration::from_hours(168)
        );
        assert_eq!(parse_duration("2h").unwrap(), SignedDuration::from_hours(2));
        assert_eq!(
            parse_duration("1d 12h").unwrap(),
            SignedDuration::from_hours(36)
        );
        assert_eq!(
            parse_duration("P7D").unwrap(),
            SignedDuration::from_hours(168)
        );
        assert!(parse_duration("soon").is_err());
    }
}
