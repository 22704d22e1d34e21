//! `cargo xtask bench`: the measurements behind the README's figures.
//!
//! - `recorder`: CPU time the recorder spends per second of recording while it follows 1, 50
//!   and 500 processes at 100 ms and 10 ms, store bytes per sample, and the same polling done
//!   the way memorytools does it (psutil `process_iter()` + `memory_info()`) for comparison.
//! - `analysis`: the criterion benchmarks of the analysis pipeline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, sh};

const COUNTS: [usize; 3] = [1, 50, 500];
const INTERVALS_MS: [u64; 2] = [100, 10];
const SECONDS: u64 = 10;

/// Runs the benchmarks named in `args` (all by default).
pub fn bench(args: &[String]) -> Result<()> {
    let which = args.first().map_or("all", String::as_str);
    match which {
        "recorder" => recorder(),
        "analysis" => analysis(),
        "all" => {
            recorder()?;
            analysis()
        }
        other => bail!("unknown benchmark `{other}` (recorder, analysis or all)"),
    }
}

fn analysis() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools-user", "--bench", "analysis"]))
}

/// The processes under observation: flat leak-sims that hold a little memory.
struct Followed {
    children: Vec<Child>,
}

impl Followed {
    fn start(sim: &Path, n: usize) -> Result<Followed> {
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

    fn pids(&self) -> Vec<String> {
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
    ours_cpu_pct: f64,
    ours_samples: u64,
    bytes_per_sample: f64,
    psutil_cpu_pct: Option<f64>,
    psutil_samples: Option<u64>,
}

fn recorder() -> Result<()> {
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
    let release = root().join("target/release");
    let user = release.join("memtools-user");
    let sim = release.join("leak-sim");
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
        for interval_ms in INTERVALS_MS {
            let store = dir.join(format!("recorder-{n}-{interval_ms}ms.db"));
            remove_store(&store);
            let mut cmd = Command::new(&user);
            cmd.arg("record")
                .arg("--store")
                .arg(&store)
                .args(["--interval", &format!("{interval_ms}ms")])
                .args(["--duration", &format!("{SECONDS}s")]);
            for p in &pids {
                cmd.args(["--pid", p]);
            }
            let (cpu, _) = cpu_seconds(&mut cmd)?;
            let (samples, bytes) = store_figures(&user, &store)?;
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
            let row = Row {
                processes: n,
                interval_ms,
                ours_cpu_pct: cpu / SECONDS as f64 * 100.0,
                ours_samples: samples,
                bytes_per_sample: bytes as f64 / samples.max(1) as f64,
                psutil_cpu_pct: psutil_cpu,
                psutil_samples,
            };
            eprintln!(
                "xtask: {n} processes @ {interval_ms} ms: memtools {:.2} % of a core, {} samples, {:.1} B/sample; psutil {}",
                row.ours_cpu_pct,
                row.ours_samples,
                row.bytes_per_sample,
                row.psutil_cpu_pct
                    .map_or("-".into(), |c| format!("{c:.2} %"))
            );
            rows.push(row);
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

fn remove_store(store: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = store.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Samples in the store's only session, and the store's size on disk.
fn store_figures(user: &Path, store: &Path) -> Result<(u64, u64)> {
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
        "| processes | interval | memtools (procfs) CPU | samples | store bytes/sample | psutil polling CPU | psutil samples |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} ms | {:.2} % | {} | {:.1} | {} | {} |",
            r.processes,
            r.interval_ms,
            r.ours_cpu_pct,
            r.ours_samples,
            r.bytes_per_sample,
            r.psutil_cpu_pct.map_or("-".into(), |c| format!("{c:.2} %")),
            r.psutil_samples.map_or("-".into(), |c| c.to_string()),
        );
    }
    s
}
