//! fentry/fexit on the syscall entry functions (`__x64_sys_*`, `__arm64_sys_*`): each takes
//! the user's saved registers (`const struct pt_regs *`), where the arguments sit at offsets
//! the recorder resolves from BTF. fexit sees the arguments too, and the return value after
//! them, so nothing has to wait in a map between entry and exit.
//!
//! The programs' names say the call and the side; the recorder attaches each to
//! `<arch prefix><call>` (memtools-user's load.rs).

use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

use memtools_common::site_cause;

use super::{
    SYSCALL_ARG1_OFFSET, SYSCALL_ARG2_OFFSET, SYSCALL_ARG3_OFFSET, arg, count_brk, count_mmap,
    count_mremap, count_munmap, failed, grows,
};
use crate::rss::observe_current;
use crate::shared::{current_tgid, stats_of};
use crate::sites::{calls_on, record_call};

/// Before a call that may give memory back: the counters as they stand.
#[inline(always)]
fn before_release() {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        observe_current(tgid, s);
    }
}

#[fexit]
pub fn mmap_exit(ctx: FExitContext) -> i32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        let regs: *const u8 = ctx.arg(0);
        let ret: i64 = ctx.arg(1);
        let len = arg(regs, &SYSCALL_ARG1_OFFSET);
        count_mmap(tgid, s, len, ret);
        if calls_on()
            && !failed(ret)
            && grows(
                arg(regs, &SYSCALL_ARG2_OFFSET),
                arg(regs, &SYSCALL_ARG3_OFFSET),
            )
        {
            record_call(&ctx, tgid, site_cause::MMAP, len, regs);
        }
    }
    0
}

#[fentry]
pub fn munmap_entry(_ctx: FEntryContext) -> i32 {
    before_release();
    0
}

#[fexit]
pub fn munmap_exit(ctx: FExitContext) -> i32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        let regs: *const u8 = ctx.arg(0);
        let ret: i64 = ctx.arg(1);
        count_munmap(tgid, s, arg(regs, &SYSCALL_ARG1_OFFSET), ret);
    }
    0
}

#[fentry]
pub fn brk_entry(_ctx: FEntryContext) -> i32 {
    before_release();
    0
}

#[fexit]
pub fn brk_exit(ctx: FExitContext) -> i32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        let ret: u64 = ctx.arg(1);
        let grew = count_brk(tgid, s, ret);
        if grew != 0 && calls_on() {
            let regs: *const u8 = ctx.arg(0);
            record_call(&ctx, tgid, site_cause::BRK, grew, regs);
        }
    }
    0
}

#[fentry]
pub fn madvise_entry(_ctx: FEntryContext) -> i32 {
    before_release();
    0
}

#[fentry]
pub fn mremap_entry(_ctx: FEntryContext) -> i32 {
    before_release();
    0
}

#[fexit]
pub fn mremap_exit(ctx: FExitContext) -> i32 {
    let tgid = current_tgid();
    if let Some(s) = stats_of(tgid) {
        let regs: *const u8 = ctx.arg(0);
        let ret: i64 = ctx.arg(1);
        let (old_len, new_len) = (
            arg(regs, &SYSCALL_ARG1_OFFSET),
            arg(regs, &SYSCALL_ARG2_OFFSET),
        );
        count_mremap(tgid, s, old_len, new_len, ret);
    }
    0
}
