//! The sample store: round trips, migrations from an old schema, and refusing what it cannot read.

use memtools::model::{
    BackendKind, ExitStatus, Metric, Metrics, NewSession, ProcessInfo, ProcessKey, Sample,
};
use memtools::store::{SessionSelector, Store, StoreError, schema};
use rusqlite::Connection;

fn new_session(start: i64) -> NewSession {
    NewSession {
        host: "host-a".into(),
        kernel: "6.1.0".into(),
        backend: BackendKind::Procfs,
        backend_reason: "asked for".into(),
        interval_ns: Some(100_000_000),
        command: Some("pytest -x tests/".into()),
        source: None,
        start,
        monotonic_offset_ns: Some(42),
        mem_total: Some(16 << 30),
    }
}

fn process(pid: u32, start_time: u64, name: &str) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey { pid, start_time },
        ppid: Some(1),
        name: name.into(),
        cmdline: format!("{name} --flag"),
    }
}

#[test]
fn a_session_round_trips_with_every_metric_and_absent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db")).unwrap();
    let mut w = store.begin_session(&new_session(1_000)).unwrap();
    let a = w
        .add_process(&process(10, 5_000, "alpha"), Some(1 << 30))
        .unwrap();
    // Same pid, another start time: another process.
    let b = w.add_process(&process(10, 9_000, "alpha"), None).unwrap();
    assert_ne!(a, b);
    let full = Metrics {
        rss_anon: Some(1),
        rss_file: Some(2),
        rss_shmem: Some(3),
        swap: Some(4),
        vm_size: Some(5),
        page_faults: Some(6),
        mmap_calls: Some(7),
        munmap_calls: Some(8),
        brk_calls: Some(9),
        mapped_bytes: Some(u64::from(u32::MAX) * 4),
        unmapped_bytes: Some(11),
    };
    let partial = Metrics {
        vm_size: Some(4096),
        ..Metrics::default()
    };
    let samples_a = [
        Sample {
            time: 1_100,
            metrics: full,
        },
        Sample {
            time: 1_200,
            metrics: partial,
        },
    ];
    for s in &samples_a {
        w.add_sample(a, s).unwrap();
    }
    w.add_sample(
        b,
        &Sample {
            time: 1_300,
            metrics: full,
        },
    )
    .unwrap();
    w.rename_process(b, "beta", "beta --exec").unwrap();
    w.process_exited(a, 1_250).unwrap();
    let id = w.finish(2_000, Some(ExitStatus::Code(3))).unwrap();

    let store = Store::open_read_only(dir.path().join("s.db")).unwrap();
    assert_eq!(store.resolve(SessionSelector::Latest).unwrap(), id);
    let s = store.session(id).unwrap();
    assert_eq!(
        (s.host.as_str(), s.backend.as_str(), s.command.as_deref()),
        ("host-a", "procfs", Some("pytest -x tests/"))
    );
    assert_eq!(
        (s.start, s.end, s.last_sample),
        (1_000, Some(2_000), Some(1_300))
    );
    assert_eq!(s.exit, Some(ExitStatus::Code(3)));
    assert_eq!((s.processes, s.samples), (2, 3));
    assert_eq!(s.default_metric(), Metric::Rss);

    let procs = store.processes(id).unwrap();
    assert_eq!(procs.len(), 2);
    assert_eq!(procs[0].info, process(10, 5_000, "alpha"));
    assert_eq!(procs[0].exit, Some(1_250));
    assert_eq!(
        (procs[0].memory_limit, procs[1].memory_limit),
        (Some(1 << 30), None)
    );
    assert_eq!(s.mem_total, Some(16 << 30));
    assert_eq!(procs[1].info.name, "beta");
    assert_eq!(procs[1].info.cmdline, "beta --exec");

    let mut seen = Vec::new();
    store
        .for_each_sample(id, |p, s| {
            seen.push((p.id, *s));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        seen,
        vec![
            (a, samples_a[0]),
            (a, samples_a[1]),
            (
                b,
                Sample {
                    time: 1_300,
                    metrics: full
                }
            )
        ]
    );
    // Rss is derived; a sample without its parts has none and is left out of the series.
    let series = store.series(id, Metric::Rss).unwrap();
    assert_eq!(series[0].1, vec![(1_100, 6)]);
    let vm = store.series(id, Metric::VmSize).unwrap();
    assert_eq!(vm[0].1, vec![(1_100, 5), (1_200, 4096)]);
}

#[test]
fn sessions_are_listed_newest_first_and_unknown_ids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    assert!(matches!(
        store.resolve(SessionSelector::Latest),
        Err(StoreError::NoSessions { .. })
    ));
    let old = store
        .begin_session(&new_session(100))
        .unwrap()
        .finish(200, None)
        .unwrap();
    let new = store
        .begin_session(&new_session(300))
        .unwrap()
        .finish(400, None)
        .unwrap();
    let ids: Vec<i64> = store.sessions().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![new, old]);
    let err = store.resolve(SessionSelector::Id(99)).unwrap_err();
    assert!(err.to_string().contains("no session with id 99"), "{err}");
}

#[test]
fn an_unfinished_session_keeps_its_committed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    let mut w = store.begin_session(&new_session(0)).unwrap();
    let p = w.add_process(&process(1, 1, "a"), None).unwrap();
    w.add_sample(
        p,
        &Sample {
            time: 5,
            metrics: Metrics::default(),
        },
    )
    .unwrap();
    w.flush().unwrap();
    // The recorder dies here: nothing finishes the session.
    std::mem::forget(w);
    let reader = Store::open_read_only(&path).unwrap();
    let s = reader.sessions().unwrap().remove(0);
    assert_eq!((s.end, s.samples, s.last_sample), (None, 1, Some(5)));
    assert_eq!(s.duration_ns(), Some(5));
}

/// A store written by the first schema: its tables as migration 1 made them, with data.
fn version_1_store(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA application_id = {}; PRAGMA user_version = 1;",
        schema::APPLICATION_ID
    ))
    .unwrap();
    conn.execute_batch(
        "INSERT INTO sessions (id, host, kernel, backend, backend_reason, start_ns, end_ns) VALUES (1, 'h', 'k', 'procfs', 'old', 10, 90);
         INSERT INTO processes (id, session_id, pid, start_time, name, cmdline) VALUES (1, 1, 7, 1, 'old', '');
         INSERT INTO samples (process_id, t_ns, rss_anon, rss_file, rss_shmem) VALUES (1, 20, 1, 1, 1), (1, 30, 2, 2, 2), (1, 80, 3, 3, 3);",
    )
    .unwrap();
}

#[test]
fn an_old_schema_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    version_1_store(&path);
    // Even a read-only open brings it up to date first.
    let store = Store::open_read_only(&path).unwrap();
    let s = store.sessions().unwrap().remove(0);
    assert_eq!((s.samples, s.last_sample, s.processes), (3, Some(80), 1));
    assert_eq!(
        store.series(1, Metric::Rss).unwrap()[0].1,
        vec![(20, 3), (30, 6), (80, 9)]
    );
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::CURRENT_VERSION);
    // And it takes new sessions.
    let store = Store::open(&path).unwrap();
    store
        .begin_session(&new_session(100))
        .unwrap()
        .finish(200, None)
        .unwrap();
    assert_eq!(store.sessions().unwrap().len(), 2);
}

#[test]
fn a_newer_schema_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "PRAGMA user_version = {}",
            schema::CURRENT_VERSION + 1
        ))
        .unwrap();
    for result in [Store::open(&path), Store::open_read_only(&path)] {
        let err = result.err().expect("a newer schema must be refused");
        assert!(matches!(err, StoreError::NewerSchema { .. }));
        assert!(err.to_string().contains("upgrade memtools"), "{err}");
    }
}

#[test]
fn foreign_and_damaged_files_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        Store::open(&foreign),
        Err(StoreError::NotAStore { .. })
    ));

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
    let err = Store::open_read_only(&junk).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.db"), "{err}");

    let missing = dir.path().join("missing.db");
    assert!(matches!(
        Store::open_read_only(&missing),
        Err(StoreError::Missing { .. })
    ));
}

#[test]
fn a_follower_reads_every_metric_of_only_the_newer_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db")).unwrap();
    let mut w = store.begin_session(&new_session(1_000)).unwrap();
    let a = w.add_process(&process(10, 5_000, "alpha"), None).unwrap();
    let sample = |time, anon| Sample {
        time,
        metrics: Metrics {
            rss_anon: Some(anon),
            page_faults: Some(anon * 2),
            ..Metrics::default()
        },
    };
    for (t, v) in [(1_100, 1), (1_200, 2), (1_300, 3)] {
        w.add_sample(a, &sample(t, v)).unwrap();
    }
    w.flush().unwrap();
    let id = store.processes(w.session_id()).unwrap()[0].id;

    let reader = Store::open_read_only(dir.path().join("s.db")).unwrap();
    let all = reader.process_samples_after(id, None, 100).unwrap();
    assert_eq!(
        all,
        vec![sample(1_100, 1), sample(1_200, 2), sample(1_300, 3)]
    );
    // Absent metrics stay absent; a limit gives the first of the newer ones.
    assert_eq!(all[0].metrics.get(Metric::RssFile), None);
    let next = reader.process_samples_after(id, Some(1_100), 1).unwrap();
    assert_eq!(next, vec![sample(1_200, 2)]);
    // What the recorder writes later is all a follower reads next.
    w.add_sample(a, &sample(1_400, 4)).unwrap();
    w.flush().unwrap();
    let newer = reader.process_samples_after(id, Some(1_300), 100).unwrap();
    assert_eq!(newer, vec![sample(1_400, 4)]);
    // Inside one read transaction, what is committed meanwhile waits for the next one.
    let seen = reader
        .read_transaction(|r| {
            let before = r.process_samples_after(id, Some(1_400), 100)?;
            w.add_sample(a, &sample(1_500, 5)).unwrap();
            w.flush().unwrap();
            let after = r.process_samples_after(id, Some(1_400), 100)?;
            Ok((before.len(), after.len()))
        })
        .unwrap();
    assert_eq!(seen, (0, 0));
    let next = reader.process_samples_after(id, Some(1_400), 100).unwrap();
    assert_eq!(next, vec![sample(1_500, 5)]);
    assert!(
        reader
            .process_samples_after(id, Some(1_500), 100)
            .unwrap()
            .is_empty()
    );
}
