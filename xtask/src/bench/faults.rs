//! `cargo xtask bench faults`: the slowdown of a page-fault-heavy workload (touching 4 GiB
//! page by page) while each backend records it, against no recorder: the eBPF programs run in
//! the faulting task, so their cost shows there, not in the recorder's CPU time.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::workers::{FAULT_BYTES, FAULT_CHUNK, parse_timing};
use super::{build_release, remove_store};
use crate::root;

/// Runs of the fault workload per configuration; the fastest is reported (the machine is
/// shared: the least disturbed run is the closest to the workload's own cost).
const FAULT_RUNS: usize = 7;

/// The fault-heavy workload: this program again (`bench __touch`), which waits for a line on
/// stdin (so a recorder can attach to it first), then faults its memory in and reports the
/// (wall seconds, CPU seconds) of the timed faults.
fn fault_workload(recorder: Option<(&Path, &Path, &[&str])>) -> Result<(f64, f64)> {
    let exe = std::env::current_exe().context("cannot find xtask's own binary")?;
    let mut worker = Command::new(exe)
        .args(["bench", "__touch", &(FAULT_BYTES >> 30).to_string()])
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
    parse_timing(&String::from_utf8_lossy(&out.stdout))
}

fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The fault-heavy workload without a recorder, then with each backend recording it.
/// The whole benchmark; the table goes to stdout and target/bench/faults.md.
pub fn faults() -> Result<()> {
    let (user, _) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("faults.db");
    let configs: [Option<&[&str]>; 4] = [
        None,
        Some(&["--backend", "procfs"]),
        Some(&["--backend", "ebpf", "--no-sites"]),
        Some(&["--backend", "ebpf", "--no-sites", "--rss-events"]),
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
