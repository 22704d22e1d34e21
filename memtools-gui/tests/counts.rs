//! The viewer on the leaks that are not bytes (issue 14): a session's threads and descriptors
//! are picked like any metric (or opened with `--metric`), counted in numbers, not bytes, and
//! judged in their own units.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use memtools::analysis::{GIB, Unit, Verdict};
use memtools::model::{
    BackendKind, Metric, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, ProcessLimits,
    Sample, TimeNs,
};
use memtools::store::Store;
use memtools_gui::{App, Saved};

const T0: TimeNs = 1_767_225_600 * NS_PER_SEC;

/// A session of two processes over 10 minutes: `server` opens 9 descriptors a second and
/// closes none (its memory flat), `pool` runs a fixed pool of 8 threads.
fn store(dir: &Path) -> PathBuf {
    let path = dir.join("counts.db");
    let store = Store::open(&path).expect("create store");
    let mut w = store
        .begin_session(&NewSession {
            host: "test".into(),
            kernel: "6.18".into(),
            backend: BackendKind::Procfs,
            backend_reason: "test".into(),
            interval_ns: Some(NS_PER_SEC),
            command: Some("serve".into()),
            source: None,
            start: T0,
            monotonic_offset_ns: None,
            mem_total: Some(2 * GIB),
            threads_max: Some(100_000),
            pid_max: Some(32_768),
        })
        .expect("session");
    for (pid, name, fds, threads) in [(7u32, "server", 9.0, 0.0), (8, "pool", 0.0, 8.0)] {
        let info = ProcessInfo {
            key: ProcessKey {
                pid,
                start_time: u64::from(pid),
            },
            ppid: None,
            name: name.into(),
            cmdline: name.into(),
        };
        let limits = ProcessLimits {
            open_files: Some(8192),
            ..ProcessLimits::default()
        };
        let id = w.add_process(&info, limits).expect("process");
        for i in 0..600i64 {
            let x = i as f64;
            let metrics = Metrics {
                rss_anon: Some(40 << 20),
                rss_file: Some(0),
                rss_shmem: Some(0),
                fds: Some((12.0 + fds * x) as u64),
                threads: Some(1 + (threads * x / 30.0).min(threads) as u64),
                ..Metrics::default()
            };
            w.add_sample(
                id,
                &Sample {
                    time: T0 + i * NS_PER_SEC,
                    metrics,
                },
            )
            .expect("sample");
        }
    }
    w.finish(T0 + 600 * NS_PER_SEC, None).expect("finish");
    path
}

fn settle(h: &mut Harness<'_, App>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        h.step();
        if !h.state().busy() {
            break;
        }
        assert!(Instant::now() < deadline, "the app stayed busy");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(4);
}

#[test]
fn descriptors_and_threads_are_counted_and_judged_in_their_own_units() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store(dir.path());
    // Opened on descriptors, as `memtools-gui --metric fds` does.
    let app = App::new(path.clone(), Saved::default()).with_metric(Some(Metric::Fds));
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .with_max_steps(10_000)
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    settle(&mut h);
    let app = h.state();
    assert_eq!(app.loaded.as_ref().map(|l| l.metric), Some(Metric::Fds));
    let server = app.rows.iter().find(|r| r.name == "server").unwrap();
    assert_eq!(server.unit, Unit::Count);
    assert_eq!(server.verdict, Some(Verdict::Leak), "{}", server.reason);
    assert!(server.reason.starts_with("12 -> 5,"), "{}", server.reason);
    assert!(
        server.reason.contains("reaches its limit of 8,192"),
        "{}",
        server.reason
    );
    let pool = app.rows.iter().find(|r| r.name == "pool").unwrap();
    assert_eq!(pool.verdict, Some(Verdict::Ok), "{}", pool.reason);
    // Counts are written as numbers in the table, not as bytes.
    assert!(h.query_all_by_label("5,403").count() >= 1);
    assert_eq!(h.query_all_by_label_contains("KiB").count(), 0);

    // Threads, picked like any metric: the pool grew to its size and stayed.
    h.state_mut().set_metric(Metric::Threads);
    settle(&mut h);
    let app = h.state();
    let pool = app.rows.iter().find(|r| r.name == "pool").unwrap();
    assert_eq!(pool.verdict, Some(Verdict::Ok), "{}", pool.reason);
    // Grown in its first 30 s of ten minutes: nothing grows over the second half.
    assert!(pool.reason.starts_with("no growth"), "{}", pool.reason);
    assert_eq!(pool.peak, 9.0);
}
