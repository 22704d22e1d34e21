//! The process table: one row per process with its numbers and verdict, sortable by any column,
//! filtered by name, leaks first by default. Rows are computed once per load or analysis and the
//! sorted, filtered order once per change, so a session of thousands of processes costs only
//! the visible rows per frame.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use egui::{Color32, RichText};
use egui_extras::{Column as Col, TableBuilder};
use memtools::analysis::{Unit, Verdict, format};
use memtools::detect::ProcessResult;
use serde::{Deserialize, Serialize};

use crate::loader::Loaded;

/// A table column; also what the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Column {
    Name,
    Pid,
    Samples,
    First,
    Peak,
    Last,
    Growth,
    Slope,
    Verdict,
}

impl Column {
    pub const ALL: [Column; 9] = [
        Column::Name,
        Column::Pid,
        Column::Samples,
        Column::First,
        Column::Peak,
        Column::Last,
        Column::Growth,
        Column::Slope,
        Column::Verdict,
    ];

    /// The header text, also what tests click.
    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::Pid => "pid",
            Column::Samples => "samples",
            Column::First => "first",
            Column::Peak => "peak",
            Column::Last => "last",
            Column::Growth => "growth",
            Column::Slope => "slope",
            Column::Verdict => "verdict",
        }
    }
}

/// One process's line.
#[derive(Clone, Debug)]
pub struct Row {
    pub process_id: i64,
    pub name: String,
    pub pid: u32,
    pub samples: usize,
    pub first: f64,
    pub peak: f64,
    pub last: f64,
    pub growth: f64,
    pub slope: Option<f64>,
    pub verdict: Option<Verdict>,
    pub reason: String,
    /// What the values count (bytes, or threads and descriptors).
    pub unit: Unit,
}

/// Builds the rows from the data and, when there is one, the pipeline's result.
pub fn rows(loaded: &Loaded, results: Option<&[ProcessResult]>) -> Vec<Row> {
    let by_id: HashMap<i64, &ProcessResult> = results
        .unwrap_or_default()
        .iter()
        .map(|r| (r.process.id, r))
        .collect();
    loaded
        .histories
        .iter()
        .map(|h| {
            // A last sample of 0 bytes is a process caught exiting, not a release (as `show`).
            let live = h.points.iter().rposition(|p| p.1 > 0).map_or(0, |i| i + 1);
            let values = || h.points[..live].iter().map(|p| p.1 as f64);
            let first = values().next().unwrap_or(0.0);
            let last = values().next_back().unwrap_or(0.0);
            let result = by_id.get(&h.process.id);
            Row {
                process_id: h.process.id,
                name: h.process.info.name.clone(),
                pid: h.process.info.key.pid,
                samples: h.points.len(),
                first,
                peak: values().fold(0.0, f64::max),
                last,
                growth: last - first,
                slope: result.and_then(|r| r.analysis.evidence.map(|e| e.slope_bytes_per_s)),
                verdict: result.map(|r| r.analysis.verdict),
                reason: result.map_or_else(String::new, |r| r.analysis.reason.clone()),
                unit: loaded.metric.unit(),
            }
        })
        .collect()
}

/// Sorting and filtering, kept across sessions (and runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableState {
    pub sort: Column,
    pub ascending: bool,
    /// Not remembered: a filter left from an earlier run would hide processes unnoticed.
    #[serde(skip)]
    pub filter: String,
}

impl Default for TableState {
    fn default() -> Self {
        TableState {
            sort: Column::Verdict,
            ascending: true,
            filter: String::new(),
        }
    }
}

fn rank(v: Option<Verdict>) -> u8 {
    match v {
        Some(Verdict::Leak) => 0,
        Some(Verdict::Ok) => 1,
        Some(Verdict::Insufficient) => 2,
        None => 3,
    }
}

fn compare(a: &Row, b: &Row, column: Column) -> Ordering {
    let f = |x: f64, y: f64| x.total_cmp(&y);
    match column {
        Column::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
        Column::Pid => a.pid.cmp(&b.pid),
        Column::Samples => a.samples.cmp(&b.samples),
        Column::First => f(a.first, b.first),
        Column::Peak => f(a.peak, b.peak),
        Column::Last => f(a.last, b.last),
        Column::Growth => f(a.growth, b.growth),
        Column::Slope => f(a.slope.unwrap_or(f64::MIN), b.slope.unwrap_or(f64::MIN)),
        Column::Verdict => rank(a.verdict).cmp(&rank(b.verdict)),
    }
}

impl TableState {
    /// Indices of `rows` to show, in order: filtered by name (case-insensitive substring),
    /// sorted by the column, ties by growth (largest first) then pid.
    pub fn order(&self, rows: &[Row]) -> Vec<usize> {
        let needle = self.filter.trim().to_lowercase();
        let mut idx: Vec<usize> = (0..rows.len())
            .filter(|&i| needle.is_empty() || rows[i].name.to_lowercase().contains(&needle))
            .collect();
        idx.sort_by(|&i, &j| {
            let (a, b) = (&rows[i], &rows[j]);
            let primary = compare(a, b, self.sort);
            let primary = if self.ascending {
                primary
            } else {
                primary.reverse()
            };
            primary
                .then(b.growth.total_cmp(&a.growth))
                .then(a.pid.cmp(&b.pid))
        });
        idx
    }

    /// A header click: sort by that column, or reverse it when it already is the sort. Numbers
    /// start largest first, names and verdicts (leaks first) in their natural order.
    pub fn click(&mut self, column: Column) {
        if self.sort == column {
            self.ascending = !self.ascending;
        } else {
            self.sort = column;
            self.ascending = matches!(column, Column::Name | Column::Verdict | Column::Pid);
        }
    }
}

pub fn verdict_color(v: Option<Verdict>) -> Color32 {
    match v {
        Some(Verdict::Leak) => Color32::from_rgb(220, 60, 60),
        Some(Verdict::Ok) => Color32::from_rgb(70, 160, 90),
        Some(Verdict::Insufficient) => Color32::from_rgb(150, 150, 150),
        None => Color32::GRAY,
    }
}

/// What the user did in the table this frame.
#[derive(Default)]
pub struct TableInput {
    pub sort_clicked: Option<Column>,
    /// A process clicked: (process id, add to the selection rather than replace it).
    pub clicked: Option<(i64, bool)>,
}

/// Draws the rows in `order` (only the visible ones).
pub fn show(
    ui: &mut egui::Ui,
    state: &TableState,
    rows: &[Row],
    order: &[usize],
    selected: &BTreeSet<i64>,
) -> TableInput {
    let mut input = TableInput::default();
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    let mut table = TableBuilder::new(ui)
        .id_salt("processes")
        .striped(true)
        .resizable(true)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Col::initial(150.0).at_least(60.0).clip(true));
    for _ in 1..Column::ALL.len() - 1 {
        table = table.column(Col::auto().at_least(50.0));
    }
    table
        .column(Col::remainder().at_least(80.0))
        .header(row_height + 2.0, |mut header| {
            for c in Column::ALL {
                header.col(|ui| {
                    let arrow = match (state.sort == c, state.ascending) {
                        (false, _) => "",
                        (true, true) => " ^",
                        (true, false) => " v",
                    };
                    let text = RichText::new(format!("{}{arrow}", c.title())).strong();
                    if ui.button(text).clicked() {
                        input.sort_clicked = Some(c);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(row_height, order.len(), |mut row| {
                let r = &rows[order[row.index()]];
                let is_selected = selected.contains(&r.process_id);
                row.set_selected(is_selected);
                row.col(|ui| {
                    let resp = ui.selectable_label(is_selected, &r.name);
                    if resp.clicked() {
                        let add = ui.input(|i| i.modifiers.command || i.modifiers.shift);
                        input.clicked = Some((r.process_id, add));
                    }
                    if !r.reason.is_empty() {
                        resp.on_hover_text(&r.reason);
                    }
                });
                row.col(|ui| {
                    ui.label(r.pid.to_string());
                });
                row.col(|ui| {
                    ui.label(r.samples.to_string());
                });
                for v in [r.first, r.peak, r.last] {
                    row.col(|ui| {
                        ui.label(format::amount(v, r.unit));
                    });
                }
                row.col(|ui| {
                    let sign = if r.growth > 0.0 { "+" } else { "" };
                    ui.label(format!("{sign}{}", format::amount(r.growth, r.unit)));
                });
                row.col(|ui| {
                    ui.label(
                        r.slope
                            .map_or_else(|| "–".into(), |s| format::rate_in(s, r.unit)),
                    );
                });
                row.col(|ui| {
                    let name = r.verdict.map_or("…", |v| v.name());
                    ui.label(RichText::new(name).color(verdict_color(r.verdict)).strong())
                        .on_hover_text(&r.reason);
                });
            });
        });
    input
}
