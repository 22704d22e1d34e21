//! `cargo xtask bench recorder`: CPU time the recorder spends per second of recording while
//! it follows 1, 50 and 500 processes at 100 ms and 10 ms, with each backend, store bytes per
//! sample, the same polling done the way memorytools does it (psutil `process_iter()` +
//! `memory_info()`) for comparison; `--all` on a machine with 5,000 more processes at 1 s; and
//! what counting threads and descriptors costs (counts.rs); the recorder's memory through many
//! short commands (short.rs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{build_release, machine, remove_store};
use crate::root;

const COUNTS: [usize; 3] = [1, 50, 500];
const INTERVALS_MS: [u64; 2] = [100, 10];
const SECONDS: u64 = 10;
/// The steady state is measured from this long after the start.
const WARM_UP: Duration = Duration::from_secs(3);
/// The recorder's backends, each measured on the same processes.
const BACKENDS: [&str; 2] = ["procfs", "ebpf"];
/// Processes started for the `--all` row, on top of what the machine runs.
const ALL_EXTRA: usize = 5000;

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
    let (cpu, _, out) = cpu_seconds_steady(cmd, None)?;
    Ok((cpu, out))
}

/// CPU seconds a process's main thread has run (/proc/PID/schedstat, in ns).
fn main_thread_cpu(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// As [`cpu_seconds`], and with `Some((warm_up, window))` also the CPU seconds its main
/// thread spent in `window` after `warm_up`: the steady state, without the one-time start.
pub(super) fn cpu_seconds_steady(
    cmd: &mut Command,
    steady: Option<(Duration, Duration)>,
) -> Result<(f64, Option<f64>, String)> {
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
    let steady_cpu = match steady {
        Some((warm_up, window)) => {
            std::thread::sleep(warm_up);
            let before = main_thread_cpu(pid as u32);
            std::thread::sleep(window);
            let after = main_thread_cpu(pid as u32);
            before.zip(after).map(|(b, a)| a - b)
        }
        None => None,
    };
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
    Ok((secs(usage.ru_utime) + secs(usage.ru_stime), steady_cpu, out))
}

struct Row {
    processes: usize,
    interval_ms: u64,
    backend: &'static str,
    ours_cpu_pct: f64,
    /// In the steady state: WARM_UP after the start, for SECONDS (the one-time start, loading
    /// the eBPF programs or the first listing of /proc, left out).
    steady_cpu_pct: f64,
    ours_samples: u64,
    bytes_per_sample: f64,
    psutil_cpu_pct: Option<f64>,
    psutil_samples: Option<u64>,
}

/// The whole benchmark; the tables go to stdout and target/bench/recorder.md.
///
/// `cargo xtask bench recorder counts` runs only what counting threads and descriptors costs
/// ([`super::counts`]); `short`, only the recorder's memory through many short commands
/// ([`super::short`]).
pub fn recorder(args: &[String]) -> Result<()> {
    let (user, sim) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    if args.first().is_some_and(|a| a == "counts") {
        let table = super::counts::counts(&user, &sim, &dir)?;
        println!("{table}");
        let out = dir.join("recorder-counts.md");
        std::fs::write(&out, &table)?;
        eprintln!("xtask: wrote {}", out.display());
        return Ok(());
    }
    if args.first().is_some_and(|a| a == "short") {
        let table = super::short::short(&user, &dir)?;
        println!("{table}");
        let out = dir.join("recorder-short.md");
        std::fs::write(&out, &table)?;
        eprintln!("xtask: wrote {}", out.display());
        return Ok(());
    }
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
            for backend in BACKENDS {
                let store = dir.join(format!("recorder-{n}-{interval_ms}ms-{backend}.db"));
                remove_store(&store);
                let whole = WARM_UP + Duration::from_secs(SECONDS + 1);
                let mut cmd = record_cmd(&user, &store, backend, interval_ms, whole, &pids);
                let window = Duration::from_secs(SECONDS);
                let (cpu, steady, _) = cpu_seconds_steady(&mut cmd, Some((WARM_UP, window)))?;
                let (samples, bytes) = store_figures(&user, &store)?;
                let row = Row {
                    processes: n,
                    interval_ms,
                    backend,
                    ours_cpu_pct: cpu / whole.as_secs_f64() * 100.0,
                    steady_cpu_pct: steady.unwrap_or(f64::NAN) / SECONDS as f64 * 100.0,
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
    let mut table = markdown(&rows);
    table += &all_processes(&user, &dir)?;
    table += &super::counts::counts(&user, &sim, &dir)?;
    table += &super::short::short(&user, &dir)?;
    println!("{table}");
    let out = dir.join("recorder.md");
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// `record --all` at 1 s with the eBPF backend on this machine with ALL_EXTRA more (idle)
/// processes: the recorder's CPU with and without its start.
fn all_processes(user: &Path, dir: &Path) -> Result<String> {
    let mut sleepers: Vec<Child> = Vec::with_capacity(ALL_EXTRA);
    let result = (|| -> Result<String> {
        for _ in 0..ALL_EXTRA {
            sleepers.push(
                Command::new("sleep")
                    .arg("3600")
                    .spawn()
                    .context("cannot start sleep")?,
            );
        }
        std::thread::sleep(Duration::from_secs(1));
        let processes = std::fs::read_dir("/proc")?
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .count();
        let store = dir.join("recorder-all.db");
        remove_store(&store);
        // Its start (listing and opening 5,000 processes) takes a while: a longer warm-up.
        let warm_up = WARM_UP * 3;
        let whole = warm_up + Duration::from_secs(SECONDS + 1);
        let mut cmd = Command::new(user);
        cmd.arg("record")
            .arg("--store")
            .arg(&store)
            .args(["--backend", "ebpf", "--all", "--interval", "1s"])
            .args(["--duration", &format!("{}ms", whole.as_millis())]);
        let window = Duration::from_secs(SECONDS);
        let (cpu, steady, _) = cpu_seconds_steady(&mut cmd, Some((warm_up, window)))?;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n`record --all --interval 1s` (eBPF) with {processes} processes on the machine \
             ({ALL_EXTRA} of them idle `sleep`s started for this): {:.3} % of a core in the \
             steady state ({} s from {} s after the start), {cpu:.2} s of CPU in all over {} s.",
            steady.unwrap_or(f64::NAN) / SECONDS as f64 * 100.0,
            SECONDS,
            warm_up.as_secs(),
            whole.as_secs()
        );
        Ok(s)
    })();
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    result
}

/// `memtools-user record` of these pids with one backend (a zero duration: start and stop),
/// without growth sites (on by default for pids; `overhead --sites` measures them).
pub(super) fn record_cmd(
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
        .args(["--backend", backend, "--no-sites"])
        .args(["--interval", &format!("{interval_ms}ms")])
        .args(["--duration", &format!("{}ms", duration.as_millis().max(1))]);
    for p in pids {
        cmd.args(["--pid", p]);
    }
    cmd
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
    let _ = writeln!(
        s,
        "Recorder CPU per second of recording ({} s runs, the steady state measured over {SECONDS} s \
         from {} s after the start; {}):\n",
        SECONDS + 1 + WARM_UP.as_secs(),
        WARM_UP.as_secs(),
        machine()
    );
    let _ = writeln!(
        s,
        "| processes | interval | backend | memtools CPU | steady state | samples | store bytes/sample | psutil polling CPU | psutil samples |"
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
