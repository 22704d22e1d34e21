//! The data model every part shares: sessions, processes, samples and metrics.
//!
//! A process is identified by (pid, start time), never by pid alone, because pids are reused.
//! Times are integer nanoseconds since the Unix epoch; memory is in bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Wall-clock time in nanoseconds since the Unix epoch.
pub type TimeNs = i64;

/// One process's history of one metric: (time, value) pairs in time order.
pub type History = Vec<(TimeNs, u64)>;

/// Nanoseconds in one second, for conversions.
pub const NS_PER_SEC: i64 = 1_000_000_000;

/// One measured quantity of a process.
///
/// `Rss` is derived (anon + file + shmem), the others are stored as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Resident memory: anon + file + shmem.
    Rss,
    /// Resident anonymous memory (heap, stacks): where leaks usually live.
    RssAnon,
    /// Resident file-backed memory (code, mapped files).
    RssFile,
    /// Resident shared memory (tmpfs, SysV/POSIX shm).
    RssShmem,
    /// Swapped-out anonymous memory.
    Swap,
    /// Virtual memory size: what memorytools records.
    VmSize,
    /// Page faults (minor + major) since the process started.
    PageFaults,
    /// mmap calls seen.
    MmapCalls,
    /// munmap calls seen.
    MunmapCalls,
    /// brk calls seen.
    BrkCalls,
    /// Bytes mapped by mmap/brk.
    MappedBytes,
    /// Bytes unmapped by munmap/brk.
    UnmappedBytes,
    /// Threads of the process (the kernel's `signal->nr_threads`, `Threads:` in status): an
    /// unjoined thread is a leak that holds its stack and whatever it references.
    Threads,
    /// Open file descriptors (files, sockets, pipes): a leak ends in EMFILE at the process's
    /// RLIMIT_NOFILE.
    Fds,
}

/// What a metric's values count: the analysis's minimums, its wording and its limits depend on
/// it (a count is not bytes: one more thread is a step, one more byte is noise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Memory, in bytes.
    #[default]
    Bytes,
    /// Things counted one by one: threads, file descriptors, calls, faults.
    Count,
}

impl Unit {
    /// `bytes` or `count`, as JSON says it.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Count => "count",
        }
    }
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 14] = [
        Metric::Rss,
        Metric::RssAnon,
        Metric::RssFile,
        Metric::RssShmem,
        Metric::Swap,
        Metric::VmSize,
        Metric::PageFaults,
        Metric::MmapCalls,
        Metric::MunmapCalls,
        Metric::BrkCalls,
        Metric::MappedBytes,
        Metric::UnmappedBytes,
        Metric::Threads,
        Metric::Fds,
    ];

    /// The metrics stored per sample (everything but the derived `Rss`), in the order of the
    /// store's columns.
    pub const STORED: [Metric; 13] = [
        Metric::RssAnon,
        Metric::RssFile,
        Metric::RssShmem,
        Metric::Swap,
        Metric::VmSize,
        Metric::PageFaults,
        Metric::MmapCalls,
        Metric::MunmapCalls,
        Metric::BrkCalls,
        Metric::MappedBytes,
        Metric::UnmappedBytes,
        Metric::Threads,
        Metric::Fds,
    ];

    /// The counts that leak besides memory, judged with it by `detect --metric all`.
    pub const COUNTS: [Metric; 2] = [Metric::Threads, Metric::Fds];

    /// The name users type and exports carry (`rss_anon`, `vm_size`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rss => "rss",
            Metric::RssAnon => "rss_anon",
            Metric::RssFile => "rss_file",
            Metric::RssShmem => "rss_shmem",
            Metric::Swap => "swap",
            Metric::VmSize => "vm_size",
            Metric::PageFaults => "page_faults",
            Metric::MmapCalls => "mmap_calls",
            Metric::MunmapCalls => "munmap_calls",
            Metric::BrkCalls => "brk_calls",
            Metric::MappedBytes => "mapped_bytes",
            Metric::UnmappedBytes => "unmapped_bytes",
            Metric::Threads => "threads",
            Metric::Fds => "fds",
        }
    }

    /// What a leak of it is a leak of, in words: "leaks memory", "leaks file descriptors".
    pub fn what(self) -> &'static str {
        match self {
            Metric::Rss | Metric::RssAnon | Metric::RssFile | Metric::RssShmem => "memory",
            Metric::Swap => "swap",
            Metric::VmSize => "virtual memory",
            Metric::PageFaults => "page faults",
            Metric::MmapCalls => "mmap calls",
            Metric::MunmapCalls => "munmap calls",
            Metric::BrkCalls => "brk calls",
            Metric::MappedBytes => "mapped bytes",
            Metric::UnmappedBytes => "unmapped bytes",
            Metric::Threads => "threads",
            Metric::Fds => "file descriptors",
        }
    }

    /// What its values count.
    pub fn unit(self) -> Unit {
        match self {
            Metric::PageFaults
            | Metric::MmapCalls
            | Metric::MunmapCalls
            | Metric::BrkCalls
            | Metric::Threads
            | Metric::Fds => Unit::Count,
            _ => Unit::Bytes,
        }
    }

    /// Whether values are bytes (formatted as KiB/MiB/GiB) rather than counts.
    pub fn is_bytes(self) -> bool {
        self.unit() == Unit::Bytes
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric name that is not one of [`Metric::ALL`].
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown metric `{0}` (expected one of: rss, rss_anon, rss_file, rss_shmem, swap, vm_size, page_faults, mmap_calls, munmap_calls, brk_calls, mapped_bytes, unmapped_bytes, threads, fds)"
)]
pub struct UnknownMetric(pub String);

impl FromStr for Metric {
    type Err = UnknownMetric;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMetric(s.to_string()))
    }
}

/// The values of one sample; any of them may be absent (a backend that cannot see it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub swap: Option<u64>,
    pub vm_size: Option<u64>,
    pub page_faults: Option<u64>,
    pub mmap_calls: Option<u64>,
    pub munmap_calls: Option<u64>,
    pub brk_calls: Option<u64>,
    pub mapped_bytes: Option<u64>,
    pub unmapped_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub fds: Option<u64>,
}

impl Metrics {
    /// The value of one metric; `Rss` is the sum of its three parts when all are present.
    pub fn get(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Rss => Some(self.rss_anon? + self.rss_file? + self.rss_shmem?),
            Metric::RssAnon => self.rss_anon,
            Metric::RssFile => self.rss_file,
            Metric::RssShmem => self.rss_shmem,
            Metric::Swap => self.swap,
            Metric::VmSize => self.vm_size,
            Metric::PageFaults => self.page_faults,
            Metric::MmapCalls => self.mmap_calls,
            Metric::MunmapCalls => self.munmap_calls,
            Metric::BrkCalls => self.brk_calls,
            Metric::MappedBytes => self.mapped_bytes,
            Metric::UnmappedBytes => self.unmapped_bytes,
            Metric::Threads => self.threads,
            Metric::Fds => self.fds,
        }
    }

    /// Sets one stored metric; setting the derived `Rss` is a no-op.
    pub fn set(&mut self, metric: Metric, value: Option<u64>) {
        let slot = match metric {
            Metric::Rss => return,
            Metric::RssAnon => &mut self.rss_anon,
            Metric::RssFile => &mut self.rss_file,
            Metric::RssShmem => &mut self.rss_shmem,
            Metric::Swap => &mut self.swap,
            Metric::VmSize => &mut self.vm_size,
            Metric::PageFaults => &mut self.page_faults,
            Metric::MmapCalls => &mut self.mmap_calls,
            Metric::MunmapCalls => &mut self.munmap_calls,
            Metric::BrkCalls => &mut self.brk_calls,
            Metric::MappedBytes => &mut self.mapped_bytes,
            Metric::UnmappedBytes => &mut self.unmapped_bytes,
            Metric::Threads => &mut self.threads,
            Metric::Fds => &mut self.fds,
        };
        *slot = value;
    }
}

/// One observation of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub time: TimeNs,
    pub metrics: Metrics,
}

/// What makes a process unique on a machine: its pid and when it started.
///
/// `start_time` is nanoseconds since boot for recorded processes (the kernel's
/// `start_boottime`, as /proc/PID/stat field 22 gives it in clock ticks), and the first
/// sample's wall-clock time for imported ones, whose start is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessKey {
    pub pid: u32,
    pub start_time: u64,
}

/// What is known of a process when it is first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub key: ProcessKey,
    /// The parent's pid when known.
    pub ppid: Option<u32>,
    /// The short name (comm), as `ps` shows it.
    pub name: String,
    /// The command line, arguments joined by spaces; empty for kernel threads and imports.
    pub cmdline: String,
}

/// The limits a process could grow into where it ran, read when it is first seen and stored with
/// it, so an analysis later projects against what applied there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Its cgroup's memory limit (`memory.max`), when one below the machine's memory applies.
    pub memory: Option<u64>,
    /// Its address-space limit (RLIMIT_AS, "Max address space" of /proc/PID/limits), when set:
    /// the only thing that bounds its virtual size.
    pub address_space: Option<u64>,
    /// Its open-file limit (RLIMIT_NOFILE, the soft "Max open files"): where a descriptor leak
    /// ends in EMFILE.
    pub open_files: Option<u64>,
    /// Its cgroup's task limit (`pids.max`, the tightest of its cgroup and their ancestors),
    /// when one is set: threads count against it.
    pub tasks: Option<u64>,
}

impl From<Option<u64>> for ProcessLimits {
    /// A cgroup memory limit alone (what was stored before the address-space limit was).
    fn from(memory: Option<u64>) -> Self {
        ProcessLimits {
            memory,
            ..ProcessLimits::default()
        }
    }
}

/// How a session's samples were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Polling /proc/PID/{stat,status}.
    Procfs,
    /// Kernel-side counters drained from eBPF maps.
    Ebpf,
    /// Imported from memorytools' CSV export.
    MemorytoolsImport,
}

impl BackendKind {
    /// The name stored with a session and shown to users.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Procfs => "procfs",
            BackendKind::Ebpf => "ebpf",
            BackendKind::MemorytoolsImport => "import:memorytools",
        }
    }

    /// Parses a stored backend name.
    pub fn from_name(name: &str) -> Option<BackendKind> {
        [
            BackendKind::Procfs,
            BackendKind::Ebpf,
            BackendKind::MemorytoolsImport,
        ]
        .into_iter()
        .find(|b| b.name() == name)
    }
}

/// Everything known about a session when it begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub host: String,
    pub kernel: String,
    pub backend: BackendKind,
    /// Why this backend was chosen (shown by `sessions` and the GUI).
    pub backend_reason: String,
    /// The sampling interval asked for, when there was one.
    pub interval_ns: Option<i64>,
    /// The recorded command line, for `record -- CMD`.
    pub command: Option<String>,
    /// The imported file, for imports.
    pub source: Option<String>,
    pub start: TimeNs,
    /// Wall clock minus monotonic clock at the start, so monotonic times can be recovered.
    pub monotonic_offset_ns: Option<i64>,
    /// The recording machine's memory in bytes: the default limit leaks are projected against.
    pub mem_total: Option<u64>,
    /// The machine's limit on threads (`kernel.threads-max`): what a thread leak runs into
    /// without a cgroup limit, with `pid_max`.
    pub threads_max: Option<u64>,
    /// The machine's largest pid (`kernel.pid_max`): every thread takes one, so it bounds
    /// threads too.
    pub pid_max: Option<u64>,
}

/// What a recording could not record, kept with its session so an incomplete one says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Processes of the recorded scope that were never followed (the kernel side's table of
    /// followed processes was full).
    pub processes: u64,
    /// Process events (fork, exec, exit) the kernel side could not queue: a process may be
    /// missing, or its exit seen late.
    pub events: u64,
}

impl Lost {
    /// Whether anything was lost.
    pub fn any(&self) -> bool {
        self.processes > 0 || self.events > 0
    }
}

/// How a recorded command ended, for the session record and the recorder's own exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}
