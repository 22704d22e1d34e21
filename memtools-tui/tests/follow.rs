//! Following a store as a recorder writes it: only what is new is read, exits and renames are
//! seen, `latest` moves on to the next session, and verdicts are those of `detect`.

mod common;

use common::*;
use memtools::analysis::{MIB, Params};
use memtools::detect::analyse_session;
use memtools::model::{Metric, NS_PER_SEC};
use memtools::store::{SessionSelector, Store};
use memtools_tui::follow::Follower;
use memtools_tui::snapshot::{FollowState, Row, Snapshot};

fn row(s: &Snapshot, pid: u32) -> &Row {
    s.rows.iter().find(|r| r.pid == pid).expect("the process")
}

#[test]
fn each_poll_reads_what_the_recorder_wrote_since_the_last() {
    let t = TestStore::new();
    let mut w = t.store.begin_session(&session(T0)).unwrap();
    let a = w
        .add_process(&process(100, Some(1), "grower"), None)
        .unwrap();
    write(&mut w, a, 0, 10, |i| (10 + i as u64) * MIB);
    let mut f = Follower::new(&t.path(), SessionSelector::Latest, None);
    f.poll();
    let s = f.snapshot();
    assert_eq!(s.state, FollowState::Following);
    assert_eq!(
        (row(&s, 100).samples, row(&s, 100).value),
        (10, Some(19 * MIB))
    );
    // Nothing new: nothing changes.
    f.poll();
    assert_eq!(row(&f.snapshot(), 100).samples, 10);
    // Five more samples and a second process: read once each, no duplicates.
    write(&mut w, a, 10, 5, |i| (10 + i as u64) * MIB);
    let b = w.add_process(&process(200, Some(1), "late"), None).unwrap();
    write(&mut w, b, 12, 3, |_| MIB);
    f.poll();
    let s = f.snapshot();
    assert_eq!(row(&s, 100).samples, 15);
    assert_eq!(row(&s, 100).growth, Some(14 * MIB as i64));
    assert_eq!(row(&s, 200).samples, 3);
    // An exit and a rename (exec) show at the next look at the process list.
    w.process_exited(b, T0 + 15 * NS_PER_SEC).unwrap();
    w.rename_process(a, "grower2", "grower2 --again").unwrap();
    w.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.poll();
    let s = f.snapshot();
    assert!(row(&s, 200).exited);
    assert_eq!(&*row(&s, 100).name, "grower2");
    assert!(s.recording());
    w.finish(T0 + 20 * NS_PER_SEC, None).unwrap();
    f.poll();
    assert!(!f.snapshot().recording());
}

#[test]
fn the_verdicts_are_detects() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    let s = f.snapshot();
    let store = Store::open_read_only(t.path()).unwrap();
    let report = analyse_session(&store, 1, None, &Params::default(), None, 16 << 30).unwrap();
    for p in &report.processes {
        let judged = row(&s, p.process.info.key.pid)
            .judged
            .as_ref()
            .expect("a verdict");
        assert_eq!(
            judged.verdict, p.analysis.verdict,
            "{}",
            p.process.info.name
        );
        assert_eq!(judged.reason, p.explanation());
        assert_eq!(judged.evidence, p.analysis.evidence);
    }
    assert_eq!(f.leaks(), vec![(100, "leaky")]);
    assert_eq!(s.verdict_counts(), (1, 3, 0));
}

#[test]
fn verdicts_are_refreshed_only_when_a_history_moved_enough() {
    let t = TestStore::new();
    let mut w = four_processes(&t);
    let mut f = followed(&t);
    // Nothing new: no process is due.
    f.poll();
    assert!(f.due_job().is_none());
    // Five more samples of a 60-sample history are under a tenth: not yet.
    let leak = 1;
    write(&mut w, leak, 60, 5, |i| (10 + i as u64) * MIB);
    f.poll();
    assert!(f.due_job().is_none());
    // One more (6 in all, a tenth of 60): due, and only that process.
    write(&mut w, leak, 65, 1, |i| (10 + i as u64) * MIB);
    f.poll();
    let job = f.due_job().expect("a job");
    assert_eq!(job.histories.len(), 1);
    assert_eq!(job.histories[0].0.info.name, "leaky");
    assert_eq!(job.histories[0].1.len(), 66);
}

#[test]
fn latest_moves_on_to_a_newer_session_once_the_one_shown_ended() {
    let t = TestStore::new();
    let mut w = t.store.begin_session(&session(T0)).unwrap();
    let a = w
        .add_process(&process(100, Some(1), "first"), None)
        .unwrap();
    write(&mut w, a, 0, 5, |_| MIB);
    let mut latest = Follower::new(&t.path(), SessionSelector::Latest, None);
    let mut pinned = Follower::new(&t.path(), SessionSelector::Id(1), None);
    latest.poll();
    pinned.poll();
    w.finish(T0 + 5 * NS_PER_SEC, None).unwrap();
    let mut w = t
        .store
        .begin_session(&session(T0 + 10 * NS_PER_SEC))
        .unwrap();
    let b = w
        .add_process(&process(200, Some(1), "second"), None)
        .unwrap();
    write(&mut w, b, 10, 5, |_| 2 * MIB);
    latest.poll();
    pinned.poll();
    let s = latest.snapshot();
    assert_eq!(s.session.as_ref().map(|s| s.id), Some(2));
    assert_eq!(
        s.rows.iter().map(|r| &*r.name).collect::<Vec<_>>(),
        ["second"]
    );
    assert_eq!(pinned.snapshot().session.map(|s| s.id), Some(1));
}

#[test]
fn a_store_not_there_yet_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.db");
    let mut f = Follower::new(&path, SessionSelector::Latest, None);
    f.poll();
    assert!(matches!(f.state(), FollowState::Waiting(w) if w.contains("no store at")));
    let store = Store::open(&path).unwrap();
    f.poll();
    assert!(matches!(f.state(), FollowState::Waiting(w) if w.contains("no session in")));
    let mut w = store.begin_session(&session(T0)).unwrap();
    let a = w.add_process(&process(100, None, "p"), None).unwrap();
    write(&mut w, a, 0, 3, |_| MIB);
    f.poll();
    assert_eq!(f.state(), &FollowState::Following);
    assert_eq!(f.snapshot().rows.len(), 1);
    // A damaged store is said, and what was read stays.
    drop(w);
    drop(store);
    std::fs::write(&path, b"not a database at all, not even close to one").unwrap();
    let _ = std::fs::remove_file(dir.path().join("later.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("later.db-shm"));
    let mut fresh = Follower::new(&path, SessionSelector::Latest, None);
    fresh.poll();
    assert!(
        matches!(fresh.state(), FollowState::Failed(e) if e.contains("later.db")),
        "{:?}",
        fresh.state()
    );
}

#[test]
fn another_metric_is_read_again_from_the_start() {
    let t = TestStore::new();
    let _w = four_processes(&t);
    let mut f = followed(&t);
    assert_eq!(f.metric(), Metric::Rss);
    f.set_metric(Metric::PageFaults);
    judge(&mut f);
    let s = f.snapshot();
    assert_eq!(s.metric, Metric::PageFaults);
    let leaky = row(&s, 100);
    assert_eq!((leaky.samples, leaky.value), (60, Some(138)));
    // Judged on that metric, as `detect --metric page_faults` judges it.
    let store = Store::open_read_only(t.path()).unwrap();
    let params = Params::default();
    let report = analyse_session(&store, 1, Some(Metric::PageFaults), &params, None, 16 << 30);
    let expected = report
        .unwrap()
        .processes
        .iter()
        .find(|p| p.process.info.key.pid == 100)
        .map(|p| p.analysis.verdict);
    assert_eq!(leaky.judged.as_ref().map(|j| j.verdict), expected);
}

#[test]
fn a_snapshot_shares_the_rows_that_did_not_change() {
    let t = TestStore::new();
    let mut w = four_processes(&t);
    let mut f = followed(&t);
    let before = f.snapshot();
    write(&mut w, 1, 60, 1, |_| 80 * MIB);
    f.poll();
    let after = f.snapshot();
    let by_pid = |s: &Snapshot, pid| s.rows.iter().find(|r| r.pid == pid).cloned().unwrap();
    // The leak got a sample: a new row with it; the others are the very same rows.
    assert!(!std::sync::Arc::ptr_eq(
        &by_pid(&before, 100),
        &by_pid(&after, 100)
    ));
    assert_eq!(by_pid(&after, 100).value, Some(80 * MIB));
    for pid in [200, 300, 101] {
        assert!(std::sync::Arc::ptr_eq(
            &by_pid(&before, pid),
            &by_pid(&after, pid)
        ));
    }
}
