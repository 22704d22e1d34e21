//! `cargo xtask bench top`: what the live view itself costs while it follows a recording.
//!
//! A recorder follows idle processes (`leak-sim flat`) at 100 ms; `memtools-user top --store`
//! follows that session in a real terminal (tmux, 120x40) with its defaults (the store read
//! every 500 ms, verdicts at most once a second). The view's CPU time (every thread: reading,
//! analysing, drawing) comes from /proc/PID/stat over a window after a warm-up; the recorder's
//! own CPU is not counted. Configurations alternate in rounds, so a machine that gets busier or
//! quieter during the run touches each the same; the median and the spread are reported.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Followed, build_release, remove_store, store_figures};
use crate::root;

/// Rounds over every configuration.
const ROUNDS: usize = 3;
/// The view settles first: its first read of the backlog and first verdicts are one-time.
const WARM_UP: Duration = Duration::from_secs(5);
/// The measured window.
const WINDOW: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Config {
    processes: usize,
    backend: &'static str,
}

const CONFIGS: [Config; 3] = [
    Config {
        processes: 50,
        backend: "procfs",
    },
    Config {
        processes: 500,
        backend: "procfs",
    },
    Config {
        processes: 500,
        backend: "ebpf",
    },
];

/// One measured run.
struct Run {
    cpu_pct: f64,
    peak_rss: u64,
    samples_per_s: f64,
}

pub fn top() -> Result<()> {
    let (user, sim) = build_release()?;
    if !Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        bail!("tmux not found: `cargo xtask setup` installs it");
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let most = CONFIGS.iter().map(|c| c.processes).max().unwrap_or(1);
    let followed = Followed::start(&sim, most)?;
    let pids = followed.pids();
    let mut runs: Vec<Vec<Run>> = CONFIGS.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for (c, config) in CONFIGS.iter().enumerate() {
            let run = measure(&user, &dir, &pids[..config.processes], config.backend)?;
            eprintln!(
                "xtask: round {round}, {} processes, {}: view {:.2} % of a core, peak {} MiB, {:.0} samples/s",
                config.processes,
                config.backend,
                run.cpu_pct,
                run.peak_rss >> 20,
                run.samples_per_s
            );
            runs[c].push(run);
        }
    }
    drop(followed);
    let table = markdown(&runs);
    println!("{table}");
    let out = dir.join("top.md");
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// A recorder of `pids`, and the view following it in tmux; the view's CPU over the window.
fn measure(user: &Path, dir: &Path, pids: &[String], backend: &str) -> Result<Run> {
    let store = dir.join("top-bench.db");
    remove_store(&store);
    let mut record = Command::new(user);
    record.arg("record").arg("--store").arg(&store).args([
        "--no-sites",
        "--backend",
        backend,
        "--interval",
        "100ms",
    ]);
    for p in pids {
        record.args(["--pid", p]);
    }
    let recorder = Stopped(
        record
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the recorder")?,
    );
    // The view follows a session that is being recorded: wait until there is one (loading the
    // eBPF programs takes a moment, more on a busy machine).
    let waited = Instant::now();
    while store_figures(user, &store).is_err() {
        if waited.elapsed() > Duration::from_secs(60) {
            bail!("the recorder started no session in {}", store.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let socket = format!("memtools-bench-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
    };
    let view = format!(
        "exec '{}' top --store '{}'",
        user.display(),
        store.display()
    );
    let started = tmux(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "main",
        "-x",
        "120",
        "-y",
        "40",
        &view,
    ])?;
    if !started.status.success() {
        bail!("tmux new-session failed");
    }
    let result = (|| {
        let out = tmux(&["display-message", "-p", "-t", "main", "#{pane_pid}"])?;
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("the view's pid from tmux")?;
        std::thread::sleep(WARM_UP);
        let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
        let (samples0, _) = store_figures(user, &store)?;
        std::thread::sleep(WINDOW);
        let (cpu1, wall) = (cpu_seconds(pid)?, t0.elapsed().as_secs_f64());
        let (samples1, _) = store_figures(user, &store)?;
        Ok(Run {
            cpu_pct: (cpu1 - cpu0) / wall * 100.0,
            peak_rss: peak_rss(pid)?,
            samples_per_s: samples1.saturating_sub(samples0) as f64 / wall,
        })
    })();
    let _ = tmux(&["kill-server"]);
    drop(recorder);
    result
}

/// A recorder stopped (SIGTERM, then waited for) however the measurement ends.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// User + system CPU seconds of a process, every thread included (/proc/PID/stat).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("the view (pid {pid}) is gone"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .context("a short /proc/PID/stat")?
            .parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

/// The view's peak resident memory (VmHWM), bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmHWM")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn markdown(runs: &[Vec<Run>]) -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Live view CPU ({ROUNDS} rounds, {} s windows after {} s warm-up; load average at the end: {})\n",
        WINDOW.as_secs(),
        WARM_UP.as_secs(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        s,
        "| processes | interval | backend | view CPU (median) | spread | view peak RSS | samples/s recorded |"
    );
    let _ = writeln!(s, "|---:|---:|---|---:|---:|---:|---:|");
    for (config, runs) in CONFIGS.iter().zip(runs) {
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_pct).collect();
        let (lo, hi) = cpu
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &c| {
                (a.min(c), b.max(c))
            });
        let rss = runs.iter().map(|r| r.peak_rss).max().unwrap_or(0);
        let rate = median(runs.iter().map(|r| r.samples_per_s).collect());
        let _ = writeln!(
            s,
            "| {} | 100 ms | {} | {:.2} % | {lo:.2}-{hi:.2} % | {} MiB | {rate:.0} |",
            config.processes,
            config.backend,
            median(cpu),
            rss >> 20,
        );
    }
    s
}
