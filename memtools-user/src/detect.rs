//! The pipeline over a stored session: each process's history from the store, the limit that
//! applied where it ran, one [`Analysis`] per process. Shared by `detect` and the GUI, so both
//! always give the same verdicts for the same [`Params`].

use rayon::prelude::*;
use serde::Serialize;

use crate::analysis::{self, Analysis, Params, Verdict};
use crate::model::{History, Metric, TimeNs};
use crate::store::{ProcessRow, SessionRow, Store, StoreError};

/// One process's verdict.
#[derive(Clone, Debug)]
pub struct ProcessResult {
    pub process: ProcessRow,
    /// The limit its time-to-limit was projected against, and where it came from.
    pub limit: Limit,
    pub analysis: Analysis,
}

/// The memory limit a history was analysed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub bytes: u64,
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
}

/// A whole session's verdicts, leaks first.
#[derive(Clone, Debug)]
pub struct SessionReport {
    pub session: SessionRow,
    pub metric: Metric,
    pub params: Params,
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
}

/// What a limit is, given the options and what the session recorded.
pub fn resolve_limit(
    given: Option<u64>,
    process: &ProcessRow,
    session: &SessionRow,
    this_machine: u64,
) -> Limit {
    let (bytes, source) = match (given, process.memory_limit, session.mem_total) {
        (Some(b), _, _) => (b, LimitSource::Given),
        (None, Some(b), _) => (b, LimitSource::Cgroup),
        (None, None, Some(b)) => (b, LimitSource::RecordingMachine),
        (None, None, None) => (this_machine, LimitSource::ThisMachine),
    };
    Limit { bytes, source }
}

/// Analyses every history of a session (in parallel across processes), leaks first.
/// `params.limit_bytes` is ignored: each process gets the limit [`resolve_limit`] gives.
pub fn analyse_histories(
    session: &SessionRow,
    histories: Vec<(ProcessRow, History)>,
    params: &Params,
    given_limit: Option<u64>,
    this_machine: u64,
) -> Vec<ProcessResult> {
    let mut results: Vec<ProcessResult> = histories
        .into_par_iter()
        .map(|(process, points)| {
            let limit = resolve_limit(given_limit, &process, session, this_machine);
            let params = Params {
                limit_bytes: limit.bytes,
                ..params.clone()
            };
            let times: Vec<TimeNs> = points.iter().map(|p| p.0).collect();
            let values: Vec<f64> = points.iter().map(|p| p.1 as f64).collect();
            let analysis = analysis::analyze(&times, &values, &params);
            ProcessResult {
                process,
                limit,
                analysis,
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
    let processes = analyse_histories(&session, histories, params, given_limit, this_machine);
    Ok(SessionReport {
        session,
        metric,
        params: params.clone(),
        processes,
    })
}
