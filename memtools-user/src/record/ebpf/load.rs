//! Loading the kernel side: privileges, tracefs, the kernel's struct layout, and attaching
//! each program; every way this can fail says what to do about it.

use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::{BtfTracePoint, ProgramError, TracePoint};
use memtools_common::{EPOCH_INDEX, ProcStats};

use super::btf::{BtfError, KernelLayout};

/// The kernel side, built by build.rs (empty when the toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memtools"));

/// Where tracefs is mounted when it is not.
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
    #[error("no process with pid {0}")]
    NoSuchPid(u32),
}

/// How a program attaches.
enum Hook {
    /// A classic tracepoint: (category, name); needs tracefs for its id.
    Classic(&'static str, &'static str),
    /// A BTF tracepoint, by name: no tracefs, no trace record built.
    Btf(&'static str),
    /// A CPU-clock timer on every CPU, this many times a second.
    Timer(u64),
}

/// Programs, their hooks, and whether recording can go on without them (the syscall ones
/// only add metrics).
const PROGRAMS: &[(&str, Hook, bool)] = &[
    ("task_newtask", Hook::Classic("task", "task_newtask"), true),
    (
        "sched_process_exec",
        Hook::Classic("sched", "sched_process_exec"),
        true,
    ),
    (
        "sched_process_exit",
        Hook::Classic("sched", "sched_process_exit"),
        true,
    ),
    ("sched_switch", Hook::Btf("sched_switch"), true),
    ("cpu_tick", Hook::Timer(10), true),
    // Only with --rss-events (see memtools-ebpf's rss.rs for what it costs).
    ("rss_stat", Hook::Btf("rss_stat"), true),
    (
        "sys_enter_mmap",
        Hook::Classic("syscalls", "sys_enter_mmap"),
        false,
    ),
    (
        "sys_exit_mmap",
        Hook::Classic("syscalls", "sys_exit_mmap"),
        false,
    ),
    (
        "sys_enter_munmap",
        Hook::Classic("syscalls", "sys_enter_munmap"),
        false,
    ),
    (
        "sys_exit_munmap",
        Hook::Classic("syscalls", "sys_exit_munmap"),
        false,
    ),
    (
        "sys_enter_brk",
        Hook::Classic("syscalls", "sys_enter_brk"),
        false,
    ),
    (
        "sys_exit_brk",
        Hook::Classic("syscalls", "sys_exit_brk"),
        false,
    ),
    (
        "sys_enter_madvise",
        Hook::Classic("syscalls", "sys_enter_madvise"),
        false,
    ),
];

/// The loaded kernel side and the maps the recorder uses.
pub struct Loaded {
    /// Owns the programs and their links: dropping it detaches everything.
    pub bpf: aya::Ebpf,
    pub stats: BpfHashMap<MapData, u32, ProcStats>,
    pub epoch: Array<MapData, u32>,
    pub counters: Array<MapData, u64>,
    pub dirty: RingBuf<MapData>,
    pub life: RingBuf<MapData>,
    /// Whether the mmap/munmap/brk programs are attached.
    pub has_syscalls: bool,
}

/// Whether this process may load tracing programs: root, or CAP_BPF and CAP_PERFMON.
fn privileged() -> Result<(), EbpfError> {
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

/// Mounts tracefs where the tracepoints' ids are read, unless it (or debugfs' copy) is there.
fn ensure_tracefs() -> Result<(), EbpfError> {
    let has_events = |p: &str| Path::new(p).join("events").is_dir();
    if has_events(TRACEFS) || has_events("/sys/kernel/debug/tracing") {
        return Ok(());
    }
    // SAFETY: NUL-terminated literals; mount(2) reads them only during the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(EbpfError::Tracefs(std::io::Error::last_os_error()))
    }
}

/// The offset of `group_dead` in sched_process_exit's record, 0 when the kernel has none.
fn exit_group_dead_offset() -> u32 {
    let format = [TRACEFS, "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|t| {
            std::fs::read_to_string(format!("{t}/events/sched/sched_process_exit/format")).ok()
        })
        .unwrap_or_default();
    format
        .lines()
        .find(|l| l.contains(" group_dead;"))
        .and_then(|l| l.split("offset:").nth(1))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
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

/// Loads and attaches everything; the `rss_stat` hook only with `rss_events`. `skip` names
/// programs not to attach (to see how recording copes without the optional ones).
pub fn load(
    follow_all: bool,
    rss_events: bool,
    page_size: u32,
    skip: &str,
) -> Result<Loaded, EbpfError> {
    // Privileges first: an unprivileged user learns what they can change.
    privileged()?;
    if OBJECT.is_empty() {
        return Err(EbpfError::NotBuilt);
    }
    ensure_tracefs()?;
    let layout = KernelLayout::of_running_kernel()?;
    let follow_all = u8::from(follow_all);
    let group_dead = exit_group_dead_offset();
    let mut bpf = aya::EbpfLoader::new()
        .override_global("FOLLOW_ALL", &follow_all, true)
        .override_global("EXIT_GROUP_DEAD_OFFSET", &group_dead, true)
        .override_global("RSS_COUNT_OFFSET", &layout.rss_count_offset, true)
        .override_global("RSS_COUNTER_SIZE", &layout.rss_counter_size, true)
        .override_global("TASK_MM_OFFSET", &layout.task_mm_offset, true)
        .override_global("PAGE_SIZE", &page_size, true)
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
    let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| EbpfError::KernelBtf(Box::new(e)))?;
    let mut has_syscalls = true;
    for (name, hook, required) in PROGRAMS {
        if *name == "rss_stat" && !rss_events {
            continue;
        }
        if skip.split(',').any(|s| s == *name) {
            has_syscalls &= *required;
            continue;
        }
        let attached = (|| -> Result<(), (&'static str, ProgramError)> {
            let program = bpf
                .program_mut(name)
                .ok_or(("exist", ProgramError::UnexpectedProgramType))?;
            match hook {
                Hook::Btf(tracepoint) => {
                    let program: &mut BtfTracePoint =
                        program.try_into().map_err(|e| ("be a BTF tracepoint", e))?;
                    program
                        .load(tracepoint, &kernel_btf)
                        .map_err(|e| ("load", e))?;
                    program.attach().map_err(|e| ("attach", e))?;
                }
                Hook::Timer(hz) => {
                    let program: &mut PerfEvent = program
                        .try_into()
                        .map_err(|e| ("be a perf event program", e))?;
                    program.load().map_err(|e| ("load", e))?;
                    let cpus = aya::util::online_cpus()
                        .map_err(|(_, e)| ("list the online CPUs", ProgramError::IOError(e)))?;
                    for cpu in cpus {
                        program
                            .attach(
                                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                                PerfEventScope::AllProcessesOneCpu { cpu },
                                SamplePolicy::Frequency(*hz),
                                false,
                            )
                            .map_err(|e| ("attach", e))?;
                    }
                }
                Hook::Classic(category, tracepoint) => {
                    let program: &mut TracePoint =
                        program.try_into().map_err(|e| ("be a tracepoint", e))?;
                    program.load().map_err(|e| ("load", e))?;
                    program
                        .attach(category, tracepoint)
                        .map_err(|e| ("attach", e))?;
                }
            }
            Ok(())
        })();
        match attached {
            Ok(()) => {}
            Err((what, source)) if *required => {
                return Err(EbpfError::Program {
                    program: name,
                    what,
                    error: Box::new(source),
                });
            }
            Err(_) => has_syscalls = false,
        }
    }
    Ok(Loaded {
        bpf,
        stats,
        epoch,
        counters,
        dirty,
        life,
        has_syscalls,
    })
}
