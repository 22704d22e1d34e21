//! One frame: the store bar, the sessions panel, the parameter panel, and in the middle the
//! process table above the plot. Each panel draws from the [`App`] state and hands back what
//! the user did; the state changes after drawing, never inside the closures' borrows.

use std::collections::HashMap;
use std::path::PathBuf;

use egui::{Panel, RichText};
use memtools::analysis::format;
use memtools::detect::{LimitSource, ProcessResult};
use memtools::model::Metric;

use crate::app::{App, LoadState};

/// The metrics a person picks from: memory, and the leaks that are not bytes (the call and
/// fault counters are for the CLI).
const METRICS: [Metric; 8] = [
    Metric::Rss,
    Metric::RssAnon,
    Metric::RssFile,
    Metric::RssShmem,
    Metric::Swap,
    Metric::VmSize,
    Metric::Threads,
    Metric::Fds,
];

impl App {
    /// Draws the whole app into `ui` (the eframe window, or a test harness).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll(ui.ctx());
        self.drive_sites(ui.ctx());
        if self.frame_stats.all && !self.busy() && self.selected.len() < self.rows.len() {
            self.selected = self.rows.iter().map(|r| r.process_id).collect();
        }
        let ready = !self.busy() && !self.selected.is_empty();
        self.frame_stats.record(ui.ctx(), ready);
        Panel::top("store").show(ui, |ui| self.store_bar(ui));
        Panel::left("sessions")
            .resizable(true)
            .default_size(280.0)
            .min_size(220.0)
            .show(ui, |ui| self.sessions_panel(ui));
        Panel::right("params")
            .resizable(true)
            .default_size(260.0)
            .show(ui, |ui| self.params_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| self.main_area(ui));
    }

    fn store_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("Store");
            let field = ui.add(
                egui::TextEdit::singleline(&mut self.path_field)
                    .desired_width(360.0)
                    .hint_text("path to a memtools store"),
            );
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Open").clicked() || enter {
                self.open_store(PathBuf::from(self.path_field.trim()));
            }
            let mut chosen = None;
            ui.menu_button("Recent", |ui| {
                for p in &self.saved.recent {
                    if ui.button(p.display().to_string()).clicked() {
                        chosen = Some(p.clone());
                        ui.close();
                    }
                }
            });
            if let Some(p) = chosen {
                self.open_store(p);
            }
            if ui.button("Reload").clicked() {
                self.reload();
            }
            ui.separator();
            self.status(ui);
        });
    }

    fn status(&mut self, ui: &mut egui::Ui) {
        match &self.load {
            LoadState::Loading { done, total } => {
                let frac = if *total > 0 {
                    *done as f32 / *total as f32
                } else {
                    0.0
                };
                ui.add(
                    egui::ProgressBar::new(frac.min(1.0))
                        .desired_width(220.0)
                        .text(format!("reading {done} of {total} samples")),
                );
            }
            _ if self.analysing => {
                ui.spinner();
                ui.label("running the pipeline…");
            }
            _ if self.sessions.is_none() => {
                ui.spinner();
                ui.label("reading sessions…");
            }
            _ => {}
        }
    }

    fn sessions_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Sessions");
        let mut clicked = None;
        match &self.sessions {
            None => {
                ui.spinner();
            }
            Some(Err(p)) => {
                ui.label(RichText::new(&p.title).strong());
            }
            Some(Ok(list)) => {
                clicked = crate::sessions::show(ui, list, self.selected_session, &self.counts);
            }
        }
        if let Some(id) = clicked {
            self.select_session(id);
        }
    }

    fn params_panel(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical()
            .id_salt("params_scroll")
            .show(ui, |ui| {
                ui.heading("Pipeline");
                if crate::params_panel::show(ui, &mut self.saved.knobs, self.this_machine) {
                    self.request_analysis();
                }
                ui.separator();
                ui.heading("Overlays");
                self.saved.overlays.show(ui);
                ui.separator();
                self.evidence(ui);
            });
    }

    /// The selected processes' verdicts in words: why the pipeline said what it said.
    fn evidence(&self, ui: &mut egui::Ui) {
        for &id in &self.selected {
            if let Some(r) = self.result_of(id) {
                let info = &r.process.info;
                ui.label(RichText::new(format!("{} ({})", info.name, info.key.pid)).strong());
                ui.label(
                    RichText::new(r.analysis.verdict.name())
                        .color(crate::table::verdict_color(Some(r.analysis.verdict))),
                );
                ui.label(&r.analysis.reason);
                let unit = r.metric.unit();
                ui.label(format!("peak {}", format::amount(r.peak as f64, unit)));
                if let Some(e) = &r.analysis.evidence {
                    // The whole growth, whatever the verdict, so "ok" can be checked too.
                    ui.weak(format!(
                        "growth: {}, {} over {}",
                        format::span_in(e.from_bytes, e.to_bytes, unit),
                        format::amount(e.growth_bytes, unit),
                        format::duration(e.window_end.saturating_sub(e.window_start) as f64 / 1e9)
                    ));
                    if let Some(l) = e.lbr {
                        ui.weak(format!(
                            "LBR window {}: {} at {}, R^2 {:.2}",
                            if l.flagged {
                                "(flagged)"
                            } else {
                                "(best, not flagged)"
                            },
                            format::amount(l.growth_bytes, unit),
                            format::rate_in(l.slope_bytes_per_s, unit),
                            l.r2
                        ));
                    }
                }
                let v = r.analysis.overlay.votes;
                ui.weak(format!(
                    "votes: LBR {} · trend {} · envelope {} · change points {} · tests {}",
                    yes(v.lbr),
                    yes(v.trend),
                    yes(v.envelope),
                    yes(v.cpd),
                    yes(v.phases)
                ));
                where_it_grows(ui, r);
                ui.weak(match r.limit.bytes {
                    Some(b) => format!(
                        "limit {} ({})",
                        format::amount(b as f64, unit),
                        limit_source(r.limit.source)
                    ),
                    None => format!("no limit: {}", limit_source(r.limit.source)),
                });
                ui.add_space(6.0);
            }
        }
    }

    fn main_area(&mut self, ui: &mut egui::Ui) {
        if let Some(Err(p)) = &self.sessions {
            p.show(ui);
            return;
        }
        if let LoadState::Failed(p) = &self.load {
            p.show(ui);
            return;
        }
        let Some(loaded) = self.loaded.clone() else {
            ui.centered_and_justified(|ui| {
                ui.spinner();
            });
            return;
        };
        let s = &loaded.session;
        ui.horizontal(|ui| {
            let mut metric = loaded.metric;
            egui::ComboBox::new("metric", "metric")
                .selected_text(metric.name())
                .show_ui(ui, |ui| {
                    for m in METRICS {
                        ui.selectable_value(&mut metric, m, m.name());
                    }
                });
            if metric != loaded.metric {
                self.set_metric(metric);
            }
            if let Some((l, o, i)) = self.counts.get(&s.id) {
                ui.label(format!("{l} leak, {o} ok, {i} insufficient"));
            }
            if s.end.is_none() {
                ui.label(RichText::new("LIVE").color(egui::Color32::from_rgb(220, 60, 60)));
            }
            // Last and truncated: a long command must not widen the panel under the others.
            let title = format!("session {}: {}", s.id, s.what());
            ui.add(egui::Label::new(RichText::new(&title).strong()).truncate())
                .on_hover_text(title);
        });
        Panel::top("table")
            .resizable(true)
            .default_size(220.0)
            .show(ui, |ui| self.table_area(ui));
        if loaded.has_sites {
            Panel::bottom("sites")
                .resizable(true)
                .default_size(340.0)
                // A panel shrinks to what it holds: keep room for the flame graph while the
                // sites are read.
                .min_size(300.0)
                .show(ui, |ui| self.sites_panel(ui));
        }
        let results: HashMap<i64, &ProcessResult> = self
            .results
            .iter()
            .flatten()
            .map(|r| (r.process.id, r))
            .collect();
        if self.selected.is_empty() {
            ui.centered_and_justified(|ui| ui.label("Click a process in the table to plot it."));
            return;
        }
        let generation = self.generation();
        self.drawn = crate::plot::show(
            ui,
            &loaded,
            generation,
            &results,
            &self.selected,
            &self.saved.overlays,
            &mut self.plot_cache,
            self.frame_stats.pan(),
            &mut self.sites,
        );
        if let Some((a, b)) = self.drawn.selected.take() {
            self.sites.range = crate::sites::SiteRange::Selected(a, b);
        }
    }

    fn table_area(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.saved.table.filter)
                    .desired_width(200.0)
                    .hint_text("process name"),
            );
            ui.weak("click a name to plot it, ctrl-click to add");
        });
        self.refresh_order();
        let input = crate::table::show(
            ui,
            &self.saved.table,
            &self.rows,
            &self.order,
            &self.selected,
        );
        if let Some(c) = input.sort_clicked {
            self.saved.table.click(c);
            self.refresh_order();
        }
        if let Some((id, add)) = input.clicked {
            if !add {
                self.selected.clear();
                self.selected.insert(id);
            } else if !self.selected.remove(&id) {
                self.selected.insert(id);
            }
            crate::plot::reset_view(&mut self.plot_cache);
        }
    }
}

/// "Where it grows": a leak's top growth sites in its leak window (recorded with eBPF), or why
/// none can be named.
fn where_it_grows(ui: &mut egui::Ui, r: &memtools::detect::ProcessResult) {
    if r.sites_shallow {
        ui.label(RichText::new("where it grows: unknown").strong());
        ui.weak(memtools::sites::SHALLOW_STACKS);
        return;
    }
    if r.grew_in.is_empty() {
        return;
    }
    ui.label(RichText::new("where it grows").strong());
    egui::Grid::new(("sites", r.process.id))
        .striped(true)
        .show(ui, |ui| {
            for s in &r.grew_in {
                ui.label(format!("{:.0} %", s.share * 100.0));
                ui.label(format::bytes(s.bytes as f64));
                ui.label(&s.function);
                let place = match (&s.file, s.line) {
                    (Some(f), Some(l)) => format!("{}:{l}", f.rsplit('/').next().unwrap_or(f)),
                    _ => String::new(),
                };
                ui.weak(place);
                ui.end_row();
            }
        });
}

fn limit_source(s: LimitSource) -> &'static str {
    match s {
        LimitSource::Given => "the limit field",
        LimitSource::Cgroup => "its cgroup's limit",
        LimitSource::RecordingMachine => "the recording machine's memory",
        LimitSource::ThisMachine => "this machine's memory: the session does not say",
        LimitSource::AddressSpace => "its address-space limit (RLIMIT_AS)",
        LimitSource::OpenFiles => "its open-file limit (RLIMIT_NOFILE)",
        LimitSource::Tasks => "its cgroup's pids.max",
        LimitSource::ThreadsMax => "the recording machine's kernel.threads-max",
        LimitSource::PidMax => "the recording machine's kernel.pid_max",
        LimitSource::None => "nothing bounds this metric: no time to limit is claimed",
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.saved);
    }
}
