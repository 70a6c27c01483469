//! The usage chart: counted clients per day, stacked by product, summed over the hosts
//! whose reports are given. Drawn on the server as inline SVG, as the host's charts are;
//! the template only places what is computed here, so every label is escaped.

use askama::Template;
use std::collections::BTreeMap;
use volact_host::dashboard::charts::{BOTTOM, LEFT, RIGHT, TOP, Tick, f, value_axis};
use volact_store::vendor::UsageRecord;

/// Width of the drawing, in SVG units: the chart spans the page.
const W: f64 = 960.0;
/// Height of the drawing.
const H: f64 = 240.0;
/// Products with a colour of their own; the rest are drawn together as "other".
const COLOURS: usize = 6;

/// One product in the legend.
#[derive(Debug, Clone)]
pub struct Series {
    /// `p0` … `p6`, for its colour.
    pub class: String,
    /// The product's name.
    pub label: String,
}

/// One day's stacked bar.
#[derive(Debug, Clone)]
pub struct DayBar {
    /// Left edge.
    pub x: String,
    /// Width.
    pub width: String,
    /// Segments from the bottom: (y, height, class, tooltip).
    pub segments: Vec<(String, String, String, String)>,
}

/// Counted clients per day over the last `days` days.
#[derive(Template)]
#[template(path = "vendor/usage_chart.html")]
pub struct UsageChart {
    title: String,
    w: String,
    h: String,
    left: String,
    right: String,
    bottom: String,
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
    bars: Vec<DayBar>,
    series: Vec<Series>,
    /// Whether any report falls in the range.
    pub has_data: bool,
}

/// Counted clients per product on each day, summed over hosts (hosts sharing one
/// count, once).
fn per_day(reports: &[UsageRecord]) -> BTreeMap<&str, BTreeMap<String, u64>> {
    let mut days: BTreeMap<&str, Vec<&UsageRecord>> = BTreeMap::new();
    for r in reports {
        days.entry(r.day.as_str()).or_default().push(r);
    }
    days.into_iter()
        .map(|(day, reports)| (day, crate::report::combined_products(reports)))
        .collect()
}

impl UsageChart {
    /// A chart of `reports` over the `days` days up to `today`; `name` turns a product id
    /// into the name shown.
    pub fn new(
        title: String,
        reports: &[UsageRecord],
        today: jiff::civil::Date,
        days: i32,
        name: impl Fn(&str) -> String,
    ) -> UsageChart {
        let dates: Vec<jiff::civil::Date> = (0..days)
            .rev()
            .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
            .collect();
        let by_day = per_day(reports);
        // Colours go to the products with the most clients over the range.
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for counts in by_day.values() {
            for (p, n) in counts {
                let t = totals.entry(p.as_str()).or_default();
                *t = t.saturating_add(*n);
            }
        }
        let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let colour = |product: &str| -> usize {
            ranked
                .iter()
                .position(|(p, _)| *p == product)
                .map_or(COLOURS, |i| i.min(COLOURS))
        };
        let mut series: Vec<Series> = ranked
            .iter()
            .take(COLOURS)
            .enumerate()
            .map(|(i, (p, _))| Series {
                class: format!("p{i}"),
                label: name(p),
            })
            .collect();
        if ranked.len() > COLOURS {
            series.push(Series {
                class: format!("p{COLOURS}"),
                label: format!("{} other products", ranked.len() - COLOURS),
            });
        }
        let stacks: Vec<(jiff::civil::Date, [u64; COLOURS + 1])> = dates
            .iter()
            .map(|d| {
                let mut stack = [0u64; COLOURS + 1];
                if let Some(counts) = by_day.get(d.to_string().as_str()) {
                    for (p, n) in counts {
                        let slot = &mut stack[colour(p)];
                        *slot = slot.saturating_add(*n);
                    }
                }
                (*d, stack)
            })
            .collect();
        let max = stacks
            .iter()
            .map(|(_, s)| s.iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        let has_data = max > 0
            || reports
                .iter()
                .any(|r| dates.iter().any(|d| d.to_string() == r.day));
        let (top_value, y_ticks) = value_axis((max as f64).max(1.0), H);
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let slot = plot_w / stacks.len().max(1) as f64;
        let y = |v: f64| TOP + plot_h - v / top_value * plot_h;
        let mut x_ticks = Vec::new();
        let bars = stacks
            .iter()
            .enumerate()
            .map(|(i, (date, stack))| {
                let x0 = LEFT + i as f64 * slot;
                // Dates on the 1st and 15th of each month, which read better than every n days.
                if date.day() == 1 || date.day() == 15 {
                    x_ticks.push(Tick {
                        pos: f(x0 + slot / 2.0),
                        label: date.strftime("%b %-d").to_string(),
                    });
                }
                let mut base = 0u64;
                let mut segments = Vec::new();
                for (k, n) in stack.iter().enumerate() {
                    if *n == 0 {
                        continue;
                    }
                    let top = y(base.saturating_add(*n) as f64);
                    let height = y(base as f64) - top;
                    let label = series.get(k).map_or("", |s| s.label.as_str());
                    segments.push((
                        f(top),
                        f(height),
                        format!("p{k}"),
                        format!("{date}: {n} {label}"),
                    ));
                    base = base.saturating_add(*n);
                }
                DayBar {
                    x: f(x0 + slot * 0.12),
                    width: f(slot * 0.76),
                    segments,
                }
            })
            .collect();
        UsageChart {
            title,
            w: f(W),
            h: f(H),
            left: f(LEFT),
            right: f(W - RIGHT),
            bottom: f(TOP + plot_h),
            y_ticks,
            x_ticks,
            bars,
            series,
            has_data,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn report(host: &str, day: &str, products: &[(&str, u64)]) -> UsageRecord {
        UsageRecord {
            key_id: "k".into(),
            host_id: host.into(),
            day: day.into(),
            received: 0,
            host_version: "0.1.0".into(),
            clients_known: 0,
            products: products.iter().map(|(p, n)| ((*p).into(), *n)).collect(),
            applications: BTreeMap::new(),
            token: String::new(),
        }
    }

    #[test]
    fn days_sum_over_hosts_and_stack_by_product() {
        let today: jiff::civil::Date = "2026-12-04".parse().unwrap();
        let reports = [
            report("a", "2026-12-03", &[("office", 10), ("os", 3)]),
            report("b", "2026-12-03", &[("office", 5)]),
            report("a", "2026-12-04", &[("office", 12)]),
        ];
        let chart = UsageChart::new("t".into(), &reports, today, 30, |p| format!("<{p}>"));
        assert!(chart.has_data);
        assert_eq!(chart.bars.len(), 30);
        // Office has the most clients, so it is p0; the 3rd of December stacks 15 + 3.
        assert_eq!(chart.series[0].label, "<office>");
        let dec3 = &chart.bars[28].segments;
        assert_eq!(dec3.len(), 2);
        assert!(dec3[0].3.contains("15 <office>"), "{dec3:?}");
        assert!(dec3[1].3.contains("3 <os>"), "{dec3:?}");
        let html = chart.render().unwrap();
        assert!(!html.contains("<office>"), "labels are escaped");
    }

    #[test]
    fn no_reports_draws_an_empty_chart() {
        let today: jiff::civil::Date = "2026-12-04".parse().unwrap();
        let chart = UsageChart::new("t".into(), &[], today, 60, str::to_owned);
        assert!(!chart.has_data);
        assert!(chart.render().is_ok());
    }
}
