//! Growth sites: the user stack of a followed process where it grew, counted in the kernel per
//! (process, cause, time bucket, stack), which the recorder drains and symbolizes.
//!
//! `site_fault` runs on a perf software PAGE_FAULTS event with a sample period N: the kernel
//! counts faults in the perf event and runs the program only every Nth one, and the recorder
//! opens the event on the recorded command with `inherit` (so nothing runs for processes
//! outside its tree) or per CPU for `--all` (then the `STATS` lookup keeps it to followed
//! processes). [`record_site`] is also what the brk/mmap hooks call when a call grew the
//! process. Stacks come from frame pointers (`bpf_get_stack` with BPF_F_USER_STACK).

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_get_stack, bpf_ktime_get_boot_ns, bpf_probe_read_user},
    macros::{map, perf_event},
    maps::{Array, HashMap, PerCpuArray},
    programs::PerfEventContext,
};
use memtools_common::{MAX_SITE_KEYS, SITE_STACK_DEPTH, SiteCounts, SiteKey, site_cause};

use crate::shared::{atomic_add, current_tgid, stats_of};

/// The recorder's settings, by index (see `config`): written once after loading.
#[map]
pub static SITE_CONFIG: Array<u64> = Array::with_max_entries(config::COUNT, 0);

/// Indices of `SITE_CONFIG`.
pub mod config {
    /// The length of a time bucket, ns (the recorder's sampling interval).
    pub const BUCKET_NS: u32 = 0;
    /// The bytes a fault sample stands for: the page size times the sample period.
    pub const FAULT_BYTES: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Counts per (process, cause, bucket, stack), drained by the recorder.
#[map]
pub static SITES: HashMap<SiteKey, SiteCounts> = HashMap::with_max_entries(MAX_SITE_KEYS, 0);

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

/// Counts one sample of the current user stack of followed process `tgid`.
/// `sp`: the user stack pointer when the context has it (0 otherwise).
#[inline(always)]
pub fn record_site<C: EbpfContext>(ctx: &C, tgid: u32, cause: u32, bytes: u64, sp: u64) {
    let Some(key) = SITE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
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
        (*key).leaf_return = if sp == 0 {
            0
        } else {
            bpf_probe_read_user(sp as *const u64).unwrap_or(0)
        };
        (*key).bucket = bpf_ktime_get_boot_ns() / setting(config::BUCKET_NS, 1_000_000_000);
        let got = bpf_get_stack(
            ctx.as_ptr(),
            (*key).ips.as_mut_ptr().cast(),
            (SITE_STACK_DEPTH * 8) as u32,
            BPF_F_USER_STACK as u64,
        );
        if got <= 0 {
            return;
        }
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
            setting(config::FAULT_BYTES, 4096),
            sp,
        );
    }
    0
}
