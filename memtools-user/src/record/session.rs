//! One recording session: the sampling loop, signals, the command's lifetime, the summary.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::command::{Child, Command};
use super::names::{ByName, NamePattern};
use super::phases::{PHASES_ENV, PhaseChannel, PhaseLine};
use super::{
    BackendChoice, Clock, Event, MIN_INTERVAL, OpenedBackend, RecordError, Scope, Sink, limits,
    open_backend,
};
use memtools::model::{ExitStatus, Metric, NewSession, ProcessKey, ProcessLimits};
use memtools::store::{ProcessId, SessionWriter, Store};

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
    /// Phase lines that were not `begin NAME` / `end NAME` (the first few), to say so.
    pub ignored_phase_lines: Vec<String>,
}

/// How long a recorded command may take to exit after it was asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the loop looks at signals and the command between ticks.
const WAKE_EVERY: Duration = Duration::from_millis(20);
/// How often the status line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a recorded command is in being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopping {
    No,
    /// Sent SIGTERM (or the user's signal); SIGKILL at this deadline.
    Asked(Instant),
    /// Sent SIGKILL; give up waiting at this deadline.
    Killed(Instant),
}

struct Tracked {
    id: ProcessId,
    pid: u32,
    name: String,
    peak: u64,
}

/// The recorder's sink: the store writer plus what the summary needs.
struct Recording<'s> {
    writer: SessionWriter<'s>,
    processes: HashMap<ProcessKey, Tracked>,
}

impl Sink for Recording<'_> {
    fn event(&mut self, event: Event<'_>) -> Result<(), RecordError> {
        match event {
            Event::Started(info) => {
                if !self.processes.contains_key(&info.key) {
                    let limits = ProcessLimits {
                        memory: limits::cgroup_limit(info.key.pid),
                        address_space: limits::address_space_limit(info.key.pid),
                    };
                    let id = self.writer.add_process(info, limits)?;
                    let tracked = Tracked {
                        id,
                        pid: info.key.pid,
                        name: info.name.clone(),
                        peak: 0,
                    };
                    self.processes.insert(info.key, tracked);
                }
            }
            Event::Renamed { key, name, cmdline } => {
                if let Some(p) = self.processes.get_mut(&key) {
                    self.writer.rename_process(p.id, name, cmdline)?;
                    // Limits are set just before an exec: read the new program's.
                    let limit = limits::address_space_limit(key.pid);
                    self.writer.set_address_space_limit(p.id, limit)?;
                    p.name = name.to_string();
                }
            }
            Event::Sample(key, sample) => {
                if let Some(p) = self.processes.get_mut(&key) {
                    self.writer.add_sample(p.id, sample)?;
                    let value = sample
                        .metrics
                        .get(Metric::Rss)
                        .or(sample.metrics.vm_size)
                        .unwrap_or(0);
                    p.peak = p.peak.max(value);
                }
            }
            Event::Exited(key, time) => {
                if let Some(p) = self.processes.get(&key) {
                    self.writer.process_exited(p.id, time)?;
                }
            }
        }
        Ok(())
    }
}

/// Signals that stop a recording, caught for as long as it runs.
struct StopSignals {
    caught: Arc<AtomicUsize>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    fn install() -> Result<StopSignals, RecordError> {
        let caught = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&caught), sig as usize)
                .map_err(RecordError::Signals)?;
            ids.push(id);
        }
        Ok(StopSignals { caught, ids })
    }

    /// Takes the last caught signal, if any.
    fn take(&self) -> Option<i32> {
        match self.caught.swap(0, Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// How many malformed phase lines are kept to report.
const MAX_IGNORED_LINES: usize = 10;

/// Stores the phases written since the last look, timed now; malformed lines are kept to say.
fn drain_phases(
    channel: &mut PhaseChannel,
    writer: &mut SessionWriter<'_>,
    clock: &Clock,
    ignored: &mut Vec<String>,
) -> Result<(), RecordError> {
    let mut lines: Vec<(PhaseKind, String)> = Vec::new();
    channel.drain(|l| {
        lines.push(match l {
            PhaseLine::Begin(n) => (PhaseKind::Begin, n.to_string()),
            PhaseLine::End(n) => (PhaseKind::End, n.to_string()),
            PhaseLine::Malformed(l) => (PhaseKind::Malformed, l.to_string()),
        })
    });
    let now = clock.now();
    let mut ignore = |why: String| {
        if ignored.len() < MAX_IGNORED_LINES {
            ignored.push(why);
        }
    };
    for (kind, text) in lines {
        match kind {
            PhaseKind::Begin => writer.begin_phase(&text, now)?,
            PhaseKind::End => {
                if !writer.end_phase(&text, now)? {
                    ignore(format!("`end {text}` without a `begin {text}`"));
                }
            }
            PhaseKind::Malformed => {
                ignore(format!("`{text}` (expected `begin NAME` or `end NAME`)"));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum PhaseKind {
    Begin,
    End,
    Malformed,
}

/// Whether a SIGINT most likely came from the terminal, which sent it to the command too.
fn sigint_from_terminal() -> bool {
    let stdin = std::io::stdin();
    match nix::unistd::tcgetpgrp(&stdin) {
        Ok(fg) => fg == nix::unistd::getpgrp(),
        Err(_) => false,
    }
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

/// Records until the command exits, the followed processes are gone, the duration is over,
/// or a stop signal arrives; `progress` is called a few times a second, `notice` with what the
/// user should hear at once (the backend `auto` fell back from, and why).
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
    // Phases are for a recorded command's test harness; without a FIFO it still records.
    let mut phases = match &options.target {
        Target::Command(_) => PhaseChannel::create().ok(),
        _ => None,
    };
    let mut child = match &options.target {
        Target::Command(c) => {
            let env: Vec<(&str, &std::path::Path)> =
                phases.iter().map(|p| (PHASES_ENV, p.path())).collect();
            Some(Child::spawn(c, &env)?)
        }
        _ => None,
    };
    let scope = match (&options.target, &child) {
        (Target::All | Target::Names(_), _) => Scope::All,
        (Target::Pids(pids), _) => Scope::Tree {
            roots: pids.clone(),
            reaper: None,
        },
        (Target::Command(_), Some(c)) => Scope::Tree {
            roots: vec![c.pid()],
            reaper: Some(std::process::id()),
        },
        (Target::Command(_), None) => unreachable!("the command was spawned above"),
    };
    let OpenedBackend {
        mut backend,
        reason: backend_reason,
        fallback,
    } = match open_backend(options.backend, scope, options.rss_events) {
        Ok(b) => b,
        Err(e) => {
            if let Some(c) = &child {
                c.signal(Signal::SIGTERM);
            }
            return Err(e);
        }
    };
    if let Target::Names(patterns) = &options.target {
        backend = Box::new(ByName::new(backend, patterns.clone()));
    }
    if let Some(line) = &fallback {
        notice(line);
    }
    let clock = Clock::start();
    let (host, kernel) = host_and_kernel();
    let session = NewSession {
        host,
        kernel,
        backend: backend.kind(),
        backend_reason,
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
    };
    let mut rec = Recording {
        writer: store.begin_session(&session)?,
        processes: HashMap::new(),
    };
    let session_id = rec.writer.session_id();

    let mut interrupted_by: Option<i32> = None;
    let mut stop = Stopping::No;
    let mut last_progress = Instant::now() - PROGRESS_EVERY;
    let started = Instant::now();
    let mut tick: u32 = 0;
    let mut ignored_phase_lines = Vec::new();
    loop {
        // Phase lines first: a line written since the last look is stamped before this look's
        // samples, so memory a test allocated after writing `begin` is never counted before it.
        if let Some(ph) = phases.as_mut() {
            drain_phases(ph, &mut rec.writer, &clock, &mut ignored_phase_lines)?;
        }
        let drain_began = Instant::now();
        backend.poll(&clock, &mut rec)?;
        rec.writer.flush_if_due()?;
        let drain = drain_began.elapsed();
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(&Progress {
                session_id,
                elapsed: clock.elapsed(),
                processes: backend.followed(),
                seen: rec.processes.len(),
                samples: rec.writer.samples_written(),
                store_bytes: store.size_on_disk(),
                backend: backend.kind().name(),
                drain,
                events_lost: backend.events_lost(),
            });
        }
        let over = options.duration.is_some_and(|d| clock.elapsed() >= d);
        match &child {
            // The command's exit ends the session, after the poll that saw it go.
            Some(c) if c.status().is_some() => break,
            Some(c) => {
                if over && stop == Stopping::No {
                    c.signal(Signal::SIGTERM);
                    stop = Stopping::Asked(Instant::now() + STOP_GRACE);
                }
                match stop {
                    Stopping::Asked(deadline) if Instant::now() >= deadline => {
                        c.signal(Signal::SIGKILL);
                        stop = Stopping::Killed(Instant::now() + STOP_GRACE);
                    }
                    // Unkillable (stuck in the kernel): give up waiting for it.
                    Stopping::Killed(deadline) if Instant::now() >= deadline => break,
                    _ => {}
                }
            }
            None => {
                let until_stopped = matches!(options.target, Target::All | Target::Names(_));
                let all_gone = backend.followed() == 0 && !until_stopped;
                if all_gone || over || interrupted_by.is_some() {
                    break;
                }
            }
        }
        // Sleep until the next tick, waking up for signals and the command's exit. A recorder
        // that fell behind (an overloaded machine) skips the ticks it missed rather than
        // polling back to back to catch up.
        let due = started.elapsed().as_nanos() / options.interval.as_nanos().max(1);
        tick = tick
            .saturating_add(1)
            .max(u32::try_from(due).unwrap_or(u32::MAX).saturating_add(1));
        let next = started + options.interval * tick;
        loop {
            if let Some(c) = child.as_mut() {
                c.reap();
                if c.status().is_some() {
                    break;
                }
            }
            if let Some(sig) = signals.take() {
                match (&child, stop) {
                    (None, _) => {}
                    (Some(c), Stopping::No) => {
                        // Pass the request on (a terminal's Ctrl-C reached the command
                        // already) and record until the command has wound down.
                        if (sig != libc::SIGINT || !sigint_from_terminal())
                            && let Ok(s) = Signal::try_from(sig)
                        {
                            c.signal(s);
                        }
                        stop = Stopping::Asked(Instant::now() + STOP_GRACE);
                    }
                    (Some(c), _) => {
                        // Asked twice: stop now.
                        c.signal(Signal::SIGKILL);
                        stop = Stopping::Killed(Instant::now() + STOP_GRACE);
                    }
                }
                interrupted_by.get_or_insert(sig);
                break;
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(WAKE_EVERY));
        }
    }
    if let Some(c) = child.as_mut() {
        c.reap();
    }
    if let Some(ph) = phases.as_mut() {
        drain_phases(ph, &mut rec.writer, &clock, &mut ignored_phase_lines)?;
    }
    let exit = child.as_ref().and_then(Child::status);
    let end = clock.now();
    let samples = rec.writer.samples_written();
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
    let processes = rec.processes.len();
    rec.writer.finish(end, exit)?;
    drop(signals);
    Ok(RecordOutcome {
        session_id,
        backend: backend.kind().name().to_string(),
        processes,
        samples,
        duration: clock.elapsed(),
        exit,
        interrupted_by,
        top,
        unreadable: backend.unreadable(),
        ignored_phase_lines,
    })
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
