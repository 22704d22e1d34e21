//! Growth sites: the user stack of a followed process where it grew, counted in the kernel per
//! (process, cause, time bucket, stack), which the recorder drains and symbolizes.
//!
//! `site_fault` runs on a perf software PAGE_FAULTS event with a sample period N: the kernel
//! counts faults in the perf event and runs the program only every Nth one, and the recorder
//! opens the event on the recorded command with `inherit` (so nothing runs for processes
//! outside its tree) or per CPU for `--all` (then the `STATS` lookup keeps it to followed
//! processes). [`record_call`] is what the brk/mmap hooks (syscalls/) call when a call grew a
//! followed process, in each of their three ways in, once the recorder turned calls on: it
//! samples calls by the bytes they grew the process by, at the faults' rate.
//! `site_fault_countdown` is the other way asked of it, measured against the first (README:
//! growth sites): the `page_fault_user` and `page_fault_kernel` tracepoints, run at every
//! page fault on the machine, counts each followed process's faults in its `STATS` entry and samples every Nth.
//! It needs no perf event, but every fault of every process pays a hash lookup.
//! Stacks come from frame pointers: `bpf_get_stack` with BPF_F_USER_STACK at faults, and at
//! calls on x86-64 a walk of the user stack that gets past a C library without frame pointers
//! (call_stack.rs; elsewhere `bpf_get_stack`, which unwinds the task's saved user registers
//! from a syscall's fexit or tracepoint alike).

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_get_prandom_u32, bpf_get_stack, bpf_ktime_get_boot_ns, bpf_probe_read_user},
    macros::{btf_tracepoint, map, perf_event},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, PerfEventContext},
};
use memtools_common::{
    MAX_SITE_KEYS, SITE_EXEC_WAKE_GAP_NS, SITE_STACK_DEPTH, SiteCounts, SiteKey, site_cause,
};

use crate::call_stack;
use crate::kernel::{current_task, pagefaults_disabled};
use crate::shared::{atomic_add, current_tgid, stats_of};
use crate::syscalls::{SYSCALL_SP_OFFSET, arg};

/// The recorder's settings, by index (see `config`): written once after loading.
#[map]
pub static SITE_CONFIG: Array<u64> = Array::with_max_entries(config::COUNT, 0);

/// Indices of `SITE_CONFIG`.
pub mod config {
    /// The length of a time bucket, ns (the recorder's sampling interval).
    pub const BUCKET_NS: u32 = 0;
    /// The bytes a sample stands for: the page size times the sample period (a fault sample's
    /// pages; a call smaller than this is sampled with the chance of its share of it).
    pub const SAMPLE_BYTES: u32 = 1;
    /// Non-zero: sample the stack at the brk/mmap calls that grow a followed process.
    pub const CALLS: u32 = 2;
    /// The countdown sampler's period: one stack every this many faults of a process.
    pub const PERIOD: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Counts per (process, cause, bucket, stack), drained by the recorder.
#[map]
pub static SITES: HashMap<SiteKey, SiteCounts> = HashMap::with_max_entries(MAX_SITE_KEYS, 0);

/// The tgids of followed processes that just exec'ed, while the recorder asks for sites: it
/// reads and keeps their maps at once, to name the stacks of a process gone before the next
/// drain (a short one). Full: a process goes without kept maps, nothing else.
#[map]
pub static SITE_EXECS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// When the recorder was last woken for an exec (boot ns, index 0).
#[map]
static SITE_EXECS_WOKEN: Array<u64> = Array::with_max_entries(1, 0);

/// The recorder is woken for an exec at most once in this long; in between, it looks at the
/// ring on its own this often.
const WAKE_GAP_NS: u64 = SITE_EXEC_WAKE_GAP_NS;

/// `BPF_RB_NO_WAKEUP`: the record is queued without waking the reader.
const NO_WAKEUP: u64 = 1;

/// Tells the recorder that followed process `tgid` exec'ed (with growth sites only).
/// Waking the reader is most of what that costs (an interrupt raised for it: 3.3 µs of the
/// exec's 4.7 with `--sites`), so a shell loop's thousand execs a second wake it at most every
/// `WAKE_GAP_NS`; it keeps looking on its own while execs come.
#[inline(always)]
pub fn note_exec(tgid: u32) {
    if !calls_on() {
        return;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let flags = match SITE_EXECS_WOKEN.get_ptr_mut(0) {
        // SAFETY: the map's one value; CPUs racing on it wake the reader once more, no harm.
        Some(last) if now.wrapping_sub(unsafe { *last }) < WAKE_GAP_NS => NO_WAKEUP,
        Some(last) => {
            // SAFETY: as above.
            unsafe { *last = now };
            0
        }
        None => 0,
    };
    let _ = SITE_EXECS.output::<u32>(&tgid, flags);
}

/// Samples dropped because `SITES` was full (index 0).
#[map]
pub static SITES_DROPPED: Array<u64> = Array::with_max_entries(1, 0);

/// Where a key is built: too large for the 512-byte BPF stack.
#[map]
static SITE_SCRATCH: PerCpuArray<SiteKey> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn setting(index: u32, default: u64) -> u64 {
    match SITE_CONFIG.get(index) {
        Some(v) if *v != 0 => *v,
        _ => default,
    }
}

/// Whether the recorder asked for call sites (growth sites, on by default): the one check the
/// mapping hooks make before anything else of sites, after the process was found followed.
#[inline(always)]
pub fn calls_on() -> bool {
    matches!(SITE_CONFIG.get(config::CALLS), Some(v) if *v != 0)
}

/// A brk or mmap call of a followed process grew it by `bytes` of address space: its user
/// stack is counted under `cause`, when the call is sampled (see [`call_weight`]). `regs`:
/// the task's saved user registers. The caller has checked [`calls_on`] first.
#[inline(always)]
pub fn record_call<C: EbpfContext>(ctx: &C, tgid: u32, cause: u32, bytes: u64, regs: *const u8) {
    let bytes = call_weight(bytes);
    if bytes == 0 || regs.is_null() {
        return;
    }
    let Some(key) = fresh_key(tgid, cause) else {
        return;
    };
    // SAFETY: `key` points at this CPU's scratch slot (see `fresh_key`).
    unsafe {
        if call_stack::fill(&mut *key, regs) {
            count(key, bytes);
        } else {
            let sp = arg(regs, &SYSCALL_SP_OFFSET);
            sample_stack(ctx, key, bytes, sp);
        }
    }
}

/// The bytes a call that grew its process by `bytes` is counted for, or 0 when it is not
/// sampled. A call of at least a sample's bytes (`SAMPLE_BYTES`, the growth one fault sample
/// stands for) is always sampled, with its own bytes; a smaller one with the chance
/// `bytes / SAMPLE_BYTES`, standing for a whole sample's bytes. So the bytes are right on
/// average wherever they come from (heapprofd and tcmalloc sample allocations so), large
/// calls are exact, and a starting program's loader, a dozen mappings of a few pages each,
/// costs a stack walk now and then instead of one per mapping (the walk is the dearest thing
/// the kernel side does: README, growth sites).
#[inline(always)]
fn call_weight(bytes: u64) -> u64 {
    let unit = setting(config::SAMPLE_BYTES, 4096 * 127);
    if bytes >= unit {
        return bytes;
    }
    // SAFETY: helpers without arguments.
    let r = unsafe { (u64::from(bpf_get_prandom_u32()) << 32) | u64::from(bpf_get_prandom_u32()) };
    if r % unit < bytes { unit } else { 0 }
}

/// A call noted by a hook with several paths, to be counted at its end: (cause, bytes).
#[map]
static NOTED_CALL: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Notes a brk or mmap call that grew the process by `bytes`, for [`record_noted_call`] at the
/// end of the hook. The caller has checked [`calls_on`] first.
#[inline(always)]
pub fn note_call(cause: u32, bytes: u64) {
    if let Some(slot) = NOTED_CALL.get_ptr_mut(0) {
        // SAFETY: this CPU's slot.
        unsafe { *slot = [u64::from(cause), bytes] };
    }
}

/// Counts the call [`note_call`] noted. A hook with several paths (the mmap lock's) calls this
/// once, after them: the stack walk is then in one place of the program, reached with what was
/// noted read back from a map, so the verifier checks it once rather than once per path (which
/// took it seconds of CPU at every start).
#[inline(always)]
pub fn record_noted_call<C: EbpfContext>(ctx: &C, tgid: u32, regs: *const u8) {
    let Some(slot) = NOTED_CALL.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot.
    let [cause, bytes] = unsafe { *slot };
    record_call(ctx, tgid, cause as u32, bytes, regs);
}

/// Counts one sample of the current user stack of followed process `tgid`.
/// `sp`: the user stack pointer when the context has it (0 otherwise).
#[inline(always)]
pub fn record_site<C: EbpfContext>(ctx: &C, tgid: u32, cause: u32, bytes: u64, sp: u64) {
    if let Some(key) = fresh_key(tgid, cause) {
        // SAFETY: `key` points at this CPU's scratch slot (see `fresh_key`).
        unsafe { sample_stack(ctx, key, bytes, sp) };
    }
}

/// This CPU's scratch key, its frames cleared, for `tgid`'s `cause` in the current bucket.
#[inline(always)]
fn fresh_key(tgid: u32, cause: u32) -> Option<*mut SiteKey> {
    let key = SITE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: `key` points at this CPU's scratch slot; programs do not nest on one CPU for
    // these hooks (perf overflow and syscall entry run with preemption disabled).
    unsafe {
        let mut i = 0;
        while i < SITE_STACK_DEPTH {
            (*key).ips[i] = 0;
            i += 1;
        }
        (*key).tgid = tgid;
        (*key).cause = cause;
        (*key).leaf_return = 0;
        (*key).bucket = bpf_ktime_get_boot_ns() / setting(config::BUCKET_NS, 1_000_000_000);
    }
    Some(key)
}

/// Fills the key with `bpf_get_stack`'s user stack (and the word at `sp`, a frameless leaf's
/// caller) and counts it.
///
/// # Safety
/// `key` is this CPU's scratch slot from [`fresh_key`].
#[inline(always)]
unsafe fn sample_stack<C: EbpfContext>(ctx: &C, key: *mut SiteKey, bytes: u64, sp: u64) {
    unsafe {
        (*key).leaf_return = if sp == 0 {
            0
        } else {
            bpf_probe_read_user(sp as *const u64).unwrap_or(0)
        };
        let got = bpf_get_stack(
            ctx.as_ptr(),
            (*key).ips.as_mut_ptr().cast(),
            (SITE_STACK_DEPTH * 8) as u32,
            BPF_F_USER_STACK as u64,
        );
        if got <= 0 {
            return;
        }
        count(key, bytes);
    }
}

/// Adds one sample of `bytes` to the key's counts.
///
/// # Safety
/// `key` is this CPU's scratch slot, filled.
#[inline(always)]
unsafe fn count(key: *mut SiteKey, bytes: u64) {
    unsafe {
        if let Some(counts) = SITES.get_ptr_mut(&*key) {
            atomic_add(&raw mut (*counts).samples, 1);
            atomic_add(&raw mut (*counts).bytes, bytes);
            return;
        }
        let fresh = SiteCounts { samples: 1, bytes };
        if SITES.insert(&*key, &fresh, 0).is_err()
            && let Some(d) = SITES_DROPPED.get_ptr_mut(0)
        {
            atomic_add(d, 1);
        }
    }
}

/// Every Nth page fault of a followed process (N: the perf event's sample period).
#[perf_event]
pub fn site_fault(ctx: PerfEventContext) -> u32 {
    let tgid = current_tgid();
    if stats_of(tgid).is_some() {
        // SAFETY: the context is the kernel's bpf_perf_event_data; a page fault event taken
        // in user mode carries the user registers.
        #[cfg(bpf_target_arch = "x86_64")]
        let sp = unsafe { (*ctx.ctx).regs.rsp };
        // Elsewhere the leaf's caller is not recovered (see the recorder's `follows_a_call`).
        #[cfg(not(bpf_target_arch = "x86_64"))]
        let sp = 0;
        record_site(
            &ctx,
            tgid,
            site_cause::FAULT,
            setting(config::SAMPLE_BYTES, 4096),
            sp,
        );
    }
    0
}

/// Every Nth page fault of a followed process, counted down here per process (the
/// `countdown` sampler): a fault its code took.
#[btf_tracepoint(function = "page_fault_user")]
pub fn site_fault_countdown(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code): the
    // faulting user registers.
    let regs: *const u8 = ctx.arg(1);
    count_down(&ctx, regs)
}

/// The same for a fault the kernel took on the process's memory on its behalf (a read(2)
/// into a fresh buffer, copy_to_user): the perf event counts those too.
#[btf_tracepoint(function = "page_fault_kernel")]
pub fn site_fault_countdown_kernel(ctx: BtfTracePointContext) -> i32 {
    // Not a probe's fault (our own stack walks read user memory so, and the perf event does
    // not count them either): it would be counted as growth, and nest in the walk.
    if pagefaults_disabled(current_task()) {
        return 0;
    }
    // Kernel registers: the user stack is unwound from the task's saved user registers.
    count_down(&ctx, core::ptr::null())
}

/// Counts a fault of the current process and samples its stack at every Nth. Threads of one
/// process may race on the count: a sample early or late by a fault, never lost.
#[inline(always)]
fn count_down(ctx: &BtfTracePointContext, user_regs: *const u8) -> i32 {
    let tgid = current_tgid();
    let Some(s) = stats_of(tgid) else {
        return 0;
    };
    let period = setting(config::PERIOD, 97);
    // SAFETY: `s` is this process's entry in `STATS`.
    unsafe {
        let seen = (*s).faults_since_sample + 1;
        if seen < period {
            (*s).faults_since_sample = seen;
            return 0;
        }
        (*s).faults_since_sample = 0;
    }
    let sp = if user_regs.is_null() {
        0
    } else {
        arg(user_regs, &SYSCALL_SP_OFFSET)
    };
    record_site(
        ctx,
        tgid,
        site_cause::FAULT,
        setting(config::SAMPLE_BYTES, 4096),
        sp,
    );
    0
}
