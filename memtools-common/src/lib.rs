//! The map keys and values the kernel side (memtools-ebpf) and the recorder (memtools-user)
//! share. Every type is `#[repr(C)]` with explicit padding, so both sides agree on the layout
//! byte for byte; `no_std` so the eBPF crate can use it. It must depend on nothing but `core`
//! (aya only behind the `user` feature, for the recorder's `Pod` impls).
#![no_std]

/// `kmem:rss_stat`'s `member`: resident file pages.
pub const MEMBER_FILE: usize = 0;
/// `kmem:rss_stat`'s `member`: resident anonymous pages.
pub const MEMBER_ANON: usize = 1;
/// `kmem:rss_stat`'s `member`: swap entries.
pub const MEMBER_SWAP: usize = 2;
/// `kmem:rss_stat`'s `member`: resident shared memory pages.
pub const MEMBER_SHMEM: usize = 3;
/// How many `rss_stat` members there are.
pub const MEMBERS: usize = 4;

/// How many processes the maps hold; beyond this, events are counted as dropped.
pub const MAX_PROCESSES: u32 = 32_768;

/// Per-process (tgid) counters, kept by the kernel side and read by the recorder. An entry
/// exists exactly for the followed processes: one lookup both filters and finds the counters.
///
/// Only the kernel writes it: the recorder resets "since the last drain" figures by bumping
/// the epoch (see [`EPOCH_INDEX`]), never by writing here, so no update is lost to a race.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// The `rss_stat` counters by member, in bytes, when last updated: the kernel's running
    /// figures, short of what each CPU has not folded in yet (the recorder reads exact ones
    /// from /proc for the processes queued as changed).
    pub rss: [u64; MEMBERS],
    /// The epoch this process was last queued as changed in (at most once per epoch).
    pub dirty_epoch: u32,
    /// The epoch the peak belongs to.
    pub peak_epoch: u32,
    /// The address of the process's mm, last seen (to update `MM_TGID` only on change).
    pub mm: u64,
    /// The largest file + anon + shmem in the peak's epoch, with each member at that moment.
    pub peak_rss: [u64; MEMBERS],
    pub peak_total: u64,
    /// When the peak was reached, `bpf_ktime_get_boot_ns`.
    pub peak_time: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub brk_calls: u64,
    /// Bytes mapped by successful mmap calls and brk growth.
    pub mapped_bytes: u64,
    /// Bytes unmapped by successful munmap calls and brk shrinking.
    pub unmapped_bytes: u64,
    /// The program break after the last brk call (0 before the first).
    pub last_brk: u64,
    /// The process's threads when last looked at (`signal->nr_threads`).
    pub threads: u32,
    /// The lowest descriptor number the process may get next when last looked at
    /// (`files->next_fd`): it moves when descriptors are opened or closed, so a change queues
    /// the process, whose descriptors the recorder then counts (the kernel keeps no count).
    pub next_fd: u32,
    /// Faults since the last sampled one (`record --sites --sites-sampler countdown`).
    pub faults_since_sample: u64,
}

/// What a [`LifeEvent`] reports.
pub mod life {
    /// A followed process forked a new process (not a thread): `tgid` is the child.
    pub const FORK: u32 = 1;
    /// A followed process called exec: `comm` is its new name.
    pub const EXEC: u32 = 2;
    /// The last thread of a followed process exited.
    pub const EXIT: u32 = 3;
}

/// A process-tree event, sent through the `LIFE` ring buffer in order. Each carries what the
/// recorder needs to key and name the process without /proc (which a process that lived a
/// millisecond has left before the recorder looks): a FORK or an EXIT alone makes a history.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifeEvent {
    /// One of [`life`]'s constants.
    pub kind: u32,
    pub tgid: u32,
    /// The parent: the forking process for FORK, the real parent for EXEC and EXIT.
    pub ppid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns` when it happened.
    pub time: u64,
    /// When the process started (`task->start_boottime`, boot-clock ns): with the pid, its
    /// identity, as /proc/PID/stat's start time (in clock ticks) gives it.
    pub start_time: u64,
    /// The process's name (`comm`): the parent's at FORK, the new one at EXEC and EXIT.
    pub comm: [u8; 16],
    /// For EXIT: the largest resident memory the process ever had, in bytes (the kernel's
    /// high-water mark, `signal->maxrss` and the mm's, as getrusage's `ru_maxrss`).
    pub peak_rss: u64,
    /// For EXIT: the virtual size at exit, in bytes (`mm->total_vm`).
    pub vm_size: u64,
    /// For EXIT: the process's last counters, read from its mm as it exits. The kernel removes
    /// them from the map as it sends this, so a pid reused before the recorder drains never
    /// mixes two processes.
    pub stats: ProcStats,
}

/// Indices of the `COUNTERS` array: things the kernel side had to drop.
pub mod counter {
    /// A new process could not be followed (the counters map is full).
    pub const FOLLOW_FULL: u32 = 0;
    /// Unused (kept so the indices stay stable).
    pub const STATS_FULL: u32 = 1;
    /// A lifecycle event was lost (ring buffer full): the recorder may miss a process or see
    /// its exit late.
    pub const LIFE_LOST: u32 = 2;
    /// A changed process could not be queued (ring buffer full): the recorder rereads all.
    pub const DIRTY_LOST: u32 = 3;
    /// How many counters there are.
    pub const COUNT: u32 = 4;
}

/// The index in the `EPOCH` array of the current drain epoch, bumped by the recorder each time
/// it drains; a process is queued as changed once per epoch and its peak restarts each epoch.
pub const EPOCH_INDEX: u32 = 0;

/// The kernel wakes the recorder's maps keeper for an exec at most once in this long (ns);
/// in between, the keeper looks at the ring on its own this often while execs come. Waking
/// is most of what telling it of an exec costs.
pub const SITE_EXEC_WAKE_GAP_NS: u64 = 2_000_000;

/// Frames a sampled user stack keeps (innermost first); deeper ones are cut off.
pub const SITE_STACK_DEPTH: usize = 32;

/// How many (process, cause, time bucket, stack) entries the kernel aggregates between drains;
/// beyond this, samples are counted as dropped.
pub const MAX_SITE_KEYS: u32 = 16_384;

/// What made the kernel sample a stack ([`SiteKey::cause`]).
pub mod site_cause {
    /// A sampled page fault.
    pub const FAULT: u32 = 0;
    /// A brk call that grew the heap.
    pub const BRK: u32 = 1;
    /// An mmap call that mapped new memory.
    pub const MMAP: u32 = 2;
}

/// A growth site as the kernel aggregates it: one process's stack for one cause in one time
/// bucket. Unused frames are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub tgid: u32,
    /// One of [`site_cause`]'s constants.
    pub cause: u32,
    /// `bpf_ktime_get_boot_ns` divided by the bucket length the recorder set.
    pub bucket: u64,
    /// The word at the user stack pointer when sampled: the return address into the caller
    /// when the innermost function keeps no frame (memset, memcpy and other hand-written leaf
    /// functions), a caller frame pointers skip. The recorder keeps it only when the bytes
    /// before it are a call instruction. 0 when unknown.
    pub leaf_return: u64,
    /// User instruction addresses, innermost first: the sampled one, then return addresses.
    pub ips: [u64; SITE_STACK_DEPTH],
}

/// What the kernel counted for a [`SiteKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    /// Samples taken.
    pub samples: u64,
    /// Bytes of growth they stand for (a fault sample: the page size times the sample period).
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, `#[repr(C)]` with no padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::SiteKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SiteCounts {}
    // SAFETY: plain-old-data, `#[repr(C)]` with explicit padding and no invalid bit patterns.
    unsafe impl aya::Pod for super::ProcStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LifeEvent {}
}
