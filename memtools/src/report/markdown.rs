//! A Markdown summary for a pull-request comment or `$GITHUB_STEP_SUMMARY`: the verdicts, a
//! text sparkline of each leaking process (renders everywhere, even where SVG is stripped), and
//! an SVG plot of each beside the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analysis::{Analysis, Verdict, format};
use crate::detect::{ProcessResult, SessionReport};
use crate::units;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The history as the pipeline resampled it: (seconds since its start, bytes), gaps included.
fn points(a: &Analysis) -> Vec<(f64, f64)> {
    a.overlay
        .segments
        .iter()
        .flat_map(|s| s.grid.t.iter().copied().zip(s.grid.y.iter().copied()))
        .collect()
}

/// The largest value in each of `n` equal time buckets: peaks survive, as in the GUI's plot.
fn bucket_max(points: &[(f64, f64)], n: usize) -> Vec<f64> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let span = (last.0 - first.0).max(f64::MIN_POSITIVE);
    let mut out = vec![f64::NAN; n];
    for &(t, y) in points {
        let i = (((t - first.0) / span) * (n - 1) as f64).round() as usize;
        let slot = &mut out[i.min(n - 1)];
        *slot = if slot.is_nan() { y } else { slot.max(y) };
    }
    // Empty buckets (fewer points than buckets) carry the previous value.
    let mut last_seen = points[0].1;
    for v in &mut out {
        if v.is_nan() {
            *v = last_seen;
        }
        last_seen = *v;
    }
    out
}

/// A one-line text plot: `▁▁▂▃▄▅▆▇█`.
pub fn sparkline(a: &Analysis, width: usize) -> String {
    let values = bucket_max(&points(a), width);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    values
        .iter()
        .map(|&v| {
            let x = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
            BARS[((x * (BARS.len() - 1) as f64).round() as usize).min(BARS.len() - 1)]
        })
        .collect()
}

/// A small SVG line plot of a history (its first leaking metric's), with its first and peak
/// values written on it.
pub fn svg(r: &ProcessResult) -> String {
    let (w, h, pad) = (480.0, 120.0, 4.0);
    let (metric, analysis) = r.shown();
    let values = bucket_max(&points(analysis), 240);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let n = values.len().max(2) as f64 - 1.0;
    let mut path = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = pad + (w - 2.0 * pad) * i as f64 / n;
        let y = if hi > lo {
            h - pad - (h - 2.0 * pad - 16.0) * (v - lo) / (hi - lo)
        } else {
            h / 2.0
        };
        let _ = write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    let unit = metric.unit();
    let title = xml_escape(&format!(
        "{} (pid {}): {} {} → {}",
        r.process.info.name,
        r.process.info.key.pid,
        metric.name(),
        format::amount(lo.max(0.0), unit),
        format::amount(hi.max(0.0), unit)
    ));
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
<text x=\"{pad}\" y=\"13\" font-family=\"sans-serif\" font-size=\"12\">{title}</text>\
<path d=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/></svg>\n",
        path.trim_end()
    )
}

fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The directory of plots beside a Markdown report: `leaks.md` -> `leaks.plots`.
pub fn plots_dir(markdown: &Path) -> PathBuf {
    markdown.with_extension("plots")
}

/// The file name of a process's SVG in the plots directory: pid and a safe name.
pub fn svg_name(r: &ProcessResult) -> String {
    let safe: String = r
        .process
        .info
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}-{safe}.svg", r.process.info.key.pid)
}

/// The file name of a leaking process's growth-site flame graph in the plots directory.
pub fn flame_name(r: &ProcessResult) -> String {
    svg_name(r).replace(".svg", "-sites.svg")
}

/// The relative paths of a leak's plot and of its growth-site flame graph, when written.
pub type PlotPaths = (Option<String>, Option<String>);

/// The Markdown text. `plots` gives, for a leaking process, the relative paths of its SVG and
/// of its growth-site flame graph (when it has sites) when they were written.
pub fn render(
    report: &SessionReport,
    plots: &mut dyn FnMut(&ProcessResult) -> PlotPaths,
) -> String {
    let s = &report.session;
    let (leaks, ok, insufficient) = report.counts();
    let mut out = String::new();
    let headline = match leaks {
        0 => "no leak".to_string(),
        1 => "1 leak".to_string(),
        n => format!("{n} leaks"),
    };
    let _ = writeln!(
        out,
        "## memtools: {headline} in `{}`\n",
        md_escape(s.what())
    );
    let _ = writeln!(
        out,
        "{}, {} judged, {} detector: {}, {ok} ok, {insufficient} insufficient.\n",
        units::processes(report.processes.len() as u64),
        report.metrics_words(),
        report.params.algo.name(),
        units::count(leaks as u64, "leak", "leaks"),
    );
    let leaking: Vec<&ProcessResult> = report
        .processes
        .iter()
        .filter(|r| r.verdict() == Verdict::Leak)
        .collect();
    if !leaking.is_empty() {
        let _ = writeln!(
            out,
            "| process | pid | peak | history | evidence |\n|---|---:|---:|---|---|"
        );
        for r in &leaking {
            let _ = writeln!(
                out,
                "| **{}** | {} | {} | `{}` | {} |",
                md_escape(&r.process.info.name),
                r.process.info.key.pid,
                md_escape(&super::verdicts::peak_words(r)),
                sparkline(r.shown().1, 24),
                md_escape(&r.explanation())
            );
        }
        out.push('\n');
        for r in &leaking {
            let (plot, flame) = plots(r);
            if let Some(path) = plot {
                let _ = writeln!(
                    out,
                    "![{} (pid {})]({path})\n",
                    md_escape(&r.process.info.name),
                    r.process.info.key.pid
                );
            }
            if let Some(path) = flame {
                let _ = writeln!(
                    out,
                    "[Where {} (pid {}) grows: flame graph]({path})\n",
                    md_escape(&r.process.info.name),
                    r.process.info.key.pid
                );
            }
        }
    }
    let over: Vec<&ProcessResult> = report.over_budget().collect();
    if !over.is_empty() {
        let _ = writeln!(out, "### Over their peak budget\n");
        for r in over {
            let _ = writeln!(
                out,
                "- **{}** (pid {}): peak {}",
                md_escape(&r.process.info.name),
                r.process.info.key.pid,
                md_escape(&super::verdicts::peak_words(r))
            );
        }
        out.push('\n');
    }
    if let Some(b) = &report.baseline {
        let _ = writeln!(out, "### Compared with session {}\n", b.baseline_session);
        if b.regressions.is_empty() {
            let _ = writeln!(out, "No regression.\n");
        }
        for r in &b.regressions {
            let _ = writeln!(out, "- {}", md_escape(&r.words()));
        }
        out.push('\n');
    }
    let rest: Vec<&ProcessResult> = report
        .processes
        .iter()
        .filter(|r| r.verdict() != Verdict::Leak)
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>{} other {}</summary>\n\n| verdict | process | pid | samples | peak | why |\n|---|---|---:|---:|---:|---|",
            rest.len(),
            if rest.len() == 1 {
                "process"
            } else {
                "processes"
            }
        );
        for r in rest {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.verdict().name(),
                md_escape(&r.process.info.name),
                r.process.info.key.pid,
                r.analysis.samples,
                md_escape(&super::verdicts::peak_words(r)),
                md_escape(&r.analysis.reason)
            );
        }
        out.push_str("\n</details>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_keep_peaks_and_fill_holes() {
        let pts = [(0.0, 1.0), (1.0, 5.0), (2.0, 2.0), (10.0, 3.0)];
        assert_eq!(bucket_max(&pts, 3), vec![5.0, 5.0, 3.0]);
        assert!(bucket_max(&[], 4).is_empty());
    }
}
