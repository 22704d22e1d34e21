//! The mapping calls seen through `mmap_lock_acquire_returned` (a BTF tracepoint), where
//! fentry cannot load. munmap, mmap, brk and mremap take their process's mmap lock for
//! writing before they change anything, and madvise takes it when it cannot lock a single
//! VMA: the call and its arguments are read from the task's saved user registers
//! (`bpf_task_pt_regs`), so the accounting is the fentry path's, counted at entry (a call that
//! then fails is counted too), and the counters are looked at before anything is released.
//! brk's effect is the move of `mm->brk`, taken at the next look.
//!
//! Growth sites (with `record --sites`) are counted here at entry too, with the stack of the
//! call: an mmap of new memory by its length, a brk by how far it asks to move the break
//! beyond where [`account_brk`] just saw it (the lock is held, so that is the break the call
//! starts from).

use aya_ebpf::{
    Global, helpers::generated::bpf_task_pt_regs, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use memtools_common::site_cause;

use super::{
    SYSCALL_ARG0_OFFSET, SYSCALL_ARG1_OFFSET, SYSCALL_ARG2_OFFSET, SYSCALL_ARG3_OFFSET,
    account_brk, arg, count_mmap, count_mremap, count_munmap, grows,
};
use crate::kernel::{current_task, task_mm};
use crate::rss::observe;
use crate::shared::{atomic_add as add, current_tgid, epoch, mark_dirty, stats_of};
use crate::sites::{calls_on, note_call, record_noted_call};

/// Offset in `struct pt_regs` of the system call's number (`orig_ax` on x86-64, `syscallno`
/// on arm64).
#[unsafe(no_mangle)]
pub static SYSCALL_NR_OFFSET: Global<u32> = Global::new(0);
/// This architecture's numbers of mmap, munmap, brk, mremap and madvise.
#[unsafe(no_mangle)]
pub static NR_MMAP: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static NR_MUNMAP: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static NR_BRK: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static NR_MREMAP: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static NR_MADVISE: Global<u32> = Global::new(u32::MAX);

#[btf_tracepoint(function = "mmap_lock_acquire_returned")]
pub fn mmap_locked(ctx: BtfTracePointContext) -> i32 {
    let tgid = current_tgid();
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    let mm: *const u8 = ctx.arg(0);
    let task = current_task();
    // Its own mm (not another process's, taken to read its maps), locked.
    let success: u8 = ctx.arg(2);
    if success == 0 || task_mm(task) != mm {
        return 0;
    }
    // SAFETY: `task` is the current task (a trusted BTF pointer).
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
    if regs.is_null() {
        return 0;
    }
    // SAFETY: a BTF pointer to the task's `struct pt_regs`; the offset is a member's. Its low
    // 32 bits on either architecture; -1 outside a system call (a page fault).
    let nr = i64::from(unsafe {
        core::ptr::read_volatile(
            regs.wrapping_add(SYSCALL_NR_OFFSET.load() as usize)
                .cast::<i32>(),
        )
    });
    let is = |call: &Global<u32>| nr == i64::from(call.load());
    let epoch = epoch();
    account_brk(s, mm);
    // Before a call that may give memory back: the counters as they stand.
    if is(&NR_MUNMAP) || is(&NR_BRK) || is(&NR_MREMAP) || is(&NR_MADVISE) {
        observe(tgid, s, mm, false);
    }
    // A call that grew the process, counted as a site after the paths below meet.
    let mut noted = false;
    if is(&NR_MMAP) {
        let len = arg(regs, &SYSCALL_ARG1_OFFSET);
        count_mmap(tgid, s, len, 0);
        if calls_on()
            && grows(
                arg(regs, &SYSCALL_ARG2_OFFSET),
                arg(regs, &SYSCALL_ARG3_OFFSET),
            )
        {
            note_call(site_cause::MMAP, len);
            noted = true;
        }
    } else if is(&NR_MUNMAP) {
        count_munmap(tgid, s, arg(regs, &SYSCALL_ARG1_OFFSET), 0);
    } else if is(&NR_BRK) {
        // SAFETY: `s` points at a live map value.
        unsafe { add(&raw mut (*s).brk_calls, 1) };
        mark_dirty(tgid, s, epoch);
        if calls_on() {
            // SAFETY: `s` points at a live map value; account_brk set it to `mm->brk`.
            let now = unsafe { (*s).last_brk };
            let wanted = arg(regs, &SYSCALL_ARG0_OFFSET);
            if now != 0 && wanted > now {
                note_call(site_cause::BRK, wanted - now);
                noted = true;
            }
        }
    } else if is(&NR_MREMAP) {
        let (old_len, new_len) = (
            arg(regs, &SYSCALL_ARG1_OFFSET),
            arg(regs, &SYSCALL_ARG2_OFFSET),
        );
        count_mremap(tgid, s, old_len, new_len, 0);
    }
    if noted {
        record_noted_call(&ctx, tgid, regs);
    }
    0
}
