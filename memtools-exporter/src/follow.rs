//! Following a session as it is recorded: the running processes' newest samples, read from the
//! store a second or so behind the recorder, their sliding windows, and the live analysis over
//! them, into a [`Snapshot`].
//!
//! The exporter is a reader of the store like the viewer: its own read-only connection (WAL:
//! the recorder never waits for it), reading only what is new for each running process.
//! The analysis is `detect`'s (`detect::analyse_histories`, the same `Params`), on one thread,
//! at most every `analysis_every` and never more than a tenth of the time.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use memtools::analysis::{Params, Verdict};
use memtools::detect;
use memtools::model::{Metric, Sample, TimeNs};
use memtools::store::{ProcessRow, SessionRow, Store, StoreError};

use crate::catalogue;
use crate::snapshot::{AnalysisView, MetricVerdict, ProcessView, Snapshot};
use crate::stats::RecorderView;
use crate::window::Window;

/// How the exporter follows and judges a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowConfig {
    /// The sliding window the live analysis judges.
    pub window: Duration,
    /// The least time between two runs of the live analysis.
    pub analysis_every: Duration,
    /// N of the cardinality rules (see [`Snapshot::select`]).
    pub top: usize,
    /// The pipeline's parameters, as `detect` takes them.
    pub params: Params,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            window: Duration::from_secs(3600),
            analysis_every: Duration::from_secs(15),
            top: 50,
            params: Params::default(),
        }
    }
}

/// Samples read per query, so a process's first look at a long window reads in pieces.
const CHUNK: usize = 4096;

/// One running process.
#[derive(Debug)]
struct Followed {
    row: ProcessRow,
    latest: Option<Sample>,
    /// The time of the newest sample read.
    read_to: Option<TimeNs>,
    windows: Vec<(Metric, Window)>,
    verdicts: Vec<MetricVerdict>,
}

impl Followed {
    fn new(row: ProcessRow) -> Followed {
        Followed {
            row,
            latest: None,
            read_to: None,
            windows: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// Takes one sample, at `t` (its own time, or later for a value held).
    fn add(&mut self, sample: &Sample, t: TimeNs) {
        for metric in catalogue::analysed_metrics() {
            let Some(v) = sample.metrics.get(metric) else {
                continue;
            };
            match self.windows.iter_mut().find(|(m, _)| *m == metric) {
                Some((_, w)) => w.push(t, v),
                None => {
                    let mut w = Window::default();
                    w.push(t, v);
                    self.windows.push((metric, w));
                }
            }
        }
        if self.latest.is_none_or(|l| l.time <= sample.time) {
            self.latest = Some(*sample);
        }
    }

    fn window(&self, metric: Metric) -> Option<&Window> {
        self.windows
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, w)| w)
    }
}

/// Follows one session of a store.
pub struct Follower {
    store: Store,
    session_id: i64,
    config: FollowConfig,
    processes: HashMap<i64, Followed>,
    analysis: Option<AnalysisView>,
    /// No analysis before this time (of the data's clock).
    next_analysis: TimeNs,
    pool: Option<rayon::ThreadPool>,
    this_machine: u64,
}

impl Follower {
    /// Opens the store read-only to follow one of its sessions.
    pub fn open(
        path: &Path,
        session_id: i64,
        config: FollowConfig,
    ) -> Result<Follower, StoreError> {
        let store = Store::open_read_only(path)?;
        store.session(session_id)?;
        Ok(Follower {
            store,
            session_id,
            config,
            processes: HashMap::new(),
            analysis: None,
            next_analysis: TimeNs::MIN,
            // One thread: the analysis must not take the machine from what it watches. Without
            // a pool (no threads left) it runs on the caller's.
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "memtools-analysis".to_string())
                .build()
                .ok(),
            this_machine: memtools::limits::machine_memory().unwrap_or(16 << 30),
        })
    }

    /// Reads what was recorded since the last call and, when due, runs the live analysis; `now`
    /// is the time on the recording's clock (wall clock, ns) the window ends at.
    pub fn refresh(&mut self, now: TimeNs, recorder: RecorderView) -> Result<Snapshot, StoreError> {
        let session = self.store.session(self.session_id)?;
        self.read(&session, now)?;
        if now >= self.next_analysis {
            self.analyse(&session)?;
            let pause = self
                .config
                .analysis_every
                .max(self.analysis.map_or(Duration::ZERO, |a| a.duration * 10));
            self.next_analysis = now.saturating_add(pause.as_nanos() as i64);
        }
        Ok(self.snapshot(recorder))
    }

    /// How many points the windows hold, for the memory benchmark.
    pub fn window_points(&self) -> usize {
        self.processes
            .values()
            .flat_map(|f| f.windows.iter().map(|(_, w)| w.len()))
            .sum()
    }

    /// Reads the running processes' new samples into their windows.
    fn read(&mut self, session: &SessionRow, now: TimeNs) -> Result<(), StoreError> {
        let start = now.saturating_sub(self.config.window.as_nanos() as i64);
        let running = self.store.running_processes(self.session_id)?;
        let ids: HashSet<i64> = running.iter().map(|p| p.id).collect();
        // Exited: forgotten, and with them their series.
        self.processes.retain(|id, _| ids.contains(id));
        let held_to = session
            .change_only()
            .then_some(session.last_sample)
            .flatten();
        for mut row in running {
            // Not exported, not analysed, and up to pages long: not kept.
            row.info.cmdline = String::new();
            let id = row.id;
            let f = self
                .processes
                .entry(id)
                .or_insert_with(|| Followed::new(row.clone()));
            f.row = row;
            let mut after = f.read_to;
            if after.is_none() {
                // First look: its value where the window starts, then everything since.
                if let Some(s) = self.store.sample_at_or_before(id, start)? {
                    f.add(&s, s.time.max(start));
                }
                after = Some(start);
            }
            loop {
                let batch = self.store.process_samples_after(id, after, CHUNK)?;
                for s in &batch {
                    f.add(s, s.time);
                }
                if let Some(last) = batch.last() {
                    after = Some(last.time);
                }
                if batch.len() < CHUNK {
                    break;
                }
            }
            f.read_to = after;
            // A change-only recording stores nothing while a value holds: it holds until now.
            if let (Some(t), Some(latest)) = (held_to, f.latest) {
                f.add(&latest, t);
            }
            for (_, w) in &mut f.windows {
                w.forget_before(start);
            }
        }
        Ok(())
    }

    /// Runs the pipeline over every window, metric by metric.
    fn analyse(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        let began = Instant::now();
        let phases = self.store.phases(self.session_id)?;
        let mut verdicts: HashMap<i64, Vec<MetricVerdict>> = HashMap::new();
        let mut judged: HashSet<i64> = HashSet::new();
        for metric in catalogue::analysed_metrics() {
            let histories: Vec<_> = self
                .processes
                .values()
                .filter_map(|f| {
                    let w = f.window(metric).filter(|w| !w.is_empty())?;
                    Some((f.row.clone(), w.history()))
                })
                .collect();
            if histories.is_empty() {
                continue;
            }
            let params = &self.config.params;
            let machine = self.this_machine;
            let run = || {
                detect::analyse_histories(
                    session, histories, &phases, metric, params, None, machine,
                )
            };
            let results = match &self.pool {
                Some(pool) => pool.install(run),
                None => run(),
            };
            for r in results {
                judged.insert(r.process.id);
                let verdict = r.analysis.verdict;
                if verdict == Verdict::Insufficient {
                    continue;
                }
                let evidence = r.analysis.evidence;
                let leak = verdict == Verdict::Leak;
                verdicts
                    .entry(r.process.id)
                    .or_default()
                    .push(MetricVerdict {
                        metric,
                        leak,
                        slope_per_s: evidence.map_or(0.0, |e| e.slope_bytes_per_s),
                        // Claimed for a leak only: an ok history's rate says nothing of a limit.
                        time_to_limit_s: evidence.and_then(|e| e.time_to_limit_s).filter(|_| leak),
                    });
            }
        }
        for (id, f) in &mut self.processes {
            f.verdicts = verdicts.remove(id).unwrap_or_default();
        }
        self.analysis = Some(AnalysisView {
            duration: began.elapsed(),
            processes: judged.len(),
        });
        Ok(())
    }

    fn snapshot(&self, recorder: RecorderView) -> Snapshot {
        let mut processes: Vec<ProcessView> = self
            .processes
            .values()
            .filter_map(|f| {
                Some(ProcessView {
                    pid: f.row.info.key.pid,
                    name: f.row.info.name.clone(),
                    latest: f.latest?.metrics,
                    verdicts: f.verdicts.clone(),
                })
            })
            .collect();
        processes.sort_by_key(|p| p.pid);
        Snapshot {
            processes,
            recorder,
            analysis: self.analysis,
            top: self.config.top,
        }
    }
}
