//! The sample store: round trips, migrations from an old schema, and refusing what it cannot read.

use memtools::model::{
    BackendKind, ExitStatus, Metric, Metrics, NewSession, ProcessInfo, ProcessKey, ProcessLimits,
    Sample,
};
use memtools::sites::{Frame, SiteCause, SiteCount, Window};
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
        threads_max: Some(100_000),
        pid_max: Some(4_194_304),
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
        .add_process(
            &process(10, 5_000, "alpha"),
            ProcessLimits {
                memory: Some(1 << 30),
                address_space: Some(4 << 30),
                open_files: Some(1024),
                tasks: Some(512),
            },
        )
        .unwrap();
    // Same pid, another start time: another process.
    let b = w
        .add_process(&process(10, 9_000, "alpha"), ProcessLimits::default())
        .unwrap();
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
        threads: Some(12),
        fds: Some(13),
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
    assert_eq!(
        (procs[0].address_space_limit, procs[1].address_space_limit),
        (Some(4 << 30), None)
    );
    assert_eq!(
        (procs[0].open_files_limit, procs[1].open_files_limit),
        (Some(1024), None)
    );
    assert_eq!(
        (procs[0].tasks_limit, procs[1].tasks_limit),
        (Some(512), None)
    );
    assert_eq!((s.threads_max, s.pid_max), (Some(100_000), Some(4_194_304)));
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
    let p = w
        .add_process(&process(1, 1, "a"), ProcessLimits::default())
        .unwrap();
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

fn frame(function: &str, file: &str, line: u32, address: u64) -> Frame {
    Frame {
        address,
        module: Some("/usr/bin/leaky".into()),
        build_id: Some("0123abcd".into()),
        file_offset: Some(address - 0x1000),
        function: Some(function.into()),
        file: Some(file.into()),
        line: Some(line),
        inlined: false,
    }
}

fn count(time: i64, cause: SiteCause, samples: u64, bytes: u64) -> SiteCount {
    SiteCount {
        time,
        cause,
        samples,
        bytes,
    }
}

#[test]
fn growth_sites_round_trip_and_are_summed_over_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db")).unwrap();
    let mut w = store.begin_session(&new_session(1_000)).unwrap();
    let a = w
        .add_process(&process(10, 5_000, "leaky"), ProcessLimits::default())
        .unwrap();
    let b = w
        .add_process(&process(11, 5_000, "other"), ProcessLimits::default())
        .unwrap();
    let mut inlined = frame("grow_inner", "cache.h", 7, 0x1234);
    inlined.inlined = true;
    let leak = vec![
        inlined,
        frame("grow_cache", "cache.c", 41, 0x1234),
        frame("main", "main.c", 9, 0x1500),
    ];
    let churn = vec![
        frame("churn", "churn.c", 12, 0x2000),
        frame("main", "main.c", 10, 0x1510),
    ];
    w.add_sites(
        a,
        &leak,
        &[
            count(100, SiteCause::Fault, 3, 12_288),
            count(200, SiteCause::Fault, 1, 4_096),
        ],
    )
    .unwrap();
    // Drained again within the same bucket: added to it. Another cause is kept apart.
    w.add_sites(
        a,
        &leak,
        &[
            count(200, SiteCause::Fault, 2, 8_192),
            count(200, SiteCause::Brk, 1, 1 << 20),
        ],
    )
    .unwrap();
    w.add_sites(a, &churn, &[count(100, SiteCause::Fault, 5, 20_480)])
        .unwrap();
    // The same stack in another process is counted there only.
    w.add_sites(b, &churn, &[count(300, SiteCause::Fault, 7, 7)])
        .unwrap();
    w.finish(400, None).unwrap();

    let reader = Store::open_read_only(dir.path().join("s.db")).unwrap();
    assert!(reader.has_sites(1).unwrap());
    let faults = reader.sites(a, Window::ALL, &[SiteCause::Fault]).unwrap();
    assert_eq!(faults.len(), 2);
    assert_eq!(
        faults[0].stack, leak,
        "frames, inlining and order come back as written"
    );
    assert_eq!(
        (faults[0].cause, faults[0].samples, faults[0].bytes),
        (SiteCause::Fault, 6, 12_288 + 4_096 + 8_192)
    );
    assert_eq!((faults[1].samples, faults[1].bytes), (5, 20_480));
    // The brk call's bytes stay apart from the faults', under their own cause.
    let calls = reader
        .sites(a, Window::ALL, &[SiteCause::Brk, SiteCause::Mmap])
        .unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].cause,
            calls[0].samples,
            calls[0].bytes,
            &calls[0].stack
        ),
        (SiteCause::Brk, 1, 1 << 20, &leak)
    );
    let all = reader.sites(a, Window::ALL, &SiteCause::ALL).unwrap();
    assert_eq!(all.len(), 3, "one per stack and cause");
    assert_eq!(all[0].cause, SiteCause::Brk, "most bytes first");
    // A window counts only the buckets that start inside it.
    let late = reader
        .sites(
            a,
            Window {
                start: Some(150),
                end: None,
            },
            &[SiteCause::Fault],
        )
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].samples, late[0].bytes), (3, 4_096 + 8_192));
    let early = reader
        .sites(
            a,
            Window {
                start: None,
                end: Some(150),
            },
            &SiteCause::ALL,
        )
        .unwrap();
    assert_eq!(early[0].stack, churn, "most bytes first");
    assert_eq!(
        reader.sites(b, Window::ALL, &SiteCause::ALL).unwrap()[0].samples,
        7
    );
    // Another session of the same store without sites reads as before.
    drop(reader);
    store
        .begin_session(&new_session(500))
        .unwrap()
        .finish(600, None)
        .unwrap();
    assert!(!store.has_sites(2).unwrap());
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
    let bytes = std::fs::read(&path).unwrap();
    // A reader reads it as it is, through stand-ins for what later migrations added, and
    // changes nothing: it may be a read-only artifact.
    let store = Store::open_read_only(&path).unwrap();
    let s = store.sessions().unwrap().remove(0);
    assert_eq!((s.samples, s.last_sample, s.processes), (3, Some(80), 1));
    assert_eq!((s.cut_short, s.tree), (None, None));
    assert_eq!(
        store.series(1, Metric::Rss).unwrap()[0].1,
        vec![(20, 3), (30, 6), (80, 9)]
    );
    assert_eq!(store.phases(1).unwrap(), vec![]);
    // It recorded no growth sites, and says so rather than failing.
    assert!(!store.has_sites(1).unwrap());
    assert_eq!(
        store.sites(1, Window::ALL, &SiteCause::ALL).unwrap(),
        vec![]
    );
    drop(store);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a reader changed the store"
    );
    let version = |path: &std::path::Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&path), 1);
    // A writer migrates it, keeping its data, and it takes new sessions.
    let store = Store::open(&path).unwrap();
    assert_eq!(version(&path), schema::CURRENT_VERSION);
    let s = store.sessions().unwrap().remove(0);
    assert_eq!((s.samples, s.last_sample, s.processes), (3, Some(80), 1));
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
fn a_process_can_be_added_with_its_cgroup_limit_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("m.db")).unwrap();
    let mut w = store.begin_session(&new_session(0)).unwrap();
    let id = w.session_id();
    w.add_process(&process(1, 1, "a"), None).unwrap();
    w.add_process(&process(2, 1, "b"), Some(1 << 30)).unwrap();
    drop(w);
    let procs = store.processes(id).unwrap();
    assert_eq!(procs[1].memory_limit, Some(1 << 30));
    assert_eq!(procs[1].address_space_limit, None);
}

/// The files in a directory, sorted, with their bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_database_that_is_not_a_store_is_refused_without_a_byte_changed() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("invoices.db");
    let conn = Connection::open(&foreign).unwrap();
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices (total) VALUES (12.5);",
    )
    .unwrap();
    drop(conn);
    let before = snapshot(dir.path());
    assert!(matches!(
        Store::open(&foreign),
        Err(StoreError::NotAStore { .. })
    ));
    assert!(matches!(
        Store::open_read_only(&foreign),
        Err(StoreError::NotAStore { .. })
    ));
    // Same files, same bytes: no WAL switch, no -wal, -shm or -journal left.
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_reader_leaves_nothing_beside_a_finished_store_and_a_writer_creates_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    // Created under another name and linked into place: only the store itself is left.
    let names: Vec<String> = snapshot(dir.path()).into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().all(|n| n.starts_with("s.db")), "{names:?}");
    store
        .begin_session(&new_session(1))
        .unwrap()
        .finish(2, None)
        .unwrap();
    drop(store);
    let before = snapshot(dir.path());
    assert_eq!(before.len(), 1, "a finished store is one file");
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.sessions().unwrap().len(), 1);
    drop(reader);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_writer_refuses_links_empty_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, b"not yours").unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = Store::open(&link).err().unwrap();
    assert!(matches!(err, StoreError::Link { .. }), "{err:?}");
    assert!(err.to_string().contains("link.db"), "{err}");
    // A planted link beside a real store, where SQLite would put its WAL.
    let real = dir.path().join("real.db");
    drop(Store::open(&real).unwrap());
    std::os::unix::fs::symlink(&target, dir.path().join("real.db-wal")).unwrap();
    assert!(matches!(Store::open(&real), Err(StoreError::Link { .. })));
    assert_eq!(std::fs::read(&target).unwrap(), b"not yours");

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Store::open(&empty),
        Err(StoreError::EmptyFile { .. })
    ));
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
    // A reader sees an empty file as a store without sessions.
    assert!(matches!(
        Store::open_read_only(&empty)
            .unwrap()
            .resolve(SessionSelector::Latest),
        Err(StoreError::NoSessions { .. })
    ));

    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(
        Store::open(&sub),
        Err(StoreError::NotAFile { .. })
    ));
    assert!(matches!(
        Store::open_read_only(&sub),
        Err(StoreError::NotAFile { .. })
    ));
}

#[test]
fn a_hot_journal_left_by_a_killed_creator_does_not_block_readers() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let conn = Connection::open(&live).unwrap();
    // A creator before WAL mode: its first transaction spills to the file, the original pages
    // in the journal, when it is killed.
    conn.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA cache_size = 1; BEGIN; CREATE TABLE t (x); ",
    )
    .unwrap();
    for _ in 0..200 {
        conn.execute("INSERT INTO t VALUES (randomblob(2000))", [])
            .unwrap();
    }
    let killed = dir.path().join("killed");
    std::fs::create_dir(&killed).unwrap();
    let store = killed.join("s.db");
    std::fs::copy(&live, &store).unwrap();
    std::fs::copy(
        dir.path().join("live.db-journal"),
        killed.join("s.db-journal"),
    )
    .unwrap();
    drop(conn);
    let before = snapshot(&killed);
    assert!(
        before
            .iter()
            .any(|(n, b)| n == "s.db-journal" && !b.is_empty())
    );
    // Rolled back (in a private copy), it holds nothing: no sessions, said as such.
    let reader = Store::open_read_only(&store).unwrap();
    assert!(matches!(
        reader.resolve(SessionSelector::Latest),
        Err(StoreError::NoSessions { .. })
    ));
    assert_eq!(reader.sessions().unwrap(), vec![]);
    drop(reader);
    assert_eq!(snapshot(&killed), before, "the reader changed the files");
}

#[test]
fn a_cut_short_session_says_why_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path).unwrap();
    assert!(store.still_there());
    let mut w = store.begin_session(&new_session(0)).unwrap();
    w.set_tree("cgroup /sys/fs/cgroup/memtools-1").unwrap();
    let p = w.add_process(&process(1, 1, "a"), None).unwrap();
    let sample = |time| Sample {
        time,
        metrics: Metrics::default(),
    };
    w.add_sample(p, &sample(5)).unwrap();
    w.flush().unwrap();
    w.add_sample(p, &sample(9)).unwrap();
    // The store failed here: the open transaction is given up, the session marked.
    w.cut_short("cannot write: disk full", 5, Some(ExitStatus::Code(7)))
        .unwrap();
    assert_eq!(w.samples_written(), 1);
    drop(w);
    let s = store.sessions().unwrap().remove(0);
    assert_eq!(s.state(), memtools::store::SessionState::CutShort);
    assert_eq!(s.cut_short.as_deref(), Some("cannot write: disk full"));
    assert_eq!(s.tree.as_deref(), Some("cgroup /sys/fs/cgroup/memtools-1"));
    assert_eq!(
        (s.samples, s.end, s.exit),
        (1, Some(5), Some(ExitStatus::Code(7)))
    );

    std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
    assert!(!store.still_there(), "a moved store is noticed");
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

#[test]
fn a_session_s_site_frames_are_replaced_in_place_for_a_new_symbolization() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db")).unwrap();
    let mut w = store.begin_session(&new_session(1_000)).unwrap();
    let a = w
        .add_process(&process(10, 5_000, "leaky"), ProcessLimits::default())
        .unwrap();
    let mut unnamed = frame("x", "x.c", 1, 0x1234);
    (unnamed.function, unnamed.file, unnamed.line) = (None, None, None);
    let main = frame("main", "main.c", 9, 0x1500);
    w.add_sites(
        a,
        &vec![unnamed.clone(), main.clone()],
        &[count(100, SiteCause::Fault, 3, 12_288)],
    )
    .unwrap();
    w.finish(400, None).unwrap();
    let stacks = store.site_stacks(1).unwrap();
    assert_eq!(stacks.len(), 1);
    assert_eq!(stacks[0].1, vec![unnamed.clone(), main.clone()]);
    let mut inlined = frame("grow_inner", "cache.h", 7, 0x1234);
    inlined.inlined = true;
    let named = vec![inlined, frame("grow_cache", "cache.c", 41, 0x1234), main];
    store
        .replace_site_frames(&[(stacks[0].0, named.clone())])
        .unwrap();
    assert_eq!(store.site_stacks(1).unwrap()[0].1, named);
    let sites = store.sites(a, Window::ALL, &SiteCause::ALL).unwrap();
    assert_eq!(sites[0].stack, named, "the sites read the new frames");
    assert_eq!(
        (sites[0].samples, sites[0].bytes),
        (3, 12_288),
        "counts kept"
    );
}
