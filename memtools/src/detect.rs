//! The pipeline over a stored session: each process's history from the store, the limit that
//! applied where it ran, one [`Analysis`] per process. Shared by `detect` and the GUI, so both
//! always give the same verdicts for the same [`Params`].

use rayon::prelude::*;
use serde::Serialize;

use crate::analysis::{self, Analysis, Context, Params, PhaseSpan, Verdict};
use crate::model::{BackendKind, History, Metric, TimeNs};
use crate::store::{Phase, ProcessRow, SessionRow, Store, StoreError};

/// One process's verdict.
#[derive(Clone, Debug)]
pub struct ProcessResult {
    pub process: ProcessRow,
    /// The limit its time-to-limit was projected against, and where it came from.
    pub limit: Limit,
    pub analysis: Analysis,
    /// For a leak, the phases during which its memory grew most, largest first.
    pub grew_during: Vec<PhaseGrowth>,
    /// The largest value of its history (teardown and a trailing exit left out).
    pub peak: u64,
    /// The peak budget that applied to it (`--fail-on-peak`), if any.
    pub budget: Option<u64>,
    /// For a leak recorded with `record --sites`: where it grew most in its leak window, the
    /// top three sites (see [`attach_sites`]).
    pub grew_in: Vec<crate::sites::SiteSummary>,
    /// Its growth sites were sampled but stacks came back one frame deep (no frame pointers).
    pub sites_shallow: bool,
    /// For a leak with named sites: every stack sampled in its leak window, for its flame graph.
    pub sites: Vec<crate::sites::Site>,
}

impl ProcessResult {
    /// Whether its peak went over its budget.
    pub fn over_budget(&self) -> bool {
        self.budget.is_some_and(|b| self.peak > b)
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
        if self.grew_during.is_empty() {
            return None;
        }
        let list: Vec<String> = self
            .grew_during
            .iter()
            .map(|p| {
                format!(
                    "{} (+{})",
                    p.name,
                    crate::analysis::format::bytes(p.growth_bytes)
                )
            })
            .collect();
        Some(format!("grew most during {}", list.join(", ")))
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
    pub fn explanation(&self) -> String {
        let mut out = self.analysis.reason.clone();
        for extra in [self.phases_in_words(), self.sites_in_words()]
            .into_iter()
            .flatten()
        {
            out.push_str("; ");
            out.push_str(&extra);
        }
        out
    }
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
    pub metric: Metric,
    pub params: Params,
    /// The peak budgets asked for.
    pub budgets: Vec<PeakBudget>,
    pub processes: Vec<ProcessResult>,
}

impl SessionReport {
    /// How many processes got each verdict: (leak, ok, insufficient).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |v| {
            self.processes
                .iter()
                .filter(|p| p.analysis.verdict == v)
                .count()
        };
        (n(Verdict::Leak), n(Verdict::Ok), n(Verdict::Insufficient))
    }

    /// Whether any process leaks.
    pub fn has_leak(&self) -> bool {
        self.processes
            .iter()
            .any(|p| p.analysis.verdict == Verdict::Leak)
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
/// machine's memory: a 31 GiB virtual size on a 24 GiB machine is common); counters by nothing.
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
                limit,
                analysis,
                grew_during,
                peak,
                budget: None,
                grew_in: Vec::new(),
                sites_shallow: false,
                sites: Vec::new(),
            }
        })
        .collect();
    results.sort_by(|a, b| {
        let rank = |r: &ProcessResult| match r.analysis.verdict {
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
    results
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

/// Names each leak's top growth sites within its leak window, for a session recorded with
/// `record --sites` (others are left as they are).
pub fn attach_sites(
    store: &Store,
    session: i64,
    results: &mut [ProcessResult],
) -> Result<(), StoreError> {
    if !store.has_sites(session)? {
        return Ok(());
    }
    for r in results.iter_mut() {
        let (Verdict::Leak, Some(e)) = (r.analysis.verdict, r.analysis.evidence.as_ref()) else {
            continue;
        };
        let window = crate::sites::Window {
            start: Some(e.window_start),
            end: Some(e.window_end),
        };
        let sites = store.sites(r.process.id, window)?;
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
        params: params.clone(),
        budgets: Vec::new(),
        processes,
    })
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
