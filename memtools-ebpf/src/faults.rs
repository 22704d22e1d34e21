//! `exceptions:page_fault_user`: user page faults per process.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::shared::{atomic_add, current_tgid, epoch, mark_dirty, stats_of};

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        // SAFETY: `s` points at a live map value.
        atomic_add(unsafe { &raw mut (*s).faults }, 1);
        mark_dirty(&ctx, tgid, s, epoch());
    }
    0
}
