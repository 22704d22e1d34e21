//! Resident memory (file, anon, swap, shmem) of followed processes, read straight from the
//! kernel's own counters in their mm (`rss_stat[member].count`), at offsets the recorder
//! resolves from the kernel's BTF and passes in as read-only globals (the verifier treats
//! them as constants, so the loads are plain loads). Those are the kernel's running figures:
//! exact but for what each CPU has not folded in yet (under `percpu_counter_batch` pages).
//!
//! When they are looked at decides the cost. Any program on `kmem:rss_stat`, which fires on
//! nearly every page fault, costs a fault-heavy workload 3 % even when it returns at once
//! (measured: the tracepoint's dispatch alone), so by default they are looked at when a
//! thread of a followed process is switched out (`sched_switch`: it cannot change its own
//! memory while off the CPU) or found running by a 10 Hz timer on its CPU, just before it releases memory (munmap, madvise, brk: the
//! moments a peak can end, so a spike shorter than the interval still has its top
//! recorded), and at exit. `--rss-events` adds the `rss_stat` hook below for the peak of
//! every change, for those who will pay for it.
//!
//! A process whose counters moved is queued as changed once per drain epoch; the recorder
//! reads its exact figures from /proc.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_task_btf, bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, map, perf_event},
    maps::PerCpuArray,
    programs::{BtfTracePointContext, PerfEventContext},
};
use memtools_common::{MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBER_SWAP};

use aya_ebpf::EbpfContext;
use memtools_common::ProcStats;

use crate::shared::{MM_TGID, current_tgid, epoch, mark_dirty, stats_of};

/// Offset of `rss_stat[0].count` in `struct mm_struct` (from BTF).
#[unsafe(no_mangle)]
pub static RSS_COUNT_OFFSET: Global<u32> = Global::new(0);

/// `sizeof(struct percpu_counter)`: the distance between two members' counters (from BTF).
#[unsafe(no_mangle)]
pub static RSS_COUNTER_SIZE: Global<u32> = Global::new(0);

/// Offset of `mm` in `struct task_struct` (from BTF).
#[unsafe(no_mangle)]
pub static TASK_MM_OFFSET: Global<u32> = Global::new(0);

/// The page size in bytes (the counters count pages).
#[unsafe(no_mangle)]
pub static PAGE_SIZE: Global<u32> = Global::new(4096);

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

/// The counter of `member` in the mm at `mm` (pages). `member` must be a constant, so the
/// verifier sees a constant offset into `struct mm_struct`.
#[inline(always)]
fn counter(mm: *const u8, member: usize) -> i64 {
    let offset = RSS_COUNT_OFFSET.load() as usize + member * RSS_COUNTER_SIZE.load() as usize;
    // SAFETY: `mm` is the tracepoint's `struct mm_struct *` (a BTF pointer, whose loads the
    // kernel checks against the type and guards against faults); the offset is a counter's.
    unsafe { core::ptr::read_volatile(mm.wrapping_add(offset).cast::<i64>()) }
}

/// File + anon + shmem pages.
#[inline(always)]
fn resident(mm: *const u8) -> i64 {
    counter(mm, MEMBER_FILE) + counter(mm, MEMBER_ANON) + counter(mm, MEMBER_SHMEM)
}

/// The mm of a task (a BTF pointer to it), null for kernel threads.
#[inline(always)]
fn task_mm(task: *const u8) -> *const u8 {
    let offset = TASK_MM_OFFSET.load() as usize;
    // SAFETY: `task` is a BTF `struct task_struct *`; the offset is its `mm` field.
    unsafe { core::ptr::read_volatile(task.wrapping_add(offset).cast::<*const u8>()) }
}

/// Looks at a followed process's counters in `mm`: queued as changed when they moved (or
/// `always_queue`: a change may sit in a CPU's unfolded part), and the peak taken when this
/// is one.
#[inline(always)]
fn observe<C: EbpfContext>(
    ctx: &C,
    tgid: u32,
    s: *mut ProcStats,
    mm: *const u8,
    always_queue: bool,
) {
    if mm.is_null() {
        return;
    }
    let page = u64::from(PAGE_SIZE.load());
    let bytes = |m: usize| counter(mm, m).max(0) as u64 * page;
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
    mark_dirty(ctx, tgid, s, epoch);
}

/// The current task's process, when followed: looked at now (before it releases memory).
#[inline(always)]
pub fn observe_current<C: EbpfContext>(ctx: &C, tgid: u32, s: *mut ProcStats) {
    // SAFETY: no preconditions; the current task is never null in a tracepoint.
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    observe(ctx, tgid, s, task_mm(task), false);
}

/// A thread leaves the CPU: while it is off it cannot change its process's memory, so what
/// it did is in the counters now.
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    // The current task is `prev`, the one leaving.
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        let prev: *const u8 = ctx.arg(1);
        observe(&ctx, tgid, s, task_mm(prev), false);
    }
    0
}

/// A timer on each CPU, ten times a second: the thread running there, when its process is
/// followed, is looked at, so one that keeps its CPU (never switched out) still has its
/// changes seen within a tenth of a second.
#[perf_event]
pub fn cpu_tick(ctx: PerfEventContext) -> u32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        observe_current(&ctx, tgid, s);
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
                observe(&ctx, (*seen).tgid, s, mm, false);
            }
            return 0;
        }
    }
    first_in_epoch(&ctx, seen, mm, current, epoch);
    0
}

/// The first event of an (mm, task) on this CPU this epoch: whose mm it is, whether that
/// process is followed, and if so its counters and its place in the changed queue.
#[inline(always)]
fn first_in_epoch(
    ctx: &BtfTracePointContext,
    seen: *mut Seen,
    mm: *const u8,
    current: u32,
    epoch: u32,
) {
    // SAFETY: no preconditions; the current task is never null in a tracepoint.
    let own = task_mm(unsafe { bpf_get_current_task_btf() } as *const u8) == mm;
    let tgid = if own {
        current
    } else {
        // Raised on another process's behalf (reclaim, khugepaged): whose mm is it?
        // SAFETY: read by value.
        unsafe { MM_TGID.get(&(mm as u64)) }.copied().unwrap_or(0)
    };
    let s = if tgid != 0 { stats_of(tgid) } else { None };
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
    if own && unsafe { (*s).mm } != mm as u64 {
        // Remember whose mm this is, for events raised by other tasks.
        let _ = MM_TGID.insert(&(mm as u64), &tgid, 0);
        // SAFETY: as above.
        unsafe { (*s).mm = mm as u64 };
    }
    // Queued even when the folded counters did not move: this event is a change.
    observe(ctx, tgid, s, mm, true);
}

/// The counters of the current task's mm into `s` (at exit: the mm is still attached when
/// the exit tracepoint fires on kernels that have `group_dead` in it; otherwise `s` keeps
/// the last figures).
#[inline(always)]
pub fn refresh_current(s: *mut ProcStats) {
    // SAFETY: no preconditions; the current task is never null in a tracepoint.
    let mm = task_mm(unsafe { bpf_get_current_task_btf() } as *const u8);
    if mm.is_null() {
        return;
    }
    let page = u64::from(PAGE_SIZE.load());
    let bytes = |m: usize| counter(mm, m).max(0) as u64 * page;
    // SAFETY: `s` points at a live map value.
    unsafe {
        (*s).rss[MEMBER_FILE] = bytes(MEMBER_FILE);
        (*s).rss[MEMBER_ANON] = bytes(MEMBER_ANON);
        (*s).rss[MEMBER_SWAP] = bytes(MEMBER_SWAP);
        (*s).rss[MEMBER_SHMEM] = bytes(MEMBER_SHMEM);
    }
}
