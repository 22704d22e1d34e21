//! The process table: one line per process, sorted and filtered by the view. Only the lines in
//! sight are built, so a frame costs the same for 50 processes as for 5,000.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table, TableState};

use super::words;
use crate::snapshot::Row;
use crate::state::{Column, View};
use crate::theme::sparkline;

/// Widths of the columns after the name, in [`Column::ALL`] order (the name takes the rest).
const WIDTHS: [u16; 8] = [7, 0, 9, 9, 11, 4, 4, 8];

/// Width of the history column: what is left after the others, shared with the name.
fn history_width(total: u16) -> u16 {
    let fixed: u16 = WIDTHS.iter().sum::<u16>() + WIDTHS.len() as u16;
    (total.saturating_sub(fixed) / 2).clamp(6, 32)
}

pub fn draw(f: &mut Frame, area: Rect, view: &mut View) {
    let t = view.theme;
    let metric = view.snapshot.metric;
    let history = history_width(area.width);
    let widths: Vec<Constraint> = WIDTHS
        .iter()
        .map(|&w| match w {
            0 => Constraint::Fill(1),
            w => Constraint::Length(w),
        })
        .chain([Constraint::Length(history)])
        .collect();
    let arrow = match (view.descending, t.unicode) {
        (true, true) => "↓",
        (false, true) => "↑",
        (true, false) => "v",
        (false, false) => "^",
    };
    let mut heading: Vec<Cell> = Column::ALL
        .iter()
        .zip(WIDTHS)
        .map(|(&c, w)| {
            let title = c.title(metric);
            if c == view.sort {
                let room = if w == 0 { 12 } else { w as usize - 1 };
                let text = format!("{}{arrow}", words::fit(&title, room, t.unicode));
                Cell::from(text).style(t.sorted_heading())
            } else {
                Cell::from(title).style(t.heading())
            }
        })
        .collect();
    heading.push(Cell::from("HISTORY").style(t.heading()));

    let page = area.height.saturating_sub(1) as usize;
    view.page = page;
    let total = view.rows().len();
    if total == 0 {
        let table = Table::new(Vec::<TableRow>::new(), widths).header(TableRow::new(heading));
        f.render_widget(table, area);
        let empty = if view.snapshot.session.is_some() {
            "no process to show (Esc clears the filter and the tree)"
        } else {
            "waiting for data..."
        };
        if let Some(line) = area.rows().nth(1) {
            f.render_widget(Paragraph::new(Line::styled(empty, t.dim())), line);
        }
        return;
    }
    // Scroll so the selection stays in sight, then build only what shows.
    let selected = view.selected_index().unwrap_or(0);
    let mut offset = view.table.offset().min(total.saturating_sub(1));
    if selected < offset {
        offset = selected;
    } else if page > 0 && selected >= offset + page {
        offset = selected + 1 - page;
    }
    *view.table.offset_mut() = offset;
    let lines: Vec<TableRow> = view
        .rows()
        .skip(offset)
        .take(page.max(1))
        .map(|r| line(r, metric, history as usize, &t, view.snapshot.counts))
        .collect();
    let table = Table::new(lines, widths)
        .header(TableRow::new(heading))
        .column_spacing(1)
        .row_highlight_style(t.selected());
    let mut state = TableState::default().with_selected(Some(selected - offset));
    f.render_stateful_widget(table, area, &mut state);
}

fn line(
    r: &Row,
    metric: memtools::model::Metric,
    history: usize,
    t: &crate::theme::Theme,
    counts: crate::snapshot::CountMetrics,
) -> TableRow<'static> {
    let verdict = r.judged.as_ref().map(|j| j.verdict);
    let slope = r
        .judged
        .as_ref()
        .and_then(|j| j.evidence)
        .map(|e| e.slope_bytes_per_s);
    // The count columns show `-` where this build or this session has no such metric.
    let count = |m: Option<memtools::model::Metric>, v: Option<u64>| match m {
        Some(m) => words::value(m, v),
        None => "-".into(),
    };
    let cells = vec![
        right(r.pid.to_string()),
        Cell::from(r.name.to_string()),
        right(words::value(metric, r.value)),
        right(words::growth(metric, r.growth)).style(t.growth(r.growth)),
        right(words::slope(metric, slope)),
        right(count(counts.threads, r.threads)),
        right(count(counts.fds, r.fds)),
        Cell::from(words::verdict(r, t.unicode)).style(t.verdict(verdict)),
        Cell::from(sparkline(&r.spark, r.low, history, t)).style(t.spark()),
    ];
    let row = TableRow::new(cells);
    if r.exited { row.style(t.exited()) } else { row }
}

/// Figures line up on their last digit.
fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}
