//! The tables: the matrix of workloads and recorders, and `record -- true`.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::Result;

use super::Series;
use super::run::{Mode, Recorder, run_timing};
use super::workloads::{Tools, WORKLOADS};
use crate::bench::{half_iqr, machine, median, remove_store, spread};

/// "1.234 s ±2 %".
fn figure(v: &[f64]) -> String {
    format!("{:.3} s ±{:.0} %", median(v), spread(v) * 100.0)
}

/// The paired slowdown: each round's figure against the same round's run with no recorder,
/// their median and spread ("+0.4 % ±0.9").
fn slowdown(v: &[f64], base: &[f64]) -> String {
    let ratios: Vec<f64> = v
        .iter()
        .zip(base)
        .filter(|(_, b)| **b > 0.0)
        .map(|(x, b)| (x / b - 1.0) * 100.0)
        .collect();
    let (mid, half_iqr) = (median(&ratios), half_iqr(&ratios));
    format!("{mid:+.1} % ±{half_iqr:.1}")
}

/// The eBPF programs' run time over each run as a share of that run's workload CPU time:
/// median and spread ("0.012 % ±0.003").
fn programs_share(x: &Series) -> Option<String> {
    if x.bpf_ns.is_empty() || x.bpf_ns.len() != x.runs.len() {
        return None;
    }
    let shares: Vec<f64> = x
        .bpf_ns
        .iter()
        .zip(&x.runs)
        .filter(|(_, r)| r.1 > 0.0)
        .map(|(ns, r)| *ns as f64 / 1e9 / r.1 * 100.0)
        .collect();
    Some(format!(
        "{:.3} % ±{:.3}",
        median(&shares),
        half_iqr(&shares)
    ))
}

/// The matrix as Markdown: per workload, each recorder recorded and beside.
pub(crate) fn matrix(
    series: &[Series],
    rounds: usize,
    load_before: &str,
    pin: Option<(usize, usize)>,
) -> String {
    let mut s = String::new();
    let pinned = match pin {
        Some((w, r)) => format!("the workload on CPU {w}, recorders and tracers on CPU {r}"),
        None => "nothing pinned (one CPU)".into(),
    };
    let _ = writeln!(
        s,
        "Workload slowdown with each recorder, median of {rounds} alternating rounds (± half \
         the interquartile range); {}; {load_before} at the start; {pinned}. A slowdown is the \
         median of each round's ratio to that round's run with no recorder (± half the \
         interquartile range of the ratios, in points), in wall time and in the workload's CPU \
         time. The last column is what the kernel counted for the recorder's eBPF programs \
         (`kernel.bpf_stats_enabled`) over each run, as a share of the workload's CPU time: \
         every run of every program, on any task, so an upper bound on what the hooks took \
         from the workload (the dispatch to each run, tens of nanoseconds, is not in it).\n",
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
            "| recorder | recorded: wall | CPU | slowdown (wall, CPU) | beside: wall | CPU | slowdown (wall, CPU) | eBPF programs' time / workload CPU (recorded, beside) |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| off | {} | {} | | | | | |",
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
            let shares: Vec<String> = [Mode::Recorded, Mode::Beside]
                .iter()
                .filter_map(|m| find(r, *m).and_then(programs_share))
                .collect();
            let _ = writeln!(s, "{row} {} |", shares.join(", "));
        }
        s.push('\n');
    }
    s
}

/// `record -- true` with each backend, alternating: what a wrapped command pays to be
/// recorded at all (wall time from start to exit, and the recorder's CPU time), without
/// growth sites (their start is the sampler's perf event and the maps keeper's thread).
pub(crate) fn start_stop(t: &Tools, rounds: usize) -> Result<String> {
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
                    .args(["record", "--no-sites", "--backend", backend, "--store"])
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
        "`memtools-user record --no-sites -- true` into an existing store, median of {rounds} alternating runs:\n"
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
