//! Fault suite, a killed recorder: killed while creating its store, a rollback journal left by
//! a creator killed mid-transaction, and SIGKILL at seeded random moments from the store's
//! creation to the recording's end. Every store left opens and holds all but its last second,
//! and the command dies with its recorder.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Rng, TestStore, as_nobody, dir_snapshot, is_root, kill_all, leak_sim, now_ns, read_pids,
    sessions_json, wait_gone,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A recorder killed just after its store's first file appears, `delay` later.
fn kill_while_creating(dir: &Path, delay: Duration) {
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 30", pid_file.display());
    let mut rec = Command::new(common::memtools_user())
        .args(["record", "--backend", "procfs", "--", "sh", "-c", &script])
        .env("MEMTOOLS_STORE", dir.join("memtools.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(dir).map_or(0, |d| d.count()) == 0 && Instant::now() < deadline {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    while t.elapsed() < delay {
        std::hint::spin_loop();
    }
    kill(Pid::from_raw(rec.id() as i32), Signal::SIGKILL).unwrap();
    rec.wait().unwrap();
    let command = read_pids(&pid_file);
    let left = wait_gone(&command, Duration::from_secs(2));
    kill_all(&left);
    assert!(left.is_empty(), "the command outlived its killed recorder");
}

#[test]
fn a_recorder_killed_while_creating_its_store_never_blocks_readers() {
    let mut rng = Rng::seeded(8);
    let mut stores = 0;
    for trial in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        // Within the first milliseconds: the store's creation.
        let delay = Duration::from_micros(rng.next_u64() % 15_000);
        kill_while_creating(dir.path(), delay);
        let state = dir_snapshot(dir.path());
        let names = state.names();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with("-journal") && !n.contains(".creating")),
            "trial {trial} ({delay:?}): a journal beside the store: {names:?}"
        );
        let store = dir.path().join("memtools.db");
        if store.exists() {
            stores += 1;
            let mut cmd = Command::new(common::memtools_user());
            cmd.args(["sessions", "--format", "json"])
                .env("MEMTOOLS_STORE", &store);
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "trial {trial} ({delay:?}): {names:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!("{stores} of 40 killed creators left a store");
}

#[test]
fn a_hot_journal_left_by_any_killed_creator_does_not_block_readers() {
    // A creator killed in the middle of its first transaction, before WAL mode: an older
    // memtools did this. python3's sqlite3 plays it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let store = dir.path().join("memtools.db");
    let py = format!(
        "import os, sqlite3\n\
         c = sqlite3.connect('{}', isolation_level=None)\n\
         c.execute('PRAGMA cache_size = 1')\n\
         c.execute('BEGIN')\n\
         c.execute('CREATE TABLE t (x)')\n\
         for i in range(300): c.execute('INSERT INTO t VALUES (randomblob(2000))')\n\
         os.kill(os.getpid(), 9)\n",
        store.display()
    );
    let status = Command::new("python3").arg("-c").arg(&py).status().unwrap();
    assert!(!status.success(), "python3 was to be killed");
    let before = dir_snapshot(dir.path());
    assert!(
        before.has_nonempty("memtools.db-journal"),
        "no hot journal was left: {before:?}"
    );
    for nobody in [false, true] {
        if nobody && !is_root() {
            continue;
        }
        let mut cmd = Command::new(common::memtools_user());
        cmd.args(["sessions", "--format", "json"])
            .env("MEMTOOLS_STORE", &store);
        if nobody {
            as_nobody(&mut cmd);
        }
        assert_eq!(
            sessions_json(cmd.output().unwrap()),
            Vec::<serde_json::Value>::new()
        );
        assert_eq!(
            dir_snapshot(dir.path()),
            before,
            "a reader changed the files"
        );
    }
}

#[test]
fn a_recorder_killed_at_random_moments_leaves_a_store_holding_all_but_its_last_second() {
    const MOMENTS: usize = 20;
    let mut rng = Rng::seeded(11);
    // Half log-uniform from 0.1 ms to 3.5 s after the store's first file appears (its creation,
    // the backend's loading, the first commits), half uniform from 0.5 s to 4 s after the first
    // sample is committed (the steady state and the end), so a slow start (a loaded machine,
    // a debug build loading the eBPF programs) cannot crowd out the later moments.
    let moments: Vec<Moment> = (0..MOMENTS)
        .map(|i| {
            let u = rng.unit();
            if i % 2 == 0 {
                let (lo, hi) = (0.1e-3f64.ln(), 3.5f64.ln());
                Moment::AfterCreation(Duration::from_secs_f64((lo + (hi - lo) * u).exp()))
            } else {
                Moment::AfterFirstSample(Duration::from_secs_f64(0.5 + 3.5 * u))
            }
        })
        .collect();
    let outcomes: Vec<Killed> = std::thread::scope(|s| {
        let workers: Vec<_> = moments
            .chunks(MOMENTS / 4)
            .map(|chunk| s.spawn(move || chunk.iter().map(|&m| killed_at(m)).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a trial panicked"))
            .collect()
    });
    eprintln!("{:?}", outcomes);
    // The moments reached every stage, so the checks above were not vacuous.
    let checked = outcomes.iter().filter(|o| **o == Killed::Checked).count();
    assert!(
        checked >= 3,
        "only {checked} stores old enough to check: {outcomes:?}"
    );
}

/// When a recorder is killed.
#[derive(Clone, Copy, Debug)]
enum Moment {
    AfterCreation(Duration),
    AfterFirstSample(Duration),
}

/// Whether a sample has been committed to the store at `path` (read without writing).
fn has_a_sample(path: &Path) -> bool {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM samples", [], |r| r.get::<_, i64>(0)))
        .is_ok_and(|n| n > 0)
}

/// What a killed recording left.
#[derive(Debug, PartialEq, Eq)]
enum Killed {
    /// Killed before its store existed.
    NoStore,
    /// A store without a session yet.
    NoSession,
    /// A session younger than a second: nothing it holds is owed.
    Young,
    /// A session whose samples were checked against the kill.
    Checked,
    /// The recording had finished its session before the moment came.
    Finished,
}

/// One recording, killed with SIGKILL at `moment`, then checked.
fn killed_at(moment: Moment) -> Killed {
    let store = TestStore::new();
    let pid_file = store.dir.path().join("sim.pid");
    let mut rec = store
        .cmd(&["record", "--interval", "20ms", "--", leak_sim(), "linear"])
        .args([
            "--step",
            "128KiB",
            "--every",
            "20ms",
            "--duration",
            "4s",
            "--pid-file",
        ])
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let delay = match moment {
        Moment::AfterCreation(delay) => {
            while !std::fs::read_dir(store.dir.path()).is_ok_and(|d| d.count() > 0)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(50));
            }
            delay
        }
        Moment::AfterFirstSample(delay) => {
            while !has_a_sample(&store.path()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            delay
        }
    };
    std::thread::sleep(delay);
    let killed = now_ns();
    // Past the end, the recorder may have finished already: then there is nothing to kill.
    let ended_first = rec.try_wait().unwrap().is_some()
        || kill(Pid::from_raw(rec.id() as i32), Signal::SIGKILL).is_err();
    rec.wait().unwrap();
    let sim = read_pids(&pid_file);
    let left = wait_gone(&sim, Duration::from_secs(2));
    kill_all(&left);
    assert!(
        left.is_empty(),
        "{moment:?}: the command outlived its killed recorder"
    );
    let state = dir_snapshot(store.dir.path());
    assert!(
        !state.names().contains(&"memtools.db-journal"),
        "{moment:?}: {state:?}"
    );
    if !store.path().exists() {
        return Killed::NoStore;
    }
    let sessions = sessions_json(store.run(&["sessions", "--format", "json"]));
    let Some(session) = sessions.first() else {
        return Killed::NoSession;
    };
    if ended_first {
        assert_eq!(session["state"], "finished", "{moment:?}: {session}");
    }
    // Killed after it finished the session (while it exited): everything is there.
    if session["state"] == "finished" {
        return Killed::Finished;
    }
    let sql = store.sql();
    let integrity: String = sql
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{moment:?}");
    let (start, last): (i64, Option<i64>) = sql
        .query_row(
            "SELECT s.start_ns, (SELECT MAX(x.t_ns) FROM samples x JOIN processes p ON x.process_id = p.id WHERE p.session_id = s.id) FROM sessions s",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // All but the last second: anything recorded before `killed - 1 s` is there.
    let second = 1_000_000_000;
    if killed - start <= second {
        return Killed::Young;
    }
    let last = last.unwrap_or(start);
    assert!(
        last >= killed - second,
        "{moment:?}: the last sample kept is {} ms before the kill",
        (killed - last) / 1_000_000
    );
    Killed::Checked
}
