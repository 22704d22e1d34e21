//! The view's background: one thread follows the store and builds snapshots, another runs the
//! pipeline. The drawing thread only picks up the newest snapshot and sends requests (another
//! metric, a chart opened), so neither reading nor analysing ever holds up a frame.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memtools::analysis::Params;
use memtools::detect::{ProcessResult, analyse_histories};
use memtools::model::Metric;
use memtools::store::{SessionSelector, as_recorded};

use crate::follow::{Follower, Job};
use crate::snapshot::{Latest, Snapshot};

/// Verdicts are recomputed at most this often ...
pub const ANALYSE_EVERY: Duration = Duration::from_secs(1);
/// ... and a pass that took t is followed by a pause of at least this many t, so a session too
/// big to analyse every second costs a bounded share of a core rather than all of it.
const ANALYSE_DUTY: u32 = 20;

/// What the view asks of the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Metric(Metric),
    Focus(Option<i64>),
}

enum Message {
    Request(Request),
    Analysed {
        generation: u64,
        results: Vec<ProcessResult>,
        took: Duration,
    },
    Stop,
}

/// What to follow and how.
#[derive(Clone, Debug)]
pub struct Settings {
    pub selector: SessionSelector,
    pub metric: Option<Metric>,
    /// The pipeline's parameters, as `detect` takes them.
    pub params: Params,
    /// The memory of this machine: the limit when the session does not record one.
    pub this_machine: u64,
    /// How often the store is read.
    pub refresh: Duration,
}

/// The running background threads.
pub struct Worker {
    tx: Sender<Message>,
    latest: Arc<Latest<Arc<Snapshot>>>,
    follower: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts following the store at `path`.
    pub fn start(path: &Path, settings: Settings) -> std::io::Result<Worker> {
        let (tx, rx) = channel();
        let (jobs_tx, jobs_rx) = channel::<Job>();
        let latest = Arc::new(Latest::default());
        let follower = Follower::new(path, settings.selector, settings.metric);
        let back = tx.clone();
        let (params, this_machine) = (settings.params.clone(), settings.this_machine);
        // Detached: a pass in progress when the view closes just finishes into the void.
        std::thread::Builder::new()
            .name("memtools-tui-analyse".into())
            .spawn(move || analyse_jobs(jobs_rx, back, params, this_machine))?;
        let slot = Arc::clone(&latest);
        let refresh = settings.refresh;
        let handle = std::thread::Builder::new()
            .name("memtools-tui-follow".into())
            .spawn(move || follow(follower, rx, jobs_tx, slot, refresh))?;
        Ok(Worker {
            tx,
            latest,
            follower: Some(handle),
        })
    }

    /// The newest snapshot since the last call, if any.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.latest.take()
    }

    /// Whether the follower still runs (it only stops on its own by panicking).
    pub fn alive(&self) -> bool {
        self.follower.as_ref().is_some_and(|h| !h.is_finished())
    }

    pub fn request(&self, request: Request) {
        // A follower that is gone (it panicked) has nothing to be asked; the view goes on.
        let _ = self.tx.send(Message::Request(request));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(h) = self.follower.take() {
            let _ = h.join();
        }
    }
}

fn follow(
    mut follower: Follower,
    rx: Receiver<Message>,
    jobs: Sender<Job>,
    latest: Arc<Latest<Arc<Snapshot>>>,
    refresh: Duration,
) {
    let mut next_poll = Instant::now();
    let mut next_analysis = Instant::now();
    let mut analysing = false;
    let mut started = Instant::now();
    loop {
        let mut changed = false;
        let wait = next_poll.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Message::Request(Request::Metric(m))) => {
                follower.set_metric(m);
                next_poll = Instant::now();
                changed = true;
            }
            Ok(Message::Request(Request::Focus(id))) => {
                follower.set_focus(id);
                changed = true;
            }
            Ok(Message::Analysed {
                generation,
                results,
                took,
            }) => {
                follower.accept(generation, &results, took);
                analysing = false;
                next_analysis = started + (took * ANALYSE_DUTY).max(ANALYSE_EVERY);
                changed = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= next_poll {
            follower.poll();
            next_poll = Instant::now() + refresh;
            changed = true;
        }
        if !analysing
            && Instant::now() >= next_analysis
            && let Some(job) = follower.due_job()
        {
            if jobs.send(job).is_err() {
                return;
            }
            analysing = true;
            started = Instant::now();
        }
        if changed {
            latest.put(Arc::new(follower.snapshot()));
        }
    }
}

/// Runs `detect`'s pipeline over each job: the same `Params`, the same limits, the same reading
/// of a change-only history ([`as_recorded`]).
fn analyse_jobs(jobs: Receiver<Job>, back: Sender<Message>, params: Params, this_machine: u64) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let generation = job.generation;
        let results = analyse(job, &params, this_machine);
        let done = Message::Analysed {
            generation,
            results,
            took: started.elapsed(),
        };
        if back.send(done).is_err() {
            return;
        }
    }
}

/// One job through the pipeline. The histories are copied here, off the follower, and each
/// shared one let go at once, so the follower's next append rarely has to copy it.
pub fn analyse(job: Job, params: &Params, this_machine: u64) -> Vec<ProcessResult> {
    let Job {
        session,
        metric,
        phases,
        histories,
        store,
        ..
    } = job;
    let histories = histories
        .into_iter()
        .map(|(p, shared)| {
            let points = as_recorded(&session, &p, shared.as_ref().clone());
            drop(shared);
            (p, points)
        })
        .collect();
    // Judged as the metric shown (its unit, its limit), as `detect --metric` does.
    let mut results = analyse_histories(
        &session,
        histories,
        &phases,
        metric,
        params,
        None,
        this_machine,
    );
    // A leak's growth sites, when recorded, join its evidence on the chart, as `detect` names
    // them. Best effort: a store that cannot be read now shows the verdict without them.
    if let Ok(store) = memtools::store::Store::open_read_only(&store) {
        let _ = memtools::detect::attach_sites(&store, session.id, &mut results);
    }
    results
}
