//! The recorder: a backend produces samples each interval, the recorder writes them to the store.
//!
//! Each backend is one module behind the [`Backend`] trait. The recorder owns the loop, the
//! clock, the recorded command and its signals, and the bookkeeping for the summary.

mod command;
pub mod ebpf;
pub mod fds;
pub mod limits;
pub mod names;
pub mod phases;
pub mod procfs;
mod sampling;
mod session;
mod sink;
mod stop;
pub mod tree;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use command::Command;
pub use session::{CutShort, Progress, RecordOptions, RecordOutcome, SitesRequest, Target, record};

use memtools::model::{BackendKind, Lost, ProcessInfo, ProcessKey, Sample, TimeNs};
use memtools::store::StoreError;

/// The shortest sampling interval: below it the recorder would measure itself.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What can stop a recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Proc(String),
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the interval must be at least 10ms (got {0:?})")]
    IntervalTooShort(Duration),
    #[error("{0}")]
    Signals(std::io::Error),
    #[error("cannot record with eBPF")]
    Ebpf(#[from] ebpf::EbpfError),
    #[error(
        "--sites samples stacks in the kernel and needs the eBPF backend, which is not in use ({0})"
    )]
    SitesNeedEbpf(String),
}

/// Which processes a backend follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every user process on the machine.
    All,
    /// These processes and every descendant they spawn, followed as the tree changes.
    Tree {
        roots: Vec<u32>,
        /// A subreaper (the recorder running a command) whose new children are orphans of the
        /// tree, re-parented to it: they are followed too.
        reaper: Option<u32>,
    },
}

impl Scope {
    /// Whether a process (with its parent) belongs to the scope, given which pids are followed.
    pub fn takes(&self, pid: u32, ppid: u32, followed: impl Fn(u32) -> bool) -> bool {
        match self {
            Scope::All => true,
            Scope::Tree { roots, reaper } => {
                roots.contains(&pid) || followed(ppid) || *reaper == Some(ppid)
            }
        }
    }
}

/// Wall-clock time derived from a monotonic clock, so samples stay ordered even if the wall
/// clock is stepped during a recording.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_wall: TimeNs,
    start: Instant,
}

impl Clock {
    /// Starts the clock now.
    pub fn start() -> Clock {
        let start_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as TimeNs)
            .unwrap_or(0);
        Clock {
            start_wall,
            start: Instant::now(),
        }
    }

    /// Now, in nanoseconds since the epoch.
    pub fn now(&self) -> TimeNs {
        self.start_wall + self.start.elapsed().as_nanos() as TimeNs
    }

    /// When the clock started.
    pub fn start_wall(&self) -> TimeNs {
        self.start_wall
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// What a backend reports. Borrowed, so reporting a sample allocates nothing.
#[derive(Debug)]
pub enum Event<'a> {
    /// A process is followed from now on.
    Started(&'a ProcessInfo),
    /// A new name and command line after exec.
    Renamed {
        key: ProcessKey,
        name: &'a str,
        cmdline: &'a str,
    },
    /// A sample of a followed process.
    Sample(ProcessKey, &'a Sample),
    /// A followed process exited (or can no longer be seen) at this time.
    Exited(ProcessKey, TimeNs),
    /// Growth sites of a followed process: one symbolized stack and what was counted for it
    /// (`record --sites`).
    Sites {
        key: ProcessKey,
        stack: &'a memtools::sites::Stack,
        counts: &'a [memtools::sites::SiteCount],
    },
    /// The largest resident memory a process ever had, as the kernel kept it (bytes).
    PeakRss(ProcessKey, u64),
}

/// Where a backend's events go.
pub trait Sink {
    /// Takes one event.
    fn event(&mut self, event: Event<'_>) -> Result<(), RecordError>;
}

/// A source of samples: polled once per interval.
pub trait Backend {
    /// Which backend this is, for the session record.
    fn kind(&self) -> BackendKind;
    /// Reports every change since the last poll: new processes, samples, exits.
    fn poll(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError>;
    /// How many processes are followed now.
    fn followed(&self) -> usize;
    /// Processes that could not be read (permissions), for the summary.
    fn unreadable(&self) -> u64 {
        0
    }
    /// What could not be recorded so far (stored with the session, said in the summary).
    fn lost(&self) -> Lost {
        Lost::default()
    }
    /// More on how it records, for the session's backend reason (e.g. how its hooks attach).
    fn detail(&self) -> Option<String> {
        None
    }
    /// Sampling is over: hands the sink what the backend still holds for the store (the
    /// growth sites counted since the last poll, and those still being named). Called once,
    /// after the last poll, while the store still takes events.
    fn finish(&mut self, _clock: &Clock, _sink: &mut dyn Sink) -> Result<(), RecordError> {
        Ok(())
    }
    /// The recording is over: let go of what the backend holds in the kernel. Called once,
    /// after the last poll; the backend may finish it in the background, but before it is
    /// dropped.
    fn stop(&mut self) {}
}

/// Which backend the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// eBPF when it can load, otherwise /proc.
    Auto,
    /// eBPF, or fail saying why not.
    Ebpf,
    /// Poll /proc.
    Procfs,
}

/// The backend that runs, why (stored with the session), and, when `auto` had to fall back,
/// the line to tell the user at once.
pub struct OpenedBackend {
    pub backend: Box<dyn Backend>,
    pub reason: String,
    pub fallback: Option<String>,
    /// Growth sites came by default but their sampler could not attach: why, to tell the user.
    pub sites_off: Option<String>,
}

/// A backend chosen and, for eBPF, loaded and attached, following nothing yet. Choosing
/// checks privileges and loads the programs, so the recorder does it before it starts a
/// command: a refusal then starts nothing.
pub struct PreparedBackend {
    loaded: Option<Box<ebpf::Ebpf>>,
    reason: String,
    fallback: Option<String>,
    /// Growth sites: how, and the buckets' length (ns).
    sites: Option<(session::SitesRequest, u64)>,
}

/// Chooses the backend asked for and loads it (`all`: every process will be followed).
pub fn prepare_backend(
    choice: BackendChoice,
    all: bool,
    rss_events: bool,
    interval: Duration,
) -> Result<PreparedBackend, RecordError> {
    // The reason says how the programs attached too (fentry or tracepoints).
    let loaded = |b: ebpf::Ebpf, reason: &str| PreparedBackend {
        reason: match b.detail() {
            Some(detail) => format!("{reason}; {detail}"),
            None => reason.to_string(),
        },
        loaded: Some(Box::new(b)),
        fallback: None,
        sites: None,
    };
    let procfs = |reason: String, fallback| PreparedBackend {
        loaded: None,
        reason,
        fallback,
        sites: None,
    };
    match choice {
        BackendChoice::Procfs => Ok(procfs("procfs requested".to_string(), None)),
        BackendChoice::Ebpf => Ok(loaded(
            ebpf::Ebpf::load(all, rss_events, interval)?,
            "ebpf requested",
        )),
        BackendChoice::Auto => match ebpf::Ebpf::load(all, rss_events, interval) {
            Ok(b) => Ok(loaded(b, "auto: eBPF loaded")),
            Err(e) => Ok(procfs(
                format!("auto: eBPF not possible ({e}); fell back to procfs"),
                Some(format!("eBPF not possible ({e}); recording with /proc")),
            )),
        },
    }
}

impl PreparedBackend {
    /// Which backend will record.
    pub fn kind(&self) -> BackendKind {
        match self.loaded {
            Some(_) => BackendKind::Ebpf,
            None => BackendKind::Procfs,
        }
    }

    /// Why this backend, for the session record.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When `auto` fell back to /proc: the line to tell the user at once.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Asks for growth sites: stacks where processes grow as `request` says, counted in
    /// buckets of `bucket_ns`. Only the eBPF backend samples them: without it, a request that
    /// requires them is refused, and another is let go.
    pub fn with_sites(
        mut self,
        request: session::SitesRequest,
        bucket_ns: u64,
    ) -> Result<Self, RecordError> {
        if self.loaded.is_none() {
            if request.required {
                return Err(RecordError::SitesNeedEbpf(self.reason.clone()));
            }
            return Ok(self);
        }
        self.sites = Some((request, bucket_ns));
        Ok(self)
    }

    /// Starts following the scope's processes.
    pub fn follow(self, scope: Scope) -> Result<OpenedBackend, RecordError> {
        let mut sites_off = None;
        let backend: Box<dyn Backend> = match self.loaded {
            Some(mut b) => {
                b.follow(&scope).map_err(|e| match e {
                    // A missing pid is the same error for every backend.
                    ebpf::EbpfError::NoSuchPid(pid) => RecordError::NoSuchPid(pid),
                    e => RecordError::Ebpf(e),
                })?;
                if let Some((request, bucket_ns)) = self.sites
                    && let Err(e) = b.sample_sites(&scope, request.sampling, bucket_ns)
                {
                    if request.required {
                        return Err(RecordError::Ebpf(e));
                    }
                    sites_off = Some(e.to_string());
                }
                b
            }
            None => Box::new(procfs::Procfs::new(scope)?),
        };
        Ok(OpenedBackend {
            backend,
            reason: self.reason,
            fallback: self.fallback,
            sites_off,
        })
    }
}

/// Opens the backend asked for, to be polled every `interval`, and follows the scope at once
/// (for processes that already run; a recorder starting a command prepares first, see
/// [`prepare_backend`]).
pub fn open_backend(
    choice: BackendChoice,
    scope: Scope,
    rss_events: bool,
    interval: Duration,
) -> Result<OpenedBackend, RecordError> {
    prepare_backend(choice, scope == Scope::All, rss_events, interval)?.follow(scope)
}
