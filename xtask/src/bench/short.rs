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

/// One recording: the recorder's peak resident size (MiB), the CPU seconds of the recorder
/// and the commands it waited for (wait4 counts both), the wall seconds, and how many
/// processes got growth sites.
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
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage point to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 failed for the recorder");
    }
    let wall_s = began.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("memtools-user record failed (status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
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
        // ru_maxrss is in KiB; the recorder's, or a child's if larger (none here is).
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
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
         | commands | growth sites | recorder's peak RSS | CPU, recorder and commands | wall | processes with sites |\n\
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
fn summary(mut v: Vec<f64>, digits: usize) -> String {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    let (lo, hi) = (
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    );
    format!("{median:.digits$} ({lo:.digits$}-{hi:.digits$})")
}
