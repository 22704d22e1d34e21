//! The fleet benchmarks (`cargo xtask bench exporter`, `cargo xtask bench retention`): what the
//! exporter and retention cost, behind the README's fleet section.
//!
//! - `exporter`: memtools-exporter's bench (scrapes at 500 and 5,000 processes, a day of `--all`
//!   simulated), then the real `serve --all` on this machine for two minutes, scraped every 15 s
//!   as Prometheus would: its resident memory and CPU time.
//! - `retention`: memtools' bench of pruning a week of samples beside a recorder.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::build_release;
use crate::{cargo, root, sh};

/// How long the real `serve` runs.
const SERVE_FOR: Duration = Duration::from_secs(120);
/// Prometheus' usual scrape interval.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

pub fn retention() -> Result<()> {
    sh(cargo().args(["bench", "-p", "memtools", "--bench", "retention"]))
}

pub fn exporter() -> Result<()> {
    // Each in a process of its own, so the day's memory is the day's alone.
    for part in ["scrape", "day"] {
        sh(cargo().args([
            "bench",
            "-p",
            "memtools-exporter",
            "--bench",
            "exporter",
            "--",
            part,
        ]))?;
    }
    serve_on_this_machine()
}

/// `GET /metrics`; the body's length.
fn scrape(addr: &str) -> Result<usize> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out.len())
}

/// (resident bytes, peak resident bytes, CPU seconds) of a process.
fn usage(pid: u32) -> Result<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((kb("VmRSS:"), kb("VmHWM:"), ticks as f64 / hz))
}

/// The real `serve --all` here, scraped as Prometheus would, for two minutes.
fn serve_on_this_machine() -> Result<()> {
    let (user, _) = build_release()?;
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let store = dir.join("serve.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    let mut child = Command::new(&user)
        .args(["serve", "--all", "--listen", "127.0.0.1:0", "--store"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", user.display()))?;
    let pid = child.id();
    let result = (|| -> Result<()> {
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let Some(line) = lines.next().transpose()? else {
                bail!("serve stopped before serving");
            };
            if let Some(rest) = line.split("serving http://").nth(1) {
                break rest.split("/metrics").next().unwrap_or("").to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let began = Instant::now();
        let mut bytes = 0;
        while began.elapsed() < SERVE_FOR {
            bytes = scrape(&addr)?;
            std::thread::sleep(SCRAPE_EVERY);
        }
        let (rss, hwm, cpu) = usage(pid)?;
        let processes = std::fs::read_dir("/proc")?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .count();
        println!(
            "serve --all here ({processes} processes, 1 s, scraped every 15 s) after {} s: resident {:.1} MiB (peak {:.1} MiB), CPU {:.2} s ({:.2} % of a core), scrape {:.0} KiB",
            SERVE_FOR.as_secs(),
            rss as f64 / (1 << 20) as f64,
            hwm as f64 / (1 << 20) as f64,
            cpu,
            100.0 * cpu / began.elapsed().as_secs_f64(),
            bytes as f64 / 1024.0
        );
        Ok(())
    })();
    // SAFETY: kill has no memory-safety preconditions; pid is our child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    result
}
