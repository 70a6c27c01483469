//! Charts drawn on the server as inline SVG: the count over the last days with the
//! products' minimums, and requests per hour. The geometry is computed here; templates
//! only place it, so every label still goes through askama's escaping.

use askama::Template;

/// Width of the count chart's drawing, in SVG units. Charts scale to their box, text
/// with them, so each is drawn at about the width it is shown at: the count chart spans
/// the page, the hourly chart half of it.
const COUNT_W: f64 = 960.0;
/// Width of the hourly chart's drawing.
const HOURLY_W: f64 = 440.0;
/// Plot area margin on the left: room for the value axis.
pub const LEFT: f64 = 44.0;
/// Plot area margin on the right.
pub const RIGHT: f64 = 16.0;
/// Plot area margin above.
pub const TOP: f64 = 14.0;
/// Plot area margin below: room for dates.
pub const BOTTOM: f64 = 28.0;

/// A coordinate with one decimal, as SVG attributes take it.
pub fn f(x: f64) -> String {
    format!("{x:.1}")
}

/// A labelled position on an axis.
#[derive(Debug, Clone)]
pub struct Tick {
    /// Position along the axis, in SVG units.
    pub pos: String,
    /// What it says.
    pub label: String,
}

/// A dashed line at a product's minimum.
#[derive(Debug, Clone)]
pub struct Threshold {
    /// Its height.
    pub y: String,
    /// Where its label sits.
    pub label_y: String,
    /// `min 25`.
    pub short: String,
    /// `Demo OS Workstation: minimum 25`.
    pub legend: String,
    /// `a` or `b`, for its colour.
    pub class: &'static str,
}

/// The smallest "round" step (1, 2 or 5 times a power of ten) that divides `max` into at
/// most `parts` parts.
fn nice_step(max: f64, parts: f64) -> f64 {
    let raw = (max / parts).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The value axis of a chart `height` high: 0 to a round top at least `max`, and its
/// ticks.
pub fn value_axis(max: f64, height: f64) -> (f64, Vec<Tick>) {
    let step = nice_step(max, 4.0);
    let top = (max / step).ceil().max(1.0) * step;
    let plot = height - TOP - BOTTOM;
    let ticks = (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= top + step / 2.0)
        .map(|v| Tick {
            pos: f(TOP + plot - v / top * plot),
            label: format!("{v}"),
        })
        .collect();
    (top, ticks)
}

/// The count of one application over the last days.
#[derive(Template)]
#[template(path = "dashboard/count_chart.html")]
pub struct CountChart {
    title: String,
    w: String,
    h: String,
    left: String,
    right: String,
    top: String,
    bottom: String,
    plot_h: String,
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
    line: String,
    area: String,
    last: (String, String),
    thresholds: Vec<Threshold>,
    partial: Option<String>,
}

impl CountChart {
    /// A chart of `counts` (one per day, oldest first, days starting at `days`) against
    /// `minimums` (`(product name, minimum)`); the first `partial_days` days are shaded as
    /// possibly too low.
    pub fn new(
        title: String,
        days: &[i64],
        counts: &[u64],
        minimums: &[(String, u32)],
        partial_days: usize,
    ) -> CountChart {
        let h = 250.0;
        let n = counts.len().max(2);
        let max_count = counts.iter().copied().max().unwrap_or(0) as f64;
        let max_min = minimums
            .iter()
            .map(|(_, m)| f64::from(*m))
            .fold(0.0, f64::max);
        let (top_value, y_ticks) = value_axis(max_count.max(max_min).max(1.0), h);
        let plot_w = COUNT_W - LEFT - RIGHT;
        let plot_h = h - TOP - BOTTOM;
        let x = |i: usize| LEFT + i as f64 * plot_w / (n - 1) as f64;
        let y = |v: f64| TOP + plot_h - v / top_value * plot_h;
        let points: Vec<(f64, f64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (x(i), y(*c as f64)))
            .collect();
        let line = points
            .iter()
            .map(|(px, py)| format!("{},{}", f(*px), f(*py)))
            .collect::<Vec<_>>()
            .join(" ");
        let baseline = f(TOP + plot_h);
        let area = match (points.first(), points.last()) {
            (Some(first), Some(last)) => {
                format!("{},{baseline} {line} {},{baseline}", f(first.0), f(last.0))
            }
            _ => String::new(),
        };
        let last = points
            .last()
            .map(|(px, py)| (f(*px), f(*py)))
            .unwrap_or_default();
        // Dates on the 1st and 15th of each month, which read better than every n days.
        let x_ticks = days
            .iter()
            .enumerate()
            .filter_map(|(i, &day)| {
                let date = jiff::Timestamp::from_second(day).ok()?;
                let dom = date.strftime("%d").to_string();
                (dom == "01" || dom == "15").then(|| Tick {
                    pos: f(x(i)),
                    label: date.strftime("%b %-d").to_string(),
                })
            })
            .collect();
        let mut sorted: Vec<&(String, u32)> = minimums.iter().collect();
        sorted.sort_by_key(|(_, m)| std::cmp::Reverse(*m));
        let mut previous_label = f64::MIN;
        let thresholds = sorted
            .iter()
            .enumerate()
            .map(|(i, (name, minimum))| {
                let ty = y(f64::from(*minimum));
                // Labels sit above their line; one that would overlap the previous one
                // moves below it instead.
                let mut label_y = ty - 4.0;
                if label_y - previous_label < 11.0 {
                    label_y = ty + 12.0;
                }
                previous_label = label_y;
                Threshold {
                    y: f(ty),
                    label_y: f(label_y),
                    short: format!("min {minimum}"),
                    legend: format!("{name}: minimum {minimum}"),
                    class: if i % 2 == 0 { "a" } else { "b" },
                }
            })
            .collect();
        let partial = (partial_days > 0).then(|| f(x(partial_days.min(n - 1)) - LEFT));
        CountChart {
            title,
            w: f(COUNT_W),
            h: f(h),
            left: f(LEFT),
            right: f(COUNT_W - RIGHT),
            top: f(TOP),
            bottom: f(TOP + plot_h),
            plot_h: f(plot_h),
            y_ticks,
            x_ticks,
            line,
            area,
            last,
            thresholds,
            partial,
        }
    }
}

/// One hour's stacked bar.
#[derive(Debug, Clone)]
pub struct HourBar {
    /// Left edge.
    pub x: String,
    /// Width.
    pub width: String,
    /// Segments from the bottom: (y, height, class, tooltip).
    pub segments: Vec<(String, String, &'static str, String)>,
}

/// Requests per hour over the last hours, stacked by outcome.
#[derive(Template)]
#[template(path = "dashboard/hourly_chart.html")]
pub struct HourlyChart {
    w: String,
    h: String,
    left: String,
    right: String,
    bottom: String,
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
    bars: Vec<HourBar>,
}

/// Requests of one hour: `(hour start, activated, not yet, refused)`.
pub type HourCounts = (i64, u64, u64, u64);

impl HourlyChart {
    /// A chart of `hours`, oldest first.
    pub fn new(hours: &[HourCounts]) -> HourlyChart {
        let h = 200.0;
        let max = hours
            .iter()
            .map(|(_, a, b, c)| a + b + c)
            .max()
            .unwrap_or(0) as f64;
        let (top_value, y_ticks) = value_axis(max.max(1.0), h);
        let plot_w = HOURLY_W - LEFT - RIGHT;
        let plot_h = h - TOP - BOTTOM;
        let slot = plot_w / hours.len().max(1) as f64;
        let y = |v: f64| TOP + plot_h - v / top_value * plot_h;
        let mut x_ticks = Vec::new();
        let bars = hours
            .iter()
            .enumerate()
            .map(|(i, &(hour, activated, not_yet, refused))| {
                let x0 = LEFT + i as f64 * slot;
                let label = jiff::Timestamp::from_second(hour)
                    .map(|t| t.strftime("%H:00").to_string())
                    .unwrap_or_default();
                if i % 4 == 0 {
                    x_ticks.push(Tick {
                        pos: f(x0 + slot / 2.0),
                        label: label.clone(),
                    });
                }
                let mut base = 0u64;
                let mut segments = Vec::new();
                for (n, class, what) in [
                    (activated, "activated", "activated"),
                    (not_yet, "notyet", "not yet (count insufficient)"),
                    (refused, "refused", "refused"),
                ] {
                    if n > 0 {
                        let top = y((base + n) as f64);
                        let height = y(base as f64) - top;
                        segments.push((
                            f(top),
                            f(height),
                            class,
                            format!("{label} UTC: {n} {what}"),
                        ));
                    }
                    base += n;
                }
                HourBar {
                    x: f(x0 + slot * 0.15),
                    width: f(slot * 0.7),
                    segments,
                }
            })
            .collect();
        HourlyChart {
            w: f(HOURLY_W),
            h: f(h),
            left: f(LEFT),
            right: f(HOURLY_W - RIGHT),
            bottom: f(TOP + plot_h),
            y_ticks,
            x_ticks,
            bars,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn value_axes_end_on_round_numbers() {
        assert_eq!(nice_step(25.0, 4.0), 10.0);
        assert_eq!(nice_step(3.0, 4.0), 1.0);
        assert_eq!(nice_step(180.0, 4.0), 50.0);
        let (top, ticks) = value_axis(26.0, 240.0);
        assert_eq!(top, 30.0);
        assert_eq!(ticks.last().unwrap().label, "30");
    }

    #[test]
    fn labels_are_escaped() {
        let chart = CountChart::new(
            "<script>".into(),
            &[1_767_225_600, 1_767_312_000],
            &[1, 2],
            &[("A&B".into(), 5)],
            0,
        );
        let html = chart.render().unwrap();
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("A&#38;B") || html.contains("A&amp;B"),
            "{html}"
        );
    }
}
