//! Small inline SVG charts: no script, no library, a few hundred bytes each.

use maud::{html, Markup, PreEscaped};
use std::fmt::Write as _;

const W: f64 = 560.0;
const H: f64 = 140.0;
/// Room for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;

/// Lines over time buckets: `series` = (name, css colour, one value per bucket, `None` for
/// a bucket without data). `labels` name the first and last bucket.
pub fn lines(
    title: &str,
    unit: &str,
    series: &[(&str, &str, Vec<Option<f64>>)],
    labels: (&str, &str),
) -> Markup {
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0).max(2);
    let max = series.iter().flat_map(|s| s.2.iter().flatten()).fold(0.0_f64, |a, b| a.max(*b)).max(1.0);
    let x = |i: usize| LEFT + (W - LEFT - 4.0) * i as f64 / (n - 1) as f64;
    let y = |v: f64| 4.0 + (H - BOTTOM - 4.0) * (1.0 - v / max);
    let mut paths = String::new();
    for (name, colour, values) in series {
        let mut d = String::new();
        let mut pen_up = true;
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_up { "M" } else { "L" }, x(i), y(*v));
                    // A dot too: a bucket alone between empty ones is no line.
                    let _ = write!(
                        paths,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{colour}"><title>{name} {} {unit}</title></circle>"#,
                        x(i),
                        y(*v),
                        fmt(*v)
                    );
                    pen_up = false;
                }
                None => pen_up = true,
            }
        }
        let _ = write!(
            paths,
            r#"<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"><title>{name}</title></path>"#
        );
    }
    frame(title, &format!("{} {unit}", fmt(max)), labels, &paths, series.iter().map(|s| (s.0, s.1)).collect())
}

/// Stacked bars over time buckets: `stacks` = (name, css colour) and one count per stack
/// and bucket.
pub fn bars(title: &str, stacks: &[(&str, &str)], buckets: &[Vec<u64>], labels: (&str, &str)) -> Markup {
    let n = buckets.len().max(1);
    let max = buckets.iter().map(|b| b.iter().sum::<u64>()).max().unwrap_or(0).max(1) as f64;
    let slot = (W - LEFT - 4.0) / n as f64;
    let mut rects = String::new();
    for (i, b) in buckets.iter().enumerate() {
        let mut top = H - BOTTOM;
        for (k, count) in b.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let h = (H - BOTTOM - 4.0) * *count as f64 / max;
            top -= h;
            let (name, colour) = stacks.get(k).copied().unwrap_or(("", "#999"));
            let _ = write!(
                rects,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="{colour}"><title>{count} {name}</title></rect>"#,
                LEFT + slot * i as f64 + 1.0,
                (slot - 2.0).max(1.0),
            );
        }
    }
    frame(title, &fmt(max), labels, &rects, stacks.to_vec())
}

fn frame(
    title: &str,
    top_label: &str,
    labels: (&str, &str),
    body: &str,
    legend: Vec<(&str, &str)>,
) -> Markup {
    html! {
        figure.chart {
            figcaption { (title) " "
                @for (name, colour) in legend {
                    svg.key width="10" height="10" { rect width="10" height="10" fill=(colour) {} } " " (name) " "
                }
            }
            svg.chart width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                line x1=(LEFT) y1="4" x2=(LEFT) y2=(H - BOTTOM) stroke="#d9dee3" {}
                line x1=(LEFT) y1=(H - BOTTOM) x2=(W - 4.0) y2=(H - BOTTOM) stroke="#d9dee3" {}
                text x="2" y="12" font-size="10" fill="#5f6b76" { (top_label) }
                text x="2" y=(H - BOTTOM) font-size="10" fill="#5f6b76" { "0" }
                text x=(LEFT) y=(H - 4.0) font-size="10" fill="#5f6b76" { (labels.0) }
                text x=(W - 4.0) y=(H - 4.0) font-size="10" fill="#5f6b76" text-anchor="end" { (labels.1) }
                (PreEscaped(body))
            }
        }
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The `q` quantile (0..1) of `values` (sorted here), by nearest rank.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}
