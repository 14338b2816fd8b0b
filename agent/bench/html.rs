//! The HTML report of `analyze-benchmarks`: one self-contained file (inline CSS and SVG, no
//! script, nothing fetched) with throughput, waits and utilization against pool size, the
//! model's prediction beside each measurement, and the recommendation with its reasoning.

use std::fmt::Write as _;

use super::analyze::{Analysis, Point};

/// Colours of the series; tests find the charts in a screenshot by them.
pub const MEASURED_COLOR: &str = "#1f77b4";
pub const PREDICTED_COLOR: &str = "#ff7f0e";
pub const RECOMMENDED_COLOR: &str = "#2ca02c";

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    values: Vec<Option<f64>>,
}

/// A round step for about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// A line chart over pool sizes, evenly spaced; `recommended` marks one of them.
fn chart(
    title: &str,
    unit: &str,
    sizes: &[u32],
    series: &[Series],
    recommended: Option<u64>,
) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let step = tick_step(max * 1.05);
    let top_value = (max * 1.05 / step).ceil().max(1.0) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if sizes.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * (0.05 + 0.9 * i as f64 / (sizes.len() - 1) as f64)
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v / top_value);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}">"##,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r##"<text x="{LEFT}" y="20" class="title">{} <tspan class="unit">({})</tspan></text>"##,
        escape(title),
        escape(unit)
    );
    let mut tick = 0.0;
    while tick <= top_value + step / 2.0 {
        let ty = y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#dddddd"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            ty + 4.0,
            number(tick)
        );
        tick += step;
    }
    for (i, size) in sizes.iter().enumerate() {
        let xi = x(i);
        if recommended == Some(u64::from(*size)) {
            let _ = write!(
                svg,
                r##"<line x1="{xi:.1}" x2="{xi:.1}" y1="{TOP}" y2="{:.1}" stroke="{RECOMMENDED_COLOR}" stroke-width="6" opacity="0.35"/>"##,
                TOP + plot_h
            );
        }
        let _ = write!(
            svg,
            r##"<text x="{xi:.1}" y="{:.1}" text-anchor="middle" class="tick">{size}</text>"##,
            TOP + plot_h + 18.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">pool_size</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 4.0
    );
    for s in series {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v)))
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        if points.len() > 1 {
            let dash = if s.dashed {
                r#" stroke-dasharray="10 6""#
            } else {
                ""
            };
            let _ = write!(
                svg,
                r##"<polyline fill="none" stroke="{}" stroke-width="3"{dash} points="{}"/>"##,
                s.color,
                points.join(" ")
            );
        }
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            if s.dashed {
                let _ = write!(
                    svg,
                    r##"<rect x="{}" y="{}" width="11" height="11" fill="{}" transform="translate(-5.5 -5.5)"><title>{}</title></rect>"##,
                    px,
                    py,
                    s.color,
                    escape(s.name)
                );
            } else {
                let _ = write!(
                    svg,
                    r##"<circle cx="{px}" cy="{py}" r="6" fill="{}"><title>{}</title></circle>"##,
                    s.color,
                    escape(s.name)
                );
            }
        }
    }
    // Legend.
    let mut lx = LEFT + plot_w - 10.0;
    for s in series.iter().rev() {
        let width = 14.0 + 7.0 * s.name.len() as f64;
        lx -= width + 16.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"##,
            TOP - 6.0,
            s.color,
            lx + 16.0,
            TOP + 4.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.2}", v * 1e3))
}

fn row(point: &Point) -> String {
    let p = point.predicted.as_ref();
    format!(
        "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.0}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        point.pool_size,
        point.max_overflow,
        point.throughput_per_second,
        p.map_or("–".into(), |p| format!("{:.0}", p.throughput_per_second)),
        ms(Some(point.mean_wait_seconds)),
        ms(p.and_then(|p| p.mean_wait_seconds)),
        ms(Some(point.p99_wait_seconds)),
        ms(p.and_then(|p| p.p99_wait_seconds)),
        point.mean_hold_seconds * 1e3,
        point.utilization * 100.0,
        p.map_or("–".into(), |p| format!("{:.0}%", p.utilization * 100.0)),
        point.errors + point.timeouts,
        escape(&point.file),
    )
}

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px 32px;color:#222;background:#fff}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}\
.meta{color:#555}.box{border-left:6px solid #2ca02c;background:#f3faf3;padding:12px 16px;margin:16px 0;max-width:1140px}\
.box .size{font-size:28px;font-weight:700}.charts{display:flex;flex-wrap:wrap;gap:16px}\
.chart{border:1px solid #e3e3e3;background:#fff}.chart .title{font-size:15px;font-weight:600}\
.chart .unit,.chart .tick,.chart .axis,.chart .legend{font-size:12px;fill:#444}\
table{border-collapse:collapse;margin-top:8px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td:last-child{text-align:left}ul.notes li{color:#8a4b00}";

/// The whole report page.
pub fn render(analysis: &Analysis) -> String {
    let sizes: Vec<u32> = analysis.points.iter().map(|p| p.pool_size).collect();
    let measured = |f: fn(&Point) -> f64| analysis.points.iter().map(|p| Some(f(p))).collect();
    let predicted = |f: fn(&Point) -> Option<f64>| analysis.points.iter().map(f).collect();
    let recommended = analysis.recommendation.as_ref().map(|r| r.pool_size);
    let model_name = match analysis.prediction_model {
        "erlang_c" => "Erlang C (M/M/c)",
        _ => "finite-source model (M/M/c//N)",
    };
    let pair = |name_measured: &'static str,
                values: Vec<Option<f64>>,
                predicted_values: Vec<Option<f64>>|
     -> Vec<Series<'static>> {
        let mut series = vec![Series {
            name: name_measured,
            color: MEASURED_COLOR,
            dashed: false,
            values,
        }];
        if predicted_values.iter().any(Option::is_some) {
            series.push(Series {
                name: "predicted",
                color: PREDICTED_COLOR,
                dashed: true,
                values: predicted_values,
            });
        }
        series
    };
    type Measured = fn(&Point) -> f64;
    type Predicted = fn(&Point) -> Option<f64>;
    // Title, unit, then the measured and the predicted value of a run in that unit.
    let panels: [(&str, &str, Measured, Predicted); 4] = [
        (
            "Throughput",
            "operations/s",
            |p| p.throughput_per_second,
            |p| p.predicted.map(|q| q.throughput_per_second),
        ),
        (
            "p99 wait for a connection",
            "ms",
            |p| p.p99_wait_seconds * 1e3,
            |p| {
                p.predicted
                    .and_then(|q| q.p99_wait_seconds)
                    .map(|v| v * 1e3)
            },
        ),
        (
            "Mean wait for a connection",
            "ms",
            |p| p.mean_wait_seconds * 1e3,
            |p| {
                p.predicted
                    .and_then(|q| q.mean_wait_seconds)
                    .map(|v| v * 1e3)
            },
        ),
        (
            "Utilization (active / pool_size)",
            "%",
            |p| p.utilization * 100.0,
            |p| p.predicted.map(|q| q.utilization * 100.0),
        ),
    ];
    let charts: Vec<String> = panels
        .iter()
        .map(|(title, unit, m, p)| {
            chart(
                title,
                unit,
                &sizes,
                &pair("measured", measured(*m), predicted(*p)),
                recommended,
            )
        })
        .collect();
    let s = &analysis.settings;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Pool sizing report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        html,
        "<h1>Pool sizing report</h1><p class=\"meta\">{} · operation {} · {} concurrent users · {} · {} s per run · {} runs</p>",
        escape(&s.backend),
        s.operation,
        s.concurrent_users,
        match s.arrival_rate {
            Some(rate) => format!("open loop, {rate} arrivals/s (Poisson)"),
            None => "closed loop (each user sends its next request when the last is done)".into(),
        },
        s.duration_seconds,
        analysis.points.len()
    );
    match &analysis.recommendation {
        Some(r) => {
            let _ = write!(
                html,
                "<div class=\"box\" id=\"recommendation\"><div>Recommended <b>pool_size</b></div><div class=\"size\">{}</div><div>model: <code>{}</code>{}</div><p>{}</p></div>",
                r.pool_size,
                r.model.as_str(),
                if r.meets_target {
                    String::new()
                } else {
                    " · does not meet the target".into()
                },
                escape(&r.reasoning)
            );
        }
        None => html.push_str("<div class=\"box\">No recommendation: no run completed.</div>"),
    }
    if let Some(w) = &analysis.workload {
        let _ = write!(
            html,
            "<p>Each run is predicted from its own arrival rate and mean hold time. Pooled over the runs, the workload the recommendation sizes for is {:.1} arrivals/s × {:.2} ms mean hold = {:.2} connections busy on average; p99 wait target {:.0} ms.</p>",
            w.arrival_rate,
            w.mean_hold_seconds * 1e3,
            w.offered_load(),
            analysis.target.p99_wait_seconds * 1e3
        );
    }
    let _ = write!(
        html,
        "<h2>Measured and predicted</h2><p class=\"meta\">Solid: measured. Dashed: the {model_name}'s prediction. Green band: the recommended size.</p><div class=\"charts\">{}</div>",
        charts.join("")
    );
    html.push_str("<h2>Runs</h2><table><tr><th>pool_size</th><th>max_overflow</th><th>ops/s</th><th>predicted ops/s</th><th>mean wait ms</th><th>predicted</th><th>p99 wait ms</th><th>predicted</th><th>mean hold ms</th><th>utilization</th><th>predicted</th><th>errors</th><th>report</th></tr>");
    for point in &analysis.points {
        html.push_str(&row(point));
    }
    html.push_str("</table>");
    if !analysis.notes.is_empty() {
        html.push_str("<h2>Notes</h2><ul class=\"notes\">");
        for note in &analysis.notes {
            let _ = write!(html, "<li>{}</li>", escape(note));
        }
        html.push_str("</ul>");
    }
    let _ = writeln!(
        html,
        "<p class=\"meta\">Generated by poolwatch {} analyze-benchmarks.</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ticks_are_round() {
        for (max, step) in [(95.0, 20.0), (7.0, 2.0), (0.42, 0.1), (12_000.0, 5_000.0)] {
            assert_eq!(tick_step(max), step, "{max}");
        }
        assert_eq!(tick_step(0.0), 1.0);
    }

    #[test]
    fn a_chart_draws_every_point_of_every_series() {
        let svg = chart(
            "t",
            "u",
            &[5, 10, 20],
            &[
                Series {
                    name: "measured",
                    color: MEASURED_COLOR,
                    dashed: false,
                    values: vec![Some(1.0), Some(2.0), Some(3.0)],
                },
                Series {
                    name: "predicted",
                    color: PREDICTED_COLOR,
                    dashed: true,
                    values: vec![None, Some(2.5), Some(3.5)],
                },
            ],
            Some(10),
        );
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<rect x=").count(), 2 + 2);
        assert_eq!(svg.matches(RECOMMENDED_COLOR).count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
