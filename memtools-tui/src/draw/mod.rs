//! Drawing a frame from the view's state: a header (session, backend, interval, counts), the
//! process table or one process's chart, and a footer with the keys. Pure: any ratatui backend,
//! the terminal's or the tests' `TestBackend`, gets the same cells.

mod chart;
mod table;
pub mod words;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use memtools::units;

use crate::snapshot::FollowState;
use crate::state::{Screen, View};

/// The smallest terminal the view draws in; below it says so.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 8;

/// Draws the whole view into the frame.
pub fn frame(f: &mut Frame, view: &mut View) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{} (needs {MIN_WIDTH}x{MIN_HEIGHT}); q quits",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(header(view)), head);
    match view.screen {
        Screen::Table => table::draw(f, body, view),
        Screen::Chart => chart::draw(f, body, view),
    }
    f.render_widget(Paragraph::new(footer(view)), foot);
    if view.help {
        help(f, area, view);
    }
    if !view.theme.unicode {
        ascii_only(f.buffer_mut());
    }
}

/// Replaces what widgets draw in Unicode (the chart's axes and legend box, box corners) with
/// ASCII, for a terminal whose locale is not UTF-8.
fn ascii_only(buffer: &mut ratatui::buffer::Buffer) {
    for cell in &mut buffer.content {
        let symbol = cell.symbol();
        if symbol.is_ascii() {
            continue;
        }
        let plain = match symbol {
            "│" | "┃" | "║" => "|",
            "─" | "━" | "═" => "-",
            "•" => "*",
            "…" => "~",
            _ => "+",
        };
        cell.set_symbol(plain);
    }
}

/// Three lines: what is followed and its state; the metric and the counts; the command and
/// what narrows the table.
fn header(view: &View) -> Vec<Line<'static>> {
    let snap = &view.snapshot;
    let t = &view.theme;
    let dot = t.dot();
    let Some(s) = &snap.session else {
        let (text, style) = match &snap.state {
            FollowState::Failed(e) => (e.clone(), t.problem()),
            FollowState::Waiting(w) => (w.clone(), Style::new()),
            FollowState::Following => ("reading...".into(), Style::new()),
        };
        return vec![
            Line::from(Span::styled("memtools", t.title())),
            Line::from(Span::styled(text, style)),
        ];
    };
    let elapsed = units::duration_ns(s.duration_ns().unwrap_or(0));
    let state = match (s.end, s.exit) {
        (None, _) => format!("recording {elapsed}"),
        (Some(_), Some(e)) => format!("ended after {elapsed}, exit {}", e.shell_code()),
        (Some(_), None) => format!("ended after {elapsed}"),
    };
    let interval = s
        .interval_ns
        .map_or(String::new(), |i| format!(" every {}", words::interval(i)));
    let mut first = vec![
        Span::styled(format!("session {}", s.id), t.title()),
        Span::raw(format!(
            "{dot}{state}{dot}{}{interval}{dot}{}",
            s.backend,
            snap.store.display()
        )),
    ];
    if let FollowState::Failed(e) = &snap.state {
        first.push(Span::styled(format!("{dot}{e}"), t.problem()));
    }
    let running = snap.rows.iter().filter(|r| !r.exited).count();
    let (leak, ok, insufficient) = snap.verdict_counts();
    let mut second = vec![
        Span::styled(snap.metric.name().to_string(), t.heading()),
        Span::raw(format!(
            "{dot}{}, {running} running{dot}{}{dot}",
            units::processes(snap.rows.len() as u64),
            units::samples(s.samples),
        )),
        Span::styled(
            units::count(leak as u64, "leak", "leaks"),
            t.verdict(Some(memtools::analysis::Verdict::Leak)),
        ),
        Span::raw(format!(", {ok} ok, {insufficient} insufficient")),
    ];
    if snap.analysis.pending > 0 {
        second.push(Span::styled(
            format!(" ({} waiting)", snap.analysis.pending),
            t.dim(),
        ));
    }
    let mut third = vec![Span::raw(s.what().to_string())];
    let mut narrowed = Vec::new();
    if let Some(root) = view.tree_root() {
        narrowed.push(format!("tree of {} {}", root.pid, root.name));
    } else if let Some((pid, _)) = view.tree {
        narrowed.push(format!("tree of {pid}"));
    }
    if !view.filter.is_empty() {
        narrowed.push(format!("filter \"{}\"", view.filter));
    }
    if view.hide_exited {
        narrowed.push("exited hidden".into());
    }
    if !narrowed.is_empty() {
        third.push(Span::styled(
            format!("{dot}{}", narrowed.join(", ")),
            t.heading(),
        ));
    }
    vec![Line::from(first), Line::from(second), Line::from(third)]
}

fn footer(view: &View) -> Line<'static> {
    let t = &view.theme;
    if view.editing {
        return Line::from(vec![
            Span::styled("filter: ", t.key()),
            Span::raw(format!("{}_", view.filter)),
            Span::styled("  (Enter keeps, Esc clears)", t.dim()),
        ]);
    }
    if let Some(n) = &view.notice {
        return Line::from(Span::styled(n.clone(), t.heading()));
    }
    let keys: &[(&str, &str)] = match view.screen {
        Screen::Table => &[
            ("q", "quit"),
            ("Enter", "chart"),
            ("/", "filter"),
            ("t", "tree"),
            ("m", "metric"),
            ("1-8", "sort"),
            ("r", "reverse"),
            ("x", "exited"),
            ("?", "help"),
        ],
        Screen::Chart => &[
            ("Esc", "table"),
            ("Up/Down", "process"),
            ("b", "braille/block"),
            ("m", "metric"),
            ("q", "quit"),
            ("?", "help"),
        ],
    };
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled((*k).to_string(), t.key()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    Line::from(spans)
}

const HELP: &[(&str, &str)] = &[
    ("Up/Down j/k", "select a process (PgUp/PgDn, Home/End)"),
    ("Enter", "open its history as a chart; Esc back"),
    ("1-8", "sort by column 1-8 (again: reverse)"),
    ("< >", "sort by the column to the left/right"),
    ("r", "reverse the order"),
    ("/", "filter by name, command line or pid"),
    ("t", "follow the selected process's tree"),
    ("x", "hide or show exited processes"),
    ("m M", "next or previous metric"),
    ("b", "chart: braille or block drawing"),
    ("Esc", "leave the tree, clear the filter"),
    ("q", "quit"),
    ("Ctrl-C", "stop the recording (or quit)"),
    ("Ctrl-Z", "suspend (top; fg resumes)"),
];

fn help(f: &mut Frame, area: Rect, view: &View) {
    let t = &view.theme;
    let width = area.width.min(62);
    let height = area.height.min(HELP.len() as u16 + 2);
    let x = area.x + (area.width - width) / 2;
    let y = area.y + (area.height - height) / 2;
    let rect = Rect::new(x, y, width, height);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>12}  "), t.key()),
                Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        rect,
    );
}
