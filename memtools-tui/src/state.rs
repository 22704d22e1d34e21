//! The view's own state (which rows show in which order, what is selected, which screen is up)
//! and what each key does to it. No drawing and no I/O: the keys' effects are tested directly.

use std::sync::Arc;

use memtools::model::Metric;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::widgets::TableState;

use crate::order::{compare, matches, subtree};
use crate::snapshot::{Row, Snapshot};

pub use crate::order::Column;
use crate::theme::Theme;
use crate::worker::Request;

/// Which screen is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Table,
    /// One process's history as a chart, with its verdict's evidence.
    Chart,
}

/// How the chart draws its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drawing {
    Braille,
    Block,
}

/// What a key asks of the program around the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Ctrl-C: stop the recording if there is one, else quit.
    Interrupt,
    /// Ctrl-Z: put the view in the background, as a shell's job control would.
    Suspend,
    Request(Request),
}

/// Everything the view shows besides the data.
pub struct View {
    pub snapshot: Arc<Snapshot>,
    pub theme: Theme,
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    /// Typing into the filter.
    pub editing: bool,
    /// The root (pid, start time) of the process tree followed, if any.
    pub tree: Option<(u32, u64)>,
    pub hide_exited: bool,
    pub screen: Screen,
    pub help: bool,
    pub drawing: Drawing,
    /// A line for the footer, until the next key.
    pub notice: Option<String>,
    /// The selected process (the store's id: stable across re-sorting).
    selected: Option<i64>,
    /// The user picked it: the selection follows that process as the order changes. Until
    /// then it stays on the top line, the largest growth.
    pinned: bool,
    /// Where the selection was, for when its process leaves the visible rows.
    selected_at: usize,
    /// Indices into the snapshot's rows, as shown.
    visible: Vec<usize>,
    pub table: TableState,
    /// Rows that fit in the table, from the last frame (for page keys).
    pub page: usize,
}

impl View {
    pub fn new(snapshot: Arc<Snapshot>, theme: Theme) -> View {
        let mut view = View {
            snapshot,
            theme,
            sort: Column::Growth,
            descending: true,
            filter: String::new(),
            editing: false,
            tree: None,
            hide_exited: false,
            screen: Screen::Table,
            help: false,
            drawing: Drawing::Braille,
            notice: None,
            selected: None,
            pinned: false,
            selected_at: 0,
            visible: Vec::new(),
            table: TableState::default(),
            page: 10,
        };
        view.refresh();
        view
    }

    /// Takes newer data, keeping the selection on the same process.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
        self.refresh();
    }

    /// The rows shown, in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &Row> {
        self.visible.iter().map(|&i| &*self.snapshot.rows[i])
    }

    /// The selected row, if any is shown.
    pub fn selected(&self) -> Option<&Row> {
        let id = self.selected?;
        self.rows().find(|r| r.id == id)
    }

    /// Where the selected row is among those shown.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows().position(|r| r.id == id)
    }

    /// The name of the followed tree's root, for the header.
    pub fn tree_root(&self) -> Option<&Row> {
        let (pid, start) = self.tree?;
        self.snapshot
            .rows
            .iter()
            .map(|r| &**r)
            .find(|r| r.pid == pid && r.start_time == start)
    }

    /// Recomputes the shown rows after any change of data, sort, filter or tree.
    fn refresh(&mut self) {
        let rows = &self.snapshot.rows;
        let in_tree = self.tree.map(|root| subtree(rows, root));
        let needle = self.filter.to_lowercase();
        let mut visible: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                let r = &rows[i];
                (!self.hide_exited || !r.exited)
                    && in_tree.as_ref().is_none_or(|t| t.contains(&r.id))
                    && (needle.is_empty() || matches(r, &needle))
            })
            .collect();
        let (sort, descending) = (self.sort, self.descending);
        visible.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            let primary = compare(sort, a, b);
            let primary = if descending {
                primary.reverse()
            } else {
                primary
            };
            primary
                .then_with(|| b.growth.cmp(&a.growth))
                .then_with(|| a.id.cmp(&b.id))
        });
        self.visible = visible;
        if !self.pinned {
            self.selected = self.visible.first().map(|&r| rows[r].id);
        }
        match self.selected_index() {
            Some(i) => self.selected_at = i,
            None => {
                let i = self.selected_at.min(self.visible.len().saturating_sub(1));
                self.selected = self.visible.get(i).map(|&r| rows[r].id);
                self.selected_at = i;
            }
        }
        self.table.select(self.selected_index());
    }

    fn select_at(&mut self, index: usize) {
        if self.visible.is_empty() {
            return;
        }
        self.pinned = true;
        let i = index.min(self.visible.len() - 1);
        self.selected = Some(self.snapshot.rows[self.visible[i]].id);
        self.selected_at = i;
        self.table.select(Some(i));
    }

    fn move_by(&mut self, delta: isize) {
        let at = self.selected_index().unwrap_or(0);
        self.select_at(at.saturating_add_signed(delta));
    }

    /// Sorts by `column`; the same column again reverses the order.
    pub fn sort_by(&mut self, column: Column) {
        if self.sort == column {
            self.descending = !self.descending;
        } else {
            self.sort = column;
            self.descending = column.descending_first();
        }
        self.refresh();
    }

    /// What a key does. Ctrl-C always interrupts; otherwise it depends on the screen.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        self.notice = None;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Interrupt;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('z') {
            return Action::Suspend;
        }
        if self.help {
            self.help = false;
            return match key.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::None,
            };
        }
        if self.editing {
            return self.filter_key(key);
        }
        if let Some(action) = self.common_key(key) {
            return action;
        }
        match self.screen {
            Screen::Table => self.table_key(key),
            Screen::Chart => self.chart_key(key),
        }
    }

    fn filter_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Enter => self.editing = false,
            KeyCode::Esc => {
                self.editing = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Up => self.move_by(-1),
            KeyCode::Down => self.move_by(1),
            KeyCode::Char(c) => self.filter.push(c),
            _ => return Action::None,
        }
        self.refresh();
        Action::None
    }

    /// Keys that mean the same on every screen.
    fn common_key(&mut self, key: KeyEvent) -> Option<Action> {
        Some(match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.help = true;
                Action::None
            }
            KeyCode::Char('m') => Action::Request(Request::Metric(self.next_metric(1))),
            KeyCode::Char('M') => Action::Request(Request::Metric(self.next_metric(-1))),
            _ => return None,
        })
    }

    fn table_key(&mut self, key: KeyEvent) -> Action {
        let page = self.page.max(1) as isize;
        match key.code {
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            KeyCode::Home | KeyCode::Char('g') => self.select_at(0),
            KeyCode::End | KeyCode::Char('G') => self.select_at(usize::MAX),
            KeyCode::Enter => {
                if let Some(id) = self.selected {
                    self.pinned = true;
                    self.screen = Screen::Chart;
                    return Action::Request(Request::Focus(Some(id)));
                }
            }
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Esc => {
                if self.tree.is_some() {
                    self.tree = None;
                } else {
                    self.filter.clear();
                }
                self.refresh();
            }
            KeyCode::Char('t') => {
                self.tree = match (self.tree, self.selected()) {
                    (None, Some(r)) => Some((r.pid, r.start_time)),
                    _ => None,
                };
                self.refresh();
            }
            KeyCode::Char('x') => {
                self.hide_exited = !self.hide_exited;
                self.refresh();
            }
            KeyCode::Char('r') => {
                self.descending = !self.descending;
                self.refresh();
            }
            KeyCode::Char('<') | KeyCode::Char('>') => {
                let at = Column::ALL
                    .iter()
                    .position(|&c| c == self.sort)
                    .unwrap_or(0);
                let n = Column::ALL.len();
                let next = if key.code == KeyCode::Char('>') {
                    (at + 1) % n
                } else {
                    (at + n - 1) % n
                };
                self.sort_by(Column::ALL[next]);
            }
            KeyCode::Char(c @ '1'..='8') => {
                let i = c as usize - '1' as usize;
                self.sort_by(Column::ALL[i]);
            }
            _ => {}
        }
        Action::None
    }

    fn chart_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Left => {
                self.screen = Screen::Table;
                return Action::Request(Request::Focus(None));
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Char('b') => {
                self.drawing = match self.drawing {
                    Drawing::Braille => Drawing::Block,
                    Drawing::Block => Drawing::Braille,
                };
                return Action::None;
            }
            _ => return Action::None,
        }
        Action::Request(Request::Focus(self.selected))
    }

    /// The metric `step` places from the current one in [`Metric::ALL`].
    fn next_metric(&self, step: isize) -> Metric {
        let all = Metric::ALL;
        let at = all
            .iter()
            .position(|&m| m == self.snapshot.metric)
            .unwrap_or(0);
        let n = all.len() as isize;
        all[((at as isize + step).rem_euclid(n)) as usize]
    }
}
