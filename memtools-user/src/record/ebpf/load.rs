//! Loading the kernel side: privileges, the kernel's struct layout, and attaching each
//! program; every way this can fail says what to do about it.
//!
//! Start and stop are on every wrapped command's critical path, so: the kernel's BTF is read
//! once for our offsets and once by aya (its loader insists), no hook needs tracefs unless the
//! syscall hooks must fall back to tracepoints, and every link is taken out of its program so
//! that [`Links::detach`] can let go of them all at once (detaching a trampoline or a classic
//! tracepoint waits for an RCU grace period; one after another they took most of a second).

use std::path::Path;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use std::time::Duration;

use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::{BtfTracePoint, FEntry, FExit, ProgramError, TracePoint};
use memtools_common::{EPOCH_INDEX, ProcStats};

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

/// How a program attaches.
#[derive(Clone, Copy)]
enum Hook {
    /// A BTF tracepoint, by name: no tracefs, no trace record built.
    Btf(&'static str),
    /// fentry on this architecture's entry function of a system call (`__x64_sys_NAME`).
    SyscallEntry(&'static str),
    /// fexit on it.
    SyscallExit(&'static str),
    /// A classic tracepoint: (category, name); needs tracefs for its id.
    Classic(&'static str, &'static str),
    /// A CPU-clock timer on every CPU, firing with the period given to [`load`].
    Timer,
}

/// The process tree: forks, execs, exits. Recording needs them all.
const LIFECYCLE: &[(&str, Hook)] = &[
    ("task_newtask", Hook::Btf("task_newtask")),
    ("sched_process_exec", Hook::Btf("sched_process_exec")),
    ("sched_process_exit", Hook::Btf("sched_process_exit")),
];

/// The per-CPU timer that looks at the running process (memtools-ebpf's rss.rs).
const TIMER: &[(&str, Hook)] = &[("cpu_tick", Hook::Timer)];

/// Only with --rss-events (see memtools-ebpf's rss.rs for what it costs).
const RSS_EVENTS: &[(&str, Hook)] = &[("rss_stat", Hook::Btf("rss_stat"))];

/// The mapping calls, by fentry/fexit: only the calls themselves pay.
const SYSCALLS_ENTRY: &[(&str, Hook)] = &[
    ("mmap_exit", Hook::SyscallExit("mmap")),
    ("munmap_entry", Hook::SyscallEntry("munmap")),
    ("munmap_exit", Hook::SyscallExit("munmap")),
    ("brk_entry", Hook::SyscallEntry("brk")),
    ("brk_exit", Hook::SyscallExit("brk")),
    ("madvise_entry", Hook::SyscallEntry("madvise")),
    ("mremap_entry", Hook::SyscallEntry("mremap")),
    ("mremap_exit", Hook::SyscallExit("mremap")),
];

/// The same through the mmap lock they take, where fentry cannot load (memtools-ebpf's
/// syscalls/mmap_lock.rs).
const SYSCALLS_MMAP_LOCK: &[(&str, Hook)] =
    &[("mmap_locked", Hook::Btf("mmap_lock_acquire_returned"))];

/// The same by syscall tracepoints, the last resort: every system call on the machine then
/// takes the traced path.
const SYSCALLS_TRACEPOINTS: &[(&str, Hook)] = &[
    (
        "sys_enter_mmap",
        Hook::Classic("syscalls", "sys_enter_mmap"),
    ),
    ("sys_exit_mmap", Hook::Classic("syscalls", "sys_exit_mmap")),
    (
        "sys_enter_munmap",
        Hook::Classic("syscalls", "sys_enter_munmap"),
    ),
    (
        "sys_exit_munmap",
        Hook::Classic("syscalls", "sys_exit_munmap"),
    ),
    ("sys_enter_brk", Hook::Classic("syscalls", "sys_enter_brk")),
    ("sys_exit_brk", Hook::Classic("syscalls", "sys_exit_brk")),
    (
        "sys_enter_madvise",
        Hook::Classic("syscalls", "sys_enter_madvise"),
    ),
    (
        "sys_enter_mremap",
        Hook::Classic("syscalls", "sys_enter_mremap"),
    ),
];

/// How the mapping calls are hooked, for the session's backend reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallHooks {
    /// fentry/fexit on the syscall entry functions.
    Entry,
    /// The mmap lock's tracepoint, and why fentry could not be used.
    MmapLock(String),
    /// Syscall tracepoints, and why neither of the above could be used.
    Tracepoints(String),
    /// Not hooked (mmap/munmap/brk counts are absent), and why.
    None(String),
}

impl SyscallHooks {
    /// A clause for the session's backend reason.
    pub fn describe(&self) -> String {
        match self {
            SyscallHooks::Entry => "mm syscalls hooked by fentry".to_string(),
            SyscallHooks::MmapLock(why) => format!(
                "mm syscalls seen through the mmap_lock tracepoint, counted as called (fentry \
                 could not be used: {why})"
            ),
            SyscallHooks::Tracepoints(why) => format!(
                "mm syscalls hooked by syscall tracepoints ({why}): every system call on the \
                 machine takes the kernel's slower traced path while recording"
            ),
            SyscallHooks::None(why) => format!("mm syscalls not hooked ({why})"),
        }
    }
}

/// Every attached link, out of its program, so they can be let go of all at once.
#[derive(Default)]
pub struct Links(Vec<Box<dyn Send>>);

impl Links {
    fn push(&mut self, link: impl Send + 'static) {
        self.0.push(Box::new(link));
    }

    /// Detaches everything, each link on its own thread: detaching a trampoline or a classic
    /// tracepoint waits for an RCU grace period, and waits made together end together.
    pub fn detach(&mut self) {
        let links = std::mem::take(&mut self.0);
        if links.len() <= 1 {
            return;
        }
        std::thread::scope(|s| {
            for link in links {
                // A thread that cannot start leaves its link to be dropped here, in turn.
                let _ = std::thread::Builder::new().spawn_scoped(s, move || drop(link));
            }
        });
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.detach();
    }
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

/// Why one program could not be used.
type Failure = (&'static str, ProgramError);

/// Loads and attaches one program; its link goes into `links`.
fn attach(
    bpf: &mut aya::Ebpf,
    name: &str,
    hook: Hook,
    btf: &aya::Btf,
    tick: Duration,
    links: &mut Links,
) -> Result<(), Failure> {
    let program = bpf
        .program_mut(name)
        .ok_or(("exist", ProgramError::UnexpectedProgramType))?;
    let entry_function = |call: &str| -> Result<String, Failure> {
        syscall_arch()
            .map(|a| format!("{}{call}", a.prefix))
            .ok_or((
                "find this architecture's syscall functions",
                ProgramError::UnexpectedProgramType,
            ))
    };
    match hook {
        Hook::Btf(tracepoint) => {
            let p: &mut BtfTracePoint =
                program.try_into().map_err(|e| ("be a BTF tracepoint", e))?;
            p.load(tracepoint, btf).map_err(|e| ("load", e))?;
            let id = p.attach().map_err(|e| ("attach", e))?;
            links.push(p.take_link(id).map_err(|e| ("attach", e))?);
        }
        Hook::SyscallEntry(call) => {
            let p: &mut FEntry = program
                .try_into()
                .map_err(|e| ("be an fentry program", e))?;
            p.load(&entry_function(call)?, btf)
                .map_err(|e| ("load", e))?;
            let id = p.attach().map_err(|e| ("attach", e))?;
            links.push(p.take_link(id).map_err(|e| ("attach", e))?);
        }
        Hook::SyscallExit(call) => {
            let p: &mut FExit = program.try_into().map_err(|e| ("be an fexit program", e))?;
            p.load(&entry_function(call)?, btf)
                .map_err(|e| ("load", e))?;
            let id = p.attach().map_err(|e| ("attach", e))?;
            links.push(p.take_link(id).map_err(|e| ("attach", e))?);
        }
        Hook::Timer => {
            let p: &mut PerfEvent = program
                .try_into()
                .map_err(|e| ("be a perf event program", e))?;
            p.load().map_err(|e| ("load", e))?;
            let cpus = aya::util::online_cpus()
                .map_err(|(_, e)| ("list the online CPUs", ProgramError::IOError(e)))?;
            let period = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
            for cpu in cpus {
                let id = p
                    .attach(
                        PerfEventConfig::Software(SoftwareEvent::CpuClock),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        SamplePolicy::Period(period),
                        false,
                    )
                    .map_err(|e| ("attach", e))?;
                links.push(p.take_link(id).map_err(|e| ("attach", e))?);
            }
        }
        Hook::Classic(category, tracepoint) => {
            let p: &mut TracePoint = program.try_into().map_err(|e| ("be a tracepoint", e))?;
            p.load().map_err(|e| ("load", e))?;
            let id = p.attach(category, tracepoint).map_err(|e| ("attach", e))?;
            links.push(p.take_link(id).map_err(|e| ("attach", e))?);
        }
    }
    Ok(())
}

/// Attaches a group of programs, all or none (what was attached is detached again).
fn attach_all(
    bpf: &mut aya::Ebpf,
    group: &[(&'static str, Hook)],
    btf: &aya::Btf,
    skip: &[&str],
    links: &mut Links,
) -> Result<(), EbpfError> {
    attach_group(bpf, group, btf, skip, Duration::ZERO, links)
}

/// As [`attach_all`], with the timer's period.
fn attach_group(
    bpf: &mut aya::Ebpf,
    group: &[(&'static str, Hook)],
    btf: &aya::Btf,
    skip: &[&str],
    tick: Duration,
    links: &mut Links,
) -> Result<(), EbpfError> {
    let mut attached = Links::default();
    for &(name, hook) in group {
        if skip.contains(&name) {
            continue;
        }
        attach(bpf, name, hook, btf, tick, &mut attached).map_err(|(what, error)| {
            EbpfError::Program {
                program: name,
                what,
                error: Box::new(error),
            }
        })?;
    }
    links.0.append(&mut attached.0);
    Ok(())
}

/// The mapping calls' hooks: fentry where it loads, else the mmap lock's tracepoint, else
/// syscall tracepoints, else none. `no_regs` says why only the last two can be tried (the
/// kernel side does not know where this architecture keeps a call's arguments).
fn attach_syscalls(
    bpf: &mut aya::Ebpf,
    btf: &aya::Btf,
    skip: &[&str],
    no_regs: Option<&str>,
    links: &mut Links,
) -> SyscallHooks {
    let skipped = |group: &[(&str, Hook)]| group.iter().any(|(n, _)| skip.contains(n));
    let mut attempt = |group: &[(&'static str, Hook)]| -> Result<(), String> {
        if let Some(why) = no_regs {
            Err(why.to_string())
        } else if skipped(group) {
            Err("skipped by MEMTOOLS_EBPF_SKIP".to_string())
        } else {
            attach_all(bpf, group, btf, skip, links).map_err(|e| e.to_string())
        }
    };
    let Err(no_entry) = attempt(SYSCALLS_ENTRY) else {
        return SyscallHooks::Entry;
    };
    let no_lock = match attempt(SYSCALLS_MMAP_LOCK) {
        Ok(()) => return SyscallHooks::MmapLock(no_entry),
        Err(e) => e,
    };
    let why =
        format!("fentry could not be used: {no_entry}; nor the mmap_lock tracepoint: {no_lock}");
    if skipped(SYSCALLS_TRACEPOINTS) {
        return SyscallHooks::None(format!("{why}; tracepoints skipped by MEMTOOLS_EBPF_SKIP"));
    }
    let tracepoints =
        ensure_tracefs().and_then(|()| attach_all(bpf, SYSCALLS_TRACEPOINTS, btf, skip, links));
    match tracepoints {
        Ok(()) => SyscallHooks::Tracepoints(why),
        Err(e) => SyscallHooks::None(format!("{why}; tracepoints: {e}")),
    }
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
        ("MM_BRK_OFFSET", layout.mm_brk_offset),
        ("SYSCALL_NR_OFFSET", regs.nr),
        ("SYSCALL_ARG1_OFFSET", regs.arg1),
        ("SYSCALL_ARG2_OFFSET", regs.arg2),
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
