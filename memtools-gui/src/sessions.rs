//! The sessions panel: every session of the store, newest first, with what was recorded, how,
//! how long, and the verdict counts once the pipeline has run over it.

use std::collections::HashMap;

use egui::RichText;
use memtools::analysis::format;
use memtools::model::{NS_PER_SEC, TimeNs};
use memtools::store::SessionRow;
use memtools::units;

/// Verdict counts of a session the pipeline has run over: (leak, ok, insufficient).
pub type Counts = (usize, usize, usize);

/// A wall-clock time as the CLI prints it (UTC).
pub fn clock(t: TimeNs) -> String {
    let secs = t.div_euclid(NS_PER_SEC);
    let nanos = t.rem_euclid(NS_PER_SEC) as u32;
    chrono::DateTime::from_timestamp(secs, nanos).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The last path component of an imported file, the whole command otherwise.
fn short_what(s: &SessionRow) -> String {
    let what = s.what();
    match (&s.source, &s.command) {
        (Some(src), None) => std::path::Path::new(src)
            .file_name()
            .map_or_else(|| src.clone(), |f| f.to_string_lossy().into_owned()),
        _ => what.to_string(),
    }
}

/// One line of the session's state: still recording, cut short, its exit status.
fn status(s: &SessionRow) -> String {
    if let Some(why) = &s.cut_short {
        return format!("cut short: {why}");
    }
    match (s.end, s.exit) {
        (None, _) => "recording (or cut off)".to_string(),
        (Some(_), Some(e)) => format!("exit {}", e.shell_code()),
        (Some(_), None) => String::new(),
    }
}

/// Draws the list; returns the session clicked this frame.
pub fn show(
    ui: &mut egui::Ui,
    sessions: &[SessionRow],
    selected: Option<i64>,
    counts: &HashMap<i64, Counts>,
) -> Option<i64> {
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("sessions")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for s in sessions {
                let is_selected = selected == Some(s.id);
                let duration = s
                    .duration_ns()
                    .map_or_else(|| "–".into(), |d| format::duration(d as f64 / 1e9));
                let verdicts = match counts.get(&s.id) {
                    Some((l, o, i)) => format!("{l} leak, {o} ok, {i} insufficient"),
                    None => "not analysed yet".to_string(),
                };
                let title = format!("#{} {}", s.id, short_what(s));
                let resp = ui
                    .push_id(s.id, |ui| {
                        egui::Frame::group(ui.style())
                            .fill(if is_selected {
                                ui.visuals().selection.bg_fill.gamma_multiply(0.4)
                            } else {
                                ui.visuals().panel_fill
                            })
                            .show(ui, |ui| {
                                ui.set_width(ui.available_width());
                                let r = ui
                                    .selectable_label(is_selected, RichText::new(&title).strong());
                                ui.label(format!("{} · {duration}", clock(s.start)));
                                ui.label(
                                    RichText::new(format!(
                                        "{} · {} · {} {}",
                                        s.backend,
                                        units::processes(s.processes),
                                        units::samples(s.samples),
                                        status(s)
                                    ))
                                    .small(),
                                );
                                let color = if counts.get(&s.id).is_some_and(|c| c.0 > 0) {
                                    crate::table::verdict_color(Some(
                                        memtools::analysis::Verdict::Leak,
                                    ))
                                } else {
                                    ui.visuals().weak_text_color()
                                };
                                ui.label(RichText::new(verdicts).small().color(color));
                                r
                            })
                            .inner
                    })
                    .inner;
                let resp = resp.on_hover_text(format!(
                    "{}\nhost {} · kernel {}\nbackend {}: {}",
                    s.what(),
                    s.host,
                    s.kernel,
                    s.backend,
                    s.backend_reason
                ));
                if resp.clicked() {
                    clicked = Some(s.id);
                }
            }
        });
    clicked
}
