//! `task:task_newtask`, `sched:sched_process_exec` and `sched:sched_process_exit`: the process
//! tree, names after exec and exits, so the recorder never scans /proc while recording.
//!
//! `task_newtask` rather than `sched_process_fork`: it carries the clone flags, which tell a
//! new process from a new thread (fork's record has thread ids only).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use memtools_common::{LifeEvent, ProcStats, counter, life};

use crate::rss::refresh_current;
use crate::shared::{
    EXIT_GROUP_DEAD_OFFSET, FOLLOW_ALL, LIFE, MM_TGID, STATS, count_drop, current_tgid, send_life,
    stats_of,
};

/// clone(2)'s CLONE_THREAD: the new task is a thread of the caller's process.
const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    // The record: pid_t pid @8, char comm[16] @12, u64 clone_flags @32.
    // SAFETY: offsets from the tracepoint's format.
    let (child, flags) = match unsafe { (ctx.read_at::<i32>(8), ctx.read_at::<u64>(32)) } {
        (Ok(c), Ok(f)) => (c as u32, f),
        _ => return 0,
    };
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    let parent = current_tgid();
    if FOLLOW_ALL.load() == 0 && stats_of(parent).is_none() {
        return 0;
    }
    // Fresh counters: any left by an earlier process with this pid (whose exit was missed)
    // are replaced.
    if STATS.insert(child, ProcStats::default(), 0).is_err() {
        count_drop(counter::FOLLOW_FULL);
        warn!(
            &ctx,
            "memtools: counters map full, pid {} not followed", child
        );
        return 0;
    }
    send_life(
        &ctx,
        &LifeEvent {
            kind: life::FORK,
            tgid: child,
            ppid: parent,
            _pad: 0,
            // SAFETY: no preconditions.
            time: unsafe { bpf_ktime_get_boot_ns() },
            comm: ctx.command().unwrap_or_default(),
            stats: ProcStats::default(),
        },
    );
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let tgid = current_tgid();
    if stats_of(tgid).is_none() {
        return 0;
    }
    send_life(
        &ctx,
        &LifeEvent {
            kind: life::EXEC,
            tgid,
            ppid: 0,
            _pad: 0,
            // SAFETY: no preconditions.
            time: unsafe { bpf_ktime_get_boot_ns() },
            comm: ctx.command().unwrap_or_default(),
            stats: ProcStats::default(),
        },
    );
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    let offset = EXIT_GROUP_DEAD_OFFSET.load();
    let last_thread = if offset == 0 {
        id as u32 == tgid
    } else {
        // SAFETY: an offset the recorder read from the tracepoint's format.
        unsafe { ctx.read_at::<u8>(offset as usize) }.is_ok_and(|b| b != 0)
    };
    if !last_thread {
        return 0;
    }
    // SAFETY: `s` points at a live map value.
    let mm = unsafe { (*s).mm };
    if mm != 0 {
        // Its address will be another process's mm soon.
        let _ = MM_TGID.remove(&mm);
    }
    // The counters now, taken into the record the exit event carries.
    refresh_current(s);
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
        (*e).ppid = 0;
        (*e)._pad = 0;
        (*e).time = bpf_ktime_get_boot_ns();
        (*e).comm = ctx.command().unwrap_or_default();
        (*e).stats = *s;
    }
    event.submit(0);
    // The memory teardown that follows is not recorded: the process is no longer followed.
    let _ = STATS.remove(tgid);
    0
}
