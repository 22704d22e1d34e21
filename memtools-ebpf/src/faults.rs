//! `exceptions:page_fault_user`: user page faults per process.
//!
//! A raw tracepoint: it fires on every fault, and needs nothing from the event but the
//! current task, so it skips building the trace record that a classic tracepoint pays for
//! (and needs no tracefs).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::shared::{atomic_add, current_tgid, epoch, mark_dirty, stats_of};

#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn page_fault_user(ctx: RawTracePointContext) -> i32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        // SAFETY: `s` points at a live map value.
        atomic_add(unsafe { &raw mut (*s).faults }, 1);
        mark_dirty(&ctx, tgid, s, epoch());
    }
    0
}
