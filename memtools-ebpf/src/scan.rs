//! The recorder's scan: a task iterator (`iter/task`) the recorder runs once a second, which
//! looks at every followed process's counters (rss.rs), threads and descriptor table
//! (counts.rs) and queues the ones that moved, and notes the break's moves (syscalls/mod.rs).
//!
//! With the per-CPU timer it replaces a hook on every context switch (`sched_switch`), which
//! cost every process on the machine a little at each switch whether followed or not: the
//! scan costs the recorder a third of a microsecond per task on the machine, once a second,
//! and nothing anywhere else.

use core::ffi::c_void;

use crate::counts::observe_counts;
use crate::kernel::{task_mm, task_pid, task_tgid};
use crate::rss::observe;
use crate::shared::stats_of;
use crate::syscalls::account_brk;

/// An iterator program's context (`struct bpf_iter__task`): the meta data, then the task
/// (null once, at the end).
#[repr(C)]
struct IterTask {
    meta: *const c_void,
    task: *const u8,
}

/// One task of the machine: when it leads a followed process, its counters are looked at.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/task")]
pub fn scan(ctx: *mut c_void) -> i32 {
    // SAFETY: the kernel passes a `struct bpf_iter__task`.
    let task = unsafe { (*ctx.cast::<IterTask>()).task };
    if task.is_null() {
        return 0;
    }
    let tgid = task_tgid(task);
    // Threads share their leader's mm: one look per process.
    if task_pid(task) != tgid {
        return 0;
    }
    if let Some(s) = stats_of(tgid) {
        let mm = task_mm(task);
        account_brk(s, mm);
        observe(tgid, s, mm, false);
        observe_counts(tgid, s, task);
    }
    0
}
