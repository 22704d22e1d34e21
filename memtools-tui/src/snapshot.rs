//! What the view draws: everything the follower knows at one moment, built off the drawing thread
//! and handed over whole, so drawing never waits for the store or the analysis.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memtools::analysis::{Analysis, Evidence, Verdict};
use memtools::detect::{Limit, ProcessResult};
use memtools::model::{Metric, TimeNs};
use memtools::store::SessionRow;

/// Where following the store stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowState {
    /// Nothing to show yet (no store, no session); says what it waits for.
    Waiting(String),
    /// Reading a session.
    Following,
    /// The store could not be read; the message says why. Reading is retried.
    Failed(String),
}

/// The metrics behind the threads and fds columns, found by name so the columns fill in as soon
/// as the model has them (`None`: this build does not record it, the column shows `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountMetrics {
    pub threads: Option<Metric>,
    pub fds: Option<Metric>,
}

impl CountMetrics {
    /// The metrics named `threads` and `fds`, where the model has them.
    pub fn of_model() -> CountMetrics {
        CountMetrics {
            threads: "threads".parse().ok(),
            fds: "fds".parse().ok(),
        }
    }
}

/// A verdict as the view shows it: [`memtools::detect`]'s, without the plot overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    /// The evidence in words, with the phases a leak grew in (as `detect` prints it).
    pub reason: String,
    pub evidence: Option<Evidence>,
    /// Samples the analysis used.
    pub samples: usize,
    pub limit: Limit,
    /// The line the evidence's detector fitted, from its window's start to its end: LBR's
    /// least-squares line, or the Theil-Sen line of the block medians or of the lower envelope.
    pub line: Option<[(TimeNs, f64); 2]>,
}

impl Judged {
    pub fn of(result: &ProcessResult) -> Judged {
        Judged {
            verdict: result.analysis.verdict,
            reason: result.explanation(),
            evidence: result.analysis.evidence,
            samples: result.analysis.samples,
            limit: result.limit,
            line: fitted_line(&result.analysis),
        }
    }
}

/// The growth the verdict is about, as a line from where it began to where it ended (the
/// evidence's own figures, whichever detector decided: the viewer draws the same span).
fn fitted_line(analysis: &Analysis) -> Option<[(TimeNs, f64); 2]> {
    let e = analysis.evidence?;
    (e.window_end > e.window_start && e.from_bytes.is_finite() && e.to_bytes.is_finite())
        .then_some([(e.window_start, e.from_bytes), (e.window_end, e.to_bytes)])
}

/// One process of the session.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The store's process id: stable while pids are reused.
    pub id: i64,
    pub pid: u32,
    pub ppid: Option<u32>,
    pub start_time: u64,
    pub name: Arc<str>,
    pub cmdline: Arc<str>,
    pub exited: bool,
    /// The latest value of the view's metric.
    pub value: Option<u64>,
    /// Latest minus first.
    pub growth: Option<i64>,
    /// Latest thread count, when the session has it.
    pub threads: Option<u64>,
    /// Latest open file descriptors, when the session has them.
    pub fds: Option<u64>,
    /// The latest verdict; `None` until the first analysis of this process.
    pub judged: Option<Arc<Judged>>,
    /// The whole history in a few buckets (largest value of each), oldest first.
    pub spark: Vec<u64>,
    /// The smallest value of the history: the sparkline's floor.
    pub low: u64,
    pub samples: usize,
}

/// The process whose chart is open: its history, downsampled for drawing.
#[derive(Clone, Debug, PartialEq)]
pub struct Focus {
    pub id: i64,
    pub points: Vec<(TimeNs, u64)>,
}

/// How the background analysis is doing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AnalysisState {
    /// Passes finished so far.
    pub passes: u64,
    /// How long the last one took.
    pub last: Duration,
    /// Processes with data but no verdict yet.
    pub pending: usize,
}

/// Everything the view draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub store: PathBuf,
    pub state: FollowState,
    pub session: Option<SessionRow>,
    pub metric: Metric,
    pub counts: CountMetrics,
    /// Shared with the follower, which rebuilds a row only when its process changed: a
    /// snapshot of thousands of processes costs a pointer copy each.
    pub rows: Vec<Arc<Row>>,
    pub focus: Option<Focus>,
    pub analysis: AnalysisState,
}

impl Snapshot {
    /// Nothing known yet about the store at `store`.
    pub fn empty(store: PathBuf) -> Snapshot {
        Snapshot {
            state: FollowState::Waiting(format!("opening {}", store.display())),
            store,
            session: None,
            metric: Metric::Rss,
            counts: CountMetrics::of_model(),
            rows: Vec::new(),
            focus: None,
            analysis: AnalysisState::default(),
        }
    }

    /// Whether the session is still being recorded (no end, or no session yet).
    pub fn recording(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.end.is_none())
    }

    /// How many processes have each verdict: (leak, ok, insufficient).
    pub fn verdict_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for j in self.rows.iter().filter_map(|r| r.judged.as_deref()) {
            match j.verdict {
                Verdict::Leak => c.0 += 1,
                Verdict::Ok => c.1 += 1,
                Verdict::Insufficient => c.2 += 1,
            }
        }
        c
    }
}

/// A slot holding the newest value: the producer never waits and never queues stale ones.
#[derive(Debug)]
pub struct Latest<T>(Mutex<Option<T>>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest(Mutex::new(None))
    }
}

impl<T> Latest<T> {
    pub fn put(&self, value: T) {
        // A poisoned slot only means a panicking peer; the value is still a whole value.
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(value);
    }

    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
