//! memtools' kernel side: per-process (tgid) memory counters kept in maps, which the recorder
//! drains each interval. One module per hook family (lifecycle, syscalls, rss, scan), the maps
//! they share in shared.rs, what they read from kernel structs in kernel.rs. It builds for the
//! bpf target only and depends on aya-ebpf and memtools-common, never on std.
//!
//! Nothing here runs on a path every process takes (each context switch, each system call,
//! each page fault) unless the user asks for it (`--rss-events`): the cost of recording falls
//! on the calls that matter to memory and on the recorder's own scan.
//!
//! Only followed processes cost more than one hash lookup per event: a process is followed when
//! it has counters in `STATS`; the recorder creates them for the processes it starts with, and
//! `lifecycle` for their children as they fork (or for every new process with `FOLLOW_ALL`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The bpf target has no atomic compare-and-swap, so no AtomicU64::fetch_add: counters shared
// by a process's threads use the intrinsic, which LLVM lowers to BPF's atomic add.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod call_stack;
#[cfg(target_arch = "bpf")]
mod counts;
#[cfg(target_arch = "bpf")]
mod kernel;
#[cfg(target_arch = "bpf")]
mod lifecycle;
#[cfg(target_arch = "bpf")]
mod rss;
#[cfg(target_arch = "bpf")]
mod scan;
#[cfg(target_arch = "bpf")]
mod shared;
#[cfg(target_arch = "bpf")]
mod sites;
#[cfg(target_arch = "bpf")]
mod syscalls;

/// The eBPF object is built only for the bpf target; a host build (clippy, `cargo check
/// --workspace`) gets this empty program instead.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic, so this is never called.
    loop {}
}

/// GPL-compatible, as the tracing helpers (bpf_probe_read_kernel, ...) require.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
