//! Retention and the reads the exporter makes of a session being recorded: only sessions marked
//! with a retention are pruned, each process keeps its newest sample while it runs, counts stay
//! true, and a recorder writing on another connection keeps writing through it.

use std::time::Duration;

use memtools::model::{
    BackendKind, Metrics, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
};
use memtools::store::{Pace, Store};

const S: i64 = 1_000_000_000;

fn session(start: i64) -> NewSession {
    NewSession {
        host: "h".into(),
        kernel: "k".into(),
        backend: BackendKind::Procfs,
        backend_reason: "test".into(),
        interval_ns: Some(S),
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
        name: format!("p{pid}"),
        cmdline: String::new(),
    }
}

fn sample(t: i64, anon: u64) -> Sample {
    Sample {
        time: t,
        metrics: Metrics {
            rss_anon: Some(anon),
            rss_file: Some(0),
            rss_shmem: Some(0),
            vm_size: Some(anon * 2),
            ..Metrics::default()
        },
    }
}

fn count(store_path: &std::path::Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(store_path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn only_sessions_with_a_retention_lose_their_old_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    // A kept session (a CI run) and a retained one, both 100 s of one process.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut w = store.begin_session(&session(0)).unwrap();
        let p = w.add_process(&info(7), ProcessLimits::default()).unwrap();
        for t in 0..100 {
            w.add_sample(p, &sample(t * S, 100)).unwrap();
        }
        ids.push(w.finish(100 * S, None).unwrap());
    }
    let (kept, retained) = (ids[0], ids[1]);
    store
        .set_retention(retained, Some(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(
        store.retention(retained).unwrap(),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(store.retention(kept).unwrap(), None);

    // Cut at 60 s: the retained session's process exited at 100 s, so it keeps 60..99.
    let pace = Pace {
        batch: 7,
        pause: Duration::ZERO,
    };
    let pruned = store.prune(60 * S, None, &pace, || false).unwrap();
    assert_eq!(pruned.samples, 60);
    assert_eq!((pruned.processes, pruned.sessions), (0, 0));
    assert_eq!(store.session(kept).unwrap().samples, 100);
    assert_eq!(store.session(retained).unwrap().samples, 40);
    let series = store
        .series(retained, memtools::model::Metric::RssAnon)
        .unwrap();
    assert_eq!(series[0].1.first().map(|p| p.0), Some(60 * S));

    // Past its end: the process, its samples and then the empty session go; the kept one stays.
    let pruned = store.prune(200 * S, None, &pace, || false).unwrap();
    assert_eq!(
        (pruned.samples, pruned.processes, pruned.sessions),
        (40, 1, 1)
    );
    assert!(store.session(retained).is_err());
    assert_eq!(store.session(kept).unwrap().samples, 100);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM samples"), 100);
}

#[test]
fn a_running_process_keeps_its_newest_sample_and_the_recording_session_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let mut w = store.begin_session(&session(0)).unwrap();
    let id = w.session_id();
    let idle = w.add_process(&info(1), ProcessLimits::default()).unwrap();
    let busy = w.add_process(&info(2), ProcessLimits::default()).unwrap();
    let gone = w.add_process(&info(3), ProcessLimits::default()).unwrap();
    // An idle process (change-only recording) last stored at 5 s; a busy one every second; one
    // that exited at 20 s.
    w.add_sample(idle, &sample(5 * S, 1)).unwrap();
    for t in 0..100 {
        w.add_sample(busy, &sample(t * S, 2)).unwrap();
    }
    for t in 0..20 {
        w.add_sample(gone, &sample(t * S, 3)).unwrap();
    }
    w.process_exited(gone, 20 * S).unwrap();
    w.flush().unwrap();
    store
        .set_retention(id, Some(Duration::from_secs(10)))
        .unwrap();

    let pruned = store
        .prune(90 * S, Some(id), &Pace::default(), || false)
        .unwrap();
    // busy keeps 90..99; idle keeps its one sample (its current value); gone is gone.
    assert_eq!(pruned.samples, 90 + 20);
    assert_eq!((pruned.processes, pruned.sessions), (1, 0));
    let running: Vec<u32> = store
        .running_processes(id)
        .unwrap()
        .iter()
        .map(|p| p.info.key.pid)
        .collect();
    assert_eq!(running, vec![1, 2]);
    assert_eq!(
        store
            .sample_at_or_before(idle, 90 * S)
            .unwrap()
            .map(|s| s.time),
        Some(5 * S)
    );
    assert_eq!(store.session(id).unwrap().samples, 11);

    // The session being recorded stays even when it has nothing newer than the cutoff.
    let pruned = store
        .prune(1000 * S, Some(id), &Pace::default(), || false)
        .unwrap();
    assert_eq!(pruned.sessions, 0);
    assert!(store.session(id).is_ok());
    drop(w);
}

#[test]
fn pruning_stops_when_asked_and_a_writer_on_another_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let recorder = Store::open(&path).unwrap();
    let mut w = recorder.begin_session(&session(0)).unwrap();
    let id = w.session_id();
    let p = w.add_process(&info(9), ProcessLimits::default()).unwrap();
    for t in 0..5_000 {
        w.add_sample(p, &sample(t * S, 5)).unwrap();
    }
    w.flush().unwrap();
    recorder
        .set_retention(id, Some(Duration::from_secs(1)))
        .unwrap();

    let pruner = Store::open(&path).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let pace = Pace {
        batch: 100,
        pause: Duration::from_millis(1),
    };
    let pruner = std::thread::scope(|scope| {
        let stop = &stop;
        let handle = scope.spawn(move || {
            let pruned = pruner.prune(4_000 * S, Some(id), &pace, || {
                stop.load(std::sync::atomic::Ordering::Relaxed)
            });
            (pruner, pruned)
        });
        // The recorder keeps committing while pruning runs.
        for t in 5_000..5_050 {
            w.add_sample(p, &sample(t * S, 5)).unwrap();
            w.flush().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (pruner, pruned) = handle.join().unwrap();
        let pruned = pruned.unwrap();
        assert!(pruned.samples <= 4_000, "{pruned:?}");
        pruner
    });
    w.flush().unwrap();
    let left = count(&path, "SELECT COUNT(*) FROM samples");
    assert_eq!(recorder.session(id).unwrap().samples as i64, left);
    // Finish the pass: what is left is 4000 s onwards.
    let rest = pruner.prune(4_000 * S, Some(id), &pace, || false).unwrap();
    assert!(!rest.interrupted);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM samples"), 1_050);
    assert_eq!(
        recorder
            .process_samples_after(p, Some(5_048 * S), 10)
            .unwrap()
            .iter()
            .map(|s| s.time)
            .collect::<Vec<_>>(),
        vec![5_049 * S]
    );
    drop(w);
}
