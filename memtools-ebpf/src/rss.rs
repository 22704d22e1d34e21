//! Resident memory (file, anon, swap, shmem) of followed processes, read straight from the
//! kernel's own counters in their mm (`rss_stat[member].count`, see kernel.rs). Those are the
//! kernel's running figures: exact but for what each CPU has not folded in yet (under
//! `percpu_counter_batch` pages).
//!
//! When they are looked at decides the cost, and nothing here runs on a path every process
//! on the machine takes. Any program on `kmem:rss_stat`, which fires on nearly every page
//! fault, costs a fault-heavy workload 3 % even when it returns at once (the tracepoint's
//! dispatch alone), and one on `sched_switch` taxes every context switch of the machine; so
//! by default the counters are looked at by a timer on each CPU, once per interval, for the
//! process running there (one that runs changes its memory; one that sleeps does not), by the
//! recorder's scan of the machine's tasks once a second (scan.rs: for processes that run in
//! bursts too short for the timer; the cost is the recorder's, not the workload's), just
//! before a process releases memory (munmap, madvise, brk, mremap: the moments a peak can
//! end, so a spike shorter than the interval still has its top recorded), and at exit.
//! `--rss-events` adds the `rss_stat` hook below for the peak of every change, for those who
//! will pay for it.
//!
//! A process whose counters moved is queued as changed once per drain epoch; the recorder
//! reads its exact figures from /proc.

use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns,
    macros::{btf_tracepoint, map, perf_event},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, PerfEventContext},
};
use memtools_common::{MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBER_SWAP, ProcStats};

use crate::counts::observe_counts;
use crate::kernel::{bytes, counter, current_task, resident, task_mm};
use crate::shared::{MM_TGID, current_tgid, epoch, mark_dirty, stats_of};

/// What this CPU saw last.
#[repr(C)]
pub struct Seen {
    /// The mm of the last event.
    mm: u64,
    /// The tgid of the task that raised it (an mm's address is reused once it is freed; the
    /// task tells a new process from the one that had it).
    current: u32,
    /// The drain epoch it was seen in.
    epoch: u32,
    /// The followed process owning the mm, 0 when it is not followed.
    tgid: u32,
    _pad: u32,
    /// The highest resident total (file + anon + shmem, in pages) seen on this CPU this epoch.
    peak: i64,
}

#[map]
static SEEN: PerCpuArray<Seen> = PerCpuArray::with_max_entries(1, 0);

/// Looks at a followed process's counters in `mm`: queued as changed when they moved (or
/// `always_queue`: a change may sit in a CPU's unfolded part), and the peak taken when this
/// is one.
#[inline(always)]
pub fn observe(tgid: u32, s: *mut ProcStats, mm: *const u8, always_queue: bool) {
    if mm.is_null() {
        return;
    }
    let bytes = |m: usize| bytes(counter(mm, m).max(0) as u64);
    let (file, anon, swap, shmem) = (
        bytes(MEMBER_FILE),
        bytes(MEMBER_ANON),
        bytes(MEMBER_SWAP),
        bytes(MEMBER_SHMEM),
    );
    let epoch = epoch();
    // SAFETY: `s` points at a live map value.
    unsafe {
        let r = &raw mut (*s).rss;
        let moved = always_queue
            || (*r)[MEMBER_FILE] != file
            || (*r)[MEMBER_ANON] != anon
            || (*r)[MEMBER_SWAP] != swap
            || (*r)[MEMBER_SHMEM] != shmem;
        if !moved && (*s).peak_epoch == epoch {
            return;
        }
        (*r)[MEMBER_FILE] = file;
        (*r)[MEMBER_ANON] = anon;
        (*r)[MEMBER_SWAP] = swap;
        (*r)[MEMBER_SHMEM] = shmem;
        let total = file + anon + shmem;
        if (*s).peak_epoch != epoch || total > (*s).peak_total {
            (*s).peak_epoch = epoch;
            (*s).peak_total = total;
            (*s).peak_rss = *r;
            (*s).peak_time = bpf_ktime_get_boot_ns();
        }
        if !moved {
            return;
        }
    }
    mark_dirty(tgid, s, epoch);
}

/// The current task's process, when followed: looked at now (before it releases memory).
#[inline(always)]
pub fn observe_current(tgid: u32, s: *mut ProcStats) {
    observe(tgid, s, task_mm(current_task()), false);
}

/// A timer on each CPU, once per interval: the thread running there, when its process is
/// followed, is looked at, so one that keeps its CPU has its changes seen each interval.
#[perf_event]
pub fn cpu_tick(_ctx: PerfEventContext) -> u32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        observe_current(tgid, s);
        observe_counts(tgid, s, current_task());
    }
    0
}

/// With `--rss-events`: every change, for peaks between switches too (see the module's
/// notes on its cost).
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat(ctx: BtfTracePointContext) -> i32 {
    let mm: *const u8 = ctx.arg(0);
    let Some(seen) = SEEN.get_ptr_mut(0) else {
        return 0;
    };
    let current = current_tgid();
    let epoch = epoch();
    // SAFETY: `seen` is this CPU's slot; the program is not reentered on one CPU.
    unsafe {
        if (*seen).mm == mm as u64 && (*seen).current == current && (*seen).epoch == epoch {
            if (*seen).tgid == 0 {
                return 0;
            }
            let total = resident(mm);
            if total <= (*seen).peak {
                return 0;
            }
            (*seen).peak = total;
            if let Some(s) = stats_of((*seen).tgid) {
                observe((*seen).tgid, s, mm, false);
            }
            return 0;
        }
    }
    first_in_epoch(seen, mm, current, epoch);
    0
}

/// The first event of an (mm, task) on this CPU this epoch: whose mm it is, whether that
/// process is followed, and if so its counters and its place in the changed queue.
#[inline(always)]
fn first_in_epoch(seen: *mut Seen, mm: *const u8, current: u32, epoch: u32) {
    let own = task_mm(current_task()) == mm;
    let tgid = if own {
        current
    } else {
        // Raised on another process's behalf (reclaim, khugepaged): whose mm is it?
        // SAFETY: read by value.
        unsafe { MM_TGID.get(&(mm as u64)) }.copied().unwrap_or(0)
    };
    let s = if tgid != 0 { stats_of(tgid) } else { None };
    // An entry of `MM_TGID` may outlive its mm (a process that exec'd let go of the mm it
    // had, and the kernel gives the address to the next process it creates, whose counters
    // its parent raises while forking it): another task's event counts only for the mm the
    // process has now.
    // SAFETY: `s` points at a live map value.
    let s = s.filter(|&s| own || unsafe { (*s).mm } == mm as u64);
    let total = resident(mm);
    // SAFETY: `seen` is this CPU's slot.
    unsafe {
        (*seen).mm = mm as u64;
        (*seen).current = current;
        (*seen).epoch = epoch;
        (*seen).tgid = if s.is_some() { tgid } else { 0 };
        (*seen).peak = total;
    }
    let Some(s) = s else {
        return;
    };
    // SAFETY: `s` points at a live map value.
    let mm_before = unsafe { (*s).mm };
    if own && mm_before != mm as u64 {
        // Remember whose mm this is, for events raised by other tasks, and forget the one it
        // had before (exec), whose address the kernel will give to another process.
        if mm_before != 0 {
            let _ = MM_TGID.remove(&mm_before);
        }
        let _ = MM_TGID.insert(&(mm as u64), &tgid, 0);
        // SAFETY: as above.
        unsafe { (*s).mm = mm as u64 };
    }
    // Queued even when the folded counters did not move: this event is a change.
    observe(tgid, s, mm, true);
}

/// The counters of the mm at `mm` into `s` (at exit: the exit tracepoint fires before the
/// task lets go of its mm on Linux 6.16 and later; on older kernels `mm` is null by then and
/// `s` keeps the last figures seen).
#[inline(always)]
pub fn refresh(s: *mut ProcStats, mm: *const u8) {
    if mm.is_null() {
        return;
    }
    let bytes = |m: usize| bytes(counter(mm, m).max(0) as u64);
    // SAFETY: `s` points at a live map value.
    unsafe {
        (*s).rss[MEMBER_FILE] = bytes(MEMBER_FILE);
        (*s).rss[MEMBER_ANON] = bytes(MEMBER_ANON);
        (*s).rss[MEMBER_SWAP] = bytes(MEMBER_SWAP);
        (*s).rss[MEMBER_SHMEM] = bytes(MEMBER_SHMEM);
    }
}
