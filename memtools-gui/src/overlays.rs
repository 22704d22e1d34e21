//! The plot's overlays: the phases a harness marked and, per process, what the pipeline saw
//! (gap boundaries, resampled grid, LBR windows and fits projected to the limit, trend, lower
//! envelope), built as plot items before the plot so their names can be recorded.

use egui::Color32;
use egui_plot::{HLine, Line, LineStyle, PlotPoints, Span, VLine};
use memtools::analysis::{Analysis, format};
use serde::{Deserialize, Serialize};

use crate::loader::{Loaded, seconds_since};

/// Which overlays are drawn; remembered across runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overlays {
    /// The phases a test harness marked (`MEMTOOLS_PHASES`), as shaded bands.
    pub phases: bool,
    pub gaps: bool,
    pub resampled: bool,
    pub lbr: bool,
    pub trend: bool,
    pub envelope: bool,
}

impl Default for Overlays {
    fn default() -> Self {
        Overlays {
            phases: true,
            gaps: true,
            resampled: false,
            lbr: true,
            trend: false,
            envelope: true,
        }
    }
}

impl Overlays {
    pub fn show(&mut self, ui: &mut egui::Ui) {
        ui.checkbox(&mut self.phases, "phases");
        ui.checkbox(&mut self.gaps, "gap boundaries");
        ui.checkbox(&mut self.resampled, "resampled");
        ui.checkbox(&mut self.lbr, "LBR window and fit");
        ui.checkbox(&mut self.trend, "trend");
        ui.checkbox(&mut self.envelope, "lower envelope");
    }
}

/// One overlay item, built before the plot so its name can be recorded.
pub(crate) enum Item {
    Line(Line<'static>),
    VLine(VLine),
    HLine(HLine),
    Span(Span),
}

impl Item {
    pub(crate) fn name(&self) -> &str {
        use egui_plot::PlotItem;
        match self {
            Item::Line(l) => l.name(),
            Item::VLine(l) => l.name(),
            Item::HLine(l) => l.name(),
            Item::Span(s) => s.name(),
        }
    }

    pub(crate) fn add_to(self, plot_ui: &mut egui_plot::PlotUi<'_>) {
        match self {
            Item::Line(l) => plot_ui.line(l),
            Item::VLine(l) => plot_ui.vline(l),
            Item::HLine(l) => plot_ui.hline(l),
            Item::Span(s) => plot_ui.span(s),
        }
    }
}

fn line(name: String, pts: Vec<[f64; 2]>, color: Color32, style: LineStyle) -> Item {
    Item::Line(
        Line::new(name, PlotPoints::from(pts))
            .color(color)
            .style(style)
            .width(1.2),
    )
}

/// The phases of the session as alternating faint bands named after them; a phase that never
/// ended runs to the session's last sample.
pub(crate) fn phase_items(loaded: &Loaded) -> Vec<Item> {
    let s = &loaded.session;
    let last = s.end.or(s.last_sample).unwrap_or(s.start);
    loaded
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x0 = seconds_since(p.begin, s.start);
            let x1 = seconds_since(p.end.unwrap_or(last), s.start).max(x0);
            let shade = if i % 2 == 0 { 28 } else { 16 };
            Item::Span(
                Span::new(format!("phase: {}", p.name), x0..=x1)
                    .fill(Color32::from_rgba_unmultiplied(120, 160, 255, shade)),
            )
        })
        .collect()
}

/// The overlays of one process: gap boundaries, resampled grid, LBR windows with their fitted
/// line projected to the limit, trend and lower envelope.
pub(crate) fn overlay_items(
    a: &Analysis,
    x0: f64,
    limit: Option<f64>,
    o: &Overlays,
    color: Color32,
    name: &str,
    unit: memtools::analysis::Unit,
) -> Vec<Item> {
    let ov = &a.overlay;
    let mut out = Vec::new();
    let faint = color.gamma_multiply(0.6);
    let dashed = LineStyle::Dashed { length: 6.0 };
    if o.gaps {
        for s in ov.segments.iter().skip(1) {
            let x = seconds_since(s.start, ov.origin) + x0;
            out.push(Item::VLine(
                VLine::new(format!("gap: {name}"), x)
                    .color(Color32::GRAY)
                    .style(LineStyle::Dotted { spacing: 4.0 }),
            ));
        }
    }
    if o.resampled {
        for s in &ov.segments {
            let pts = s.grid.t.iter().zip(&s.grid.y).map(|(t, y)| [t + x0, *y]);
            out.push(line(
                format!("resampled: {name}"),
                pts.collect(),
                faint,
                LineStyle::Dotted { spacing: 3.0 },
            ));
        }
    }
    if o.lbr {
        // The projection goes to the limit when it gets there within half the run again;
        // further out it stops there, so a distant limit does not squash the history.
        let horizon = (ov.end_s * 0.5).max(60.0);
        let mut reaches = false;
        for (flagged, w) in ov
            .segments
            .iter()
            .filter_map(|s| s.lbr.and_then(|l| Some((l.flagged, l.window?))))
        {
            let (ws, we) = (w.start_s + x0, w.end_s + x0);
            let fill = if flagged {
                Color32::from_rgba_unmultiplied(220, 60, 60, 40)
            } else {
                Color32::from_rgba_unmultiplied(128, 128, 128, 30)
            };
            out.push(Item::Span(
                Span::new(format!("LBR window: {name}"), ws..=we).fill(fill),
            ));
            let fit = [[ws, w.fit.at(w.start_s)], [we, w.fit.at(w.end_s)]];
            out.push(line(
                format!("LBR fit: {name}"),
                fit.to_vec(),
                Color32::from_rgb(220, 60, 60),
                LineStyle::Solid,
            ));
            let ttl = w.time_to_limit_s.filter(|t| t.is_finite());
            if let (true, Some(ttl)) = (flagged, ttl) {
                let ahead = ttl.min(horizon);
                reaches |= ttl <= horizon;
                let end = [we + ahead, w.fit.at(w.end_s + ahead)];
                out.push(line(
                    format!("LBR projection: {name}"),
                    vec![fit[1], end],
                    Color32::from_rgb(220, 60, 60),
                    dashed,
                ));
            }
        }
        if let (true, Some(limit)) = (reaches, limit) {
            out.push(Item::HLine(
                HLine::new(format!("limit {}", format::amount(limit, unit)), limit)
                    .color(Color32::from_rgb(220, 60, 60))
                    .style(dashed),
            ));
        }
    }
    let trend_line = |t: &memtools::analysis::trend::Trend, label: &str, c: Color32| {
        let pts = vec![
            [t.from_s + x0, t.slope * t.from_s + t.intercept],
            [t.to_s + x0, t.slope * t.to_s + t.intercept],
        ];
        line(format!("{label}: {name}"), pts, c, LineStyle::Solid)
    };
    if o.trend
        && let Some(t) = &ov.trend
    {
        out.push(trend_line(t, "trend", Color32::from_rgb(251, 188, 5)));
    }
    if o.envelope
        && let Some(t) = &ov.envelope
    {
        out.push(trend_line(
            t,
            "lower envelope",
            Color32::from_rgb(52, 168, 83),
        ));
        let pts = t
            .blocks
            .t
            .iter()
            .zip(&t.blocks.y)
            .map(|(t, y)| [t + x0, *y]);
        out.push(line(
            format!("lower envelope: {name}"),
            pts.collect(),
            Color32::from_rgb(52, 168, 83).gamma_multiply(0.7),
            LineStyle::Dotted { spacing: 3.0 },
        ));
    }
    out
}
