//! The fallback where fentry cannot load: `syscalls:sys_{enter,exit}_{mmap,munmap,brk}` and
//! `sys_enter_{madvise,mremap}`. The length is known at entry and success at exit, so entries
//! wait in `PENDING`, keyed by thread. While any of these is attached, every system call on the
//! machine takes the kernel's traced path (see mod.rs).

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

use super::{count_brk, count_mmap, count_munmap};
use crate::rss::observe_current;
use crate::shared::{current_tgid, stats_of};

/// Length of the mmap or munmap call each thread is in.
#[map]
static PENDING: HashMap<u64, u64> = HashMap::with_max_entries(16_384, 0);

/// Remembers the length argument (@24 in both mmap's and munmap's record) of a followed thread.
#[inline(always)]
fn enter(ctx: &TracePointContext) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let Some(s) = stats_of(tgid) else {
        return;
    };
    observe_current(tgid, s);
    // SAFETY: offset from the tracepoint's format.
    if let Ok(len) = unsafe { ctx.read_at::<u64>(24) } {
        let _ = PENDING.insert(id, len, 0);
    }
}

/// The pending length and the call's return value (@16 in every sys_exit record).
#[inline(always)]
fn exit(ctx: &TracePointContext) -> Option<(u32, u64, i64)> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: read by value.
    let len = unsafe { PENDING.get(id) }.copied()?;
    let _ = PENDING.remove(id);
    // SAFETY: offset from the tracepoint's format.
    let ret = unsafe { ctx.read_at::<i64>(16) }.ok()?;
    Some(((id >> 32) as u32, len, ret))
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    enter(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    if let Some((tgid, len, ret)) = exit(&ctx)
        && let Some(s) = stats_of(tgid)
    {
        count_mmap(tgid, s, len, ret);
    }
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    if let Some((tgid, len, ret)) = exit(&ctx)
        && let Some(s) = stats_of(tgid)
    {
        count_munmap(tgid, s, len, ret);
    }
    0
}

/// Before a call that may give memory back: the counters as they stand.
#[inline(always)]
fn before_release() {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        observe_current(tgid, s);
    }
}

#[tracepoint]
pub fn sys_enter_brk(_ctx: TracePointContext) -> u32 {
    before_release();
    0
}

#[tracepoint]
pub fn sys_enter_madvise(_ctx: TracePointContext) -> u32 {
    before_release();
    0
}

#[tracepoint]
pub fn sys_enter_mremap(_ctx: TracePointContext) -> u32 {
    before_release();
    0
}

#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let tgid = current_tgid();
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    // SAFETY: offset from the tracepoint's format.
    if let Ok(ret) = unsafe { ctx.read_at::<u64>(16) } {
        count_brk(tgid, s, ret);
    }
    0
}
