//! `cargo xtask bench overhead [--rounds N] [--only WORKLOAD] [--sites]`: what recording
//! costs a workload.
//!
//! Five workloads, each the kind a real machine runs: system calls (`dd bs=1`), context
//! switches (`stress-ng --switch`), page faults (`bench __touch`), forks and execs (a shell
//! loop of `/bin/true`) and malloc/free (`bench __malloc`). Each is run with no recorder, then
//! *recorded* (the recorder follows it) and *beside* a recording of something else (`sleep`:
//! what every other process on the machine pays), with each recorder: /proc, eBPF, eBPF with
//! `--rss-events`; and, on the malloc and fault workloads, the tools a user would pick
//! instead: heaptrack (LD_PRELOAD) and memleak's method, uprobes on malloc and free with
//! bpftrace. Every configuration runs once per round, rounds repeat; the table gives the
//! median and its spread, and the slowdown against no recorder, in wall time and in CPU time
//! (the workload's own, which a loaded machine disturbs less): the median of each round's
//! ratio to the run with no recorder of the same round, so a drift of the machine's speed
//! over the minutes of the benchmark cancels out instead of landing in one configuration.
//! With two CPUs or more the workload runs on the first and every recorder on the last.
//!
//! Then `record -- true` with each backend: what starting and stopping a recording adds to a
//! wrapped command.
//!
//! `--sites`: every workload with eBPF and eBPF with growth sites (with each fault sampler:
//! the perf event, the per-process countdown); on the fault-heavy and malloc-heavy ones also
//! perf sampling the same faults with stacks by frame pointers and copied for DWARF,
//! heaptrack and bpftrace uprobes; then each tool's time to name the code that grows a
//! leaking program (answer.rs).

//!
//! The workloads are in workloads.rs, how each recorder runs one in run.rs, the tables in
//! report.rs.

mod answer;
mod bpf_time;
mod report;
mod run;
mod workloads;

use anyhow::{Context, Result, bail};

use super::{build_release, load_average};
use crate::root;
use run::{Mode, Recorder, configurations, find_libc, have};
use workloads::{Tools, WORKLOADS};

/// Rounds by default; `--rounds N` to change. Enough that the paired slowdowns' spread is
/// small next to the 2 % they are held to.
const ROUNDS: usize = 11;

/// `record --sites`' default fault period, which perf is given too (memtools-user's
/// `DEFAULT_FAULT_PERIOD`).
const SITES_PERIOD: u64 = 127;

/// One configuration's runs: (wall, CPU) seconds, and for eBPF recorders the programs' own
/// run time over each run, ns.
pub(crate) struct Series {
    pub workload: usize,
    pub recorder: Recorder,
    pub mode: Mode,
    pub runs: Vec<(f64, f64)>,
    pub bpf_ns: Vec<u64>,
}

/// The workload on the first CPU, recorders and tracers on the last, when there are two or
/// more (and `taskset` to put them there).
fn pin_cpus() -> Option<(usize, usize)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus >= 2 && have("taskset")).then(|| (0, cpus - 1))
}

/// The whole benchmark; the tables go to stdout and target/bench/overhead.md (with
/// `--sites`, overhead-sites.md).
pub fn overhead(args: &[String]) -> Result<()> {
    let (mut rounds, mut only, mut sites) = (ROUNDS, None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--sites" {
            sites = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--rounds", Some(n)) => {
                rounds = n
                    .parse::<usize>()
                    .with_context(|| format!("`{n}` is not a number of rounds"))?
                    .max(1);
            }
            ("--only", Some(name)) if WORKLOADS.iter().any(|w| w.name == name) => {
                only = Some(name.clone());
            }
            _ => bail!(
                "usage: cargo xtask bench overhead [--rounds N] [--only WORKLOAD] [--sites] (workloads: {})",
                WORKLOADS
                    .iter()
                    .map(|w| w.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
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
        perf: have("perf"),
        pin: pin_cpus(),
    };
    if !have("stress-ng") {
        bail!("stress-ng is not installed; `cargo xtask setup` installs it");
    }
    for (tool, present) in [
        ("heaptrack", tools.heaptrack),
        ("bpftrace", tools.bpftrace),
        ("perf", tools.perf),
    ] {
        if !present {
            eprintln!("xtask: {tool} is not installed (`cargo xtask setup` installs it): left out");
        }
    }
    let load_before = load_average();
    let mut series: Vec<Series> = Vec::new();
    for (i, w) in WORKLOADS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != w.name) {
            continue;
        }
        for (recorder, mode) in configurations(&tools, w, sites) {
            series.push(Series {
                workload: i,
                recorder,
                mode,
                runs: Vec::new(),
                bpf_ns: Vec::new(),
            });
        }
    }
    let _stats = bpf_time::StatsEnabled::new();
    for round in 1..=rounds {
        for s in &mut series {
            let w = &WORKLOADS[s.workload];
            let figures = run::run(&tools, w, s.recorder, s.mode);
            // Nothing of one run is left running into the next (or after the benchmark).
            crate::bench::procs::sweep();
            let (figures, bpf) =
                figures.with_context(|| format!("{} with {}", w.name, s.recorder.name()))?;
            s.bpf_ns.extend(bpf);
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
    let mut table = report::matrix(&series, rounds, &load_before, tools.pin);
    if sites {
        table += &answer::time_to_answer(&tools, rounds.min(5))?;
    } else if only.is_none() {
        table += &report::start_stop(&tools, rounds * 2)?;
    }
    println!("{table}");
    let out = tools.dir.join(if sites {
        "overhead-sites.md"
    } else {
        "overhead.md"
    });
    std::fs::write(&out, &table)?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}
