//! The followed processes on the recorder's side: how each history starts (from /proc for the
//! processes there at the start, from the kernel's events for the rest), is sampled, and ends.

use std::fs::File;

use memtools_common::{
    LifeEvent, MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBER_SWAP, MEMBERS, ProcStats,
};

use super::Ebpf;
use crate::record::fds::{FdCounting, FdDir};
use crate::record::procfs::{metrics_of, parse_stat, parse_status, read_cmdline, read_whole};
use crate::record::{Event, RecordError, Sink};
use memtools::model::{Metrics, NS_PER_SEC, ProcessInfo, ProcessKey, Sample, TimeNs};

/// An unchanged process is written again this often. Readers hold each value of an eBPF
/// session until the next (`store::as_recorded`), so this only bounds how stale a recording
/// cut short (a killed recorder) can look; each write costs the recorder, so it is rare.
pub(super) const KEEPALIVE_NS: i64 = 10 * NS_PER_SEC;
/// How often every followed process is looked at for its keepalive; in between, only the
/// ones the kernel queued are, so an idle process costs nothing per interval.
pub(super) const SWEEP_NS: i64 = NS_PER_SEC;

/// After a process's threads or descriptors moved, how long it is read at every poll (like
/// the /proc backend's descriptors): the kernel queues the first move; those that follow
/// within a second are read as they come, and an idle process is not read at all.
const COUNTS_ACTIVE_NS: i64 = NS_PER_SEC;

/// PF_KTHREAD in /proc/PID/stat's flags.
pub(super) const PF_KTHREAD: u64 = 0x0020_0000;

/// A followed process.
pub(super) struct Proc {
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
    pub(super) dirty: bool,
    /// Its memory moved at the last read: read again at the next poll. What the kernel
    /// queues is a call that maps memory, before the process touches it; reading on until
    /// the figures hold still records where the growth ends, which no hook sees.
    pub(super) follow_up: bool,
    /// Until when it is read at every poll because its threads or descriptors moved.
    counts_active_until: TimeNs,
}

impl Proc {
    /// Who it is.
    pub(super) fn key(&self) -> ProcessKey {
        self.key
    }
}

/// A process's stat (page faults, state), status (memory by kind, virtual size, threads) and
/// descriptor directory (its size is the count, see `record::fds`).
struct ProcFiles {
    stat: File,
    status: File,
    /// None when descriptors are not counted, or not ours to look at.
    fd_dir: Option<FdDir>,
}

impl ProcFiles {
    fn open(pid: u32, count_fds: bool) -> Option<ProcFiles> {
        Some(ProcFiles {
            stat: File::open(format!("/proc/{pid}/stat")).ok()?,
            status: File::open(format!("/proc/{pid}/status")).ok()?,
            fd_dir: if count_fds { FdDir::open(pid) } else { None },
        })
    }

    /// The process's figures now; None once it has exited (a zombie has no memory left).
    fn read(&self, bufs: &mut [Vec<u8>; 3], fd_counting: Option<FdCounting>) -> Option<Metrics> {
        let [stat_buf, status_buf, fd_buf] = bufs;
        let len = read_whole(&self.stat, stat_buf).ok()?;
        let stat = parse_stat(&stat_buf[..len]).filter(|s| s.state != b'Z' && s.state != b'X')?;
        let len = read_whole(&self.status, status_buf).ok()?;
        let status = parse_status(&status_buf[..len]);
        status.vm_size?;
        let mut metrics = metrics_of(&status, stat.page_faults);
        if let (Some(dir), Some(how)) = (&self.fd_dir, fd_counting) {
            metrics.fds = dir.count(how, fd_buf);
        }
        Some(metrics)
    }
}

/// A kernel comm (NUL-padded) as a string.
pub(super) fn comm_str(comm: &[u8; 16]) -> String {
    let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..n]).into_owned()
}

/// What /proc says of a process.
pub(super) struct ProcView {
    pub ppid: u32,
    pub start_ticks: u64,
    pub comm: String,
    pub kthread: bool,
    pub zombie: bool,
}

pub(super) fn read_proc(pid: u32) -> Option<ProcView> {
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

/// Whether a process's memory figures differ (its counters of calls aside).
fn memory_moved(now: &Metrics, before: &Metrics) -> bool {
    (
        now.rss_anon,
        now.rss_file,
        now.rss_shmem,
        now.swap,
        now.vm_size,
    ) != (
        before.rss_anon,
        before.rss_file,
        before.rss_shmem,
        before.swap,
        before.vm_size,
    )
}

/// Where a new history's identity comes from.
pub(super) enum Origin<'a> {
    /// /proc: a process there when recording started, or one whose fork event was lost.
    Proc,
    /// A process event, which carries the start time, parent and name.
    Event(&'a LifeEvent),
}

impl Ebpf {
    /// Starts following a process. Returns false when there is nothing to follow (gone from
    /// /proc with no event to tell of it, or a kernel thread).
    pub(super) fn start(
        &mut self,
        pid: u32,
        ppid: u32,
        origin: Origin<'_>,
        sink: &mut dyn Sink,
        clock_offset: i64,
    ) -> Result<bool, RecordError> {
        if self.procs.contains_key(&pid) {
            return Ok(true);
        }
        let (start_ticks, ppid, name, zombie) = match origin {
            Origin::Event(e) => (
                e.start_time / self.ns_per_tick,
                e.ppid,
                comm_str(&e.comm),
                false,
            ),
            Origin::Proc => match read_proc(pid) {
                Some(v) if !v.kthread => (
                    v.start_ticks,
                    if ppid != 0 { ppid } else { v.ppid },
                    v.comm,
                    v.zombie,
                ),
                // A kernel thread has no user memory; a process gone without an event to
                // tell of it has nothing to record.
                _ => {
                    let _ = self.stats.remove(&pid);
                    return Ok(false);
                }
            },
        };
        // The same key /proc gives (its start time is the kernel's, in clock ticks), so a
        // process is one history however it was first seen.
        let key = ProcessKey {
            pid,
            start_time: start_ticks * self.ns_per_tick,
        };
        if self.ended.get(&pid) == Some(&key.start_time) {
            // Its history is closed already (its exit was seen first).
            return Ok(false);
        }
        let info = ProcessInfo {
            key,
            ppid: Some(ppid),
            name,
            cmdline: read_cmdline(pid),
        };
        sink.event(Event::Started(&info))?;
        let proc = Proc {
            key,
            files: ProcFiles::open(pid, self.fd_counting.is_some()),
            last: Metrics::default(),
            last_time: 0,
            last_peak: 0,
            // Written at once, so a process is recorded from its first poll; one already gone
            // is written from its exit event, which carries its last counters.
            dirty: true,
            follow_up: false,
            counts_active_until: 0,
        };
        self.procs.insert(pid, proc);
        if let Some(sites) = self.sites.as_mut() {
            // Its samples are stored under this key even when it has exited by the drain.
            sites.know(pid, key);
        }
        self.queued.push(pid);
        if zombie {
            // Exited before it could be followed: one sample of what was seen, then the exit.
            let now = clock_offset + super::boottime_ns();
            self.sample(pid, now, clock_offset, None, sink)?;
            // No exit event will come: the kernel saw it exit before it was followed.
            self.exit(pid, now, true, sink)?;
        }
        Ok(true)
    }

    /// A followed process's last thread exited: the figures its exit event carries are its
    /// last sample (its peak recorded with it), then its history ends. A process never seen
    /// (its fork event was lost) is started from the event first, so it is not missed.
    pub(super) fn exited(
        &mut self,
        event: &LifeEvent,
        time: TimeNs,
        sink: &mut dyn Sink,
        clock_offset: i64,
    ) -> Result<(), RecordError> {
        let pid = event.tgid;
        if !self.start(pid, event.ppid, Origin::Event(event), sink, clock_offset)? {
            return Ok(());
        }
        if let Some(p) = self.procs.get_mut(&pid) {
            p.dirty = true;
            if event.peak_rss > 0 {
                sink.event(Event::PeakRss(p.key, event.peak_rss))?;
            }
        }
        self.sample(pid, time, clock_offset, Some(event), sink)?;
        self.exit(pid, time, false, sink)
    }

    /// Ends a process's history. The kernel forgets an exited process itself (its pid may be
    /// followed again by now, for a new process); `forget` is for one gone without an exit
    /// event (lost), whose map entries would otherwise stay.
    pub(super) fn exit(
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
            // Closed: a late look at it (its exit event after its files said it was gone, a
            // /proc listing that still has its zombie) is not a new process.
            if self.ended.len() >= 4096 {
                self.ended.clear();
            }
            self.ended.insert(pid, p.key.start_time);
        }
        Ok(())
    }

    /// Reads one process and writes a sample when it changed (or the keepalive is due),
    /// preceded by the peak since the last one when it was higher than both ends. At exit,
    /// `exit` is the event that carries the kernel's last figures (its files are gone).
    pub(super) fn sample(
        &mut self,
        pid: u32,
        now: TimeNs,
        clock_offset: i64,
        exit: Option<&LifeEvent>,
        sink: &mut dyn Sink,
    ) -> Result<bool, RecordError> {
        let (has_syscalls, slack) = (self.has_syscalls(), self.counter_slack);
        let fd_counting = self.fd_counting;
        let events_lost = self.life_lost_seen > 0;
        let Some(p) = self.procs.get_mut(&pid) else {
            return Ok(true);
        };
        let dirty = std::mem::take(&mut p.dirty);
        let follow_up = std::mem::take(&mut p.follow_up);
        // Swept every SWEEP_NS: written again after KEEPALIVE_NS at the latest.
        let keepalive = now - p.last_time >= KEEPALIVE_NS - SWEEP_NS;
        if !dirty && !follow_up && !keepalive {
            return Ok(true);
        }

        // The kernel's record: the peak, the mapping calls; not there until the process's
        // first counted event. An exit event brings its own.
        let stats = exit
            .map(|e| e.stats)
            .or_else(|| self.stats.get(&pid, 0).ok());
        // Stamped when read (an exit at its own time), like the /proc backend: the figures may
        // hold changes made after the poll began, and a sample must not predate its data (a
        // test harness's phase marker would otherwise get the growth that followed it).
        let now = if exit.is_some() {
            now
        } else {
            (clock_offset + super::boottime_ns()).max(now)
        };
        let kernel_rss = |rss: &[u64; MEMBERS], base: &Metrics| Metrics {
            rss_anon: Some(rss[MEMBER_ANON]),
            rss_file: Some(rss[MEMBER_FILE]),
            rss_shmem: Some(rss[MEMBER_SHMEM]),
            swap: Some(rss[MEMBER_SWAP]),
            ..*base
        };
        // The thread count the kernel side last saw, for a process /proc never gave one of.
        let kernel_threads = |s: &ProcStats, m: &mut Metrics| {
            if m.threads.is_none() && s.threads > 0 {
                m.threads = Some(u64::from(s.threads));
            }
        };
        let mut moved = false;
        let mut alive = true;
        let mut metrics = p.last;
        if let Some(e) = exit {
            // Gone: the kernel's last counters, taken as it exited.
            metrics = kernel_rss(&e.stats.rss, &p.last);
            if e.vm_size > 0 {
                metrics.vm_size = Some(e.vm_size);
            }
            // Its threads and descriptors as last read while it ran (a process tearing down
            // closes its descriptors; that is not a release), or the kernel's count.
            kernel_threads(&e.stats, &mut metrics);
        } else if dirty || follow_up || events_lost {
            // Changed (or, with exit events lost, possibly gone: a failed read says so).
            match p
                .files
                .as_ref()
                .and_then(|f| f.read(&mut self.bufs, fd_counting))
            {
                Some(m) => {
                    // Threads and descriptors change without any memory call the kernel
                    // queues: once they move, the process is read at every poll for a while.
                    if p.last_time != 0 && (m.threads, m.fds) != (p.last.threads, p.last.fds) {
                        p.counts_active_until = now + COUNTS_ACTIVE_NS;
                        moved = true;
                    }
                    moved |= memory_moved(&m, &p.last);
                    p.follow_up = moved || now < p.counts_active_until;
                    metrics = m;
                }
                None => {
                    alive = false;
                    if p.last_time == 0
                        && let Some(s) = &stats
                    {
                        // Gone before it could be read: what the kernel saw is all there is.
                        metrics = kernel_rss(&s.rss, &p.last);
                        kernel_threads(s, &mut metrics);
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
        // An exit's figures are its last sample, at its exit: the program's own last state
        // (the kernel side reads them before the kernel takes the memory down). A fall just
        // before the exit is the program tearing down, which the analysis knows to leave out
        // (`detect::exit_teardown`). Only figures that are all zero (a kernel older than 6.16
        // fires the exit tracepoint after the memory is gone) are kept for a process that has
        // no other sample.
        let exit_sample = exit.is_some() && (p.last_time == 0 || total(&metrics) > 0);
        if follow_up && !dirty && !keepalive && !moved {
            // Read again only to see whether it still moved: it did not, nothing to write.
            return Ok(alive);
        }
        if (alive && exit.is_none()) || p.last_time == 0 || exit_sample {
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
}
