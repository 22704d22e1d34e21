//! Tables for the terminal, and the JSON twins of `sessions`.

use std::path::Path;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use super::summary::HistorySummary;
use crate::model::TimeNs;
use crate::model::{ExitStatus, Lost, Metric};
use crate::store::{Phase, ProcessRow, SessionRow, SessionState};
use crate::units;

fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    for &i in right {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn exit_text(exit: Option<ExitStatus>) -> String {
    match exit {
        Some(ExitStatus::Code(c)) => format!("exit {c}"),
        Some(ExitStatus::Signal(s)) => format!("signal {s}"),
        None => String::new(),
    }
}

/// The `sessions` table, newest first as given.
pub fn sessions_table(sessions: &[SessionRow]) -> String {
    let mut t = table(
        &[
            "id",
            "start (UTC)",
            "duration",
            "recorded",
            "backend",
            "processes",
            "samples",
        ],
        &[0, 2, 5, 6],
    );
    for s in sessions {
        let duration = match (s.state(), s.duration_ns()) {
            (_, None) => "-".to_string(),
            (SessionState::Finished, Some(d)) => units::duration_ns(d),
            (state, Some(d)) => format!("{} ({})", units::duration_ns(d), state.name()),
        };
        // An imported file by its name; the full path is in `--format json`.
        let mut what = match (&s.command, &s.source) {
            (None, Some(src)) => Path::new(src)
                .file_name()
                .map_or(src.clone(), |n| n.to_string_lossy().into_owned()),
            _ => s.what().to_string(),
        };
        if what.chars().count() > 60 {
            what = format!("{}…", what.chars().take(59).collect::<String>());
        }
        t.add_row(vec![
            s.id.to_string(),
            units::time(s.start),
            duration,
            what,
            s.backend.clone(),
            s.processes.to_string(),
            s.samples.to_string(),
        ]);
    }
    t.to_string()
}

/// A session as `sessions --format json` gives it.
#[derive(Serialize)]
pub struct SessionJson<'a> {
    pub id: i64,
    pub start: String,
    pub end: Option<String>,
    pub duration_s: Option<f64>,
    pub host: &'a str,
    pub kernel: &'a str,
    pub backend: &'a str,
    pub backend_reason: &'a str,
    pub interval_ms: Option<f64>,
    pub command: Option<&'a str>,
    pub source: Option<&'a str>,
    pub exit_status: Option<i32>,
    pub exit_signal: Option<i32>,
    pub processes: u64,
    pub samples: u64,
    /// Processes of the recorded scope that were never followed (the kernel side's table
    /// was full): the session is missing them.
    pub processes_lost: u64,
    /// Process events (fork, exec, exit) the kernel side could not queue.
    pub events_lost: u64,
    /// The metric `show` and `detect` use by default.
    pub metric: &'static str,
    /// `finished`, `cut_short` (the store stopped taking samples; those before are kept) or
    /// `unfinished` (still recording, or the recorder was killed).
    pub state: SessionState,
    /// Why it was cut short.
    pub cut_short: Option<&'a str>,
    /// How the recorded command's process tree was held.
    pub tree: Option<&'a str>,
}

impl<'a> SessionJson<'a> {
    /// The JSON view of a session row.
    pub fn of(s: &'a SessionRow) -> SessionJson<'a> {
        SessionJson {
            id: s.id,
            start: units::rfc3339(s.start),
            end: s.end.map(units::rfc3339),
            duration_s: s.duration_ns().map(|d| d as f64 / 1e9),
            host: &s.host,
            kernel: &s.kernel,
            backend: &s.backend,
            backend_reason: &s.backend_reason,
            interval_ms: s.interval_ns.map(|i| i as f64 / 1e6),
            command: s.command.as_deref(),
            source: s.source.as_deref(),
            exit_status: match s.exit {
                Some(ExitStatus::Code(c)) => Some(c),
                _ => None,
            },
            exit_signal: match s.exit {
                Some(ExitStatus::Signal(c)) => Some(c),
                _ => None,
            },
            processes: s.processes,
            samples: s.samples,
            processes_lost: s.lost.processes,
            events_lost: s.lost.events,
            metric: s.default_metric().name(),
            state: s.state(),
            cut_short: s.cut_short.as_deref(),
            tree: s.tree.as_deref(),
        }
    }
}

/// A header for `show`: what the session was.
pub fn session_header(s: &SessionRow, metric: Metric) -> String {
    let mut out = format!("session {}: {}\n", s.id, s.what());
    out += &format!(
        "  started {} UTC, {}{}, backend {} ({})\n",
        units::time(s.start),
        s.duration_ns().map_or("-".to_string(), units::duration_ns),
        match s.state() {
            SessionState::Finished => String::new(),
            state => format!(" ({})", state.name()),
        },
        s.backend,
        s.backend_reason
    );
    if !s.host.is_empty() {
        out += &format!("  host {}, kernel {}", s.host, s.kernel);
        if let Some(i) = s.interval_ns {
            out += &format!(", interval {}", units::duration_ns(i));
        }
        let exit = exit_text(s.exit);
        if !exit.is_empty() {
            out += &format!(", command {exit}");
        }
        out += "\n";
    }
    if let Some(why) = &s.cut_short {
        out += &format!(
            "  cut short: {why}; the samples up to {} are kept\n",
            s.last_sample.map_or("its start".to_string(), |t| format!(
                "{} in",
                units::duration_ns(t - s.start)
            ))
        );
    }
    if let Some(tree) = &s.tree {
        out += &format!("  tree held by {tree}\n");
    }
    let shown = if metric.is_bytes() {
        format!("memory is {}", metric.name())
    } else {
        format!("{} per process ({})", metric.what(), metric.name())
    };
    out += &format!(
        "  {}, {}; {shown}\n",
        units::processes(s.processes),
        units::samples(s.samples),
    );
    if let Some(lost) = lost_text(s.lost) {
        out += &format!("  incomplete: {lost}\n");
    }
    out
}

/// What a recording lost, in words; None when it lost nothing.
pub fn lost_text(lost: Lost) -> Option<String> {
    let mut parts = Vec::new();
    if lost.processes > 0 {
        parts.push(format!(
            "{} not recorded (the kernel's table of followed processes was full)",
            units::processes(lost.processes)
        ));
    }
    if lost.events > 0 {
        parts.push(format!(
            "{} process event{} lost (fork, exec or exit; the kernel's queue was full)",
            lost.events,
            if lost.events == 1 { "" } else { "s" }
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The phases a test harness marked: name, start (from the session's start) and length.
pub fn phases_table(phases: &[Phase], session_start: TimeNs) -> String {
    let mut t = table(&["phase", "from", "lasted"], &[1, 2]);
    for p in phases {
        t.add_row(vec![
            p.name.clone(),
            units::duration_ns(p.begin - session_start),
            p.end.map_or("(never ended)".to_string(), |e| {
                units::duration_ns(e - p.begin)
            }),
        ]);
    }
    t.to_string()
}

/// The `show` table: one row per process, largest growth first.
pub fn processes_table(rows: &[(ProcessRow, Option<HistorySummary>)], metric: Metric) -> String {
    let fmt = |v: u64| {
        if metric.is_bytes() {
            units::bytes(v)
        } else {
            v.to_string()
        }
    };
    let mut t = table(
        &[
            "pid", "name", "samples", "first", "peak", "last", "growth", "lived", "exited",
        ],
        &[0, 2, 3, 4, 5, 6, 7],
    );
    for (p, s) in rows {
        let (samples, first, peak, last, growth, lived) = match s {
            Some(s) => (
                s.samples.to_string(),
                fmt(s.first),
                fmt(s.peak),
                fmt(s.last),
                if metric.is_bytes() {
                    units::signed_bytes(s.growth)
                } else {
                    format!("{:+}", s.growth)
                },
                units::duration_ns(s.last_time - s.first_time),
            ),
            None => Default::default(),
        };
        t.add_row(vec![
            p.info.key.pid.to_string(),
            p.info.name.clone(),
            samples,
            first,
            peak,
            last,
            growth,
            lived,
            p.exit.map_or(String::new(), |_| "yes".to_string()),
        ]);
    }
    t.to_string()
}
