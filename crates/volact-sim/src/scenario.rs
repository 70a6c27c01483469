//! A scenario: the catalog, the host's settings, groups of machines with their schedules
//! and clocks, host outages and the duration, as written in a TOML file.

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;
use volact_core::catalog::{CatalogSource, demo_source};
use volact_core::settings::{Settings, parse_duration};
use volact_proto::{ApiError, ErrorCode};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// The default start of simulated time: 2026-01-01T00:00:00Z.
pub const DEFAULT_START: i64 = 1_767_225_600;

/// A day number as written: `10` or `10.25` (a quarter past, i.e. 06:00).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Day {
    /// A whole day.
    Whole(i64),
    /// A fraction of days.
    Fraction(f64),
}

impl Day {
    /// Seconds from the start of the simulation.
    pub fn secs(self) -> i64 {
        match self {
            Day::Whole(d) => d.saturating_mul(DAY),
            // Rounded to the second; scenario days are far below f64's exact range.
            #[allow(clippy::cast_possible_truncation)]
            Day::Fraction(f) => (f * DAY as f64).round() as i64,
        }
    }
}

/// The host's settings; unset ones take the design's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Renewal interval, e.g. `7d`.
    pub renew_interval: Option<String>,
    /// Retry interval while not activated, e.g. `2h`.
    pub retry_interval: Option<String>,
    /// Ticket validity, e.g. `180d`.
    pub ticket_validity: Option<String>,
    /// Count window, e.g. `30d`.
    pub count_window: Option<String>,
    /// Allowed clock difference, e.g. `4h`.
    pub max_clock_skew: Option<String>,
    /// Seat cap of the host key.
    pub seats: Option<u32>,
    /// Key group of the host key (default: the catalog's first).
    pub key_group: Option<String>,
}

/// A group of machines that behave alike.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Name, used for machine names and in the summary.
    pub name: String,
    /// Number of machines.
    pub count: u32,
    /// Product id whose setup key the machines install.
    pub product: String,
    /// Day the machines install the setup key and first contact the host.
    #[serde(default = "day_zero")]
    pub join_day: Day,
    /// First contacts are spread evenly over this span after `join_day` (default `1h`).
    pub join_spread: Option<String>,
    /// Day the machines are retired for good (they leave the fleet's tallies).
    pub leave_day: Option<Day>,
    /// Day the machines stop contacting the host (they stay in the fleet).
    pub offline_day: Option<Day>,
    /// How long they stay away; absent means they never come back.
    pub offline_days: Option<Day>,
    /// The machines' clocks run this far ahead (`5h`) or behind (`-5h`) of the host's.
    pub clock_offset: Option<String>,
    /// The machines are clones of this group's image: they share its client ids.
    pub cloned_from: Option<String>,
}

fn day_zero() -> Day {
    Day::Whole(0)
}

/// A time the host does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// First day of the outage.
    pub from_day: Day,
    /// Day it ends.
    pub to_day: Day,
}

/// How many answers the simulated clients verify along the vendor's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Every answer.
    All,
    /// Each machine's first ticket and one answer in a hundred (default; the rest are
    /// only parsed, since a verification costs more than the host's whole decision).
    #[default]
    Sample,
    /// None: tickets are only parsed.
    None,
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in output).
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Days simulated.
    pub days: u32,
    /// Start of simulated time (RFC 3339, or `YYYY-MM-DD`), default 2026-01-01.
    pub start: Option<String>,
    /// Seed of every random choice (the command line's `--seed` wins).
    #[serde(default)]
    pub seed: u64,
    /// Which answers to verify.
    #[serde(default)]
    pub verify: Verify,
    /// The vendor's catalog; the demo catalog when absent.
    pub catalog: Option<CatalogSource>,
    /// The host.
    #[serde(default)]
    pub host: HostSpec,
    /// Groups of machines.
    #[serde(rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// Host outages.
    #[serde(default, rename = "outage")]
    pub outages: Vec<OutageSpec>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// Parses `5h`, `-5h`, `90m`; signed, unlike host settings.
pub fn signed_duration(text: &str) -> Result<SignedDuration, ApiError> {
    let t = text.trim();
    match t.strip_prefix('-') {
        Some(rest) => Ok(-parse_duration(rest)?),
        None => parse_duration(t.strip_prefix('+').unwrap_or(t)),
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, ApiError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot read scenario {}: {e}", path.display()),
            )
        })?;
        Scenario::parse(&text).map_err(|e| bad(format!("{}: {}", path.display(), e.message)))
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Scenario, ApiError> {
        let s: Scenario = toml::from_str(text).map_err(|e| bad(e.to_string().trim().into()))?;
        s.check()?;
        Ok(s)
    }

    /// A fleet for quick experiments: `clients` workstations of the demo catalog joining
    /// over the first week, for `days` days.
    pub fn default_fleet(clients: u32, days: u32) -> Scenario {
        Scenario {
            name: "default-fleet".into(),
            description: format!("{clients} demo workstations joining over a week"),
            days,
            start: None,
            seed: 0,
            verify: Verify::Sample,
            catalog: None,
            host: HostSpec::default(),
            groups: vec![GroupSpec {
                name: "workstations".into(),
                count: clients,
                product: "demo-os-workstation".into(),
                join_day: Day::Whole(0),
                join_spread: Some("7d".into()),
                leave_day: None,
                offline_day: None,
                offline_days: None,
                clock_offset: None,
                cloned_from: None,
            }],
            outages: Vec::new(),
        }
    }

    /// The catalog source in force.
    pub fn catalog_source(&self) -> CatalogSource {
        self.catalog.clone().unwrap_or_else(demo_source)
    }

    /// The host's settings, checked against the design's ranges.
    pub fn settings(&self) -> Result<Settings, ApiError> {
        let mut s = Settings::default();
        let h = &self.host;
        for (text, slot, name) in [
            (&h.renew_interval, &mut s.renew_interval, "renew_interval"),
            (&h.retry_interval, &mut s.retry_interval, "retry_interval"),
            (
                &h.ticket_validity,
                &mut s.ticket_validity,
                "ticket_validity",
            ),
            (&h.count_window, &mut s.count_window, "count_window"),
            (&h.max_clock_skew, &mut s.max_clock_skew, "max_clock_skew"),
        ] {
            if let Some(text) = text {
                *slot =
                    parse_duration(text).map_err(|e| bad(format!("host.{name}: {}", e.message)))?;
            }
        }
        s.validate()?;
        Ok(s)
    }

    /// Start of simulated time, Unix seconds.
    pub fn start_secs(&self) -> Result<i64, ApiError> {
        let Some(text) = &self.start else {
            return Ok(DEFAULT_START);
        };
        if let Ok(t) = text.parse::<Timestamp>() {
            return Ok(t.as_second());
        }
        let date: jiff::civil::Date = text.parse().map_err(|_| {
            bad(format!(
                "start `{text}` is not a date (YYYY-MM-DD) or RFC 3339"
            ))
        })?;
        date.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|e| bad(format!("start `{text}`: {e}")))
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.days == 0 || self.days > 3650 {
            return Err(bad(format!(
                "days is {}; it must be from 1 to 3650",
                self.days
            )));
        }
        self.settings()?;
        self.start_secs()?;
        if self.groups.is_empty() {
            return Err(bad("a scenario needs at least one [[group]]".into()));
        }
        let source = self.catalog_source();
        let mut names = BTreeSet::new();
        for g in &self.groups {
            if !names.insert(g.name.as_str()) {
                return Err(bad(format!("group `{}` is listed twice", g.name)));
            }
            if !source.products.iter().any(|p| p.id == g.product) {
                return Err(bad(format!(
                    "group `{}` names product `{}`, which the catalog does not list",
                    g.name, g.product
                )));
            }
            if g.count == 0 || g.count > 1_000_000 {
                return Err(bad(format!(
                    "group `{}` has count {}; it must be from 1 to 1000000",
                    g.name, g.count
                )));
            }
            for (what, text) in [
                ("join_spread", &g.join_spread),
                ("clock_offset", &g.clock_offset),
            ] {
                if let Some(t) = text {
                    signed_duration(t)
                        .map_err(|e| bad(format!("group `{}`: {what}: {}", g.name, e.message)))?;
                }
            }
            if g.offline_days.is_some() && g.offline_day.is_none() {
                return Err(bad(format!(
                    "group `{}` has offline_days but no offline_day",
                    g.name
                )));
            }
        }
        for g in &self.groups {
            if let Some(src) = &g.cloned_from {
                let Some(origin) = self.groups.iter().find(|o| &o.name == src) else {
                    return Err(bad(format!(
                        "group `{}` is cloned from `{src}`, which is not a group",
                        g.name
                    )));
                };
                if origin.cloned_from.is_some() || origin.name == g.name {
                    return Err(bad(format!(
                        "group `{}` must be cloned from an original group, not `{src}`",
                        g.name
                    )));
                }
            }
        }
        for o in &self.outages {
            if o.to_day.secs() <= o.from_day.secs() {
                return Err(bad("an outage must end after it starts".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::parse(
            r#"
name = "x"
days = 10
start = "2026-03-01"
[host]
renew_interval = "1d"
seats = 10
[[group]]
name = "a"
count = 3
product = "demo-office"
join_day = 1.5
clock_offset = "-5h"
[[group]]
name = "b"
count = 2
product = "demo-office"
cloned_from = "a"
[[outage]]
from_day = 2
to_day = 3
"#,
        )
        .unwrap();
        assert_eq!(s.groups[0].join_day.secs(), 129_600);
        assert_eq!(s.settings().unwrap().renew_interval.as_secs(), 86_400);
        assert_eq!(
            signed_duration("-5h").unwrap(),
            SignedDuration::from_hours(-5)
        );
        assert!(s.start_secs().unwrap() > DEFAULT_START);
    }

    #[test]
    fn mistakes_are_named() {
        let e = Scenario::parse("name='x'\ndays=1\n[[group]]\nname='a'\ncount=1\nproduct='nope'\n")
            .unwrap_err();
        assert!(e.message.contains("nope"), "{}", e.message);
        let e = Scenario::parse(
            "name='x'\ndays=1\nfoo=1\n[[group]]\nname='a'\ncount=1\nproduct='demo-office'\n",
        )
        .unwrap_err();
        assert!(e.message.contains("foo"), "{}", e.message);
    }
}
