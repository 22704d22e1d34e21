//! The eBPF backend: kernel programs (memtools-ebpf) watch the resident memory of followed
//! processes and the process tree; each poll drains what changed.
//!
//! - Nothing runs on a path every process on the machine takes (each context switch, system
//!   call or page fault): the kernel side looks at a followed process's resident counters
//!   when a per-CPU timer finds it running (once per interval), when the recorder's scan
//!   walks the machine's tasks (once a second), just before it releases memory (munmap,
//!   madvise, brk, mremap: fentry, or the mmap lock's tracepoint, so only those calls pay),
//!   and at exit (see memtools-ebpf's rss.rs, and `--rss-events` for the per-change hook). A
//!   process whose counters moved is queued as changed once per drain epoch, with its peak
//!   within the epoch and when it was, so a spike shorter than the interval is a sample of
//!   its own.
//! - Forks, execs and exits come in order through a ring buffer, each carrying the process's
//!   start time, parent and name (and at exit its last figures and peak), so a process that
//!   lived a millisecond has a history: the process tree is followed without scanning /proc,
//!   and the kernel filters by it (a map of followed tgids, filled on fork), so unrelated
//!   processes cost one lookup at their forks, execs and exits, and nothing else.
//! - mmap/munmap/brk calls and the bytes they mapped are counted in the kernel.
//! - Only the processes queued as changed are read, from /proc/PID/status and stat held open:
//!   the exact figures (the kernel's own counters lag by what each CPU has not folded in),
//!   page faults and threads included, and their open descriptors counted (one `fstat` of
//!   /proc/PID/fd held open). A new or ended thread queues its process (the lifecycle hooks),
//!   and so does a move of its thread count or of its descriptor table's next free slot, seen
//!   by the timer and the scan; a process whose counts moved is read at every poll for a
//!   second after, so a leak of one per test is recorded test by test. Unchanged processes
//!   are written again every 10 s, unread (readers hold a value until the next sample, so this
//!   only bounds a cut-short recording).
//! - What the kernel side could not do (a full map, a full queue) is counted and reported as
//!   the session's losses; a process whose fork event was lost is picked up from its changes
//!   or its exit.

mod attach;
mod btf;
pub(crate) mod kept_maps;
mod load;
mod naming;
mod procs;
mod scan;
pub mod sites;

pub use load::EbpfError;

use std::collections::HashMap;
use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use memtools_common::{EPOCH_INDEX, LifeEvent, ProcStats, counter, life};

use super::fds::{FdCounting, counting_wanted};
use super::procfs::{parse_stat, read_cmdline};
use super::{Backend, Clock, Event, RecordError, Scope, Sink};
use attach::{Links, SyscallHooks};
use memtools::model::{BackendKind, Lost, NS_PER_SEC, TimeNs};
use procs::{Origin, PF_KTHREAD, Proc, SWEEP_NS, comm_str};
use scan::Scan;

/// How often the recorder scans the machine's tasks for followed processes whose memory
/// moved (the per-CPU timer sees the running ones each interval).
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// A poll due a little early still scans (polls land a few ms either side of their tick).
const SCAN_SLACK_NS: i64 = 20_000_000;

/// The eBPF backend.
pub struct Ebpf {
    /// Owns the programs and maps; `None` once stopped.
    bpf: Option<aya::Ebpf>,
    /// Every hook's link, detached together when the recording stops.
    links: Links,
    /// Detaching in the background after [`Backend::stop`]; joined when dropped.
    detaching: Option<std::thread::JoinHandle<()>>,
    scan: Scan,
    syscalls: SyscallHooks,
    stats: BpfHashMap<MapData, u32, ProcStats>,
    epoch_map: Array<MapData, u32>,
    counters: Array<MapData, u64>,
    dirty: RingBuf<MapData>,
    life: RingBuf<MapData>,
    /// The growth-site sampler, with `record --sites`.
    sites: Option<sites::SiteRecorder>,
    epoch: u32,
    procs: HashMap<u32, Proc>,
    /// Processes whose history is closed, by pid with their start time (the last few
    /// thousand): a late look at one (an exit event after its files said it was gone, its
    /// zombie still in /proc) is not a new process.
    ended: HashMap<u32, u64>,
    /// Processes found when the recording started, reported at the first poll.
    initial: Vec<(u32, u32)>,
    ns_per_tick: u64,
    /// How far the kernel's running counters may be from the exact figures (bytes): what
    /// each CPU may hold back before folding it in. A peak must beat the samples around it
    /// by more than this to be written.
    counter_slack: u64,
    /// Read buffers for stat, status and (kernels before 6.2) the descriptor listing, shared by
    /// every process.
    bufs: [Vec<u8>; 3],
    /// How descriptors are counted here; `None`: not at all (`MEMTOOLS_NO_COUNTS=1`).
    fd_counting: Option<FdCounting>,
    /// What the kernel side could not do, as last read.
    lost: Lost,
    dirty_lost_seen: u64,
    last_drop_report: TimeNs,
    last_drop_check: TimeNs,
    reported: Lost,
    /// Lifecycle events lost so far (exits among them).
    life_lost_seen: u64,
    last_sweep: TimeNs,
    /// When the task scan last ran.
    last_scan: TimeNs,
    /// Some changes were not queued (the queue was full): look at every process.
    sweep_all: bool,
    pids: Vec<u32>,
    queued: Vec<u32>,
    /// Processes whose memory moved at their last read: read again at the next poll.
    follow_ups: Vec<u32>,
    gone: Vec<u32>,
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
    pub fn new(scope: Scope, rss_events: bool, interval: Duration) -> Result<Ebpf, EbpfError> {
        let mut backend = Ebpf::load(scope == Scope::All, rss_events, interval)?;
        backend.follow(&scope)?;
        Ok(backend)
    }

    /// Loads and attaches the kernel side, following nothing yet: every privilege, tracefs,
    /// BTF and verifier check happens here, so the recorder does it before it starts the
    /// command (a refusal then starts nothing). `all`: the kernel side follows every process;
    /// `interval`: how often the timer looks at the running processes.
    pub fn load(all: bool, rss_events: bool, interval: Duration) -> Result<Ebpf, EbpfError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let page = if page > 0 { page as u64 } else { 4096 };
        // Diagnostic knobs: programs left out, maps resized (see load.rs).
        let skip = std::env::var("MEMTOOLS_EBPF_SKIP").unwrap_or_default();
        let maps = std::env::var("MEMTOOLS_EBPF_MAPS").unwrap_or_default();
        // The timer looks at the running processes once per interval (at least once a second,
        // so a busy process's peak is never older than that).
        let tick = interval.min(SCAN_EVERY);
        let loaded = load::load(all, rss_events, tick, page as u32, &skip, &maps)?;
        Ok(Ebpf {
            bpf: Some(loaded.bpf),
            links: loaded.links,
            detaching: None,
            scan: loaded.scan,
            syscalls: loaded.syscalls,
            stats: loaded.stats,
            epoch_map: loaded.epoch,
            counters: loaded.counters,
            dirty: loaded.dirty,
            life: loaded.life,
            epoch: 1,
            procs: HashMap::new(),
            ended: HashMap::new(),
            initial: Vec::new(),
            ns_per_tick: 1_000_000_000 / if hz > 0 { hz as u64 } else { 100 },
            counter_slack: counter_slack(page),
            bufs: [
                Vec::with_capacity(512),
                Vec::with_capacity(2048),
                Vec::new(),
            ],
            fd_counting: counting_wanted().then(FdCounting::here),
            lost: Lost::default(),
            dirty_lost_seen: 0,
            last_drop_report: 0,
            last_drop_check: 0,
            reported: Lost::default(),
            life_lost_seen: 0,
            last_sweep: 0,
            last_scan: 0,
            sweep_all: false,
            pids: Vec::with_capacity(256),
            queued: Vec::with_capacity(256),
            follow_ups: Vec::with_capacity(64),
            gone: Vec::with_capacity(64),
            sites: None,
        })
    }

    /// Samples the user stacks where the scope's processes grow (`record --sites`): at page
    /// faults as `sampling` says, counted in buckets of `bucket_ns`.
    pub fn sample_sites(
        &mut self,
        scope: &Scope,
        sampling: sites::FaultSampling,
        bucket_ns: u64,
    ) -> Result<(), EbpfError> {
        let target = match scope {
            Scope::All => sites::SiteTarget::AllCpus,
            Scope::Tree { roots, .. } => sites::SiteTarget::Tree(roots.clone()),
        };
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let Some(bpf) = self.bpf.as_mut() else {
            // Stopped already: nothing more to sample.
            return Ok(());
        };
        let sampler = sites::SiteSampler::attach(bpf, target, sampling, page, bucket_ns)?;
        self.sites = Some(sites::SiteRecorder::new(sampler));
        Ok(())
    }

    /// Drains the growth sites counted so far (all of them with `last`).
    fn drain_sites(
        &mut self,
        offset: TimeNs,
        last: bool,
        sink: &mut dyn Sink,
    ) -> Result<(), RecordError> {
        let Some(recorder) = self.sites.as_mut() else {
            return Ok(());
        };
        let procs = &self.procs;
        recorder.drain(offset, last, |tgid| procs.get(&tgid).map(|p| p.key()), sink)
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

    /// Whether the mapping calls are counted.
    fn has_syscalls(&self) -> bool {
        !matches!(self.syscalls, SyscallHooks::None(_))
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

    /// Reads what the kernel side had to drop; says so on stderr at most once a second.
    fn read_drops(&mut self, now: TimeNs) {
        // Three reads are three system calls: a few times a second is enough.
        if now - self.last_drop_check < NS_PER_SEC / 4 {
            return;
        }
        self.last_drop_check = now;
        let read = |i: u32| self.counters.get(&i, 0).unwrap_or(0);
        self.lost = Lost {
            processes: read(counter::FOLLOW_FULL),
            events: read(counter::LIFE_LOST),
        };
        let dirty_lost = read(counter::DIRTY_LOST);
        if dirty_lost > self.dirty_lost_seen {
            // Some changed processes were not queued: read them all this time.
            self.dirty_lost_seen = dirty_lost;
            for p in self.procs.values_mut() {
                p.dirty = true;
            }
            self.sweep_all = true;
        }
        if self.lost != self.reported && now - self.last_drop_report >= NS_PER_SEC {
            eprintln!(
                "memtools: the kernel side's maps or queues were full: {} new processes not \
                 followed, {} fork/exec/exit events lost so far; some processes may be missing \
                 or end late",
                self.lost.processes, self.lost.events
            );
            self.reported = self.lost;
            self.last_drop_report = now;
        }
        self.life_lost_seen = self.lost.events;
    }

    /// Handles the process events queued since the last poll, in the order they happened.
    fn drain_life(
        &mut self,
        now: TimeNs,
        offset: i64,
        sink: &mut dyn Sink,
    ) -> Result<(), RecordError> {
        loop {
            let event = match self.life.next() {
                Some(item) if item.len() >= size_of::<LifeEvent>() => {
                    // SAFETY: LifeEvent is plain old data; the read is unaligned-safe.
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<LifeEvent>()) }
                }
                Some(_) => continue,
                None => break,
            };
            let time = (offset + event.time as i64).min(now);
            match event.kind {
                life::FORK => {
                    self.start(event.tgid, event.ppid, Origin::Event(&event), sink, offset)?;
                    if let Some(sites) = self.sites.as_ref() {
                        sites.inherit(event.tgid, event.ppid);
                    }
                }
                life::EXEC => {
                    // Unknown when its fork event was lost, or when it was there at the start.
                    if !self.start(event.tgid, event.ppid, Origin::Event(&event), sink, offset)? {
                        continue;
                    }
                    if let Some(p) = self.procs.get_mut(&event.tgid) {
                        p.dirty = true;
                        self.queued.push(event.tgid);
                        let name = comm_str(&event.comm);
                        let cmdline = read_cmdline(event.tgid);
                        sink.event(Event::Renamed {
                            key: p.key(),
                            name: &name,
                            cmdline: &cmdline,
                        })?;
                    }
                }
                life::EXIT => self.exited(&event, time, sink, offset)?,
                _ => {}
            }
        }
        Ok(())
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
        // Growth sites first, while the processes that just exited are still known (and at
        // the end, for those that exited since).
        self.drain_sites(offset, false, sink)?;
        // The processes to look at this time: started, exec'ed or changed.
        self.queued.clear();
        // Events first: a process there at the start that has exited since is recorded from
        // its exit event, with its last figures.
        self.drain_life(now, offset, sink)?;
        for (pid, ppid) in std::mem::take(&mut self.initial) {
            self.start(pid, ppid, Origin::Proc, sink, offset)?;
        }
        // Every followed process's counters, looked at now: the moved ones are queued.
        // Every followed process's counters, looked at once a second (the timer sees the
        // running ones each interval): the moved ones are queued.
        if now - self.last_scan >= SCAN_EVERY.as_nanos() as i64 - SCAN_SLACK_NS {
            self.last_scan = now;
            self.scan
                .run()
                .map_err(|e| RecordError::Proc(format!("eBPF task scan: {e}")))?;
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
        for i in 0..self.queued.len() {
            let pid = self.queued[i];
            match self.procs.get_mut(&pid) {
                Some(p) => p.dirty = true,
                // Followed by the kernel but its fork event was lost: /proc tells who it is.
                None => {
                    self.start(pid, 0, Origin::Proc, sink, offset)?;
                }
            }
        }
        self.read_drops(now);
        self.gone.clear();
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        if now - self.last_sweep >= SWEEP_NS || self.sweep_all {
            self.last_sweep = now;
            self.sweep_all = false;
            pids.extend(self.procs.keys().copied());
        } else {
            pids.extend_from_slice(&self.queued);
            pids.extend_from_slice(&self.follow_ups);
            pids.sort_unstable();
            pids.dedup();
        }
        self.follow_ups.clear();
        for &pid in &pids {
            // Gone (its files say so): its exit event is on its way, unless such events have
            // been lost, when the files are all there is to go by.
            if !self.sample(pid, now, offset, None, sink)? && self.life_lost_seen > 0 {
                self.gone.push(pid);
            }
            if self.procs.get(&pid).is_some_and(|p| p.follow_up) {
                self.follow_ups.push(pid);
            }
        }
        self.pids = pids;
        for pid in std::mem::take(&mut self.gone) {
            self.exit(pid, now, true, sink)?;
        }
        // The sites of processes that exited in this poll: the recording may end with it.
        self.drain_sites(offset, false, sink)?;
        Ok(())
    }

    fn followed(&self) -> usize {
        self.procs.len() + self.initial.len()
    }

    fn lost(&self) -> Lost {
        // Read now, not as last polled: the last poll of a short recording must not miss them.
        let read = |i: u32| self.counters.get(&i, 0).unwrap_or(0);
        Lost {
            processes: read(counter::FOLLOW_FULL),
            events: read(counter::LIFE_LOST),
        }
    }

    fn detail(&self) -> Option<String> {
        Some(self.syscalls.describe())
    }

    fn finish(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
        // Every count left, named: those of the processes still running at the end too.
        let offset = clock.now() - boottime_ns();
        self.drain_sites(offset, true, sink)
    }

    fn stop(&mut self) {
        let mut links = std::mem::take(&mut self.links);
        let bpf = self.bpf.take();
        // The programs are let go of after their links; the maps this backend holds go when
        // it is dropped.
        self.detaching = std::thread::Builder::new()
            .name("detach".into())
            .spawn(move || {
                links.detach();
                drop(bpf);
            })
            .ok();
    }
}

impl Drop for Ebpf {
    fn drop(&mut self) {
        // Nothing stays attached once the backend is gone.
        if let Some(detaching) = self.detaching.take() {
            let _ = detaching.join();
        }
        self.links.detach();
    }
}
