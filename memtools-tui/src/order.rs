//! Which processes the table shows and in which order: sorting by a column, the name filter,
//! and a process's tree (pids are reused, so a parent is found by pid and start time).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use memtools::analysis::Verdict;
use memtools::model::Metric;

use crate::snapshot::Row;

/// A column of the process table; each one sorts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Pid,
    Name,
    Value,
    Growth,
    Slope,
    Threads,
    Fds,
    Verdict,
}

impl Column {
    /// In table order; key `1` sorts by the first.
    pub const ALL: [Column; 8] = [
        Column::Pid,
        Column::Name,
        Column::Value,
        Column::Growth,
        Column::Slope,
        Column::Threads,
        Column::Fds,
        Column::Verdict,
    ];

    /// The heading (the value column is named after the metric).
    pub fn title(self, metric: Metric) -> String {
        match self {
            Column::Pid => "PID".into(),
            Column::Name => "NAME".into(),
            Column::Value => metric.name().to_uppercase(),
            Column::Growth => "GROWTH".into(),
            Column::Slope => "SLOPE".into(),
            Column::Threads => "THR".into(),
            Column::Fds => "FDS".into(),
            Column::Verdict => "VERDICT".into(),
        }
    }

    /// Names sort A to Z first, figures largest first.
    pub fn descending_first(self) -> bool {
        self != Column::Name
    }
}

/// Whether the process's name, command line or pid matches a lower-case filter.
pub fn matches(r: &Row, needle: &str) -> bool {
    r.name.to_lowercase().contains(needle)
        || r.cmdline.to_lowercase().contains(needle)
        || r.pid.to_string() == needle
}

/// The ascending order of two processes by `column`.
pub fn compare(column: Column, a: &Row, b: &Row) -> std::cmp::Ordering {
    let slope = |r: &Row| {
        r.judged
            .as_ref()
            .and_then(|j| j.evidence)
            .map(|e| e.slope_bytes_per_s)
    };
    let rank = |r: &Row| match r.judged.as_ref().map(|j| j.verdict) {
        Some(Verdict::Leak) => 3,
        Some(Verdict::Ok) => 2,
        Some(Verdict::Insufficient) => 1,
        None => 0,
    };
    match column {
        Column::Pid => a.pid.cmp(&b.pid),
        Column::Name => a
            .name
            .chars()
            .flat_map(char::to_lowercase)
            .cmp(b.name.chars().flat_map(char::to_lowercase)),
        Column::Value => a.value.cmp(&b.value),
        Column::Growth => a.growth.cmp(&b.growth),
        Column::Slope => match (slope(a), slope(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        },
        Column::Threads => a.threads.cmp(&b.threads),
        Column::Fds => a.fds.cmp(&b.fds),
        Column::Verdict => rank(a).cmp(&rank(b)),
    }
}

/// The store ids of the process `root` (pid, start time) and all its descendants. A parent is
/// the process with the child's ppid that started last before the child, as pids are reused.
pub fn subtree(rows: &[Arc<Row>], root: (u32, u64)) -> HashSet<i64> {
    let mut by_pid: HashMap<u32, Vec<&Row>> = HashMap::new();
    for r in rows {
        by_pid.entry(r.pid).or_default().push(&**r);
    }
    let mut children: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in rows {
        let parent = r.ppid.and_then(|pp| by_pid.get(&pp)).and_then(|cands| {
            cands
                .iter()
                .filter(|p| p.start_time <= r.start_time && p.id != r.id)
                .max_by_key(|p| p.start_time)
        });
        if let Some(p) = parent {
            children.entry(p.id).or_default().push(r.id);
        }
    }
    let mut out = HashSet::new();
    let mut queue: VecDeque<i64> = rows
        .iter()
        .filter(|r| (r.pid, r.start_time) == root)
        .map(|r| r.id)
        .collect();
    while let Some(id) = queue.pop_front() {
        if out.insert(id) {
            queue.extend(children.get(&id).into_iter().flatten().copied());
        }
    }
    out
}
