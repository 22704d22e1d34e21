//! The eBPF backend: kernel programs (memtools-ebpf) keep per-process counters in maps; each
//! poll drains what changed.
//!
//! - Resident memory by kind comes exact from `kmem:rss_stat` (the event carries the whole
//!   counter), with the peak since the last drain and its time, so a spike shorter than the
//!   interval is recorded as a sample of its own.
//! - Forks, execs and exits come in order through a ring buffer: the process tree is followed
//!   without scanning /proc, and the kernel filters by it (a map of followed tgids, filled on
//!   fork), so unrelated processes cost one hash lookup per event and nothing here.
//! - Changed processes are queued by the kernel once per drain epoch; only they are read and
//!   written. Unchanged ones are written again once a second, so a flat history has no gaps.
//! - /proc is read once per process when it is first followed or execs (its start time, the
//!   identity the /proc backend uses, and the figures of counters that have not moved yet),
//!   and `statm` for the virtual size of processes that changed.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use memtools_common::{
    EPOCH_INDEX, LifeEvent, MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBER_SWAP, MEMBERS,
    ProcStats, counter, life,
};

use super::procfs::{parse_stat, parse_statm, parse_status, read_cmdline};
use super::{Backend, Clock, Event, RecordError, Scope, Sink};
use crate::model::{BackendKind, Metrics, NS_PER_SEC, ProcessInfo, ProcessKey, Sample, TimeNs};

/// The kernel side, built by build.rs (empty when the toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memtools"));

/// Where tracefs is mounted when it is not.
const TRACEFS: &str = "/sys/kernel/tracing";

/// An unchanged process is written again this often, so its history has no gaps.
const KEEPALIVE_NS: i64 = NS_PER_SEC;
/// How often every followed process is looked at for its keepalive; in between, only the
/// ones the kernel queued are, so an idle process costs nothing per interval.
const SWEEP_NS: i64 = NS_PER_SEC / 4;

/// PF_KTHREAD in /proc/PID/stat's flags.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Why the eBPF backend cannot run. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "the eBPF object was not built (the pinned nightly or bpf-linker was missing at build \
         time); run `cargo xtask setup` and rebuild"
    )]
    NotBuilt,
    #[error("loading eBPF programs needs root or CAP_BPF and CAP_PERFMON (running as uid {0})")]
    NotPrivileged(u32),
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    #[error("the eBPF programs did not load: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program `{program}` did not {what}: {error}")]
    Program {
        program: &'static str,
        what: &'static str,
        error: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map `{0}` is missing or of the wrong type")]
    MissingMap(&'static str),
    #[error("eBPF map `{map}`: {error}")]
    Map {
        map: &'static str,
        error: Box<aya::maps::MapError>,
    },
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
}

/// Programs and the tracepoints they attach to; the optional ones only add metrics.
const PROGRAMS: &[(&str, &str, &str, bool)] = &[
    ("task_newtask", "task", "task_newtask", true),
    ("sched_process_exec", "sched", "sched_process_exec", true),
    ("sched_process_exit", "sched", "sched_process_exit", true),
    ("rss_stat", "kmem", "rss_stat", true),
    // A raw tracepoint ("raw"): by name, without tracefs.
    ("page_fault_user", "raw", "page_fault_user", false),
    ("sys_enter_mmap", "syscalls", "sys_enter_mmap", false),
    ("sys_exit_mmap", "syscalls", "sys_exit_mmap", false),
    ("sys_enter_munmap", "syscalls", "sys_enter_munmap", false),
    ("sys_exit_munmap", "syscalls", "sys_exit_munmap", false),
    ("sys_exit_brk", "syscalls", "sys_exit_brk", false),
];

/// A followed process.
struct Proc {
    key: ProcessKey,
    /// Held open: re-read for the virtual size; it pins the process, so a reused pid fails.
    statm: Option<File>,
    /// Figures from /proc when first followed (or after exec), for counters that have not
    /// moved since: the kernel only knows a counter once it changes.
    base_rss: [u64; MEMBERS],
    base_faults: u64,
    vm_size: Option<u64>,
    /// What was written last, and when.
    last: Metrics,
    last_time: TimeNs,
    /// The boot-clock time of the last peak written, so a peak is written once.
    last_peak: u64,
    /// Queued by the kernel this drain.
    dirty: bool,
    /// Gone before /proc could be read: named from its exit event.
    unnamed: bool,
}

/// The eBPF backend.
pub struct Ebpf {
    /// Owns the programs and their links: dropping it detaches everything.
    _bpf: aya::Ebpf,
    logger: Option<aya_log::EbpfLogger<KernelLog>>,
    stats: BpfHashMap<MapData, u32, ProcStats>,
    epoch_map: Array<MapData, u32>,
    counters: Array<MapData, u64>,
    dirty: RingBuf<MapData>,
    life: RingBuf<MapData>,
    epoch: u32,
    procs: HashMap<u32, Proc>,
    /// Processes found when the recording started, reported at the first poll.
    initial: Vec<(u32, u32)>,
    has_faults: bool,
    has_syscalls: bool,
    ns_per_tick: u64,
    page_size: u64,
    dropped_seen: u64,
    dirty_lost_seen: u64,
    last_drop_report: TimeNs,
    last_drop_check: TimeNs,
    /// Lifecycle events lost so far (exits among them).
    life_lost_seen: u64,
    last_sweep: TimeNs,
    /// Some changes were not queued (the queue was full): look at every process.
    sweep_all: bool,
    pids: Vec<u32>,
    queued: Vec<u32>,
    gone: Vec<u32>,
}

/// Writes the kernel side's own diagnostics (aya-log) to stderr.
struct KernelLog;

impl log::Log for KernelLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("memtools: kernel side: {}", record.args());
    }
    fn flush(&self) {}
}

/// Whether this process may load tracing programs: root, or CAP_BPF and CAP_PERFMON.
fn privileged() -> Result<(), EbpfError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return Ok(());
    }
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_BPF) && has(CAP_PERFMON) {
        Ok(())
    } else {
        Err(EbpfError::NotPrivileged(uid))
    }
}

/// Mounts tracefs where the tracepoints' ids are read, unless it (or debugfs' copy) is there.
fn ensure_tracefs() -> Result<(), EbpfError> {
    let has_events = |p: &str| Path::new(p).join("events").is_dir();
    if has_events(TRACEFS) || has_events("/sys/kernel/debug/tracing") {
        return Ok(());
    }
    // SAFETY: NUL-terminated literals; mount(2) reads them only during the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(EbpfError::Tracefs(std::io::Error::last_os_error()))
    }
}

/// The offset of `group_dead` in sched_process_exit's record, 0 when the kernel has none.
fn exit_group_dead_offset() -> u32 {
    let format = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|t| {
            std::fs::read_to_string(format!("{t}/events/sched/sched_process_exit/format")).ok()
        })
        .unwrap_or_default();
    format
        .lines()
        .find(|l| l.contains(" group_dead;"))
        .and_then(|l| l.split("offset:").nth(1))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn boottime_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() * NS_PER_SEC + t.tv_nsec())
        .unwrap_or(0)
}

fn take_map<T>(
    bpf: &mut aya::Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, EbpfError> {
    let map = bpf.take_map(name).ok_or(EbpfError::MissingMap(name))?;
    convert(map).map_err(|e| EbpfError::Map {
        map: name,
        error: Box::new(e),
    })
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        error: Box::new(e),
    }
}

/// A kernel comm (NUL-padded) as a string.
fn comm_str(comm: &[u8; 16]) -> String {
    let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..n]).into_owned()
}

/// What /proc says of a process when it is first followed.
struct ProcView {
    ppid: u32,
    start_ticks: u64,
    comm: String,
    kthread: bool,
    zombie: bool,
    rss: [u64; MEMBERS],
    faults: u64,
    vm_size: Option<u64>,
}

fn read_proc(pid: u32) -> Option<ProcView> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let s = parse_stat(&stat)?;
    let status = std::fs::read(format!("/proc/{pid}/status"))
        .map(|b| parse_status(&b))
        .unwrap_or_default();
    let mut rss = [0; MEMBERS];
    rss[MEMBER_FILE] = status.rss_file.unwrap_or(0);
    rss[MEMBER_ANON] = status.rss_anon.unwrap_or(0);
    rss[MEMBER_SWAP] = status.swap.unwrap_or(0);
    rss[MEMBER_SHMEM] = status.rss_shmem.unwrap_or(0);
    Some(ProcView {
        ppid: s.ppid,
        start_ticks: s.start_ticks,
        comm: String::from_utf8_lossy(s.comm).into_owned(),
        kthread: s.flags & PF_KTHREAD != 0,
        zombie: s.state == b'Z' || s.state == b'X',
        rss,
        faults: s.page_faults,
        vm_size: status.vm_size,
    })
}

/// The pids of /proc's numeric entries.
fn list_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Ebpf {
    /// Loads and attaches the kernel side and marks the scope's processes as followed.
    pub fn new(scope: Scope) -> Result<Ebpf, EbpfError> {
        // Privileges first: an unprivileged user learns what they can change.
        privileged()?;
        if OBJECT.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        if let Scope::Tree { roots, .. } = &scope {
            for &pid in roots {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(EbpfError::NoSuchPid(pid));
                }
            }
        }
        ensure_tracefs()?;
        let follow_all: u8 = u8::from(scope == Scope::All);
        let group_dead = exit_group_dead_offset();
        let mut bpf = aya::EbpfLoader::new()
            .override_global("FOLLOW_ALL", &follow_all, true)
            .override_global("EXIT_GROUP_DEAD_OFFSET", &group_dead, true)
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(Box::new(e)))?;
        let logger = aya_log::EbpfLogger::init_with_logger(&mut bpf, KernelLog).ok();
        let stats = take_map(&mut bpf, "STATS", BpfHashMap::try_from)?;
        let mut epoch_map: Array<MapData, u32> = take_map(&mut bpf, "EPOCH", Array::try_from)?;
        let counters = take_map(&mut bpf, "COUNTERS", Array::try_from)?;
        let dirty = take_map(&mut bpf, "DIRTY", RingBuf::try_from)?;
        let life = take_map(&mut bpf, "LIFE", RingBuf::try_from)?;
        // Epoch 0 is what a fresh counter holds: start at 1 so its first change is queued.
        epoch_map.set(EPOCH_INDEX, 1, 0).map_err(map_err("EPOCH"))?;
        let (mut has_faults, mut has_syscalls) = (true, true);
        let skip = std::env::var("MEMTOOLS_EBPF_SKIP").unwrap_or_default();
        for &(name, category, tracepoint, required) in PROGRAMS {
            if skip.split(',').any(|s| s == name) {
                if category == "raw" {
                    has_faults = false;
                } else if category == "syscalls" {
                    has_syscalls = false;
                }
                continue;
            }
            let attached = (|| -> Result<(), (&'static str, aya::programs::ProgramError)> {
                if category == "raw" {
                    let program: &mut RawTracePoint = bpf
                        .program_mut(name)
                        .ok_or(("exist", aya::programs::ProgramError::UnexpectedProgramType))?
                        .try_into()
                        .map_err(|e| ("be a raw tracepoint", e))?;
                    program.load().map_err(|e| ("load", e))?;
                    program.attach(tracepoint).map_err(|e| ("attach", e))?;
                    return Ok(());
                }
                let program: &mut TracePoint = bpf
                    .program_mut(name)
                    .ok_or(("exist", aya::programs::ProgramError::UnexpectedProgramType))?
                    .try_into()
                    .map_err(|e| ("be a tracepoint", e))?;
                program.load().map_err(|e| ("load", e))?;
                program
                    .attach(category, tracepoint)
                    .map_err(|e| ("attach", e))?;
                Ok(())
            })();
            match attached {
                Ok(()) => {}
                Err((what, source)) if required => {
                    return Err(EbpfError::Program {
                        program: name,
                        what,
                        error: Box::new(source),
                    });
                }
                Err(_) if category == "raw" => has_faults = false,
                Err(_) => has_syscalls = false,
            }
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let mut backend = Ebpf {
            _bpf: bpf,
            logger,
            stats,
            epoch_map,
            counters,
            dirty,
            life,
            epoch: 1,
            procs: HashMap::new(),
            initial: Vec::new(),
            has_faults,
            has_syscalls,
            ns_per_tick: 1_000_000_000 / if hz > 0 { hz as u64 } else { 100 },
            page_size: if page > 0 { page as u64 } else { 4096 },
            dropped_seen: 0,
            dirty_lost_seen: 0,
            last_drop_report: 0,
            last_drop_check: 0,
            life_lost_seen: 0,
            last_sweep: 0,
            sweep_all: false,
            pids: Vec::with_capacity(256),
            queued: Vec::with_capacity(256),
            gone: Vec::with_capacity(64),
        };
        backend.follow_existing(&scope)?;
        Ok(backend)
    }

    /// Marks the processes that exist now as followed: the roots and their descendants, or
    /// every user process. The programs are attached already, so a process forked meanwhile
    /// is seen either here or as a fork event (duplicates are ignored).
    fn follow_existing(&mut self, scope: &Scope) -> Result<(), EbpfError> {
        let mut parents: Vec<(u32, u32)> = Vec::new();
        for pid in list_pids() {
            if let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat"))
                && let Some(s) = parse_stat(&stat)
                && s.flags & PF_KTHREAD == 0
            {
                parents.push((pid, s.ppid));
            }
        }
        let mut chosen: Vec<(u32, u32)> = Vec::new();
        match scope {
            Scope::All => chosen = parents,
            Scope::Tree { roots, .. } => {
                for &root in roots {
                    let ppid = parents
                        .iter()
                        .find(|(p, _)| *p == root)
                        .map_or(0, |(_, pp)| *pp);
                    chosen.push((root, ppid));
                }
                // Descendants, repeatedly: a child can be listed before its parent.
                loop {
                    let before = chosen.len();
                    for &(pid, ppid) in &parents {
                        if chosen.iter().any(|(c, _)| *c == ppid)
                            && !chosen.iter().any(|(c, _)| *c == pid)
                        {
                            chosen.push((pid, ppid));
                        }
                    }
                    if chosen.len() == before {
                        break;
                    }
                }
            }
        }
        for &(pid, _) in &chosen {
            // BPF_NOEXIST: the kernel may have created it already, for a fork just now.
            match self.stats.insert(pid, ProcStats::default(), 1) {
                Ok(()) => {}
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(map_err("STATS")(e)),
            }
        }
        self.initial = chosen;
        Ok(())
    }

    /// Starts following a process: its identity and starting figures from /proc.
    fn start(
        &mut self,
        pid: u32,
        ppid: u32,
        fork_boot_ns: Option<u64>,
        sink: &mut dyn Sink,
        clock_offset: i64,
    ) -> Result<(), RecordError> {
        if self.procs.contains_key(&pid) {
            return Ok(());
        }
        let view = read_proc(pid);
        let start_ticks = match (&view, fork_boot_ns) {
            (Some(v), _) => v.start_ticks,
            // Gone already: the fork's time is its start, to within the tick.
            (None, Some(t)) => t / self.ns_per_tick,
            (None, None) => {
                let _ = self.stats.remove(&pid);
                return Ok(());
            }
        };
        if view.as_ref().is_some_and(|v| v.kthread) {
            // FOLLOW_ALL also sees kernel threads being created: they have no user memory.
            let _ = self.stats.remove(&pid);
            return Ok(());
        }
        let key = ProcessKey {
            pid,
            start_time: start_ticks * self.ns_per_tick,
        };
        let info = ProcessInfo {
            key,
            ppid: Some(
                view.as_ref()
                    .map_or(ppid, |v| if ppid != 0 { ppid } else { v.ppid }),
            ),
            name: view.as_ref().map(|v| v.comm.clone()).unwrap_or_default(),
            cmdline: read_cmdline(pid),
        };
        sink.event(Event::Started(&info))?;
        let statm = File::open(format!("/proc/{pid}/statm")).ok();
        // The kernel has counted faults since the process was followed (at fork, or when the
        // recording started), and /proc has them all: the base is what it had before.
        let counted = self.stats.get(&pid, 0).map_or(0, |s| s.faults);
        let proc = Proc {
            key,
            statm,
            base_rss: view.as_ref().map_or([0; MEMBERS], |v| v.rss),
            base_faults: view
                .as_ref()
                .map_or(0, |v| v.faults.saturating_sub(counted)),
            vm_size: view.as_ref().and_then(|v| v.vm_size),
            last: Metrics::default(),
            last_time: 0,
            last_peak: 0,
            // Written at once, so a process is recorded from its first poll; one already gone
            // is written from its exit event, which carries its last counters.
            dirty: view.is_some(),
            unnamed: view.is_none(),
        };
        let zombie = view.as_ref().is_some_and(|v| v.zombie);
        self.procs.insert(pid, proc);
        self.queued.push(pid);
        if zombie {
            // Exited before it could be followed: one sample of what was seen, then the exit.
            let now = clock_offset + boottime_ns();
            self.sample(pid, now, clock_offset, None, sink)?;
            // A forked one's exit event is on its way: the kernel has forgotten it already.
            self.exit(pid, now, fork_boot_ns.is_none(), sink)?;
        }
        Ok(())
    }

    /// Ends a process's history. The kernel forgets an exited process itself (its pid may be
    /// followed again by now, for a new process); `forget` is for one gone without an exit
    /// event (lost), whose map entries would otherwise stay.
    fn exit(
        &mut self,
        pid: u32,
        time: TimeNs,
        forget: bool,
        sink: &mut dyn Sink,
    ) -> Result<(), RecordError> {
        if let Some(p) = self.procs.remove(&pid) {
            sink.event(Event::Exited(p.key, time))?;
            if forget {
                let _ = self.stats.remove(&pid);
            }
        }
        Ok(())
    }

    /// Reads one process's counters and writes a sample when they changed (or the keepalive
    /// is due), preceded by the peak since the last one when it was higher than both ends.
    fn sample(
        &mut self,
        pid: u32,
        now: TimeNs,
        clock_offset: i64,
        last_stats: Option<ProcStats>,
        sink: &mut dyn Sink,
    ) -> Result<bool, RecordError> {
        let (has_faults, has_syscalls, page) = (self.has_faults, self.has_syscalls, self.page_size);
        let events_lost = self.life_lost_seen > 0;
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(true);
        };
        let dirty = std::mem::take(&mut p.dirty);
        // Swept every SWEEP_NS: written again after KEEPALIVE_NS at the latest.
        if !dirty && now - p.last_time < KEEPALIVE_NS - SWEEP_NS {
            return Ok(true);
        }
        // Not there until the process's first counted event; an exit event brings its own.
        let stats = last_stats.or_else(|| self.stats.get(&pid, 0).ok());
        // Stamped when read (an exit at its own time), like the /proc backend: the counters may
        // hold changes made after the poll began, and a sample must not predate its data (a
        // test harness's phase marker would otherwise get the growth that followed it).
        let now = if last_stats.is_some() {
            now
        } else {
            (clock_offset + boottime_ns()).max(now)
        };
        let mut alive = true;
        // The virtual size moves with mmap/munmap/brk and faults, which queue the process: an
        // unchanged one's statm is not read again, unless exit events were lost (then a failed
        // read is how an exit shows).
        let statm = if dirty || events_lost {
            p.statm.as_ref()
        } else {
            None
        };
        if p.statm.is_none() && events_lost {
            // Never readable (gone at once), and its exit event may be among the lost ones.
            alive = false;
        }
        if let Some(f) = statm {
            let mut buf = [0u8; 128];
            match f.read_at(&mut buf, 0) {
                Ok(n) => match parse_statm(&buf[..n]) {
                    // A zombie's statm reads all zeros: its memory is gone.
                    Some([0, ..]) | None => alive = false,
                    Some([size, ..]) => p.vm_size = Some(size * page),
                },
                Err(_) => alive = false,
            }
        }
        let s = stats.unwrap_or_default();
        let member = |m: usize, rss: &[u64; MEMBERS]| {
            if s.seen & (1 << m) != 0 {
                rss[m]
            } else {
                p.base_rss[m]
            }
        };
        let metrics = Metrics {
            rss_anon: Some(member(MEMBER_ANON, &s.rss)),
            rss_file: Some(member(MEMBER_FILE, &s.rss)),
            rss_shmem: Some(member(MEMBER_SHMEM, &s.rss)),
            swap: Some(member(MEMBER_SWAP, &s.rss)),
            vm_size: p.vm_size,
            page_faults: has_faults.then_some(p.base_faults + s.faults),
            mmap_calls: has_syscalls.then_some(s.mmap_calls),
            munmap_calls: has_syscalls.then_some(s.munmap_calls),
            brk_calls: has_syscalls.then_some(s.brk_calls),
            mapped_bytes: has_syscalls.then_some(s.mapped_bytes),
            unmapped_bytes: has_syscalls.then_some(s.unmapped_bytes),
        };
        let total = |m: &Metrics| {
            m.rss_anon.unwrap_or(0) + m.rss_file.unwrap_or(0) + m.rss_shmem.unwrap_or(0)
        };
        // The peak since the last sample, when it rose above both the last and this one.
        let peak_wall = clock_offset + s.peak_time as i64;
        if s.peak_time > p.last_peak && peak_wall > p.last_time && peak_wall < now {
            let peak = Metrics {
                rss_anon: Some(member(MEMBER_ANON, &s.peak_rss)),
                rss_file: Some(member(MEMBER_FILE, &s.peak_rss)),
                rss_shmem: Some(member(MEMBER_SHMEM, &s.peak_rss)),
                swap: Some(member(MEMBER_SWAP, &s.peak_rss)),
                ..metrics
            };
            let peak_total = total(&peak);
            if peak_total > total(&metrics) && (p.last_time == 0 || peak_total > total(&p.last)) {
                let sample = Sample {
                    time: peak_wall,
                    metrics: peak,
                };
                sink.event(Event::Sample(p.key, &sample))?;
            }
            p.last_peak = s.peak_time;
        }
        // An exit brings the last counters (taken before the kernel tears the memory down):
        // written even though statm is gone by now, unless they fell since the last sample (the
        // program freeing its memory on its way out, which the /proc backend cannot see and the
        // analysis would take for a release); a rise just before exiting is kept.
        let exit_rise = last_stats.is_some() && total(&metrics) >= total(&p.last);
        if alive || p.last_time == 0 || exit_rise {
            let sample = Sample { time: now, metrics };
            sink.event(Event::Sample(p.key, &sample))?;
            p.last = metrics;
            p.last_time = now;
        }
        Ok(alive)
    }

    /// Reports what the kernel side had to drop, at most once a second.
    fn report_drops(&mut self, now: TimeNs) {
        // Four reads are four system calls: a few times a second is enough.
        if now - self.last_drop_check < NS_PER_SEC / 4 {
            return;
        }
        self.last_drop_check = now;
        let read = |i: u32| self.counters.get(&i, 0).unwrap_or(0);
        let (not_followed, life_lost) = (read(counter::FOLLOW_FULL), read(counter::LIFE_LOST));
        let dropped = not_followed + life_lost;
        let dirty_lost = read(counter::DIRTY_LOST);
        if dirty_lost > self.dirty_lost_seen {
            // Some changed processes were not queued: read them all this time.
            self.dirty_lost_seen = dirty_lost;
            for p in self.procs.values_mut() {
                p.dirty = true;
            }
            self.sweep_all = true;
        }
        if dropped > self.dropped_seen && now - self.last_drop_report >= NS_PER_SEC {
            eprintln!(
                "memtools: the kernel side dropped {dropped} events so far (its maps or queues \
                 were full: {not_followed} new processes not followed, {life_lost} fork/exec/exit \
                 events lost); some processes may be missing or end late"
            );
            self.dropped_seen = dropped;
            self.last_drop_report = now;
        }
        self.life_lost_seen = life_lost;
    }
}

impl Backend for Ebpf {
    fn kind(&self) -> BackendKind {
        BackendKind::Ebpf
    }

    fn poll(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
        let now = clock.now();
        // Wall time = boot-clock time + offset (the kernel stamps events with the boot clock).
        let offset = now - boottime_ns();
        // The processes to look at this time: started, exec'ed or changed.
        self.queued.clear();
        for (pid, ppid) in std::mem::take(&mut self.initial) {
            self.start(pid, ppid, None, sink, offset)?;
        }
        // Process events, in the order they happened.
        loop {
            let event = match self.life.next() {
                Some(item) if item.len() >= size_of::<LifeEvent>() => {
                    // SAFETY: LifeEvent is plain old data; the read is unaligned-safe.
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<LifeEvent>()) }
                }
                Some(_) => continue,
                None => break,
            };
            let time = offset + event.time as i64;
            match event.kind {
                life::FORK => self.start(event.tgid, event.ppid, Some(event.time), sink, offset)?,
                life::EXEC => {
                    if let Some(p) = self.procs.get_mut(&event.tgid) {
                        // A new image: its counters start over; take /proc's as the base.
                        if let Some(v) = read_proc(event.tgid) {
                            p.base_rss = v.rss;
                        }
                        p.dirty = true;
                        self.queued.push(event.tgid);
                        let name = comm_str(&event.comm);
                        let cmdline = read_cmdline(event.tgid);
                        sink.event(Event::Renamed {
                            key: p.key,
                            name: &name,
                            cmdline: &cmdline,
                        })?;
                    }
                }
                life::EXIT if self.procs.contains_key(&event.tgid) => {
                    if let Some(p) = self.procs.get_mut(&event.tgid) {
                        p.dirty = true;
                        if p.unnamed {
                            // Lived less than an interval: its name is all there is.
                            let name = comm_str(&event.comm);
                            sink.event(Event::Renamed {
                                key: p.key,
                                name: &name,
                                cmdline: "",
                            })?;
                        }
                    }
                    let stats = event.stats;
                    self.sample(event.tgid, time.min(now), offset, Some(stats), sink)?;
                    self.exit(event.tgid, time.min(now), false, sink)?;
                }
                _ => {}
            }
        }
        // Processes whose counters changed.
        while let Some(item) = self.dirty.next() {
            if let Some(b) = item.get(..4) {
                self.queued
                    .push(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            }
        }
        // Then a new epoch, before the counters are read: a change from here on queues its
        // process again (for the next poll), and starts a new peak. Bumped before the queue
        // was drained, a process queued in the new epoch would be read now and its later
        // changes in that epoch never queued.
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.epoch_map
            .set(EPOCH_INDEX, self.epoch, 0)
            .map_err(|e| RecordError::Proc(format!("eBPF map EPOCH: {e}")))?;
        for &pid in &self.queued {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.dirty = true;
            }
        }
        self.report_drops(now);
        if let Some(logger) = self.logger.as_mut() {
            logger.flush();
        }
        self.gone.clear();
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        if now - self.last_sweep >= SWEEP_NS || self.sweep_all {
            self.last_sweep = now;
            self.sweep_all = false;
            pids.extend(self.procs.keys().copied());
        } else {
            pids.extend_from_slice(&self.queued);
        }
        for &pid in &pids {
            if !self.sample(pid, now, offset, None, sink)? {
                self.gone.push(pid);
            }
        }
        self.pids = pids;
        // Gone without an exit event (it was lost): the held statm says so.
        for pid in std::mem::take(&mut self.gone) {
            self.exit(pid, now, true, sink)?;
        }
        Ok(())
    }

    fn followed(&self) -> usize {
        self.procs.len() + self.initial.len()
    }
}
