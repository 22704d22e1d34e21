//! The "where it grows" panel: for the selected process, its growth sites (recorded with eBPF)
//! in a time range, as a table and a flame graph. The range is the process's leak window, the
//! whole recording, the plot's visible range, or a range shift-dragged on the plot; the panel
//! says which ("sites in 12.0 s .. 30.5 s").
//!
//! Sites are read off the UI thread ([`crate::loader::Jobs::sites`]) only when the process or
//! the range changes, a quarter second after it stopped changing (a pan or a drag asks once).

use std::time::{Duration, Instant};

use egui::{PointerButton, RichText};
use egui_plot::PlotTransform;
use memtools::analysis::{Verdict, format};
use memtools::sites::{SHALLOW_STACKS, Window};

use crate::app::App;
use crate::flame::{self, FlameState};
use crate::loader::{Jobs, seconds_since};
use crate::plot::time_label;
use crate::problem::Problem;
use crate::sites::{SiteRange, SitesData, SitesQuery, time_at};

/// How long the range must hold still before the store is asked again.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// A query and the data generation it was asked for (a session still being recorded is asked
/// again as it grows; a finished one never).
type Key = (SitesQuery, u64);

/// The panel's state, kept in [`App`].
pub struct SitesPanel {
    pub range: SiteRange,
    /// The process shown, among those selected in the table.
    pub process: Option<i64>,
    pub drag: RangeDrag,
    /// What the UI wants now and since when (for the debounce).
    wanted: Option<(Key, Instant)>,
    /// The query of the last job started.
    asked: Option<Key>,
    /// The query `data` answers.
    answered: Option<Key>,
    job: u64,
    pub data: Option<Result<SitesData, Problem>>,
    pub flame: FlameState,
    /// What the flame graph drew in the last frame.
    pub drawn: flame::Drawn,
}

impl Default for SitesPanel {
    fn default() -> Self {
        SitesPanel {
            range: SiteRange::Leak,
            process: None,
            drag: RangeDrag::default(),
            wanted: None,
            asked: None,
            answered: None,
            job: 0,
            data: None,
            flame: FlameState::default(),
            drawn: flame::Drawn::default(),
        }
    }
}

impl SitesPanel {
    /// Forgets what was read (another session or metric), keeping the kind of range.
    pub fn reset(&mut self) {
        *self = SitesPanel {
            range: self.range,
            ..SitesPanel::default()
        };
    }

    /// Whether the panel waits for sites it wants.
    pub fn pending(&self) -> bool {
        self.wanted.is_some_and(|(w, _)| self.answered != Some(w))
    }

    /// Asks the store for `want` once it has held still for [`DEBOUNCE`] (at once for the first
    /// question about a process). Returns how long to wait before asking, when waiting.
    fn tick(
        &mut self,
        want: Option<Key>,
        jobs: &mut Jobs,
        path: &std::path::Path,
    ) -> Option<Duration> {
        let now = Instant::now();
        let Some(want) = want else {
            self.wanted = None;
            return None;
        };
        if self.wanted.is_none_or(|(w, _)| w != want) {
            self.wanted = Some((want, now));
        }
        let (key, since) = self.wanted?;
        if self.asked == Some(key) || self.drag.active() {
            return None;
        }
        let first = self
            .asked
            .is_none_or(|a| (a.0.session, a.0.process) != (key.0.session, key.0.process));
        let wait = DEBOUNCE.saturating_sub(now.duration_since(since));
        if first || wait.is_zero() {
            self.job = jobs.sites(path.to_path_buf(), key.0);
            self.asked = Some(key);
            return None;
        }
        Some(wait)
    }

    /// Takes a job's reply; a superseded one is dropped.
    pub(crate) fn on_reply(&mut self, job: u64, result: Result<SitesData, Problem>) {
        if job == self.job {
            self.answered = self.asked;
            self.data = Some(result);
        }
    }

    /// The range to shade on the plot: the one being dragged, else the one selected.
    pub fn plot_span(&self) -> Option<(f64, f64)> {
        self.drag.span().or(match self.range {
            SiteRange::Selected(a, b) => Some((a, b)),
            _ => None,
        })
    }
}

/// A shift-drag on the plot selecting a time range (the plot pans on a plain drag).
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeDrag {
    from: Option<f64>,
    to: f64,
}

impl RangeDrag {
    pub fn active(&self) -> bool {
        self.from.is_some()
    }

    /// The range being dragged, in seconds since the session started.
    pub fn span(&self) -> Option<(f64, f64)> {
        self.from.map(|f| (f.min(self.to), f.max(self.to)))
    }

    /// Whether a drag on the plot should select rather than pan.
    pub fn selecting(ui: &egui::Ui) -> bool {
        ui.input(|i| i.modifiers.shift)
    }

    /// Follows the drag over the plot's response; the range when the button is released.
    pub fn follow(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        transform: &PlotTransform,
    ) -> Option<(f64, f64)> {
        let x_at = |p: egui::Pos2| transform.value_from_position(p).x.max(0.0);
        if response.drag_started_by(PointerButton::Primary)
            && Self::selecting(ui)
            && let Some(p) = ui.input(|i| i.pointer.press_origin())
        {
            self.from = Some(x_at(p));
            self.to = x_at(p);
        }
        self.from?;
        if let Some(p) = ui.input(|i| i.pointer.interact_pos()) {
            self.to = x_at(p);
        }
        if response.dragged_by(PointerButton::Primary) {
            ui.ctx().request_repaint();
            return None;
        }
        let span = self.span();
        self.from = None;
        span.filter(|(a, b)| b > a)
    }
}

impl App {
    /// The window the panel counts for `process`, and how to say it; `None` while the leak
    /// window is not known yet (the pipeline still running).
    fn sites_window(&self, process: i64) -> Option<(Window, String)> {
        let start = self.loaded.as_ref()?.session.start;
        let span = |a: f64, b: f64, what: &str| {
            let w = Window {
                start: Some(time_at(start, a)),
                end: Some(time_at(start, b)),
            };
            (
                w,
                format!("sites in {} .. {}{what}", time_label(a), time_label(b)),
            )
        };
        let all = (Window::ALL, "sites in the whole recording".to_string());
        Some(match self.sites.range {
            SiteRange::All => all,
            SiteRange::Selected(a, b) => span(a, b, ", selected on the plot"),
            SiteRange::View => match self.plot_view() {
                Some((a, b)) => span(a.max(0.0), b.max(0.0), ", the plot's view"),
                None => all,
            },
            SiteRange::Leak => {
                self.results.as_ref()?;
                let leak = self
                    .result_of(process)
                    .filter(|r| r.analysis.verdict == Verdict::Leak)
                    .and_then(|r| r.analysis.evidence.as_ref());
                match leak {
                    Some(e) => span(
                        seconds_since(e.window_start, start),
                        seconds_since(e.window_end, start),
                        ", its leak window",
                    ),
                    None => (all.0, format!("{} (it does not leak)", all.1)),
                }
            }
        })
    }

    /// Works out what the panel wants and asks the store when it changed and held still.
    pub(crate) fn drive_sites(&mut self, ctx: &egui::Context) {
        let want = self.sites_want();
        if let Some(wait) = self.sites.tick(want, &mut self.jobs, &self.store_path) {
            ctx.request_repaint_after(wait);
        }
    }

    fn sites_want(&mut self) -> Option<Key> {
        let loaded = self.loaded.clone()?;
        if !loaded.has_sites {
            return None;
        }
        if !self
            .sites
            .process
            .is_some_and(|p| self.selected.contains(&p))
        {
            self.sites.process = self.selected.first().copied();
        }
        let process = self.sites.process?;
        let (window, _) = self.sites_window(process)?;
        let live = if loaded.session.end.is_none() {
            self.generation()
        } else {
            0
        };
        let session = loaded.session.id;
        Some((
            SitesQuery {
                session,
                process,
                window,
            },
            live,
        ))
    }

    /// Draws the panel (only for a session that recorded sites).
    pub(crate) fn sites_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Where it grows");
            self.sites_process_picker(ui);
            if self.sites.pending() {
                ui.spinner();
            }
        });
        ui.horizontal(|ui| {
            let r = &mut self.sites.range;
            ui.radio_value(r, SiteRange::Leak, "leak window");
            ui.radio_value(r, SiteRange::All, "whole recording");
            ui.radio_value(r, SiteRange::View, "plot's view");
            let selected = matches!(r, SiteRange::Selected(..));
            ui.add_enabled(selected, egui::RadioButton::new(selected, "selected range"));
            ui.weak("shift-drag on the plot to select a range");
        });
        let Some(process) = self.sites.process else {
            ui.label("Click a process in the table to see where it grows.");
            return;
        };
        if let Some((_, said)) = self.sites_window(process) {
            ui.label(RichText::new(said).strong());
        }
        match &self.sites.data {
            None => {
                ui.spinner();
            }
            Some(Err(p)) => {
                ui.label(RichText::new(&p.title).strong());
            }
            Some(Ok(data)) if data.stacks == 0 => {
                ui.label("no growth sites sampled for this process in this range");
            }
            Some(Ok(data)) if data.shallow => {
                ui.label(RichText::new("where it grows: unknown").strong());
                ui.label(SHALLOW_STACKS);
            }
            Some(Ok(data)) => {
                ui.weak(format!(
                    "{} in {} samples, {} distinct stacks",
                    format::bytes(data.bytes as f64),
                    data.samples,
                    data.stacks
                ));
                sites_table(ui, data);
                ui.horizontal(|ui| {
                    if let Some(zoomed) = self.sites.flame.zoom.last() {
                        ui.weak(format!("zoomed into {zoomed}"));
                        if ui.button("whole graph").clicked() {
                            self.sites.flame.zoom.clear();
                        }
                    } else {
                        ui.weak("flame graph: widths are bytes; hover a frame for its details, click to zoom");
                    }
                });
                egui::ScrollArea::vertical()
                    .id_salt("flame_scroll")
                    .auto_shrink([false, true])
                    .show(ui, |ui| {
                        self.sites.drawn = flame::show(ui, &data.tree, &mut self.sites.flame);
                    });
            }
        }
    }

    fn sites_process_picker(&mut self, ui: &mut egui::Ui) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        let name = |id: i64| {
            loaded
                .histories
                .iter()
                .find(|h| h.process.id == id)
                .map(|h| format!("{} ({})", h.process.info.name, h.process.info.key.pid))
                .unwrap_or_default()
        };
        let Some(current) = self.sites.process else {
            return;
        };
        if self.selected.len() < 2 {
            ui.label(RichText::new(name(current)).strong());
            return;
        }
        let mut chosen = current;
        egui::ComboBox::new("sites_process", "")
            .selected_text(name(current))
            .show_ui(ui, |ui| {
                for &id in &self.selected {
                    ui.selectable_value(&mut chosen, id, name(id));
                }
            });
        self.sites.process = Some(chosen);
    }
}

/// The sites named after the program's own frames, largest first.
fn sites_table(ui: &mut egui::Ui, data: &SitesData) {
    egui::ScrollArea::vertical()
        .id_salt("sites_table")
        .max_height(80.0)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("sites_grid")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for h in ["share", "bytes", "samples", "function", "file:line"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for s in &data.summary {
                        ui.label(flame::share_text(s.bytes, data.bytes));
                        ui.label(format::bytes(s.bytes as f64));
                        ui.label(s.samples.to_string());
                        ui.label(&s.function);
                        let place = match (&s.file, s.line) {
                            (Some(f), Some(l)) => format!("{}:{l}", base(f)),
                            (Some(f), None) => base(f).to_string(),
                            _ => String::new(),
                        };
                        let r = ui.weak(place);
                        if let Some(f) = &s.file {
                            r.on_hover_text(f);
                        }
                        ui.end_row();
                    }
                });
        });
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
