//! `cargo xtask bench exporter`: what a scrape costs, and what the exporter holds after a day.
//!
//! 1. Scrapes of 500 and 5,000 running processes (a session of `--all` at 1 s, ten minutes of it
//!    in the store, `--top 50`), alternating in rounds: the exporter's first read of the store
//!    and its analysis, a steady read (one new second), encoding the exposition, and `GET
//!    /metrics` over loopback as Prometheus does it: each scrape finds the data stale and waits
//!    for the exporter to read the new second and encode it.
//! 2. A day of `--all` simulated: 500 running processes, one exiting and a new one starting every
//!    10 s (8,640 over the day), a sample of each every 5 s written as the recorder writes them;
//!    the exporter reads every 30 s and analyses every 5 minutes of the day's clock. Its memory
//!    (the process's resident set) after the day, and how many points its windows hold.
//!
//! Development figures on a shared machine; see the README for the conditions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memtools::model::{
    BackendKind, Metrics, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
};
use memtools::store::Store;
use memtools_exporter::encode::Exposition;
use memtools_exporter::{
    Config, Exporter, FollowConfig, Follower, RecorderStats, RecorderView, bind,
};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_800_000_000 * S;
const ROUNDS: usize = 3;
const GETS: usize = 5;

fn session() -> NewSession {
    session_at(T0)
}

fn session_at(start: i64) -> NewSession {
    NewSession {
        host: "bench".into(),
        kernel: "k".into(),
        backend: BackendKind::Procfs,
        backend_reason: "bench".into(),
        interval_ns: Some(S),
        command: Some("--all".into()),
        source: None,
        start,
        monotonic_offset_ns: Some(0),
        mem_total: Some(1 << 35),
        threads_max: None,
        pid_max: None,
    }
}

fn info(pid: u32) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: T0 as u64,
        },
        ppid: Some(1),
        name: format!("svc{}", pid % 97),
        cmdline: String::new(),
    }
}

/// A process's memory at `t`: most flat with noise, one in 50 leaking 64 KiB/s.
fn sample(pid: u32, t: i64) -> Sample {
    let base = (u64::from(pid % 200) + 4) << 20;
    let secs = ((t - T0) / S) as u64;
    let leak = if pid.is_multiple_of(50) {
        secs * 65_536
    } else {
        0
    };
    let noise = (u64::from(pid).wrapping_mul(2_654_435_761) ^ secs.wrapping_mul(40_503)) % 65_536;
    let anon = base + leak + noise;
    Sample {
        time: t,
        metrics: Metrics {
            rss_anon: Some(anon),
            rss_file: Some(base / 4),
            rss_shmem: Some(0),
            swap: Some(0),
            vm_size: Some(anon * 3),
            page_faults: Some(anon / 4096),
            ..Metrics::default()
        },
    }
}

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A store with `n` processes and ten minutes of them at 1 s, made once per schema version (a
/// store an older build made is not this build's).
fn store_of(n: u32) -> (PathBuf, i64) {
    let version = memtools::store::schema::CURRENT_VERSION;
    let path = bench_dir().join(format!("exporter-{n}-v{version}.db"));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let store = Store::open(&tmp).expect("a store");
        let mut w = store.begin_session(&session()).expect("a session");
        let ids: Vec<(u32, i64)> = (0..n)
            .map(|i| {
                let pid = 1000 + i;
                (
                    pid,
                    w.add_process(&info(pid), ProcessLimits::default())
                        .expect("p"),
                )
            })
            .collect();
        for s in 0..600 {
            for &(pid, id) in &ids {
                w.add_sample(id, &sample(pid, T0 + s * S)).expect("sample");
            }
            w.flush().expect("flush");
        }
        drop(w);
        drop(store);
        std::fs::rename(&tmp, &path).expect("keeping the store");
    }
    (path, 1)
}

fn config() -> FollowConfig {
    FollowConfig {
        top: 50,
        ..FollowConfig::default()
    }
}

/// `GET /metrics` as Prometheus asks for it; returns the bytes received.
fn scrape(addr: &str) -> usize {
    let mut s = TcpStream::connect(addr).expect("connecting");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n"
    )
    .expect("asking");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("reading");
    out.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A fresh copy of a store, to write to.
fn copy(from: &Path) -> PathBuf {
    let to = from.with_file_name("exporter-run.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = to.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    std::fs::copy(from, &to).expect("copying the store");
    to
}

/// One round at `n` processes; prints one table row.
fn scrape_round(round: usize, n: u32) {
    let (made, session) = store_of(n);
    let path = copy(&made);
    // The writer first, as in `serve`: the exporter then reads a store being written (through
    // its WAL), not a finished one (which a reader opens immutable).
    let writer_store = Store::open(&path).expect("the store");
    let mut follower = Follower::open(&path, session, config()).expect("following");
    let end = T0 + 600 * S;
    let t = Instant::now();
    let snapshot = follower
        .refresh(end, RecorderView::default())
        .expect("refresh");
    let first = t.elapsed();
    let analysis = snapshot.analysis.map_or(Duration::ZERO, |a| a.duration);
    // Steady reads: one more second of every process written, then read.
    let processes = writer_store.running_processes(session).expect("processes");
    let mut w = writer_store
        .begin_session(&session_at(end))
        .expect("a writer");
    let mut steady = Vec::new();
    for k in 1..=5 {
        for p in &processes {
            w.add_sample(p.id, &sample(p.info.key.pid, end + k * S))
                .expect("sample");
        }
        w.flush().expect("flush");
        let t = Instant::now();
        follower
            .refresh(end + k * S, RecorderView::default())
            .expect("refresh");
        steady.push(t.elapsed());
    }
    let snapshot = Arc::new(snapshot);
    let mut encode = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let e = Exposition::of(Arc::clone(&snapshot));
        encode.push(t.elapsed());
        bytes = e.openmetrics.len();
    }
    // The real server, with the refresher following the same store.
    let stats = Arc::new(RecorderStats::default());
    stats.publish(RecorderView {
        session_id: Some(session),
        backend: "procfs".into(),
        ..RecorderView::default()
    });
    let exporter = Exporter::start(
        bind("127.0.0.1:0").expect("a port"),
        &path,
        Config::default(),
        stats,
    )
    .expect("the exporter");
    let addr = exporter.local_addr().to_string();
    let ready = Instant::now();
    while scrape(&addr) < bytes / 2 && ready.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // As Prometheus scrapes (every 15 s or so): each scrape finds the data stale (older than a
    // second, or ten times what a read takes: 6 s is past both here), so it waits for the
    // exporter to read what was written since, and encode it.
    let mut gets = Vec::new();
    for k in 6..6 + GETS as i64 {
        for p in &processes {
            w.add_sample(p.id, &sample(p.info.key.pid, end + k * S))
                .expect("sample");
        }
        w.flush().expect("flush");
        std::thread::sleep(Duration::from_secs(6));
        let t = Instant::now();
        scrape(&addr);
        gets.push(t.elapsed());
    }
    exporter.stop();
    drop(w);
    println!(
        "| {round} | {n} | {} | {} | {} | {} | {} | {:.0} KiB |",
        ms(first),
        ms(analysis),
        ms(median(steady)),
        ms(median(encode)),
        ms(median(gets)),
        bytes as f64 / 1024.0
    );
}

/// The process's resident memory now and at its peak, from /proc/self/status.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// A day of `--all` at 500 processes with churn, on the day's own clock.
fn day() {
    const LIVE: u32 = 500;
    const EVERY: i64 = 5 * S;
    let path = bench_dir().join("exporter-day.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let (rss_before, _) = memory();
    let began = Instant::now();
    let store = Store::open(&path).expect("a store");
    let mut w = store.begin_session(&session()).expect("a session");
    let id = w.session_id();
    let mut live: Vec<(u32, i64)> = (0..LIVE)
        .map(|i| {
            (
                1000 + i,
                w.add_process(&info(1000 + i), ProcessLimits::default())
                    .expect("p"),
            )
        })
        .collect();
    w.flush().expect("flush");
    let mut follower = Follower::open(
        &path,
        id,
        FollowConfig {
            top: 50,
            analysis_every: Duration::from_secs(300),
            ..FollowConfig::default()
        },
    )
    .expect("following");
    let mut next_pid = 1000 + LIVE;
    let mut started = LIVE;
    let mut exposition = 0;
    let mut t = T0;
    while t < T0 + 86_400 * S {
        for &(pid, pid_id) in &live {
            w.add_sample(pid_id, &sample(pid, t)).expect("sample");
        }
        if (t - T0) % (10 * S) == 0 && t > T0 {
            // One exits, a new one starts.
            let (_, gone) = live.remove(((t - T0) / (10 * S)) as usize % live.len());
            w.process_exited(gone, t).expect("exit");
            let id = w
                .add_process(&info(next_pid), ProcessLimits::default())
                .expect("p");
            live.push((next_pid, id));
            next_pid += 1;
            started += 1;
        }
        if (t - T0) % (30 * S) == 0 {
            w.flush().expect("flush");
            let snapshot = follower
                .refresh(t, RecorderView::default())
                .expect("refresh");
            exposition = Exposition::of(Arc::new(snapshot)).openmetrics.len();
        }
        t += EVERY;
    }
    w.flush().expect("flush");
    let (rss, hwm) = memory();
    println!(
        "a day of --all ({LIVE} running, {started} over the day, a sample every 5 s) in {:.0} s: \
         resident {} (peak {}; {} before), windows {} points, exposition {:.0} KiB, store {}",
        began.elapsed().as_secs_f64(),
        mib(rss),
        mib(hwm),
        mib(rss_before),
        follower.window_points(),
        exposition as f64 / 1024.0,
        mib(store.size_on_disk())
    );
}

fn main() {
    let which = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if which.as_deref() != Some("day") {
        println!(
            "| round | processes | first read + analysis | analysis | steady read | encode | GET /metrics | exposition |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for round in 1..=ROUNDS {
            for n in [500, 5000] {
                scrape_round(round, n);
            }
        }
    }
    if which.as_deref() != Some("scrape") {
        day();
    }
}
