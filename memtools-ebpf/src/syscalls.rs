//! `syscalls:sys_{enter,exit}_{mmap,munmap}`, `sys_{enter,exit}_brk` and `sys_enter_madvise`:
//! mapping calls and the bytes they mapped and unmapped. The length is known at entry and
//! success at exit, so entries wait in `PENDING`, keyed by thread.
//!
//! Each entry also looks at the process's resident counters first (see rss.rs): these calls
//! are how a process gives memory back, so what it holds just before is where a peak ends.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};

use crate::rss::observe_current;
use crate::shared::{atomic_add as add, current_tgid, epoch, mark_dirty, stats_of};

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
    observe_current(ctx, tgid, s);
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

/// A syscall's return value is an error when it is in -4095..=-1.
#[inline(always)]
fn failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
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
        // SAFETY: `s` points at a live map value.
        unsafe {
            add(&raw mut (*s).mmap_calls, 1);
            if !failed(ret) {
                add(&raw mut (*s).mapped_bytes, len);
            }
        }
        mark_dirty(&ctx, tgid, s, epoch());
    }
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    if let Some((tgid, len, ret)) = exit(&ctx)
        && let Some(s) = stats_of(tgid)
    {
        // SAFETY: `s` points at a live map value.
        unsafe {
            add(&raw mut (*s).munmap_calls, 1);
            if ret == 0 {
                add(&raw mut (*s).unmapped_bytes, len);
            }
        }
        mark_dirty(&ctx, tgid, s, epoch());
    }
    0
}

/// Before a brk call (which may shrink the heap) and madvise (MADV_DONTNEED and the like give
/// pages back): the counters as they stand.
#[inline(always)]
fn before_release(ctx: &TracePointContext) {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        observe_current(ctx, tgid, s);
    }
}

#[tracepoint]
pub fn sys_enter_brk(ctx: TracePointContext) -> u32 {
    before_release(&ctx);
    0
}

#[tracepoint]
pub fn sys_enter_madvise(ctx: TracePointContext) -> u32 {
    before_release(&ctx);
    0
}

/// brk returns the new break (the old one when it fails): the difference with the last one
/// seen is what was mapped or unmapped.
#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    // SAFETY: offset from the tracepoint's format.
    let Ok(ret) = (unsafe { ctx.read_at::<u64>(16) }) else {
        return 0;
    };
    // SAFETY: `s` points at a live map value.
    unsafe {
        add(&raw mut (*s).brk_calls, 1);
        let last = (*s).last_brk;
        if last != 0 && ret > last {
            add(&raw mut (*s).mapped_bytes, ret - last);
        } else if last != 0 && ret < last {
            add(&raw mut (*s).unmapped_bytes, last - ret);
        }
        (*s).last_brk = ret;
    }
    mark_dirty(&ctx, tgid, s, epoch());
    0
}
