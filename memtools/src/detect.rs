//! The pipeline over a stored session: each process's history from the store, the limit that
//! applied where it ran, one [`Analysis`] per process. Shared by `detect` and the GUI, so both
//! always give the same verdicts for the same [`Params`].

use rayon::prelude::*;
use serde::Serialize;

use crate::analysis::{self, Analysis, Context, Params, PhaseSpan, Verdict};
use crate::model::{BackendKind, History, Metric, TimeNs};
use crate::store::{Phase, ProcessRow, SessionRow, Store, StoreError};

/// One process's verdict on the report's metric, and with `--metric all` on the others.
#[derive(Clone, Debug)]
pub struct ProcessResult {
    pub process: ProcessRow,
    /// The metric `analysis` judges (the report's).
    pub metric: Metric,
    /// The limit its time-to-limit was projected against, and where it came from.
    pub limit: Limit,
    pub analysis: Analysis,
    /// For a leak, the phases during which its memory grew most, largest first.
    pub grew_during: Vec<PhaseGrowth>,
    /// The largest value of its history (teardown and a trailing exit left out).
    pub peak: u64,
    /// The peak budget that applied to it (`--fail-on-peak`), if any.
    pub budget: Option<u64>,
    /// With `--metric all`: its verdicts on the counts (threads, file descriptors), each
    /// judged on its own; the process leaks if any of them, or `analysis`, does.
    pub also: Vec<MetricResult>,
}

/// A process's verdict on one more metric (`--metric all`).
#[derive(Clone, Debug)]
pub struct MetricResult {
    pub metric: Metric,
    pub limit: Limit,
    pub analysis: Analysis,
    pub grew_during: Vec<PhaseGrowth>,
    pub peak: u64,
}

impl ProcessResult {
    /// Whether its peak went over its budget.
    pub fn over_budget(&self) -> bool {
        self.budget.is_some_and(|b| self.peak > b)
    }

    /// The process's verdict: a leak when any metric judged leaks, else the report metric's.
    pub fn verdict(&self) -> Verdict {
        if self.leaking().next().is_some() {
            Verdict::Leak
        } else {
            self.analysis.verdict
        }
    }

    /// Every metric judged, the report's first: (metric, analysis, phases it grew in).
    pub fn judged(&self) -> impl Iterator<Item = (Metric, &Analysis, &[PhaseGrowth])> {
        std::iter::once((self.metric, &self.analysis, self.grew_during.as_slice())).chain(
            self.also
                .iter()
                .map(|m| (m.metric, &m.analysis, m.grew_during.as_slice())),
        )
    }

    /// The metrics it leaks, the report's first.
    pub fn leaking(&self) -> impl Iterator<Item = Metric> + '_ {
        self.judged()
            .filter(|(_, a, _)| a.verdict == Verdict::Leak)
            .map(|(m, _, _)| m)
    }

    /// The analysis a plot of this process shows: its first leaking metric's, else the
    /// report metric's; with that metric.
    pub fn shown(&self) -> (Metric, &Analysis) {
        self.judged()
            .find(|(_, a, _)| a.verdict == Verdict::Leak)
            .map_or((self.metric, &self.analysis), |(m, a, _)| (m, a))
    }
}

/// A peak a process must stay under (`--fail-on-peak SIZE` or `NAME=SIZE`), like
/// pytest-memray's `limit_memory`: a run that needs more memory than its budget fails, leak or
/// not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeakBudget {
    /// The process name it applies to; `None` for every process without a budget of its own.
    pub name: Option<String>,
    pub bytes: u64,
}

impl PeakBudget {
    /// The budget for a process name: its own, else the one for every process.
    pub fn for_name(budgets: &[PeakBudget], name: &str) -> Option<u64> {
        budgets
            .iter()
            .find(|b| b.name.as_deref() == Some(name))
            .or_else(|| budgets.iter().find(|b| b.name.is_none()))
            .map(|b| b.bytes)
    }

    /// Parses `SIZE` or `NAME=SIZE`, the size by `parse_size` (the caller's unit parser).
    pub fn parse(
        s: &str,
        parse_size: impl Fn(&str) -> Result<u64, String>,
    ) -> Result<Self, String> {
        match s.rsplit_once('=') {
            Some((name, size)) if !name.is_empty() => Ok(PeakBudget {
                name: Some(name.to_string()),
                bytes: parse_size(size)?,
            }),
            Some(_) => Err(format!(
                "`{s}`: a name goes before the `=` (like worker=2GiB)"
            )),
            None => Ok(PeakBudget {
                name: None,
                bytes: parse_size(s)?,
            }),
        }
    }
}

/// How much a process grew during one phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseGrowth {
    pub name: String,
    pub growth_bytes: f64,
}

impl ProcessResult {
    /// "grew most during test_b (+40 MiB), test_c (+12 MiB)", or nothing without phases.
    pub fn phases_in_words(&self) -> Option<String> {
        phases_words(&self.grew_during, self.metric.unit())
    }

    /// The reason, with the phases a leak grew in when there are any. Judged on more than one
    /// metric, each leak says what leaks: "leaks file descriptors: 12 -> 4,810 over 9 min,
    /// +9/s; leaks threads: ...".
    pub fn explanation(&self) -> String {
        let own = |reason: &str, phases: &[PhaseGrowth], unit| match phases_words(phases, unit) {
            Some(p) => format!("{reason}; {p}"),
            None => reason.to_string(),
        };
        if self.also.is_empty() || self.leaking().next().is_none() {
            return own(&self.analysis.reason, &self.grew_during, self.metric.unit());
        }
        self.judged()
            .filter(|(_, a, _)| a.verdict == Verdict::Leak)
            .map(|(m, a, phases)| {
                format!("leaks {}: {}", m.what(), own(&a.reason, phases, m.unit()))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// "grew most during test_b (+40 MiB), test_c (+12 MiB)", or nothing without phases.
fn phases_words(phases: &[PhaseGrowth], unit: crate::model::Unit) -> Option<String> {
    if phases.is_empty() {
        return None;
    }
    let list: Vec<String> = phases
        .iter()
        .map(|p| {
            format!(
                "{} (+{})",
                p.name,
                crate::analysis::format::amount(p.growth_bytes, unit)
            )
        })
        .collect();
    Some(format!("grew most during {}", list.join(", ")))
}

/// How close to its exit a fall in memory counts as the process tearing down.
const TEARDOWN_NS: i64 = 1_000_000_000;

/// How many trailing samples are a process tearing itself down on its way out: those after
/// the last time, in the last second before its recorded exit, that it held the most memory of
/// that second, when memory fell after it. An interpreter freeing its heap at shutdown, or a
/// service dropping its caches as it stops, is an exit, not a release, as a trailing 0-byte
/// sample is; what it held flat before that (its last tests, say) is kept.
pub fn exit_teardown(points: &[(TimeNs, u64)], exit: Option<TimeNs>) -> usize {
    let Some(exit) = exit else { return 0 };
    let from = points.partition_point(|p| p.0 < exit - TEARDOWN_NS);
    let window = &points[from..];
    let Some(top) = window.iter().map(|p| p.1).max() else {
        return 0;
    };
    let Some(last_top) = window.iter().rposition(|p| p.1 == top) else {
        return 0;
    };
    let n = window.len() - 1 - last_top;
    // A flat tail is not a fall; nor is one sample.
    match window.last() {
        Some(&(_, end)) if n > 0 && end < top && window.len() > 1 => n,
        _ => 0,
    }
}

/// How many phases a leak is attributed to at most.
const TOP_PHASES: usize = 3;

/// The growth of a history within each phase (value at its end minus value at its start, each
/// the last sample at or before that time), the largest positive ones first.
pub fn growth_by_phase(points: &[(TimeNs, u64)], phases: &[Phase]) -> Vec<PhaseGrowth> {
    let at = |t: TimeNs| -> Option<f64> {
        let i = points.partition_point(|p| p.0 <= t);
        i.checked_sub(1).map(|i| points[i].1 as f64)
    };
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let mut out: Vec<PhaseGrowth> = phases
        .iter()
        .filter_map(|ph| {
            let end = ph.end.unwrap_or(last.0);
            if end < first.0 || ph.begin > last.0 {
                return None;
            }
            let before = at(ph.begin).unwrap_or(first.1 as f64);
            let growth = at(end)? - before;
            (growth > 0.0).then(|| PhaseGrowth {
                name: ph.name.clone(),
                growth_bytes: growth,
            })
        })
        .collect();
    out.sort_by(|a, b| b.growth_bytes.total_cmp(&a.growth_bytes));
    out.truncate(TOP_PHASES);
    out
}

/// The limit a history was analysed against; `bytes` is `None` where nothing bounds the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub bytes: Option<u64>,
    pub source: LimitSource,
}

/// Where a limit came from, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// `--limit` or the GUI's field.
    Given,
    /// The process's cgroup, where it ran.
    Cgroup,
    /// The memory of the machine that recorded the session.
    RecordingMachine,
    /// The memory of this machine: the session did not say (memorytools imports).
    ThisMachine,
    /// The process's address-space limit (RLIMIT_AS): what bounds its virtual size.
    AddressSpace,
    /// The process's open-file limit (RLIMIT_NOFILE): where a descriptor leak ends.
    OpenFiles,
    /// Its cgroup's task limit (`pids.max`): threads count against it.
    Tasks,
    /// The machine's `kernel.threads-max`.
    ThreadsMax,
    /// The machine's `kernel.pid_max`: every thread takes a pid.
    PidMax,
    /// Nothing bounds the metric (virtual size without an address-space limit, counters): no
    /// time to limit is claimed.
    None,
}

/// A whole session's verdicts, leaks first.
#[derive(Clone, Debug)]
pub struct SessionReport {
    pub session: SessionRow,
    /// The phases a test harness marked, in order.
    pub phases: Vec<Phase>,
    /// The comparison with an earlier session, when one was asked for.
    pub baseline: Option<crate::baseline::Comparison>,
    /// The metric `ProcessResult::analysis` judges.
    pub metric: Metric,
    /// Every metric judged: `metric`, and with `--metric all` the counts the session recorded.
    pub metrics: Vec<Metric>,
    pub params: Params,
    /// The peak budgets asked for.
    pub budgets: Vec<PeakBudget>,
    pub processes: Vec<ProcessResult>,
}

impl SessionReport {
    /// How many processes got each verdict: (leak, ok, insufficient).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |v| self.processes.iter().filter(|p| p.verdict() == v).count();
        (n(Verdict::Leak), n(Verdict::Ok), n(Verdict::Insufficient))
    }

    /// Whether any process leaks, on any metric judged.
    pub fn has_leak(&self) -> bool {
        self.processes.iter().any(|p| p.verdict() == Verdict::Leak)
    }

    /// Whether more than one metric was judged (`--metric all` on a session with counts).
    pub fn is_combined(&self) -> bool {
        self.metrics.len() > 1
    }

    /// The metrics judged in words: "rss", "rss, threads and fds".
    pub fn metrics_words(&self) -> String {
        let names: Vec<&str> = self.metrics.iter().map(|m| m.name()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    /// The processes whose peak went over their budget.
    pub fn over_budget(&self) -> impl Iterator<Item = &ProcessResult> {
        self.processes.iter().filter(|p| p.over_budget())
    }

    /// Applies peak budgets to every process.
    pub fn set_budgets(&mut self, budgets: Vec<PeakBudget>) {
        for p in &mut self.processes {
            p.budget = PeakBudget::for_name(&budgets, &p.process.info.name);
        }
        self.budgets = budgets;
    }
}

/// What bounds a metric, given the options and what the session recorded: memory by the
/// cgroup or the machine; virtual size only by an address-space limit (it is not bounded by the
/// machine's memory: a 31 GiB virtual size on a 24 GiB machine is common); file descriptors by
/// the process's RLIMIT_NOFILE; threads by the tightest of its cgroup's `pids.max` and the
/// machine's `threads-max` and `pid_max`; counters by nothing.
pub fn resolve_limit(
    given: Option<u64>,
    process: &ProcessRow,
    session: &SessionRow,
    this_machine: u64,
    metric: Metric,
) -> Limit {
    let limit = |bytes, source| Limit {
        bytes: Some(bytes),
        source,
    };
    if let Some(b) = given {
        return limit(b, LimitSource::Given);
    }
    match metric {
        Metric::VmSize => match process.address_space_limit {
            Some(b) => limit(b, LimitSource::AddressSpace),
            None => Limit {
                bytes: None,
                source: LimitSource::None,
            },
        },
        Metric::Rss | Metric::RssAnon | Metric::RssFile | Metric::RssShmem | Metric::Swap => {
            match (process.memory_limit, session.mem_total) {
                (Some(b), _) => limit(b, LimitSource::Cgroup),
                (None, Some(b)) => limit(b, LimitSource::RecordingMachine),
                (None, None) => limit(this_machine, LimitSource::ThisMachine),
            }
        }
        Metric::Fds => match process.open_files_limit {
            Some(b) => limit(b, LimitSource::OpenFiles),
            None => Limit {
                bytes: None,
                source: LimitSource::None,
            },
        },
        Metric::Threads => [
            (process.tasks_limit, LimitSource::Tasks),
            (session.threads_max, LimitSource::ThreadsMax),
            (session.pid_max, LimitSource::PidMax),
        ]
        .into_iter()
        .filter_map(|(b, source)| Some((b?, source)))
        .min_by_key(|(b, _)| *b)
        .map_or(
            Limit {
                bytes: None,
                source: LimitSource::None,
            },
            |(b, source)| limit(b, source),
        ),
        _ => Limit {
            bytes: None,
            source: LimitSource::None,
        },
    }
}

/// How long before the recording's start a process may have started and still count as seen
/// from its start: the recorder starts its clock after spawning the command and loading its
/// backend.
const STARTED_WITH_RECORDING_NS: i64 = 5_000_000_000;

/// What is known of a process's history beyond its samples: whether it is its whole life
/// (recorded from its start to its exit) and the tests it lived through.
pub fn context_of(process: &ProcessRow, session: &SessionRow, phases: &[Phase]) -> Context {
    let imported = BackendKind::from_name(&session.backend)
        .is_none_or(|b| b == BackendKind::MemorytoolsImport);
    let from_start = !imported
        && session.monotonic_offset_ns.is_some_and(|offset| {
            let started = (process.info.key.start_time as i64).saturating_add(offset);
            started >= session.start - STARTED_WITH_RECORDING_NS
        });
    Context {
        from_start,
        exited: !imported && process.exit.is_some(),
        phases: phases
            .iter()
            .filter_map(|p| {
                Some(PhaseSpan {
                    begin: p.begin,
                    end: p.end?,
                })
            })
            .collect(),
    }
}

/// Analyses every history of a session of one metric (in parallel across processes), leaks
/// first, each judged across the session's phases where it lived through them and each leak
/// attributed to the phases during which it grew most. `params.limit_bytes` is ignored: each
/// process gets the limit [`resolve_limit`] gives.
pub fn analyse_histories(
    session: &SessionRow,
    histories: Vec<(ProcessRow, History)>,
    phases: &[Phase],
    metric: Metric,
    params: &Params,
    given_limit: Option<u64>,
    this_machine: u64,
) -> Vec<ProcessResult> {
    let mut results: Vec<ProcessResult> = histories
        .into_par_iter()
        .map(|(process, points)| {
            let limit = resolve_limit(given_limit, &process, session, this_machine, metric);
            let params = Params {
                limit_bytes: limit.bytes,
                unit: metric.unit(),
                ..params.clone()
            };
            // A trailing 0 is a process caught exiting; a fall just before its exit is its
            // teardown: neither is a release, for the verdict, the peak or the phases.
            let live = points
                .iter()
                .rposition(|p| p.1 != 0)
                .map_or(&points[..], |i| &points[..=i]);
            let kept = &live[..live.len() - exit_teardown(live, process.exit)];
            let times: Vec<TimeNs> = kept.iter().map(|p| p.0).collect();
            let values: Vec<f64> = kept.iter().map(|p| p.1 as f64).collect();
            let ctx = context_of(&process, session, phases);
            let analysis = analysis::analyze_in(&times, &values, &ctx, &params);
            let grew_during = if analysis.verdict == Verdict::Leak {
                growth_by_phase(kept, phases)
            } else {
                Vec::new()
            };
            let peak = kept.iter().map(|p| p.1).max().unwrap_or(0);
            ProcessResult {
                process,
                metric,
                limit,
                analysis,
                grew_during,
                peak,
                budget: None,
                also: Vec::new(),
            }
        })
        .collect();
    sort_results(&mut results);
    results
}

/// Leaks first (on any metric), then ok, then insufficient; the largest growth of the report's
/// metric first within each.
fn sort_results(results: &mut [ProcessResult]) {
    results.sort_by(|a, b| {
        let rank = |r: &ProcessResult| match r.verdict() {
            Verdict::Leak => 0,
            Verdict::Ok => 1,
            Verdict::Insufficient => 2,
        };
        let growth = |r: &ProcessResult| r.analysis.evidence.map_or(0.0, |e| e.growth_bytes);
        rank(a)
            .cmp(&rank(b))
            .then(growth(b).total_cmp(&growth(a)))
            .then(a.process.id.cmp(&b.process.id))
    });
}

/// [`analyse_histories`] of the session's default metric (resident memory for recordings,
/// virtual size for imports), for front-ends that show only that.
pub fn analyse_with_phases(
    session: &SessionRow,
    histories: Vec<(ProcessRow, History)>,
    phases: &[Phase],
    params: &Params,
    given_limit: Option<u64>,
    this_machine: u64,
) -> Vec<ProcessResult> {
    let metric = session.default_metric();
    analyse_histories(
        session,
        histories,
        phases,
        metric,
        params,
        given_limit,
        this_machine,
    )
}

/// Reads a session from the store and analyses it: the session's default metric unless one is
/// given.
pub fn analyse_session(
    store: &Store,
    session: i64,
    metric: Option<Metric>,
    params: &Params,
    given_limit: Option<u64>,
    this_machine: u64,
) -> Result<SessionReport, StoreError> {
    let session = store.session(session)?;
    let metric = metric.unwrap_or(session.default_metric());
    let histories = store.series(session.id, metric)?;
    let phases = store.phases(session.id)?;
    let processes = analyse_histories(
        &session,
        histories,
        &phases,
        metric,
        params,
        given_limit,
        this_machine,
    );
    Ok(SessionReport {
        session,
        phases,
        baseline: None,
        metric,
        metrics: vec![metric],
        params: params.clone(),
        budgets: Vec::new(),
        processes,
    })
}

/// Which metrics a verdict is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricChoice {
    /// One metric; `None` is the session's default (resident memory, virtual size for
    /// imports).
    One(Option<Metric>),
    /// Memory (the session's default metric), threads and file descriptors together: a
    /// process leaks if any of them does. Counts a session did not record are left out.
    All,
}

impl std::str::FromStr for MetricChoice {
    type Err = crate::model::UnknownMetric;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(MetricChoice::All),
            _ => s.parse().map(|m| MetricChoice::One(Some(m))),
        }
    }
}

/// [`analyse_session`] on one metric or all of them. With all, `given_limit` (`--limit`)
/// bounds the memory only: the counts are judged against their own recorded limits.
pub fn analyse(
    store: &Store,
    session: i64,
    choice: MetricChoice,
    params: &Params,
    given_limit: Option<u64>,
    this_machine: u64,
) -> Result<SessionReport, StoreError> {
    let metric = match choice {
        MetricChoice::One(metric) => {
            return analyse_session(store, session, metric, params, given_limit, this_machine);
        }
        MetricChoice::All => None,
    };
    let mut report = analyse_session(store, session, metric, params, given_limit, this_machine)?;
    for count in Metric::COUNTS {
        if !store.has_metric(session, count)? {
            continue;
        }
        let histories = store.series(session, count)?;
        let results = analyse_histories(
            &report.session,
            histories,
            &report.phases,
            count,
            params,
            None,
            this_machine,
        );
        for r in results {
            if let Some(p) = report
                .processes
                .iter_mut()
                .find(|p| p.process.id == r.process.id)
            {
                p.also.push(MetricResult {
                    metric: count,
                    limit: r.limit,
                    analysis: r.analysis,
                    grew_during: r.grew_during,
                    peak: r.peak,
                });
            }
        }
        report.metrics.push(count);
    }
    sort_results(&mut report.processes);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, begin: TimeNs, end: Option<TimeNs>) -> Phase {
        Phase {
            name: name.into(),
            begin,
            end,
        }
    }

    #[test]
    fn a_leak_is_attributed_to_the_phases_it_grew_in() {
        let points = [(0, 10), (10, 10), (20, 50), (30, 55), (40, 55), (50, 90)];
        let phases = [
            phase("warm-up", 0, Some(10)),
            phase("test_a", 10, Some(20)),
            phase("test_b", 25, Some(40)),
            phase("test_c", 40, None),
            phase("before", -20, Some(-10)),
        ];
        let g = growth_by_phase(&points, &phases);
        let names: Vec<_> = g
            .iter()
            .map(|p| (p.name.as_str(), p.growth_bytes))
            .collect();
        assert_eq!(
            names,
            vec![("test_a", 40.0), ("test_c", 35.0), ("test_b", 5.0)]
        );
        assert!(growth_by_phase(&[], &phases).is_empty());
    }

    #[test]
    fn a_fall_just_before_exit_is_teardown_not_release() {
        let s = 1_000_000_000;
        let pts = [
            (0, 10),
            (s, 20),
            (2 * s, 30),
            (2 * s + s / 2, 25),
            (2 * s + 3 * s / 4, 5),
        ];
        // Exit recorded right after the last sample: the last two are the process tearing down.
        assert_eq!(exit_teardown(&pts, Some(2 * s + 4 * s / 5)), 2);
        // Flat for the last second (its last tests), then a drop: only the drop is teardown.
        let flat = [(0, 10), (s / 4, 50), (s / 2, 50), (3 * s / 4, 50), (s, 5)];
        assert_eq!(exit_teardown(&flat, Some(s)), 1);
        // Still running, or exiting long after the fall: a release, left to the analysis.
        assert_eq!(exit_teardown(&pts, None), 0);
        assert_eq!(exit_teardown(&pts, Some(10 * s)), 0);
        // A flat tail before exit is not a fall.
        assert_eq!(exit_teardown(&[(0, 5), (s, 5), (2 * s, 5)], Some(2 * s)), 0);
        assert_eq!(exit_teardown(&[], Some(0)), 0);
    }
}
