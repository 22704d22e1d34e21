//! `cargo xtask bench`: the measurements behind the README's figures.
//!
//! - `recorder`: CPU time the recorder spends per second of recording while it follows 1, 50
//!   and 500 processes at 100 ms and 10 ms, with each backend (procfs, ebpf), store bytes per
//!   sample, and the same polling done the way memorytools does it (psutil `process_iter()` +
//!   `memory_info()`) for comparison.
//! - `faults`: the slowdown of a page-fault-heavy workload (touching 4 GiB page by page) while
//!   each backend records it, against no recorder: the eBPF programs run in the faulting
//!   task, so their cost shows there, not in the recorder's CPU time.
//! - `analysis`: the criterion benchmarks of the analysis pipeline.
//! - `top`: the live view's own CPU while it follows a recording ([`crate::bench_top`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, sh};

const COUNTS: [usize; 3] = [1, 50, 500];
const INTERVALS_MS: [u64; 2] = [100, 10];
const SECONDS: u64 = 10;
/// The recorder's backends, each measured on the same processes.
const BACKENDS: [&str; 2] = ["procfs", "ebpf"];
/// The fault-heavy workload: this much anonymous memory, faulted in page by page...
const FAULT_BYTES: usize = 4 << 30;
/// ... in chunks of this size, each faulted twice, the second time timed (see touch_worker).
const FAULT_CHUNK: usize = 256 << 20;
/// Runs of the fault workload per configuration; the fastest is reported (the machine is
/// shared: the least disturbed run is the closest to the workload's own cost).
const FAULT_RUNS: usize = 7;

/// Runs the benchmarks named in `args` (all by default).
pub fn bench(args: &[String]) -> Result<()> {
    let which = args.first().map_or("all", String::as_str);
    match which {
        "recorder" => recorder(),
        "faults" => faults(),
        // The fault workload itself, started by `faults` (not for direct use).
        "__touch" => touch_worker(),
        "analysis" => analysis(),
        "gui" => gui(),
        "top" => crate::bench_top::top(),
        "all" => {
            recorder()?;
            faults()?;
            analysis()?;
            gui()?;
            crate::bench_top::top()
        }
        other => bail!("unknown benchmark `{other}` (recorder, faults, analysis, gui, top or all)"),
    }
}

/// The GUI's frame time over a 10-million-sample session (criterion, CPU side of a frame).
fn gui() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools-gui", "--bench", "frame"]))
}

fn analysis() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools", "--bench", "analysis"]))
}

/// The processes under observation: flat leak-sims that hold a little memory.
pub(crate) struct Followed {
    children: Vec<Child>,
}

impl Followed {
    pub(crate) fn start(sim: &Path, n: usize) -> Result<Followed> {
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let child = Command::new(sim)
                .args(["flat", "--base", "1MiB", "--duration", "600s"])
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", sim.display()))?;
            children.push(child);
        }
        // Let them map and touch their memory before anything is measured.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Followed { children })
    }

    pub(crate) fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command to completion and returns its user + system CPU seconds.
fn cpu_seconds(cmd: &mut Command) -> Result<(f64, String)> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage point to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed for {cmd:?}");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let out = reader.join().unwrap_or_default();
    Ok((secs(usage.ru_utime) + secs(usage.ru_stime), out))
}

struct Row {
    processes: usize,
    interval_ms: u64,
    backend: &'static str,
    ours_cpu_pct: f64,
    /// Without the one-time start (loading the eBPF programs, listing /proc).
    steady_cpu_pct: f64,
    ours_samples: u64,
    bytes_per_sample: f64,
    psutil_cpu_pct: Option<f64>,
    psutil_samples: Option<u64>,
}

/// Where cargo puts release binaries (CARGO_TARGET_DIR when set).
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root().join(d) })
        .unwrap_or_else(|| root().join("target"))
        .join("release")
}

/// Builds the recorder and the simulator in release mode; returns their paths.
pub fn build_release() -> Result<(PathBuf, PathBuf)> {
    sh(cargo().args([
        "build",
        "--release",
        "-p",
        "memtools-user",
        "-p",
        "memtools-tests",
        "--bin",
        "memtools-user",
        "--bin",
        "leak-sim",
    ]))?;
    let release = release_dir();
    Ok((release.join("memtools-user"), release.join("leak-sim")))
}

fn recorder() -> Result<()> {
    let (user, sim) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let psutil = Command::new("python3")
        .args(["-c", "import psutil"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !psutil {
        eprintln!(
            "xtask: python3 with psutil not found; `cargo xtask setup` installs it. Skipping the comparison."
        );
    }

    let mut rows = Vec::new();
    for n in COUNTS {
        let followed = Followed::start(&sim, n)?;
        let pids = followed.pids();
        // The one-time start of each backend (loading and verifying the eBPF programs, the
        // first listing of /proc), measured with a recording that ends at once.
        let mut start_cpu = Vec::new();
        for backend in BACKENDS {
            let store = dir.join(format!("recorder-{n}-{backend}-start.db"));
            remove_store(&store);
            let mut cmd = record_cmd(&user, &store, backend, 100, Duration::ZERO, &pids);
            start_cpu.push(cpu_seconds(&mut cmd)?.0);
        }
        for interval_ms in INTERVALS_MS {
            let (psutil_cpu, psutil_samples) = if psutil {
                let script = root().join("xtask/bench/psutil_poll.py");
                let (_, out) = cpu_seconds(
                    Command::new("python3")
                        .arg(script)
                        .args(["--interval", &format!("{}", interval_ms as f64 / 1000.0)])
                        .args(["--duration", &SECONDS.to_string()])
                        .args(["--pids", &pids.join(",")]),
                )?;
                let v: serde_json::Value = serde_json::from_str(out.trim())
                    .with_context(|| format!("psutil_poll.py printed `{out}`"))?;
                (
                    v["cpu_s"].as_f64().map(|c| c / SECONDS as f64 * 100.0),
                    v["samples"].as_u64(),
                )
            } else {
                (None, None)
            };
            for (b, backend) in BACKENDS.into_iter().enumerate() {
                let store = dir.join(format!("recorder-{n}-{interval_ms}ms-{backend}.db"));
                remove_store(&store);
                let duration = Duration::from_secs(SECONDS);
                let mut cmd = record_cmd(&user, &store, backend, interval_ms, duration, &pids);
                let (cpu, _) = cpu_seconds(&mut cmd)?;
                let (samples, bytes) = store_figures(&user, &store)?;
                let row = Row {
                    processes: n,
                    interval_ms,
                    backend,
                    ours_cpu_pct: cpu / SECONDS as f64 * 100.0,
                    steady_cpu_pct: (cpu - start_cpu[b]).max(0.0) / SECONDS as f64 * 100.0,
                    ours_samples: samples,
                    bytes_per_sample: bytes as f64 / samples.max(1) as f64,
                    psutil_cpu_pct: psutil_cpu,
                    psutil_samples,
                };
                eprintln!(
                    "xtask: {n} processes @ {interval_ms} ms, {backend}: memtools {:.2} % of a core ({:.3} % steady), {} samples, {:.1} B/sample; psutil {}",
                    row.ours_cpu_pct,
                    row.steady_cpu_pct,
                    row.ours_samples,
                    row.bytes_per_sample,
                    row.psutil_cpu_pct
                        .map_or("-".into(), |c| format!("{c:.2} %"))
                );
                rows.push(row);
            }
        }
        drop(followed);
    }
    let table = markdown(&rows);
    println!("{table}");
    let out = dir.join("recorder.md");
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// `memtools-user record` of these pids with one backend (a zero duration: start and stop).
fn record_cmd(
    user: &Path,
    store: &Path,
    backend: &str,
    interval_ms: u64,
    duration: Duration,
    pids: &[String],
) -> Command {
    let mut cmd = Command::new(user);
    cmd.arg("record")
        .arg("--store")
        .arg(store)
        .args(["--backend", backend])
        .args(["--interval", &format!("{interval_ms}ms")])
        .args(["--duration", &format!("{}ms", duration.as_millis().max(1))]);
    for p in pids {
        cmd.args(["--pid", p]);
    }
    cmd
}

/// The fault-heavy workload: this program again (`bench __touch`), which waits for a line on
/// stdin (so a recorder can attach to it first), then faults its memory in and reports the
/// (wall seconds, CPU seconds) of the timed faults.
fn fault_workload(recorder: Option<(&Path, &Path, &[&str])>) -> Result<(f64, f64)> {
    let exe = std::env::current_exe().context("cannot find xtask's own binary")?;
    let mut worker = Command::new(exe)
        .args(["bench", "__touch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the fault workload")?;
    let pid = worker.id();
    let rec = match recorder {
        Some((user, store, options)) => {
            remove_store(store);
            let rec = Command::new(user)
                .arg("record")
                .arg("--store")
                .arg(store)
                .args(options)
                .args(["--interval", "100ms", "--pid"])
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start the recorder")?;
            Some(rec)
        }
        None => None,
    };
    // Loaded, attached and following before the workload starts; the same pause without a
    // recorder, so every run starts from a machine as settled.
    std::thread::sleep(Duration::from_secs(2));
    {
        let mut stdin = worker.stdin.take().context("no stdin")?;
        std::io::Write::write_all(&mut stdin, b"go\n")?;
    }
    let out = worker.wait_with_output()?;
    if let Some(mut rec) = rec {
        // It stops by itself once the workload is gone.
        let _ = rec.wait();
    }
    if !out.status.success() {
        bail!("the fault workload failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = text.split_whitespace().map(str::parse::<f64>);
    match (figures.next(), figures.next()) {
        (Some(Ok(wall)), Some(Ok(cpu))) => Ok((wall, cpu)),
        _ => bail!(
            "the fault workload printed `{}`, not two timings",
            text.trim()
        ),
    }
}

/// Waits for a line on stdin, then faults FAULT_BYTES of anonymous memory in one 4 KiB page at
/// a time (no transparent huge pages: one fault per page), and prints the wall and CPU seconds
/// those faults took.
///
/// The memory is faulted in chunks, each touched once untimed, released with MADV_DONTNEED and
/// touched again timed: in a VM whose host takes back free guest memory (free page reporting,
/// as on this project's CI machines) a first touch of a page also pays the host's fault, which
/// varies by microseconds per page from run to run and would drown what a recorder adds. The
/// timed pass gets pages the guest has just freed, so it measures the guest's own fault path,
/// which is where the eBPF programs run.
fn touch_worker() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    // SAFETY: a fresh private anonymous mapping; checked for failure below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FAULT_CHUNK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        bail!(
            "mmap of {FAULT_CHUNK} bytes failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the mapping above, whole.
    unsafe { libc::madvise(ptr, FAULT_CHUNK, libc::MADV_NOHUGEPAGE) };
    let base = ptr.cast::<u8>();
    let touch = || {
        for offset in (0..FAULT_CHUNK).step_by(4096) {
            // SAFETY: inside the mapping; volatile so the writes are not optimised away.
            unsafe { base.add(offset).write_volatile(1) };
        }
    };
    let release = || {
        // SAFETY: the mapping above, whole; its pages are dropped, the mapping stays.
        if unsafe { libc::madvise(ptr, FAULT_CHUNK, libc::MADV_DONTNEED) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    let (mut wall, mut cpu) = (0.0, 0.0);
    for _ in 0..FAULT_BYTES / FAULT_CHUNK {
        touch();
        release()?;
        let (w, c) = (std::time::Instant::now(), thread_cpu());
        touch();
        cpu += thread_cpu() - c;
        wall += w.elapsed().as_secs_f64();
        release()?;
    }
    println!("{wall} {cpu}");
    Ok(())
}

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it in.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The fault-heavy workload without a recorder, then with each backend recording it.
fn faults() -> Result<()> {
    let (user, _) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("faults.db");
    let configs: [Option<&[&str]>; 4] = [
        None,
        Some(&["--backend", "procfs"]),
        Some(&["--backend", "ebpf"]),
        Some(&["--backend", "ebpf", "--rss-events"]),
    ];
    // Rounds interleave the configurations, so a change in the machine's load (2 cores shared
    // with builds) spreads over all of them instead of skewing one.
    let mut walls = vec![Vec::new(); configs.len()];
    let mut cpus = vec![Vec::new(); configs.len()];
    for _ in 0..FAULT_RUNS {
        for (i, config) in configs.iter().enumerate() {
            let recorder = config.map(|b| (user.as_path(), store.as_path(), b));
            let (wall, cpu) = fault_workload(recorder)?;
            walls[i].push(wall);
            cpus[i].push(cpu);
        }
    }
    let mut results: Vec<(String, f64, f64)> = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let name = config.map_or("off".to_string(), |o| {
            format!("{} @ 100 ms", o.join(" ").replace("--backend ", ""))
        });
        let (wall, cpu) = (fastest(&walls[i]), fastest(&cpus[i]));
        eprintln!(
            "xtask: touching {} GiB page by page, recorder {name}: {wall:.3} s wall, {cpu:.3} s CPU (fastest of {FAULT_RUNS})",
            FAULT_BYTES >> 30
        );
        results.push((name, wall, cpu));
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "Faulting in {} GiB page by page (one fault per 4 KiB page, {} MiB chunks each faulted twice, the second time timed), fastest of {FAULT_RUNS} runs:\n",
        FAULT_BYTES >> 30,
        FAULT_CHUNK >> 20
    );
    let _ = writeln!(
        table,
        "| recorder | wall | slowdown | workload CPU | slowdown |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|");
    let (base_wall, base_cpu) = (results[0].1, results[0].2);
    for (name, wall, cpu) in &results {
        let _ = writeln!(
            table,
            "| {name} | {wall:.3} s | {:+.1} % | {cpu:.3} s | {:+.1} % |",
            (wall / base_wall - 1.0) * 100.0,
            (cpu / base_cpu - 1.0) * 100.0
        );
    }
    println!("{table}");
    let out = dir.join("faults.md");
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

pub(crate) fn remove_store(store: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Samples in the store's only session, and the store's size on disk.
pub(crate) fn store_figures(user: &Path, store: &Path) -> Result<(u64, u64)> {
    let out = Command::new(user)
        .args(["sessions", "--format", "json", "--store"])
        .arg(store)
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("sessions --format json of {}", store.display()))?;
    let samples = v[0]["samples"].as_u64().context("no samples field")?;
    let mut bytes = 0;
    for suffix in ["", "-wal"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        bytes += std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len());
    }
    Ok((samples, bytes))
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::new();
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "Recorder CPU per second of recording ({SECONDS} s runs, {cores} cores, {cpus}):\n"
    );
    let _ = writeln!(
        s,
        "| processes | interval | backend | memtools CPU | without start | samples | store bytes/sample | psutil polling CPU | psutil samples |"
    );
    let _ = writeln!(s, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} ms | {} | {:.2} % | {:.3} % | {} | {:.1} | {} | {} |",
            r.processes,
            r.interval_ms,
            r.backend,
            r.ours_cpu_pct,
            r.steady_cpu_pct,
            r.ours_samples,
            r.bytes_per_sample,
            r.psutil_cpu_pct.map_or("-".into(), |c| format!("{c:.2} %")),
            r.psutil_samples.map_or("-".into(), |c| c.to_string()),
        );
    }
    s
}
