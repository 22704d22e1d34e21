//! The plot: the selected processes' histories on one time axis (seconds since the session
//! started), memory in binary units, and the pipeline's overlays. Lines are downsampled per
//! pixel column from each history's min/max pyramid and cached until the view changes.

use std::collections::{BTreeSet, HashMap};

use egui::Color32;
use egui_plot::{HLine, Legend, Line, LineStyle, Plot, PlotPoint, PlotPoints, Span, VLine};
use memtools::analysis::{Analysis, format};
use memtools::detect::ProcessResult;
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

/// Downsampled lines, valid for one view, width and data generation.
pub struct PlotCache {
    key: Option<(u64, [u64; 2], usize)>,
    lines: HashMap<i64, Vec<PlotPoint>>,
    /// The view the last frame showed, so the next one samples for it.
    view: Option<(f64, f64)>,
    /// Whether the last frame's x axis fitted the data by itself.
    auto_x: bool,
}

impl Default for PlotCache {
    fn default() -> Self {
        PlotCache {
            key: None,
            lines: HashMap::new(),
            view: None,
            auto_x: true,
        }
    }
}

/// What one frame drew, by item name (tests look at it) and how many line points.
#[derive(Clone, Debug, Default)]
pub struct Drawn {
    pub items: Vec<String>,
    pub points: usize,
}

const PALETTE: [Color32; 8] = [
    Color32::from_rgb(66, 133, 244),
    Color32::from_rgb(234, 67, 53),
    Color32::from_rgb(52, 168, 83),
    Color32::from_rgb(251, 188, 5),
    Color32::from_rgb(171, 71, 188),
    Color32::from_rgb(0, 172, 193),
    Color32::from_rgb(255, 112, 67),
    Color32::from_rgb(158, 157, 36),
];

/// Ticks of the time axis: seconds since the session's start, as h:mm:ss past a minute.
pub fn time_label(s: f64) -> String {
    if s.abs() < 60.0 {
        return format!("{s:.1} s");
    }
    let t = s.abs().round() as u64;
    let sign = if s < 0.0 { "-" } else { "" };
    format!("{sign}{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

/// The name of a process's line (and of its overlays, after a prefix).
pub fn line_name(name: &str, pid: u32) -> String {
    format!("{name} ({pid})")
}

/// Draws the plot. `generation` changes whenever `loaded` does, so cached lines are redone.
#[allow(clippy::too_many_arguments)]
pub fn show(
    ui: &mut egui::Ui,
    loaded: &Loaded,
    generation: u64,
    results: &HashMap<i64, &ProcessResult>,
    selected: &BTreeSet<i64>,
    overlays: &Overlays,
    cache: &mut PlotCache,
    pan: Option<f64>,
) -> Drawn {
    let unit = loaded.metric.unit();
    let plotted: Vec<_> = loaded
        .histories
        .iter()
        .enumerate()
        .filter(|(_, h)| selected.contains(&h.process.id))
        .collect();
    let full = plotted
        .iter()
        .filter_map(|(_, h)| h.series.x_range())
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    // While the plot fits its data (auto bounds: nobody zoomed or panned), sample everything,
    // so a growing live session is followed at once; else the view of the last frame.
    let view = if cache.auto_x {
        full
    } else {
        cache.view.or(full)
    };
    let (x0, x1) = view.unwrap_or((0.0, 1.0));
    let pixels = ui.available_width().max(100.0) as usize;
    // Sample a view wider than the last one, so a pan shows no missing edge before the next
    // frame catches up.
    let pad = (x1 - x0) * 0.5;
    let key = (
        generation,
        [(x0 - pad).to_bits(), (x1 + pad).to_bits()],
        pixels,
    );
    if cache.key != Some(key)
        || plotted
            .iter()
            .any(|(_, h)| !cache.lines.contains_key(&h.process.id))
    {
        cache.lines.clear();
        for (_, h) in &plotted {
            let mut out = Vec::new();
            h.series
                .downsample(x0 - pad, x1 + pad, pixels * 2, &mut out);
            cache.lines.insert(h.process.id, out);
        }
        cache.key = Some(key);
    }
    let mut drawn = Drawn::default();
    let start = loaded.session.start;
    let y_fmt = move |v: f64| format::amount(v, unit);
    let plot = Plot::new("history")
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
        .x_axis_label("time since the session started")
        .x_axis_formatter(|m, _| time_label(m.value))
        .y_axis_formatter(move |m, _| y_fmt(m.value))
        .y_axis_min_width(60.0)
        .allow_double_click_reset(true)
        .label_formatter(move |hover| {
            let (name, p) = match hover {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
            };
            let clock = crate::sessions::clock(start + (p.x * 1e9) as i64);
            let text = format!("{name}\n{} ({clock})\n{}", time_label(p.x), y_fmt(p.y));
            Some(text.trim_start().to_string())
        });
    let lines = &cache.lines;
    let items = &mut drawn.items;
    let mut points = 0;
    let mut auto_x = cache.auto_x;
    let response = plot.show(ui, |plot_ui| {
        auto_x = plot_ui.auto_bounds().x;
        if let Some(f) = pan {
            let width = plot_ui.plot_bounds().width();
            plot_ui.translate_bounds(egui::vec2((width * f) as f32, 0.0));
        }
        if overlays.phases {
            for item in phase_items(loaded) {
                items.push(item.name().to_string());
                item.add_to(plot_ui);
            }
        }
        for (i, (_, h)) in plotted.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let name = line_name(&h.process.info.name, h.process.info.key.pid);
            let pts = lines.get(&h.process.id).map_or(&[][..], Vec::as_slice);
            points += pts.len();
            plot_ui.line(
                Line::new(name.clone(), PlotPoints::Borrowed(pts))
                    .color(color)
                    .width(1.5),
            );
            items.push(name.clone());
            if let Some(r) = results.get(&h.process.id) {
                let x_origin = seconds_since(r.analysis.overlay.origin, start);
                let limit = r.limit.bytes.map(|b| b as f64);
                for item in
                    overlay_items(&r.analysis, x_origin, limit, overlays, color, &name, unit)
                {
                    items.push(item.name().to_string());
                    item.add_to(plot_ui);
                }
            }
        }
    });
    drawn.points = points;
    cache.auto_x = auto_x && pan.is_none();
    let b = response.transform.bounds();
    let view = (b.min()[0], b.max()[0]);
    if cache.view != Some(view) {
        cache.view = Some(view);
        ui.ctx().request_repaint();
    }
    drawn
}

impl PlotCache {
    /// The time range the plot showed in the last frame.
    pub fn view(&self) -> Option<(f64, f64)> {
        self.view
    }
}

/// Forgets the view (a new selection starts from the whole history).
pub fn reset_view(cache: &mut PlotCache) {
    *cache = PlotCache::default();
}

/// One overlay item, built before the plot so its name can be recorded.
enum Item {
    Line(Line<'static>),
    VLine(VLine),
    HLine(HLine),
    Span(Span),
}

impl Item {
    fn name(&self) -> &str {
        use egui_plot::PlotItem;
        match self {
            Item::Line(l) => l.name(),
            Item::VLine(l) => l.name(),
            Item::HLine(l) => l.name(),
            Item::Span(s) => s.name(),
        }
    }

    fn add_to(self, plot_ui: &mut egui_plot::PlotUi<'_>) {
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
fn phase_items(loaded: &Loaded) -> Vec<Item> {
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
fn overlay_items(
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
