//! The parameter panel: the knobs of `memtools-user detect`, on the same [`Params`] struct, so
//! what the GUI shows is what the CLI says for the same values.

use memtools::analysis::{Algo, MIB, Params, format};
use serde::{Deserialize, Serialize};

/// The pipeline's parameters and the limit field (the CLI's `--limit`: `None` resolves it per
/// process from its cgroup or the machine, as `detect` does).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    pub params: Params,
    pub given_limit: Option<u64>,
}

/// The `--flags` that give the CLI the same parameters, so a verdict can be checked there
/// (durations in milliseconds: the CLI's parser takes no fractions).
pub fn cli_flags(k: &Knobs) -> String {
    let p = &k.params;
    let ms = |s: f64| format!("{:.0}ms", s * 1000.0);
    let mut s = format!(
        "--algo {} --r2 {} --min-window {} --critical-time {}",
        p.algo.name(),
        p.r2_threshold,
        p.min_window,
        ms(p.critical_time_s)
    );
    if let Some(g) = p.gap_threshold_s {
        s += &format!(" --gap {}", ms(g));
    }
    if let Some(l) = k.given_limit {
        s += &format!(" --limit {l}");
    }
    if p.resample_step_s.is_some() {
        s += " (the resample step has no CLI flag)";
    }
    s
}

/// An optional number with an "auto" box: unticked means `None` (derived by the pipeline).
fn optional(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut Option<f64>,
    default: f64,
    suffix: &str,
) -> bool {
    let mut changed = false;
    let name = ui.label(label);
    ui.horizontal(|ui| {
        let mut auto = value.is_none();
        if ui.checkbox(&mut auto, "auto").changed() {
            *value = if auto { None } else { Some(default) };
            changed = true;
        }
        if let Some(v) = value {
            changed |= ui
                .add(
                    egui::DragValue::new(v)
                        .range(0.001..=1e7)
                        .speed(0.05)
                        .suffix(suffix),
                )
                .labelled_by(name.id)
                .changed();
        }
    });
    ui.end_row();
    changed
}

/// Draws the panel; returns whether anything changed (the caller re-runs the pipeline).
pub fn show(ui: &mut egui::Ui, knobs: &mut Knobs, this_machine: u64) -> bool {
    let before = knobs.clone();
    let p = &mut knobs.params;
    egui::Grid::new("params")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("detector");
            egui::ComboBox::from_id_salt("detector")
                .selected_text(p.algo.name())
                .show_ui(ui, |ui| {
                    for a in [Algo::Combined, Algo::Lbr, Algo::Trend, Algo::Cpd] {
                        ui.selectable_value(&mut p.algo, a, a.name());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();

            optional(ui, "gap threshold", &mut p.gap_threshold_s, 5.0, " s");
            optional(ui, "resample step", &mut p.resample_step_s, 1.0, " s");

            let label = ui.label("min window");
            ui.add(
                egui::DragValue::new(&mut p.min_window)
                    .range(3..=100_000)
                    .suffix(" points"),
            )
            .labelled_by(label.id);
            ui.end_row();

            let label = ui.label("R² threshold");
            ui.add(egui::Slider::new(&mut p.r2_threshold, 0.0..=1.0))
                .labelled_by(label.id);
            ui.end_row();

            let label = ui.label("critical time");
            ui.horizontal(|ui| {
                ui.add(
                    egui::DragValue::new(&mut p.critical_time_s)
                        .range(1.0..=1e9)
                        .speed(10.0)
                        .suffix(" s"),
                )
                .labelled_by(label.id);
                ui.weak(format::duration(p.critical_time_s));
            });
            ui.end_row();

            ui.label("limit");
            ui.horizontal(|ui| {
                let mut auto = knobs.given_limit.is_none();
                if ui.checkbox(&mut auto, "cgroup / machine").changed() {
                    knobs.given_limit = if auto { None } else { Some(this_machine) };
                }
                if let Some(limit) = &mut knobs.given_limit {
                    let mut mib = *limit as f64 / MIB as f64;
                    if ui
                        .add(
                            egui::DragValue::new(&mut mib)
                                .range(1.0..=1e9)
                                .suffix(" MiB"),
                        )
                        .changed()
                    {
                        *limit = (mib * MIB as f64) as u64;
                    }
                } else {
                    ui.weak(format!(
                        "this machine: {}",
                        format::bytes(this_machine as f64)
                    ));
                }
            });
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui.button("Reset to defaults").clicked() {
            *knobs = Knobs::default();
        }
    });
    ui.label(
        egui::RichText::new(format!("CLI: detect {}", cli_flags(knobs)))
            .small()
            .weak(),
    );
    *knobs != before
}
