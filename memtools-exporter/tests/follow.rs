//! Following a store as a recorder writes it: the running processes' newest values, the live
//! analysis's verdicts over the sliding window, exited processes gone, change-only (eBPF)
//! recordings held, and the window sliding past what it no longer covers.

use std::time::Duration;

use memtools::model::{
    BackendKind, Metric, Metrics, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
};
use memtools::store::Store;
use memtools_exporter::follow::{FollowConfig, Follower};
use memtools_exporter::stats::RecorderView;

const S: i64 = 1_000_000_000;
const MIB: u64 = 1 << 20;
/// The session starts at this wall-clock time; processes start with it (boot clock = offset 0).
const T0: i64 = 1_800_000_000 * S;

fn session(backend: BackendKind) -> NewSession {
    NewSession {
        host: "h".into(),
        kernel: "k".into(),
        backend,
        backend_reason: "test".into(),
        interval_ns: Some(S),
        command: Some("--all".into()),
        source: None,
        start: T0,
        monotonic_offset_ns: Some(0),
        mem_total: Some(64 << 30),
        threads_max: None,
        pid_max: None,
    }
}

fn info(pid: u32, name: &str) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: T0 as u64,
        },
        ppid: Some(1),
        name: name.into(),
        cmdline: String::new(),
    }
}

fn sample(t: i64, anon: u64) -> Sample {
    Sample {
        time: t,
        metrics: Metrics {
            rss_anon: Some(anon),
            rss_file: Some(4 * MIB),
            rss_shmem: Some(0),
            swap: Some(0),
            vm_size: Some(anon + 100 * MIB),
            page_faults: Some(anon / 4096),
            ..Metrics::default()
        },
    }
}

fn config() -> FollowConfig {
    FollowConfig {
        window: Duration::from_secs(600),
        analysis_every: Duration::from_secs(15),
        top: 10,
        ..FollowConfig::default()
    }
}

fn rss_verdict(snap: &memtools_exporter::Snapshot, pid: u32) -> Option<bool> {
    snap.processes
        .iter()
        .find(|p| p.pid == pid)?
        .verdict(Metric::Rss)
        .map(|v| v.leak)
}

#[test]
fn a_leak_and_a_steady_process_get_their_verdicts_and_an_exited_one_disappears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let mut w = store.begin_session(&session(BackendKind::Procfs)).unwrap();
    let id = w.session_id();
    let leaky = w
        .add_process(&info(100, "leaky"), ProcessLimits::default())
        .unwrap();
    let steady = w
        .add_process(&info(200, "steady"), ProcessLimits::default())
        .unwrap();
    let brief = w
        .add_process(&info(300, "brief"), ProcessLimits::default())
        .unwrap();
    for t in 0..120 {
        w.add_sample(leaky, &sample(T0 + t * S, 10 * MIB + t as u64 * MIB))
            .unwrap();
        w.add_sample(
            steady,
            &sample(T0 + t * S, 50 * MIB + (t % 3) as u64 * 4096),
        )
        .unwrap();
        if t < 10 {
            w.add_sample(brief, &sample(T0 + t * S, MIB)).unwrap();
        }
    }
    w.flush().unwrap();

    let mut f = Follower::open(&path, id, config()).unwrap();
    let snap = f.refresh(T0 + 120 * S, RecorderView::default()).unwrap();
    let pids: Vec<u32> = snap.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![100, 200, 300]);
    assert_eq!(rss_verdict(&snap, 100), Some(true), "{snap:?}");
    assert_eq!(rss_verdict(&snap, 200), Some(false));
    // Ten samples: too few to judge, so no verdict (no series), never a silent ok.
    assert_eq!(rss_verdict(&snap, 300), None);
    let leak = snap.processes[0].verdict(Metric::Rss).unwrap();
    assert!(
        (leak.slope_per_s - MIB as f64).abs() < 0.05 * MIB as f64,
        "{leak:?}"
    );
    assert!(leak.time_to_limit_s.is_some_and(|t| t > 3600.0), "{leak:?}");
    assert_eq!(
        snap.processes[0].latest.get(Metric::Rss),
        Some(10 * MIB + 119 * MIB + 4 * MIB)
    );
    assert!(snap.analysis.is_some_and(|a| a.processes == 3));

    // brief exits; its series go with it. New samples are read on the next refresh.
    w.process_exited(brief, T0 + 10 * S).unwrap();
    w.add_sample(leaky, &sample(T0 + 120 * S, 300 * MIB))
        .unwrap();
    w.flush().unwrap();
    let snap = f.refresh(T0 + 121 * S, RecorderView::default()).unwrap();
    let pids: Vec<u32> = snap.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![100, 200]);
    assert_eq!(snap.processes[0].latest.rss_anon, Some(300 * MIB));
    // Verdicts stand until the next analysis (at most every 15 s).
    assert_eq!(rss_verdict(&snap, 100), Some(true));
    drop(w);
}

#[test]
fn the_window_holds_its_length_only_and_judges_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let mut w = store.begin_session(&session(BackendKind::Procfs)).unwrap();
    let id = w.session_id();
    let p = w
        .add_process(&info(100, "grew"), ProcessLimits::default())
        .unwrap();
    // Flat for 20 minutes, then 1 MiB/s for the last 5.
    for t in 0..1500 {
        let v = 10 * MIB + (t - 1200).max(0) as u64 * MIB;
        w.add_sample(p, &sample(T0 + t * S, v)).unwrap();
    }
    w.flush().unwrap();
    let mut f = Follower::open(&path, id, config()).unwrap();
    let snap = f.refresh(T0 + 1499 * S, RecorderView::default()).unwrap();
    // The 10-minute window: 5 flat minutes, then the growth up to now: a leak.
    assert_eq!(rss_verdict(&snap, 100), Some(true));
    assert!(
        (590..=601).contains(&f.window_points()),
        "{} points",
        f.window_points()
    );
    drop(w);
}

#[test]
fn a_change_only_recording_holds_each_value_until_now() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let mut w = store.begin_session(&session(BackendKind::Ebpf)).unwrap();
    let id = w.session_id();
    let idle = w
        .add_process(&info(100, "idle"), ProcessLimits::default())
        .unwrap();
    let busy = w
        .add_process(&info(200, "busy"), ProcessLimits::default())
        .unwrap();
    // The idle process changed once, long ago (before the window); the busy one every second.
    w.add_sample(idle, &sample(T0, 20 * MIB)).unwrap();
    for t in 0..1200 {
        w.add_sample(busy, &sample(T0 + t * S, 30 * MIB + (t % 2) as u64 * 4096))
            .unwrap();
    }
    w.flush().unwrap();
    let mut f = Follower::open(&path, id, config()).unwrap();
    let mut snap = f.refresh(T0 + 1200 * S, RecorderView::default()).unwrap();
    for s in 1..=30 {
        snap = f
            .refresh(T0 + (1200 + s) * S, RecorderView::default())
            .unwrap();
        w.add_sample(busy, &sample(T0 + (1200 + s) * S, 30 * MIB))
            .unwrap();
        w.flush().unwrap();
    }
    let idle_view = snap.processes.iter().find(|p| p.pid == 100).unwrap();
    assert_eq!(idle_view.latest.rss_anon, Some(20 * MIB));
    // Held at each refresh: 30+ points of a flat history, judged ok.
    assert_eq!(rss_verdict(&snap, 100), Some(false), "{idle_view:?}");
    drop(w);
}
