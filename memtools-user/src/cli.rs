//! The command line: clap definitions only; [`crate::commands`] carries them out.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use memtools::analysis::Params;
use memtools::detect::{MetricChoice, PeakBudget};
use memtools::model::Metric;
use memtools::report::ReportSpec;
use memtools::store::{DEFAULT_STORE, SessionSelector};

use crate::record::names::NamePattern;

/// Record per-process memory and find the processes that keep growing.
#[derive(Debug, Parser)]
#[command(name = "memtools-user", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the sample store is.
#[derive(Debug, Args, Clone)]
pub struct StoreArg {
    /// The sample store (an SQLite file)
    #[arg(long, env = "MEMTOOLS_STORE", default_value = DEFAULT_STORE, value_name = "PATH")]
    pub store: PathBuf,
}

/// Which session to work on.
#[derive(Debug, Args, Clone)]
pub struct SessionArg {
    /// A session id, or `latest`
    #[arg(long, default_value = "latest", value_name = "ID|latest")]
    pub session: SessionSelector,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record the memory of a command's process tree, of running processes, or of everything
    ///
    /// Examples:
    ///   memtools-user record -- pytest -x tests/
    ///   memtools-user record --pid 1234 --interval 1s
    ///   sudo memtools-user record --all --duration 10m
    #[command(verbatim_doc_comment)]
    Record(RecordArgs),
    /// Record for as long as it runs and serve the processes' memory and leak verdicts as
    /// Prometheus metrics, keeping the store to --retain
    ///
    /// Examples:
    ///   sudo memtools-user serve                       # every process, on 127.0.0.1:9465
    ///   memtools-user serve --name 'java' --name 'postgres*' --listen 0.0.0.0:9465
    ///   memtools-user serve --pid 1234 --retain 1d --store /var/lib/memtools/serve.db
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// List the recorded and imported sessions, newest first
    Sessions {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// One session's processes: first, peak and last memory, and growth
    Show {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        session: SessionArg,
        /// The metric to show (default: rss for recordings, vm_size for memorytools imports;
        /// threads and fds count a process's threads and open file descriptors)
        #[arg(long, value_name = "NAME")]
        metric: Option<Metric>,
    },
    /// Tell which processes leak: a verdict per process with its evidence
    ///
    /// Exit status with --fail-on-leak: 3 when a process leaks, 0 otherwise, 1 on errors.
    Detect(DetectArgs),
    /// A live view in the terminal: each process's memory, growth, trend and verdict as it
    /// is recorded
    ///
    /// Without --store it records every process of the machine (like `record --all`) into a
    /// temporary store it removes on exit: a memory-aware `top`. With --store it follows the
    /// session being recorded there, or shows a finished one. Keys: `?` in the view.
    ///
    /// Examples:
    ///   sudo memtools-user top
    ///   memtools-user top --store ci.db --session latest
    #[command(verbatim_doc_comment)]
    Top(TopArgs),
    /// Where each process grew: its top growth sites (recorded by default with eBPF for a
    /// command or --pid; `record --sites` asks for them), as a table, folded stacks, JSON or a
    /// flame graph
    ///
    /// Examples:
    ///   memtools-user sites
    ///   memtools-user sites --pid 1234 --window all --format svg -o grow.svg
    ///   memtools-user sites --window 10s..1m --format folded | inferno-flamegraph > f.svg
    #[command(verbatim_doc_comment)]
    Sites(SitesArgs),
    /// Name a session's growth sites again from binaries with symbols, found by build-id: for a
    /// session recorded where the binaries were stripped (a CI runner)
    ///
    /// Looks in each --search directory's .build-id/ layout and /usr/lib/debug, at the path
    /// each binary was mapped from, then at every ELF file under the --search directories; a
    /// binary is used only when its build-id matches. The store is changed in one transaction.
    ///
    /// Examples:
    ///   memtools-user resymbolize --store ci.db --search target/debug
    ///   memtools-user resymbolize --store ci.db --session 3 --search ./build --search /opt/debug
    #[command(verbatim_doc_comment)]
    Resymbolize(ResymbolizeArgs),
    /// Import memorytools' CSV exports (plain or .gz), each file as one session
    Import {
        #[command(flatten)]
        store: StoreArg,
        /// The CSV files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Export a session as memorytools' CSV or as JSON lines (one sample per line)
    Export {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        session: SessionArg,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// One metric only: csv puts it in the `Memory Usage` column (default vm_size, as
        /// memorytools); json gives it alone on each line (default: every metric)
        #[arg(long, value_name = "NAME")]
        metric: Option<Metric>,
        /// Write here instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SitesArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub session: SessionArg,
    /// Only the process(es) with this pid
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Which samples count: `leak` (each leaking process's leak window; only leaking
    /// processes), `all`, or `START..END` as times since the session began (`10s..1m`; either
    /// side may be left out)
    #[arg(long, default_value = "leak", value_parser = parse_site_window, value_name = "leak|all|START..END")]
    pub window: SiteWindowArg,
    /// Which samples: `fault` (sampled page faults: resident memory grown), `brk` or `mmap`
    /// (every call that grew the process: address space reserved), `calls` (both calls), or
    /// `all`; faults and calls are listed apart, each with shares of its own bytes
    #[arg(long, value_enum, default_value_t = SiteCauseArg::All)]
    pub cause: SiteCauseArg,
    #[arg(long, value_enum, default_value_t = SitesFormat::Text)]
    pub format: SitesFormat,
    /// Write here instead of standard output (a new file renamed into place; never through a
    /// link)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResymbolizeArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub session: SessionArg,
    /// A directory to look for the binaries in (its .build-id/ layout, then every ELF file
    /// under it); may be given several times
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
}

/// Which samples `sites` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteWindowArg {
    Leak,
    All,
    /// Offsets from the session's start, ns.
    Range(Option<i64>, Option<i64>),
}

fn parse_site_window(s: &str) -> Result<SiteWindowArg, String> {
    match s {
        "leak" => return Ok(SiteWindowArg::Leak),
        "all" => return Ok(SiteWindowArg::All),
        _ => {}
    }
    let Some((start, end)) = s.split_once("..") else {
        return Err(format!(
            "`{s}` is not a window: give `leak`, `all` or START..END (e.g. 10s..1m)"
        ));
    };
    let side = |v: &str, which: &str| -> Result<Option<i64>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        parse_duration(v)
            .map(|d| Some(d.as_nanos().min(i64::MAX as u128) as i64))
            .map_err(|e| format!("the window's {which} `{v}`: {e}"))
    };
    let (start, end) = (side(start, "start")?, side(end, "end")?);
    if let (Some(a), Some(b)) = (start, end)
        && a > b
    {
        return Err(format!("the window `{s}` ends before it starts"));
    }
    Ok(SiteWindowArg::Range(start, end))
}

/// How growth sites count the faults to sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    PerfEvent,
    Countdown,
}

/// Which causes of growth sites `sites` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SiteCauseArg {
    Fault,
    Brk,
    Mmap,
    Calls,
    All,
}

impl SiteCauseArg {
    /// The stored causes this choice reads.
    pub fn causes(self) -> &'static [memtools::sites::SiteCause] {
        use memtools::sites::SiteCause::{Brk, Fault, Mmap};
        match self {
            SiteCauseArg::Fault => &[Fault],
            SiteCauseArg::Brk => &[Brk],
            SiteCauseArg::Mmap => &[Mmap],
            SiteCauseArg::Calls => &[Brk, Mmap],
            SiteCauseArg::All => &[Fault, Brk, Mmap],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SitesFormat {
    /// The top sites of each process: share, bytes, samples, function, file:line
    Text,
    /// Folded stacks (outermost first, weighed in bytes) for flame graph tools
    Folded,
    /// An array of processes, each with `pid`, `name`, its fault `sites` and (when calls are
    /// asked for) its `calls`, largest first
    Json,
    /// A flame graph (inferno); with faults and calls, each under a frame naming its measure
    Svg,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Follow the session recorded in this store (or show a finished one) instead of
    /// recording every process into a temporary store
    #[arg(long, env = "MEMTOOLS_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// With --store: a session id, or `latest` (which moves on to a newer session once the
    /// one shown has ended)
    #[arg(long, default_value = "latest", value_name = "ID|latest")]
    pub session: SessionSelector,
    /// The metric shown and judged (default: rss; vm_size for memorytools imports); `m` in the
    /// view switches
    #[arg(long, value_name = "NAME")]
    pub metric: Option<Metric>,
    /// Without --store: how samples are taken
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Without --store: time between samples (at least 10ms)
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DUR")]
    pub interval: Duration,
    /// How often the view reads new samples from the store
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub refresh: Duration,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub session: SessionArg,
    /// The metric to analyse (default: rss for recordings, vm_size for memorytools imports):
    /// threads, fds, or `all` to judge memory, threads and file descriptors together (a
    /// process leaks if any of them does)
    #[arg(long, value_name = "NAME|all")]
    pub metric: Option<MetricChoice>,
    /// Which detectors decide
    #[arg(long, value_enum, default_value_t = AlgoArg::Combined)]
    pub algo: AlgoArg,
    /// R^2 a Linear Backward Regression window needs, from 0 to 1
    #[arg(long, default_value = "0.9", value_parser = parse_r2, value_name = "F")]
    pub r2: f64,
    /// Smallest regression window, in points (at least 3); also the fewest samples for a verdict
    #[arg(long, default_value = "20", value_parser = parse_min_window, value_name = "N")]
    pub min_window: usize,
    /// Flag a line that reaches the limit within this time, like 1h, 30m
    #[arg(long, default_value = "1h", value_parser = parse_positive_duration, value_name = "DUR")]
    pub critical_time: Duration,
    /// The limit growth is projected against, like 16GiB, or a count for threads and fds
    /// (default: the process's cgroup limit or the recording machine's memory; for fds its
    /// RLIMIT_NOFILE, for threads pids.max or the machine's thread limit); with `--metric all`
    /// it bounds memory alone
    #[arg(long, value_parser = parse_limit, value_name = "BYTES")]
    pub limit: Option<u64>,
    /// Samples further apart than this split a history (default: from its sampling interval)
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub gap: Option<Duration>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with status 3 when any process leaks
    #[arg(long)]
    pub fail_on_leak: bool,
    /// Exit with status 3 when a process's peak goes over SIZE, like 2GiB; NAME=SIZE sets the
    /// budget of the processes of that name (repeatable)
    #[arg(long, value_name = "[NAME=]SIZE", value_parser = parse_budget)]
    pub fail_on_peak: Vec<PeakBudget>,
}

/// The detectors, as `--algo` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlgoArg {
    /// Minimum growth of the lower envelope, its robust trend or LBR, vetoed by change points
    Combined,
    /// Linear Backward Regression alone (memorytools' detector, its bug fixed)
    Lbr,
    /// Theil-Sen slope with a Mann-Kendall test, alone
    Trend,
    /// Change-point segmentation alone
    Cpd,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// How samples are taken
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// eBPF: also hook every change of resident memory (kmem:rss_stat), so every peak is seen,
    /// not only those the timer, the scan or a release catch; costs fault-heavy programs a
    /// few per cent, every program on the machine (README: what recording costs)
    #[arg(long)]
    pub rss_events: bool,
    /// Require growth sites: the user stack sampled where followed processes grow (one stack
    /// every N pages faulted in or mapped by brk/mmap), so `sites` and the verdicts can say
    /// which code grew them (needs frame pointers in the recorded programs). On by default
    /// with the eBPF backend for a command or --pid (README: what recording costs); this
    /// refuses to record without them, and asks for them with --all or --name
    #[arg(long)]
    pub sites: bool,
    /// Record no growth sites
    #[arg(long, conflicts_with = "sites")]
    pub no_sites: bool,
    /// Growth sites: one stack every this many pages a process grows by (page faults, and
    /// brk/mmap calls by the bytes they reserve)
    #[arg(long, default_value_t = crate::record::ebpf::sites::DEFAULT_FAULT_PERIOD, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub sites_period: u64,
    /// Growth sites: how the faults to sample are counted: a perf event opened on the
    /// recorded tree (nothing runs for other processes), or a countdown per process at the
    /// page_fault_user tracepoint (x86; runs at every fault on the machine: README)
    #[arg(long, value_enum, default_value_t = SamplerArg::PerfEvent, value_name = "HOW")]
    pub sites_sampler: SamplerArg,
    /// Time between samples (10ms to 1h), like 100ms, 1s
    #[arg(long, default_value = "100ms", value_parser = parse_interval, value_name = "DUR")]
    pub interval: Duration,
    /// Stop after this long, like 30s, 5m (the recorded command's whole tree is then sent
    /// SIGTERM, and SIGKILL 5 s later)
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub duration: Option<Duration>,
    /// Record this running process and its descendants (repeatable)
    #[arg(long, value_name = "PID", conflicts_with = "all", value_parser = parse_pid)]
    pub pid: Vec<u32>,
    /// Record every process on the machine
    #[arg(long)]
    pub all: bool,
    /// Record the processes whose name matches PATTERN (`*`, `?`, `[...]`), and their
    /// descendants, as they come and go, until stopped (repeatable)
    #[arg(long, value_name = "PATTERN", conflicts_with_all = ["all", "pid"])]
    pub name: Vec<NamePattern>,
    /// While recording, serve its processes and verdicts as Prometheus metrics on
    /// http://ADDR/metrics, like 127.0.0.1:9465
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub export: ExportArgs,
    /// When the recording ends, run the leak analysis and print the verdicts; exit 3 when the
    /// command succeeded but a process leaked (the command's own status when it failed)
    #[arg(long)]
    pub fail_on_leak: bool,
    /// What the analysis after the recording judges: `all` (memory, threads and file
    /// descriptors together, the default), or one metric (rss, threads, fds, ...)
    #[arg(long, value_name = "NAME|all", default_value = "all")]
    pub metric: MetricChoice,
    /// When the recording ends, fail (status 3, when the command succeeded) if a process's peak
    /// went over SIZE, like 2GiB; NAME=SIZE sets the budget of the processes of that name
    /// (repeatable)
    #[arg(long, value_name = "[NAME=]SIZE", value_parser = parse_budget)]
    pub fail_on_peak: Vec<PeakBudget>,
    /// Also write the verdicts as junit:PATH, json:PATH or markdown:PATH (repeatable)
    #[arg(long, value_name = "FORMAT:PATH")]
    pub report: Vec<ReportSpec>,
    /// Compare each process's peak and slope with an earlier session: an id, or
    /// `latest-passing` (the newest earlier run of the same command that exited 0); with
    /// --fail-on-leak a regression fails the run too
    #[arg(long, value_name = "ID|latest-passing")]
    pub baseline: Option<BaselineArg>,
    /// Show the live view (as `top`) instead of the status line while recording; the
    /// command's output to the terminal is kept and shown when the view closes, and it reads
    /// /dev/null instead of the terminal (README: the live view)
    #[arg(long)]
    pub live: bool,
    /// The command to run and record, with its arguments, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// How the exporter of `serve` and `record --listen` judges and what it exports.
#[derive(Debug, Args, Clone, Copy)]
pub struct ExportArgs {
    /// Export one by one the N largest and the N fastest-growing processes; the others are
    /// summed by name [default: 50]
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// The live analysis judges this much of each process's recent history, like 1h, 30m
    /// [default: 1h]
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub window: Option<Duration>,
    /// Run the live analysis at most this often [default: 15s]
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub analysis_every: Option<Duration>,
}

impl ExportArgs {
    /// Whether any was given.
    pub fn any(&self) -> bool {
        self.top.is_some() || self.window.is_some() || self.analysis_every.is_some()
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Where to serve http://ADDR/metrics; 0.0.0.0:9465 or [::]:9465 for every interface
    #[arg(long, default_value = memtools_exporter::DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: String,
    /// Delete the samples of `serve`'s sessions older than this, in the background, like 7d, 12h
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DUR")]
    pub retain: Duration,
    /// Time between samples (at least 10ms), like 1s, 500ms
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub interval: Duration,
    /// How samples are taken
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Every process on the machine (the default)
    #[arg(long, conflicts_with_all = ["pid", "name"])]
    pub all: bool,
    /// This running process and its descendants, until they have all exited (repeatable)
    #[arg(long, value_name = "PID", conflicts_with = "name")]
    pub pid: Vec<u32>,
    /// The processes whose name matches PATTERN (`*`, `?`, `[...]`), and their descendants, as
    /// they come and go (repeatable)
    #[arg(long, value_name = "PATTERN")]
    pub name: Vec<NamePattern>,
    #[command(flatten)]
    pub export: ExportArgs,
}

/// The backends this build has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// eBPF when it can load (root or CAP_BPF+CAP_PERFMON), otherwise /proc, saying why
    Auto,
    /// Kernel-side counters (eBPF): every change seen, almost no cost; fails if not possible
    Ebpf,
    /// Poll /proc/PID/stat and status each interval
    Procfs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// memorytools' CSV: Process ID, Process Name, Time, Memory Usage (virtual size)
    Csv,
    /// JSON lines: one sample per line with every metric
    Json,
}

/// Which earlier session `--baseline` compares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineArg {
    Id(i64),
    LatestPassing,
}

impl std::str::FromStr for BaselineArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "latest-passing" => Ok(BaselineArg::LatestPassing),
            _ => s
                .parse()
                .map(BaselineArg::Id)
                .map_err(|_| format!("`{s}` is neither a session id nor `latest-passing`")),
        }
    }
}

/// Parses `16GiB`, `512MiB`, `1.5GB`, `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size like 16GiB or 512MiB ({e})"))
}

/// Parses a peak budget: `2GiB` for every process, `worker=2GiB` for the processes named so.
pub fn parse_budget(s: &str) -> Result<PeakBudget, String> {
    PeakBudget::parse(s, parse_bytes)
}

/// Parses an R^2 threshold: a number from 0 to 1.
pub fn parse_r2(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=1.0).contains(&r) => Ok(r),
        Ok(_) => Err(format!(
            "`{s}` is out of range: R^2 is the fraction of the variance a line explains, from 0 to 1"
        )),
        Err(_) => Err(format!("`{s}` is not a number from 0 to 1")),
    }
}

/// Parses `--min-window`: 3 to 10,000,000 points.
pub fn parse_min_window(s: &str) -> Result<usize, String> {
    let why = "a window needs at least 3 points (through 2, every line fits exactly), and no history has more than 10000000";
    match s.trim().parse::<usize>() {
        Ok(n) if (Params::MIN_WINDOW..=Params::MAX_MIN_WINDOW).contains(&n) => Ok(n),
        Ok(_) => Err(format!("`{s}` is out of range: {why}")),
        Err(_) => Err(format!("`{s}` is not a whole number of points ({why})")),
    }
}

/// Parses a memory limit: more than 0 bytes.
pub fn parse_limit(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err(format!("`{s}`: a memory limit must be more than 0 bytes")),
        n => Ok(n),
    }
}

/// Parses a duration that must be more than 0.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}`: the duration must be more than 0"));
    }
    Ok(d)
}

/// The longest sampling interval: longer, and a recording says little about growth.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// Parses `--interval`: 10ms (below, the recorder would measure itself) to 1h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < crate::record::MIN_INTERVAL || d > MAX_INTERVAL {
        return Err(format!(
            "`{s}` is out of range: the interval must be at least 10ms (below it the recorder would measure itself) and at most 1h"
        ));
    }
    Ok(d)
}

/// Parses a process id: 1 or more (0 is no process).
pub fn parse_pid(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("`0` is not a process id (they start at 1)".to_string()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("`{s}` is not a process id")),
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like 250ms, 5s or 2m ({e})"))
}
