//! The fallback where fentry cannot load: `syscalls:sys_{enter,exit}_{mmap,munmap,brk}` and
//! `sys_enter_{madvise,mremap}`. The length is known at entry and success at exit, so entries
//! wait in `PENDING`, keyed by thread. While any of these is attached, every system call on the
//! machine takes the kernel's traced path (see mod.rs). Growth sites are counted at exit, when
//! the call is known to have grown the process; the stack is walked from the task's saved
//! user registers.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

use memtools_common::site_cause;

use super::{count_brk, count_mmap, count_munmap, failed, grows, user_regs};
use crate::rss::observe_current;
use crate::shared::{current_tgid, stats_of};
use crate::sites::{calls_on, record_call};

/// Length of the mmap or munmap call each thread is in, with [`GROWS`] set for an mmap of new
/// memory while call sites are sampled.
#[map]
static PENDING: HashMap<u64, u64> = HashMap::with_max_entries(16_384, 0);

/// The bit of a `PENDING` length that marks an mmap of new memory (no length reaches it).
const GROWS: u64 = 1 << 63;

/// Remembers the length argument (@24 in both mmap's and munmap's record) of a followed
/// thread; for mmap (`is_mmap`), whether it maps new memory (prot @32, flags @40).
#[inline(always)]
fn enter(ctx: &TracePointContext, is_mmap: bool) {
    let id = bpf_get_current_pid_tgid();
    let tgid = (id >> 32) as u32;
    let Some(s) = stats_of(tgid) else {
        return;
    };
    observe_current(tgid, s);
    // SAFETY: offsets from the tracepoint's format.
    if let Ok(len) = unsafe { ctx.read_at::<u64>(24) } {
        let mut pending = len & !GROWS;
        if is_mmap && calls_on() {
            // SAFETY: as above.
            let (prot, flags) = unsafe { (ctx.read_at::<u64>(32), ctx.read_at::<u64>(40)) };
            if let (Ok(prot), Ok(flags)) = (prot, flags)
                && grows(prot, flags)
            {
                pending |= GROWS;
            }
        }
        let _ = PENDING.insert(id, pending, 0);
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
    enter(&ctx, true);
    0
}

#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    enter(&ctx, false);
    0
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    if let Some((tgid, pending, ret)) = exit(&ctx)
        && let Some(s) = stats_of(tgid)
    {
        let len = pending & !GROWS;
        count_mmap(tgid, s, len, ret);
        if pending & GROWS != 0 && !failed(ret) {
            record_call(&ctx, tgid, site_cause::MMAP, len, user_regs());
        }
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
        let grew = count_brk(tgid, s, ret);
        if grew != 0 && calls_on() {
            record_call(&ctx, tgid, site_cause::BRK, grew, user_regs());
        }
    }
    0
}
