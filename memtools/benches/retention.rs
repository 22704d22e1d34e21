//! `cargo xtask bench retention`: retention pruning a week of samples beside a recorder.
//!
//! A store holds a week of a retained session (50 processes, a sample every 10 s: 3 million
//! samples). A recorder writes 50 processes every 100 ms into a session of its own, as the /proc
//! backend does, on its own connection; each tick's drain (writing the samples, committing every
//! 250 ms) is timed. Configurations alternate in rounds, each on a fresh copy of the week: no
//! pruning, and pruning to one day (`Store::prune` with the default pace, as `serve --retain 1d`
//! does) running at the same time. Then one whole pass shrinks the store to its last day.
//!
//! Development figures on a shared machine; see the README for the conditions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memtools::model::{
    BackendKind, Metrics, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
};
use memtools::store::{Pace, Store};

const S: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * S;
const PROCESSES: u32 = 50;
const WEEK_EVERY: i64 = 10 * S;
const TICK: Duration = Duration::from_millis(100);
const RUN: Duration = Duration::from_secs(15);
const ROUNDS: usize = 3;

fn session(start: i64) -> NewSession {
    NewSession {
        host: "bench".into(),
        kernel: "k".into(),
        backend: BackendKind::Procfs,
        backend_reason: "bench".into(),
        interval_ns: Some(WEEK_EVERY),
        command: Some("--all".into()),
        source: None,
        start,
        monotonic_offset_ns: Some(0),
        mem_total: Some(1 << 34),
        threads_max: None,
        pid_max: None,
    }
}

fn info(pid: u32) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: pid as u64,
        },
        ppid: Some(1),
        name: format!("svc{pid}"),
        cmdline: String::new(),
    }
}

fn sample(t: i64, v: u64) -> Sample {
    Sample {
        time: t,
        metrics: Metrics {
            rss_anon: Some(v),
            rss_file: Some(v / 2),
            rss_shmem: Some(0),
            swap: Some(0),
            vm_size: Some(v * 4),
            page_faults: Some(v / 4096),
            ..Metrics::default()
        },
    }
}

/// The week's store, made once a day and schema version and kept in target/bench.
fn week(now: i64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let version = memtools::store::schema::CURRENT_VERSION;
    let path = dir.join(format!("retention-week-{}-v{version}.db", now / DAY));
    if path.exists() {
        return path;
    }
    let began = Instant::now();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    {
        let store = Store::open(&tmp).expect("a store");
        let mut w = store
            .begin_session(&session(now - 7 * DAY))
            .expect("a session");
        let id = w.session_id();
        let ids: Vec<i64> = (0..PROCESSES)
            .map(|p| {
                w.add_process(&info(1000 + p), ProcessLimits::default())
                    .expect("process")
            })
            .collect();
        let mut t = now - 7 * DAY;
        let mut n = 0u64;
        while t < now {
            for (i, &p) in ids.iter().enumerate() {
                w.add_sample(p, &sample(t, (i as u64 + 1) << 20))
                    .expect("sample");
                n += 1;
            }
            if n % 200_000 < PROCESSES as u64 {
                w.flush().expect("flush");
            }
            t += WEEK_EVERY;
        }
        w.flush().expect("flush");
        drop(w);
        store
            .set_retention(id, Some(Duration::from_secs(86_400)))
            .expect("retention");
    }
    std::fs::rename(&tmp, &path).expect("keeping the week");
    eprintln!("made {} in {:.0?}", path.display(), began.elapsed());
    path
}

/// Copies the week (and its WAL, if any) to a fresh file.
fn fresh_copy(week: &Path, name: &str) -> PathBuf {
    let to = week.with_file_name(name);
    for suffix in ["", "-wal", "-shm"] {
        let mut p = to.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    std::fs::copy(week, &to).expect("copying the week");
    to
}

struct Outcome {
    drains: Vec<Duration>,
    pruned: u64,
}

/// A recorder writing 50 processes every 100 ms for `RUN`, with pruning beside it or not.
fn run(path: &Path, now: i64, prune: bool) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let pruner = prune.then(|| {
        let (path, stop) = (path.to_path_buf(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let store = Store::open(&path).expect("the pruner's store");
            store
                .prune(now - DAY, None, &Pace::default(), || {
                    stop.load(Ordering::Relaxed)
                })
                .expect("pruning")
                .samples
        })
    });
    let store = Store::open(path).expect("the recorder's store");
    let mut w = store.begin_session(&session(now)).expect("a session");
    let ids: Vec<i64> = (0..PROCESSES)
        .map(|p| {
            w.add_process(&info(5000 + p), ProcessLimits::default())
                .expect("process")
        })
        .collect();
    let mut drains = Vec::new();
    let began = Instant::now();
    let mut tick = 0u32;
    while began.elapsed() < RUN {
        let t = now + i64::from(tick) * TICK.as_nanos() as i64;
        let d = Instant::now();
        for (i, &p) in ids.iter().enumerate() {
            w.add_sample(p, &sample(t, (i as u64 + 7) << 20))
                .expect("sample");
        }
        w.flush_if_due().expect("commit");
        drains.push(d.elapsed());
        tick += 1;
        let next = began + TICK * tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    w.flush().expect("commit");
    stop.store(true, Ordering::Relaxed);
    let pruned = pruner.map_or(0, |h| h.join().expect("the pruner"));
    Outcome { drains, pruned }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // Criterion-style arguments (`--bench`) are ignored: this is a plain measuring program.
    let now = 1_800_000_000 * S;
    let week = week(now);
    let samples = count;
    println!(
        "week store: {} samples, {:.0} MiB",
        samples(&week),
        std::fs::metadata(&week).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64
    );
    println!("| round | pruning | ticks | median drain | p99 | max | pruned during the run |");
    println!("|---|---|---|---|---|---|---|");
    let mut all: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        for prune in [false, true] {
            let path = fresh_copy(&week, "retention-run.db");
            let mut o = run(&path, now, prune);
            o.drains.sort();
            println!(
                "| {round} | {} | {} | {} | {} | {} | {} |",
                if prune { "to 1 day" } else { "off" },
                o.drains.len(),
                ms(quantile(&o.drains, 0.5)),
                ms(quantile(&o.drains, 0.99)),
                ms(*o.drains.last().expect("ticks")),
                o.pruned
            );
            all[prune as usize].extend(o.drains);
        }
    }
    for (i, name) in ["off", "to 1 day"].iter().enumerate() {
        let d = &mut all[i];
        d.sort();
        println!(
            "all rounds, pruning {name}: median {}, p99 {}, max {}",
            ms(quantile(d, 0.5)),
            ms(quantile(d, 0.99)),
            ms(*d.last().expect("ticks"))
        );
    }
    // One whole pass, nothing else running: the week shrinks to its last day.
    let path = fresh_copy(&week, "retention-run.db");
    let store = Store::open(&path).expect("store");
    let began = Instant::now();
    let pruned = store
        .prune(now - DAY, None, &Pace::default(), || false)
        .expect("pruning");
    println!(
        "whole pass to 1 day: {} samples pruned in {:.1} s ({:.0} samples/s); {} left (a day at 10 s: {})",
        pruned.samples,
        began.elapsed().as_secs_f64(),
        pruned.samples as f64 / began.elapsed().as_secs_f64(),
        samples(&path),
        PROCESSES as i64 * DAY / WEEK_EVERY
    );
}

/// Samples in a store, by its sessions' counts.
fn count(path: &Path) -> i64 {
    let store = Store::open_read_only(path).expect("store");
    store
        .sessions()
        .expect("sessions")
        .iter()
        .map(|s| s.samples as i64)
        .sum()
}
