//! One recording session: everything that can refuse first (the backend and its privileges,
//! the cgroup, the store), then the command, the sampling loop, stopping the tree, the
//! summary. A store that fails part-way stops the recording, never the command.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::command::{Child, Command};
use super::phases::{PHASES_ENV, PhaseChannel};
use super::sink::Recording;
use super::stop::{STOP_GRACE, Step, StopSignals, Stopper, sigint_from_terminal};
use super::tree::Tree;
use super::{
    Backend, BackendChoice, Clock, MIN_INTERVAL, OpenedBackend, PreparedBackend, RecordError,
    Scope, limits, prepare_backend,
};
use memtools::model::{ExitStatus, NewSession, TimeNs};
use memtools::store::Store;

/// What to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Start this command and record its process tree until it exits.
    Command(Command),
    /// These running processes and their descendants, until they have all exited.
    Pids(Vec<u32>),
    /// Every process on the machine.
    All,
}

/// How to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    pub target: Target,
    pub backend: BackendChoice,
    /// eBPF: hook every rss change too (see memtools-ebpf's rss.rs for the cost).
    pub rss_events: bool,
    pub interval: Duration,
    /// Stop after this long (a recorded command is then sent SIGTERM, like `timeout`).
    pub duration: Option<Duration>,
}

/// The recorder's state, for a status line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub session_id: i64,
    pub elapsed: Duration,
    /// Processes followed right now.
    pub processes: usize,
    /// Processes seen since the start.
    pub seen: usize,
    pub samples: u64,
    pub store_bytes: u64,
}

/// A process's largest memory, for the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessPeak {
    pub pid: u32,
    pub name: String,
    /// Peak resident memory in bytes (virtual size when resident memory is not available).
    pub peak: u64,
}

/// How a recording ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOutcome {
    pub session_id: i64,
    pub backend: String,
    pub processes: usize,
    pub samples: u64,
    pub duration: Duration,
    /// The recorded command's exit, when there was one and it ended.
    pub exit: Option<ExitStatus>,
    /// The signal that stopped the recording early, if any.
    pub interrupted_by: Option<i32>,
    /// Processes with the highest peak, largest first.
    pub top: Vec<ProcessPeak>,
    /// Processes that could not be read (permissions).
    pub unreadable: u64,
    /// Phase lines that were not `begin NAME` / `end NAME` (the first few), to say so.
    pub ignored_phase_lines: Vec<String>,
    /// Why the store stopped taking samples before the end, when it did (the command ran
    /// on); and whether the session could be marked so.
    pub cut_short: Option<CutShort>,
    /// How the recorded command's tree was held.
    pub tree: Option<String>,
    /// Processes of the tree SIGKILL did not end (stuck in the kernel).
    pub survivors: Vec<u32>,
    /// What went wrong cleaning up (the cgroup could not be removed).
    pub cleanup_problem: Option<String>,
}

/// A recording whose store stopped taking samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutShort {
    pub reason: String,
    /// Samples up to this time are kept.
    pub kept_until: Option<TimeNs>,
    /// Why the session could not be marked as cut short (then it shows as unfinished).
    pub unmarked: Option<String>,
}

/// How often the loop looks at signals and the command between ticks.
const WAKE_EVERY: Duration = Duration::from_millis(20);
/// How often the status line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often the recorder checks that its store is still the file at its path.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);

fn host_and_kernel() -> (String, String) {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    (host, kernel)
}

fn new_session(options: &RecordOptions, backend: &PreparedBackend, clock: &Clock) -> NewSession {
    let (host, kernel) = host_and_kernel();
    NewSession {
        host,
        kernel,
        backend: backend.kind(),
        backend_reason: backend.reason().to_string(),
        interval_ns: Some(options.interval.as_nanos() as i64),
        command: match &options.target {
            Target::Command(c) => Some(c.display()),
            Target::Pids(p) => Some(format!(
                "--pid {}",
                p.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )),
            Target::All => Some("--all".to_string()),
        },
        source: None,
        start: clock.start_wall(),
        monotonic_offset_ns: Some(clock.start_wall() - monotonic_now_ns()),
        mem_total: limits::machine_memory(),
    }
}

/// The command and what holds its tree.
struct Running {
    child: Child,
    tree: Tree,
    stopper: Stopper,
}

/// Starts the command in its tree; a command that cannot join the cgroup runs without it.
fn start_command(
    command: &Command,
    tree: &mut Tree,
    phases: Option<&PhaseChannel>,
) -> Result<Child, RecordError> {
    let env: Vec<(&str, &std::path::Path)> =
        phases.iter().map(|p| (PHASES_ENV, p.path())).collect();
    match Child::spawn(command, &env, tree) {
        Err(e) if tree.has_cgroup() => {
            // Nothing ran (spawn fails before exec): try once more without the cgroup.
            tree.without_cgroup(format!("the command could not join its cgroup ({e})"));
            Child::spawn(command, &env, tree)
        }
        other => other,
    }
}

/// Records until the command's tree is gone, the followed processes are gone, the duration is
/// over, or a stop signal arrives; `progress` is called a few times a second, `notice` with
/// what the user should hear at once (the backend `auto` fell back from, a store that failed,
/// processes the command left behind).
pub fn record(
    store: &Store,
    options: &RecordOptions,
    mut progress: impl FnMut(&Progress),
    mut notice: impl FnMut(&str),
) -> Result<RecordOutcome, RecordError> {
    if options.interval < MIN_INTERVAL {
        return Err(RecordError::IntervalTooShort(options.interval));
    }
    raise_fd_limit();
    let signals = StopSignals::install()?;
    // Whatever can refuse does so before the command starts: privileges and the eBPF
    // programs, the store. A refusal starts nothing.
    let all = options.target == Target::All;
    let prepared = prepare_backend(options.backend, all, options.rss_events)?;
    if let Some(line) = prepared.fallback() {
        notice(line);
    }
    let clock = Clock::start();
    let mut rec = Recording::new(store.begin_session(&new_session(options, &prepared, &clock))?);
    let tree = matches!(options.target, Target::Command(_)).then(Tree::prepare);
    if let Some(t) = &tree {
        rec.writer.set_tree(&t.describe())?;
    }
    rec.writer.flush()?;
    let session_id = rec.writer.session_id();

    // Phases are for a recorded command's test harness; without a FIFO it still records.
    let mut phases = match &options.target {
        Target::Command(_) => PhaseChannel::create(move || clock.now()).ok(),
        _ => None,
    };
    let mut running = launch(options, &mut rec, tree, phases.as_ref())?;
    let scope = scope_of(options, running.as_ref());
    let looped = prepared.follow(scope).and_then(|opened| {
        let OpenedBackend { mut backend, .. } = opened;
        let end = Sampling {
            backend: &mut *backend,
            rec: &mut rec,
            store,
            clock: &clock,
            options,
            running: running.as_mut(),
            phases: phases.as_mut(),
            signals: &signals,
        }
        .run(&mut progress, &mut notice)?;
        Ok((backend, end))
    });
    let (backend, end) = match looped {
        Ok(v) => v,
        Err(e) => {
            // Never abandon the command: its tree goes with the failed recording.
            if let Some(r) = running.as_mut() {
                let child = &mut r.child;
                r.stopper.kill_and_wait(&r.tree, || child.reap());
            }
            return Err(e);
        }
    };
    if let Some(ph) = phases.as_mut() {
        let rest = ph.finish();
        rec.phases(rest);
    }
    let exit = running.as_ref().and_then(|r| r.child.status());
    let finished_at = clock.now();
    let samples = rec.writer.samples_written();
    let top = top_peaks(&rec);
    let processes = rec.processes.len();
    let ignored_phase_lines = std::mem::take(&mut rec.ignored_phase_lines);
    let cut_short = rec.end(finished_at, exit);
    let (tree_text, cleanup_problem) = match running.as_mut() {
        Some(r) => (Some(r.tree.describe()), r.tree.finish().err()),
        None => (None, None),
    };
    drop(signals);
    Ok(RecordOutcome {
        session_id,
        backend: backend.kind().name().to_string(),
        processes,
        samples,
        duration: clock.elapsed(),
        exit,
        interrupted_by: end.interrupted_by,
        top,
        unreadable: backend.unreadable(),
        ignored_phase_lines,
        cut_short,
        tree: tree_text,
        survivors: end.survivors,
        cleanup_problem,
    })
}

/// Starts a recorded command in its tree; one that cannot start leaves no session behind.
fn launch(
    options: &RecordOptions,
    rec: &mut Recording<'_>,
    tree: Option<Tree>,
    phases: Option<&PhaseChannel>,
) -> Result<Option<Running>, RecordError> {
    let (Target::Command(command), Some(mut tree)) = (&options.target, tree) else {
        return Ok(None);
    };
    let before = tree.describe();
    let child = match start_command(command, &mut tree, phases) {
        Ok(child) => child,
        Err(e) => {
            // Best effort: the session row is all there is to remove.
            let _ = rec.writer.discard();
            return Err(e);
        }
    };
    if tree.describe() != before {
        rec.write_tree(&tree.describe());
    }
    Ok(Some(Running {
        child,
        tree,
        stopper: Stopper::new(),
    }))
}

/// Which processes the backend follows.
fn scope_of(options: &RecordOptions, running: Option<&Running>) -> Scope {
    match (&options.target, running) {
        (Target::All, _) => Scope::All,
        (Target::Pids(pids), _) => Scope::Tree {
            roots: pids.clone(),
            reaper: None,
        },
        (Target::Command(_), Some(r)) => Scope::Tree {
            roots: vec![r.child.pid()],
            reaper: Some(std::process::id()),
        },
        // `launch` always starts a command target.
        (Target::Command(_), None) => Scope::Tree {
            roots: Vec::new(),
            reaper: Some(std::process::id()),
        },
    }
}

/// The processes with the highest peaks, largest first.
fn top_peaks(rec: &Recording<'_>) -> Vec<ProcessPeak> {
    let mut top: Vec<ProcessPeak> = rec
        .processes
        .values()
        .map(|p| ProcessPeak {
            pid: p.pid,
            name: p.name.clone(),
            peak: p.peak,
        })
        .collect();
    top.sort_by(|a, b| b.peak.cmp(&a.peak).then(a.pid.cmp(&b.pid)));
    top.truncate(5);
    top
}

/// How the sampling loop ended.
struct LoopEnd {
    interrupted_by: Option<i32>,
    survivors: Vec<u32>,
}

/// Everything the sampling loop works with.
struct Sampling<'a, 's> {
    backend: &'a mut dyn Backend,
    rec: &'a mut Recording<'s>,
    store: &'a Store,
    clock: &'a Clock,
    options: &'a RecordOptions,
    running: Option<&'a mut Running>,
    phases: Option<&'a mut PhaseChannel>,
    signals: &'a StopSignals,
}

/// What the loop does after a tick.
enum Next {
    Sleep,
    Stop,
}

impl Sampling<'_, '_> {
    /// Polls the backend each interval, stores what it reports (until the store fails), and
    /// looks after the command's tree and the stop signals between ticks.
    fn run(
        mut self,
        progress: &mut impl FnMut(&Progress),
        notice: &mut impl FnMut(&str),
    ) -> Result<LoopEnd, RecordError> {
        let mut end = LoopEnd {
            interrupted_by: None,
            survivors: Vec::new(),
        };
        let mut last_progress = Instant::now() - PROGRESS_EVERY;
        let mut last_store_check = Instant::now();
        let started = Instant::now();
        let mut tick: u32 = 0;
        loop {
            self.record_tick(&mut last_store_check, notice)?;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                progress(&Progress {
                    session_id: self.rec.writer.session_id(),
                    elapsed: self.clock.elapsed(),
                    processes: self.backend.followed(),
                    seen: self.rec.processes.len(),
                    samples: self.rec.writer.samples_written(),
                    store_bytes: self.store.size_on_disk(),
                });
            }
            if let Next::Stop = self.look_after_tree(&mut end, notice) {
                break;
            }
            // Sleep until the next tick. A recorder that fell behind (an overloaded machine)
            // skips the ticks it missed rather than polling back to back to catch up.
            let due = started.elapsed().as_nanos() / self.options.interval.as_nanos().max(1);
            tick = tick
                .saturating_add(1)
                .max(u32::try_from(due).unwrap_or(u32::MAX).saturating_add(1));
            self.wait_until(started + self.options.interval * tick, &mut end);
        }
        if let Some(r) = self.running.as_deref_mut() {
            r.child.reap();
        }
        Ok(end)
    }

    /// One tick's recording: poll, phases, commit, and whether the store is still there.
    fn record_tick(
        &mut self,
        last_store_check: &mut Instant,
        notice: &mut impl FnMut(&str),
    ) -> Result<(), RecordError> {
        if self.rec.writing() {
            self.backend.poll(self.clock, self.rec)?;
        }
        if let Some(ph) = self.phases.as_deref_mut() {
            self.rec.phases(ph.drain());
        }
        self.rec.flush_if_due();
        if last_store_check.elapsed() >= STORE_CHECK_EVERY {
            *last_store_check = Instant::now();
            if self.rec.writing() && !self.store.still_there() {
                self.rec.lose(format!(
                    "the store {} was removed or replaced while recording",
                    self.store.path().display()
                ));
            }
        }
        if let Some(line) = self.rec.loss_to_say(self.clock, self.running.is_some()) {
            notice(&line);
        }
        Ok(())
    }

    /// Whether the recording is over: the command's tree is gone (stopping what it left and
    /// escalating a stop as it goes), or for running processes, they are gone or time is up.
    fn look_after_tree(&mut self, end: &mut LoopEnd, notice: &mut impl FnMut(&str)) -> Next {
        let over = self
            .options
            .duration
            .is_some_and(|d| self.clock.elapsed() >= d);
        let Some(r) = self.running.as_deref_mut() else {
            let all_gone =
                self.backend.followed() == 0 && !matches!(self.options.target, Target::All);
            return if all_gone || over || end.interrupted_by.is_some() {
                Next::Stop
            } else {
                Next::Sleep
            };
        };
        if over && r.stopper.idle() {
            r.stopper.request(&r.tree, Signal::SIGTERM, false);
        }
        match r.stopper.step(&r.tree, r.child.status().is_some()) {
            Step::Continue => Next::Sleep,
            Step::Done => Next::Stop,
            Step::Leftovers(n) => {
                notice(&format!(
                    "the command exited; {} of its tree {} still running: sent SIGTERM, SIGKILL in {} s",
                    memtools::units::processes(n as u64),
                    if n == 1 { "is" } else { "are" },
                    STOP_GRACE.as_secs()
                ));
                Next::Sleep
            }
            Step::GaveUp(survivors) => {
                end.survivors = survivors;
                Next::Stop
            }
        }
    }

    /// Sleeps until `next`, waking for the command's exit and for stop signals (passed on to
    /// the tree).
    fn wait_until(&mut self, next: Instant, end: &mut LoopEnd) {
        loop {
            if let Some(r) = self.running.as_deref_mut() {
                let was_running = r.child.status().is_none();
                r.child.reap();
                if was_running && r.child.status().is_some() {
                    return;
                }
            }
            if let Some(sig) = self.signals.take() {
                if let Some(r) = self.running.as_deref_mut() {
                    let from_terminal = sig == libc::SIGINT && sigint_from_terminal();
                    let signal = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
                    r.stopper.request(&r.tree, signal, from_terminal);
                }
                end.interrupted_by.get_or_insert(sig);
                return;
            }
            let now = Instant::now();
            if now >= next {
                return;
            }
            std::thread::sleep((next - now).min(WAKE_EVERY));
        }
    }
}

fn monotonic_now_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// Following many processes holds two descriptors each: lift the soft limit to the hard one.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
