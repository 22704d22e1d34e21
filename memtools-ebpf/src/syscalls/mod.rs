//! The mapping system calls (mmap, munmap, brk, madvise, mremap): calls and the bytes they
//! mapped and unmapped, and a look at the process's resident counters just before each call
//! that can give memory back (rss.rs), because that is where a peak ends.
//!
//! Three ways in, tried in this order, the same accounting:
//! - `entry`: fentry/fexit on the architecture's syscall entry functions (`__x64_sys_mmap`,
//!   `__arm64_sys_munmap`, ...; the recorder resolves the names and where the arguments sit in
//!   `struct pt_regs` from the kernel's BTF). A BPF trampoline runs only when its function
//!   does, so a process that never calls munmap pays nothing for this hook.
//! - `mmap_lock`: where fentry cannot load (a kernel in lockdown refuses trampolines), the
//!   BTF tracepoint on taking a process's mmap lock, which these calls do first: the call and
//!   its arguments are read from the task's saved registers. It runs on every mmap lock taken
//!   on the machine (mapping calls, and page faults that miss the per-VMA lock), never on
//!   other system calls.
//! - `tracepoints`: the `syscalls:sys_{enter,exit}_*` tracepoints, the last resort. While any
//!   syscall tracepoint is attached, the kernel sends *every* system call of every task on the
//!   machine through its slow, traced path: a syscall-heavy workload is measurably slower,
//!   recorded or not (the session's backend reason says so).

pub mod entry;
pub mod mmap_lock;
pub mod tracepoints;

use aya_ebpf::Global;
use memtools_common::ProcStats;

use crate::kernel::current_task;
use crate::shared::{atomic_add as add, epoch, mark_dirty};

/// Offsets in `struct pt_regs` of a syscall's first four arguments and of the user stack
/// pointer (from BTF).
#[unsafe(no_mangle)]
pub static SYSCALL_ARG0_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SYSCALL_ARG1_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SYSCALL_ARG2_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SYSCALL_ARG3_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SYSCALL_SP_OFFSET: Global<u32> = Global::new(0);
/// Offsets in `struct pt_regs` of the user instruction pointer and frame pointer.
#[unsafe(no_mangle)]
pub static SYSCALL_IP_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static SYSCALL_FP_OFFSET: Global<u32> = Global::new(0);

/// mmap's `prot` and `flags` bits that say a mapping is new memory of the process's own
/// (the same on x86-64 and arm64).
const PROT_WRITE: u64 = 0x2;
const MAP_PRIVATE: u64 = 0x02;
const MAP_ANONYMOUS: u64 = 0x20;

/// Whether an mmap with these `prot` and `flags` grows the process: anonymous memory, or a
/// private writable mapping (a file's copy-on-write pages: data segments, ...). A shared or
/// read-only file mapping is the file's pages, not the process's growth.
#[inline(always)]
pub fn grows(prot: u64, flags: u64) -> bool {
    flags & MAP_ANONYMOUS != 0 || (flags & MAP_PRIVATE != 0 && prot & PROT_WRITE != 0)
}

/// `offsetof(struct mm_struct, brk)`.
#[unsafe(no_mangle)]
pub static MM_BRK_OFFSET: Global<u32> = Global::new(0);

/// A syscall argument from the saved registers.
#[inline(always)]
pub fn arg(regs: *const u8, offset: &Global<u32>) -> u64 {
    // SAFETY: `regs` is a BTF pointer to `struct pt_regs`; the offset is one of its members',
    // from BTF.
    unsafe { core::ptr::read_volatile(regs.wrapping_add(offset.load() as usize).cast::<u64>()) }
}

/// The current task's saved user registers (for the hooks whose context does not carry
/// them); null when they cannot be had.
#[inline(always)]
pub fn user_regs() -> *const u8 {
    // SAFETY: the current task, a trusted BTF pointer.
    let regs = unsafe { aya_ebpf::helpers::generated::bpf_task_pt_regs(current_task() as *mut _) };
    regs as *const u8
}

/// A syscall's return value is an error when it is in -4095..=-1.
#[inline(always)]
pub fn failed(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

/// An mmap call of `len` bytes returned `ret`.
#[inline(always)]
pub fn count_mmap(tgid: u32, s: *mut ProcStats, len: u64, ret: i64) {
    // SAFETY: `s` points at a live map value.
    unsafe {
        add(&raw mut (*s).mmap_calls, 1);
        if !failed(ret) {
            add(&raw mut (*s).mapped_bytes, len);
        }
    }
    mark_dirty(tgid, s, epoch());
}

/// A munmap call of `len` bytes returned `ret`.
#[inline(always)]
pub fn count_munmap(tgid: u32, s: *mut ProcStats, len: u64, ret: i64) {
    // SAFETY: `s` points at a live map value.
    unsafe {
        add(&raw mut (*s).munmap_calls, 1);
        if ret == 0 {
            add(&raw mut (*s).unmapped_bytes, len);
        }
    }
    mark_dirty(tgid, s, epoch());
}

/// brk returns the new break (the old one when it fails): the difference with the last one
/// seen is what was mapped or unmapped. Returns the bytes it grew by (0 when it did not, or
/// for the first call seen, whose move is unknown).
#[inline(always)]
pub fn count_brk(tgid: u32, s: *mut ProcStats, ret: u64) -> u64 {
    // SAFETY: `s` points at a live map value.
    let grew = unsafe {
        let last = (*s).last_brk;
        if last != 0 && ret > last {
            ret - last
        } else {
            0
        }
    };
    // SAFETY: `s` points at a live map value.
    unsafe {
        add(&raw mut (*s).brk_calls, 1);
        let last = (*s).last_brk;
        if last != 0 && ret > last {
            add(&raw mut (*s).mapped_bytes, ret - last);
        } else if last != 0 && ret < last {
            add(&raw mut (*s).unmapped_bytes, last - ret);
        }
        (*s).last_brk = ret;
    }
    mark_dirty(tgid, s, epoch());
    grew
}

/// An mremap from `old_len` to `new_len` bytes returned `ret`: growth is mapped, shrinking
/// unmapped (its calls are not counted: there is no column for them).
#[inline(always)]
pub fn count_mremap(tgid: u32, s: *mut ProcStats, old_len: u64, new_len: u64, ret: i64) {
    if !failed(ret) {
        // SAFETY: `s` points at a live map value.
        unsafe {
            if new_len > old_len {
                add(&raw mut (*s).mapped_bytes, new_len - old_len);
            } else {
                add(&raw mut (*s).unmapped_bytes, old_len - new_len);
            }
        }
    }
    mark_dirty(tgid, s, epoch());
}

/// What brk calls moved the break by since the last look, as mapped or unmapped bytes (the
/// fentry and tracepoint paths count each call at its exit, after which this finds no move).
#[inline(always)]
pub fn account_brk(s: *mut ProcStats, mm: *const u8) {
    if mm.is_null() {
        return;
    }
    // SAFETY: `mm` is a BTF pointer to the process's `struct mm_struct`; the offset is its
    // `brk`'s, from BTF.
    let brk = unsafe {
        core::ptr::read_volatile(mm.wrapping_add(MM_BRK_OFFSET.load() as usize).cast::<u64>())
    };
    // SAFETY: `s` points at a live map value.
    unsafe {
        let last = (*s).last_brk;
        if last != 0 && brk > last {
            add(&raw mut (*s).mapped_bytes, brk - last);
        } else if last != 0 && brk < last {
            add(&raw mut (*s).unmapped_bytes, last - brk);
        }
        (*s).last_brk = brk;
    }
}
