//! `cargo xtask bench recorder counts` (and the end of `bench recorder`): what counting
//! threads and descriptors costs the recorder. Each backend records the same processes with
//! the counts and without them (`MEMTOOLS_NO_COUNTS=1`), the configurations alternating in
//! rounds so a loaded machine disturbs them alike; the steady CPU's median and spread.
//!
//! Two sets of followed processes: 500 idle ones (what most processes of a suite are), and 50
//! that open and close a descriptor every 100 ms (`leak-sim fds --pool 4`), the case that
//! makes both backends count at every poll.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::recorder::{cpu_seconds_steady, record_cmd};
use super::{machine, remove_store};

/// Rounds of every configuration; the median and the spread (lowest to highest) are reported.
const ROUNDS: usize = 4;
const INTERVAL_MS: u64 = 100;
const WARM_UP: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(8);
const BACKENDS: [&str; 2] = ["procfs", "ebpf"];

/// A set of followed processes, killed when dropped.
struct Set {
    name: &'static str,
    children: Vec<Child>,
}

impl Set {
    fn start(sim: &Path, name: &'static str, n: usize, args: &[&str]) -> Result<Set> {
        let mut set = Set {
            name,
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = Command::new(sim)
                .args(args)
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", sim.display()))?;
            set.children.push(child);
        }
        std::thread::sleep(Duration::from_millis(500));
        Ok(set)
    }

    fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }
}

impl Drop for Set {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The comparison, as a markdown table (also printed as it goes).
pub fn counts(user: &Path, sim: &Path, dir: &Path) -> Result<String> {
    let sets = [
        (
            "500 idle processes",
            500,
            vec!["flat", "--base", "1MiB", "--duration", "900s"],
        ),
        (
            "50 processes opening and closing a descriptor every 100 ms",
            50,
            vec![
                "fds",
                "--pool",
                "4",
                "--every",
                "100ms",
                "--duration",
                "900s",
            ],
        ),
    ];
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nWhat counting threads and descriptors costs the recorder (steady CPU over {} s from {} s \
         after the start, at {INTERVAL_MS} ms; median of {ROUNDS} alternating rounds, lowest to \
         highest in brackets; {}):\n",
        WINDOW.as_secs(),
        WARM_UP.as_secs(),
        machine()
    );
    let _ = writeln!(
        table,
        "| followed | backend | with counts | without (`MEMTOOLS_NO_COUNTS=1`) |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|");
    for (name, n, args) in &sets {
        let set = Set::start(sim, name, *n, args)?;
        let pids = set.pids();
        // [backend][with counts?] -> steady CPU % per round.
        let mut cpu = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        let configs: Vec<(usize, usize)> =
            (0..BACKENDS.len()).flat_map(|b| [(b, 0), (b, 1)]).collect();
        for round in 0..ROUNDS {
            // Every other round in the reverse order, so no configuration always follows the
            // same one (a run can leave the machine warmer or busier for the next).
            let order: Vec<(usize, usize)> = if round % 2 == 0 {
                configs.clone()
            } else {
                configs.iter().rev().copied().collect()
            };
            for (b, c) in order {
                let (backend, with_counts) = (BACKENDS[b], c == 0);
                let store = dir.join(format!("counts-{b}-{c}.db"));
                remove_store(&store);
                let whole = WARM_UP + WINDOW + Duration::from_secs(1);
                let mut cmd = record_cmd(user, &store, backend, INTERVAL_MS, whole, &pids);
                if !with_counts {
                    cmd.env("MEMTOOLS_NO_COUNTS", "1");
                }
                let (_, steady, _) = cpu_seconds_steady(&mut cmd, Some((WARM_UP, WINDOW)))?;
                let pct = steady.unwrap_or(f64::NAN) / WINDOW.as_secs_f64() * 100.0;
                eprintln!(
                    "xtask: counts, {} round {}: {backend} {} counts: {pct:.3} % of a core",
                    set.name,
                    round + 1,
                    if with_counts { "with" } else { "without" }
                );
                cpu[b][c].push(pct);
                remove_store(&store);
            }
        }
        for (b, backend) in BACKENDS.into_iter().enumerate() {
            let _ = writeln!(
                table,
                "| {name} | {backend} | {} | {} |",
                summary(&cpu[b][0]),
                summary(&cpu[b][1])
            );
        }
        drop(set);
    }
    Ok(table)
}

/// `0.123 % (0.100-0.150)`: the median and the spread.
fn summary(v: &[f64]) -> String {
    let (median, lo, hi) = super::median_and_range(v);
    format!("{median:.3} % ({lo:.3}-{hi:.3})")
}
