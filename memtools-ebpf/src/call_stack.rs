//! The user stack at a brk/mmap system call, for its growth site.
//!
//! `bpf_get_stack(BPF_F_USER_STACK)` is allowed in each program type the mapping calls are
//! hooked by (the verifier takes it in the BTF and classic tracepoint programs; fexit, a
//! tracing program as the BTF tracepoint is, could not be loaded where this was written: the
//! kernel was in lockdown) and unwinds from the task's saved user registers,
//! but the frame-pointer chain it follows starts at the registers as the C library left them, and a C library built without frame pointers (Debian's, most distributions'
//! before 2024) uses the frame-pointer register for its own values: at `sbrk`'s system call it
//! holds the old break, and the program's own functions above the library are lost.
//!
//! So on x86-64 the walk here starts over the library's frames: it looks through the words
//! just above the stack pointer (256 bytes) for return addresses (a word is one only when the
//! bytes before it are a call instruction, checked in the process's code) and for the
//! program's frame pointer the library saved there (a word pointing a little higher into the
//! stack whose frame record holds a return address), takes the return address into the
//! program's function from just below its frame record (the highest one there: past its
//! locals, however deep the library's frames below), then follows the frame-pointer chain
//! from it. Words that cannot be code (below the executable's text, in its data or heap, in
//! the stack itself) are passed over without the read behind them: most of a walk's cost was
//! those reads, three in four faulting on numbers that are no address. A stale return address
//! left in a library frame's unused slot can show up as an extra frame. Elsewhere
//! `bpf_get_stack` is used as it is.

#[cfg(bpf_target_arch = "x86_64")]
use aya_ebpf::{helpers::bpf_probe_read_user, helpers::generated, macros::map, maps::PerCpuArray};
#[cfg(bpf_target_arch = "x86_64")]
use memtools_common::SITE_STACK_DEPTH;
use memtools_common::SiteKey;

#[cfg(bpf_target_arch = "x86_64")]
use crate::kernel::{code_bounds, current_task, task_mm};
#[cfg(bpf_target_arch = "x86_64")]
use crate::syscalls::{SYSCALL_FP_OFFSET, SYSCALL_IP_OFFSET, SYSCALL_SP_OFFSET, arg};

/// Words above the stack pointer looked through for the library's return addresses and the
/// program's saved frame pointer (the library's frames between the program and the call).
#[cfg(bpf_target_arch = "x86_64")]
const SCAN_WORDS: usize = 128;

/// How far above and below the stack pointer a word is taken for an address in the stack
/// (its frames, locals and the strings above them) rather than a return address: such a word
/// is passed over without the read that checks for a call before it. Code is seldom mapped
/// this close to a stack: the main thread's sits below the stack's own gap (at least 128 MiB);
/// a thread's stack is a mapping of its own, and a library mapped just above one would lose
/// its frames from this scan (not from the frame-pointer chain followed after it).
#[cfg(bpf_target_arch = "x86_64")]
const STACK_ABOVE: u64 = 1 << 20;
#[cfg(bpf_target_arch = "x86_64")]
const STACK_BELOW: u64 = 64 << 10;

/// Words below the program's frame record looked through for the return address into it.
#[cfg(bpf_target_arch = "x86_64")]
const CALLER_WORDS: usize = 32;

/// How far above a stack address a frame pointer may point (a frame this large is not a
/// frame).
#[cfg(bpf_target_arch = "x86_64")]
const FRAME_REACH: u64 = 64 * 1024;

/// The walk's state, in a map value rather than in registers: the verifier does not follow
/// what a map value holds, so the paths through each step of the walk meet again instead of
/// multiplying (in registers, the walk took more than its million instructions to verify).
#[cfg(bpf_target_arch = "x86_64")]
#[repr(C)]
pub struct Walk {
    words: [u64; SCAN_WORDS],
    /// Frames filled so far.
    n: u64,
    /// The program's frame pointer, once found (0 before).
    fp: u64,
    /// Where code can be ([`code_bounds`]): a word elsewhere is no return address, and its
    /// check (a read behind it, which faults for a number that is no address: three words
    /// in four a loader's walk checked) is left out.
    bounds: [u64; 3],
}

#[cfg(bpf_target_arch = "x86_64")]
#[map]
static WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// Whether `w` is a return address: the bytes before it in the process are a call, `call
/// rel32` (E8, how code calls a function it links to, through the PLT or not) or `call
/// *disp32(%rip)` (FF 15, through the GOT: `-fno-plt`). Calls through a register are left out:
/// each form checked costs the verifier paths.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn after_call(w: u64) -> bool {
    if !(0x10000..0x0000_8000_0000_0000).contains(&w) {
        return false;
    }
    if let Some(walk) = WALK.get_ptr(0) {
        // SAFETY: this CPU's scratch slot, its bounds set by `fill`.
        let [start, end, top] = unsafe { core::ptr::read_volatile(&raw const (*walk).bounds) };
        if w < start || (w >= end && w < top) {
            return false;
        }
    }
    // SAFETY: a user address, read with the fault-safe helper.
    match unsafe { bpf_probe_read_user((w - 8) as *const u64) } {
        Ok(word) => {
            let b = word.to_le_bytes();
            b[3] == 0xe8 || (b[2] == 0xff && b[3] == 0x15)
        }
        Err(_) => false,
    }
}

/// A frame record at `fp`: whether it holds a return address.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn is_frame(fp: u64) -> bool {
    // SAFETY: a user address, read with the fault-safe helper.
    match unsafe { bpf_probe_read_user((fp + 8) as *const u64) } {
        Ok(ret) => after_call(ret),
        Err(_) => false,
    }
}

/// Fills `key.ips` with the user stack of the system call whose saved registers are `regs`;
/// false when nothing could be read.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub fn fill(key: &mut SiteKey, regs: *const u8) -> bool {
    let sp = arg(regs, &SYSCALL_SP_OFFSET);
    let ip = arg(regs, &SYSCALL_IP_OFFSET);
    let bp = arg(regs, &SYSCALL_FP_OFFSET);
    let Some(walk) = WALK.get_ptr_mut(0) else {
        return false;
    };
    if ip == 0 || sp == 0 {
        return false;
    }
    key.ips[0] = ip;
    // SAFETY: this CPU's scratch slot; user memory is read with the fault-safe helper.
    unsafe {
        (*walk).bounds = code_bounds(task_mm(current_task()));
        (*walk).n = 1;
        // The registers' frame pointer, when the library left the program's there.
        (*walk).fp = if bp > sp && bp - sp <= FRAME_REACH && is_frame(bp) {
            bp
        } else {
            0
        };
        // Up to the registers' frame pointer when it is the program's (the words above it are
        // its frame records, followed below), else the whole scan.
        let fp = (*walk).fp;
        let whole = (SCAN_WORDS * 8) as u64;
        let wanted = if fp != 0 { fp - sp + 8 } else { whole };
        let read = generated::bpf_probe_read_user(
            (&raw mut (*walk).words).cast(),
            core::cmp::min(wanted, whole) as u32,
            sp as *const core::ffi::c_void,
        );
        if read == 0 {
            for i in 0..SCAN_WORDS {
                let at = sp + 8 * i as u64;
                let fp = core::ptr::read_volatile(&raw const (*walk).fp);
                if fp != 0 && at >= fp {
                    break;
                }
                let w = (*walk).words[i];
                if w > at && w - at <= FRAME_REACH && w & 7 == 0 {
                    // The program's frame pointer, saved by the library: the chain goes on
                    // from there, once the return addresses below it are in.
                    if fp == 0 && is_frame(w) {
                        (*walk).fp = w;
                    }
                    continue;
                }
                // An address in this stack (a local's, a string's): no code, no probe.
                if w.wrapping_sub(sp) < STACK_ABOVE || sp.wrapping_sub(w) < STACK_BELOW {
                    continue;
                }
                let n = core::ptr::read_volatile(&raw const (*walk).n) as usize;
                if n < SITE_STACK_DEPTH / 2 && after_call(w) {
                    if let Some(slot) = key.ips.get_mut(n) {
                        *slot = w;
                    }
                    (*walk).n = n as u64 + 1;
                }
            }
        }
        // The return address into the program's function whose frame is at `fp`: the highest
        // one below its frame record, past its locals (the library's frames can be deeper
        // than the scan above reaches: malloc, _int_malloc, sysmalloc, sbrk).
        let fp = core::ptr::read_volatile(&raw const (*walk).fp);
        let below = (CALLER_WORDS * 8) as u64;
        if fp > sp + below
            && generated::bpf_probe_read_user(
                (&raw mut (*walk).words).cast(),
                below as u32,
                (fp - below) as *const core::ffi::c_void,
            ) == 0
        {
            for j in 0..CALLER_WORDS {
                let w = (*walk).words[CALLER_WORDS - 1 - j];
                if after_call(w) {
                    let n = core::ptr::read_volatile(&raw const (*walk).n) as usize;
                    let last = match key.ips.get(n.wrapping_sub(1)) {
                        Some(v) => *v,
                        None => 0,
                    };
                    if w != last && n < SITE_STACK_DEPTH {
                        if let Some(slot) = key.ips.get_mut(n) {
                            *slot = w;
                        }
                        (*walk).n = n as u64 + 1;
                    }
                    break;
                }
            }
        }
        // The frame-pointer chain of the program's own frames.
        for _ in 0..SITE_STACK_DEPTH {
            let n = core::ptr::read_volatile(&raw const (*walk).n) as usize;
            let fp = core::ptr::read_volatile(&raw const (*walk).fp);
            if n >= SITE_STACK_DEPTH || fp == 0 {
                break;
            }
            let (Ok(next), Ok(ret)) = (
                bpf_probe_read_user(fp as *const u64),
                bpf_probe_read_user((fp + 8) as *const u64),
            ) else {
                break;
            };
            if ret == 0 {
                break;
            }
            if let Some(slot) = key.ips.get_mut(n) {
                *slot = ret;
            }
            (*walk).n = n as u64 + 1;
            (*walk).fp = if next > fp && next - fp <= FRAME_REACH * 16 {
                next
            } else {
                0
            };
        }
    }
    true
}

/// Elsewhere: nothing here (the caller uses `bpf_get_stack`).
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
pub fn fill(_key: &mut SiteKey, _regs: *const u8) -> bool {
    false
}
