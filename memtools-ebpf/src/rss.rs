//! `kmem:rss_stat`: the resident (file, anon, shmem) and swap counters of each process, exact
//! because the event carries the whole counter, and their peak within the drain epoch.

use aya_ebpf::{helpers::bpf_ktime_get_boot_ns, macros::tracepoint, programs::TracePointContext};
use memtools_common::{MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM, MEMBERS};

use crate::shared::{MM_TGID, current_tgid, epoch, mark_dirty, stats_of};

#[tracepoint]
pub fn rss_stat(ctx: TracePointContext) -> u32 {
    let _ = try_rss_stat(&ctx);
    0
}

fn try_rss_stat(ctx: &TracePointContext) -> Result<(), i32> {
    // The record since 6.2: u32 mm_id @8, u32 curr @12, i32 member @16, i64 size @24.
    // SAFETY: offsets from the tracepoint's format; read_at checks the access.
    let (mm_id, curr, member, size) = unsafe {
        (
            ctx.read_at::<u32>(8)?,
            ctx.read_at::<u32>(12)?,
            ctx.read_at::<i32>(16)?,
            ctx.read_at::<i64>(24)?,
        )
    };
    if member < 0 || member as usize >= MEMBERS {
        return Ok(());
    }
    let m = member as usize;
    let (tgid, s) = if curr != 0 {
        // The common case (the task's own faults): one lookup, a miss for everyone unfollowed.
        let tgid = current_tgid();
        let Some(s) = stats_of(tgid) else {
            return Ok(());
        };
        // Remember whose mm this is, for events raised by other tasks (reclaim, khugepaged).
        // SAFETY: `s` points at a live map value.
        if unsafe { (*s).mm_id } != mm_id {
            let _ = MM_TGID.insert(mm_id, tgid, 0);
            // SAFETY: as above.
            unsafe { (*s).mm_id = mm_id };
        }
        (tgid, s)
    } else {
        // SAFETY: read by value.
        let Some(tgid) = (unsafe { MM_TGID.get(mm_id) }).copied() else {
            return Ok(());
        };
        let Some(s) = stats_of(tgid) else {
            return Ok(());
        };
        (tgid, s)
    };
    let epoch = epoch();
    // SAFETY: `s` points at a live map value; `m` is bounded above.
    unsafe {
        (*s).rss[m] = size.max(0) as u64;
        (*s).seen |= 1 << m;
        let total = (*s).rss[MEMBER_FILE] + (*s).rss[MEMBER_ANON] + (*s).rss[MEMBER_SHMEM];
        if (*s).peak_epoch != epoch || total > (*s).peak_total {
            (*s).peak_epoch = epoch;
            (*s).peak_total = total;
            (*s).peak_rss = (*s).rss;
            (*s).peak_time = bpf_ktime_get_boot_ns();
        }
    }
    mark_dirty(ctx, tgid, s, epoch);
    Ok(())
}
