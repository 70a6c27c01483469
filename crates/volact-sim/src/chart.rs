//! The timeline as an SVG chart, in three panels sharing one time axis: the count of
//! each application against its minimum, the machines by license state, and the
//! requests of each day by result. Host outages are shaded in every panel.

use crate::report::Report;
use std::fmt::Write as _;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 310.0;
const PANEL: f64 = 210.0;
const GAP: f64 = 70.0;
const TOP: f64 = 95.0;

/// Colours of lines, one per application, then reused.
const LINE_COLOURS: [&str; 6] = [
    "#1f77b4", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A license state: its label, colour and how to read it from a day.
type State = (
    &'static str,
    &'static str,
    fn(&crate::report::DayRow) -> u32,
);

/// Colour of the minimum lines.
const MINIMUM_COLOUR: &str = "#c62828";

/// Colours of results; codes not listed take grey.
fn result_colour(code: &str) -> &'static str {
    match code {
        "activated" => "#2e7d32",
        "count-insufficient" => "#f9a825",
        "clock-skew" => "#8e24aa",
        "host-unreachable" => "#616161",
        "seat-limit-reached" => "#6d4c41",
        "client-revoked" => "#d81b60",
        "product-not-in-key-group" => "#00897b",
        "unknown-setup-key" => "#3949ab",
        "untrusted-host" => "#000000",
        _ => "#9e9e9e",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step giving at most `max` intervals over `0..=top`.
fn nice_step(top: f64, max: f64) -> f64 {
    let raw = (top / max).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

struct Panel {
    y0: f64,
    top: f64,
    days: f64,
}

impl Panel {
    fn x(&self, day: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * day / self.days.max(1.0)
    }
    fn y(&self, v: f64) -> f64 {
        self.y0 + PANEL - PANEL * v / self.top.max(1.0)
    }
}

/// Draws the chart.
pub fn svg(report: &Report) -> String {
    let days = f64::from(report.days);
    let height = TOP + 3.0 * (PANEL + GAP);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="26" font-size="18" font-weight="bold">{}</text>
<text x="{LEFT}" y="46" fill="#444">{}</text>
"##,
        esc(&format!("volact simulation: {}", report.scenario)),
        esc(&format!(
            "{} machines, {} days from {} (seed {}). {}",
            report.groups.iter().map(|g| g.machines).sum::<u32>(),
            report.days,
            report.start.get(..10).unwrap_or(&report.start),
            report.seed,
            report.description
        ))
    );

    // Panel 1: counts and minimums.
    let apps: Vec<&String> = report
        .applications
        .keys()
        .filter(|a| {
            report.minimums.iter().any(|m| &m.application == *a)
                || report
                    .timeline
                    .iter()
                    .any(|r| r.counts.get(*a).copied().unwrap_or(0) > 0)
        })
        .collect();
    let max_count = report
        .timeline
        .iter()
        .flat_map(|r| r.counts.values().copied())
        .chain(report.minimums.iter().map(|m| m.minimum))
        .max()
        .unwrap_or(1);
    let p = Panel {
        y0: TOP,
        top: f64::from(max_count) * 1.1,
        days,
    };
    let mut legend: Vec<(String, String, bool)> = Vec::new();
    frame(
        &mut s,
        &p,
        report,
        "Count per application (distinct machines within the count window)",
    );
    for (k, app) in apps.iter().enumerate() {
        let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
        // Each day's value (at its end) is drawn across the day, as steps: a straight
        // line between days would suggest counts in between that were never sampled.
        let mut path = String::new();
        for (i, r) in report.timeline.iter().enumerate() {
            let v = p.y(f64::from(r.counts.get(*app).copied().unwrap_or(0)));
            let (x0, x1) = (p.x(f64::from(r.day)), p.x(f64::from(r.day) + 1.0));
            let _ = write!(
                path,
                "{}{x0:.1},{v:.1} L{x1:.1},{v:.1}",
                if i == 0 { "M" } else { " L" }
            );
        }
        let _ = writeln!(
            s,
            r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="2.2"/>"#
        );
        let name = report
            .applications
            .get(*app)
            .cloned()
            .unwrap_or_else(|| (*app).clone());
        legend.push((colour.into(), format!("count: {name}"), false));
    }
    // Minimums last, so they stay visible where a count runs along them.
    for m in &report.minimums {
        let y = p.y(f64::from(m.minimum));
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{MINIMUM_COLOUR}" stroke-width="1.8" stroke-dasharray="8,5"/>"#,
            p.x(0.0),
            p.x(days)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{MINIMUM_COLOUR}" text-anchor="end" font-size="11">minimum {} ({})</text>"#,
            p.x(days) - 4.0,
            y - 5.0,
            m.minimum,
            esc(&m.product)
        );
        legend.push((
            MINIMUM_COLOUR.into(),
            format!("minimum {} ({})", m.minimum, m.product),
            true,
        ));
    }
    legend_box(&mut s, &p, &legend);

    // Panel 2: machines by license state, stacked.
    let states: [State; 4] = [
        ("licensed", "#2e7d32", |r| r.licensed),
        ("initial grace", "#64b5f6", |r| r.initial_grace),
        ("out-of-tolerance grace", "#ffa726", |r| {
            r.out_of_tolerance_grace
        }),
        ("notification", "#e53935", |r| r.notification),
    ];
    let max_machines = report
        .timeline
        .iter()
        .map(|r| r.licensed + r.initial_grace + r.out_of_tolerance_grace + r.notification)
        .max()
        .unwrap_or(1);
    let p = Panel {
        y0: TOP + PANEL + GAP,
        top: f64::from(max_machines) * 1.1,
        days,
    };
    frame(
        &mut s,
        &p,
        report,
        "Machines by license state (end of each day)",
    );
    let mut below = vec![0u32; report.timeline.len()];
    let mut legend = Vec::new();
    for (name, colour, get) in states {
        let mut upper = String::new();
        let mut lower = Vec::new();
        for (i, r) in report.timeline.iter().enumerate() {
            let b = below.get(i).copied().unwrap_or(0);
            let t = b + get(r);
            let (x0, x1) = (p.x(f64::from(r.day)), p.x(f64::from(r.day) + 1.0));
            let _ = write!(
                upper,
                "{}{x0:.1},{:.1} L{x1:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                p.y(f64::from(t)),
                p.y(f64::from(t))
            );
            lower.push((x0, x1, p.y(f64::from(b))));
            if let Some(slot) = below.get_mut(i) {
                *slot = t;
            }
        }
        for (x0, x1, y) in lower.iter().rev() {
            let _ = write!(upper, " L{x1:.1},{y:.1} L{x0:.1},{y:.1}");
        }
        if !upper.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{upper} Z" fill="{colour}" fill-opacity="0.85" stroke="none"/>"#
            );
        }
        legend.push((colour.to_string(), name.to_string(), false));
    }
    legend_box(&mut s, &p, &legend);

    // Panel 3: requests per day by result, stacked bars.
    let mut results = vec!["activated"];
    results.extend(report.codes());
    let max_requests = report
        .timeline
        .iter()
        .map(|r| r.requests)
        .max()
        .unwrap_or(1);
    let p = Panel {
        y0: TOP + 2.0 * (PANEL + GAP),
        top: f64::from(max_requests) * 1.1,
        days,
    };
    frame(&mut s, &p, report, "Requests per day by result");
    for r in &report.timeline {
        let (x0, x1) = (p.x(f64::from(r.day)), p.x(f64::from(r.day) + 1.0));
        let w = (x1 - x0 - if x1 - x0 > 4.0 { 1.0 } else { 0.0 }).max(0.5);
        let mut base = 0u32;
        for code in &results {
            let n = if *code == "activated" {
                r.activated
            } else {
                r.refusals.get(*code).copied().unwrap_or(0)
            };
            if n == 0 {
                continue;
            }
            let (ya, yb) = (p.y(f64::from(base + n)), p.y(f64::from(base)));
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{ya:.1}" width="{w:.1}" height="{:.1}" fill="{}"/>"#,
                (yb - ya).max(0.0),
                result_colour(code)
            );
            base += n;
        }
    }
    let legend: Vec<(String, String, bool)> = results
        .iter()
        .map(|c| (result_colour(c).to_string(), (*c).to_string(), false))
        .collect();
    legend_box(&mut s, &p, &legend);
    s.push_str("</svg>\n");
    s
}

/// Title, outage shading, axes with date and value ticks.
fn frame(s: &mut String, p: &Panel, report: &Report, title: &str) {
    let (x0, x1) = (p.x(0.0), p.x(p.days));
    let (yt, yb) = (p.y0, p.y0 + PANEL);
    let _ = writeln!(
        s,
        r#"<text x="{x0:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        yt - 10.0,
        esc(title)
    );
    let start = report
        .start
        .parse::<jiff::Timestamp>()
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    for (from, to) in &report.outages {
        let day = |t: &str| {
            t.parse::<jiff::Timestamp>()
                .map(|t| t.duration_since(start).as_secs_f64() / 86_400.0)
                .unwrap_or(0.0)
                .clamp(0.0, p.days)
        };
        let (a, b) = (p.x(day(from)), p.x(day(to)));
        let _ = writeln!(
            s,
            r##"<rect x="{a:.1}" y="{yt:.1}" width="{:.1}" height="{PANEL}" fill="#000" fill-opacity="0.08"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#555" text-anchor="middle">host down</text>"##,
            (b - a).max(1.0),
            (a + b) / 2.0,
            yt + 12.0
        );
    }
    // Value ticks and grid.
    let step = nice_step(p.top, 5.0);
    let mut v = 0.0;
    while v <= p.top {
        let y = p.y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{v}</text>"##,
            x0 - 6.0,
            y + 4.0
        );
        v += step;
    }
    // Date ticks: a round number of days, at most about a dozen.
    let steps = [1.0, 2.0, 7.0, 14.0, 30.0, 61.0, 91.0, 182.0, 365.0];
    let dstep = steps
        .iter()
        .copied()
        .find(|d| p.days / d <= 12.0)
        .unwrap_or(365.0);
    let mut d = 0.0;
    while d <= p.days {
        let x = p.x(d);
        #[allow(clippy::cast_possible_truncation)]
        let when = start
            .checked_add(jiff::SignedDuration::from_secs((d * 86_400.0) as i64))
            .unwrap_or(start);
        let label = when.strftime("%b %d").to_string();
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{yb:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333">{label}</text><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#888" font-size="10">day {d}</text>"##,
            yb + 5.0,
            yb + 18.0,
            yb + 31.0
        );
        d += dstep;
    }
    let _ = writeln!(
        s,
        r##"<path d="M{x0:.1},{yt:.1} L{x0:.1},{yb:.1} L{x1:.1},{yb:.1}" fill="none" stroke="#333"/>"##
    );
}

/// A legend to the right of a panel: a swatch (or dashed line) and a label per entry.
fn legend_box(s: &mut String, p: &Panel, entries: &[(String, String, bool)]) {
    let x = WIDTH - RIGHT + 20.0;
    for (i, (colour, label, dashed)) in entries.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = p.y0 + 8.0 + 18.0 * i as f64;
        if *dashed {
            let _ = writeln!(
                s,
                r#"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="5,3"/>"#,
                y + 5.0,
                x + 16.0,
                y + 5.0
            );
        } else {
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{y:.1}" width="16" height="10" fill="{colour}"/>"#
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 22.0,
            y + 9.5,
            esc(label)
        );
    }
}
