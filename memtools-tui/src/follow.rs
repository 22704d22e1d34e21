//! Following a session in the store: each poll reads only what is new (processes, their samples
//! after the last one read, exits and renames), keeps each process's history of the view's
//! metric, and says which processes are due for a new verdict. Synchronous, so tests drive it
//! step by step; [`crate::worker`] runs it on its own thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memtools::analysis::Verdict;
use memtools::detect::ProcessResult;
use memtools::model::{BackendKind, Metric, TimeNs};
use memtools::store::{Phase, ProcessRow, SessionRow, SessionSelector, Store, StoreError};

use crate::history::History;
use crate::snapshot::{AnalysisState, CountMetrics, Focus, FollowState, Judged, Row, Snapshot};

/// Samples read per query: a long backlog (a finished session) comes in pieces.
const CHUNK: usize = 50_000;
/// The process list is re-read at least this often (exits and renames), and whenever the
/// session's process count moves.
const LIST_EVERY: Duration = Duration::from_secs(1);
/// Points of the open chart's history: min/max pairs, enough for a wide braille chart.
const FOCUS_BUCKETS: usize = 1000;
/// A process's verdict is refreshed when its history grew by a tenth since the last one (so a
/// long history is not re-analysed every second for a few more points: the analysis costs the
/// same per new sample however long the history) ...
const REANALYSE_GROWTH: u64 = 10;
/// ... or, if anything changed at all, after this long per thousand points (at least this
/// long): a long history then costs no more to keep fresh than a short one.
const REANALYSE_EVERY: Duration = Duration::from_secs(30);

/// One process being followed.
struct Tracked {
    row: ProcessRow,
    name: Arc<str>,
    cmdline: Arc<str>,
    history: History,
    threads: Option<u64>,
    fds: Option<u64>,
    /// Time of the last sample read, whatever metrics it had.
    after: Option<TimeNs>,
    /// Exited and read past its exit: nothing more will come.
    complete: bool,
    judged: Option<Arc<Judged>>,
    /// What the last analysis job saw: points appended, when, and whether it had exited.
    job: Option<(u64, Instant, bool)>,
    /// The row as last shown; `None` once anything in it changed.
    shown: Option<Arc<Row>>,
}

impl Tracked {
    fn new(row: ProcessRow, step: i64) -> Tracked {
        Tracked {
            name: Arc::from(row.info.name.as_str()),
            cmdline: Arc::from(row.info.cmdline.as_str()),
            row,
            history: History::new(step),
            threads: None,
            fds: None,
            after: None,
            complete: false,
            judged: None,
            job: None,
            shown: None,
        }
    }

    /// Whether this process needs a new verdict now.
    fn due(&self, now: Instant, recording: bool, change_only: bool) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let Some((seen, when, exited)) = self.job else {
            return true;
        };
        let new = self.history.appended() - seen;
        let exited_since = self.row.exit.is_some() && !exited;
        let per_thousand = (self.history.len() / 1000).max(1) as u32;
        let stale = now.duration_since(when) >= REANALYSE_EVERY * per_thousand;
        // A change-only (eBPF) history grows in time without new samples: held to the end.
        let moved = new > 0 || (change_only && recording);
        exited_since || (new > 0 && new * REANALYSE_GROWTH >= seen) || (moved && stale)
    }
}

/// A process's history as shared with the analyser.
pub type SharedHistory = (ProcessRow, Arc<Vec<(TimeNs, u64)>>);

/// A batch of histories for the analyser, with everything `detect` gives the pipeline.
pub struct Job {
    /// Results of an older generation (another metric or session) are dropped.
    pub generation: u64,
    pub session: SessionRow,
    /// The metric the histories hold: its unit and its limit are the pipeline's.
    pub metric: Metric,
    pub phases: Vec<Phase>,
    pub histories: Vec<SharedHistory>,
    /// The store, for the growth sites a leak names (`record --sites`).
    pub store: PathBuf,
}

/// A session being followed, and what has been read of it.
pub struct Follower {
    path: PathBuf,
    selector: SessionSelector,
    /// The metric asked for; `None` is the session's default.
    wanted: Option<Metric>,
    store: Option<Store>,
    session: Option<SessionRow>,
    metric: Metric,
    counts: CountMetrics,
    procs: Vec<Tracked>,
    by_id: HashMap<i64, usize>,
    phases: Vec<Phase>,
    state: FollowState,
    listed: Option<Instant>,
    focus: Option<i64>,
    generation: u64,
    analysis: AnalysisState,
}

impl Follower {
    /// Follows `selector` in the store at `path`; nothing is read before the first poll.
    pub fn new(path: &Path, selector: SessionSelector, metric: Option<Metric>) -> Follower {
        Follower {
            path: path.to_path_buf(),
            selector,
            wanted: metric,
            store: None,
            session: None,
            metric: metric.unwrap_or(Metric::Rss),
            counts: CountMetrics::of_model(),
            procs: Vec::new(),
            by_id: HashMap::new(),
            phases: Vec::new(),
            state: FollowState::Waiting(format!("opening {}", path.display())),
            listed: None,
            focus: None,
            generation: 0,
            analysis: AnalysisState::default(),
        }
    }

    /// Reads the threads and fds columns from these metrics instead of the model's (a test
    /// stands a recorded metric in for a count the model does not have yet).
    pub fn with_counts(mut self, counts: CountMetrics) -> Follower {
        self.counts = counts;
        self
    }

    /// Reads what is new. Problems are kept in the state (shown in the header) and the store is
    /// opened again at the next poll; what was read stays.
    pub fn poll(&mut self) {
        let store = match self.store.take() {
            Some(s) => s,
            None => match Store::open_read_only(&self.path) {
                Ok(s) => s,
                Err(StoreError::Missing { path }) => {
                    self.state =
                        FollowState::Waiting(format!("no store at {} yet", path.display()));
                    return;
                }
                Err(e) => {
                    self.state = FollowState::Failed(e.to_string());
                    return;
                }
            },
        };
        match store.read_transaction(|store| self.read(store)) {
            Ok(()) => self.store = Some(store),
            // Waiting for a first session is not a failure; the store stays open.
            Err(StoreError::NoSessions { path }) => {
                self.state = FollowState::Waiting(format!(
                    "no session in {} yet (start `memtools-user record --store {0} ...`)",
                    path.display()
                ));
                self.store = Some(store);
            }
            Err(e) => self.state = FollowState::Failed(e.to_string()),
        }
    }

    fn read(&mut self, store: &Store) -> Result<(), StoreError> {
        let mut id = match &self.session {
            Some(s) => s.id,
            None => store.resolve(self.selector)?,
        };
        let mut row = store.session(id)?;
        // `latest` moves on to a newer session once the one shown has ended.
        if self.selector == SessionSelector::Latest && row.end.is_some() {
            let newest = store.resolve(SessionSelector::Latest)?;
            if newest != id {
                id = newest;
                row = store.session(id)?;
            }
        }
        if self.session.as_ref().is_none_or(|s| s.id != id) {
            self.start(row.default_metric());
        }
        let list_due = self.listed.is_none_or(|t| t.elapsed() >= LIST_EVERY);
        let count_moved = self
            .session
            .as_ref()
            .is_none_or(|s| s.processes != row.processes);
        self.session = Some(row);
        if list_due || count_moved {
            self.listed = Some(Instant::now());
            self.update_processes(store.processes(id)?);
            self.phases = store.phases(id)?;
        }
        for i in 0..self.procs.len() {
            self.read_samples(store, i)?;
        }
        self.state = FollowState::Following;
        Ok(())
    }

    /// Forgets the previous session's processes for a new session (or metric).
    fn start(&mut self, default_metric: Metric) {
        self.metric = self.wanted.unwrap_or(default_metric);
        self.procs.clear();
        self.by_id.clear();
        self.phases.clear();
        self.listed = None;
        self.generation += 1;
        self.analysis = AnalysisState::default();
    }

    fn step(&self) -> i64 {
        self.session
            .as_ref()
            .and_then(|s| s.interval_ns)
            .filter(|&i| i > 0)
            .unwrap_or(1_000_000_000)
    }

    fn update_processes(&mut self, rows: Vec<ProcessRow>) {
        let step = self.step();
        for row in rows {
            match self.by_id.get(&row.id) {
                Some(&i) => {
                    let t = &mut self.procs[i];
                    if t.row.info.name != row.info.name {
                        t.name = Arc::from(row.info.name.as_str());
                    }
                    if t.row.info.cmdline != row.info.cmdline {
                        t.cmdline = Arc::from(row.info.cmdline.as_str());
                    }
                    if t.row != row {
                        t.shown = None;
                        t.row = row;
                    }
                }
                None => {
                    self.by_id.insert(row.id, self.procs.len());
                    self.procs.push(Tracked::new(row, step));
                }
            }
        }
    }

    fn read_samples(&mut self, store: &Store, i: usize) -> Result<(), StoreError> {
        let (metric, counts) = (self.metric, self.counts);
        let t = &mut self.procs[i];
        if t.complete {
            return Ok(());
        }
        // Seen exited before reading: what is read now is all there will be.
        let exited = t.row.exit.is_some();
        loop {
            let chunk = store.process_samples_after(t.row.id, t.after, CHUNK)?;
            let Some(last) = chunk.last() else { break };
            t.after = Some(last.time);
            t.shown = None;
            let values = chunk
                .iter()
                .filter_map(|s| s.metrics.get(metric).map(|v| (s.time, v)));
            t.history.extend(values);
            let latest = |m: Option<Metric>| {
                m.and_then(|m| chunk.iter().rev().find_map(|s| s.metrics.get(m)))
            };
            t.threads = latest(counts.threads).or(t.threads);
            t.fds = latest(counts.fds).or(t.fds);
            if chunk.len() < CHUNK {
                break;
            }
        }
        t.complete = exited;
        Ok(())
    }

    /// Shows another metric: its histories are read again from the start.
    pub fn set_metric(&mut self, metric: Metric) {
        self.wanted = Some(metric);
        self.start(metric);
    }

    /// The process whose chart is open, whose whole history each snapshot carries.
    pub fn set_focus(&mut self, id: Option<i64>) {
        self.focus = id;
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn state(&self) -> &FollowState {
        &self.state
    }

    /// The processes due for a new verdict, marked as analysed; `None` when none is.
    pub fn due_job(&mut self) -> Option<Job> {
        let session = self.session.clone()?;
        let now = Instant::now();
        let recording = session.end.is_none();
        let change_only = BackendKind::from_name(&session.backend) == Some(BackendKind::Ebpf);
        let mut histories = Vec::new();
        for t in &mut self.procs {
            if t.due(now, recording, change_only) {
                t.job = Some((t.history.appended(), now, t.row.exit.is_some()));
                histories.push((t.row.clone(), t.history.shared()));
            }
        }
        (!histories.is_empty()).then(|| Job {
            generation: self.generation,
            session,
            metric: self.metric,
            phases: self.phases.clone(),
            histories,
            store: self.path.clone(),
        })
    }

    /// Takes the analyser's verdicts, unless they are for another metric or session.
    pub fn accept(&mut self, generation: u64, results: &[ProcessResult], took: Duration) {
        if generation != self.generation {
            return;
        }
        for r in results {
            if let Some(&i) = self.by_id.get(&r.process.id) {
                let t = &mut self.procs[i];
                t.judged = Some(Arc::new(Judged::of(r)));
                t.shown = None;
            }
        }
        self.analysis.passes += 1;
        self.analysis.last = took;
    }

    /// What the view draws now.
    pub fn snapshot(&mut self) -> Snapshot {
        let rows = self
            .procs
            .iter_mut()
            .map(|t| {
                let row = t.shown.take().unwrap_or_else(|| Arc::new(row_of(t)));
                t.shown = Some(Arc::clone(&row));
                row
            })
            .collect::<Vec<_>>();
        let focus = self.focus.and_then(|id| {
            let t = &self.procs[*self.by_id.get(&id)?];
            Some(Focus {
                id,
                points: t.history.downsampled(FOCUS_BUCKETS),
            })
        });
        let pending = self
            .procs
            .iter()
            .filter(|t| t.judged.is_none() && !t.history.is_empty())
            .count();
        Snapshot {
            store: self.path.clone(),
            state: self.state.clone(),
            session: self.session.clone(),
            metric: self.metric,
            counts: self.counts,
            rows,
            focus,
            analysis: AnalysisState {
                pending,
                ..self.analysis
            },
        }
    }

    /// Processes judged a leak now (for tests and summaries).
    pub fn leaks(&self) -> Vec<(u32, &str)> {
        self.procs
            .iter()
            .filter(|t| {
                t.judged
                    .as_ref()
                    .is_some_and(|j| j.verdict == Verdict::Leak)
            })
            .map(|t| (t.row.info.key.pid, t.row.info.name.as_str()))
            .collect()
    }
}

fn row_of(t: &Tracked) -> Row {
    let info = &t.row.info;
    Row {
        id: t.row.id,
        pid: info.key.pid,
        ppid: info.ppid,
        start_time: info.key.start_time,
        name: Arc::clone(&t.name),
        cmdline: Arc::clone(&t.cmdline),
        exited: t.row.exit.is_some(),
        value: t.history.current(),
        growth: t.history.growth(),
        threads: t.threads,
        fds: t.fds,
        judged: t.judged.clone(),
        spark: t.history.spark().to_vec(),
        low: t.history.low(),
        samples: t.history.len(),
    }
}
