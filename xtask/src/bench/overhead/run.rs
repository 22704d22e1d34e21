//! One run: a workload with a recorder (or heaptrack, or bpftrace), recorded or beside a
//! recording of `sleep`, timed by the workload's TIMING line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::bpf_time::{Watch, programs_time};
use super::workloads::{Tools, Workload};
use crate::bench::procs::Group;
use crate::bench::remove_store;
use crate::bench::workers::parse_timing;

/// Who watches the workload.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorder {
    Off,
    Memtools(&'static str, &'static [&'static str]),
    Heaptrack,
    Bpftrace,
    /// `perf record` sampling page faults at the same period as `--sites`, with stacks by
    /// frame pointers (`fp`, what memtools does) or by copying the user stack for DWARF
    /// unwinding (`dwarf`): what unwinding without frame pointers would cost in the kernel.
    Perf(&'static str),
}

impl Recorder {
    pub fn name(self) -> String {
        match self {
            Recorder::Off => "off".into(),
            Recorder::Memtools(name, _) => name.into(),
            Recorder::Heaptrack => "heaptrack".into(),
            Recorder::Bpftrace => "bpftrace uprobes on malloc/free".into(),
            Recorder::Perf(call_graph) => format!(
                "perf record -e page-faults -c {} --call-graph {call_graph}",
                super::SITES_PERIOD
            ),
        }
    }
}

/// Growth sites on (`--sites`, its default period).
const SITES: Recorder =
    Recorder::Memtools("memtools eBPF --sites", &["--backend", "ebpf", "--sites"]);
/// Growth sites with the other fault sampler: a countdown per process at the page fault
/// tracepoints, which run at every fault on the machine (so "beside" is where it differs).
const SITES_COUNTDOWN: Recorder = Recorder::Memtools(
    "memtools eBPF --sites --sites-sampler countdown",
    &[
        "--backend",
        "ebpf",
        "--sites",
        "--sites-sampler",
        "countdown",
    ],
);

/// Without growth sites (on by default for a command): their cost is the `--sites` run's.
const MEMTOOLS: [Recorder; 3] = [
    Recorder::Memtools("memtools /proc", &["--backend", "procfs"]),
    Recorder::Memtools("memtools eBPF", &["--backend", "ebpf", "--no-sites"]),
    Recorder::Memtools(
        "memtools eBPF --rss-events",
        &["--backend", "ebpf", "--no-sites", "--rss-events"],
    ),
];

/// Recorded, or running beside a recording of something else.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Recorded,
    Beside,
}

/// memleak's method in bpftrace: sizes at malloc, live blocks at its return, gone at free.
fn memleak_program(libc: &Path, filter: &str) -> String {
    let l = libc.display();
    format!(
        "uprobe:{l}:malloc {filter} {{ @size[tid] = arg0; }}
uretprobe:{l}:malloc {filter} {{ @live[retval] = @size[tid]; delete(@size[tid]); }}
uprobe:{l}:free {filter} {{ delete(@live[arg0]); }}
END {{ clear(@live); clear(@size); }}"
    )
}

/// The C library this machine's programs use (the one xtask itself is linked to).
pub(crate) fn find_libc() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libc.so") || n.starts_with("libc-"))
        })
        .map(PathBuf::from)
}

pub(crate) fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a command to its end in a process group of its own (anything it leaves running is
/// killed with the group); its TIMING line.
pub(crate) fn run_timing(cmd: &mut Command) -> Result<(f64, f64)> {
    run_watched(cmd, false).map(|(timing, _)| timing)
}

/// [`run_timing`], and with `watch`, the run time of the eBPF programs the command's leader
/// (a recorder) holds over its run (see bpf_time.rs).
fn run_watched(cmd: &mut Command, watch: bool) -> Result<((f64, f64), Option<u64>)> {
    let mut group = Group::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )?;
    let watcher = watch.then(|| Watch::start(group.child.id()));
    let mut stdout = String::new();
    if let Some(mut out) = group.child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut stdout)
            .with_context(|| format!("reading the output of {cmd:?}"))?;
    }
    let status = group.child.wait()?;
    let bpf = watcher.and_then(Watch::finish);
    // The leader is gone: whatever of its group is left goes with it.
    group.stop(Duration::ZERO);
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok((parse_timing(&stdout)?, bpf))
}

/// A recording of `sleep` (or heaptrack/bpftrace tracing one), running until dropped; each
/// in a group of its own, stopped whole (heaptrack's interpreter and compressor, the traced
/// `sleep`).
struct Beside {
    /// The recorder's pid, for its programs' time (memtools only).
    recorder: Option<u32>,
    // Declared first, dropped first: the tracer stops before what it traces.
    _tracer: Group,
    _sleeper: Option<Group>,
}

impl Beside {
    fn start(t: &Tools, recorder: Recorder) -> Result<Option<Beside>> {
        let tracer_cpu = t.pin.map(|p| p.1);
        let spawn = |cmd: &mut Command| {
            Group::spawn(
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
        };
        let beside = match recorder {
            Recorder::Off => return Ok(None),
            Recorder::Memtools(_, options) => {
                let store = t.dir.join("overhead-beside.db");
                remove_store(&store);
                let tracer = spawn(
                    command_on(tracer_cpu, vec![t.user.clone().into_os_string()])?
                        .arg("record")
                        .arg("--store")
                        .arg(&store)
                        .args(options)
                        .args(["--", "sleep", "3600"]),
                )?;
                wait_for_session(&t.user, &store)?;
                Beside {
                    recorder: Some(tracer.child.id()),
                    _tracer: tracer,
                    _sleeper: None,
                }
            }
            Recorder::Heaptrack => {
                let out = t.dir.join("overhead-beside.heaptrack");
                let tracer = spawn(
                    command_on(tracer_cpu, vec!["heaptrack".into()])?
                        .arg("-o")
                        .arg(&out)
                        .args(["sleep", "3600"]),
                )?;
                std::thread::sleep(Duration::from_secs(1));
                Beside {
                    recorder: None,
                    _tracer: tracer,
                    _sleeper: None,
                }
            }
            // Only ever recorded (see `configurations`).
            Recorder::Perf(_) => return Ok(None),
            Recorder::Bpftrace => {
                let libc = t.libc.as_deref().context("no libc found")?;
                let sleeper = spawn(&mut command_on(
                    tracer_cpu,
                    vec!["sleep".into(), "3600".into()],
                )?)?;
                let tracer = spawn(
                    command_on(tracer_cpu, vec!["bpftrace".into()])?
                        .arg("-p")
                        .arg(sleeper.child.id().to_string())
                        .arg("-e")
                        .arg(memleak_program(libc, "")),
                )?;
                // Compiling and attaching takes bpftrace a few seconds.
                std::thread::sleep(Duration::from_secs(5));
                Beside {
                    recorder: None,
                    _tracer: tracer,
                    _sleeper: Some(sleeper),
                }
            }
        };
        Ok(Some(beside))
    }
}

/// Waits until a recording has begun its session (its programs are attached by then).
fn wait_for_session(user: &Path, store: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = Command::new(user)
            .args(["sessions", "--format", "json", "--store"])
            .arg(store)
            .stderr(Stdio::null())
            .output()?;
        if out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the recording into {} did not start", store.display())
}

/// `argv` run on one CPU (through `taskset`, so it holds for whatever the argv execs and
/// forks), or as it is when nothing is pinned.
pub(crate) fn on_cpu(cpu: Option<usize>, argv: Vec<OsString>) -> Vec<OsString> {
    match cpu {
        Some(cpu) => {
            let mut v: Vec<OsString> = vec![taskset().into(), "-c".into(), cpu.to_string().into()];
            v.extend(argv);
            v
        }
        None => argv,
    }
}

/// taskset's absolute path: bpftrace's `-c` refuses a bare name that two directories of
/// PATH hold (/bin and /usr/bin on a merged-/usr system).
fn taskset() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("taskset"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("taskset"))
    })
    .clone()
}

/// A command for `argv` on one CPU (or anywhere).
pub(crate) fn command_on(cpu: Option<usize>, argv: Vec<OsString>) -> Result<Command> {
    let argv = on_cpu(cpu, argv);
    let (program, args) = argv.split_first().context("an empty command")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// One run of a workload with a recorder in a mode: (wall, CPU) seconds, and for an eBPF
/// recorder its programs' run time over the run, ns. With `t.pin`, the workload runs on one
/// CPU and the recorder (or tracer) on the other.
pub(crate) fn run(
    t: &Tools,
    w: &Workload,
    recorder: Recorder,
    mode: Mode,
) -> Result<((f64, f64), Option<u64>)> {
    let command = match (recorder, w.slow_command) {
        (Recorder::Bpftrace, Some(slow)) => slow(t),
        _ => (w.command)(t),
    };
    // heaptrack traces only the program it starts (its preload does not survive taskset's
    // exec): it and its program run on the workload's CPU together.
    let plain = command.clone();
    let command = on_cpu(t.pin.map(|p| p.0), command);
    let tracer_cpu = t.pin.map(|p| p.1);
    let (program, args) = command.split_first().context("an empty workload")?;
    if mode == Mode::Beside || recorder == Recorder::Off {
        let beside = if mode == Mode::Beside {
            Beside::start(t, recorder)?
        } else {
            None
        };
        let pid = beside.as_ref().and_then(|b| b.recorder);
        let before = pid.and_then(programs_time);
        let timing = run_timing(Command::new(program).args(args))?;
        let after = pid.and_then(programs_time);
        let bpf = before.zip(after).map(|(b, a)| a.saturating_sub(b));
        return Ok((timing, bpf));
    }
    match recorder {
        Recorder::Off => unreachable!("handled above"),
        Recorder::Memtools(_, options) => {
            let store = t.dir.join("overhead.db");
            remove_store(&store);
            run_watched(
                command_on(tracer_cpu, vec![t.user.clone().into_os_string()])?
                    .arg("record")
                    .arg("--store")
                    .arg(&store)
                    .args(options)
                    .arg("--")
                    .arg(program)
                    .args(args),
                options.contains(&"ebpf"),
            )
        }
        Recorder::Heaptrack => {
            let out = t.dir.join("overhead.heaptrack");
            run_watched(
                command_on(t.pin.map(|p| p.0), vec!["heaptrack".into()])?
                    .arg("-o")
                    .arg(&out)
                    .args(&plain),
                false,
            )
        }
        Recorder::Perf(call_graph) => {
            let out = t.dir.join("overhead.perf.data");
            run_watched(
                command_on(tracer_cpu, vec!["perf".into()])?
                    .args(["record", "-q", "-e", "page-faults", "-c"])
                    .arg(super::SITES_PERIOD.to_string())
                    .args(["--call-graph", call_graph, "-o"])
                    .arg(&out)
                    .arg("--")
                    .arg(program)
                    .args(args),
                false,
            )
        }
        Recorder::Bpftrace => {
            let libc = t.libc.as_deref().context("no libc found")?;
            let line = command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            run_watched(
                command_on(tracer_cpu, vec!["bpftrace".into()])?
                    .arg("-c")
                    .arg(line)
                    .arg("-e")
                    .arg(memleak_program(libc, "/pid == cpid/")),
                false,
            )
        }
    }
}

/// The configurations of one workload, in the order each round runs them; with `sites`, eBPF
/// with and without growth sites against the tools a user would pick instead.
pub(crate) fn configurations(t: &Tools, w: &Workload, sites: bool) -> Vec<(Recorder, Mode)> {
    let mut v = vec![(Recorder::Off, Mode::Recorded)];
    let mut recorders: Vec<Recorder> = if sites {
        vec![MEMTOOLS[1], SITES, SITES_COUNTDOWN]
    } else {
        MEMTOOLS.to_vec()
    };
    if w.allocates {
        if sites && t.perf {
            // What stacks cost perf at the same period: by frame pointers, and copied for
            // DWARF. Recorded only: perf follows the command it starts.
            for call_graph in ["fp", "dwarf"] {
                v.push((Recorder::Perf(call_graph), Mode::Recorded));
            }
        }
        if t.heaptrack {
            recorders.push(Recorder::Heaptrack);
        }
        if t.bpftrace && t.libc.is_some() {
            recorders.push(Recorder::Bpftrace);
        }
    }
    for r in recorders {
        v.push((r, Mode::Recorded));
        v.push((r, Mode::Beside));
    }
    v
}
