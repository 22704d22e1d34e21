//! `cargo xtask bench overhead [--rounds N]`: what recording costs a workload.
//!
//! Five workloads, each the kind a real machine runs: system calls (`dd bs=1`), context
//! switches (`stress-ng --switch`), page faults (`bench __touch`), forks and execs (a shell
//! loop of `/bin/true`) and malloc/free (`bench __malloc`). Each is run with no recorder, then
//! *recorded* (the recorder follows it) and *beside* a recording of something else (`sleep`:
//! what every other process on the machine pays), with each recorder: /proc, eBPF, eBPF with
//! `--rss-events`; and, on the malloc and fault workloads, the tools a user would pick
//! instead: heaptrack (LD_PRELOAD) and memleak's method, uprobes on malloc and free with
//! bpftrace. Every configuration runs once per round, rounds repeat; the table gives the
//! median and its spread, and the slowdown of the medians against no recorder, in wall time
//! and in CPU time (the workload's own, which a loaded machine disturbs less).
//!
//! Then `record -- true` with each backend: what starting and stopping a recording adds to a
//! wrapped command.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::workers::parse_timing;
use super::{build_release, load_average, machine, median, remove_store, spread};
use crate::root;

/// Rounds by default; `--rounds N` to change.
const ROUNDS: usize = 7;

/// A workload: its name, what it does, and the command that runs it.
struct Workload {
    name: &'static str,
    what: &'static str,
    /// Runs itself under `bench __timed`, or times itself (prints its own TIMING line).
    command: fn(&Tools) -> Vec<OsString>,
    /// The same for a tracer too slow to run it whole, when it differs (a hundredth of the
    /// work, its time given for the whole).
    slow_command: Option<fn(&Tools) -> Vec<OsString>>,
    /// Measured with heaptrack and bpftrace too.
    allocates: bool,
}

/// The programs the runs need.
struct Tools {
    xtask: PathBuf,
    user: PathBuf,
    dir: PathBuf,
    libc: Option<PathBuf>,
    heaptrack: bool,
    bpftrace: bool,
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

const WORKLOADS: &[Workload] = &[
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
        what: "`stress-ng --switch 1 --switch-ops 200000 --taskset 1` (two processes on one CPU passing a message over pipes: each message is a context switch)",
        command: |t| {
            timed(
                t,
                &[
                    "stress-ng",
                    "--switch",
                    "1",
                    "--switch-ops",
                    "200000",
                    "--taskset",
                    "1",
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

/// Who watches the workload.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recorder {
    Off,
    Memtools(&'static str, &'static [&'static str]),
    Heaptrack,
    Bpftrace,
}

impl Recorder {
    fn name(self) -> String {
        match self {
            Recorder::Off => "off".into(),
            Recorder::Memtools(name, _) => name.into(),
            Recorder::Heaptrack => "heaptrack".into(),
            Recorder::Bpftrace => "bpftrace uprobes on malloc/free".into(),
        }
    }
}

const MEMTOOLS: [Recorder; 3] = [
    Recorder::Memtools("memtools /proc", &["--backend", "procfs"]),
    Recorder::Memtools("memtools eBPF", &["--backend", "ebpf"]),
    Recorder::Memtools(
        "memtools eBPF --rss-events",
        &["--backend", "ebpf", "--rss-events"],
    ),
];

/// Recorded, or running beside a recording of something else.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Recorded,
    Beside,
}

/// One configuration's runs: (wall, CPU) seconds.
struct Series {
    workload: usize,
    recorder: Recorder,
    mode: Mode,
    runs: Vec<(f64, f64)>,
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
fn find_libc() -> Option<PathBuf> {
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

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Runs a command to its end; its TIMING line.
fn run_timing(cmd: &mut Command) -> Result<(f64, f64)> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    parse_timing(&String::from_utf8_lossy(&out.stdout))
}

/// A recording of `sleep` (or heaptrack/bpftrace tracing one), running until dropped.
struct Beside {
    tracer: Child,
    sleeper: Option<Child>,
}

impl Beside {
    fn start(t: &Tools, recorder: Recorder) -> Result<Option<Beside>> {
        let spawn = |cmd: &mut Command| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {cmd:?}"))
        };
        let beside = match recorder {
            Recorder::Off => return Ok(None),
            Recorder::Memtools(_, options) => {
                let store = t.dir.join("overhead-beside.db");
                remove_store(&store);
                let tracer = spawn(
                    Command::new(&t.user)
                        .arg("record")
                        .arg("--store")
                        .arg(&store)
                        .args(options)
                        .args(["--", "sleep", "3600"]),
                )?;
                wait_for_session(&t.user, &store)?;
                Beside {
                    tracer,
                    sleeper: None,
                }
            }
            Recorder::Heaptrack => {
                let out = t.dir.join("overhead-beside.heaptrack");
                let tracer = spawn(
                    Command::new("heaptrack")
                        .arg("-o")
                        .arg(&out)
                        .args(["sleep", "3600"]),
                )?;
                std::thread::sleep(Duration::from_secs(1));
                Beside {
                    tracer,
                    sleeper: None,
                }
            }
            Recorder::Bpftrace => {
                let libc = t.libc.as_deref().context("no libc found")?;
                let sleeper = spawn(Command::new("sleep").arg("3600"))?;
                let tracer = spawn(
                    Command::new("bpftrace")
                        .arg("-p")
                        .arg(sleeper.id().to_string())
                        .arg("-e")
                        .arg(memleak_program(libc, "")),
                )?;
                // Compiling and attaching takes bpftrace a few seconds.
                std::thread::sleep(Duration::from_secs(5));
                Beside {
                    tracer,
                    sleeper: Some(sleeper),
                }
            }
        };
        Ok(Some(beside))
    }
}

impl Drop for Beside {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.tracer.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.tracer.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.tracer.kill();
        let _ = self.tracer.wait();
        if let Some(s) = &mut self.sleeper {
            let _ = s.kill();
            let _ = s.wait();
        }
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

/// One run of a workload with a recorder in a mode: (wall, CPU) seconds.
fn run(t: &Tools, w: &Workload, recorder: Recorder, mode: Mode) -> Result<(f64, f64)> {
    let command = match (recorder, w.slow_command) {
        (Recorder::Bpftrace, Some(slow)) => slow(t),
        _ => (w.command)(t),
    };
    let (program, args) = command.split_first().context("an empty workload")?;
    if mode == Mode::Beside || recorder == Recorder::Off {
        let _beside = if mode == Mode::Beside {
            Beside::start(t, recorder)?
        } else {
            None
        };
        return run_timing(Command::new(program).args(args));
    }
    match recorder {
        Recorder::Off => unreachable!("handled above"),
        Recorder::Memtools(_, options) => {
            let store = t.dir.join("overhead.db");
            remove_store(&store);
            run_timing(
                Command::new(&t.user)
                    .arg("record")
                    .arg("--store")
                    .arg(&store)
                    .args(options)
                    .arg("--")
                    .arg(program)
                    .args(args),
            )
        }
        Recorder::Heaptrack => {
            let out = t.dir.join("overhead.heaptrack");
            run_timing(
                Command::new("heaptrack")
                    .arg("-o")
                    .arg(&out)
                    .arg(program)
                    .args(args),
            )
        }
        Recorder::Bpftrace => {
            let libc = t.libc.as_deref().context("no libc found")?;
            let line = command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            run_timing(
                Command::new("bpftrace")
                    .arg("-c")
                    .arg(line)
                    .arg("-e")
                    .arg(memleak_program(libc, "/pid == cpid/")),
            )
        }
    }
}

/// The configurations of one workload, in the order each round runs them.
fn configurations(t: &Tools, w: &Workload) -> Vec<(Recorder, Mode)> {
    let mut v = vec![(Recorder::Off, Mode::Recorded)];
    let mut recorders: Vec<Recorder> = MEMTOOLS.to_vec();
    if w.allocates {
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

/// The whole benchmark; the tables go to stdout and target/bench/overhead.md.
pub fn overhead(args: &[String]) -> Result<()> {
    let rounds = match args {
        [flag, n] if flag == "--rounds" => n
            .parse::<usize>()
            .with_context(|| format!("`{n}` is not a number of rounds"))?
            .max(1),
        [] => ROUNDS,
        _ => bail!("usage: cargo xtask bench overhead [--rounds N]"),
    };
    let (user, _) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let tools = Tools {
        xtask: std::env::current_exe().context("cannot find xtask's own binary")?,
        user,
        dir,
        libc: find_libc(),
        heaptrack: have("heaptrack"),
        bpftrace: have("bpftrace"),
    };
    if !have("stress-ng") {
        bail!("stress-ng is not installed; `cargo xtask setup` installs it");
    }
    for (tool, present) in [("heaptrack", tools.heaptrack), ("bpftrace", tools.bpftrace)] {
        if !present {
            eprintln!("xtask: {tool} is not installed (`cargo xtask setup` installs it): left out");
        }
    }
    let load_before = load_average();
    let mut series: Vec<Series> = Vec::new();
    for (i, w) in WORKLOADS.iter().enumerate() {
        for (recorder, mode) in configurations(&tools, w) {
            series.push(Series {
                workload: i,
                recorder,
                mode,
                runs: Vec::new(),
            });
        }
    }
    for round in 1..=rounds {
        for s in &mut series {
            let w = &WORKLOADS[s.workload];
            let figures = run(&tools, w, s.recorder, s.mode)
                .with_context(|| format!("{} with {}", w.name, s.recorder.name()))?;
            eprintln!(
                "xtask: round {round}/{rounds}: {} {} {}: {:.3} s wall, {:.3} s CPU",
                w.name,
                s.recorder.name(),
                if s.mode == Mode::Recorded {
                    "recorded"
                } else {
                    "beside"
                },
                figures.0,
                figures.1
            );
            s.runs.push(figures);
        }
    }
    let start_stop = start_stop(&tools, rounds * 2)?;
    let table = report(&series, rounds, &load_before) + &start_stop;
    println!("{table}");
    let out = tools.dir.join("overhead.md");
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// "1.234 s ±2 %".
fn figure(v: &[f64]) -> String {
    format!("{:.3} s ±{:.0} %", median(v), spread(v) * 100.0)
}

fn slowdown(v: &[f64], base: &[f64]) -> String {
    format!("{:+.1} %", (median(v) / median(base) - 1.0) * 100.0)
}

/// The matrix as Markdown: per workload, each recorder recorded and beside.
fn report(series: &[Series], rounds: usize, load_before: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Workload slowdown with each recorder, median of {rounds} alternating rounds (± half \
         the interquartile range); {}; {load_before} at the start. Slowdowns compare medians \
         with no recorder, in wall time and in the workload's CPU time.\n",
        machine()
    );
    for (i, w) in WORKLOADS.iter().enumerate() {
        let find = |r: Recorder, m: Mode| {
            series
                .iter()
                .find(|s| s.workload == i && s.recorder == r && s.mode == m)
        };
        let Some(off) = find(Recorder::Off, Mode::Recorded) else {
            continue;
        };
        let walls = |s: &Series| s.runs.iter().map(|r| r.0).collect::<Vec<_>>();
        let cpus = |s: &Series| s.runs.iter().map(|r| r.1).collect::<Vec<_>>();
        let _ = writeln!(s, "**{}**: {}\n", w.name, w.what);
        let _ = writeln!(
            s,
            "| recorder | recorded: wall | CPU | slowdown (wall, CPU) | beside: wall | CPU | slowdown (wall, CPU) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| off | {} | {} | | | | |",
            figure(&walls(off)),
            figure(&cpus(off))
        );
        let mut recorders: Vec<Recorder> = Vec::new();
        for x in series.iter().filter(|x| x.workload == i) {
            if x.recorder != Recorder::Off && !recorders.contains(&x.recorder) {
                recorders.push(x.recorder);
            }
        }
        for r in recorders {
            let mut row = format!("| {} |", r.name());
            for m in [Mode::Recorded, Mode::Beside] {
                match find(r, m) {
                    Some(x) => {
                        let _ = write!(
                            row,
                            " {} | {} | {}, {} |",
                            figure(&walls(x)),
                            figure(&cpus(x)),
                            slowdown(&walls(x), &walls(off)),
                            slowdown(&cpus(x), &cpus(off))
                        );
                    }
                    None => row.push_str(" | | |"),
                }
            }
            let _ = writeln!(s, "{row}");
        }
        s.push('\n');
    }
    s
}

/// `record -- true` with each backend, alternating: what a wrapped command pays to be
/// recorded at all (wall time from start to exit, and the recorder's CPU time).
fn start_stop(t: &Tools, rounds: usize) -> Result<String> {
    let store = t.dir.join("overhead-start.db");
    remove_store(&store);
    let backends = ["procfs", "ebpf"];
    let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); backends.len()];
    // A store that exists already, as a wrapped test suite's usually does.
    run_timing(
        Command::new(&t.xtask)
            .args(["bench", "__timed"])
            .arg(&t.user)
            .args(["record", "--backend", "procfs", "--store"])
            .arg(&store)
            .args(["--", "true"]),
    )?;
    for _ in 0..rounds {
        for (i, backend) in backends.iter().enumerate() {
            let timing = run_timing(
                Command::new(&t.xtask)
                    .args(["bench", "__timed"])
                    .arg(&t.user)
                    .args(["record", "--backend", backend, "--store"])
                    .arg(&store)
                    .args(["--", "true"]),
            )?;
            eprintln!(
                "xtask: record --backend {backend} -- true: {:.3} s wall, {:.3} s CPU",
                timing.0, timing.1
            );
            figures[i].push(timing);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "`memtools-user record -- true` into an existing store, median of {rounds} alternating runs:\n"
    );
    let _ = writeln!(s, "| backend | wall | recorder CPU |");
    let _ = writeln!(s, "|---|---:|---:|");
    for (i, backend) in backends.iter().enumerate() {
        let walls: Vec<f64> = figures[i].iter().map(|f| f.0).collect();
        let cpus: Vec<f64> = figures[i].iter().map(|f| f.1).collect();
        let _ = writeln!(s, "| {backend} | {} | {} |", figure(&walls), figure(&cpus));
    }
    Ok(s)
}
