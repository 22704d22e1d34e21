//! Fault suite, the store: a full file system under it, readers who may not write it (another
//! user, a read-only mount), a recorder killed while creating it, and a recorder killed with
//! SIGKILL at random moments. What was stored stays readable, the command is never abandoned,
//! and no process is left behind.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Mount, NOBODY, Rng, TestStore, as_nobody, dir_snapshot, is_root, leak_sim, now_ns, read_pids,
    skip, wait_gone,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Fills a file system until it takes no more bytes.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("the filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
}

fn sessions_json(out: std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "sessions failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sessions JSON")
}

fn kill_all(pids: &[u32]) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

#[test]
fn a_full_disk_stops_the_recording_not_the_command() {
    if !is_root() {
        skip(
            "a_full_disk_stops_the_recording_not_the_command",
            "needs root (to mount a tmpfs)",
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let small = Mount::tmpfs(&work.path().join("small"), "1m");
    let store_path = small.dir.join("memtools.db");
    let go = work.path().join("go");
    let pid_file = work.path().join("pid");
    let script = format!(
        "echo $$ > '{}'; while [ ! -e '{}' ]; do sleep 0.05; done; exit 7",
        pid_file.display(),
        go.display()
    );
    let rec = Command::new(common::memtools_user())
        .args([
            "record",
            "--backend",
            "procfs",
            "--interval",
            "10ms",
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .env("MEMTOOLS_STORE", &store_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = || {
        Command::new(common::memtools_user())
            .args(["sessions", "--format", "json"])
            .env("MEMTOOLS_STORE", &store_path)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_pids(&pid_file).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    fill(&small.dir);
    // The recorder notices at its next commit; the command knows nothing of it.
    std::thread::sleep(Duration::from_secs(2));
    let command = read_pids(&pid_file);
    assert_eq!(command.len(), 1);
    assert!(common::alive(command[0]), "the command was abandoned");
    std::fs::write(&go, b"").unwrap();
    let out = rec.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the command's status: {stderr}");
    assert_eq!(
        stderr.matches("recording stopped").count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(wait_gone(&command, Duration::from_secs(2)).is_empty());
    // Readable with the disk still full, then after it is freed.
    for _ in 0..2 {
        let s = sessions_json(reader()).remove(0);
        assert_eq!(s["state"], "cut_short", "{s}");
        assert!(
            s["cut_short"].as_str().unwrap_or("").contains("full"),
            "{s}"
        );
        assert!(s["samples"].as_u64().unwrap_or(0) > 0, "{s}");
        assert_eq!(s["exit_status"], 7, "{s}");
        std::fs::remove_file(small.dir.join("filler")).unwrap_or(());
    }
}

/// Records a short session as root into `dir` (made 0755 so others may look in).
fn root_store(dir: &Path, keep_wal: bool) -> std::path::PathBuf {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.join("memtools.db");
    let mut rec = Command::new(common::memtools_user())
        .args(["record", "--backend", "procfs", "--interval", "20ms", "--"])
        .args([
            leak_sim(),
            "linear",
            "--step",
            "256KiB",
            "--every",
            "20ms",
            "--duration",
        ])
        .arg(if keep_wal { "20s" } else { "1s" })
        .env("MEMTOOLS_STORE", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if keep_wal {
        // Killed mid-recording: its -wal and -shm stay, owned by root.
        std::thread::sleep(Duration::from_millis(1500));
        kill(Pid::from_raw(rec.id() as i32), Signal::SIGKILL).unwrap();
    }
    rec.wait().unwrap();
    path
}

/// Every reading command, as `who`, on `store`; `out` is a directory the reader may write.
fn read_everything(store: &Path, out: &Path, nobody: bool) {
    let exported = out.join("export.csv");
    let commands: [Vec<&str>; 6] = [
        vec!["sessions"],
        vec!["show"],
        vec!["detect", "--format", "json"],
        vec!["export", "--format", "json"],
        vec![
            "export",
            "--format",
            "csv",
            "-o",
            exported.to_str().unwrap(),
        ],
        vec!["sessions", "--format", "json"],
    ];
    for args in commands {
        let mut cmd = Command::new(common::memtools_user());
        cmd.args(&args).env("MEMTOOLS_STORE", store);
        if nobody {
            as_nobody(&mut cmd);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?} on {}: {stderr}",
            store.display()
        );
        assert!(!out.stdout.is_empty() || args.contains(&"-o"), "{args:?}");
    }
    assert!(std::fs::metadata(&exported).is_ok_and(|m| m.len() > 0));
}

#[test]
fn a_reader_who_may_not_write_reads_everything_and_changes_nothing() {
    if !is_root() {
        skip(
            "a_reader_who_may_not_write_reads_everything_and_changes_nothing",
            "needs root (to record as root and read as nobody, and to mount read-only)",
        );
        return;
    }
    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        out.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    for keep_wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = root_store(dir.path(), keep_wal);
        let before = dir_snapshot(dir.path());
        assert_eq!(
            before.names().iter().any(|n| n.ends_with("-wal")),
            keep_wal,
            "{before:?}"
        );
        // Another user: may read the files, not write them or the directory.
        read_everything(&store, out.path(), true);
        assert_eq!(
            dir_snapshot(dir.path()),
            before,
            "a reader changed the store's directory"
        );
        // Root, on a read-only mount of it.
        let ro = Mount::read_only(dir.path(), &out.path().join(format!("ro-{keep_wal}")));
        read_everything(&ro.dir.join("memtools.db"), out.path(), false);
        drop(ro);
        assert_eq!(dir_snapshot(dir.path()), before);
    }
    assert_ne!(NOBODY, 0);
}

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
