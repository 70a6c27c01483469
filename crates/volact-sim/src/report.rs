//! What a simulation produces: the day-by-day timeline, per-group summaries, and their
//! CSV, JSON and text forms. Nothing here depends on the wall clock, so the same scenario
//! and seed give byte-identical files.

use crate::fleet::Fleet;
use crate::host::SimHost;
use crate::scenario::{DAY, Scenario};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use volact_proto::ErrorCode;

/// Requests and their results over some period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Requests sent (including those that found the host down).
    pub requests: u32,
    /// Tickets received.
    pub activated: u32,
    /// Everything else, by code (`count-insufficient` included).
    pub refusals: BTreeMap<String, u32>,
}

impl Tally {
    /// Adds one request's result.
    pub fn add(&mut self, result: Result<(), ErrorCode>) {
        self.requests += 1;
        match result {
            Ok(()) => self.activated += 1,
            Err(code) => *self.refusals.entry(code.as_str().to_string()).or_default() += 1,
        }
    }

    /// Refusals with `code`.
    pub fn refused(&self, code: ErrorCode) -> u32 {
        self.refusals.get(code.as_str()).copied().unwrap_or(0)
    }
}

/// The fleet at the end of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayRow {
    /// Day number, from 0.
    pub day: u32,
    /// The day's date (UTC).
    pub date: String,
    /// Each application's count at the end of the day.
    pub counts: BTreeMap<String, u32>,
    /// Machines holding a valid ticket.
    pub licensed: u32,
    /// Machines not yet activated, within their initial grace.
    pub initial_grace: u32,
    /// Machines whose ticket expired, within the out-of-tolerance grace.
    pub out_of_tolerance_grace: u32,
    /// Machines in notification.
    pub notification: u32,
    /// Requests sent during the day.
    pub requests: u32,
    /// Tickets issued during the day.
    pub activated: u32,
    /// Other results of the day's requests, by code.
    pub refusals: BTreeMap<String, u32>,
    /// Whether the host was down at some time of the day.
    pub host_down: bool,
}

/// How one group fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// Product installed.
    pub product: String,
    /// Machines in the group.
    pub machines: u32,
    /// When the first of them received a ticket (RFC 3339), if one did.
    pub first_activated: Option<String>,
    /// Day of that, from 0.
    pub first_activated_day: Option<i64>,
    /// When the last of them received its first ticket, if all did.
    pub all_activated: Option<String>,
    /// Machines that ever received a ticket.
    pub activated_machines: u32,
    /// Machines that fell into notification.
    pub notification_machines: u32,
    /// When the first of them did.
    pub first_notification: Option<String>,
    /// Day of that, from 0.
    pub first_notification_day: Option<i64>,
    /// Its requests and their results.
    pub results: Tally,
}

/// A minimum that applies to an application (one per product).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minimum {
    /// Application id.
    pub application: String,
    /// Product id.
    pub product: String,
    /// The minimum count.
    pub minimum: u32,
}

/// A whole simulation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Its description.
    pub description: String,
    /// Seed used.
    pub seed: u64,
    /// Start of simulated time (RFC 3339).
    pub start: String,
    /// Days simulated.
    pub days: u32,
    /// Application ids and names.
    pub applications: BTreeMap<String, String>,
    /// Minimums of the products the fleet installs.
    pub minimums: Vec<Minimum>,
    /// Host outages (RFC 3339 from, to).
    pub outages: Vec<(String, String)>,
    /// Each group.
    pub groups: Vec<GroupSummary>,
    /// All requests.
    pub totals: Tally,
    /// Client ids the host flagged as cloned images.
    pub clone_flags: u64,
    /// Day by day.
    pub timeline: Vec<DayRow>,
}

fn rfc(t: i64) -> String {
    Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Report {
    /// Assembles the report at the end of a run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        scenario: &Scenario,
        seed: u64,
        start: i64,
        timeline: Vec<DayRow>,
        fleet: &Fleet,
        totals: crate::report::Tally,
        tallies: Vec<Tally>,
        host: &SimHost,
    ) -> Report {
        let end = start + i64::from(scenario.days) * DAY;
        let mut groups = Vec::new();
        for (g, (spec, results)) in scenario.groups.iter().zip(tallies).enumerate() {
            let machines: Vec<_> = fleet.machines.iter().filter(|m| m.group == g).collect();
            let first = machines.iter().filter_map(|m| m.first_ticket).min();
            let firsts: Vec<i64> = machines.iter().filter_map(|m| m.first_ticket).collect();
            let all = (firsts.len() == machines.len())
                .then(|| firsts.iter().copied().max())
                .flatten();
            let notified: Vec<i64> = machines
                .iter()
                .filter_map(|m| m.notified_at)
                .filter(|&t| t < end)
                .collect();
            let first_notification = notified.iter().copied().min();
            groups.push(GroupSummary {
                name: spec.name.clone(),
                product: spec.product.clone(),
                machines: spec.count,
                first_activated: first.map(rfc),
                first_activated_day: first.map(|t| (t - start).div_euclid(DAY)),
                all_activated: all.map(rfc),
                activated_machines: u32::try_from(firsts.len()).unwrap_or(u32::MAX),
                notification_machines: u32::try_from(notified.len()).unwrap_or(u32::MAX),
                first_notification: first_notification.map(rfc),
                first_notification_day: first_notification.map(|t| (t - start).div_euclid(DAY)),
                results,
            });
        }
        let mut minimums: Vec<Minimum> = Vec::new();
        for spec in &scenario.groups {
            if let Some(p) = host.catalog.product(&spec.product)
                && !minimums.iter().any(|m| m.product == p.id)
            {
                minimums.push(Minimum {
                    application: p.application.clone(),
                    product: p.id.clone(),
                    minimum: p.minimum_count,
                });
            }
        }
        Report {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            seed,
            start: rfc(start),
            days: scenario.days,
            applications: host
                .catalog
                .applications
                .iter()
                .map(|a| (a.id.clone(), a.name.clone()))
                .collect(),
            minimums,
            outages: scenario
                .outages
                .iter()
                .map(|o| (rfc(start + o.from_day.secs()), rfc(start + o.to_day.secs())))
                .collect(),
            groups,
            totals,
            clone_flags: 0,
            timeline,
        }
    }

    /// Refusal codes that occur anywhere in the run, in the stable order of the codes.
    pub fn codes(&self) -> Vec<&'static str> {
        ErrorCode::ALL
            .iter()
            .map(|c| c.as_str())
            .filter(|c| self.totals.refusals.contains_key(*c))
            .collect()
    }

    /// The timeline as CSV: one row per day.
    pub fn csv(&self) -> String {
        let apps: Vec<&String> = self.applications.keys().collect();
        let codes = self.codes();
        let mut out = String::from("day,date");
        for a in &apps {
            let _ = write!(out, ",count_{a}");
        }
        out.push_str(
            ",licensed,initial_grace,out_of_tolerance_grace,notification,requests,activated",
        );
        for c in &codes {
            let _ = write!(out, ",{c}");
        }
        out.push_str(",host_down\n");
        for r in &self.timeline {
            let _ = write!(out, "{},{}", r.day, r.date);
            for a in &apps {
                let _ = write!(out, ",{}", r.counts.get(*a).copied().unwrap_or(0));
            }
            let _ = write!(
                out,
                ",{},{},{},{},{},{}",
                r.licensed,
                r.initial_grace,
                r.out_of_tolerance_grace,
                r.notification,
                r.requests,
                r.activated
            );
            for c in &codes {
                let _ = write!(out, ",{}", r.refusals.get(*c).copied().unwrap_or(0));
            }
            let _ = writeln!(out, ",{}", u8::from(r.host_down));
        }
        out
    }

    /// The whole report as pretty JSON.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// A short text summary: when each group first activated, who fell into notification.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let last = self.timeline.last();
        let _ = writeln!(
            out,
            "Scenario `{}`: {} machines over {} days from {} (seed {}).",
            self.scenario,
            self.groups.iter().map(|g| g.machines).sum::<u32>(),
            self.days,
            self.start.get(..10).unwrap_or(&self.start),
            self.seed
        );
        for g in &self.groups {
            let first = match (&g.first_activated, g.first_activated_day) {
                (Some(t), Some(d)) => format!("first activated {} (day {d})", short(t)),
                _ => "never activated".to_string(),
            };
            let all = match &g.all_activated {
                Some(t) if g.machines > 1 => format!(", all {} by {}", g.machines, short(t)),
                Some(_) => String::new(),
                None if g.activated_machines > 0 => {
                    format!(
                        ", {} of {} ever activated",
                        g.activated_machines, g.machines
                    )
                }
                None => String::new(),
            };
            let notified = match (&g.first_notification, g.first_notification_day) {
                (Some(t), Some(d)) => format!(
                    "; {} fell into notification, the first {} (day {d})",
                    g.notification_machines,
                    short(t)
                ),
                _ => "; none fell into notification".to_string(),
            };
            let _ = writeln!(
                out,
                "  {} ({} x {}): {first}{all}{notified}.",
                g.name, g.machines, g.product
            );
        }
        if let Some(last) = last {
            for (app, n) in &last.counts {
                let peak = self
                    .timeline
                    .iter()
                    .filter_map(|r| r.counts.get(app))
                    .max()
                    .copied()
                    .unwrap_or(0);
                let mins: Vec<String> = self
                    .minimums
                    .iter()
                    .filter(|m| &m.application == app)
                    .map(|m| format!("{} needs {}", m.product, m.minimum))
                    .collect();
                if mins.is_empty() && peak == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "  count of {app}: {n} at the end, peak {peak} ({})",
                    mins.join(", ")
                );
            }
            let _ = writeln!(
                out,
                "  at the end: {} licensed, {} in initial grace, {} in out-of-tolerance grace, {} in notification.",
                last.licensed, last.initial_grace, last.out_of_tolerance_grace, last.notification
            );
        }
        if self.clone_flags > 0 {
            let _ = writeln!(
                out,
                "  cloned images: the host flagged {} client id(s) used by several machines.",
                self.clone_flags
            );
        }
        let mut results = vec![format!("{} activated", self.totals.activated)];
        for c in self.codes() {
            results.push(format!(
                "{} {c}",
                self.totals.refusals.get(c).copied().unwrap_or(0)
            ));
        }
        let _ = writeln!(
            out,
            "  requests: {} ({}).",
            self.totals.requests,
            results.join(", ")
        );
        out
    }
}

/// `2026-01-04T02:00:00Z` as `2026-01-04 02:00`.
fn short(rfc: &str) -> String {
    rfc.get(..16).unwrap_or(rfc).replace('T', " ")
}
