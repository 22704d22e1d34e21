//! One recording session: everything that can refuse first (the backend and its privileges,
//! the cgroup, the store), then the command, the sampling loop, stopping the tree, the
//! summary. A store that fails part-way stops the recording, never the command.

use std::time::Duration;

use super::command::{Child, Command};
use super::names::{ByName, NamePattern};
use super::phases::{PHASES_ENV, PhaseChannel};
use super::sampling::Sampling;
use super::sink::Recording;
use super::stop::{StopSignals, Stopper};
use super::tree::Tree;
use super::{
    BackendChoice, Clock, MIN_INTERVAL, OpenedBackend, PreparedBackend, RecordError, Scope, limits,
    prepare_backend,
};
use memtools::model::{ExitStatus, Lost, NewSession, TimeNs};
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
    /// Processes whose name matches, and their descendants, as they come and go, until stopped.
    Names(Vec<NamePattern>),
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
    /// Growth sites: sample the user stack where followed processes grow (eBPF only).
    pub sites: Option<SitesRequest>,
}

/// Growth sites for a recording: how faults are sampled, and whether it must have them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SitesRequest {
    pub sampling: super::ebpf::sites::FaultSampling,
    /// Asked for (`record --sites`): a recording that cannot have them is refused before
    /// anything starts. Otherwise (the default for a command or --pid) they come with the
    /// eBPF backend, and a recording without it, or whose sampler cannot attach, goes on
    /// without them and says why.
    pub required: bool,
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
    /// The backend recording (`ebpf`, `procfs`).
    pub backend: &'static str,
    /// The last look at the processes and write to the store.
    pub drain: Duration,
    /// Events the backend had to drop so far.
    pub events_lost: u64,
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
    /// What could not be recorded (stored with the session too).
    pub lost: Lost,
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
            Target::Names(n) => Some(format!(
                "--name {}",
                n.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        },
        source: None,
        start: clock.start_wall(),
        monotonic_offset_ns: Some(clock.start_wall() - monotonic_now_ns()),
        mem_total: limits::machine_memory(),
        threads_max: limits::threads_max(),
        pid_max: limits::pid_max(),
    }
}

/// The command and what holds its tree.
pub(super) struct Running {
    pub child: Child,
    pub tree: Tree,
    pub stopper: Stopper,
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
    let users_open_files = raise_fd_limit();
    let signals = StopSignals::install()?;
    // Whatever can refuse does so before the command starts: privileges and the eBPF
    // programs, the store. A refusal starts nothing.
    // Following by name looks at every process (the filter is on the user side).
    let all = matches!(options.target, Target::All | Target::Names(_));
    let prepared = prepare_backend(options.backend, all, options.rss_events, options.interval)?;
    // Said before anything starts: --sites without the eBPF backend records nothing asked for.
    let prepared = match options.sites {
        Some(s) => prepared.with_sites(s, options.interval.as_nanos() as u64)?,
        None => prepared,
    };
    if let Some(line) = prepared.fallback() {
        notice(line);
    }
    let clock = Clock::start();
    let mut rec = Recording::new(store.begin_session(&new_session(options, &prepared, &clock))?);
    let mut tree = matches!(options.target, Target::Command(_)).then(Tree::prepare);
    if let (Some(t), Some(limit)) = (tree.as_mut(), users_open_files) {
        t.keep_open_files_limit(limit);
    }
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
        let OpenedBackend {
            mut backend,
            sites_off,
            ..
        } = opened;
        if let Some(why) = sites_off {
            notice(&format!("growth sites not recorded: {why}"));
        }
        if let Target::Names(patterns) = &options.target {
            backend = Box::new(ByName::new(backend, patterns.clone()));
        }
        // Followed from its pid on: now the command may run.
        if let Some(r) = running.as_mut() {
            r.child.release()?;
        }
        let end = Sampling {
            backend: &mut *backend,
            rec: &mut rec,
            store,
            clock: &clock,
            options,
            running: running.as_mut(),
            phases: phases.as_mut(),
            signals: &signals,
            lost: Lost::default(),
        }
        .run(&mut progress, &mut notice);
        // Let go of the kernel hooks (in the background) while the session is finished.
        backend.stop();
        Ok((backend, end?))
    });
    let (backend, end) = match looped {
        Ok(v) => v,
        Err(e) => {
            // Never abandon the command: its tree goes with the failed recording.
            if let Some(r) = running.as_mut() {
                let child = &mut r.child;
                r.stopper.kill_and_wait(&r.tree, || child.reap());
            }
            // Nothing recorded (a missing --pid): no empty session left behind.
            if rec.processes.is_empty() {
                let _ = rec.writer.discard();
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
        lost: backend.lost(),
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
        (Target::All | Target::Names(_), _) => Scope::All,
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

fn monotonic_now_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

/// Following many processes holds a few descriptors each: lift the soft limit to the hard one.
/// Returns the limit as it was when it changed, for the recorded command to run under.
fn raise_fd_limit() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok()).then_some((soft, hard))
}
