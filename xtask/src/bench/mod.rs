//! `cargo xtask bench`: the measurements behind the README's figures, one module each.
//!
//! - `recorder`: the recorder's own CPU time following 1 to 500 processes, and `--all`; and
//!   with `counts`, only what counting threads and descriptors adds to it.
//! - `faults`: a page-fault-heavy workload with each backend recording it.
//! - `overhead`: what recording costs five kinds of workload, recorded or running beside a
//!   recording, with each recorder and with the tools a user would pick instead; and what
//!   starting and stopping a recording costs a wrapped command.
//! - `analysis`, `gui`: the criterion benchmarks of the analysis pipeline and the viewer.
//! - `top`: the live view's own CPU while it follows a recording ([`crate::bench_top`]).
//! - `exporter`, `retention`: what the Prometheus exporter and retention cost ([`fleet`]).
//!
//! Figures are medians over rounds that alternate the configurations, with their spread: the
//! machine is shared, and a change in its load then spreads over every configuration instead
//! of skewing one.

mod counts;
mod faults;
mod fleet;
mod overhead;
mod procs;
mod recorder;
mod short;
mod workers;

pub(crate) use recorder::{Followed, store_figures};

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::{cargo, root, sh};

/// Runs the benchmarks named in `args` (all by default).
pub fn bench(args: &[String]) -> Result<()> {
    let which = args.first().map_or("all", String::as_str);
    let rest = args.get(1..).unwrap_or_default();
    if !which.starts_with("__") {
        // What a run's tracers orphan comes back to us, to be killed and reaped.
        procs::adopt_orphans()?;
    }
    let result = match which {
        "recorder" => recorder::recorder(rest),
        "faults" => faults::faults(),
        "overhead" => overhead::overhead(rest),
        "analysis" => analysis(),
        "gui" => gui(),
        "top" => crate::bench_top::top(),
        "exporter" => fleet::exporter(),
        "retention" => fleet::retention(),
        // The workloads and the timer, started by the benchmarks (not for direct use).
        "__touch" => workers::touch(rest),
        "__malloc" => workers::malloc(rest),
        "__timed" => workers::timed(rest),
        "all" => {
            recorder::recorder(&[])?;
            faults::faults()?;
            overhead::overhead(&[])?;
            analysis()?;
            gui()?;
            crate::bench_top::top()?;
            fleet::exporter()?;
            fleet::retention()
        }
        other => {
            bail!(
                "unknown benchmark `{other}` (recorder, faults, overhead, analysis, gui, top, exporter, retention or all)"
            )
        }
    };
    // Whatever a benchmark (or its failure) left running goes with it.
    procs::sweep();
    result
}

/// The GUI's frame time over a 10-million-sample session (criterion, CPU side of a frame).
fn gui() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools-gui", "--bench", "frame"]))
}

fn analysis() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools", "--bench", "analysis"]))
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

pub(crate) fn remove_store(store: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// The machine, for the tables: cores, CPU model, kernel, and its load now.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, {cpu}, Linux {}, {}",
        kernel.trim(),
        load_average()
    )
}

/// "load average 1.02 (1 min)", as /proc/loadavg has it.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average {} (1 min)",
        load.split_whitespace().next().unwrap_or("?")
    )
}

/// The median of some figures (NaN for none).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median, lowest and highest of some figures (NaN for none): a few rounds' summary.
fn median_and_range(v: &[f64]) -> (f64, f64, f64) {
    let lo = v.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
    let hi = v.iter().copied().reduce(f64::max).unwrap_or(f64::NAN);
    (median(v), lo, hi)
}

/// The spread of some figures around their median, as the half-distance between the first
/// and third quartiles relative to the median (a robust ±).
fn spread(v: &[f64]) -> f64 {
    half_iqr(v) / median(v)
}

/// Half the interquartile range, in the figures' own unit (0 for fewer than two).
fn half_iqr(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.len() < 2 {
        return 0.0;
    }
    let q = |p: f64| {
        let x = p * (v.len() - 1) as f64;
        let (i, f) = (x.floor() as usize, x.fract());
        v[i] + (v[(i + 1).min(v.len() - 1)] - v[i]) * f
    };
    (q(0.75) - q(0.25)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::{median, spread};

    #[test]
    fn median_and_spread_of_a_few_figures() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        // Quartiles 2 and 4 of 1..=5 around a median of 3: (4 - 2) / 2 / 3.
        let s = spread(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((s - 1.0 / 3.0).abs() < 1e-9, "{s}");
        assert_eq!(spread(&[7.0]), 0.0);
    }
}
