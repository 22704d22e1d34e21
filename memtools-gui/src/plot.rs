//! The plot: the selected processes' histories on one time axis (seconds since the session
//! started), memory in binary units, and the pipeline's overlays. Lines are downsampled per
//! pixel column from each history's min/max pyramid and cached until the view changes.

use std::collections::{BTreeSet, HashMap};

use egui::Color32;
use egui_plot::{Legend, Line, Plot, PlotPoint, PlotPoints};
use memtools::analysis::format;
use memtools::detect::ProcessResult;

use crate::loader::{Loaded, seconds_since};
pub use crate::overlays::Overlays;
use crate::overlays::{overlay_items, phase_items};

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
    /// A time range shift-dragged on the plot, when one was released in this frame.
    pub selected: Option<(f64, f64)>,
    /// Where plot coordinates were on the screen (tests drag across the plot with it).
    pub transform: Option<egui_plot::PlotTransform>,
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

/// The name of the shaded range the growth sites are counted in, when chosen on the plot.
pub const SITES_RANGE: &str = "growth sites' range";

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
    sites: &mut crate::sites_panel::SitesPanel,
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
        // A shift-drag selects the growth sites' range instead of panning.
        .allow_drag(!crate::sites_panel::RangeDrag::selecting(ui))
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
    let sites_span = sites.plot_span();
    let response = plot.show(ui, |plot_ui| {
        auto_x = plot_ui.auto_bounds().x;
        if let Some(f) = pan {
            let width = plot_ui.plot_bounds().width();
            plot_ui.translate_bounds(egui::vec2((width * f) as f32, 0.0));
        }
        if let Some((a, b)) = sites_span {
            items.push(SITES_RANGE.to_string());
            plot_ui.span(
                egui_plot::Span::new(SITES_RANGE, a..=b)
                    .fill(Color32::from_rgba_unmultiplied(255, 170, 0, 40)),
            );
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
    drawn.transform = Some(response.transform);
    drawn.selected = sites
        .drag
        .follow(ui, &response.response, &response.transform);
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
