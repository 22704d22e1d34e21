//! One process's history as a chart (braille or block drawing), the line its verdict's detector
//! fitted over its window, and the evidence in words.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, LegendPosition, Paragraph, Wrap};

use memtools::analysis::{Evidence, Verdict, format};
use memtools::detect::LimitSource;
use memtools::model::{Metric, NS_PER_SEC, TimeNs};

use super::words;
use crate::snapshot::{Judged, Row};
use crate::state::{Drawing, View};
use crate::theme::Theme;

pub fn draw(f: &mut Frame, area: Rect, view: &mut View) {
    let t = view.theme;
    let snap = &view.snapshot;
    let metric = snap.metric;
    let Some(row) = view.selected() else {
        let text = Line::styled("no process selected (Esc: back to the table)", t.dim());
        f.render_widget(Paragraph::new(text), area);
        return;
    };
    let [title, plot, evidence] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(4),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(title_line(row, metric, &t)), title);
    f.render_widget(
        Paragraph::new(evidence_lines(row.judged.as_deref(), metric, &t)).wrap(Wrap { trim: true }),
        evidence,
    );
    let origin = snap.session.as_ref().map_or(0, |s| s.start);
    let points = snap
        .focus
        .as_ref()
        .filter(|f| f.id == row.id)
        .map(|f| &f.points);
    let Some(points) = points.filter(|p| !p.is_empty()) else {
        let text = Line::styled("reading the history...", t.dim());
        f.render_widget(Paragraph::new(text), plot);
        return;
    };
    let seconds = |time: TimeNs| (time - origin) as f64 / NS_PER_SEC as f64;
    let data: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (seconds(x), y as f64))
        .collect();
    let fit: Vec<(f64, f64)> = row
        .judged
        .as_ref()
        .and_then(|j| j.line)
        .map(|line| line.iter().map(|&(t, y)| (seconds(t), y)).collect())
        .unwrap_or_default();
    let (x0, x1) = (data[0].0, data[data.len() - 1].0.max(data[0].0 + 1.0));
    let (lo, hi) = data
        .iter()
        .chain(&fit)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let pad = ((hi - lo) * 0.05).max(1.0);
    let (lo, hi) = ((lo - pad).max(0.0), hi + pad);
    let marker = match (view.drawing, t.unicode) {
        (_, false) => Marker::Custom('*'),
        (Drawing::Braille, true) => Marker::Braille,
        (Drawing::Block, true) => Marker::HalfBlock,
    };
    let mut datasets = vec![
        Dataset::default()
            .name(metric.name())
            .marker(marker)
            .graph_type(GraphType::Line)
            .style(t.history())
            .data(&data),
    ];
    if !fit.is_empty() {
        let detector = row
            .judged
            .as_ref()
            .and_then(|j| j.evidence)
            .map_or("", |e| detector_name(&e));
        datasets.push(
            Dataset::default()
                .name(format!("fit ({detector})"))
                .marker(marker)
                .graph_type(GraphType::Line)
                .style(t.fit())
                .data(&fit),
        );
    }
    let value = |v: f64| words::value(metric, Some(v.max(0.0) as u64));
    // Top left: memory that grows fills the top right.
    let chart = Chart::new(datasets)
        .legend_position(Some(LegendPosition::TopLeft))
        // Shown unless it would cover a third of the width or half of the height.
        .hidden_legend_constraints((Constraint::Ratio(1, 3), Constraint::Ratio(1, 2)))
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([
                    words::seconds(x0),
                    words::seconds((x0 + x1) / 2.0),
                    words::seconds(x1),
                ])
                .style(t.dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([value(lo), value((lo + hi) / 2.0), value(hi)])
                .style(t.dim()),
        );
    f.render_widget(chart, plot);
}

fn title_line(row: &Row, metric: Metric, t: &Theme) -> Line<'static> {
    let dot = t.dot();
    let state = if row.exited { "exited" } else { "running" };
    Line::from(vec![
        Span::styled(format!("{} (pid {})", row.name, row.pid), t.title()),
        Span::raw(format!(
            "{dot}{state}{dot}{} {}{dot}{} since first seen{dot}{}",
            metric.name(),
            words::value(metric, row.value),
            words::growth(metric, row.growth),
            row.cmdline
        )),
    ])
}

fn evidence_lines(judged: Option<&Judged>, metric: Metric, t: &Theme) -> Vec<Line<'static>> {
    let Some(j) = judged else {
        return vec![Line::styled(
            "no verdict yet: verdicts are recomputed in the background, at most once a second",
            t.dim(),
        )];
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(j.verdict.name().to_uppercase(), t.verdict(Some(j.verdict))),
        Span::raw(format!("  {}", j.reason)),
    ])];
    if let Some(e) = &j.evidence {
        let limit = match j.limit.source {
            LimitSource::Given => "given",
            LimitSource::Cgroup => "its cgroup",
            LimitSource::RecordingMachine => "the recording machine's memory",
            LimitSource::ThisMachine => "this machine's memory",
            LimitSource::AddressSpace => "its address-space limit",
            LimitSource::OpenFiles => "its open-file limit",
            LimitSource::Tasks => "its cgroup's pids.max",
            LimitSource::ThreadsMax => "the machine's threads-max",
            LimitSource::PidMax => "the machine's pid_max",
            LimitSource::None => "nothing bounds it",
        };
        let window = (e.window_end - e.window_start) as f64 / NS_PER_SEC as f64;
        let mut detail = format!(
            "detector {}{dot}slope {}{dot}window {}{dot}R^2 {:.2}{dot}{} samples",
            detector_name(e),
            words::slope(metric, Some(e.slope_bytes_per_s)),
            format::duration(window),
            e.r2,
            j.samples,
            dot = t.dot(),
        );
        if let Some(bytes) = j.limit.bytes
            && (j.verdict == Verdict::Leak || metric.is_bytes())
        {
            detail.push_str(&format!(
                "{}limit {} ({limit})",
                t.dot(),
                words::value(metric, Some(bytes))
            ));
        }
        lines.push(Line::styled(detail, t.dim()));
    }
    lines
}

fn detector_name(e: &Evidence) -> &'static str {
    use memtools::analysis::Detector;
    match e.detector {
        Detector::Lbr => "lbr",
        Detector::Trend => "trend",
        Detector::Envelope => "envelope",
        Detector::Cpd => "cpd",
        Detector::Phases => "phases",
    }
}
