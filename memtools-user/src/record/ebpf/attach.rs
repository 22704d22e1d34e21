//! Attaching the kernel side's programs: which hook each program takes, in groups that are
//! attached all or none, the mapping calls' fallbacks, and the links, taken out of their
//! programs so they can be let go of all at once.

use std::path::Path;
use std::time::Duration;

use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::{BtfTracePoint, FEntry, FExit, ProgramError, TracePoint};

use super::btf::syscall_arch;
use super::load::{EbpfError, TRACEFS};

/// How a program attaches.
#[derive(Clone, Copy)]
pub(super) enum Hook {
    /// A BTF tracepoint, by name: no tracefs, no trace record built.
    Btf(&'static str),
    /// fentry on this architecture's entry function of a system call (`__x64_sys_NAME`).
    SyscallEntry(&'static str),
    /// fexit on it.
    SyscallExit(&'static str),
    /// A classic tracepoint: (category, name); needs tracefs for its id.
    Classic(&'static str, &'static str),
    /// A CPU-clock timer on every CPU, firing with the period given to [`attach_group`].
    Timer,
}

/// The process tree: forks, execs, exits. Recording needs them all.
pub(super) const LIFECYCLE: &[(&str, Hook)] = &[
    ("task_newtask", Hook::Btf("task_newtask")),
    ("sched_process_exec", Hook::Btf("sched_process_exec")),
    ("sched_process_exit", Hook::Btf("sched_process_exit")),
];

/// The per-CPU timer that looks at the running process (memtools-ebpf's rss.rs).
pub(super) const TIMER: &[(&str, Hook)] = &[("cpu_tick", Hook::Timer)];

/// Only with --rss-events (see memtools-ebpf's rss.rs for what it costs).
pub(super) const RSS_EVENTS: &[(&str, Hook)] = &[("rss_stat", Hook::Btf("rss_stat"))];

/// The mapping calls, by fentry/fexit: only the calls themselves pay.
pub(super) const SYSCALLS_ENTRY: &[(&str, Hook)] = &[
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
pub(super) const SYSCALLS_MMAP_LOCK: &[(&str, Hook)] =
    &[("mmap_locked", Hook::Btf("mmap_lock_acquire_returned"))];

/// The same by syscall tracepoints, the last resort: every system call on the machine then
/// takes the traced path.
pub(super) const SYSCALLS_TRACEPOINTS: &[(&str, Hook)] = &[
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
    fn append(&mut self, other: &mut Links) {
        self.0.append(&mut other.0);
    }

    pub(super) fn push(&mut self, link: impl Send + 'static) {
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
pub(super) fn attach_all(
    bpf: &mut aya::Ebpf,
    group: &[(&'static str, Hook)],
    btf: &aya::Btf,
    skip: &[&str],
    links: &mut Links,
) -> Result<(), EbpfError> {
    attach_group(bpf, group, btf, skip, Duration::ZERO, links)
}

/// As [`attach_all`], with the timer's period.
pub(super) fn attach_group(
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
    links.append(&mut attached);
    Ok(())
}

/// The mapping calls' hooks: fentry where it loads, else the mmap lock's tracepoint, else
/// syscall tracepoints, else none. `no_regs` says why only the last two can be tried (the
/// kernel side does not know where this architecture keeps a call's arguments).
pub(super) fn attach_syscalls(
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
