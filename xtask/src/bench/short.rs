//! `cargo xtask bench recorder short`: the recorder's own memory through a shell suite of many
//! short commands, with growth sites (the default with eBPF) and without (`--no-sites`). Each
//! command is a process whose stacks are named and whose maps are kept and let go, so memory
//! that grows per process shows here: the peak resident size at 2,000 and at 20,000 commands
//! should be the same. Configurations alternate in rounds; the median and the spread.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{machine, remove_store};

const ROUNDS: usize = 3;
const COMMANDS: [u32; 2] = [2_000, 20_000];
const SITES: [(&str, &[&str]); 2] = [
    ("without growth sites", &["--no-sites"]),
    ("with growth sites", &[]),
];

/// One recording: the recorder's peak resident size (MiB), its CPU seconds (up to its last
/// 20 ms), the wall seconds, and how many processes got growth sites.
struct Run {
    peak_mib: f64,
    cpu_s: f64,
    wall_s: f64,
    with_sites: usize,
}

/// Records `sh` running `/bin/true` `n` times.
fn run(user: &Path, store: &Path, n: u32, extra: &[&str]) -> Result<Run> {
    remove_store(store);
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let began = Instant::now();
    let child = Command::new(user)
        .args(["record", "--backend", "ebpf", "--store"])
        .arg(store)
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", user.display()))?;
    let pid = child.id() as libc::pid_t;
    // The recorder's own CPU (/proc/PID/stat's utime and stime: every thread, no children)
    // and peak resident size (VmHWM), read until it exits: wait4's figures would add the
    // commands it waited for.
    let mut own_ticks = 0.0;
    let mut peak_kib = 0.0;
    let mut status = 0;
    loop {
        if let Some(t) = own_cpu_ticks(pid) {
            own_ticks = t;
        }
        if let Some(p) = peak_rss_kib(pid) {
            peak_kib = p;
        }
        // SAFETY: pid is our child; status points to a live local.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 => std::thread::sleep(std::time::Duration::from_millis(20)),
            r if r == pid => break,
            _ => bail!("wait4 failed for the recorder"),
        }
    }
    let wall_s = began.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("memtools-user record failed (status {status})");
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let out = Command::new(user)
        .args(["sites", "--window", "all", "--format", "json", "--store"])
        .arg(store)
        .output()?;
    // Without growth sites, `sites` says the session has none (and fails).
    let with_sites = serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    Ok(Run {
        peak_mib: peak_kib / 1024.0,
        cpu_s: own_ticks / hz,
        wall_s,
        with_sites,
    })
}

/// The table (Markdown) of the recorder's memory through short commands.
pub fn short(user: &Path, dir: &Path) -> Result<String> {
    let store = dir.join("recorder-short.db");
    let mut runs: Vec<Vec<Vec<Run>>> = (0..COMMANDS.len())
        .map(|_| (0..SITES.len()).map(|_| Vec::new()).collect())
        .collect();
    for round in 0..ROUNDS {
        for (c, n) in COMMANDS.iter().enumerate() {
            for (s, (name, extra)) in SITES.iter().enumerate() {
                let r = run(user, &store, *n, extra)?;
                eprintln!(
                    "xtask: round {round}, {n} commands {name}: peak {:.1} MiB, {:.2} s CPU, \
                     {:.1} s, {} processes with sites",
                    r.peak_mib, r.cpu_s, r.wall_s, r.with_sites
                );
                runs[c][s].push(r);
            }
        }
    }
    remove_store(&store);
    let mut table = format!(
        "\n### The recorder's memory through short commands\n\n{}\n\
         `sh` runs `/bin/true` N times under `record --backend ebpf`; {ROUNDS} alternating \
         rounds, median (lowest-highest).\n\n\
         | commands | growth sites | recorder's peak RSS | recorder's CPU | wall | processes with sites |\n\
         |---:|---|---:|---:|---:|---:|\n",
        machine()
    );
    for (c, n) in COMMANDS.iter().enumerate() {
        for (s, (name, _)) in SITES.iter().enumerate() {
            let rs = &runs[c][s];
            let of = |f: fn(&Run) -> f64| summary(rs.iter().map(f).collect(), 1);
            let _ = writeln!(
                table,
                "| {n} | {name} | {} MiB | {} s | {} s | {} |",
                of(|r| r.peak_mib),
                of(|r| r.cpu_s),
                of(|r| r.wall_s),
                summary(rs.iter().map(|r| r.with_sites as f64).collect(), 0),
            );
        }
    }
    Ok(table)
}

/// `12.3 (12.0-12.9)`: the median and the spread, with `digits` decimals.
fn summary(v: Vec<f64>, digits: usize) -> String {
    let (median, lo, hi) = super::median_and_range(&v);
    format!("{median:.digits$} ({lo:.digits$}-{hi:.digits$})")
}

/// A process's user and system CPU ticks, all its threads (not its children).
fn own_cpu_ticks(pid: libc::pid_t) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A process's peak resident size (VmHWM), KiB.
fn peak_rss_kib(pid: libc::pid_t) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
