//! The pipeline over a stored session: each process's history from the store, the limit that
//! applied where it ran, one [`Analysis`] per process (on one metric, or on memory, threads and
//! file descriptors together). Shared by `detect` and the GUI, so both always give the same
//! verdicts for the same [`Params`].

mod budget;
mod limits;
mod phases;

use rayon::prelude::*;

pub use self::budget::PeakBudget;
pub use self::limits::{Limit, LimitSource, resolve_limit};
pub use self::phases::{PhaseGrowth, exit_teardown, growth_by_phase};

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
    /// For a memory leak recorded with growth sites: where it grew most in its leak
    /// window, the top three sites (see [`attach_sites`]).
    pub grew_in: Vec<crate::sites::SiteSummary>,
    /// Its growth sites were sampled but stacks came back one frame deep (no frame pointers).
    pub sites_shallow: bool,
    /// For a leak with named sites: every stack sampled in its leak window, for its flame graph.
    pub sites: Vec<crate::sites::Site>,
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
impl ProcessResult {
    /// "grew most during test_b (+40 MiB), test_c (+12 MiB)", or nothing without phases.
    pub fn phases_in_words(&self) -> Option<String> {
        phases::phases_words(&self.grew_during, self.metric.unit())
    }

    /// "grew most in grow_cache (cache.c:41), 92 %; ...": a leak's top growth sites, or why
    /// none can be named; nothing when sites were not recorded.
    pub fn sites_in_words(&self) -> Option<String> {
        if self.sites_shallow {
            return Some(
                "growth sites unknown: stacks one frame deep (build with frame pointers)"
                    .to_string(),
            );
        }
        if self.grew_in.is_empty() {
            return None;
        }
        let list: Vec<String> = self.grew_in.iter().map(|s| s.phrase()).collect();
        Some(format!("grew most in {}", list.join("; ")))
    }

    /// The reason, with the phases a leak grew in and its top growth sites when there are any.
    /// Judged on more than one metric, each leak says what leaks: "leaks file descriptors:
    /// 12 -> 4,810 over 9 min, +9/s; leaks threads: ...".
    pub fn explanation(&self) -> String {
        let reason = self.reason_by_metric();
        match self.sites_in_words() {
            Some(sites) => format!("{reason}; {sites}"),
            None => reason,
        }
    }

    fn reason_by_metric(&self) -> String {
        let own =
            |reason: &str, phases: &[PhaseGrowth], unit| match phases::phases_words(phases, unit) {
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
                grew_in: Vec::new(),
                sites_shallow: false,
                sites: Vec::new(),
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

/// How many growth sites a leak verdict names.
pub const SITES_NAMED: usize = 3;

/// Names each memory leak's top growth sites within its leak window, for a session recorded
/// with growth sites (others are left as they are). Sites are where memory grew, so they
/// say nothing of a count's leak.
pub fn attach_sites(
    store: &Store,
    session: i64,
    results: &mut [ProcessResult],
) -> Result<(), StoreError> {
    if !store.has_sites(session)? {
        return Ok(());
    }
    for r in results.iter_mut() {
        if !r.metric.is_bytes() {
            continue;
        }
        let (Verdict::Leak, Some(e)) = (r.analysis.verdict, r.analysis.evidence.as_ref()) else {
            continue;
        };
        let window = crate::sites::Window {
            start: Some(e.window_start),
            end: Some(e.window_end),
        };
        // Resident growth only (sampled faults), as the verdict is about resident memory: the
        // address space brk/mmap calls reserved is another measure (`sites --cause`).
        let sites = store.sites(r.process.id, window, &[crate::sites::SiteCause::Fault])?;
        r.sites_shallow = crate::sites::shallow(&sites);
        r.grew_in = crate::sites::summarize(&sites)
            .into_iter()
            .take(SITES_NAMED)
            .collect();
        if !r.grew_in.is_empty() {
            r.sites = sites;
        }
    }
    Ok(())
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
    let mut processes = analyse_histories(
        &session,
        histories,
        &phases,
        metric,
        params,
        given_limit,
        this_machine,
    );
    attach_sites(store, session.id, &mut processes)?;
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
