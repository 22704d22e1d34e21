//! What one scrape shows, and the cardinality rules that bound it.
//!
//! Per-process series are kept for the top N processes by size (resident memory) and the top N
//! by growth (leaks first, then the fastest growing), at most 2N; every other process counts in
//! its name's aggregates, themselves at most N names (by memory) plus `(other)`. A process that
//! exited is not in the next snapshot, so its series disappear.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use memtools::model::{Metric, Metrics};

use crate::catalogue::{self, Export};
use crate::stats::RecorderView;

/// The name of the aggregate that holds the names past the first N.
pub const OTHER_NAMES: &str = "(other)";

/// A running process as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessView {
    pub pid: u32,
    pub name: String,
    /// Its newest values.
    pub latest: Metrics,
    /// The last live analysis's verdicts, one per analysed metric that was not insufficient.
    pub verdicts: Vec<MetricVerdict>,
}

/// One verdict of the live analysis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricVerdict {
    pub metric: Metric,
    pub leak: bool,
    /// The growth the verdict is about, per second (bytes for memory).
    pub slope_per_s: f64,
    /// Seconds until the limit at that rate, where there is a limit and it is reached.
    pub time_to_limit_s: Option<f64>,
}

impl ProcessView {
    /// The verdict for one metric, if the last analysis gave one.
    pub fn verdict(&self, metric: Metric) -> Option<&MetricVerdict> {
        self.verdicts.iter().find(|v| v.metric == metric)
    }

    /// Its size, for the top N: resident memory, or virtual size without it.
    fn size(&self) -> u64 {
        self.latest
            .get(Metric::Rss)
            .or(self.latest.vm_size)
            .unwrap_or(0)
    }
}

/// The live analysis's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AnalysisView {
    pub duration: Duration,
    pub processes: usize,
}

/// Everything one exposition is made of.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The running processes.
    pub processes: Vec<ProcessView>,
    pub recorder: RecorderView,
    /// The last run of the live analysis, once there was one.
    pub analysis: Option<AnalysisView>,
    /// N of the cardinality rules.
    pub top: usize,
}

/// The processes of one name not exported one by one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub processes: u64,
    /// Sums of each memory kind and level, by metric, in [`Metric::ALL`] order.
    pub sums: Vec<(Metric, u64)>,
    /// Leaking processes, by analysed metric.
    pub leaks: Vec<(Metric, u64)>,
}

/// A snapshot cut to its bounded series.
#[derive(Debug)]
pub struct Selection<'a> {
    /// Exported one by one, by pid.
    pub individual: Vec<&'a ProcessView>,
    /// The rest, by name; `(other)` last.
    pub groups: Vec<Group>,
}

impl Snapshot {
    /// Applies the cardinality rules.
    pub fn select(&self) -> Selection<'_> {
        let top = self.top.max(1);
        let by_size = ranked(&self.processes, top, |p| (p.size(), 0.0));
        let by_growth = ranked(&self.processes, top, |p| {
            let v = p.verdict(Metric::Rss);
            let leak = v.is_some_and(|v| v.leak) as u64;
            (leak, v.map_or(f64::MIN, |v| v.slope_per_s))
        });
        let chosen: HashSet<usize> = by_size.into_iter().chain(by_growth).collect();
        let mut individual: Vec<&ProcessView> =
            chosen.iter().map(|&i| &self.processes[i]).collect();
        individual.sort_by_key(|p| (p.pid, p.name.clone()));
        let rest = self
            .processes
            .iter()
            .enumerate()
            .filter(|(i, _)| !chosen.contains(i))
            .map(|(_, p)| p);
        Selection {
            individual,
            groups: groups(rest, top),
        }
    }
}

/// The indices of the `top` processes with the largest key (ties: the larger process first,
/// then the lower pid).
fn ranked<K: PartialOrd>(
    processes: &[ProcessView],
    top: usize,
    key: impl Fn(&ProcessView) -> (K, f64),
) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..processes.len()).collect();
    idx.sort_by(|&a, &b| {
        let (ka, sa) = key(&processes[a]);
        let (kb, sb) = key(&processes[b]);
        kb.partial_cmp(&ka)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(sb.total_cmp(&sa))
            .then(processes[b].size().cmp(&processes[a].size()))
            .then(processes[a].pid.cmp(&processes[b].pid))
    });
    idx.truncate(top);
    idx
}

/// Aggregates by name, the `top` largest names kept and the others merged into `(other)`.
fn groups<'a>(rest: impl Iterator<Item = &'a ProcessView>, top: usize) -> Vec<Group> {
    let mut by_name: BTreeMap<&str, Group> = BTreeMap::new();
    for p in rest {
        let g = by_name.entry(p.name.as_str()).or_insert_with(|| Group {
            name: p.name.clone(),
            ..Group::default()
        });
        add_to(g, p);
    }
    let mut groups: Vec<Group> = by_name.into_values().collect();
    groups.sort_by(|a, b| rss(b).cmp(&rss(a)).then(a.name.cmp(&b.name)));
    if groups.len() > top {
        let mut other = Group {
            name: OTHER_NAMES.to_string(),
            ..Group::default()
        };
        for g in groups.drain(top..) {
            merge(&mut other, &g);
        }
        groups.push(other);
    }
    groups
}

fn rss(g: &Group) -> u64 {
    g.sums
        .iter()
        .find(|(m, _)| *m == Metric::Rss)
        .map_or(0, |s| s.1)
}

fn add(list: &mut Vec<(Metric, u64)>, metric: Metric, v: u64) {
    match list.iter_mut().find(|(m, _)| *m == metric) {
        Some(s) => s.1 = s.1.saturating_add(v),
        None => {
            list.push((metric, v));
            list.sort_by_key(|(m, _)| *m);
        }
    }
}

fn add_to(g: &mut Group, p: &ProcessView) {
    g.processes += 1;
    for metric in Metric::ALL {
        if catalogue::export_of(metric) == Export::Counter {
            continue;
        }
        if let Some(v) = p.latest.get(metric) {
            add(&mut g.sums, metric, v);
        }
    }
    for v in &p.verdicts {
        add(&mut g.leaks, v.metric, v.leak as u64);
    }
}

fn merge(into: &mut Group, g: &Group) {
    into.processes += g.processes;
    for &(m, v) in &g.sums {
        add(&mut into.sums, m, v);
    }
    for &(m, v) in &g.leaks {
        add(&mut into.leaks, m, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, name: &str, mib: u64, slope: Option<f64>) -> ProcessView {
        ProcessView {
            pid,
            name: name.into(),
            latest: Metrics {
                rss_anon: Some(mib << 20),
                rss_file: Some(0),
                rss_shmem: Some(0),
                vm_size: Some(mib << 21),
                page_faults: Some(7),
                ..Metrics::default()
            },
            verdicts: slope
                .map(|s| MetricVerdict {
                    metric: Metric::Rss,
                    leak: s > 0.0,
                    slope_per_s: s,
                    time_to_limit_s: None,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_largest_and_the_fastest_growing_are_exported_and_the_rest_summed_by_name() {
        let mut processes: Vec<ProcessView> = (0..10)
            .map(|i| process(100 + i, "worker", 10 + i as u64, Some(0.0)))
            .collect();
        // A small leaking process, and two small ones of another name.
        processes.push(process(7, "leaky", 1, Some(5000.0)));
        processes.push(process(8, "cron", 2, None));
        processes.push(process(9, "cron", 3, None));
        let snap = Snapshot {
            processes,
            top: 2,
            ..Snapshot::default()
        };
        let sel = snap.select();
        let pids: Vec<u32> = sel.individual.iter().map(|p| p.pid).collect();
        // Top 2 by size (109, 108) and by growth (the leak first, then the largest of the
        // equal slopes, already chosen... so 109 again, which counts once).
        assert_eq!(pids, vec![7, 108, 109]);
        let names: Vec<(&str, u64)> = sel
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.processes))
            .collect();
        // 8 workers left, then cron (5 MiB) and nothing else: two names fit in N = 2.
        assert_eq!(names, vec![("worker", 8), ("cron", 2)]);
        let worker = &sel.groups[0];
        let rss = worker.sums.iter().find(|s| s.0 == Metric::Rss).unwrap().1;
        assert_eq!(rss, (10..18).sum::<u64>() << 20);
        // Counters are not summed; leaks are counted (none among the workers).
        assert!(!worker.sums.iter().any(|s| s.0 == Metric::PageFaults));
        assert_eq!(worker.leaks, vec![(Metric::Rss, 0)]);
        assert!(sel.groups[1].leaks.is_empty());
    }

    #[test]
    fn names_past_the_first_n_are_merged_into_other() {
        let processes: Vec<ProcessView> = (0..6)
            .map(|i| process(i, &format!("n{i}"), 1 + i as u64, None))
            .collect();
        let snap = Snapshot {
            processes,
            top: 1,
            ..Snapshot::default()
        };
        let sel = snap.select();
        // One exported (the largest: pid 5); of the 5 names left, n4 and then (other) of 4.
        assert_eq!(sel.individual.len(), 1);
        let names: Vec<(&str, u64)> = sel
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.processes))
            .collect();
        assert_eq!(names, vec![("n4", 1), (OTHER_NAMES, 4)]);
    }
}
