//! `compare --report DIR`: one HTML page (`report.html`) with the run's
//! plots, each also written as an SVG file beside it: throughput per row
//! (frames per second reaching the sink, one bar per path, grouped by
//! scenario), the latency CDF per path (from the sink's percentiles) and
//! the drops per row, then the RFC 9693 rows as a table.
//!
//! Drawn with `plotters` and its SVG backend only (no fonts, no bitmaps:
//! its built-in text metrics), so the page needs nothing to view but a
//! browser and the report needs no system library to write.
//!
//! Invariant: the page is self-contained: every SVG is inline in it (the
//! files beside it are copies), and every name from the run is escaped.

use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One bar: a row's `series` (the path) in its `group` (the scenario).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The group (scenario) it stands in.
    pub group: String,
    /// The series (path): its colour and legend.
    pub series: String,
    /// Its height.
    pub value: f64,
}

/// One path's latency at one offered rate: (microseconds, fraction of
/// frames at or below it) points, in increasing order.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdf {
    /// The legend: path and offered rate.
    pub label: String,
    /// (microseconds, fraction) points.
    pub points: Vec<(f64, f64)>,
}

/// A table row under the plots (the RFC 9693 rows).
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The test's name.
    pub test: String,
    /// The path measured.
    pub path: String,
    /// The result, with its unit.
    pub value: String,
    /// How it was found.
    pub detail: String,
}

/// What a page shows.
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// The machine line (`compare`'s first line).
    pub machine: String,
    /// Frames per second at the sink, per row.
    pub throughput: Vec<Bar>,
    /// Frames sent and never received, per row.
    pub drops: Vec<Bar>,
    /// Latency per path and rate.
    pub latency: Vec<Cdf>,
    /// The RFC 9693 rows.
    pub rfc9693: Vec<TableRow>,
    /// The JSON file beside the page, linked from it.
    pub json: Option<String>,
}

type Res<T> = Result<T, String>;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// 1500000 as "1.5M", 20000 as "20k".
fn human(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e3 => format!("{:.0}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

const SIZE: (u32, u32) = (900, 420);

/// Groups and series in first-seen order.
fn categories(bars: &[Bar]) -> (Vec<String>, Vec<String>) {
    let (mut groups, mut series): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for b in bars {
        if !groups.contains(&b.group) {
            groups.push(b.group.clone());
        }
        if !series.contains(&b.series) {
            series.push(b.series.clone());
        }
    }
    (groups, series)
}

/// The group under axis position `x`, `per` positions a group.
// A position on a chart of at most a few hundred bars: truncation to the
// group's index is the point, and a negative position floors to 0.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn group_at(x: f64, per: usize) -> usize {
    (x.max(0.0) / per.max(1) as f64).floor() as usize
}

/// A grouped bar chart: one group per scenario, one coloured bar per path.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> Res<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (groups, series) = categories(bars);
        let per = series.len().max(1) + 1;
        let width = (groups.len().max(1) * per) as f64;
        let top = bars.iter().map(|b| b.value).fold(0.0f64, f64::max).max(1.0) * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..width, 0f64..top)
            .map_err(e)?;
        let label_of = |x: &f64| -> String {
            // A group's name under its middle.
            let g = group_at(*x, per);
            let mid = (g * per) as f64 + (per - 1) as f64 / 2.0;
            match groups.get(g) {
                Some(name) if (x - mid).abs() < 0.5 => name.clone(),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len().max(1) * per * 2)
            .x_label_formatter(&label_of)
            .y_label_formatter(&|v| human(*v))
            .y_desc(y_label)
            .draw()
            .map_err(e)?;
        for (si, s) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let rects = bars.iter().filter(|b| &b.series == s).filter_map(|b| {
                let g = groups.iter().position(|x| *x == b.group)?;
                let x0 = (g * per + si) as f64 + 0.1;
                Some(Rectangle::new([(x0, 0.0), (x0 + 0.8, b.value)], color.filled()))
            });
            chart
                .draw_series(rects)
                .map_err(e)?
                .label(s.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Latency CDFs on a logarithmic time axis, one line per path and rate.
pub fn cdf_chart(title: &str, curves: &[Cdf]) -> Res<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let xs = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).filter(|x| *x > 0.0);
        let (lo, hi) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let lo = if lo == f64::MAX { 1.0 } else { lo };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((lo * 0.8..hi * 1.25).log_scale(), 0f64..1.02)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("latency (µs)")
            .y_desc("fraction of frames")
            .draw()
            .map_err(e)?;
        for (i, c) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            // Steps: the fraction holds until the next percentile.
            let mut pts = vec![(lo * 0.8, 0.0)];
            for w in c.points.iter().filter(|p| p.0 > 0.0) {
                let last = pts.last().map_or(0.0, |p| p.1);
                pts.push((w.0, last));
                pts.push((w.0, w.1));
            }
            chart
                .draw_series(std::iter::once(PathElement::new(pts, color.stroke_width(2))))
                .map_err(e)?
                .label(c.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// The page: heading, machine, each plot inline, the RFC 9693 table.
/// Returns the HTML and the plots as (file name, SVG).
pub fn render(data: &Data) -> Res<(String, Vec<(&'static str, String)>)> {
    let mut plots = Vec::new();
    if !data.throughput.is_empty() {
        plots.push(("throughput.svg", bar_chart("Throughput per row", "frames/s at the sink", &data.throughput)?));
    }
    if !data.latency.is_empty() {
        plots.push(("latency.svg", cdf_chart("Latency CDF per path (100k flows)", &data.latency)?));
    }
    if !data.drops.is_empty() {
        plots.push(("drops.svg", bar_chart("Drops per row (sent, never received)", "frames", &data.drops)?));
    }
    let mut h = String::new();
    let w = |h: &mut String, s: &str| h.push_str(s);
    w(&mut h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>masq compare</title>\n");
    w(&mut h, "<style>body{font-family:sans-serif;max-width:960px;margin:1em auto}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px;text-align:left}</style>\n");
    w(&mut h, "</head><body>\n<h1>masq beside the kernel's NAT</h1>\n");
    let _ = writeln!(h, "<p>{}</p>", escape(&data.machine));
    if let Some(j) = &data.json {
        let _ = writeln!(h, "<p>Every figure: <a href=\"{0}\">{0}</a>.</p>", escape(j));
    }
    for (name, svg) in &plots {
        let _ = writeln!(
            h,
            "<figure id=\"{name}\">\n{svg}\n<figcaption><a href=\"{name}\">{name}</a></figcaption></figure>"
        );
    }
    if !data.rfc9693.is_empty() {
        w(&mut h, "<h2>RFC 9693</h2>\n<table><tr><th>test</th><th>path</th><th>result</th><th>detail</th></tr>\n");
        for r in &data.rfc9693 {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.test),
                escape(&r.path),
                escape(&r.value),
                escape(&r.detail)
            );
        }
        w(&mut h, "</table>\n");
    }
    w(&mut h, "</body></html>\n");
    Ok((h, plots))
}

/// Writes `report.html` and its SVG files into `dir` (made if missing);
/// returns the page's path.
pub fn write(dir: &Path, data: &Data) -> Res<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|x| format!("{}: {x}", dir.display()))?;
    let (html, plots) = render(data)?;
    for (name, svg) in &plots {
        let p = dir.join(name);
        std::fs::write(&p, svg).map_err(|x| format!("{}: {x}", p.display()))?;
    }
    let page = dir.join("report.html");
    std::fs::write(&page, html).map_err(|x| format!("{}: {x}", page.display()))?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(group: &str, series: &str, value: f64) -> Bar {
        Bar { group: group.into(), series: series.into(), value }
    }

    fn small() -> Data {
        Data {
            machine: "machine: test <cpu>".into(),
            throughput: vec![
                bar("1flow", "kernel-nat", 500_000.0),
                bar("1flow", "masq-nat", 300_000.0),
                bar("rfc4814", "kernel-nat", 400_000.0),
                bar("rfc4814", "masq-nat", 280_000.0),
            ],
            drops: vec![bar("1flow", "kernel-nat", 10.0), bar("1flow", "masq-nat", 0.0)],
            latency: vec![
                Cdf {
                    label: "kernel-nat 100000/s".into(),
                    points: vec![(30.0, 0.5), (45.0, 0.9), (70.0, 0.99), (900.0, 1.0)],
                },
                Cdf {
                    label: "masq-nat 100000/s".into(),
                    points: vec![(25.0, 0.5), (50.0, 0.9), (500.0, 0.99), (2400.0, 1.0)],
                },
            ],
            rfc9693: vec![TableRow {
                test: "capacity".into(),
                path: "masq-nat".into(),
                value: "65536 sessions".into(),
                detail: "0 refused".into(),
            }],
            json: Some("compare.json".into()),
        }
    }

    #[test]
    fn the_page_holds_every_plot_inline_and_names_every_row() {
        let dir = std::env::temp_dir().join(format!("masq-report-test-{}", std::process::id()));
        let page = write(&dir, &small()).unwrap();
        let html = std::fs::read_to_string(&page).unwrap();
        assert_eq!(html.matches("<svg").count(), 3, "throughput, latency and drops inline");
        for f in ["throughput.svg", "latency.svg", "drops.svg"] {
            let svg = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(svg.starts_with("<svg") && html.contains(&svg), "{f} written and the same inline");
        }
        for name in ["1flow", "rfc4814", "kernel-nat", "masq-nat", "kernel-nat 100000/s", "65536 sessions"] {
            assert!(html.contains(name), "{name} on the page");
        }
        // Bars are drawn: a rectangle per bar at least (4 + 2, plus legends).
        let (_, plots) = render(&small()).unwrap();
        assert!(plots[0].1.matches("<rect").count() >= 4, "{}", plots[0].1);
        assert!(html.contains("machine: test &lt;cpu&gt;"), "escaped");
        assert!(html.contains("href=\"compare.json\""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_run_gives_a_page_without_plots() {
        let (html, plots) = render(&Data::default()).unwrap();
        assert!(plots.is_empty() && !html.contains("<svg") && html.contains("</html>"));
    }
}
