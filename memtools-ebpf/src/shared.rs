//! The maps and globals every hook family uses, and the per-process counters' accessors.

use aya_ebpf::{
    Global,
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, HashMap, LruHashMap, RingBuf},
};
use memtools_common::{EPOCH_INDEX, MAX_PROCESSES, ProcStats, counter};

/// Non-zero: follow every new process, not only the children of followed ones.
#[unsafe(no_mangle)]
pub static FOLLOW_ALL: Global<u8> = Global::new(0);

/// The counters of each followed process; a process is followed exactly when it has an entry.
#[map]
pub static STATS: HashMap<u32, ProcStats> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// An mm's address -> the followed tgid owning it, for `rss_stat` events raised on another
/// task's behalf (reclaim, khugepaged). Removed at exit, as the address is then reused.
#[map]
pub static MM_TGID: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MAX_PROCESSES, 0);

/// The drain epoch, bumped by the recorder at each drain (see memtools_common::EPOCH_INDEX).
#[map]
pub static EPOCH: Array<u32> = Array::with_max_entries(1, 0);

/// Counts of dropped things, indexed by memtools_common::counter.
#[map]
pub static COUNTERS: Array<u64> = Array::with_max_entries(counter::COUNT, 0);

/// Tgids whose counters changed, each queued at most once per epoch.
#[map]
pub static DIRTY: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Forks, execs and exits of followed processes, in order.
#[map]
pub static LIFE: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// The current task's tgid.
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The counters of a followed process; None when it is not followed.
#[inline(always)]
pub fn stats_of(tgid: u32) -> Option<*mut ProcStats> {
    STATS.get_ptr_mut(tgid)
}

/// Counts one dropped thing.
#[inline(always)]
pub fn count_drop(which: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(which) {
        // SAFETY: a valid array slot; a lost increment under contention is harmless here.
        unsafe { *c += 1 };
    }
}

/// The current drain epoch.
#[inline(always)]
pub fn epoch() -> u32 {
    match EPOCH.get(EPOCH_INDEX) {
        Some(e) => *e,
        None => 0,
    }
}

/// Queues a process as changed, once per epoch.
#[inline(always)]
pub fn mark_dirty(tgid: u32, s: *mut ProcStats, epoch: u32) {
    // SAFETY: `s` points at a live map value.
    unsafe {
        if (*s).dirty_epoch == epoch {
            return;
        }
        (*s).dirty_epoch = epoch;
    }
    if DIRTY.output::<u32>(&tgid, 0).is_err() {
        // Counted; the recorder then reads every process.
        count_drop(counter::DIRTY_LOST);
    }
}

/// Adds to a counter that a process's threads update from several CPUs at once.
#[inline(always)]
pub fn atomic_add(counter: *mut u64, n: u64) {
    // SAFETY: `counter` points into a live map value; the result is unused, so LLVM emits
    // BPF's plain atomic add, which every kernel with these tracepoints has.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            counter, n,
        );
    }
}
