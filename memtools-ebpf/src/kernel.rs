//! What the programs read from the kernel's own structs (a task, its mm, its signal struct),
//! at offsets the recorder resolves from the running kernel's BTF and passes in as read-only
//! globals. Rust eBPF has no CO-RE relocations; read-only globals are constants to the
//! verifier, so each read is a plain load at a known offset into a BTF-typed pointer (the
//! kernel checks it against the type and guards it against faults).
//!
//! A new figure read "from the task" is one more offset here, one more field in the recorder's
//! `KernelLayout`, and an accessor below (threads and the descriptor table's next free slot
//! are read so, see counts.rs).

use aya_ebpf::{Global, helpers::bpf_get_current_task_btf};
use memtools_common::{MEMBER_ANON, MEMBER_FILE, MEMBER_SHMEM};

/// `offsetof(struct task_struct, mm)`.
#[unsafe(no_mangle)]
pub static TASK_MM_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, pid)`: the thread id.
#[unsafe(no_mangle)]
pub static TASK_PID_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, tgid)`: the process id.
#[unsafe(no_mangle)]
pub static TASK_TGID_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, start_boottime)`.
#[unsafe(no_mangle)]
pub static TASK_START_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, real_parent)`.
#[unsafe(no_mangle)]
pub static TASK_PARENT_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, signal)`: what the threads of a process share.
#[unsafe(no_mangle)]
pub static TASK_SIGNAL_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct signal_struct, live)`: threads not yet exiting.
#[unsafe(no_mangle)]
pub static SIGNAL_LIVE_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct signal_struct, nr_threads)`: the process's threads.
#[unsafe(no_mangle)]
pub static SIGNAL_NR_THREADS_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, files)`: the descriptor table (shared by the threads).
#[unsafe(no_mangle)]
pub static TASK_FILES_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct files_struct, next_fd)`: the lowest descriptor that may be free.
#[unsafe(no_mangle)]
pub static FILES_NEXT_FD_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct signal_struct, maxrss)`: the high-water mark of mms the process left
/// (at exec, and at exit before the exit tracepoint), in pages.
#[unsafe(no_mangle)]
pub static SIGNAL_MAXRSS_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct mm_struct, hiwater_rss)`, in pages (updated lazily: compare with now).
#[unsafe(no_mangle)]
pub static MM_HIWATER_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct mm_struct, total_vm)`, in pages.
#[unsafe(no_mangle)]
pub static MM_TOTAL_VM_OFFSET: Global<u32> = Global::new(0);
/// `offsetof(struct mm_struct, rss_stat[0].count)`.
#[unsafe(no_mangle)]
pub static RSS_COUNT_OFFSET: Global<u32> = Global::new(0);
/// `sizeof(struct percpu_counter)`: the distance between two members' counters.
#[unsafe(no_mangle)]
pub static RSS_COUNTER_SIZE: Global<u32> = Global::new(0);
/// `offsetof(struct task_struct, pagefault_disabled)`; u32::MAX where the kernel has none.
#[unsafe(no_mangle)]
pub static TASK_PAGEFAULT_DISABLED_OFFSET: Global<u32> = Global::new(u32::MAX);
/// The page size in bytes (the counters count pages).
#[unsafe(no_mangle)]
pub static PAGE_SIZE: Global<u32> = Global::new(4096);
/// `offsetof(struct mm_struct, start_code)`, `end_code` and `mmap_base`; u32::MAX where the
/// kernel has none of them.
#[unsafe(no_mangle)]
pub static MM_START_CODE_OFFSET: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static MM_END_CODE_OFFSET: Global<u32> = Global::new(u32::MAX);
#[unsafe(no_mangle)]
pub static MM_MMAP_BASE_OFFSET: Global<u32> = Global::new(u32::MAX);

/// A `T` at `offset` into the kernel object at `base`.
#[inline(always)]
fn field<T: Copy>(base: *const u8, offset: &Global<u32>) -> T {
    // SAFETY: `base` is a BTF pointer to the struct the offset was resolved in; the kernel
    // checks the load against the type and guards it against faults.
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset.load() as usize).cast::<T>()) }
}

/// The current task (never null where the programs run).
#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: no preconditions.
    unsafe { bpf_get_current_task_btf() as *const u8 }
}

/// Whether the task has page faults disabled: a fault then is a probe (a nofault read, such as
/// the user stack walks of our own programs), which fails rather than maps anything.
#[inline(always)]
pub fn pagefaults_disabled(task: *const u8) -> bool {
    TASK_PAGEFAULT_DISABLED_OFFSET.load() != u32::MAX
        && field::<i32>(task, &TASK_PAGEFAULT_DISABLED_OFFSET) != 0
}

/// Where in `mm`'s address space code can be, as `[start_code, end_code, top]`: not below its
/// executable's text, nor from the end of that text to the top of its heap (`top`: its data,
/// bss and heap, `brk`). `[0, 0, 0]` (anywhere) when unknown: the kernel lacks the members,
/// or the mmap area lies below the executable (the legacy layout, libraries mapped low).
#[inline(always)]
pub fn code_bounds(mm: *const u8) -> [u64; 3] {
    if mm.is_null()
        || MM_START_CODE_OFFSET.load() == u32::MAX
        || MM_END_CODE_OFFSET.load() == u32::MAX
        || MM_MMAP_BASE_OFFSET.load() == u32::MAX
    {
        return [0; 3];
    }
    let start = field::<u64>(mm, &MM_START_CODE_OFFSET);
    let end = field::<u64>(mm, &MM_END_CODE_OFFSET);
    let base = field::<u64>(mm, &MM_MMAP_BASE_OFFSET);
    let brk = field::<u64>(mm, &crate::syscalls::MM_BRK_OFFSET);
    if base < end || end < start {
        return [0; 3];
    }
    [start, end, if brk > end { brk } else { end }]
}

/// A task's mm, null for kernel threads and after the task let go of it.
#[inline(always)]
pub fn task_mm(task: *const u8) -> *const u8 {
    field(task, &TASK_MM_OFFSET)
}

/// A task's thread id.
#[inline(always)]
pub fn task_pid(task: *const u8) -> u32 {
    field::<i32>(task, &TASK_PID_OFFSET) as u32
}

/// A task's process id.
#[inline(always)]
pub fn task_tgid(task: *const u8) -> u32 {
    field::<i32>(task, &TASK_TGID_OFFSET) as u32
}

/// When the task started, boot-clock ns.
#[inline(always)]
pub fn task_start(task: *const u8) -> u64 {
    field(task, &TASK_START_OFFSET)
}

/// The process id of a task's real parent (0 when unknown).
#[inline(always)]
pub fn task_parent_tgid(task: *const u8) -> u32 {
    let parent: *const u8 = field(task, &TASK_PARENT_OFFSET);
    if parent.is_null() {
        return 0;
    }
    task_tgid(parent)
}

/// A task's signal struct (shared by its process's threads).
#[inline(always)]
fn task_signal(task: *const u8) -> *const u8 {
    field(task, &TASK_SIGNAL_OFFSET)
}

/// Whether the task is its process's last thread to exit (`signal->live` reached 0, which
/// do_exit decrements before the exit tracepoint).
#[inline(always)]
pub fn is_last_thread(task: *const u8) -> bool {
    let signal = task_signal(task);
    !signal.is_null() && field::<i32>(signal, &SIGNAL_LIVE_OFFSET) == 0
}

/// The threads of a task's process (`signal->nr_threads`; 0 when it has no signal struct).
#[inline(always)]
pub fn task_threads(task: *const u8) -> u32 {
    let signal = task_signal(task);
    if signal.is_null() {
        return 0;
    }
    field::<i32>(signal, &SIGNAL_NR_THREADS_OFFSET).max(0) as u32
}

/// Where a task's process will open its next descriptor (`files->next_fd`; 0 once it let go of
/// its table, at exit).
#[inline(always)]
pub fn task_next_fd(task: *const u8) -> u32 {
    let files: *const u8 = field(task, &TASK_FILES_OFFSET);
    if files.is_null() {
        return 0;
    }
    field(files, &FILES_NEXT_FD_OFFSET)
}

/// The counter of `member` in the mm at `mm` (pages). `member` must be a constant, so the
/// verifier sees a constant offset into `struct mm_struct`.
#[inline(always)]
pub fn counter(mm: *const u8, member: usize) -> i64 {
    let offset = RSS_COUNT_OFFSET.load() as usize + member * RSS_COUNTER_SIZE.load() as usize;
    // SAFETY: as in `field`; the offset is a counter's.
    unsafe { core::ptr::read_volatile(mm.wrapping_add(offset).cast::<i64>()) }
}

/// File + anon + shmem pages.
#[inline(always)]
pub fn resident(mm: *const u8) -> i64 {
    counter(mm, MEMBER_FILE) + counter(mm, MEMBER_ANON) + counter(mm, MEMBER_SHMEM)
}

/// The largest resident memory the task's process ever had, in pages: what earlier mms left
/// in `signal->maxrss`, the mm's own high-water mark, and what it holds now.
#[inline(always)]
pub fn peak_pages(task: *const u8, mm: *const u8) -> u64 {
    let signal = task_signal(task);
    let mut peak = if signal.is_null() {
        0
    } else {
        field::<u64>(signal, &SIGNAL_MAXRSS_OFFSET)
    };
    if !mm.is_null() {
        peak = peak
            .max(field::<u64>(mm, &MM_HIWATER_OFFSET))
            .max(resident(mm).max(0) as u64);
    }
    peak
}

/// The mm's virtual size, in pages.
#[inline(always)]
pub fn total_vm(mm: *const u8) -> u64 {
    if mm.is_null() {
        return 0;
    }
    field(mm, &MM_TOTAL_VM_OFFSET)
}

/// Pages to bytes.
#[inline(always)]
pub fn bytes(pages: u64) -> u64 {
    pages * u64::from(PAGE_SIZE.load())
}
