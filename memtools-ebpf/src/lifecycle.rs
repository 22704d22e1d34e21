//! `task_newtask`, `sched_process_exec` and `sched_process_exit` (BTF tracepoints: no tracefs,
//! no trace record built, and their cost falls on forks, execs and exits only): the process
//! tree, names after exec and exits, so the recorder never scans /proc while recording.
//!
//! Each event carries what the recorder needs to make a history of it alone (the process's
//! start time, parent and name; at exit, its counters, peak and size), so a process that lived
//! a millisecond, gone before the recorder could read anything of it, is recorded all the same.
//!
//! `task_newtask` rather than `sched_process_fork`: it carries the clone flags, which tell a
//! new process from a new thread. A new thread, and a thread's exit, queue their process as
//! changed (its thread count moved: counts.rs).

use aya_ebpf::{
    EbpfContext, helpers::bpf_ktime_get_boot_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use memtools_common::{LifeEvent, ProcStats, counter, life};

use crate::counts::thread_moved;
use crate::kernel::{
    bytes, current_task, is_last_thread, peak_pages, task_mm, task_parent_tgid, task_start,
    task_tgid, task_threads, total_vm,
};
use crate::rss::refresh;
use crate::shared::{FOLLOW_ALL, LIFE, MM_TGID, STATS, count_drop, current_tgid, stats_of};
use crate::syscalls::account_brk;

/// clone(2)'s CLONE_THREAD: the new task is a thread of the caller's process.
const CLONE_THREAD: u64 = 0x0001_0000;

/// Sends a FORK or EXEC event (EXIT fills its own, see below).
#[inline(always)]
fn send<C: EbpfContext>(ctx: &C, kind: u32, tgid: u32, ppid: u32, start_time: u64) {
    let Some(mut event) = LIFE.reserve::<LifeEvent>(0) else {
        // Counted; the recorder reports it and recovers the process from its other events.
        count_drop(counter::LIFE_LOST);
        return;
    };
    let e = event.as_mut_ptr();
    // SAFETY: `e` is the reserved record, written whole before it is submitted.
    unsafe {
        (*e).kind = kind;
        (*e).tgid = tgid;
        (*e).ppid = ppid;
        (*e)._pad = 0;
        (*e).time = bpf_ktime_get_boot_ns();
        (*e).start_time = start_time;
        (*e).comm = ctx.command().unwrap_or_default();
        (*e).peak_rss = 0;
        (*e).vm_size = 0;
        (*e).stats = ProcStats::default();
    }
    event.submit(0);
}

/// A new task: a new process forked by a followed one (or any, with `FOLLOW_ALL`) is followed.
#[btf_tracepoint(function = "task_newtask")]
pub fn task_newtask(ctx: BtfTracePointContext) -> i32 {
    let task: *const u8 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    if flags & CLONE_THREAD != 0 {
        // A thread of a followed process: its count moved.
        let tgid = current_tgid();
        if let Some(s) = stats_of(tgid) {
            thread_moved(tgid, s);
        }
        return 0;
    }
    let parent = current_tgid();
    if FOLLOW_ALL.load() == 0 && stats_of(parent).is_none() {
        return 0;
    }
    if task_mm(task).is_null() {
        // A kernel thread (FOLLOW_ALL sees kthreadd's children): no user memory.
        return 0;
    }
    let child = task_tgid(task);
    // Fresh counters: any left by an earlier process with this pid (whose exit was missed)
    // are replaced.
    if STATS.insert(child, ProcStats::default(), 0).is_err() {
        // Counted; the recorder stores it with the session and says so.
        count_drop(counter::FOLLOW_FULL);
        return 0;
    }
    send(&ctx, life::FORK, child, parent, task_start(task));
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let tgid = current_tgid();
    if stats_of(tgid).is_none() {
        return 0;
    }
    let task = current_task();
    send(
        &ctx,
        life::EXEC,
        tgid,
        task_parent_tgid(task),
        task_start(task),
    );
    crate::sites::note_exec(tgid);
    0
}

/// The last thread of a followed process exits: its last figures go with the event, and it is
/// no longer followed.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let tgid = current_tgid();
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    let task = current_task();
    if !is_last_thread(task) {
        // One thread of several ended: its count moved.
        thread_moved(tgid, s);
        return 0;
    }
    // SAFETY: `s` points at a live map value.
    let mm_seen = unsafe { (*s).mm };
    if mm_seen != 0 {
        // Its address will be another process's mm soon.
        let _ = MM_TGID.remove(&mm_seen);
    }
    let mm = task_mm(task);
    // The counters now, taken into the record the exit event carries.
    refresh(s, mm);
    account_brk(s, mm);
    // Its threads as it ran (`nr_threads` still counts the one exiting); `next_fd` as last
    // looked at, the table may be gone already.
    // SAFETY: `s` points at a live map value.
    unsafe { (*s).threads = task_threads(task) };
    let Some(mut event) = LIFE.reserve::<LifeEvent>(0) else {
        count_drop(counter::LIFE_LOST);
        let _ = STATS.remove(tgid);
        return 0;
    };
    let e = event.as_mut_ptr();
    // SAFETY: `e` is the reserved record, `s` a live map value; written field by field so the
    // counters are copied straight from the map (the BPF stack is too small for two copies).
    unsafe {
        (*e).kind = life::EXIT;
        (*e).tgid = tgid;
        (*e).ppid = task_parent_tgid(task);
        (*e)._pad = 0;
        (*e).time = bpf_ktime_get_boot_ns();
        (*e).start_time = task_start(task);
        (*e).comm = ctx.command().unwrap_or_default();
        (*e).peak_rss = bytes(peak_pages(task, mm));
        (*e).vm_size = bytes(total_vm(mm));
        (*e).stats = *s;
    }
    event.submit(0);
    // The memory teardown that follows is not recorded: the process is no longer followed.
    let _ = STATS.remove(tgid);
    0
}
