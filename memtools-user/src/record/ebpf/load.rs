//! Loading the kernel side: privileges, the kernel's struct layout, the object with its
//! globals, then attaching (attach.rs); every way this can fail says what to do about it.
//!
//! Start and stop are on every wrapped command's critical path, so: the kernel's BTF is read
//! once for our offsets and once by aya (its loader insists, on its own thread meanwhile), no
//! hook needs tracefs unless the syscall hooks must fall back to tracepoints, and every link
//! is taken out of its program so that `Links::detach` can let go of them all at once
//! (detaching a trampoline or a classic tracepoint waits for an RCU grace period; one after
//! another they took most of a second).

use std::time::Duration;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::ProgramError;
use memtools_common::{EPOCH_INDEX, ProcStats};

use super::attach::{
    LIFECYCLE, Links, RSS_EVENTS, SyscallHooks, TIMER, attach_all, attach_group, attach_syscalls,
};
use super::btf::{BtfError, KernelLayout, VMLINUX_BTF, syscall_arch};
use super::scan::Scan;

/// The kernel side, built by build.rs (empty when the toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memtools"));

/// Where tracefs is mounted when it is not (only the tracepoint fallback needs it).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Why the eBPF backend cannot run. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "the eBPF object was not built (the pinned nightly or bpf-linker was missing at build \
         time); run `cargo xtask setup` and rebuild"
    )]
    NotBuilt,
    #[error("loading eBPF programs needs root or CAP_BPF and CAP_PERFMON (running as uid {0})")]
    NotPrivileged(u32),
    #[error("tracefs is not mounted at {TRACEFS} and mounting it failed: {0}")]
    Tracefs(std::io::Error),
    #[error("the kernel's struct layout is unknown: {0}")]
    Btf(#[from] BtfError),
    #[error("the kernel's BTF did not load: {0}")]
    KernelBtf(Box<aya::BtfError>),
    #[error("the eBPF programs did not load: {0}")]
    Load(Box<aya::EbpfError>),
    #[error("program `{program}` did not {what}: {error}")]
    Program {
        program: &'static str,
        what: &'static str,
        error: Box<ProgramError>,
    },
    #[error("eBPF map `{0}` is missing or of the wrong type")]
    MissingMap(&'static str),
    #[error("eBPF map `{map}`: {error}")]
    Map {
        map: &'static str,
        error: Box<aya::maps::MapError>,
    },
    #[error("the task scan: {0}")]
    Scan(std::io::Error),
    #[error("MEMTOOLS_EBPF_MAPS: `{0}` is not NAME=ENTRIES")]
    MapSize(String),
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
}

/// The loaded kernel side and the maps the recorder uses.
pub struct Loaded {
    /// Owns the programs and maps (the links are in `links`).
    pub bpf: aya::Ebpf,
    pub links: Links,
    pub scan: Scan,
    pub stats: BpfHashMap<MapData, u32, ProcStats>,
    pub epoch: Array<MapData, u32>,
    pub counters: Array<MapData, u64>,
    pub dirty: RingBuf<MapData>,
    pub life: RingBuf<MapData>,
    pub syscalls: SyscallHooks,
}

/// Whether this process may load tracing programs: root, or CAP_BPF and CAP_PERFMON.
pub fn privileged() -> Result<(), EbpfError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        return Ok(());
    }
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_BPF) && has(CAP_PERFMON) {
        Ok(())
    } else {
        Err(EbpfError::NotPrivileged(uid))
    }
}

fn take_map<T>(
    bpf: &mut aya::Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, EbpfError> {
    let map = bpf.take_map(name).ok_or(EbpfError::MissingMap(name))?;
    convert(map).map_err(|e| EbpfError::Map {
        map: name,
        error: Box::new(e),
    })
}

/// Map sizes other than the built-in ones, `NAME=ENTRIES,...` (MEMTOOLS_EBPF_MAPS: to see
/// how recording copes when a map or queue fills up, e.g. `STATS=8` or `LIFE=4096` bytes).
fn map_sizes(spec: &str) -> Result<Vec<(&str, u32)>, EbpfError> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.split_once('=')
                .and_then(|(name, n)| Some((name.trim(), n.trim().parse().ok()?)))
                .ok_or_else(|| EbpfError::MapSize(item.to_string()))
        })
        .collect()
}

/// Loads and attaches everything; the `rss_stat` hook only with `rss_events`; the per-CPU
/// timer fires every `tick`. `skip` names programs not to attach (to see how recording copes
/// without them, and what each costs); `maps` resizes maps (see [`map_sizes`]).
pub fn load(
    follow_all: bool,
    rss_events: bool,
    tick: Duration,
    page_size: u32,
    skip: &str,
    maps: &str,
) -> Result<Loaded, EbpfError> {
    // Privileges first: an unprivileged user learns what they can change.
    privileged()?;
    if OBJECT.is_empty() {
        return Err(EbpfError::NotBuilt);
    }
    let skip: Vec<&str> = skip.split(',').filter(|s| !s.is_empty()).collect();
    let maps = map_sizes(maps)?;
    // aya's loader reads and parses the kernel's BTF itself as it is made (there is no way to
    // hand it ours first): made on its own thread, that overlaps with our own reading.
    let making_loader = std::thread::Builder::new()
        .name("ebpf-loader".into())
        .spawn(aya::EbpfLoader::new);
    let data = std::fs::read(VMLINUX_BTF).map_err(|e| EbpfError::Btf(BtfError::Read(e)))?;
    let layout = KernelLayout::from_btf(&data)?;
    let kernel_btf = aya::Btf::parse(&data, aya::Endianness::default())
        .map_err(|e| EbpfError::KernelBtf(Box::new(e)))?;
    drop(data);
    let follow_all = u8::from(follow_all);
    let regs = layout.syscall_regs.unwrap_or_default();
    let arch = syscall_arch();
    let nr = |f: fn(&super::btf::SyscallArch) -> u32| arch.as_ref().map_or(u32::MAX, f);
    let globals = [
        ("RSS_COUNT_OFFSET", layout.rss_count_offset),
        ("RSS_COUNTER_SIZE", layout.rss_counter_size),
        ("MM_HIWATER_OFFSET", layout.mm_hiwater_offset),
        ("MM_TOTAL_VM_OFFSET", layout.mm_total_vm_offset),
        ("TASK_MM_OFFSET", layout.task_mm_offset),
        ("TASK_PID_OFFSET", layout.task_pid_offset),
        ("TASK_TGID_OFFSET", layout.task_tgid_offset),
        ("TASK_START_OFFSET", layout.task_start_offset),
        ("TASK_PARENT_OFFSET", layout.task_parent_offset),
        ("TASK_SIGNAL_OFFSET", layout.task_signal_offset),
        ("SIGNAL_LIVE_OFFSET", layout.signal_live_offset),
        ("SIGNAL_MAXRSS_OFFSET", layout.signal_maxrss_offset),
        ("SIGNAL_NR_THREADS_OFFSET", layout.signal_nr_threads_offset),
        ("TASK_FILES_OFFSET", layout.task_files_offset),
        ("FILES_NEXT_FD_OFFSET", layout.files_next_fd_offset),
        ("MM_BRK_OFFSET", layout.mm_brk_offset),
        (
            "TASK_PAGEFAULT_DISABLED_OFFSET",
            layout.task_pagefault_disabled_offset.unwrap_or(u32::MAX),
        ),
        (
            "MM_START_CODE_OFFSET",
            layout.mm_code_offsets.map_or(u32::MAX, |o| o[0]),
        ),
        (
            "MM_END_CODE_OFFSET",
            layout.mm_code_offsets.map_or(u32::MAX, |o| o[1]),
        ),
        (
            "MM_MMAP_BASE_OFFSET",
            layout.mm_code_offsets.map_or(u32::MAX, |o| o[2]),
        ),
        ("SYSCALL_NR_OFFSET", regs.nr),
        ("SYSCALL_ARG0_OFFSET", regs.arg0),
        ("SYSCALL_ARG1_OFFSET", regs.arg1),
        ("SYSCALL_ARG2_OFFSET", regs.arg2),
        ("SYSCALL_ARG3_OFFSET", regs.arg3),
        ("SYSCALL_SP_OFFSET", regs.sp),
        ("SYSCALL_IP_OFFSET", regs.ip),
        ("SYSCALL_FP_OFFSET", regs.fp),
        ("NR_MMAP", nr(|a| a.mmap)),
        ("NR_MUNMAP", nr(|a| a.munmap)),
        ("NR_BRK", nr(|a| a.brk)),
        ("NR_MREMAP", nr(|a| a.mremap)),
        ("NR_MADVISE", nr(|a| a.madvise)),
        ("PAGE_SIZE", page_size),
    ];
    let mut loader: aya::EbpfLoader<'_> = match making_loader.map(|t| t.join()) {
        Ok(Ok(loader)) => loader,
        _ => aya::EbpfLoader::new(),
    };
    loader.btf(Some(&kernel_btf));
    for (name, value) in &globals {
        loader.override_global(name, value, true);
    }
    for &(name, entries) in &maps {
        loader.map_max_entries(name, entries);
    }
    let mut bpf = loader
        .override_global("FOLLOW_ALL", &follow_all, true)
        .load(OBJECT)
        .map_err(|e| EbpfError::Load(Box::new(e)))?;
    let stats = take_map(&mut bpf, "STATS", BpfHashMap::try_from)?;
    let mut epoch: Array<MapData, u32> = take_map(&mut bpf, "EPOCH", Array::try_from)?;
    let counters = take_map(&mut bpf, "COUNTERS", Array::try_from)?;
    let dirty = take_map(&mut bpf, "DIRTY", RingBuf::try_from)?;
    let life = take_map(&mut bpf, "LIFE", RingBuf::try_from)?;
    // Epoch 0 is what a fresh counter holds: start at 1 so its first change is queued.
    epoch.set(EPOCH_INDEX, 1, 0).map_err(|e| EbpfError::Map {
        map: "EPOCH",
        error: Box::new(e),
    })?;
    let mut links = Links::default();
    attach_all(&mut bpf, LIFECYCLE, &kernel_btf, &skip, &mut links)?;
    attach_group(&mut bpf, TIMER, &kernel_btf, &skip, tick, &mut links)?;
    if rss_events {
        attach_all(&mut bpf, RSS_EVENTS, &kernel_btf, &skip, &mut links)?;
    }
    // Without knowing where a call's arguments are: the syscall tracepoints, straight away.
    let no_regs = (layout.syscall_regs.is_none() || arch.is_none())
        .then_some("the kernel side does not know this architecture's syscall registers");
    let syscalls = attach_syscalls(&mut bpf, &kernel_btf, &skip, no_regs, &mut links);
    let scan = Scan::load(&mut bpf, &kernel_btf, skip.contains(&"scan"))?;
    Ok(Loaded {
        bpf,
        links,
        scan,
        stats,
        epoch,
        counters,
        dirty,
        life,
        syscalls,
    })
}
