//! The eBPF backend: kernel programs (memtools-ebpf) watch the resident memory of followed
//! processes and the process tree; each poll drains what changed.
//!
//! - The kernel side reads each followed process's resident counters from its mm when one of
//!   its threads leaves a CPU, is found running by a 10 Hz timer, or is about to release
//!   memory (munmap, madvise, brk), and at exit; nothing runs per page fault (see
//!   memtools-ebpf's rss.rs for why, and `--rss-events` for the per-change hook). A process
//!   whose counters moved is queued as changed once per drain epoch, with its peak within the
//!   epoch and when it was, so a spike shorter than the interval is a sample of its own.
//! - Forks, execs and exits come in order through a ring buffer: the process tree is followed
//!   without scanning /proc, and the kernel filters by it (a map of followed tgids, filled on
//!   fork), so unrelated processes cost nothing here.
//! - mmap/munmap/brk calls and the bytes they mapped are counted in the kernel.
//! - Only the processes queued as changed are read, from /proc/PID/status and stat held open:
//!   the exact figures (the kernel's own counters lag by what each CPU has not folded in),
//!   page faults included (the kernel counts them per task; hooking every fault for them cost
//!   the workload 8 %). Unchanged processes are written again once a second, unread, so a flat
//!   history has no gaps.

mod btf;
mod load;

pub use load::EbpfError;

use std::collections::HashMap;
use std::fs::File;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use memtools_common::{
    EPOCH_INDEX, LifeEvent, MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBER_SWAP, MEMBERS,
    ProcStats, counter, life,
};

use super::procfs::{metrics_of, parse_stat, parse_status, read_cmdline, read_whole};
use super::{Backend, Clock, Event, RecordError, Scope, Sink};
use memtools::model::{BackendKind, Metrics, NS_PER_SEC, ProcessInfo, ProcessKey, Sample, TimeNs};

/// An unchanged process is written again this often, so its history has no gaps.
const KEEPALIVE_NS: i64 = NS_PER_SEC;
/// How often every followed process is looked at for its keepalive; in between, only the
/// ones the kernel queued are, so an idle process costs nothing per interval.
const SWEEP_NS: i64 = NS_PER_SEC / 4;

/// PF_KTHREAD in /proc/PID/stat's flags.
const PF_KTHREAD: u64 = 0x0020_0000;

/// A followed process.
struct Proc {
    key: ProcessKey,
    /// Held open and re-read when the process changed; they pin the process, so a reused pid
    /// fails instead of reading another process.
    files: Option<ProcFiles>,
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

/// A process's stat (page faults, state) and status (memory by kind, virtual size).
struct ProcFiles {
    stat: File,
    status: File,
}

impl ProcFiles {
    fn open(pid: u32) -> Option<ProcFiles> {
        Some(ProcFiles {
            stat: File::open(format!("/proc/{pid}/stat")).ok()?,
            status: File::open(format!("/proc/{pid}/status")).ok()?,
        })
    }

    /// The process's figures now; None once it has exited (a zombie has no memory left).
    fn read(&self, bufs: &mut [Vec<u8>; 2]) -> Option<Metrics> {
        let [stat_buf, status_buf] = bufs;
        let len = read_whole(&self.stat, stat_buf).ok()?;
        let stat = parse_stat(&stat_buf[..len]).filter(|s| s.state != b'Z' && s.state != b'X')?;
        let len = read_whole(&self.status, status_buf).ok()?;
        let status = parse_status(&status_buf[..len]);
        status.vm_size?;
        Some(metrics_of(&status, stat.page_faults))
    }
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
    has_syscalls: bool,
    ns_per_tick: u64,
    /// How far the kernel's running counters may be from the exact figures (bytes): what
    /// each CPU may hold back before folding it in. A peak must beat the samples around it
    /// by more than this to be written.
    counter_slack: u64,
    /// Read buffers for stat and status, shared by every process.
    bufs: [Vec<u8>; 2],
    dropped_seen: u64,
    /// Events the kernel side dropped so far (processes not followed, lifecycle events lost).
    dropped: u64,
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

fn boottime_ns() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() * NS_PER_SEC + t.tv_nsec())
        .unwrap_or(0)
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
}

fn read_proc(pid: u32) -> Option<ProcView> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let s = parse_stat(&stat)?;
    Some(ProcView {
        ppid: s.ppid,
        start_ticks: s.start_ticks,
        comm: String::from_utf8_lossy(s.comm).into_owned(),
        kthread: s.flags & PF_KTHREAD != 0,
        zombie: s.state == b'Z' || s.state == b'X',
    })
}

/// Bytes the kernel's per-CPU rss counters may hold back in all: `percpu_counter_batch`
/// (max(32, 2 x CPUs)) pages per CPU.
fn counter_slack(page_size: u64) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u64;
    cpus * (2 * cpus).max(32) * page_size
}

/// Every user process (no kernel threads) with its parent, from /proc.
fn list_user_processes() -> Vec<(u32, u32)> {
    list_pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            let s = parse_stat(&stat)?;
            (s.flags & PF_KTHREAD == 0).then_some((pid, s.ppid))
        })
        .collect()
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
    pub fn new(scope: Scope, rss_events: bool) -> Result<Ebpf, EbpfError> {
        let mut backend = Ebpf::load(scope == Scope::All, rss_events)?;
        backend.follow(&scope)?;
        Ok(backend)
    }

    /// Loads and attaches the kernel side, following nothing yet: every privilege, tracefs,
    /// BTF and verifier check happens here, so the recorder does it before it starts the
    /// command (a refusal then starts nothing). `all`: the kernel side follows every process.
    pub fn load(all: bool, rss_events: bool) -> Result<Ebpf, EbpfError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let page = if page > 0 { page as u64 } else { 4096 };
        let skip = std::env::var("MEMTOOLS_EBPF_SKIP").unwrap_or_default();
        let loaded = load::load(all, rss_events, page as u32, &skip)?;
        let mut bpf = loaded.bpf;
        let logger = aya_log::EbpfLogger::init_with_logger(&mut bpf, KernelLog).ok();
        Ok(Ebpf {
            _bpf: bpf,
            logger,
            stats: loaded.stats,
            epoch_map: loaded.epoch,
            counters: loaded.counters,
            dirty: loaded.dirty,
            life: loaded.life,
            epoch: 1,
            procs: HashMap::new(),
            initial: Vec::new(),
            has_syscalls: loaded.has_syscalls,
            ns_per_tick: 1_000_000_000 / if hz > 0 { hz as u64 } else { 100 },
            counter_slack: counter_slack(page),
            bufs: [Vec::with_capacity(512), Vec::with_capacity(2048)],
            dropped_seen: 0,
            dropped: 0,
            dirty_lost_seen: 0,
            last_drop_report: 0,
            last_drop_check: 0,
            life_lost_seen: 0,
            last_sweep: 0,
            sweep_all: false,
            pids: Vec::with_capacity(256),
            queued: Vec::with_capacity(256),
            gone: Vec::with_capacity(64),
        })
    }

    /// Starts following the scope's processes (the roots must exist), once loaded.
    pub fn follow(&mut self, scope: &Scope) -> Result<(), EbpfError> {
        if let Scope::Tree { roots, .. } = scope {
            for &pid in roots {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(EbpfError::NoSuchPid(pid));
                }
            }
        }
        self.follow_existing(scope)
    }

    /// Marks the processes that exist now as followed: the roots and their descendants, or
    /// every user process. The programs are attached already, so a process forked meanwhile
    /// is seen either here or as a fork event (duplicates are ignored).
    fn follow_existing(&mut self, scope: &Scope) -> Result<(), EbpfError> {
        let mut chosen: Vec<(u32, u32)> = Vec::new();
        // In rounds: a process is marked, then /proc is listed again. One forked by a marked
        // process after it was marked is the kernel's to follow; one forked before shows in the
        // next listing. (The command may have started forking a moment ago.)
        loop {
            let parents = list_user_processes();
            let before = chosen.len();
            match scope {
                Scope::All => chosen = parents,
                Scope::Tree { roots, .. } => {
                    for &root in roots {
                        if !chosen.iter().any(|(c, _)| *c == root) {
                            let ppid = parents
                                .iter()
                                .find(|(p, _)| *p == root)
                                .map_or(0, |(_, pp)| *pp);
                            chosen.push((root, ppid));
                        }
                    }
                    // Descendants, repeatedly: a child can be listed before its parent.
                    loop {
                        let known = chosen.len();
                        for &(pid, ppid) in &parents {
                            if chosen.iter().any(|(c, _)| *c == ppid)
                                && !chosen.iter().any(|(c, _)| *c == pid)
                            {
                                chosen.push((pid, ppid));
                            }
                        }
                        if chosen.len() == known {
                            break;
                        }
                    }
                }
            }
            let start = if matches!(scope, Scope::All) {
                0
            } else {
                before
            };
            for &(pid, _) in &chosen[start..] {
                // BPF_NOEXIST: the kernel may have created it already, for a fork just now.
                match self.stats.insert(pid, ProcStats::default(), 1) {
                    Ok(()) => {}
                    Err(aya::maps::MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(map_err("STATS")(e)),
                }
            }
            // Every process is the kernel's to follow already when all are.
            if matches!(scope, Scope::All) || chosen.len() == before {
                break;
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
        let proc = Proc {
            key,
            files: ProcFiles::open(pid),
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

    /// Reads one process and writes a sample when it changed (or the keepalive is due),
    /// preceded by the peak since the last one when it was higher than both ends. At exit,
    /// `last_stats` are the kernel's counters as the process went (its files are gone).
    fn sample(
        &mut self,
        pid: u32,
        now: TimeNs,
        clock_offset: i64,
        last_stats: Option<ProcStats>,
        sink: &mut dyn Sink,
    ) -> Result<bool, RecordError> {
        let (has_syscalls, slack) = (self.has_syscalls, self.counter_slack);
        let events_lost = self.life_lost_seen > 0;
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(true);
        };
        let dirty = std::mem::take(&mut p.dirty);
        // Swept every SWEEP_NS: written again after KEEPALIVE_NS at the latest.
        if !dirty && now - p.last_time < KEEPALIVE_NS - SWEEP_NS {
            return Ok(true);
        }

        // The kernel's record: the peak, the mapping calls; not there until the process's
        // first counted event. An exit event brings its own.
        let stats = last_stats.or_else(|| self.stats.get(&pid, 0).ok());
        // Stamped when read (an exit at its own time), like the /proc backend: the figures may
        // hold changes made after the poll began, and a sample must not predate its data (a
        // test harness's phase marker would otherwise get the growth that followed it).
        let now = if last_stats.is_some() {
            now
        } else {
            (clock_offset + boottime_ns()).max(now)
        };
        let kernel_rss = |rss: &[u64; MEMBERS], base: &Metrics| Metrics {
            rss_anon: Some(rss[MEMBER_ANON]),
            rss_file: Some(rss[MEMBER_FILE]),
            rss_shmem: Some(rss[MEMBER_SHMEM]),
            swap: Some(rss[MEMBER_SWAP]),
            ..*base
        };
        let mut alive = true;
        let mut metrics = p.last;
        if let Some(s) = last_stats {
            // Gone: the kernel's last counters, taken as it exited.
            metrics = kernel_rss(&s.rss, &p.last);
        } else if dirty || events_lost {
            // Changed (or, with exit events lost, possibly gone: a failed read says so).
            match p.files.as_ref().and_then(|f| f.read(&mut self.bufs)) {
                Some(m) => metrics = m,
                None => {
                    alive = false;
                    if p.last_time == 0
                        && let Some(s) = &stats
                    {
                        // Gone before it could be read: what the kernel saw is all there is.
                        metrics = kernel_rss(&s.rss, &p.last);
                    }
                }
            }
        }
        if let Some(s) = &stats
            && has_syscalls
        {
            metrics.mmap_calls = Some(s.mmap_calls);
            metrics.munmap_calls = Some(s.munmap_calls);
            metrics.brk_calls = Some(s.brk_calls);
            metrics.mapped_bytes = Some(s.mapped_bytes);
            metrics.unmapped_bytes = Some(s.unmapped_bytes);
        }
        let total = |m: &Metrics| {
            m.rss_anon.unwrap_or(0) + m.rss_file.unwrap_or(0) + m.rss_shmem.unwrap_or(0)
        };
        // The peak since the last sample, when it rose above both the last and this one by
        // more than the kernel's counters may be off.
        if let Some(s) = &stats {
            let peak_wall = clock_offset + s.peak_time as i64;
            if s.peak_time > p.last_peak && peak_wall > p.last_time && peak_wall < now {
                let peak = kernel_rss(&s.peak_rss, &metrics);
                let around = total(&metrics).max(if p.last_time == 0 { 0 } else { total(&p.last) });
                if total(&peak) > around + slack {
                    let sample = Sample {
                        time: peak_wall,
                        metrics: peak,
                    };
                    sink.event(Event::Sample(p.key, &sample))?;
                }
                p.last_peak = s.peak_time;
            }
        }
        // An exit's counters are written unless they did not rise since the last sample (the
        // program freeing its memory on its way out, which the /proc backend cannot see and
        // the analysis would take for a release); a rise just before exiting is kept.
        let exit_rise = last_stats.is_some() && total(&metrics) > total(&p.last) + slack;
        if (alive && last_stats.is_none()) || p.last_time == 0 || exit_rise {
            if metrics.vm_size.is_none() && metrics.rss_anon.is_none() {
                // Nothing known of it at all.
                return Ok(alive);
            }
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
        self.dropped = dropped;
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
        // Gone without an exit event (it was lost): the held files say so.
        for pid in std::mem::take(&mut self.gone) {
            self.exit(pid, now, true, sink)?;
        }
        Ok(())
    }

    fn followed(&self) -> usize {
        self.procs.len() + self.initial.len()
    }

    fn events_lost(&self) -> u64 {
        self.dropped
    }
}
