//! Everything slow happens here, off the UI thread: listing sessions, reading a session's
//! histories (in chunks, reporting progress, cancellable), running the pipeline, and following a
//! session that is still being recorded. Each job is a std thread that sends its result over a
//! channel and wakes the UI with `request_repaint`; the UI drops results of superseded jobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memtools::analysis::Params;
use memtools::detect::{ProcessResult, analyse_histories, analyse_session};
use memtools::model::{Metric, NS_PER_SEC, TimeNs};
use memtools::store::{Phase, ProcessRow, SessionRow, Store, StoreError, as_recorded};

use crate::downsample::Series;
use crate::problem::Problem;

/// Samples read per query: small enough for a progress bar that moves, big enough that the
/// query overhead does not matter.
const CHUNK: usize = 200_000;
/// How often a session still being recorded is polled for new samples.
pub const LIVE_POLL: Duration = Duration::from_secs(1);

/// One process's history of the session's metric, as read and as plotted.
#[derive(Debug)]
pub struct History {
    pub process: ProcessRow,
    pub points: Vec<(TimeNs, u64)>,
    pub series: Series,
}

impl History {
    pub(crate) fn new(process: ProcessRow, points: Vec<(TimeNs, u64)>, origin: TimeNs) -> History {
        let series = series_of(&points, origin);
        History {
            process,
            points,
            series,
        }
    }
}

/// Plot x is seconds since the session's start: small numbers keep f64 precise.
pub fn seconds_since(t: TimeNs, origin: TimeNs) -> f64 {
    t.saturating_sub(origin) as f64 / NS_PER_SEC as f64
}

fn series_of(points: &[(TimeNs, u64)], origin: TimeNs) -> Series {
    let x = points.iter().map(|p| seconds_since(p.0, origin)).collect();
    let y = points.iter().map(|p| p.1 as f64).collect();
    Series::new(x, y)
}

/// A session's histories of one metric.
#[derive(Debug)]
pub struct Loaded {
    pub session: SessionRow,
    pub metric: Metric,
    pub histories: Vec<History>,
    /// The phases a test harness marked, drawn on the plot.
    pub phases: Vec<Phase>,
    /// Whether the session recorded growth sites (recorded with eBPF): the "where it grows"
    /// panel shows only then.
    pub has_sites: bool,
}

impl Loaded {
    pub fn samples(&self) -> usize {
        self.histories.iter().map(|h| h.points.len()).sum()
    }

    /// The input of [`analyse_histories`]: a copy, so the UI keeps plotting meanwhile.
    pub fn owned_histories(&self) -> Vec<(ProcessRow, Vec<(TimeNs, u64)>)> {
        self.histories
            .iter()
            .map(|h| (h.process.clone(), h.points.clone()))
            .collect()
    }
}

/// What a job sends back. `job` is the number [`Jobs`] handed out when it started.
pub enum Reply {
    Sessions(Result<Vec<SessionRow>, Problem>),
    Progress {
        job: u64,
        done: u64,
        total: u64,
    },
    Loaded {
        job: u64,
        result: Result<Loaded, Problem>,
    },
    Analysed {
        job: u64,
        results: Vec<ProcessResult>,
    },
    /// A live session grew: the whole updated data (histories rebuilt where they changed).
    Live {
        job: u64,
        loaded: Loaded,
    },
    /// One process's growth sites in a window, for the "where it grows" panel.
    Sites {
        job: u64,
        result: Result<crate::sites::SitesData, Problem>,
    },
    /// Verdict counts of another session, for the sessions panel: (leak, ok, insufficient).
    Counts {
        job: u64,
        session: i64,
        counts: (usize, usize, usize),
    },
}

/// Starts jobs and collects their replies.
pub struct Jobs {
    tx: Sender<Reply>,
    rx: Receiver<Reply>,
    ctx: Option<egui::Context>,
    next: u64,
    /// Cancels the current load (and the live poll that follows it).
    cancel: Arc<AtomicBool>,
    /// Cancels the sessions panel's counting.
    cancel_counts: Arc<AtomicBool>,
    /// Pipeline runs wait for each other: two at once would only halve each one's speed.
    analysing: Arc<Mutex<()>>,
}

impl Default for Jobs {
    fn default() -> Self {
        let (tx, rx) = channel();
        Jobs {
            tx,
            rx,
            ctx: None,
            next: 0,
            cancel: Arc::new(AtomicBool::new(false)),
            cancel_counts: Arc::new(AtomicBool::new(false)),
            analysing: Arc::new(Mutex::new(())),
        }
    }
}

impl Jobs {
    /// Where replies ring the bell (set once the UI has a context).
    pub fn set_context(&mut self, ctx: &egui::Context) {
        if self.ctx.is_none() {
            self.ctx = Some(ctx.clone());
        }
    }

    /// Replies that have arrived, without waiting.
    pub fn replies(&self) -> Vec<Reply> {
        self.rx.try_iter().collect()
    }

    fn start(&mut self) -> (u64, Sender<Reply>, Option<egui::Context>) {
        self.next += 1;
        (self.next, self.tx.clone(), self.ctx.clone())
    }

    /// Lists a store's sessions.
    pub fn list_sessions(&mut self, path: PathBuf) {
        let (_, tx, ctx) = self.start();
        std::thread::spawn(move || {
            let result = Store::open_read_only(&path)
                .and_then(|s| s.sessions())
                .map_err(|e| Problem::from_store(&e));
            send(&tx, &ctx, Reply::Sessions(result));
        });
    }

    /// Reads a session's histories, then keeps polling it while it is still being recorded.
    /// Returns the job number its replies carry.
    pub fn load(&mut self, path: PathBuf, session: i64, metric: Option<Metric>) -> u64 {
        self.cancel.store(true, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancel = cancel.clone();
        let (job, tx, ctx) = self.start();
        std::thread::spawn(move || {
            let result = read_session(&path, session, metric, &cancel, &mut |done, total| {
                send(&tx, &ctx, Reply::Progress { job, done, total });
            });
            let live = match &result {
                Ok(l) => l.session.end.is_none(),
                Err(_) => false,
            };
            let snapshot = result.as_ref().ok().map(crate::live::Snapshot::of);
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            send(&tx, &ctx, Reply::Loaded { job, result });
            if let (true, Some(snapshot)) = (live, snapshot) {
                crate::live::follow(&path, session, snapshot, &cancel, &tx, &ctx, job);
            }
        });
        job
    }

    /// Runs the pipeline over `loaded` with `params` (and the limit field, when set); a leak's
    /// growth sites are read from `store` when it recorded them.
    pub fn analyse(
        &mut self,
        loaded: Arc<Loaded>,
        params: Params,
        given_limit: Option<u64>,
        this_machine: u64,
        store: PathBuf,
    ) -> u64 {
        let (job, tx, ctx) = self.start();
        let lock = self.analysing.clone();
        std::thread::spawn(move || {
            let _one_at_a_time = lock.lock();
            let mut results = analyse_histories(
                &loaded.session,
                loaded.owned_histories(),
                &loaded.phases,
                loaded.metric,
                &params,
                given_limit,
                this_machine,
            );
            // Best effort: without the store now, the verdicts show without their sites.
            if let Ok(store) = Store::open_read_only(&store) {
                let _ = memtools::detect::attach_sites(&store, loaded.session.id, &mut results);
            }
            send(&tx, &ctx, Reply::Analysed { job, results });
        });
        job
    }

    /// Reads one process's growth sites in a window (a query and a few thousand frames at
    /// most: no progress, no cancelling; a superseded reply is dropped by the UI).
    pub fn sites(&mut self, path: PathBuf, query: crate::sites::SitesQuery) -> u64 {
        let (job, tx, ctx) = self.start();
        std::thread::spawn(move || {
            let result = crate::sites::read(&path, query);
            send(&tx, &ctx, Reply::Sites { job, result });
        });
        job
    }

    /// Runs the pipeline over each of `sessions` in turn, one at a time and after any other
    /// analysis, for the sessions panel's verdict counts. Returns the job number.
    pub fn count_sessions(
        &mut self,
        path: PathBuf,
        sessions: Vec<i64>,
        params: Params,
        given_limit: Option<u64>,
        this_machine: u64,
    ) -> u64 {
        self.cancel_counts.store(true, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancel_counts = cancel.clone();
        let (job, tx, ctx) = self.start();
        let lock = self.analysing.clone();
        std::thread::spawn(move || {
            let Ok(store) = Store::open_read_only(&path) else {
                return;
            };
            for session in sessions {
                let _one_at_a_time = lock.lock();
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let report =
                    analyse_session(&store, session, None, &params, given_limit, this_machine);
                if let Ok(report) = report {
                    let counts = report.counts();
                    send(
                        &tx,
                        &ctx,
                        Reply::Counts {
                            job,
                            session,
                            counts,
                        },
                    );
                }
            }
        });
        job
    }
}

pub(crate) fn send(tx: &Sender<Reply>, ctx: &Option<egui::Context>, reply: Reply) {
    // The UI may be gone (closed window): then nobody needs the reply.
    let _ = tx.send(reply);
    if let Some(ctx) = ctx {
        ctx.request_repaint();
    }
}

pub(crate) fn open(path: &Path) -> Result<Store, Problem> {
    Store::open_read_only(path).map_err(|e| Problem::from_store(&e))
}

/// Reads every history of `metric` (the session's default when `None`) in chunks.
pub fn read_session(
    path: &Path,
    session: i64,
    metric: Option<Metric>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Loaded, Problem> {
    let store = open(path)?;
    let err = |e: StoreError| Problem::from_store(&e);
    let session = store.session(session).map_err(err)?;
    let metric = metric.unwrap_or(session.default_metric());
    let total = session.samples;
    let mut done = 0;
    let mut histories = Vec::new();
    for process in store.processes(session.id).map_err(err)? {
        let mut points = Vec::new();
        read_after(&store, &process, metric, &mut points, cancel, &mut |n| {
            done += n as u64;
            progress(done, total);
        })
        .map_err(err)?;
        // Held on the grid for a change-only (eBPF) session, as `detect` reads it.
        let points = as_recorded(&session, &process, points);
        histories.push(History::new(process, points, session.start));
    }
    let phases = store.phases(session.id).map_err(err)?;
    let has_sites = store.has_sites(session.id).map_err(err)?;
    Ok(Loaded {
        session,
        metric,
        histories,
        phases,
        has_sites,
    })
}

/// Appends to `points` every sample after its last one.
pub(crate) fn read_after(
    store: &Store,
    process: &ProcessRow,
    metric: Metric,
    points: &mut Vec<(TimeNs, u64)>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize),
) -> Result<(), StoreError> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let after = points.last().map(|p| p.0);
        let chunk = store.process_series_after(process.id, metric, after, CHUNK)?;
        let n = chunk.len();
        points.extend(chunk);
        progress(n);
        if n < CHUNK {
            return Ok(());
        }
    }
}
