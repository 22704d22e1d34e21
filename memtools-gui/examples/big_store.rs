//! Writes the benchmark's big session: 10 processes x 1,000,000 samples at 10 ms (10 million
//! samples), one growing, as a real store. The frame-time bench and scripts/frame-time.sh use it.
//!
//! Usage: cargo run --release -p memtools-gui --example big_store -- PATH

use std::path::Path;

use memtools::model::{
    BackendKind, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, Sample,
};
use memtools::store::Store;

#[allow(dead_code)] // also compiled into the bench, which has its own main
fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: big_store PATH");
        std::process::exit(2);
    };
    let t = std::time::Instant::now();
    write_store(Path::new(&path));
    eprintln!(
        "wrote 10M samples to {} in {:.1?}",
        Path::new(&path).display(),
        t.elapsed()
    );
}

pub const PROCESSES: u32 = 10;
pub const SAMPLES: i64 = 1_000_000;
const STEP_NS: i64 = 10_000_000;

/// Writes the session into a new store at `path`.
pub fn write_store(path: &Path) {
    let store = Store::open(path).expect("store");
    let start = 1_767_225_600 * NS_PER_SEC;
    let mut w = store
        .begin_session(&NewSession {
            host: "bench".into(),
            kernel: "6.12".into(),
            backend: BackendKind::Procfs,
            backend_reason: "bench".into(),
            interval_ns: Some(STEP_NS),
            command: Some("bench".into()),
            source: None,
            start,
            monotonic_offset_ns: None,
            mem_total: Some(16 << 30),
            threads_max: None,
            pid_max: None,
        })
        .expect("session");
    for p in 0..PROCESSES {
        let info = ProcessInfo {
            key: ProcessKey {
                pid: 1000 + p,
                start_time: u64::from(p),
            },
            ppid: None,
            name: format!("proc{p}"),
            cmdline: String::new(),
        };
        let id = w
            .add_process(&info, memtools::model::ProcessLimits::default())
            .expect("process");
        for i in 0..SAMPLES {
            // A sawtooth (garbage collector) on a base; process 0 also grows.
            let saw = (i % 5000) as u64 * 4096;
            let growth = if p == 0 { i as u64 * 64 } else { 0 };
            let m = Metrics {
                rss_anon: Some((100 << 20) + saw + growth),
                rss_file: Some(8 << 20),
                rss_shmem: Some(0),
                ..Default::default()
            };
            let s = Sample {
                time: start + i * STEP_NS,
                metrics: m,
            };
            w.add_sample(id, &s).expect("sample");
            if i % 100_000 == 0 {
                w.flush().expect("flush");
            }
        }
    }
    w.finish(start + SAMPLES * STEP_NS, None).expect("finish");
}
