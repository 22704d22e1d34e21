//! The five workloads, and the programs the runs need.

use std::ffi::OsString;
use std::path::PathBuf;

/// A workload: its name, what it does, and the command that runs it.
pub(crate) struct Workload {
    pub name: &'static str,
    pub what: &'static str,
    /// Runs itself under `bench __timed`, or times itself (prints its own TIMING line).
    pub command: fn(&Tools) -> Vec<OsString>,
    /// The same for a tracer too slow to run it whole, when it differs (a hundredth of the
    /// work, its time given for the whole).
    pub slow_command: Option<fn(&Tools) -> Vec<OsString>>,
    /// Measured with heaptrack and bpftrace too.
    pub allocates: bool,
}

/// The programs the runs need.
pub(crate) struct Tools {
    pub xtask: PathBuf,
    pub user: PathBuf,
    pub dir: PathBuf,
    pub libc: Option<PathBuf>,
    pub heaptrack: bool,
    pub bpftrace: bool,
    pub perf: bool,
    /// (the workload's CPU, the recorder's CPU) on a machine with two or more: the workload
    /// never shares a CPU with the recorder's own work, so what it pays is what the kernel
    /// hooks cost it, not the scheduler's luck.
    pub pin: Option<(usize, usize)>,
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `bench __timed CMD...`: the command timed from outside.
fn timed(t: &Tools, cmd: &[&str]) -> Vec<OsString> {
    let mut v = vec![t.xtask.clone().into_os_string()];
    v.extend(os(&["bench", "__timed"]));
    v.extend(os(cmd));
    v
}

/// `bench WORKER ARGS`: a worker that times itself.
fn worker(t: &Tools, args: &[&str]) -> Vec<OsString> {
    let mut v = vec![t.xtask.clone().into_os_string(), "bench".into()];
    v.extend(os(args));
    v
}

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "syscall-heavy",
        what: "`dd if=/dev/zero of=/dev/null bs=1 count=1000000` (2 million system calls)",
        command: |t| {
            timed(
                t,
                &[
                    "dd",
                    "if=/dev/zero",
                    "of=/dev/null",
                    "bs=1",
                    "count=1000000",
                ],
            )
        },
        slow_command: None,
        allocates: false,
    },
    Workload {
        name: "context-switch-heavy",
        what: "`stress-ng --switch 1 --switch-ops 200000` on one CPU (two processes passing a message over pipes: each message is a context switch)",
        command: |t| {
            timed(
                t,
                &[
                    "stress-ng",
                    "--switch",
                    "1",
                    "--switch-ops",
                    "200000",
                    "--quiet",
                ],
            )
        },
        slow_command: None,
        allocates: false,
    },
    Workload {
        name: "fault-heavy",
        what: "`bench __touch 1` (1 GiB faulted in a 4 KiB page at a time, the second pass timed)",
        command: |t| worker(t, &["__touch", "1", "--no-wait"]),
        slow_command: None,
        allocates: true,
    },
    Workload {
        name: "fork/exec-heavy",
        what: "a shell loop running `/bin/true` 1,000 times",
        command: |t| {
            timed(
                t,
                &[
                    "sh",
                    "-c",
                    "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done",
                ],
            )
        },
        slow_command: None,
        allocates: false,
    },
    Workload {
        name: "malloc-heavy",
        what: "`bench __malloc 20000000` (20 million malloc/free pairs of 64 bytes; with bpftrace 200,000 of them, the time given for 20 million: uprobes make each pair take microseconds)",
        command: |t| worker(t, &["__malloc", "20000000"]),
        slow_command: Some(|t| worker(t, &["__malloc", "200000", "--per", "20000000"])),
        allocates: true,
    },
];
