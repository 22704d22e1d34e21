//! Threads and descriptors of followed processes: the kernel side only notices that they
//! moved, and queues the process as changed; the recorder then reads the exact figures from
//! /proc (`Threads:` in status, the size of /proc/PID/fd), for the processes that changed only.
//!
//! Nothing here adds a hook. A new thread and a thread's exit are seen where the lifecycle
//! hooks already run (lifecycle.rs); the thread count and the descriptor table's next free
//! slot are read where a task is already held: the per-CPU timer (the running thread), the
//! recorder's once-a-second scan (each process's leader) and the exit. Opening or closing a
//! descriptor moves `files->next_fd` (the lowest slot that may be free), so a leak of one per
//! second or slower is queued by the scan; a process that opens and closes the same slot
//! between two looks is not, and has no change to record.

use memtools_common::ProcStats;

use crate::kernel::{task_next_fd, task_threads};
use crate::shared::{epoch, mark_dirty};

/// Looks at the counts of a followed process through one of its tasks: queued as changed
/// when its threads or its next descriptor moved since the last look.
#[inline(always)]
pub fn observe_counts(tgid: u32, s: *mut ProcStats, task: *const u8) {
    let threads = task_threads(task);
    let next_fd = task_next_fd(task);
    // SAFETY: `s` points at a live map value.
    unsafe {
        if (*s).threads == threads && (*s).next_fd == next_fd {
            return;
        }
        (*s).threads = threads;
        (*s).next_fd = next_fd;
    }
    mark_dirty(tgid, s, epoch());
}

/// A thread of a followed process started or ended: its count is read at the next poll.
#[inline(always)]
pub fn thread_moved(tgid: u32, s: *mut ProcStats) {
    mark_dirty(tgid, s, epoch());
}
